#!/usr/bin/env python3
"""Build the FOMM Blender extension: validated zips per platform and Blender range, plus a repository listing.

    python build_addon.py --output dist/ [--platform linux-x64 ...] [--blender 5.0 ...] [--lean]
                          [--wheelhouse DIR] [--cache DIR] [--torch SPEC] [--index-url URL ...]

Each zip holds the add-on (``blender_fomm/``), the manifest (``blender_manifest.toml`` filled in for the
build) and ``wheels/``: ml_core as a wheel of this project plus the third-party wheels it needs, for one
platform and one Python. Blender 4.2-5.0 run Python 3.11 and 5.1+ run 3.13, so each zip declares the
Blender range whose Python its wheels are built for (one zip per range). Blender's own numpy is used,
never bundled. ``--lean`` leaves out torch and opencv (and the rest of the worker's needs): Blender's
process then only needs ml_core + scipy, and the add-on's worker runs in a Python the user points it at.

Wheels come from ``--wheelhouse DIR`` (offline: nothing else is consulted) or else from the download
cache (``--cache``, default ``.cache/build_addon``) and, for what is missing there, from the package
index with ``pip download --only-binary=:all: --platform ... --python-version ...``.
Every zip is built with Blender's extension tool (``blender_ext.py build``, shipped in the ``bpy``
wheel), checked with ``blender_ext.py validate`` and by this script (every wheel present, tags match the
platform and Python), and only then moved into the output folder. A zip already there for the same
id, platform and Blender range is replaced. Finally ``blender_ext.py server-generate --html`` writes
``index.json`` and ``index.html`` so a studio can host the folder as an extension repository.

Expected failures print ``error: <one line>`` and exit 2; Ctrl-C exits 130; neither leaves a zip behind.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

REPO = Path(__file__).resolve().parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ml_core.errors import FommError  # noqa: E402
from ml_core.fileio import atomic_path  # noqa: E402

ADDON_DIR = REPO / "blender_fomm"
MANIFEST_TEMPLATE = REPO / "blender_manifest.toml"
DEFAULT_CACHE = REPO / ".cache" / "build_addon"
BUILD_INFO = "fomm_build.json"  # written into the extension root: what this build holds

# Keep in step with requirements.txt (the 3.11 pins are checked by tests/test_packaging.py).
TORCH = "torch==2.13.0"

# Packages Blender's own Python ships: used from Blender, never bundled (a second numpy in the
# extension's site-packages would shadow or clash with Blender's).
BLENDER_PROVIDED = frozenset({"numpy"})


@dataclass(frozen=True)
class PythonRange:
    """A run of Blender releases sharing one Python (and numpy): one zip per platform each."""

    python: str  # "3.11"
    blender_min: str  # first Blender release on this Python
    blender_max: str | None  # first release NOT on it (exclusive, as the manifest's blender_version_max)
    last: str | None  # last release on it, for file names ("5.0")
    numpy: str  # the numpy Blender ships in this range: a constraint for resolving, never bundled
    full: tuple[str, ...]  # the worker's third-party requirements (resolved with their dependencies)
    lean: tuple[str, ...]  # what Blender's own process needs besides numpy (ml_core.retarget/geometry)

    @property
    def tag(self) -> str:
        return "cp" + self.python.replace(".", "")


RANGES: tuple[PythonRange, ...] = (
    PythonRange(
        python="3.11",
        blender_min="4.2.0",
        blender_max="5.1.0",
        last="5.0",
        numpy="numpy>=1.26,<2",
        full=(
            TORCH,
            "opencv-python-headless==4.11.0.86",
            "scipy>=1.13,<1.16",
            "safetensors>=0.4",
            "tqdm>=4.66",
            "pyyaml>=6.0",
            "av>=14",
        ),
        lean=("scipy>=1.13,<1.16",),
    ),
    PythonRange(
        python="3.13",
        blender_min="5.1.0",
        blender_max=None,
        last=None,
        numpy="numpy>=2",
        # OpenCV 5 dropped CascadeClassifier and the Haar cascades the automatic face box uses: stay on 4.x.
        full=(
            TORCH,
            "opencv-python-headless>=4.12,<5",
            "scipy>=1.14.1",
            "safetensors>=0.4",
            "tqdm>=4.66",
            "pyyaml>=6.0",
            "av>=14",
        ),
        lean=("scipy>=1.14.1",),
    ),
)


def _linux(arch: str, oldest: int) -> tuple[str, ...]:
    # Blender 4.2+ needs glibc 2.28, so manylinux_2_28 is the newest tag a user's system is sure to take.
    legacy = {"x86_64": ("manylinux2014", "manylinux2010", "manylinux1"), "aarch64": ("manylinux2014",)}[arch]
    return (*(f"manylinux_2_{m}_{arch}" for m in range(28, oldest - 1, -1)), *(f"{t}_{arch}" for t in legacy))


# Blender platform name -> pip platform tags (newest first).
PLATFORMS: dict[str, tuple[str, ...]] = {
    "linux-x64": _linux("x86_64", 5),
    "linux-arm64": _linux("aarch64", 17),
    "windows-x64": ("win_amd64",),
    "macos-arm64": (),  # see platform_tags(): depends on the oldest macOS to support
}

MACOS_MIN = 12


def platform_tags(platform: str, macos_min: int = MACOS_MIN) -> tuple[str, ...]:
    """pip platform tags for a Blender platform, the preferred first.

    macOS: only wheels for ``macos_min`` and older. A wheel tagged for a newer macOS than the user's
    fails to load (Blender's installer does not check), and pip prefers the newest tag it is offered.
    Blender itself needs macOS 11.2+, but scipy has no macOS 11 arm64 wheels since 1.9, hence 12; newer
    torch releases are tagged for macOS 14 (pass ``--macos-min 14`` for those).
    """
    if platform == "macos-arm64":
        versions = range(max(macos_min, 11), 10, -1)
        return (
            *(f"macosx_{v}_0_arm64" for v in versions),
            *(f"macosx_{v}_0_universal2" for v in versions),
            *(f"macosx_10_{v}_universal2" for v in range(15, 8, -1)),
        )
    return PLATFORMS[platform]


Progress = Callable[[str], None]


def this_platform() -> str:
    """Blender's name for the platform this script runs on (``linux-x64``, ``macos-arm64``, ...)."""
    import platform

    system = {"darwin": "macos"}.get(platform.system().lower(), platform.system().lower())
    machine = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    return f"{system}-{machine}"


def _say(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------------------------------
# Versions and ranges
# --------------------------------------------------------------------------------------------------


def parse_version(text: str) -> tuple[int, int, int]:
    parts = text.strip().split(".")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise FommError(f"not a Blender version: {text!r}; write it like 4.5 or 5.0.1")
    nums = [int(p) for p in parts] + [0] * (3 - len(parts))
    return nums[0], nums[1], nums[2]


def _vstr(v: tuple[int, int, int]) -> str:
    return f"{v[0]}.{v[1]}.{v[2]}"


def range_for_blender(version: str) -> PythonRange:
    v = parse_version(version)
    for r in RANGES:
        if parse_version(r.blender_min) <= v and (r.blender_max is None or v < parse_version(r.blender_max)):
            return r
    raise FommError(f"Blender {version} is older than any range this build knows (4.2+); use 4.4 or newer")


@dataclass(frozen=True)
class Target:
    """One zip: a platform, a Python range clipped to the add-on's own minimum Blender."""

    platform: str
    range: PythonRange
    blender_min: str
    blender_max: str | None
    lean: bool
    macos_min: int = MACOS_MIN

    @property
    def pip_platforms(self) -> tuple[str, ...]:
        return platform_tags(self.platform, self.macos_min)

    @property
    def label(self) -> str:
        lo = ".".join(self.blender_min.split(".")[:2])
        span = f"{lo}-{self.range.last}" if self.range.last else f"{lo}-up"
        return f"blender{span}"

    def zip_name(self, ext_id: str, version: str) -> str:
        flavor = "-lean" if self.lean else ""
        return f"{ext_id}-{version}{flavor}-{self.platform.replace('-', '_')}-{self.label}.zip"


def make_targets(
    manifest: dict, platforms: Sequence[str], blenders: Sequence[str], lean: bool, macos_min: int = MACOS_MIN
) -> list[Target]:
    add_min = parse_version(manifest["blender_version_min"])
    add_max = parse_version(manifest["blender_version_max"]) if manifest.get("blender_version_max") else None
    if blenders:
        ranges: list[PythonRange] = []
        for b in blenders:
            if parse_version(b) < add_min:
                raise FommError(
                    f"Blender {b} is older than the add-on supports ({manifest['blender_version_min']}): "
                    "pick --blender 4.4 or newer"
                )
            r = range_for_blender(b)
            if r not in ranges:
                ranges.append(r)
    else:
        ranges = list(RANGES)
    targets = []
    for r in ranges:
        lo = max(parse_version(r.blender_min), add_min)
        hi_opts = [v for v in (parse_version(r.blender_max) if r.blender_max else None, add_max) if v is not None]
        hi = min(hi_opts) if hi_opts else None
        if hi is not None and lo >= hi:
            continue  # the add-on does not run on any Blender of this range
        for p in platforms:
            targets.append(Target(p, r, _vstr(lo), _vstr(hi) if hi else None, lean, macos_min))
    if not targets:
        raise FommError("no Blender range left to build for: check --blender and the manifest's version range")
    return targets


# --------------------------------------------------------------------------------------------------
# Blender's extension tool
# --------------------------------------------------------------------------------------------------


def find_blender_ext(explicit: str | None = None) -> Path:
    """``blender_ext.py`` from the bpy wheel installed beside this Python (newest Blender version)."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FommError(f"Blender's extension tool not found at {path}: pass the path of blender_ext.py")
        return path
    found: list[Path] = []
    for site in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *sys.path}:
        if site and os.path.isdir(os.path.join(site, "bpy")):
            found += [
                Path(p)
                for p in glob.glob(
                    os.path.join(site, "bpy", "*", "scripts", "addons_core", "bl_pkg", "cli", "blender_ext.py")
                )
            ]
    if not found:
        raise FommError(
            "Blender's extension tool (blender_ext.py) not found: install the bpy wheel in this Python "
            "(pip install bpy==5.0.1) or pass --blender-ext PATH"
        )

    def key(p: Path) -> tuple[int, ...]:
        with contextlib.suppress(FommError):
            return parse_version(p.parents[4].name)
        return (0, 0, 0)

    return max(found, key=key)


def run_blender_ext(tool: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(tool), *args], capture_output=True, text=True)
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        last = " | ".join(line.strip() for line in out.splitlines()[-3:]) or f"exit code {proc.returncode}"
        raise FommError(f"Blender's extension tool failed on {args[0]}: {last}")
    return out


# --------------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------------


def load_manifest(path: Path = MANIFEST_TEMPLATE) -> dict:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise FommError(f"manifest template missing: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise FommError(f"manifest template {path} is not valid TOML: {exc}") from None
    for key in ("id", "version", "name", "blender_version_min", "type"):
        if not data.get(key):
            raise FommError(f"manifest template {path} lacks {key!r}")
    return data


def _toml_value(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def dump_manifest(data: dict) -> str:
    """TOML text for a manifest (strings, lists and one level of tables, which is all the schema uses)."""
    lines = ["# Generated by build_addon.py from blender_manifest.toml; do not edit."]
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    lines += [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for name, table in tables.items():
        lines += ["", f"[{name}]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def build_manifest(template: dict, target: Target, wheels: Sequence[str]) -> dict:
    data: dict = {}
    for key, value in template.items():
        if key in ("build", "blender_version_max"):
            continue
        data[key] = value
        if key == "blender_version_min":
            data[key] = target.blender_min
            if target.blender_max:
                data["blender_version_max"] = target.blender_max
    data["platforms"] = [target.platform]
    data["wheels"] = [f"./wheels/{name}" for name in wheels]
    if target.lean:
        data["name"] = f"{template['name']} (lean)"
    return data


# --------------------------------------------------------------------------------------------------
# Wheels
# --------------------------------------------------------------------------------------------------


def wheel_tags(filename: str) -> tuple[str, str, str, str]:
    """(normalized distribution, python tag, abi tag, platform tag) of a wheel file name."""
    parts = filename[:-4].split("-")
    if not filename.endswith(".whl") or len(parts) not in (5, 6):
        raise FommError(f"not a wheel file name: {filename}")
    return re.sub(r"[-_.]+", "_", parts[0]).lower(), parts[-3], parts[-2], parts[-1]


def wheel_fits(filename: str, target: Target) -> bool:
    """Would Blender (of the target's range, on its platform) install this wheel? Mirrors Blender's filter."""
    _, py, abi, plat = wheel_tags(filename)
    ok_plats = set(target.pip_platforms) | {"any"}
    if not any(p in ok_plats for p in plat.split(".")):
        return False
    want = target.range.tag
    major_minor = tuple(int(x) for x in target.range.python.split("."))
    for tag in py.split("."):
        if tag in (want, "py3", f"py{want[2:]}"):
            return True
        m = re.fullmatch(r"cp3(\d+)", tag)
        if m and "abi3" in abi.split(".") and (3, int(m.group(1))) <= major_minor:
            return True
    return False


def build_ml_core_wheel(out_dir: Path, say: Progress) -> Path:
    """ml_core as a wheel of this project, built from a clean copy (no stale build/ leftovers)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ml_core-src-", dir=out_dir) as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        shutil.copy2(REPO / "pyproject.toml", src / "pyproject.toml")
        shutil.copytree(REPO / "ml_core", src / "ml_core", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
        wheel_dir = Path(tmp) / "wheel"
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--disable-pip-version-check",
            "-q",
            "-w",
            str(wheel_dir),
            str(src),
        ]
        try:
            import setuptools  # noqa: F401

            cmd.insert(4, "--no-build-isolation")  # offline: build with this Python's setuptools
        except ImportError:
            pass
        say("building the ml_core wheel")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(wheel_dir.glob("*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel produced"]
            raise FommError(f"could not build the ml_core wheel: {last[0]}")
        final = out_dir / wheels[0].name
        os.replace(wheels[0], final)
    return final


_NET_ERRORS = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Could not fetch URL",
    "ConnectTimeout",
    "ReadTimeoutError",
    "Network is unreachable",
    "connection broken by",
    "SSLError",
    "ProxyError",
)


def _pip_download(args: list[str], dest: Path, say: Progress | None) -> tuple[int, list[str]]:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
        "-d",
        str(dest),
        *args,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            lines.append(line)
            if say is not None and line.lstrip().startswith(("Downloading ", "Saved ", "File was already")):
                say("    " + line.strip())
        rc = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return rc, lines


def resolve_wheels(
    requirements: Sequence[str],
    target: Target,
    *,
    cache: Path,
    wheelhouse: Path | None,
    index_urls: Sequence[str],
    say: Progress,
) -> list[Path]:
    """The wheels (with dependencies, minus what Blender ships) for ``requirements`` on ``target``.

    Resolved by pip for the target's platform and Python: from the wheelhouse only, or else from the
    download cache first (no network) and the package index for what the cache lacks.
    """
    cached = cache / "wheels" / f"{target.range.tag}-{target.platform}"
    cached.mkdir(parents=True, exist_ok=True)
    platform_args = [a for tag in target.pip_platforms for a in ("--platform", tag)]
    with tempfile.TemporaryDirectory(prefix="resolve-", dir=cache) as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text(target.range.numpy + "\n")
        base = [
            "--only-binary=:all:",
            "--python-version",
            target.range.python,
            "--implementation",
            "cp",
            *platform_args,
            "-c",
            str(constraints),
            "--find-links",
            str(cached),
        ]
        attempts: list[tuple[str, list[str]]]
        if wheelhouse is not None:
            attempts = [(f"from {wheelhouse}", ["--no-index", "--find-links", str(wheelhouse)])]
        else:
            online = ["--retries", "2", "--timeout", "30"]
            if index_urls:
                online += ["--index-url", index_urls[0], *(a for u in index_urls[1:] for a in ("--extra-index-url", u))]
            attempts = [("from the cache", ["--no-index"]), ("from the package index", online)]
        lines: list[str] = []
        for i, (where, extra) in enumerate(attempts):
            dest = Path(tmp) / f"dl{i}"
            quiet = wheelhouse is None and i == 0
            say(
                f"  resolving {len(requirements)} requirement(s) for Python {target.range.python} "
                f"on {target.platform} {where}"
            )
            rc, lines = _pip_download([*base, *extra, *requirements], dest, None if quiet else say)
            if rc == 0:
                found = sorted(dest.glob("*.whl"))
                for w in found:  # keep for the next build (offline)
                    if not (cached / w.name).exists():
                        shutil.copy2(w, cached / w.name)
                keep = [cached / w.name for w in found if wheel_tags(w.name)[0] not in BLENDER_PROVIDED]
                if any(w.name.startswith("nvidia_") for w in keep):
                    say(
                        "  note: this torch is the CUDA build (several GB with the nvidia-* wheels); for a CPU "
                        "build pass --index-url https://download.pytorch.org/whl/cpu --index-url https://pypi.org/simple"
                    )
                bad = [w.name for w in keep if not wheel_fits(w.name, target)]
                if bad:
                    raise FommError(
                        f"pip picked wheels Blender would not load on {target.platform} with Python "
                        f"{target.range.python}: {', '.join(bad)}"
                    )
                return keep
        raise FommError(_pip_failure(lines, target, wheelhouse))


def _pip_failure(lines: list[str], target: Target, wheelhouse: Path | None) -> str:
    text = "\n".join(lines)
    m = re.search(r"No matching distribution found for (\S+)", text)
    what = m.group(1) if m else None
    where = f"Python {target.range.python} on {target.platform}"
    if wheelhouse is not None:
        if what:
            tag = target.pip_platforms[0]
            return (
                f"no wheel of {what} for {where} in {wheelhouse}: add it (pip download --only-binary=:all: "
                f"--platform {tag} --python-version {target.range.python} -d {wheelhouse} '{what}')"
            )
    elif any(e in text for e in _NET_ERRORS):
        return (
            f"cannot reach the package index to fetch {what or 'the wheels'} for {where}: connect to the "
            "network or pass --wheelhouse DIR holding the wheels (see docs/installing.md)"
        )
    elif what:
        return f"no wheel of {what} for {where} on the package index: pick another --platform/--blender or --torch"
    conflict = re.search(r"(Cannot install .*|ResolutionImpossible.*)", text)
    if conflict:
        return f"the requirements for {where} conflict: {conflict.group(1).strip()}"
    tail = [line.strip() for line in lines if line.strip()][-1:] or ["no output"]
    return f"pip could not gather the wheels for {where}: {tail[0]}"


# --------------------------------------------------------------------------------------------------
# One zip
# --------------------------------------------------------------------------------------------------


def _place(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def installed_size(wheel: Path) -> int:
    with zipfile.ZipFile(wheel) as zf:
        return sum(i.file_size for i in zf.infolist())


def check_zip(path: Path, target: Target) -> dict:
    """Our checks beyond Blender's validator: the manifest's wheels are all in the zip and fit the target."""
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        manifest = tomllib.loads(zf.read("blender_manifest.toml").decode("utf-8"))
        if "__init__.py" not in names:
            raise FommError(f"{path.name}: the add-on's __init__.py is missing")
        for w in manifest.get("wheels", []):
            if w.removeprefix("./") not in names:
                raise FommError(f"{path.name}: the manifest lists {w} but the zip lacks it")
            if not wheel_fits(Path(w).name, target):
                raise FommError(
                    f"{path.name}: {Path(w).name} does not fit {target.platform} / Python {target.range.python}"
                )
    return manifest


def build_target(
    target: Target,
    template: dict,
    ml_core_wheel: Path,
    wheels: Sequence[Path],
    output: Path,
    tool: Path,
    cache: Path,
    say: Progress,
) -> Path:
    ext_id, version = template["id"], template["version"]
    final = output / target.zip_name(ext_id, version)
    all_wheels = [ml_core_wheel, *wheels]
    names = [w.name for w in all_wheels]
    dupes = {wheel_tags(n)[0] for n in names if sum(wheel_tags(m)[0] == wheel_tags(n)[0] for m in names) > 1}
    if dupes:
        raise FommError(f"two wheels of {', '.join(sorted(dupes))} for {target.platform}: clean {cache}")
    with tempfile.TemporaryDirectory(prefix="stage-", dir=cache) as tmp:
        stage = Path(tmp) / ext_id
        shutil.copytree(ADDON_DIR, stage, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*", "*.zip"))
        if not (stage / "__init__.py").is_file():
            raise FommError(f"{ADDON_DIR} has no __init__.py: the add-on package is incomplete")
        (stage / "wheels").mkdir()
        for w in all_wheels:
            _place(w, stage / "wheels" / w.name)
        manifest = build_manifest(template, target, names)
        (stage / "blender_manifest.toml").write_text(dump_manifest(manifest), encoding="utf-8")
        info = {
            "id": ext_id,
            "version": version,
            "flavor": "lean" if target.lean else "full",
            "worker_python_required": target.lean,
            "platform": target.platform,
            "python": target.range.python,
            "blender_version_min": target.blender_min,
            "blender_version_max": target.blender_max,
            "ml_core_wheel": ml_core_wheel.name,
            "wheels": names,
        }
        (stage / BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        say(f"  zipping {final.name} with Blender's extension tool")
        with atomic_path(final) as tmp_zip:
            run_blender_ext(tool, "build", "--source-dir", str(stage), "--output-filepath", str(tmp_zip))
            say(f"  validating {final.name}")
            run_blender_ext(tool, "validate", str(tmp_zip))
            check_zip(tmp_zip, target)
    return final


def replace_conflicting(output: Path, new_zip: Path, ext_id: str, target: Target, say: Progress) -> None:
    """Remove older zips in ``output`` for the same id, platform and Python (one per repository slot)."""
    for old in sorted(output.glob("*.zip")):
        if old == new_zip or old.name.startswith("."):
            continue
        try:
            with zipfile.ZipFile(old) as zf:
                m = tomllib.loads(zf.read("blender_manifest.toml").decode("utf-8"))
        except (zipfile.BadZipFile, KeyError, OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
            continue
        if m.get("id") != ext_id or target.platform not in (m.get("platforms") or [target.platform]):
            continue
        lo = parse_version(m.get("blender_version_min", "0.0.0"))
        hi = parse_version(m["blender_version_max"]) if m.get("blender_version_max") else (999, 0, 0)
        t_lo = parse_version(target.blender_min)
        t_hi = parse_version(target.blender_max) if target.blender_max else (999, 0, 0)
        if lo < t_hi and t_lo < hi:
            say(f"  replacing {old.name} (same id, platform and Blender range)")
            old.unlink()


def describe_zip(path: Path) -> list[str]:
    """Lines for the summary: the zip's size and each bundled wheel's size (zipped / installed)."""
    lines = []
    total_installed = 0
    with zipfile.ZipFile(path) as zf, tempfile.TemporaryDirectory() as tmp:
        for info in sorted(zf.infolist(), key=lambda i: -i.file_size):
            if not info.filename.startswith("wheels/"):
                continue
            w = Path(zf.extract(info, tmp))
            inst = installed_size(w)
            w.unlink()
            total_installed += inst
            lines.append(f"    {info.filename[7:]:<72} {info.file_size / 1e6:8.1f} MB  ({inst / 1e6:.1f} MB installed)")
    head = f"  {path.name}: {path.stat().st_size / 1e6:.1f} MB zip, {total_installed / 1e6:.1f} MB of installed wheels"
    return [head, *lines]


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


def build(
    output: Path,
    *,
    platforms: Sequence[str] | None = None,
    blenders: Sequence[str] = (),
    lean: bool = False,
    wheelhouse: Path | None = None,
    cache: Path = DEFAULT_CACHE,
    torch: str = TORCH,
    index_urls: Sequence[str] = (),
    blender_ext: str | None = None,
    listing: bool = True,
    macos_min: int = MACOS_MIN,
    say: Progress = _say,
) -> list[Path]:
    """Build every (platform, Blender range) zip into ``output``; returns the zips written."""
    platforms = list(platforms or [this_platform()])
    for p in platforms:
        if p not in PLATFORMS:
            raise FommError(f"unknown platform {p!r}: use one of {', '.join(PLATFORMS)}")
    if wheelhouse is not None and not wheelhouse.is_dir():
        raise FommError(f"wheelhouse folder not found: {wheelhouse}")
    if not ADDON_DIR.is_dir():
        raise FommError(f"add-on package not found: {ADDON_DIR}")
    template = load_manifest()
    if not 11 <= macos_min <= 30:
        raise FommError(f"--macos-min {macos_min} is not a macOS version Blender runs on: use 11 to 15 or so")
    targets = make_targets(template, platforms, blenders, lean, macos_min)
    tool = find_blender_ext(blender_ext)
    cache.mkdir(parents=True, exist_ok=True)
    output.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    steps = len(targets) + 2
    say(f"[1/{steps}] ml_core wheel")
    ml_core_wheel = build_ml_core_wheel(cache / "ml_core", say)
    say(f"    {ml_core_wheel.name} ({ml_core_wheel.stat().st_size / 1e6:.2f} MB)")
    made: list[Path] = []
    for i, target in enumerate(targets, start=2):
        flavor = "lean" if target.lean else "full"
        upto = f" to before {target.blender_max}" if target.blender_max else " and newer"
        say(
            f"[{i}/{steps}] {flavor} build for {target.platform}, Blender {target.blender_min}{upto} "
            f"(Python {target.range.python})"
        )
        reqs = target.range.lean if lean else tuple(torch if r == TORCH else r for r in target.range.full)
        wheels = resolve_wheels(reqs, target, cache=cache, wheelhouse=wheelhouse, index_urls=index_urls, say=say)
        zip_path = build_target(target, template, ml_core_wheel, wheels, output, tool, cache, say)
        replace_conflicting(output, zip_path, template["id"], target, say)
        for line in describe_zip(zip_path):
            say(line)
        made.append(zip_path)
    say(f"[{steps}/{steps}] repository listing")
    if listing:
        run_blender_ext(tool, "server-generate", "--repo-dir", str(output), "--html")
        say(f"  {output / 'index.json'} and index.html list {len(list(output.glob('*.zip')))} zip(s)")
    say(f"done in {time.monotonic() - t0:.0f} s")
    return made


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, like every other error here
        self.exit(2, f"error: {message} (see python build_addon.py --help)\n")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = _Parser(
        prog="python build_addon.py",
        description="Build validated Blender extension zips of the FOMM add-on and a repository listing.",
    )
    ap.add_argument("--output", "-o", type=Path, required=True, help="folder for the zips and index.json/html")
    ap.add_argument(
        "--platform",
        action="append",
        default=None,
        metavar="NAME",
        help=f"platform to build for: {', '.join(PLATFORMS)} (repeatable; default: this machine's)",
    )
    ap.add_argument(
        "--blender",
        action="append",
        default=None,
        metavar="X.Y",
        help="build the range holding this Blender version (repeatable; default: every range, "
        "i.e. 4.4-5.0 on Python 3.11 and 5.1+ on Python 3.13)",
    )
    ap.add_argument(
        "--lean",
        action="store_true",
        help="leave out torch/opencv: the worker then runs in a Python set in the add-on's preferences",
    )
    ap.add_argument(
        "--wheelhouse",
        type=Path,
        default=None,
        help="take every wheel from this folder, offline (default: cache, then the package index)",
    )
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"download cache (default {DEFAULT_CACHE})")
    ap.add_argument("--torch", default=TORCH, metavar="SPEC", help=f"torch requirement (default {TORCH!r})")
    ap.add_argument(
        "--index-url",
        action="append",
        default=[],
        metavar="URL",
        help="package index to fetch from (repeatable; the first replaces the default index), e.g. "
        "https://download.pytorch.org/whl/cpu then https://pypi.org/simple for CPU-only torch",
    )
    ap.add_argument(
        "--macos-min",
        type=int,
        default=MACOS_MIN,
        metavar="N",
        help=f"macos-arm64: oldest macOS the wheels must load on (default {MACOS_MIN})",
    )
    ap.add_argument("--blender-ext", default=None, metavar="PATH", help="blender_ext.py to use (default: from bpy)")
    ap.add_argument("--no-listing", action="store_true", help="skip index.json/index.html")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        build(
            args.output,
            platforms=args.platform or [this_platform()],
            blenders=args.blender or [],
            lean=args.lean,
            wheelhouse=args.wheelhouse,
            cache=args.cache,
            torch=args.torch,
            index_urls=args.index_url,
            blender_ext=args.blender_ext,
            listing=not args.no_listing,
            macos_min=args.macos_min,
        )
    except FommError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no zip was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
