"""Shared test fixtures: paths to the reference data the suite reads, all inside the repository (tests/data)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
FIXTURE_DIR = DATA / "fomm_reference"
SPEC_DIR = DATA / "spec"
TINY_CKPT = FIXTURE_DIR / "tiny-cpk.pth.tar"
TINY_YAML = FIXTURE_DIR / "tiny.yaml"


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C works in the suite however it was started. A shell starts a background job (``make test &``, nohup)
    with SIGINT ignored; Python then leaves it ignored, children inherit that through exec, and every test of Ctrl-C
    (a real SIGINT to a CLI process, the add-on's Cancel through ``_thread.interrupt_main``) would see nothing
    happen. Handling it here gives this process Python's usual handler and its children the default one."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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
