"""Packaging: build_addon.py makes extension zips that Blender's validator accepts and that install, enable
and run in a clean Blender user directory (the bpy module in a subprocess, ``BLENDER_USER_RESOURCES`` set
to an empty folder).

The lean build (ml_core + scipy, no torch) is tested on Blender 5.0 (.venv) and 4.5 (.venv-bpy45), its
5.1-up zip (Python 3.13) on Blender 5.2 LTS when .venv-bpy52 exists (``make venv52``); the full linux-x64
build (torch, opencv, ...) is ``slow``: it extracts motion from a video in the clean install with a bare
interpreter that sees only the extension's wheels (and a numpy standing in for the one Blender ships).
Wheels are cached in ``.cache/build_addon`` between runs (the first run downloads what the cache lacks;
torch comes from the local wheel).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest

import build_addon

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "build_addon.py"
SESSION = Path(__file__).parent / "packaging" / "blender_session.py"
PY = sys.executable
PY45 = REPO / ".venv-bpy45" / "bin" / "python"
PY52 = REPO / ".venv-bpy52" / "bin" / "python"
# A Blender version's venv counts once its requirements installed (the Makefile's stamp): on a machine without that
# Python or bpy wheel the venv is missing or half made, and its tests are skipped with the reason.
HAVE45 = (REPO / ".venv-bpy45" / ".installed").is_file() and PY45.exists()
HAVE52 = (REPO / ".venv-bpy52" / ".installed").is_file() and PY52.exists()
FIXTURES = REPO / "tests" / "data" / "fomm_reference"
MODULE = "bl_ext.user_default.fomm_mocap"
LEAN_ZIP = "fomm_mocap-0.1.0-lean-linux_x64-blender4.4-5.0.zip"
FULL_ZIP = "fomm_mocap-0.1.0-linux_x64-blender4.4-5.0.zip"


def _blender_ext() -> Path:
    return build_addon.find_blender_ext()


def run_build(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([PY, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)


def run_session(python: Path | str, user_dir: Path, spec: dict, extra_env: dict | None = None) -> tuple[dict, str]:
    """Run tests/packaging/blender_session.py with a clean Blender user directory; its RESULT and output."""
    user_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FOMM_", "PYTHON"))}
    env["BLENDER_USER_RESOURCES"] = str(user_dir)
    env.update(extra_env or {})
    # cwd: a folder without ml_core in it (``python -m`` puts the working directory first on the path)
    proc = subprocess.run(
        [str(python), str(SESSION), json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=user_dir.parent,
    )
    text = proc.stdout + proc.stderr
    results = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and results, f"Blender session failed:\n{text[-4000:]}"
    return json.loads(results[-1][len("RESULT ") :]), text


def zip_manifest(path: Path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return tomllib.loads(zf.read("blender_manifest.toml").decode("utf-8"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def no_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix == ".zip" or ".partial" in p.name)


# --------------------------------------------------------------------------------------------------
# The manifest template and the build's tables
# --------------------------------------------------------------------------------------------------


def test_manifest_template_fields():
    m = build_addon.load_manifest()
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert m["schema_version"] == "1.0.0" and m["type"] == "add-on"
    assert re.fullmatch(r"[a-z][a-z0-9_]*", m["id"])
    assert m["license"] == [f"SPDX:{pyproject['project']['license']}"]
    assert m["version"] == pyproject["project"]["version"]
    # slotted actions (blender_fomm/anim.py) need 4.4
    assert build_addon.parse_version(m["blender_version_min"]) >= (4, 4, 0)
    assert set(m["permissions"]) == {"files"}, "only file access: read videos, write clips and previews"
    assert set(m["platforms"]) <= set(build_addon.PLATFORMS)
    assert "wheels" not in m, "the build writes the wheels list"


def test_manifest_template_passes_blender_validator(tmp_path):
    """The template (with an add-on beside it) is what Blender's validator wants, before any build."""
    (tmp_path / "__init__.py").write_text("def register():\n    pass\n\n\ndef unregister():\n    pass\n")
    (tmp_path / "blender_manifest.toml").write_text((REPO / "blender_manifest.toml").read_text())
    out = build_addon.run_blender_ext(_blender_ext(), "validate", str(tmp_path))
    assert "Success" in out


def test_pins_follow_requirements():
    """The Blender 4.4-5.0 wheels are the versions the project is tested with (requirements.txt)."""
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        req = line.split("#")[0].strip()
        if req:
            name = re.split(r"[<>=!~ ]", req, maxsplit=1)[0].lower()
            pins[name] = req.replace(" ", "")
    r311 = build_addon.range_for_blender("5.0")
    assert r311.python == "3.11" and r311.numpy == pins["numpy"]
    assert pins["torch"] == build_addon.TORCH
    full = {re.split(r"[<>=!~ ]", r, maxsplit=1)[0].lower(): r for r in r311.full}
    for name in ("opencv-python-headless", "scipy", "safetensors", "tqdm", "pyyaml", "av"):
        assert full[name] == pins[name], name
    assert r311.lean == (pins["scipy"],)


def test_blender_ranges_pick_the_right_python():
    assert build_addon.range_for_blender("4.4").python == "3.11"
    assert build_addon.range_for_blender("4.5.4").python == "3.11"
    assert build_addon.range_for_blender("5.0").python == "3.11"
    assert build_addon.range_for_blender("5.1").python == "3.13"
    assert build_addon.range_for_blender("6.2").python == "3.13"
    m = build_addon.load_manifest()
    targets = build_addon.make_targets(m, ["linux-x64", "windows-x64"], [], lean=False)
    spans = {(t.platform, t.blender_min, t.blender_max, t.range.python) for t in targets}
    assert spans == {
        ("linux-x64", "4.4.0", "5.1.0", "3.11"),
        ("windows-x64", "4.4.0", "5.1.0", "3.11"),
        ("linux-x64", "5.1.0", None, "3.13"),
        ("windows-x64", "5.1.0", None, "3.13"),
    }
    # 4.5 and 5.0 are one range: one zip
    assert len(build_addon.make_targets(m, ["linux-x64"], ["4.5", "5.0"], lean=True)) == 1
    names = {t.zip_name("fomm_mocap", "0.1.0") for t in targets}
    assert "fomm_mocap-0.1.0-linux_x64-blender4.4-5.0.zip" in names
    assert "fomm_mocap-0.1.0-windows_x64-blender5.1-up.zip" in names


@pytest.mark.parametrize(
    ("wheel", "platform", "blender", "fits", "macos_min"),
    [
        ("torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", "linux-x64", "5.0", True, 12),
        ("torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", "linux-x64", "5.1", False, 12),
        ("torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", "windows-x64", "5.0", False, 12),
        ("scipy-1.15.3-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", "linux-x64", "4.5", True, 12),
        ("opencv_python_headless-4.11.0.86-cp37-abi3-win_amd64.whl", "windows-x64", "5.1", True, 12),
        ("opencv_python_headless-4.11.0.86-cp37-abi3-manylinux_2_17_aarch64.whl", "linux-x64", "5.0", False, 12),
        ("numpy-2.3.0-cp313-cp313-macosx_14_0_arm64.whl", "macos-arm64", "5.1", True, 14),
        ("numpy-2.3.0-cp313-cp313-macosx_14_0_arm64.whl", "macos-arm64", "5.1", False, 12),
        ("scipy-1.15.3-cp311-cp311-macosx_12_0_arm64.whl", "macos-arm64", "5.0", True, 12),
        ("pyyaml-6.0.2-cp311-cp311-macosx_10_9_universal2.whl", "macos-arm64", "4.5", True, 12),
        ("tqdm-4.67.1-py3-none-any.whl", "windows-x64", "5.1", True, 12),
        ("markupsafe-3.0.2-cp312-cp312-win_amd64.whl", "windows-x64", "5.1", False, 12),
    ],
)
def test_wheel_fits_matches_blender_rules(wheel, platform, blender, fits, macos_min):
    target = build_addon.Target(platform, build_addon.range_for_blender(blender), "4.4.0", None, False, macos_min)
    assert build_addon.wheel_fits(wheel, target) is fits


def test_generated_manifest_round_trips():
    m = build_addon.load_manifest()
    target = build_addon.make_targets(m, ["linux-x64"], ["5.0"], lean=True)[0]
    data = build_addon.build_manifest(m, target, ["a-1.0-py3-none-any.whl"])
    parsed = tomllib.loads(build_addon.dump_manifest(data))
    assert parsed == data
    assert parsed["blender_version_max"] == "5.1.0" and parsed["platforms"] == ["linux-x64"]
    assert parsed["wheels"] == ["./wheels/a-1.0-py3-none-any.whl"]
    assert parsed["name"].endswith("(lean)")


# --------------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, nothing written
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--platform", "amiga-m68k"], "unknown platform 'amiga-m68k'"),
        (["--blender", "4.3"], "older than the add-on supports"),
        (["--blender", "five"], "not a Blender version"),
        (["--wheelhouse", "/nonexistent/wheels"], "wheelhouse folder not found"),
        (["--blender-ext", "/nonexistent/blender_ext.py"], "extension tool not found"),
        (["--macos-min", "9"], "not a macOS version"),
        (["--macos-min", "fourteen"], "invalid int value"),
        (["--no-such-option"], "unrecognized arguments"),
    ],
)
def test_bad_arguments(tmp_path, args, message):
    out = tmp_path / "dist"
    proc = run_build("--output", str(out), "--lean", *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert not out.exists() or no_leftovers(out) == []


def test_wheelhouse_missing_a_wheel(tmp_path):
    """Offline from a wheelhouse without scipy: names the wheel and how to add it; no zip, no listing."""
    house = tmp_path / "wheelhouse"
    house.mkdir()
    out = tmp_path / "dist"
    proc = run_build(
        "--output",
        str(out),
        "--lean",
        "--blender",
        "5.0",
        "--platform",
        "windows-x64",
        "--wheelhouse",
        str(house),
        "--cache",
        str(tmp_path / "cache"),
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no wheel of scipy" in lines[0] and str(house) in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert no_leftovers(out) == [] and not (out / "index.json").exists()


# --------------------------------------------------------------------------------------------------
# The lean build
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lean_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("lean") / "dist"
    proc = run_build("--output", str(out), "--lean", "--blender", "5.0", "--platform", "linux-x64")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


def test_lean_build_contents(lean_build):
    out, log = lean_build
    zip_path = out / LEAN_ZIP
    assert sorted(p.name for p in out.iterdir()) == sorted([LEAN_ZIP, "index.json", "index.html"])
    assert "validating" in log and "[3/3] repository listing" in log
    # Blender's validator, run again on the finished zip
    assert "Success" in build_addon.run_blender_ext(_blender_ext(), "validate", str(zip_path))
    m = zip_manifest(zip_path)
    assert m["platforms"] == ["linux-x64"]
    assert (m["blender_version_min"], m["blender_version_max"]) == ("4.4.0", "5.1.0")
    wheels = sorted(Path(w).name.split("-")[0].lower() for w in m["wheels"])
    assert wheels == ["fomm_ml_core", "scipy"], "lean: ml_core + scipy only (numpy is Blender's)"
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
        info = json.loads(zf.read(build_addon.BUILD_INFO))
        ml_wheel = next(n for n in names if n.startswith("wheels/fomm_ml_core-"))
        with zf.open(ml_wheel) as fh, zipfile.ZipFile(fh) as wz:
            ml_files = set(wz.namelist())
    assert info["flavor"] == "lean" and info["worker_python_required"] is True
    addon_files = {
        p.relative_to(REPO / "blender_fomm").as_posix()
        for p in (REPO / "blender_fomm").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert addon_files <= names and "__init__.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names | ml_files)
    assert {"ml_core/__init__.py", "ml_core/worker.py", "ml_core/clip.py", "ml_core/retarget.py"} <= ml_files
    # the repository listing points at the zip with its hash and size
    listing = json.loads((out / "index.json").read_text())
    (entry,) = listing["data"]
    assert entry["archive_url"] == f"./{LEAN_ZIP}"
    assert entry["archive_hash"] == f"sha256:{sha256(zip_path)}"
    assert entry["archive_size"] == zip_path.stat().st_size
    assert entry["python_versions"] == ["3.11"]


def _check_lean_session(res: dict, user_dir: Path) -> None:
    assert res["install"] == ["FINISHED"] and res["enabled"], res
    local = user_dir / "extensions" / ".local" / "lib" / "python3.11" / "site-packages"
    assert str(local) in res["local_site_packages"], "Blender puts the wheels in the clean user folder"
    assert res["ml_core_file"] == str(local / "ml_core" / "__init__.py"), "ml_core must come from the extension"
    assert res["addon_dir"] == str(user_dir / "extensions" / "user_default" / "fomm_mocap")
    assert not (local / "torch").exists() and not (local / "numpy").exists()
    assert res["bake_ret"] == ["FINISHED"], res
    baked, expected = np.array(res["baked"]), np.array(res["expected"])
    assert expected.max() > 0.5 and expected.min() == 0.0, "the test clip must open the jaw"
    np.testing.assert_allclose(baked, expected, atol=1e-4)


def test_lean_installs_enables_and_bakes_blender_50(lean_build, tmp_path):
    out, _ = lean_build
    user = tmp_path / "user"
    res, text = run_session(
        PY,
        user,
        {"zip": str(out / LEAN_ZIP), "bake": True, "probe": True, "workdir": str(tmp_path)},
        # the lean build's worker runs in a Python the user points it at: here .venv's (ml_core + torch)
        extra_env={"FOMM_WORKER_PYTHON": PY},
    )
    assert res["blender"].startswith("5.0")
    _check_lean_session(res, user)
    assert res["probe_ret"] == ["FINISHED"], text[-3000:]
    assert re.search(r"torch 2\.\d+", text), text[-3000:]


@pytest.mark.skipif(not HAVE45, reason="needs .venv-bpy45 installed (make venv45: Python 3.11 and the bpy 4.5 wheel)")
def test_lean_installs_enables_and_bakes_blender_45(lean_build, tmp_path):
    out, _ = lean_build
    user = tmp_path / "user"
    res, _ = run_session(PY45, user, {"zip": str(out / LEAN_ZIP), "bake": True, "workdir": str(tmp_path)})
    assert res["blender"].startswith("4.5")
    _check_lean_session(res, user)


def test_lean_installs_from_the_repository_listing(lean_build, tmp_path):
    """The output folder as a studio would host it: Blender adds it as a remote repository (file:// here,
    https:// on a web server), syncs index.json and installs the extension from it."""
    out, _ = lean_build
    user = tmp_path / "user"
    res, text = run_session(PY, user, {"repo_url": (out / "index.json").as_uri()})
    assert res["sync"] == ["FINISHED"] and res["install"] == ["FINISHED"], text[-3000:]
    assert res["module"] == "bl_ext.studio.fomm_mocap" and res["enabled"], res
    local = user / "extensions" / ".local" / "lib" / "python3.11" / "site-packages"
    assert res["ml_core_file"] == str(local / "ml_core" / "__init__.py")


def test_blender_51_build_targets_python_313_and_is_refused_by_50(tmp_path):
    """Blender 5.1+ runs Python 3.13: its zip carries cp313 wheels, declares 5.1.0+, and Blender 5.0 refuses it."""
    out = tmp_path / "dist"
    proc = run_build("--output", str(out), "--lean", "--blender", "5.1", "--platform", "linux-x64")
    assert proc.returncode == 0, proc.stderr
    zip_path = out / "fomm_mocap-0.1.0-lean-linux_x64-blender5.1-up.zip"
    m = zip_manifest(zip_path)
    assert m["blender_version_min"] == "5.1.0" and "blender_version_max" not in m
    scipy_wheel = next(Path(w).name for w in m["wheels"] if "scipy" in w)
    assert "-cp313-cp313-" in scipy_wheel
    assert json.loads((out / "index.json").read_text())["data"][0]["python_versions"] == ["3.13"]
    user = tmp_path / "user"
    res, text = run_session(PY, user, {"zip": str(zip_path)})
    assert not res["enabled"] and "minimum supported version (5.1.0)" in text
    assert not (user / "extensions" / ".local" / "lib" / "python3.11" / "site-packages" / "ml_core").exists()


@pytest.mark.skipif(not HAVE52, reason="needs .venv-bpy52 installed (make venv52: Python 3.13 and the bpy 5.2 wheel)")
def test_blender_51_build_installs_enables_and_bakes_blender_52(tmp_path):
    """The 5.1-up lean zip (cp313 wheels) on Blender 5.2 LTS: installs, enables, bakes, probes the worker."""
    out = tmp_path / "dist"
    proc = run_build("--output", str(out), "--lean", "--blender", "5.2", "--platform", "linux-x64")
    assert proc.returncode == 0, proc.stderr
    zip_path = out / "fomm_mocap-0.1.0-lean-linux_x64-blender5.1-up.zip"
    user = tmp_path / "user"
    res, text = run_session(
        PY52,
        user,
        {"zip": str(zip_path), "bake": True, "probe": True, "workdir": str(tmp_path)},
        extra_env={"FOMM_WORKER_PYTHON": PY},
    )
    assert res["blender"].startswith("5.2") and res["python"].startswith("3.13")
    assert res["install"] == ["FINISHED"] and res["enabled"], res
    local = user / "extensions" / ".local" / "lib" / "python3.13" / "site-packages"
    assert res["ml_core_file"] == str(local / "ml_core" / "__init__.py"), "ml_core must come from the extension"
    assert res["bake_ret"] == ["FINISHED"], res
    np.testing.assert_allclose(np.array(res["baked"]), np.array(res["expected"]), atol=1e-4)
    assert res["probe_ret"] == ["FINISHED"], text[-3000:]


def test_interrupt_leaves_no_zip(tmp_path):
    """Ctrl-C while the zip is being validated: no zip, no temporary, no staging folder left."""
    out = tmp_path / "dist"

    def say(msg: str) -> None:
        if msg.strip().startswith("validating"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_addon.build(out, platforms=["linux-x64"], blenders=["5.0"], lean=True, say=say)
    assert no_leftovers(out) == []
    assert not [p for p in build_addon.DEFAULT_CACHE.glob("*") if p.name.startswith(("stage-", "resolve-"))]


def test_rebuild_replaces_the_zip_for_the_same_slot(lean_build, tmp_path):
    """A repository holds one zip per id, platform and Blender range: a rebuild (any flavor) replaces it."""
    out, _ = lean_build
    repo = tmp_path / "repo"
    repo.mkdir()
    stale = repo / "fomm_mocap-0.0.9-lean-linux_x64-blender4.4-5.0.zip"
    stale.write_bytes((out / LEAN_ZIP).read_bytes())
    other = repo / "fomm_mocap-0.1.0-windows_x64-blender4.4-5.0.zip"
    with zipfile.ZipFile(out / LEAN_ZIP) as src, zipfile.ZipFile(other, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "blender_manifest.toml":
                data = data.replace(b'platforms = ["linux-x64"]', b'platforms = ["windows-x64"]')
            dst.writestr(item, data)
    proc = run_build("--output", str(repo), "--lean", "--blender", "4.5", "--platform", "linux-x64")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in repo.glob("*.zip")) == sorted([LEAN_ZIP, other.name])
    listing = json.loads((repo / "index.json").read_text())
    assert sorted(e["platforms"][0] for e in listing["data"]) == ["linux-x64", "windows-x64"]


# --------------------------------------------------------------------------------------------------
# The full build (torch inside): slow
# --------------------------------------------------------------------------------------------------


def _write_video(path: Path, frames: int = 8, size: int = 64) -> None:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (size, size))
    for t in range(frames):
        img = np.full((size, size, 3), 40, np.uint8)
        cv2.circle(img, (20 + 3 * t, 32), 10, (200, 180, 160), -1)
        writer.write(img)
    writer.release()


def _bare_python(tmp: Path) -> Path:
    """A Python with nothing installed (a venv without pip from the base interpreter)."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(tmp / "bare")], check=True)
    return tmp / "bare" / "bin" / "python"


def _numpy_only(tmp: Path) -> Path:
    """A folder holding only numpy: stands in for the numpy Blender's own Python ships."""
    folder = tmp / "blender-numpy"
    folder.mkdir()
    src = Path(np.__file__).parent
    (folder / "numpy").symlink_to(src)
    if (src.parent / "numpy.libs").is_dir():
        (folder / "numpy.libs").symlink_to(src.parent / "numpy.libs")
    return folder


@pytest.mark.slow
def test_full_build_extracts_motion_in_a_clean_install(tmp_path):
    out = tmp_path / "dist"
    proc = run_build("--output", str(out), "--blender", "5.0", "--platform", "linux-x64", timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    zip_path = out / FULL_ZIP
    assert "Success" in build_addon.run_blender_ext(_blender_ext(), "validate", str(zip_path))
    m = zip_manifest(zip_path)
    bundled = {Path(w).name.split("-")[0].lower() for w in m["wheels"]}
    wanted = {"fomm_ml_core", "torch", "opencv_python_headless", "scipy", "safetensors", "tqdm", "pyyaml", "av"}
    assert wanted <= bundled
    assert "numpy" not in bundled

    user = tmp_path / "user"
    local = user / "extensions" / ".local" / "lib" / "python3.11" / "site-packages"
    bare = _bare_python(tmp_path)
    numpy_dir = _numpy_only(tmp_path)
    video = tmp_path / "face.mp4"
    _write_video(video)
    config = tmp_path / "tiny-64.yaml"
    config.write_text((FIXTURES / "tiny.yaml").read_text() + "\ndataset_params:\n  frame_shape: [64, 64, 3]\n")

    # Without the extension's packages the bare worker has no torch: whatever it runs, it got from there.
    probe = subprocess.run(
        [str(bare), "-c", "import torch"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(numpy_dir), "PATH": os.environ.get("PATH", "")},
    )
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr

    res, text = run_session(
        PY,
        user,
        {
            "zip": str(zip_path),
            "workdir": str(tmp_path),
            "extract": {"video": str(video), "worker_pythonpath": [str(local), str(numpy_dir)]},
        },
        extra_env={
            "FOMM_WORKER_PYTHON": str(bare),
            "FOMM_CHECKPOINT": str(FIXTURES / "tiny-cpk.pth.tar"),
            "FOMM_CONFIG": str(config),
            "FOMM_DEVICE": "cpu",
            "FOMM_CACHE_DIR": str(tmp_path / "cache"),
        },
    )
    assert res["install"] == ["FINISHED"] and res["enabled"], res
    assert res["extract_ret"] == ["FINISHED"], text[-4000:]
    assert res["extract_report"].startswith("extracted 8 frames"), res
    clip_path = Path(res["clip_path"])
    assert clip_path.is_file() and clip_path.parent.parent == tmp_path / "cache"

    # The same interpreter and path the worker had: every package from the extension's folder.
    where = subprocess.run(
        [
            str(bare),
            "-c",
            "import json, torch, cv2, av, scipy, yaml, safetensors, tqdm, ml_core, numpy; "
            "print(json.dumps({m.__name__: m.__file__ for m in (torch, cv2, av, scipy, yaml, safetensors, tqdm, "
            "ml_core, numpy)}))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={"PYTHONPATH": os.pathsep.join([str(local), str(numpy_dir)]), "PATH": os.environ.get("PATH", "")},
    )
    files = json.loads(where.stdout)
    for name in ("torch", "cv2", "av", "scipy", "yaml", "safetensors", "tqdm", "ml_core"):
        assert files[name].startswith(str(local) + os.sep), (name, files[name])
    assert files["numpy"].startswith(str(numpy_dir))

    from ml_core.clip import load_clip

    clip = load_clip(clip_path)
    assert clip.num_frames == 8 and clip.num_kp == 5 and clip.values.shape == (8, 5, 2)
    assert np.isfinite(clip.values).all()
    shutil.rmtree(user)  # 1.3 GB installed; pytest keeps its last temporary folders
    shutil.rmtree(out)
