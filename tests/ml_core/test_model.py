"""Checkpoint loading: the released vox-256 layout, every config variant, and every error a user can meet."""

from __future__ import annotations

import copy
import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ml_core import FommError, build_model, load_model
from ml_core.model import available_configs, detect_config, expected_shapes, load_config, read_checkpoint
from tests.conftest import REPO, SPEC_DIR, TINY_CKPT, TINY_YAML

SPEC = SPEC_DIR / "vox-256-state-dict.tsv"
DTYPES = {"float32": torch.float32, "int64": torch.int64}


def _spec_states() -> dict[str, dict[str, torch.Tensor]]:
    """A state dict with every vox-256 key, shape and dtype from the spec, filled with small random numbers."""
    states: dict[str, dict[str, torch.Tensor]] = {}
    gen = torch.Generator().manual_seed(0)
    for line in SPEC.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        module, key, shape, dtype = line.split("\t")
        dims = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
        if DTYPES[dtype] is torch.int64:
            t = torch.zeros(dims, dtype=torch.int64)
        elif key.endswith("running_var"):
            t = torch.rand(dims, generator=gen) + 0.5
        else:
            t = torch.randn(dims, generator=gen) * 0.02
        states.setdefault(module, {})[key] = t
    return states


@pytest.fixture(scope="module")
def vox_checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("vox") / "vox-cpk.pth.tar"
    states = _spec_states()
    torch.save(
        {
            **states,
            "optimizer_generator": {"state": {}, "param_groups": []},
            "optimizer_kp_detector": {"state": {}, "param_groups": []},
            "optimizer_discriminator": {"state": {}, "param_groups": []},
            "epoch": 99,
        },
        path,
    )
    return path


def test_spec_matches_vox_config_exactly():
    states = _spec_states()
    exp = expected_shapes(load_config("vox-256"))
    for module in ("kp_detector", "generator", "discriminator"):
        assert {k: tuple(v.shape) for k, v in states[module].items()} == exp[module], module


def test_vox_checkpoint_strict_loads_without_config(vox_checkpoint):
    bundle = load_model(vox_checkpoint)
    assert bundle.config_name == "vox-256"
    counts = bundle.parameter_counts()
    assert counts["kp_detector"] == 14_215_368
    assert counts["generator"] == 45_575_391
    assert not bundle.kp_detector.training and not bundle.generator.training
    states = _spec_states()
    got = bundle.kp_detector.state_dict()
    assert set(got) == set(states["kp_detector"])
    torch.testing.assert_close(got["down.weight"], states["kp_detector"]["down.weight"])  # stored buffer, loaded
    with torch.inference_mode():
        out = bundle.kp_detector(torch.rand(1, 3, 256, 256))
    assert out["value"].shape == (1, 10, 2) and out["jacobian"].shape == (1, 10, 2, 2)


def test_vox_discriminator_loads_with_spectral_norm(vox_checkpoint):
    bundle = load_model(vox_checkpoint, with_discriminator=True)
    assert bundle.parameter_counts()["discriminator"] == 2_758_849


def test_convert_round_trip(vox_checkpoint, tmp_path):
    out = tmp_path / "vox.safetensors"
    r = subprocess.run(
        [sys.executable, "-m", "ml_core", "convert", str(vox_checkpoint), str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stderr
    assert "vox-256" in r.stdout
    a = load_model(vox_checkpoint)
    b = load_model(out)  # config embedded in the safetensors metadata
    assert b.config["model_params"] == a.config["model_params"]
    for k, v in a.generator.state_dict().items():
        torch.testing.assert_close(b.generator.state_dict()[k], v, rtol=0, atol=0)
    x = torch.rand(2, 3, 256, 256)
    with torch.inference_mode():
        torch.testing.assert_close(a.kp_detector(x)["value"], b.kp_detector(x)["value"], rtol=0, atol=0)
    info = _cli("info", str(out))  # what the README's `ml_core info` shows
    assert info.returncode == 0, info.stderr
    assert "config:      vox-256" in info.stdout and "keypoints:   10, jacobians: yes, input 256x256" in info.stdout
    assert "kp_detector: 14,215,368 parameters" in info.stdout and "generator:   45,575,391 parameters" in info.stdout


@pytest.mark.parametrize(
    "name",
    ["vox-256", "vox-adv-256", "taichi-256", "taichi-adv-256", "mgif-256", "bair-256", "fashion-256", "nemo-256"],
)
def test_released_configs_build_and_detect(name):
    assert name in available_configs()
    cfg = load_config(name)
    shapes = expected_shapes(cfg)
    states = {m: {k: torch.empty(s, device="meta") for k, s in shp.items()} for m, shp in shapes.items()}
    detected, det_cfg = detect_config(states)
    # Several released models share one architecture; detection must give one that builds identical tensors.
    assert expected_shapes(det_cfg) == shapes
    if name in ("vox-adv-256", "mgif-256"):
        assert detected == name


def _small_cfg(tiny_config, **changes) -> dict:
    cfg = copy.deepcopy(tiny_config)
    for dotted, value in changes.items():
        node = cfg["model_params"]
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return cfg


@pytest.mark.parametrize(
    "changes",
    [
        {"common_params.estimate_jacobian": False},
        {"kp_detector_params.single_jacobian_map": True},
        {"kp_detector_params.pad": 3},
        {"kp_detector_params.scale_factor": 1, "generator_params.dense_motion_params.scale_factor": 1},
        {"generator_params.estimate_occlusion_map": False},
        {"generator_params.num_down_blocks": 1},  # deformation equals the feature size: no resize
        {"discriminator_params.use_kp": True, "discriminator_params.sn": False},
    ],
    ids=lambda c: ",".join(f"{k.split('.')[-1]}={v}" for k, v in c.items()),
)
def test_config_variants_run(tiny_config, changes):
    cfg = _small_cfg(tiny_config, **changes)
    bundle = build_model(cfg, seed=0, with_discriminator=True)
    mp = cfg["model_params"]
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        kp = bundle.kp_detector(x)
        assert kp["value"].shape == (2, 5, 2)
        assert ("jacobian" in kp) == mp["common_params"]["estimate_jacobian"]
        out = bundle.generator(x, kp_driving=kp, kp_source=kp)
        assert out["prediction"].shape == (2, 3, 64, 64)
        assert ("occlusion_map" in out) == mp["generator_params"]["estimate_occlusion_map"]
        disc = bundle.discriminator({"prediction_1": x}, kp=kp)
        assert disc["prediction_map_1"].shape[0] == 2
    if mp["kp_detector_params"].get("single_jacobian_map"):
        assert bundle.kp_detector.jacobian.weight.shape[0] == 4
    if mp["kp_detector_params"].get("pad"):
        # padded heatmaps keep the 32x32 grid (64 px at scale 0.5) instead of shrinking to 26x26
        feats = bundle.kp_detector.predictor(bundle.kp_detector.down(x))
        assert bundle.kp_detector.kp(feats).shape[-1] == 32


def test_identity_motion_is_exact_only_with_align_corners_true(tiny_config):
    """Driving with the source's own keypoints gives the identity flow on the [-1, 1] pixel-centre grid.

    With align_corners=True (the released checkpoints' convention) that warp reproduces the source exactly; with
    False it resamples half a pixel off - which is why the default is True.
    """
    cfg = _small_cfg(tiny_config, **{"generator_params.dense_motion_params.scale_factor": 1})
    x = torch.rand(1, 3, 64, 64)
    for align_corners, exact in ((True, True), (False, False)):
        bundle = build_model(cfg, seed=0, align_corners=align_corners)
        with torch.inference_mode():
            kp = bundle.kp_detector(x)
            out = bundle.generator(x, kp_driving=kp, kp_source=kp)
        err = (out["deformed"] - x).abs().max().item()
        assert (err < 1e-5) == exact, (align_corners, err)


# ------------------------------------------------------------------------------------------------ errors
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ml_core", *args], capture_output=True, text=True, cwd=REPO)


def _assert_one_line_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n.lower() in lines[0].lower(), lines[0]


def test_missing_file(tmp_path):
    with pytest.raises(FommError, match="not found"):
        load_model(tmp_path / "nope.pth.tar")
    _assert_one_line_error(_cli("info", str(tmp_path / "nope.pth.tar")), "not found")


NOT_A_CHECKPOINT = "is not a checkpoint (neither a PyTorch nor a safetensors file): give an authors' .pth.tar or a"


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "notes.pth.tar"
    p.write_text("these are my notes, not weights\n" * 20)
    r = _cli("info", str(p))
    _assert_one_line_error(r, NOT_A_CHECKPOINT)
    assert "Error" not in r.stderr  # no internal exception name (it was "(IndexError)")


@pytest.mark.parametrize(
    "content",
    [b"x" * 100, b'{"kp_detector": 1}', bytes(range(256)) * 4, b"hello world"],
    ids=["x100", "json", "binary", "hello"],
)
def test_garbage_is_not_a_checkpoint_nor_a_malicious_pickle(tmp_path, content):
    """PyTorch's weights-only loader words every refusal alike; garbage must not read as a refused pickle."""
    p = tmp_path / "garbage.pth.tar"
    p.write_bytes(content)
    with pytest.raises(FommError) as err:
        read_checkpoint(p)
    assert str(err.value) == f"{p} {NOT_A_CHECKPOINT} .safetensors file"


def test_empty_file(tmp_path):
    p = tmp_path / "empty.pth.tar"
    p.write_bytes(b"")
    _assert_one_line_error(_cli("info", str(p)), "empty")


def test_truncated_checkpoint(tmp_path):
    p = tmp_path / "cut.pth.tar"
    data = TINY_CKPT.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    _assert_one_line_error(_cli("info", str(p), "--config", str(TINY_YAML)), "truncated")


def test_truncated_safetensors(tmp_path, tiny_config):
    good = tmp_path / "tiny.safetensors"
    from ml_core.model import convert

    convert(TINY_CKPT, good, tiny_config)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-1000])
    _assert_one_line_error(_cli("info", str(cut)), "truncated")


def test_checkpoint_of_another_model(tmp_path):
    p = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.bias": torch.zeros(10)}, p)
    _assert_one_line_error(_cli("info", str(p)), "another kind of model")
    p2 = tmp_path / "tpsmm.pth.tar"
    torch.save({"kp_detector": {}, "inpainting_network": {}, "dense_motion_network": {}}, p2)
    _assert_one_line_error(_cli("info", str(p2)), "Thin-Plate Spline")


def test_config_checkpoint_mismatch_names_tensor_and_shapes(tmp_path, tiny_config):
    cfg = _small_cfg(tiny_config, **{"common_params.num_kp": 7})
    cfg_path = tmp_path / "seven.yaml"
    import yaml

    cfg_path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(FommError) as err:
        load_model(TINY_CKPT, cfg_path)
    msg = str(err.value)
    assert "kp.weight" in msg and "(5, 11, 7, 7)" in msg and "(7, 11, 7, 7)" in msg
    _assert_one_line_error(_cli("info", str(TINY_CKPT), "--config", str(cfg_path)), "mismatch", "kp.weight")


class _Payload:
    """Unpickling this would create a marker file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("writer", ["torch_zip", "plain_pickle"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, writer):
    marker = tmp_path / "PWNED"
    p = tmp_path / "evil.pth.tar"
    obj = {"kp_detector": {}, "generator": _Payload(marker)}
    if writer == "torch_zip":
        torch.save(obj, p)
    else:
        with open(p, "wb") as f:
            pickle.dump(obj, f, protocol=2)
    # Sanity: an unrestricted unpickler WOULD run it (on a copy of the payload, in another folder).
    check = tmp_path / "check"
    check.mkdir()
    pickle.loads(pickle.dumps(_Payload(check / "ran")))
    assert (check / "ran").exists()

    with pytest.raises(FommError, match="refused"):
        read_checkpoint(p)
    assert not marker.exists()
    _assert_one_line_error(_cli("info", str(p)), "refused")
    _assert_one_line_error(_cli("convert", str(p), str(tmp_path / "out.safetensors")), "refused")
    assert not marker.exists()
    assert not (tmp_path / "out.safetensors").exists()


def test_convert_failure_leaves_no_output(tmp_path):
    p = tmp_path / "notes.pth.tar"
    p.write_text("x" * 100)
    out = tmp_path / "out.safetensors"
    for args in (("convert", str(p), str(out)), ("info", str(p))):
        r = _cli(*args)
        _assert_one_line_error(r, NOT_A_CHECKPOINT)
        assert "refused" not in r.stderr and "pickle" not in r.stderr  # not taken for a malicious pickle
    assert list(tmp_path.iterdir()) == [p]


def test_convert_output_must_be_safetensors(tmp_path):
    out = tmp_path / "model.pt"
    _assert_one_line_error(_cli("convert", str(TINY_CKPT), str(out)), f"output must end in .safetensors: {out}")
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_path_is_a_folder(tmp_path):
    folder = tmp_path / "vox.pth.tar"
    folder.mkdir()
    _assert_one_line_error(_cli("info", str(folder)), f"checkpoint path is a folder, not a file: {folder}")
    assert list(folder.iterdir()) == []


def test_torch_file_that_is_not_a_dict(tmp_path):
    p = tmp_path / "list.pth"
    torch.save([torch.zeros(2), torch.ones(3)], p)
    _assert_one_line_error(_cli("info", str(p)), f"{p} is not a First Order Motion Model checkpoint (it holds a list)")


def test_no_default_model_installed(tmp_path, monkeypatch, capfd):
    import ml_core.model
    from ml_core.cli import main

    missing = tmp_path / "default" / "model.safetensors"
    monkeypatch.setattr(ml_core.model, "DEFAULT_CHECKPOINT", missing)
    assert main(["info"]) == 2
    captured = capfd.readouterr()
    assert captured.err == f"error: no default model is installed ({missing} is missing): pass a checkpoint\n"
    assert captured.out == "" and list(tmp_path.iterdir()) == []


def test_bad_config_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_params: [1, 2\n")
    with pytest.raises(FommError, match="not readable"):
        load_config(bad)
    other = tmp_path / "other.yaml"
    other.write_text("foo: 1\n")
    with pytest.raises(FommError, match="model_params"):
        load_config(other)
    with pytest.raises(FommError, match="config not found"):
        load_config("no-such-config")


def test_unknown_device():
    with pytest.raises(FommError, match="device"):
        build_model("vox-256", device="tpu")


def test_convert_never_deletes_a_folder_nor_rewrites_its_input(tmp_path):
    """Issue 16: `convert CKPT m.safetensors` where m.safetensors is a folder kept the exit 0 and lost the folder;
    `convert X X` rewrote X in place (a new hash that every clip made with it no longer matches)."""
    folder = tmp_path / "m.safetensors"
    folder.mkdir()
    (folder / "keep").write_text("mine")
    _assert_one_line_error(_cli("convert", str(TINY_CKPT), str(folder)), "is an existing folder")
    assert (folder / "keep").read_text() == "mine"
    model = tmp_path / "a.safetensors"
    assert _cli("convert", str(TINY_CKPT), str(model), "--config", str(TINY_YAML)).returncode == 0
    before = model.read_bytes()
    _assert_one_line_error(_cli("convert", str(model), str(model)), "would overwrite the input")
    _assert_one_line_error(_cli("convert", str(model), str(tmp_path / "." / "a.safetensors")), "would overwrite")
    assert model.read_bytes() == before
    afile = tmp_path / "afile"
    afile.write_text("x")
    _assert_one_line_error(_cli("convert", str(TINY_CKPT), str(afile / "x.safetensors")), "is a file, not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors", "afile", "m.safetensors"]


# ---------------------------------------------------------------------------- hostile checkpoints (issue 16)
@pytest.fixture(scope="module")
def tiny_safetensors(tmp_path_factory):
    from ml_core.model import convert

    path = tmp_path_factory.mktemp("hostile") / "tiny.safetensors"
    convert(TINY_CKPT, path, TINY_YAML)
    return path


def _tampered(src: Path, dst: Path, *, change=None, config=None) -> Path:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    if change is not None:
        key = "kp_detector.kp.weight"
        tensors[key] = change(tensors[key])
    if config is not None:
        cfg = json.loads(meta["config"])
        config(cfg)
        meta = {**meta, "config": json.dumps(cfg)}
    save_file(tensors, str(dst), metadata=meta)
    return dst


def _set(path: str, value):
    def edit(cfg):
        node = cfg
        *parents, last = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value

    return edit


HOSTILE_WEIGHTS = {
    "nan": (lambda t: torch.full_like(t, float("nan")), "kp_detector.kp.weight holds NaN or infinite weights"),
    "inf": (lambda t: torch.full_like(t, float("inf")), "holds NaN or infinite weights"),
    "complex64": (lambda t: t.to(torch.complex64), "holds complex64 values, not floating-point weights"),
    "int8": (lambda t: t.to(torch.int8), "holds int8 values, not floating-point weights"),
    "bool": (lambda t: t > 0, "holds bool values, not floating-point weights"),
}
HOSTILE_CONFIGS = {
    "negative block_expansion": (
        _set("model_params.kp_detector_params.block_expansion", -5),
        "model_params.kp_detector_params.block_expansion must be from 1 to 1024, got -5",
    ),
    "float block_expansion": (
        _set("model_params.generator_params.block_expansion", 32.5),
        "model_params.generator_params.block_expansion must be a whole number, got 32.5",
    ),
    "huge block_expansion": (
        _set("model_params.generator_params.block_expansion", 100000),
        "must be from 1 to 1024, got 100000",
    ),
    "frame_shape text": (_set("dataset_params.frame_shape", "abc"), "dataset_params.frame_shape must be [height"),
    "frame_shape huge": (_set("dataset_params.frame_shape", [60000, 60000, 3]), "square from 16 to 2048 pixels"),
}


@pytest.mark.parametrize("case", list(HOSTILE_WEIGHTS))
def test_hostile_weights_are_refused(case, tiny_safetensors, tmp_path):
    """NaN weights used to load (then 'internal error: LinAlgError' in Blender); complex/int8/bool weights gave a
    bare 'Error(s) in loading state_dict'."""
    change, msg = HOSTILE_WEIGHTS[case]
    bad = _tampered(tiny_safetensors, tmp_path / f"{case}.safetensors", change=change)
    with pytest.raises(FommError, match=re.escape(msg)) as e:
        load_model(bad)
    assert "\n" not in str(e.value)
    if case == "nan":  # `info` accepted it
        _assert_one_line_error(_cli("info", str(bad)), "NaN or infinite")


@pytest.mark.parametrize("case", list(HOSTILE_CONFIGS))
def test_hostile_embedded_configs_are_refused(case, tiny_safetensors, tmp_path):
    edit, msg = HOSTILE_CONFIGS[case]
    bad = _tampered(tiny_safetensors, tmp_path / "cfg.safetensors", config=edit)
    with pytest.raises(FommError, match=re.escape(msg)):
        load_model(bad)


def test_safetensors_header_length_of_2_40(tiny_safetensors, tmp_path):
    data = bytearray(tiny_safetensors.read_bytes())
    data[:8] = (1 << 40).to_bytes(8, "little")
    bad = tmp_path / "hdr.safetensors"
    bad.write_bytes(bytes(data))
    _assert_one_line_error(_cli("info", str(bad)), "damaged safetensors file: its header declares 1099511627776 bytes")


def test_torch_zip_bomb_is_refused_before_inflating(tmp_path):
    """A small torch zip whose tensor data member deflates from 64 MB of zeros: refused from the zip directory."""
    import zipfile

    plain = tmp_path / "plain.pth.tar"
    torch.save({"kp_detector": {"w": torch.zeros(4)}, "generator": {"w": torch.zeros(4)}}, plain)
    bomb = tmp_path / "bomb.pth.tar"
    with zipfile.ZipFile(plain) as zin, zipfile.ZipFile(bomb, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("/data/0"):
                zout.writestr(info.filename, bytes(64 << 20), compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
            else:
                zout.writestr(info, data)
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(FommError, match="inflating .* to 67108864, which no model checkpoint holds"):
        read_checkpoint(bomb)


def test_yaml_billion_laughs_is_refused(tmp_path):
    """A 1 KB YAML whose aliases expand to ~10^9 strings (10 GB used to be allocated, then 'success')."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    (tmp_path / "laughs.yaml").write_text("\n".join(lines) + "\nmodel_params: *i\n")
    assert (tmp_path / "laughs.yaml").stat().st_size < 2500
    with pytest.raises(FommError, match="expands to more than 100000 values through its YAML aliases"):
        load_config(tmp_path / "laughs.yaml")
