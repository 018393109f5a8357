"""Training: one step, resume, export, CLI errors, 2-process DDP on gloo, the shipped default model."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from ml_core.cli import main as cli_main
from ml_core.model import build_model, load_model
from ml_core.train.dataset import PairDataset, identity_of, load_clips
from ml_core.train.trainer import DiscriminatorFullModel, GeneratorFullModel, TrainOptions, train

REPO = Path(__file__).resolve().parents[2]
LANDMARKS = ["centre", "spot_L", "spot_R"]


def _write_clip(path: Path, seed: int, n: int = 10, size: int = 64, with_gt: bool = True) -> None:
    """A disc with two spots moving over a coloured background; ground-truth landmarks beside it."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(40, 200, 3)
    colour = rng.integers(0, 255, 3)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (size, size))
    lms = []
    for t in range(n):
        img = np.empty((size, size, 3), np.uint8)
        img[:] = bg
        cx, cy = size / 2 + 8 * np.sin(t / 3 + seed), size / 2 + 5 * np.cos(t / 4)
        cv2.circle(img, (int(cx), int(cy)), 14, colour.tolist(), -1)
        pts = [(cx, cy), (cx + 7, cy - 4), (cx - 7, cy - 4)]
        for px, py in pts[1:]:
            cv2.circle(img, (int(px), int(py)), 3, (255, 255, 255), -1)
        writer.write(img)
        lms.append([[2 * px / (size - 1) - 1, 2 * py / (size - 1) - 1] for px, py in pts])
    writer.release()
    if with_gt:
        np.savez(path.with_suffix(".npz"), landmarks=np.array(lms, np.float32), landmark_names=np.array(LANDMARKS))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train_data")
    (root / "train").mkdir()
    for ident in range(2):
        for clip in range(2):
            _write_clip(root / "train" / f"id{ident}_c{clip}.mp4", 10 * ident + clip, with_gt=clip == 0)
    return root


@pytest.fixture(scope="module")
def config(tiny_config) -> dict:
    cfg = copy.deepcopy(tiny_config)
    cfg["dataset_params"] = {
        "frame_shape": [64, 64, 3],
        "id_sampling": True,
        "augmentation_params": {
            "flip_param": {"horizontal_flip": True, "time_flip": True},
            "jitter_param": {"brightness": 0.1, "contrast": 0.1, "saturation": 0.1, "hue": 0.1},
        },
    }
    cfg["train_params"] = {
        "num_iterations": 2,
        "num_repeats": 1,
        "batch_size": 2,
        "scales": [1, 0.5],
        "lr_generator": 2e-4,
        "lr_discriminator": 2e-4,
        "lr_kp_detector": 2e-4,
        "transform_params": {"sigma_affine": 0.05, "sigma_tps": 0.005, "points_tps": 5},
        "loss_weights": {
            "generator_gan": 1,
            "discriminator_gan": 1,
            "feature_matching": [10, 10, 10, 10],
            "perceptual": [10],
            "equivariance_value": 10,
            "equivariance_jacobian": 10,
        },
        "landmark_supervision": {"weight": 10, "keypoints": LANDMARKS},
    }
    return cfg


def _opts(cfg: dict, data: Path, out: Path, **kw) -> TrainOptions:
    return TrainOptions(config=cfg, data=data, out=out, device="cpu", threads=1, log_every=1, **kw)


def test_dataset_pairs_identities_and_landmarks(data_dir, config) -> None:
    clips = load_clips(data_dir, "train", 64, LANDMARKS)
    assert [c.identity for c in clips] == ["id0", "id0", "id1", "id1"]
    assert identity_of("abc#001#x.mp4") == "abc"
    assert clips[0].frames.shape == (10, 64, 64, 3) and clips[0].landmarks.shape == (10, 3, 2)
    assert clips[1].landmarks is None
    ds = PairDataset(clips, True, 3, config["dataset_params"]["augmentation_params"], LANDMARKS, seed=0)
    assert len(ds) == 6
    flipped_ok = 0
    for i in range(len(ds)):
        item = ds[i]
        assert item["source"].shape == (3, 64, 64) and 0 <= float(item["source"].min()) <= 1
        if bool(item["landmarks_valid"]):
            lm = item["landmarks_source"]
            # spot_L is always right of spot_R in image terms after the flip-aware swap? both ways the L/R
            # landmarks keep their meaning: the character's left spot is the one with larger x relative to centre
            assert float(lm[1, 0] - lm[0, 0]) > 0 and float(lm[2, 0] - lm[0, 0]) < 0
            flipped_ok += 1
    assert flipped_ok > 0


def test_one_step_lowers_loss_with_finite_grads_for_all_three(data_dir, config) -> None:
    torch.manual_seed(0)
    bundle = build_model(config, with_discriminator=True)
    kp, gen, disc = bundle.kp_detector.train(), bundle.generator.train(), bundle.discriminator.train()
    tp = config["train_params"]
    full = GeneratorFullModel(kp, gen, tp, None, disc)
    dfull = DiscriminatorFullModel(disc, tp)
    clips = load_clips(data_dir, "train", 64, LANDMARKS)
    ds = PairDataset(clips, True, 1, None, LANDMARKS, seed=0)
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    args = (
        batch["source"],
        batch["driving"],
        batch["landmarks_source"],
        batch["landmarks_driving"],
        batch["landmarks_valid"],
    )
    opt = torch.optim.Adam(list(kp.parameters()) + list(gen.parameters()), lr=1e-3)
    torch.manual_seed(1)
    losses, generated = full(*args)
    assert {
        "reconstruction",
        "generator_gan",
        "feature_matching",
        "equivariance_value",
        "equivariance_jacobian",
        "landmarks",
    } <= set(losses)
    loss = sum(losses.values())
    opt.zero_grad()
    loss.backward()
    loss_d = dfull(batch["driving"], generated["prediction"], generated["kp_driving"])
    for m in (kp, gen):
        grads = [p.grad for p in m.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert sum(float(g.abs().sum()) for g in grads) > 0
    for p in disc.parameters():
        p.grad = None
    loss_d.backward()
    dgrads = [p.grad for p in disc.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in dgrads) and sum(float(g.abs().sum()) for g in dgrads)
    opt.step()
    torch.manual_seed(1)
    losses2, _ = full(*args)
    assert float(sum(losses2.values()).detach()) < float(loss.detach())


def test_train_resume_and_export(tmp_path, data_dir, config) -> None:
    run = tmp_path / "run"
    res = train(_opts(config, data_dir, run, iterations=2))
    assert res.iteration == 2 and (run / "checkpoint.pt").exists() and (run / "model.safetensors").exists()
    first = torch.load(run / "checkpoint.pt", weights_only=True)
    assert first["iteration"] == 2
    # resuming at the budget reproduces the optimiser state exactly
    again = tmp_path / "again"
    train(_opts(config, data_dir, again, iterations=2, resume=run / "checkpoint.pt"))
    same = torch.load(again / "checkpoint.pt", weights_only=True)
    for k in ("optimizer_kp_detector", "optimizer_generator", "optimizer_discriminator"):
        a, b = first[k]["state"], same[k]["state"]
        assert a.keys() == b.keys()
        assert all(torch.equal(a[i]["exp_avg"], b[i]["exp_avg"]) and torch.equal(a[i]["step"], b[i]["step"]) for i in a)
    # resuming further continues the count
    scheduled = copy.deepcopy(config)
    scheduled["train_params"]["iteration_milestones"] = [3]  # a schedule given at resume time applies
    res = train(_opts(scheduled, data_dir, run, iterations=4, resume=run / "checkpoint.pt"))
    assert res.iteration == 4
    after = torch.load(run / "checkpoint.pt", weights_only=True)
    assert after["iteration"] == 4
    assert all(float(s["step"]) == 4 for s in after["optimizer_generator"]["state"].values())
    assert after["optimizer_generator"]["param_groups"][0]["lr"] == pytest.approx(2e-5)
    its = [json.loads(line)["iteration"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert its == [1, 2, 3, 4]
    # the exported model loads through the product's path, config embedded
    bundle = load_model(run / "model.safetensors", with_discriminator=True)
    assert bundle.num_kp == 5 and bundle.image_size == 64 and bundle.discriminator is not None
    for name in ("kp_detector", "generator"):
        ref = after[name]
        got = getattr(bundle, name).state_dict()
        assert all(torch.equal(ref[k], got[k]) for k in ref)
    out = bundle.kp_detector(torch.rand(1, 3, 64, 64))
    assert out["value"].shape == (1, 5, 2) and out["jacobian"].shape == (1, 5, 2, 2)


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    code = cli_main(argv)
    err = capsys.readouterr().err
    return code, err


def test_cli_bad_inputs(tmp_path, data_dir, config, capsys) -> None:
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(config))
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    bad = tmp_path / "bad"
    (bad / "train").mkdir(parents=True)
    (bad / "train" / "x_0.mp4").write_text("not a video")
    no_train = dict(config)
    no_train.pop("train_params")
    no_train_path = tmp_path / "no_train.yaml"
    no_train_path.write_text(yaml.safe_dump(no_train))
    short = tmp_path / "short"
    (short / "train").mkdir(parents=True)
    _write_clip(short / "train" / "one_0.mp4", 0, n=1, with_gt=False)
    unknown_lm = _config_file(
        tmp_path / "unknown_lm.yaml",
        config,
        {"landmark_supervision": {"weight": 10, "keypoints": ["centre", "nose_tip"]}},
    )
    too_many_lm = _config_file(
        tmp_path / "too_many_lm.yaml",
        config,
        {"landmark_supervision": {"weight": 10, "keypoints": [*LANDMARKS, "a", "b", "c"]}},
    )
    other = copy.deepcopy(config)
    other["model_params"]["kp_detector_params"]["temperature"] = 0.2  # another network than the checkpoint's
    other_path = tmp_path / "other.yaml"
    other_path.write_text(yaml.safe_dump(other))
    ckpt = _train_checkpoint(tmp_path / "run" / "checkpoint.pt", config)
    ckpt_bytes = ckpt.read_bytes()
    cases = [
        (["--config", str(cfg_path), "--data", str(empty)], "no videos or frame folders"),
        (["--config", str(cfg_path), "--data", str(bad)], "unreadable video"),
        (["--config", str(no_train_path), "--data", str(data_dir)], "no 'train_params' section"),
        (["--config", str(cfg_path), "--data", str(tmp_path / "missing")], "data folder not found"),
        (["--config", str(cfg_path), "--data", str(data_dir), "--resume", str(tmp_path / "nope.pt")], "not found"),
        (["--config", str(cfg_path), "--data", str(data_dir), "--iterations", "0"], "--iterations must be at least 1"),
        (["--config", str(cfg_path), "--data", str(data_dir), "--batch-size", "0"], "--batch-size must be at least 1"),
        (
            ["--config", str(cfg_path), "--data", str(short)],
            f"unreadable video {short / 'train' / 'one_0.mp4'}: it has 1 decodable frame(s), at least 2 are needed",
        ),
        (
            ["--config", str(unknown_lm), "--data", str(data_dir)],
            "id0_c0.npz has no landmark 'nose_tip' named in the config's train_params.landmark_supervision.keypoints",
        ),
        (
            ["--config", str(too_many_lm), "--data", str(data_dir)],
            "train_params.landmark_supervision names 6 landmarks but the model has only 5 keypoints",
        ),
        (
            ["--config", str(other_path), "--data", str(data_dir), "--resume", str(ckpt)],
            f"checkpoint {ckpt} was trained with different model_params than the given config: resume with the config "
            "it was trained with",
        ),
    ]
    for i, (args, expected) in enumerate(cases):
        out = tmp_path / f"out{i}"
        code, err = _cli(["train", *args, "--out", str(out), "--device", "cpu", "--no-progress"], capsys)
        assert code == 2, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err
        assert "Traceback" not in err
        assert not out.exists()
    assert ckpt.read_bytes() == ckpt_bytes  # the refused resume left the checkpoint as it was


def _config_file(path: Path, config: dict, train_params: dict) -> Path:
    """``config`` with some ``train_params`` replaced, written as YAML to ``path``."""
    cfg = copy.deepcopy(config)
    cfg["train_params"].update(train_params)
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train_checkpoint(path: Path, config: dict, iteration: int = 1) -> Path:
    """A resumable checkpoint of freshly initialised networks for ``config`` (no training)."""
    from ml_core.train.trainer import save_checkpoint

    bundle = build_model(config, seed=0, with_discriminator=True)
    modules = {"kp_detector": bundle.kp_detector, "generator": bundle.generator, "discriminator": bundle.discriminator}
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(path, config, iteration, modules, {}, {})


def test_diverged_training_stops_and_keeps_the_checkpoint(tmp_path, data_dir, config) -> None:
    """A loss that turns infinite (here an absurd loss weight, 1e39, past float32) stops at once with one line
    (in a process of its own: no warning either); the run's checkpoint is kept as it was, nothing else written."""
    cfg_path = _config_file(
        tmp_path / "absurd.yaml",
        config,
        {"loss_weights": {**config["train_params"]["loss_weights"], "equivariance_value": 1e39}},
    )
    run = tmp_path / "run"
    ckpt = _train_checkpoint(run / "checkpoint.pt", config, iteration=3)
    before = ckpt.read_bytes()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ml_core",
            "train",
            "--config",
            str(cfg_path),
            "--data",
            str(data_dir),
            "--out",
            str(run),
            "--resume",
            str(ckpt),
            "--iterations",
            "5",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--no-progress",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    err = proc.stderr
    assert proc.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: training diverged at iteration 4 (loss ")
    assert lines[0].endswith("): lower the learning rates or resume from the last checkpoint")
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt"] and ckpt.read_bytes() == before


def test_ddp_two_processes_gloo(tmp_path, data_dir, config) -> None:
    cfg_path = tmp_path / "cfg.yaml"
    cfg = copy.deepcopy(config)
    cfg["train_params"]["batch_size"] = 4  # 2 per process
    cfg_path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "ml_core",
        "train",
        "--config",
        str(cfg_path),
        "--data",
        str(data_dir),
        "--out",
        str(out),
        "--iterations",
        "2",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--no-progress",
        "--log-every",
        "1",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["iteration"] == 2
    assert [json.loads(x)["iteration"] for x in (out / "log.jsonl").read_text().splitlines()] == [1, 2]
    # synchronised batch norm ran (running stats moved) and the export loads
    bundle = load_model(out / "model.safetensors")
    bn = bundle.kp_detector.predictor.encoder.down_blocks[0].norm
    assert int(bn.num_batches_tracked) == 2 and float(bn.running_var.sub(1).abs().max()) > 0


def _sync_bn_worker(rank: int, port: int, x: torch.Tensor, result: dict) -> None:
    import torch.distributed as dist

    from ml_core.train.distributed import CpuSyncBatchNorm

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        bn = CpuSyncBatchNorm(3)
        part = x[rank * 2 : (rank + 1) * 2].clone().requires_grad_(True)
        y = bn(part)
        (y * torch.arange(3.0).view(1, 3, 1, 1)).sum().backward()
        result[rank] = (y.detach(), part.grad, bn.running_mean.clone(), bn.weight.grad.clone())
    finally:
        dist.destroy_process_group()


def test_cpu_sync_batchnorm_matches_full_batch() -> None:
    import socket

    import torch.multiprocessing as mp

    torch.manual_seed(3)
    x = torch.randn(4, 3, 5, 5) * 2 + 1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manager = mp.Manager()
    shared = manager.dict()
    mp.start_processes(_sync_bn_worker, args=(port, x, shared), nprocs=2, start_method="spawn")
    ref = torch.nn.BatchNorm2d(3)
    xr = x.clone().requires_grad_(True)
    yr = ref(xr)
    (yr * torch.arange(3.0).view(1, 3, 1, 1)).sum().backward()
    y = torch.cat([shared[0][0], shared[1][0]])
    g = torch.cat([shared[0][1], shared[1][1]])
    assert torch.allclose(y, yr.detach(), atol=1e-5)
    assert torch.allclose(g, xr.grad, atol=1e-5)
    assert torch.allclose(shared[0][2], ref.running_mean, atol=1e-5)
    # each process holds the gradient of its own part; DDP sums them
    assert torch.allclose(shared[0][3] + shared[1][3], ref.weight.grad, atol=1e-4)


def test_default_model_loads_without_arguments() -> None:
    bundle = load_model()
    assert bundle.source.endswith("model.safetensors")
    assert bundle.num_kp == 14 and bundle.estimate_jacobian and bundle.image_size == 64
    cfg_file = yaml.safe_load((REPO / "ml_core" / "assets" / "default" / "config.yaml").read_text())
    assert cfg_file["model_params"] == bundle.config["model_params"]
    out = bundle.kp_detector(torch.rand(2, 3, 64, 64))
    assert out["value"].shape == (2, 14, 2) and torch.isfinite(out["jacobian"]).all()


def test_sigterm_saves_checkpoint_and_exits_130(tmp_path, data_dir, config) -> None:
    import signal
    import time

    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "ml_core",
        "train",
        "--config",
        str(cfg_path),
        "--data",
        str(data_dir),
        "--out",
        str(out),
        "--iterations",
        "100000",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--no-progress",
        "--log-every",
        "1",
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 120
        while not (out / "log.jsonl").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("interrupted: checkpoint saved")
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["iteration"] >= 1
    assert load_model(out / "model.safetensors").num_kp == 5


def test_landmark_motion_loss_weighs_motion_not_a_shared_offset() -> None:
    """The motion term ignores an offset every frame of a face shares and catches a motion the keypoints miss;
    the absolute term is the other way round (why a brow's small raise needs the motion term)."""
    from ml_core.train.losses import landmark_loss, landmark_motion_loss

    lm_s = torch.zeros(2, 3, 2)
    lm_d = lm_s.clone()
    lm_d[:, 1, 1] = -0.04  # a brow rises by 1.3 px at 64 px
    valid = torch.tensor([True, True])
    offset = torch.tensor([0.05, -0.03])
    assert float(landmark_motion_loss(lm_s + offset, lm_d + offset, lm_s, lm_d, valid)) < 1e-7
    assert float(landmark_loss(lm_d + offset, lm_d, valid)) > 0.03
    missed = float(landmark_motion_loss(lm_s, lm_s, lm_s, lm_d, valid))  # keypoints that do not follow the brow
    assert missed == pytest.approx(0.04 / 6, rel=1e-5)
    assert float(landmark_motion_loss(lm_s, lm_s, lm_s, lm_d, torch.tensor([False, False]))) == 0.0


def test_motion_weight_adds_the_motion_term(data_dir, config) -> None:
    torch.manual_seed(0)
    config["train_params"]["landmark_supervision"]["motion_weight"] = 50
    bundle = build_model(config)
    full = GeneratorFullModel(bundle.kp_detector, bundle.generator, config["train_params"])
    clips = load_clips(data_dir, "train", 64, LANDMARKS)
    ds = PairDataset(clips, True, 1, None, LANDMARKS, seed=0)
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    losses, _ = full(
        batch["source"],
        batch["driving"],
        batch["landmarks_source"],
        batch["landmarks_driving"],
        batch["landmarks_valid"],
    )
    assert {"landmarks", "landmark_motion"} <= set(losses) and float(losses["landmark_motion"]) > 0
    losses["landmark_motion"].backward()
    assert sum(float(p.grad.abs().sum()) for p in bundle.kp_detector.parameters() if p.grad is not None) > 0
