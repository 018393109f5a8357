"""Shared test fixtures: paths to the reference data the suite reads, all inside the repository (tests/data)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
FIXTURE_DIR = DATA / "fomm_reference"
SPEC_DIR = DATA / "spec"
TINY_CKPT = FIXTURE_DIR / "tiny-cpk.pth.tar"
TINY_YAML = FIXTURE_DIR / "tiny.yaml"


@pytest.fixture(scope="session")
def tiny_config() -> dict:
    """The fixture model's config, with its 64 px input size recorded."""
    import yaml

    cfg = yaml.safe_load(TINY_YAML.read_text())
    cfg["dataset_params"] = {"frame_shape": [64, 64, 3]}
    return cfg


@pytest.fixture(scope="session")
def tiny_bundle(tiny_config):
    from ml_core.model import load_model

    return load_model(TINY_CKPT, tiny_config)
