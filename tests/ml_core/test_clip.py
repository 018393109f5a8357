"""ml_core.clip: MotionClip round trip and every refusal of the loader (one-line FommErrors)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from ml_core.clip import FORMAT_VERSION, MotionClip, load_clip
from ml_core.errors import FommError


def make_clip(t: int = 6, k: int = 4, **kw) -> MotionClip:
    rng = np.random.default_rng(0)
    args = dict(
        values=rng.uniform(-1, 1, (t, k, 2)),
        jacobians=np.eye(2) + rng.normal(0, 0.1, (t, k, 2, 2)),
        fps=29.97,
        frame_indices=np.arange(t) * 2 + 10,
        reference_frame=2,
        crop_box=(-10, 20, 300),
        video_size=(640, 360),
        num_kp=k,
        image_size=256,
        config_hash="abc123",
        checkpoint_hash="def456",
        source_path="/videos/take 1.mp4",
        crop_mode="auto",
        smoothing={"min_cutoff": 1.0, "beta": 20.0},
        notes=("a note",),
    )
    args.update(kw)
    return MotionClip(**args)


def test_round_trip(tmp_path):
    clip = make_clip()
    assert clip.values.dtype == np.float32 and clip.jacobians.dtype == np.float32
    path = clip.save(tmp_path / "c.npz")
    back = load_clip(path)
    for name in ("values", "jacobians", "frame_indices"):
        assert np.array_equal(getattr(back, name), getattr(clip, name))
    for name in (
        "fps",
        "reference_frame",
        "crop_box",
        "video_size",
        "num_kp",
        "image_size",
        "config_hash",
        "checkpoint_hash",
        "has_jacobians",
        "source_path",
        "crop_mode",
        "smoothing",
        "notes",
        "ml_core_version",
    ):
        assert getattr(back, name) == getattr(clip, name), name
    assert back.values.dtype == np.float32
    assert np.allclose(back.times, (np.arange(6) * 2 + 10) / 29.97)
    assert np.array_equal(back.reference_values, clip.values[2])
    px = back.to_pixels()
    assert np.allclose(px[..., 0], -10 + (clip.values[..., 0] + 1) * 150, atol=1e-4)
    with np.load(path, allow_pickle=False) as data:
        assert int(data["format_version"]) == FORMAT_VERSION
        assert json.loads(str(data["meta"]))["format"] == "fomm-motion-clip"


def test_without_jacobians(tmp_path):
    eye = np.broadcast_to(np.eye(2), (6, 4, 2, 2))
    clip = make_clip(jacobians=eye, has_jacobians=False)
    back = load_clip(clip.save(tmp_path / "c.npz"))
    assert back.has_jacobians is False and np.array_equal(back.jacobians, eye)
    with pytest.raises(FommError, match="not identity"):
        make_clip(has_jacobians=False)


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"values": np.zeros((6, 4, 3))}, "values must be"),
        ({"jacobians": np.zeros((6, 4, 2))}, "jacobians must be"),
        ({"frame_indices": np.arange(5)}, "frame_indices must be"),
        ({"frame_indices": np.array([0, 1, 1, 2, 3, 4])}, "strictly increasing"),
        ({"values": np.full((6, 4, 2), np.nan)}, "NaN"),
        ({"jacobians": np.full((6, 4, 2, 2), np.inf)}, "NaN or infinity"),
        ({"fps": 0.0}, "fps"),
        ({"reference_frame": 6}, "reference_frame"),
        ({"crop_box": (0, 0, 0)}, "crop_box"),
        ({"video_size": (0, 10)}, "video_size"),
        ({"num_kp": 5}, "num_kp"),
        ({"image_size": 0}, "image_size"),
        ({"values": np.zeros((0, 4, 2)), "jacobians": np.zeros((0, 4, 2, 2)), "frame_indices": []}, "T, K >= 1"),
    ],
)
def test_construction_validates(kw, msg):
    with pytest.raises(FommError, match=msg) as e:
        make_clip(**kw)
    assert "\n" not in str(e.value)


def rewrite(src, dst, **changes):
    """Copy a saved clip, replacing (or with None: dropping) members."""
    with np.load(src, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    for k, v in changes.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v
    with open(dst, "wb") as f:
        np.savez(f, **arrays)
    return dst


def meta_with(src, **changes):
    with np.load(src, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
    meta.update(changes)
    return np.array(json.dumps(meta))


def test_loader_refusals(tmp_path):
    good = make_clip().save(tmp_path / "good.npz")
    cases = {
        "newer": ({"format_version": np.array(FORMAT_VERSION + 1, np.int32)}, "newer than this version"),
        "v0": ({"format_version": np.array(0, np.int32)}, "unknown format version"),
        "noversion": ({"format_version": None}, "no format_version"),
        "novalues": ({"values": None}, "missing values"),
        "f64": ({"values": np.zeros((6, 4, 2))}, "values must be float32"),
        "f16jac": ({"jacobians": np.zeros((6, 4, 2, 2), np.float16)}, "jacobians must be float32"),
        "floatidx": ({"frame_indices": np.arange(6.0)}, "frame_indices must be integers"),
        "nan": ({"values": np.full((6, 4, 2), np.nan, np.float32)}, "NaN"),
        "shape": ({"jacobians": np.zeros((6, 4, 4), np.float32)}, "jacobians must be"),
        "box": ({"crop_box": np.array([1, 2])}, "crop_box must hold 3"),
        "metajson": ({"meta": np.array("{not json")}, "not valid JSON"),
        "metabytes": ({"meta": np.frombuffer(b"{}", np.uint8)}, "meta must be a JSON string"),
        "format": ({"meta": meta_with(good, format="something-else")}, "does not name the format"),
        "nofps": ({"meta": meta_with(good, fps=None)}, "meta fps has the wrong type"),
        "ref": ({"meta": meta_with(good, reference_frame=99)}, "reference_frame 99"),
        "hash": ({"meta": meta_with(good, config_hash=5)}, "config_hash has the wrong type"),
        "boolkp": ({"meta": meta_with(good, num_kp=True)}, "num_kp has the wrong type"),
    }
    for name, (changes, msg) in cases.items():
        path = rewrite(good, tmp_path / f"{name}.npz", **changes)
        with pytest.raises(FommError, match=msg) as e:
            load_clip(path)
        assert "\n" not in str(e.value), name


def test_loader_refuses_pickles_and_non_clips(tmp_path):
    good = make_clip().save(tmp_path / "good.npz")
    obj = np.empty(1, dtype=object)
    obj[0] = {"evil": True}
    pickled = rewrite(good, tmp_path / "pickled.npz", values=obj)
    with pytest.raises(FommError, match="pickles"):
        load_clip(pickled)
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(FommError, match="not an .npz archive"):
        load_clip(text)
    npy = tmp_path / "single.npz"
    with open(npy, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(FommError, match="not an .npz archive"):
        load_clip(npy)
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(FommError, match="damaged or truncated"):
        load_clip(cut)
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(FommError, match="empty"):
        load_clip(empty)
    with pytest.raises(FommError, match="not found"):
        load_clip(tmp_path / "missing.npz")
    with pytest.raises(FommError, match="folder"):
        load_clip(tmp_path)
    other = tmp_path / "other.npz"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("readme.txt", "hi")
    with pytest.raises(FommError, match="no format_version"):
        load_clip(other)


def test_save_is_atomic(tmp_path):
    clip = make_clip()
    clip.values[0, 0, 0] = np.nan  # broken after construction: save validates again
    with pytest.raises(FommError, match="NaN"):
        clip.save(tmp_path / "c.npz")
    assert list(tmp_path.iterdir()) == []


def test_numpy_only_modules_do_not_import_torch():
    code = (
        "import sys\n"
        "import ml_core.clip, ml_core.filters, ml_core.framing, ml_core.video, ml_core.geometry\n"
        "from ml_core import load_clip, MotionClip\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def _raw_member(name: str, descr: str, shape: tuple, payload: bytes = b"") -> tuple[str, bytes]:
    """An ``.npy`` member whose header declares ``shape`` of ``descr`` whatever the bytes that follow."""
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_2_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return f"{name}.npy", buf.getvalue() + payload


def _replace_members(src, dst, members: dict[str, bytes]):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.namelist():
            if item not in members:
                zout.writestr(item, zin.read(item))
        for item, data in members.items():
            zout.writestr(item, data)
    return dst


def test_tampered_clips_are_refused_before_allocating(tmp_path):
    """Issue 16, items 11/12: each case used to exhaust memory or end in a traceback (or, in Blender, a 27 TiB
    resample); each is now one line naming the problem."""
    good = make_clip().save(tmp_path / "good.npz")
    deep = "[" * 100_000 + "]" * 100_000
    cases = {
        "deep meta": ({"meta": np.array(deep)}, "meta is nested too deeply"),
        "frame 2^55": ({"frame_indices": np.arange(6, dtype=np.int64) + 2**55}, "beyond any 4-hour video"),
        "fps 1e-9": (
            {"meta": meta_with(good, fps=1e-9), "times": None, "format_version": np.array(1, np.int32)},
            "more than 4 hours",
        ),
        "times back": ({"times": np.array([0, 1, 2, 1.5, 3, 4], np.float64)}, "times must be finite"),
        "times nan": ({"times": np.full(6, np.nan)}, "times must be finite"),
        "times f32": ({"times": np.arange(6, dtype=np.float32)}, "times must be float64"),
        "zero jacobians": ({"jacobians": np.zeros((6, 4, 2, 2), np.float32)}, "Jacobians are singular"),
        "1e30 jacobians": ({"jacobians": np.full((6, 4, 2, 2), 1e30, np.float32)}, "beyond 10000"),
        "1e30 values": ({"values": np.full((6, 4, 2), 1e30, np.float32)}, "beyond 10000"),
        "no times in v2": ({"times": None}, "missing times"),
    }
    for name, (changes, msg) in cases.items():
        path = rewrite(good, tmp_path / f"{name}.npz", **changes)
        with pytest.raises(FommError, match=msg) as e:
            load_clip(path)
        assert "\n" not in str(e.value), name
    forged = {
        "10^12 elements": _raw_member("values", "<f4", (10**12 // 8, 4, 2)),
        "<U2000000000 meta": _raw_member("meta", "<U2000000000", ()),
        "object dtype": _raw_member("values", "|O", (6, 4, 2)),
    }
    for name, (member, data) in forged.items():
        path = _replace_members(good, tmp_path / f"{name}.npz", {member: data})
        with pytest.raises(FommError, match="larger than a clip holds|pickles") as e:
            load_clip(path)
        assert "\n" not in str(e.value), name


def test_npz_zip_bomb_is_refused_from_its_declared_size(tmp_path):
    """A 5 MB archive whose values member inflates to 1.1 GB: refused from the zip's and the array's header."""
    bomb = tmp_path / "bomb.npz"
    good = make_clip().save(tmp_path / "good.npz")
    n = 280_000_000 // 8
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zout:
        for item in zin.namelist():
            if item != "values.npy":
                zout.writestr(item, zin.read(item))
        with zout.open("values.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (n, 4, 2)})
            chunk, left = bytes(1 << 24), n * 4 * 2 * 4
            while left > 0:
                f.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
    assert bomb.stat().st_size < 10_000_000
    with pytest.raises(FommError, match="values declares 1120000128 bytes, more than a clip holds"):
        load_clip(bomb)


def test_version_1_clips_are_still_read(tmp_path):
    """Format 1 had no per-sample times: they are frame_indices / fps."""
    good = make_clip().save(tmp_path / "good.npz")
    old = rewrite(good, tmp_path / "v1.npz", times=None, format_version=np.array(1, np.int32))
    clip = load_clip(old)
    assert np.allclose(clip.times, (np.arange(6) * 2 + 10) / 29.97)
    vfr = make_clip(sample_times=[0.0, 0.1, 0.15, 1.0, 1.2, 6.0])
    assert np.array_equal(load_clip(vfr.save(tmp_path / "vfr.npz")).times, [0.0, 0.1, 0.15, 1.0, 1.2, 6.0])


def test_info_describes_a_clip(tmp_path, capsys):
    """docs/troubleshooting.md recommends `ml_core info CLIP.npz`; it used to fail inside torch."""
    from ml_core.cli import main

    path = make_clip(sample_times=[0.0, 0.1, 0.15, 1.0, 1.2, 6.0]).save(tmp_path / "c.npz")
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"motion clip: {path}" in out and "6 (video frames 10-20), 6.000 s" in out
    assert "config hash abc123, checkpoint hash def456" in out


def test_save_never_deletes_a_folder(tmp_path):
    """Issue 16, item 1: MotionClip.save (used by extract and the worker's jobs) onto an existing folder."""
    folder = tmp_path / "c.npz"
    folder.mkdir()
    (folder / "keep").write_text("mine")
    with pytest.raises(FommError, match="is an existing folder: give a new file name"):
        make_clip().save(folder)
    assert (folder / "keep").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]
