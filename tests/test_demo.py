"""`make demo` (python -m demo) end to end, shortened: outputs complete, the baked jaw follows the truth."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_demo_end_to_end(tmp_path) -> None:
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOMM_")}
    r = subprocess.run(
        [sys.executable, "-m", "demo", "--frames", "60", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ("demo.blend", "review.mp4", "curves.png", "summary.json", "character.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 60
    assert summary["pearson_r"]["jaw_open"] >= 0.8, summary["pearson_r"]
    assert any("after reduction" in line for line in summary["reports"])
    # the same character also baked from 8 posed examples, scored side by side
    assert len(summary["examples"]["frames"]) == 8
    assert summary["examples"]["pearson_r"]["jaw_open"] >= 0.8, summary["examples"]
    assert any("from 8 example frames" in line for line in summary["reports"])
    cap = cv2.VideoCapture(str(out / "review.mp4"))
    try:
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 60
        ok, frame = cap.read()
        assert ok and frame.shape[:2] == (256, 3 * 256)  # driving | neural preview | baked character
    finally:
        cap.release()
    assert "accuracy (Pearson r, baked vs ground truth): jaw_open" in r.stdout
    assert "side by side, bake from 8 examples (frames " in r.stdout
