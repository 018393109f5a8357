"""The training loop (paper section 3 objective; the authors' ``train.py`` hyper-parameters from the config).

Per iteration, for a batch of (source, driving) pairs of one video each:

- keypoints (+ Jacobians) of the source, the driving frame and a randomly warped copy of the driving frame
  (:class:`~ml_core.train.transforms.RandomTPS`);
- the generator animates the source towards the driving keypoints;
- losses (weights in ``train_params.loss_weights``): multi-scale reconstruction over ``train_params.scales``
  (VGG19 perceptual with user-supplied weights, else L1 + SSIM, see :mod:`ml_core.train.losses`), equivariance of
  keypoint values and Jacobians, optionally the LSGAN generator + feature-matching terms (configs with
  ``discriminator_params`` and ``generator_gan`` > 0, the "adv" ones) and optionally landmark supervision
  (``train_params.landmark_supervision``: keypoint i follows the i-th named ground-truth landmark);
- Adam (betas 0.5, 0.999) per network, learning rates divided by 10 at ``epoch_milestones`` (as fractions of
  ``num_epochs``, mapped onto the iteration budget).

A run folder holds ``checkpoint.pt`` (model + optimisers + schedulers + iteration; resumable), ``model.safetensors``
(the networks with the config embedded; ``ml_core.load_model`` reads it) and ``log.jsonl`` (one line of mean losses
every ``log_every`` iterations). Both files are written atomically; Ctrl-C saves a checkpoint before it exits.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ml_core.errors import FommError
from ml_core.fileio import atomic_path
from ml_core.train import distributed as D
from ml_core.train.dataset import PairDataset, load_clips
from ml_core.train.losses import (
    ImagePyramid,
    Vgg19,
    discriminator_gan_loss,
    equivariance_losses,
    feature_matching_loss,
    generator_gan_loss,
    landmark_loss,
    landmark_motion_loss,
    load_vgg19,
    reconstruction_loss,
)
from ml_core.train.transforms import RandomTPS

CHECKPOINT_FORMAT = "ml_core-train"
CHECKPOINT_VERSION = 1


@dataclass
class TrainOptions:
    """What one training run needs. ``iterations``/``batch_size`` default to the config's ``train_params``."""

    config: dict
    data: Path
    out: Path
    resume: Path | None = None
    iterations: int | None = None
    batch_size: int | None = None
    device: str = "cpu"
    vgg19: Path | None = None
    seed: int = 0
    checkpoint_every: int | None = None
    log_every: int = 10
    threads: int | None = None
    cache_dir: Path | None = None
    channels_last: bool = False


@dataclass
class TrainResult:
    iteration: int
    checkpoint: Path
    model: Path
    last_losses: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False


def check_train_config(cfg: dict, source: str = "config") -> dict:
    """The ``train_params`` section, validated (one-line FommError naming what is missing)."""
    tp = cfg.get("train_params")
    if not isinstance(tp, dict):
        raise FommError(
            f"{source} has no 'train_params' section: training needs the authors' train_params "
            "(batch_size, scales, loss_weights, transform_params, lr_*) -- start from "
            "ml_core/configs/default-64.yaml"
        )
    for key in ("scales", "loss_weights"):
        if key not in tp:
            raise FommError(f"{source} lacks train_params.{key}")
    lw = tp["loss_weights"]
    if (lw.get("equivariance_value") or lw.get("equivariance_jacobian")) and not isinstance(
        tp.get("transform_params"), dict
    ):
        raise FommError(
            f"{source} lacks train_params.transform_params (sigma_affine, sigma_tps, points_tps), "
            "which the equivariance losses need"
        )
    return tp


def landmark_names_of(tp: dict) -> list[str]:
    sup = tp.get("landmark_supervision") or {}
    return [str(n) for n in (sup.get("keypoints") or [])]


class GeneratorFullModel(nn.Module):
    """Keypoint detector + generator + every generator-side loss in one forward (one DDP unit)."""

    def __init__(
        self,
        kp_detector: nn.Module,
        generator: nn.Module,
        train_params: dict,
        vgg: Vgg19 | None = None,
        discriminator: nn.Module | None = None,
        num_channels: int = 3,
    ):
        super().__init__()
        self.kp_detector = kp_detector
        self.generator = generator
        self.train_params = train_params
        self.loss_weights = dict(train_params["loss_weights"])
        self.scales = list(train_params["scales"])
        self.pyramid = ImagePyramid(self.scales, num_channels)
        self.transform_params = dict(train_params.get("transform_params") or {})
        # not registered: frozen (VGG) or trained by its own optimiser/DDP unit (discriminator)
        self._aux: dict[str, nn.Module | None] = {"vgg": vgg, "discriminator": discriminator}
        sup = train_params.get("landmark_supervision") or {}
        self.landmark_weight = float(sup.get("weight", 0.0)) if sup.get("keypoints") else 0.0
        self.motion_weight = float(sup.get("motion_weight", 0.0)) if sup.get("keypoints") else 0.0

    def forward(
        self,
        source: torch.Tensor,
        driving: torch.Tensor,
        landmarks_source: torch.Tensor | None = None,
        landmarks_driving: torch.Tensor | None = None,
        landmarks_valid: torch.Tensor | None = None,
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        lw = self.loss_weights
        b = source.shape[0]
        w_eq_v = float(lw.get("equivariance_value", 0) or 0)
        w_eq_j = float(lw.get("equivariance_jacobian", 0) or 0)
        transform = None
        frames = [source, driving]
        if w_eq_v or w_eq_j:
            transform = RandomTPS(
                b,
                float(self.transform_params.get("sigma_affine", 0.05)),
                float(self.transform_params.get("sigma_tps", 0.005)),
                int(self.transform_params.get("points_tps", 5)),
                device=source.device,
            )
            frames.append(transform.transform_frame(driving))
        kp_all = self.kp_detector(torch.cat(frames, dim=0))
        parts = [{k: v[i * b : (i + 1) * b] for k, v in kp_all.items()} for i in range(len(frames))]
        kp_source, kp_driving = parts[0], parts[1]
        generated = self.generator(source, kp_source=kp_source, kp_driving=kp_driving, with_deformed=False)
        generated["kp_source"], generated["kp_driving"] = kp_source, kp_driving
        losses: dict[str, torch.Tensor] = {}
        pyramid_real = self.pyramid(driving)
        pyramid_fake = self.pyramid(generated["prediction"])
        vgg = self._aux["vgg"]
        losses["perceptual" if vgg is not None else "reconstruction"] = reconstruction_loss(
            pyramid_real, pyramid_fake, lw, vgg
        )
        disc = self._aux["discriminator"]
        if disc is not None and float(lw.get("generator_gan", 0) or 0) > 0:
            kp_detached = {k: v.detach() for k, v in kp_driving.items()}
            d_fake = disc(pyramid_fake, kp=kp_detached)
            d_real = disc(pyramid_real, kp=kp_detached)
            d_scales = disc.scales
            losses["generator_gan"] = float(lw["generator_gan"]) * generator_gan_loss(d_fake, d_scales)
            fm = lw.get("feature_matching", 0)
            if (sum(fm) if isinstance(fm, list | tuple) else fm) > 0:
                losses["feature_matching"] = feature_matching_loss(d_real, d_fake, d_scales, fm)
        if transform is not None:
            value_loss, jac_loss = equivariance_losses(kp_driving, parts[2], transform, with_jacobian=w_eq_j > 0)
            if w_eq_v:
                losses["equivariance_value"] = w_eq_v * value_loss
            if jac_loss is not None:
                losses["equivariance_jacobian"] = w_eq_j * jac_loss
        if landmarks_source is not None and landmarks_source.shape[1] > 0:
            losses.update(
                self._landmark_losses(kp_source, kp_driving, landmarks_source, landmarks_driving, landmarks_valid)
            )
        return losses, generated

    def _landmark_losses(
        self,
        kp_source: dict,
        kp_driving: dict,
        lm_source: torch.Tensor,
        lm_driving: torch.Tensor,
        valid: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """The landmark terms: keypoints on their landmarks (``weight``), and their motion from source to driving
        following the landmarks' motion (``motion_weight``, off by default)."""
        b = lm_source.shape[0]
        valid = valid if valid is not None else torch.ones(b, dtype=torch.bool)
        out: dict[str, torch.Tensor] = {}
        if self.landmark_weight > 0:
            out["landmarks"] = (
                self.landmark_weight
                * 0.5
                * (
                    landmark_loss(kp_source["value"], lm_source, valid)
                    + landmark_loss(kp_driving["value"], lm_driving, valid)
                )
            )
        if self.motion_weight > 0:
            out["landmark_motion"] = self.motion_weight * landmark_motion_loss(
                kp_source["value"], kp_driving["value"], lm_source, lm_driving, valid
            )
        return out


class DiscriminatorFullModel(nn.Module):
    def __init__(self, discriminator: nn.Module, train_params: dict, num_channels: int = 3):
        super().__init__()
        self.discriminator = discriminator
        self.pyramid = ImagePyramid(list(train_params["scales"]), num_channels)
        self.weight = float(train_params["loss_weights"].get("discriminator_gan", 1))

    def forward(self, driving: torch.Tensor, prediction: torch.Tensor, kp_driving: dict) -> torch.Tensor:
        kp = {k: v.detach() for k, v in kp_driving.items()}
        d_real = self.discriminator(self.pyramid(driving), kp=kp)
        d_fake = self.discriminator(self.pyramid(prediction.detach()), kp=kp)
        return self.weight * discriminator_gan_loss(d_real, d_fake, self.discriminator.scales)


# ---------------------------------------------------------------------------------------------- checkpoints
def read_train_checkpoint(path: Path) -> dict | None:
    """Our resumable checkpoint (dict with ``format`` == ml_core-train), or None when ``path`` is another kind."""
    if not path.exists():
        raise FommError(f"checkpoint to resume not found: {path}")
    from ml_core.model import _is_safetensors

    if path.is_dir() or _is_safetensors(path):
        return None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - let the model reader produce the precise message
        return None
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        return obj
    return None


def _model_states(modules: dict[str, nn.Module | None]) -> dict[str, dict[str, torch.Tensor]]:
    return {k: {n: t.detach().cpu() for n, t in m.state_dict().items()} for k, m in modules.items() if m is not None}


def export_model(modules: dict[str, nn.Module | None], cfg: dict, path: Path, iteration: int) -> Path:
    """The networks as one safetensors file with the config embedded (loadable by ``ml_core.load_model``)."""
    from ml_core.model import save_safetensors

    cfg = copy.deepcopy(cfg)
    return save_safetensors(_model_states(modules), cfg, path, {"iteration": str(iteration)})


def save_checkpoint(
    path: Path,
    cfg: dict,
    iteration: int,
    modules: dict[str, nn.Module | None],
    optimizers: dict[str, torch.optim.Optimizer],
    schedulers: dict[str, object],
) -> Path:
    state = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "iteration": int(iteration),
        "config_json": json.dumps(cfg, sort_keys=True),
    }
    state.update(_model_states(modules))
    for k, opt in optimizers.items():
        state[f"optimizer_{k}"] = opt.state_dict()
    for k, sch in schedulers.items():
        state[f"scheduler_{k}"] = sch.state_dict()
    with atomic_path(path) as tmp:
        torch.save(state, str(tmp))
    return path


# ------------------------------------------------------------------------------------------------- training
def _milestones(tp: dict, total: int) -> list[int]:
    if tp.get("iteration_milestones"):
        return sorted(int(m) for m in tp["iteration_milestones"])
    epochs = tp.get("num_epochs")
    ms = tp.get("epoch_milestones") or []
    if not epochs or not ms:
        return []
    return sorted({max(1, int(round(float(m) / float(epochs) * total))) for m in ms if float(m) < float(epochs)})


def train(
    opts: TrainOptions,
    progress: Callable[[int, int | None], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    log: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train (or resume) per ``opts``; returns where the checkpoint and model were written.

    ``progress(done, total)`` is called every iteration on the main process; ``cancel()`` returning True stops the
    run after the current iteration with a checkpoint saved; KeyboardInterrupt saves one too and is re-raised.
    """
    from ml_core.model import build_model, load_config, read_checkpoint, resolve_device

    cfg = load_config(opts.config)
    tp = check_train_config(cfg)
    device = resolve_device(opts.device)
    if opts.threads:
        torch.set_num_threads(int(opts.threads))
    info = D.setup(device)
    finished = False
    try:
        result = _train(opts, cfg, tp, device, info, progress, cancel, log, build_model, read_checkpoint)
        finished = True
        return result
    finally:
        D.teardown(info, finished)


def _train(
    opts: TrainOptions,
    cfg: dict,
    tp: dict,
    device: torch.device,
    info: D.DistInfo,
    progress: Callable[[int, int | None], None] | None,
    cancel: Callable[[], bool] | None,
    log: Callable[[dict], None] | None,
    build_model: Callable,
    read_checkpoint: Callable,
) -> TrainResult:
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    resume_state, init_states = _read_resume(opts, cfg, read_checkpoint)
    data = _make_data(opts, cfg, tp, info)
    modules, use_gan = _build_modules(
        opts, cfg, tp, device, info, build_model, resume_state if resume_state is not None else init_states
    )
    start = int(resume_state["iteration"]) if resume_state is not None else 0
    vgg = load_vgg19(opts.vgg19).to(device) if opts.vgg19 else None
    num_channels = int(cfg["model_params"]["common_params"].get("num_channels", 3))
    full = GeneratorFullModel(
        modules["kp_detector"], modules["generator"], tp, vgg, modules["discriminator"], num_channels
    ).to(device)
    disc_full = DiscriminatorFullModel(modules["discriminator"], tp, num_channels).to(device) if use_gan else None
    optimizers, schedulers = _make_optimizers(modules, tp, use_gan, _milestones(tp, data.total), resume_state)
    full_run, disc_run = _wrap_distributed(full, disc_full, device, info)
    run = _Run(opts, cfg, tp, device, info, data, modules, optimizers, schedulers, full_run, disc_run)
    return run.loop(start, progress, cancel, log)


def _read_resume(opts: TrainOptions, cfg: dict, read_checkpoint: Callable) -> tuple[dict | None, dict | None]:
    """(our resumable checkpoint, or None; the weights of a model file to fine-tune from, or None)."""
    if opts.resume is None:
        return None, None
    resume_state = read_train_checkpoint(Path(opts.resume))
    if resume_state is None:  # a model file (ours or the authors'): fine-tune from its weights
        return None, read_checkpoint(opts.resume).states
    saved_cfg = json.loads(resume_state["config_json"])
    if saved_cfg.get("model_params") != cfg.get("model_params"):
        raise FommError(
            f"checkpoint {opts.resume} was trained with different model_params than the given "
            "config: resume with the config it was trained with"
        )
    return resume_state, None


@dataclass
class _Data:
    """The training pairs, their sampler and loader, and the iteration budget."""

    dataset: PairDataset
    sampler: torch.utils.data.DistributedSampler
    loader: torch.utils.data.DataLoader
    steps_per_epoch: int
    total: int


def _make_data(opts: TrainOptions, cfg: dict, tp: dict, info: D.DistInfo) -> _Data:
    image_size = int((cfg.get("dataset_params") or {}).get("frame_shape", [256])[0])
    ds_params = cfg.get("dataset_params") or {}
    lm_names = landmark_names_of(tp)
    num_kp = int(cfg["model_params"]["common_params"]["num_kp"])
    if len(lm_names) > num_kp:
        raise FommError(
            f"train_params.landmark_supervision names {len(lm_names)} landmarks but the model has only "
            f"{num_kp} keypoints"
        )
    clips = load_clips(opts.data, "train", image_size, lm_names, opts.cache_dir)
    world = info.world_size
    batch = int(opts.batch_size or max(1, math.ceil(int(tp.get("batch_size", 8)) / world)))
    dataset = PairDataset(
        clips,
        bool(ds_params.get("id_sampling", False)),
        int(tp.get("num_repeats", 1)),
        ds_params.get("augmentation_params"),
        lm_names,
        seed=opts.seed,
    )
    # enough repeats that every process gets at least one full batch per epoch
    need = batch * world
    if len(dataset) < need:
        dataset.num_repeats = math.ceil(need / len(dataset.keys))
    sampler = torch.utils.data.DistributedSampler(
        dataset, num_replicas=world, rank=info.rank, shuffle=True, seed=opts.seed, drop_last=True
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, sampler=sampler, drop_last=True, num_workers=0)
    steps_per_epoch = max(1, len(loader))
    total = int(opts.iterations or tp.get("num_iterations") or int(tp.get("num_epochs", 1)) * steps_per_epoch)
    return _Data(dataset, sampler, loader, steps_per_epoch, total)


def _build_modules(
    opts: TrainOptions,
    cfg: dict,
    tp: dict,
    device: torch.device,
    info: D.DistInfo,
    build_model: Callable,
    src_states: dict | None,
) -> tuple[dict[str, nn.Module | None], bool]:
    """The networks (the same initial weights on every process, or ``src_states``') in train mode; and whether the
    adversarial terms are on (then the discriminator is built too)."""
    torch.manual_seed(opts.seed)  # the same initial weights on every process
    lw = tp["loss_weights"]
    use_gan = bool(cfg["model_params"].get("discriminator_params")) and float(lw.get("generator_gan", 0) or 0) > 0
    bundle = build_model(cfg, device, align_corners=True, with_discriminator=use_gan)
    modules: dict[str, nn.Module | None] = {
        "kp_detector": bundle.kp_detector,
        "generator": bundle.generator,
        "discriminator": bundle.discriminator if use_gan else None,
    }
    if src_states is not None:
        _load_states(modules, src_states, opts.resume)
    for m in modules.values():
        if m is not None:
            m.train()
            if opts.channels_last:
                m.to(memory_format=torch.channels_last)
    if info.enabled:
        for name in ("kp_detector", "generator"):
            modules[name] = D.convert_sync_batchnorm(modules[name], device)
    return modules, use_gan


def _load_states(modules: dict[str, nn.Module | None], src_states: dict, source: Path | None) -> None:
    for name, m in modules.items():
        if m is None:
            continue
        if name not in src_states:
            if name == "discriminator":
                continue
            raise FommError(f"checkpoint {source} has no '{name}' weights")
        try:
            m.load_state_dict(src_states[name], strict=True)
        except RuntimeError as exc:
            raise FommError(
                f"checkpoint {source} does not fit the config's {name}: {str(exc).splitlines()[0]}"
            ) from None


def _make_optimizers(
    modules: dict[str, nn.Module | None], tp: dict, use_gan: bool, milestones: list[int], resume_state: dict | None
) -> tuple[dict[str, torch.optim.Optimizer], dict[str, object]]:
    """Adam per network (betas 0.5, 0.999) and its step schedule; their saved states when resuming."""
    betas = (0.5, 0.999)
    optimizers = {
        "kp_detector": torch.optim.Adam(
            modules["kp_detector"].parameters(), lr=float(tp.get("lr_kp_detector", 2e-4)), betas=betas
        ),
        "generator": torch.optim.Adam(
            modules["generator"].parameters(), lr=float(tp.get("lr_generator", 2e-4)), betas=betas
        ),
    }
    if use_gan:
        optimizers["discriminator"] = torch.optim.Adam(
            modules["discriminator"].parameters(), lr=float(tp.get("lr_discriminator", 2e-4)), betas=betas
        )
    schedulers = {k: torch.optim.lr_scheduler.MultiStepLR(o, milestones, gamma=0.1) for k, o in optimizers.items()}
    if resume_state is not None:
        for k, o in optimizers.items():
            if f"optimizer_{k}" in resume_state:
                o.load_state_dict(resume_state[f"optimizer_{k}"])
        for k, s in schedulers.items():
            if f"scheduler_{k}" in resume_state:
                s.load_state_dict(resume_state[f"scheduler_{k}"])
                s.milestones = Counter(milestones)  # the given config's schedule wins over the saved one
    return optimizers, schedulers


def _wrap_distributed(
    full: nn.Module, disc_full: nn.Module | None, device: torch.device, info: D.DistInfo
) -> tuple[nn.Module, nn.Module | None]:
    if not info.enabled:
        return full, disc_full
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    full_run: nn.Module = DDP(full, device_ids=ids)  # buffers (BN statistics) broadcast from rank 0, the default
    disc_run = DDP(disc_full, device_ids=ids) if disc_full is not None else None
    return full_run, disc_run


class _Run:
    """One training run's loop: steps, loss logging, checkpoints, cancellation."""

    def __init__(
        self,
        opts: TrainOptions,
        cfg: dict,
        tp: dict,
        device: torch.device,
        info: D.DistInfo,
        data: _Data,
        modules: dict[str, nn.Module | None],
        optimizers: dict[str, torch.optim.Optimizer],
        schedulers: dict[str, object],
        full_run: nn.Module,
        disc_run: nn.Module | None,
    ) -> None:
        self.opts, self.cfg, self.device, self.info, self.data = opts, cfg, device, info, data
        self.modules, self.optimizers, self.schedulers = modules, optimizers, schedulers
        self.full_run, self.disc_run = full_run, disc_run
        out = Path(opts.out)
        self.ckpt_path, self.model_path = out / "checkpoint.pt", out / "model.safetensors"
        self.log_path = out / "log.jsonl"
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
        every = opts.checkpoint_every or tp.get("checkpoint_every_iterations", 0)
        self.ckpt_every = int(every or max(data.total // 10, 100))
        self.cfg_out = copy.deepcopy(cfg)
        self.cfg_out.setdefault("name", Path(str(out)).name)

    def save(self, iteration: int) -> None:
        if self.info.is_main:
            save_checkpoint(self.ckpt_path, self.cfg, iteration, self.modules, self.optimizers, self.schedulers)
            export_model({k: v for k, v in self.modules.items()}, self.cfg_out, self.model_path, iteration)

    def step(self, batch_data: dict[str, torch.Tensor], it: int) -> dict[str, float]:
        """One optimisation step (generator side, then the discriminator's); the losses' values."""
        opts, optimizers = self.opts, self.optimizers
        bd = {k: v.to(self.device, non_blocking=True) for k, v in batch_data.items()}
        if opts.channels_last:
            for k in ("source", "driving"):
                bd[k] = bd[k].contiguous(memory_format=torch.channels_last)
        losses, generated = self.full_run(
            bd["source"], bd["driving"], bd["landmarks_source"], bd["landmarks_driving"], bd["landmarks_valid"]
        )
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FommError(
                f"training diverged at iteration {it + 1} (loss {float(loss.detach())}): lower the "
                "learning rates or resume from the last checkpoint"
            )
        for k in ("kp_detector", "generator"):
            optimizers[k].zero_grad(set_to_none=True)
        loss.backward()
        optimizers["generator"].step()
        optimizers["kp_detector"].step()
        values = {k: float(v.detach()) for k, v in losses.items()}
        if self.disc_run is not None:
            optimizers["discriminator"].zero_grad(set_to_none=True)
            loss_d = self.disc_run(bd["driving"], generated["prediction"], generated["kp_driving"])
            loss_d.backward()
            optimizers["discriminator"].step()
            values["discriminator_gan"] = float(loss_d.detach())
        for s in self.schedulers.values():
            s.step()
        return values

    def write_log(
        self, it: int, epoch: int, means: dict[str, float], t0: float, log: Callable[[dict], None] | None
    ) -> None:
        record = {
            "iteration": it,
            "epoch": epoch,
            "elapsed_s": round(time.time() - t0, 2),
            "lr_generator": self.optimizers["generator"].param_groups[0]["lr"],
            "total": sum(means.values()),
            **means,
        }
        if self.info.is_main:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            if log is not None:
                log(record)

    def loop(
        self,
        start: int,
        progress: Callable[[int, int | None], None] | None,
        cancel: Callable[[], bool] | None,
        log: Callable[[dict], None] | None,
    ) -> TrainResult:
        opts, info, data = self.opts, self.info, self.data
        total = data.total
        it = start
        sums: dict[str, float] = {}
        n_sums = 0
        last: dict[str, float] = {}
        t0 = time.time()
        interrupted = False
        if progress is not None and info.is_main:
            progress(it, total)
        try:
            epoch = it // data.steps_per_epoch
            while it < total:
                data.sampler.set_epoch(epoch)
                data.dataset.reseed(opts.seed, info.rank, epoch)
                torch.manual_seed(opts.seed * 1000003 + epoch * 101 + info.rank)
                for batch_data in data.loader:
                    if it >= total:
                        break
                    values = self.step(batch_data, it)
                    it += 1
                    for k, v in values.items():
                        sums[k] = sums.get(k, 0.0) + v
                    n_sums += 1
                    if it % opts.log_every == 0 or it == total:
                        last = D.all_reduce_mean({k: v / n_sums for k, v in sums.items()}, info, self.device)
                        self.write_log(it, epoch, last, t0, log)
                        sums, n_sums = {}, 0
                    if progress is not None and info.is_main:
                        progress(it, total)
                    if it % self.ckpt_every == 0 and it < total:
                        self.save(it)
                    if cancel is not None and cancel():
                        interrupted = True
                        break
                if interrupted:
                    break
                epoch += 1
        except KeyboardInterrupt:
            self.save(it)
            raise
        self.save(it)
        return TrainResult(it, self.ckpt_path, self.model_path, last, interrupted)


def default_run_dir(config_path: str | os.PathLike | None) -> Path:
    stem = Path(str(config_path)).stem if config_path else "run"
    return Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def ship_model(src: str | os.PathLike, dst_dir: str | os.PathLike, half: bool = True) -> Path:
    """Write a trained model for distribution: ``dst_dir/model.safetensors`` (inference networks only, float16 when
    ``half``: ``ml_core.load_model`` runs it in float32) and ``dst_dir/config.yaml`` (the embedded config)."""
    import yaml

    from ml_core.model import read_checkpoint, save_safetensors

    ckpt = read_checkpoint(src)
    if ckpt.config is None:
        raise FommError(f"{src} has no embedded config: export it with the training run's model.safetensors")
    meta = {}
    if ckpt.kind == "safetensors":
        from safetensors import safe_open

        with safe_open(str(src), framework="pt") as f:
            meta = {k: v for k, v in (f.metadata() or {}).items() if k == "iteration"}
    states = {
        k: {n: (t.half() if half and t.is_floating_point() else t) for n, t in v.items()}
        for k, v in ckpt.states.items()
        if k in ("kp_detector", "generator")
    }
    dst = Path(dst_dir)
    meta["dtype"] = "float16" if half else "float32"
    path = save_safetensors(states, ckpt.config, dst / "model.safetensors", meta)
    with atomic_path(dst / "config.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(ckpt.config, sort_keys=False), encoding="utf-8")
    return path
