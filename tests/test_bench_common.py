"""bench/_common.py: the helpers the benchmarks share (one behaviour each)."""

from __future__ import annotations

import os

import pytest

from bench._common import read_section, replace_section, run_child, status_mib


def test_status_mib_reads_this_process_or_raises(tmp_path):
    """A missing reading raises (a benchmark never reports a made-up number); present ones are MiB."""
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n")
    assert status_mib("VmHWM", status) == 200.0 and status_mib("VmRSS", status) == 100.0
    with pytest.raises(KeyError, match="VmSwap is not in"):
        status_mib("VmSwap", status)
    with pytest.raises(KeyError, match="cannot be read"):
        status_mib("VmRSS", tmp_path / "missing")


def test_sections_of_results_are_replaced_in_place(tmp_path):
    results = tmp_path / "RESULTS.md"
    one = "<!-- section: one -->\nfirst\n<!-- end section: one -->"
    replace_section("one", one, results)
    assert results.read_text() == "# Benchmark results\n\n" + one + "\n"
    replace_section("two", "<!-- section: two -->\nx\n<!-- end section: two -->", results)
    new_one = "<!-- section: one -->\nsecond\n<!-- end section: one -->"
    replace_section("one", new_one, results)
    text = results.read_text()
    assert text.index(new_one) < text.index("section: two") and "first" not in text
    assert read_section("one", results) == new_one and read_section("three", results) is None


def test_run_child_returns_its_last_json_line_or_raises():
    assert run_child(["-c", "print('noise'); print('{\"a\": 1}')"]) == {"a": 1}
    with pytest.raises(RuntimeError, match="boom"):
        run_child(["-c", "import sys; sys.exit('boom')"])


def test_use_model_points_the_worker_at_the_model_or_the_default(tmp_path, monkeypatch):
    from bench._common import use_model

    monkeypatch.setenv("FOMM_CHECKPOINT", "/stale/model.safetensors")
    monkeypatch.delenv("FOMM_CONFIG", raising=False)
    config = tmp_path / "c.yaml"
    use_model(tmp_path / "cache", None, config)
    assert os.environ["FOMM_CACHE_DIR"] == str(tmp_path / "cache")
    assert "FOMM_CHECKPOINT" not in os.environ  # the shipped default, not a stale choice
    assert os.environ["FOMM_CONFIG"] == str(config.resolve())
