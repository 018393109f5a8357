"""Adapt to performer: a short self-supervised fine-tuning of a model on the driving video itself (an experiment of
issue 13, measured by ``bench/eval_real_footage.py --adapt N``; not in the product: it did not move the real-footage
figures, see bench/RESULTS.md).

The paper's own objective (section 3), on (source, driving) pairs drawn from the performer's frames, cropped exactly
as extraction crops them: the generator animates one frame of the video towards another through the keypoints, the
multi-scale reconstruction error and the equivariance of keypoints and Jacobians under a random warp train the
keypoint detector (and the generator, whose job here is only to make the reconstruction informative). No labels:
the video is its own supervision. An anchor keeps each keypoint near where the original model puts it on the same
frames (L1 on the values, weight ``anchor``), so that a keypoint keeps its meaning (chin, lids, mouth corners) for
calibration by rendering, and only moves where the performer's face explains the motion better.

Batch normalisation keeps the statistics it was trained with (its running means are not updated from one video).
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ml_core.errors import Cancelled, FommError
from ml_core.model import ModelBundle

Progress = Callable[[int, int | None], None]


@dataclass
class AdaptOptions:
    """How long and how hard to adapt. ``anchor``: weight of the pull towards the original keypoints."""

    iterations: int = 150
    batch_size: int = 8
    lr: float = 1e-4
    anchor: float = 10.0
    train_generator: bool = True
    seed: int = 0


def performer_frames(
    video: str,
    bundle: ModelBundle,
    crop: str | Sequence[int] = "auto",
    start: int | None = None,
    end: int | None = None,
    step: int = 1,
    max_frames: int = 2000,
    cancel: Callable[[], bool] | None = None,
) -> np.ndarray:
    """The frames extraction would feed the model, cropped the same way: uint8 [T, S, S, 3] RGB (at most
    ``max_frames``, evenly spread over the selection)."""
    from ml_core.extraction import _batches, _resolve_crop
    from ml_core.video import VideoReader

    size = int(bundle.image_size)
    out: list[np.ndarray] = []
    with VideoReader(video, start=start, end=end, step=step, bgr=True) as reader:
        framing = _resolve_crop(crop, video, reader, start, end, step, cancel, [], None, bundle.config)
        stop = threading.Event()
        with contextlib.closing(_batches(reader, framing, size, 16, stop)) as batches:
            for _, batch in batches:
                if cancel is not None and cancel():
                    raise Cancelled("adaptation cancelled")
                out.append(batch.copy())
    if not out:
        raise FommError(f"{video}: no frames to adapt on")
    frames = np.concatenate(out)
    if len(frames) > max_frames:
        frames = frames[np.linspace(0, len(frames) - 1, max_frames).round().astype(int)]
    return frames


def _freeze_batchnorm(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _synthetic_batch(clips: list, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """(source, driving, landmarks of each, valid) of ``batch`` random pairs of frames from random synthetic clips."""
    src, drv, lm_s, lm_d = [], [], [], []
    for _ in range(batch):
        clip = clips[int(torch.randint(len(clips), (1,), generator=gen))]
        a, b = (int(v) for v in torch.randint(len(clip.frames), (2,), generator=gen))
        src.append(clip.frames[a])
        drv.append(clip.frames[b])
        lm_s.append(clip.landmarks[a])
        lm_d.append(clip.landmarks[b])

    def images(x: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(x)).permute(0, 3, 1, 2).float().div_(255.0)

    valid = torch.ones(batch, dtype=torch.bool)
    return images(src), images(drv), torch.from_numpy(np.stack(lm_s)), torch.from_numpy(np.stack(lm_d)), valid


def adapt_model(
    bundle: ModelBundle,
    frames: np.ndarray,
    options: AdaptOptions | None = None,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
    log: Callable[[str], None] | None = None,
    synthetic: list | None = None,
) -> ModelBundle:
    """A copy of ``bundle`` fine-tuned on ``frames`` (uint8 [T, S, S, 3] RGB at the model's size); ``bundle`` is left
    as it is. The copy keeps the original's checkpoint hash, so a clip extracted with it is calibrated and previewed
    with the original model (the anchor is what keeps the two compatible); ``extra["adapted"]`` records the run
    (iterations, frames, the first and last losses). ``synthetic``: training clips with ground-truth landmarks
    (:func:`ml_core.train.dataset.load_clips` of a ``tools.synth`` set, with the config's landmark names): each
    iteration then also trains on a batch of them with the landmark supervision of the model's own recipe, as the
    issue suggests, so the keypoints keep their meaning."""
    opts = options or AdaptOptions()
    if frames.ndim != 4 or frames.shape[1:] != (bundle.image_size, bundle.image_size, 3):
        raise FommError(f"frames must be [T, {bundle.image_size}, {bundle.image_size}, 3], got {frames.shape}")
    if len(frames) < 2:
        raise FommError("adapting needs at least 2 frames of the performer")
    if synthetic is not None and any(c.landmarks is None for c in synthetic):
        raise FommError("every synthetic clip mixed into the adaptation needs its ground-truth landmarks (.npz)")
    device = torch.device(bundle.device)
    gen_rng = torch.Generator().manual_seed(opts.seed)
    torch.manual_seed(opts.seed)
    full, optim = _trainable(bundle, opts, with_landmarks=bool(synthetic))
    data = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
    n = len(data)
    if progress is not None:
        progress(0, opts.iterations)
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for it in range(opts.iterations):
        if cancel is not None and cancel():
            raise Cancelled("adaptation cancelled")
        losses = _losses(full, bundle.kp_detector, data, opts, gen_rng, device)
        if synthetic:
            s_src, s_drv, s_lms, s_lmd, s_valid = _synthetic_batch(synthetic, opts.batch_size, gen_rng)
            syn, _ = full(s_src.to(device), s_drv.to(device), s_lms.to(device), s_lmd.to(device), s_valid.to(device))
            losses.update({f"synthetic_{k}": v for k, v in syn.items()})
        total = sum(losses.values())
        if not torch.isfinite(total):
            raise FommError(f"adaptation diverged at iteration {it}")
        optim.zero_grad(set_to_none=True)
        total.backward()
        optim.step()
        last = {k: float(v.detach()) for k, v in losses.items()}
        first = first or last
        if log is not None and (it % 25 == 0 or it == opts.iterations - 1):
            log(f"adapt {it}: " + ", ".join(f"{k} {v:.4f}" for k, v in last.items()))
        if progress is not None:
            progress(it + 1, opts.iterations)
    kp, gen = full.kp_detector.eval(), full.generator.eval()
    for p in list(kp.parameters()) + list(gen.parameters()):
        p.requires_grad_(False)
    adapted = copy.copy(bundle)
    adapted.kp_detector, adapted.generator = kp, gen
    adapted.extra = dict(
        bundle.extra, adapted={"iterations": opts.iterations, "frames": n, "first": first, "last": last}
    )
    return adapted


def _trainable(
    bundle: ModelBundle, opts: AdaptOptions, with_landmarks: bool
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """Copies of the bundle's networks in one training unit (the trainer's generator-side losses; batch normalisation
    frozen; landmark supervision only when synthetic batches are mixed in), and their optimiser."""
    from ml_core.train.trainer import GeneratorFullModel, check_train_config

    tp = copy.deepcopy(check_train_config(bundle.config, "the model's configuration"))
    if not with_landmarks:
        tp.pop("landmark_supervision", None)
    kp = copy.deepcopy(bundle.kp_detector).float()
    gen = copy.deepcopy(bundle.generator).float()
    full = GeneratorFullModel(kp, gen, tp, num_channels=3).to(torch.device(bundle.device))
    full.train()
    _freeze_batchnorm(full)
    if not opts.train_generator:
        for p in gen.parameters():
            p.requires_grad_(False)
    params = list(kp.parameters()) + (list(gen.parameters()) if opts.train_generator else [])
    return full, torch.optim.Adam(params, lr=opts.lr, betas=(0.5, 0.999))


def _losses(
    full: nn.Module,
    teacher: nn.Module,
    data: torch.Tensor,
    opts: AdaptOptions,
    gen_rng: torch.Generator,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """The paper's losses on a batch of random (source, driving) pairs of the performer's frames, and the anchor to the
    original keypoints (``teacher``) on the same frames."""
    src_i = torch.randint(len(data), (opts.batch_size,), generator=gen_rng)
    drv_i = torch.randint(len(data), (opts.batch_size,), generator=gen_rng)
    source, driving = data[src_i].to(device), data[drv_i].to(device)
    losses, generated = full(source, driving)
    if opts.anchor > 0:
        with torch.no_grad():
            ref = teacher(torch.cat([source, driving]))["value"]
        mine = torch.cat([generated["kp_source"]["value"], generated["kp_driving"]["value"]])
        losses["anchor"] = opts.anchor * (mine - ref).abs().mean()
    return losses
