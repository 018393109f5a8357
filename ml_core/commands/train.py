"""``python -m ml_core train --config CONFIG --data DIR [...]``: self-supervised FOMM training (see ml_core.train).

Runs alone or under ``torchrun --nproc-per-node N -m ml_core train ...`` (DistributedDataParallel).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train or fine-tune a model on videos (authors' train/test layout)")
    p.add_argument(
        "--config",
        required=True,
        help="YAML config with model_params and train_params (e.g. ml_core/configs/default-64.yaml or a shipped name)",
    )
    p.add_argument("--data", required=True, help="data folder with train/ (videos or folders of frames)")
    p.add_argument(
        "--out", help="run folder for checkpoint.pt, model.safetensors, log.jsonl (default runs/<config>-<time>)"
    )
    p.add_argument("--resume", help="checkpoint.pt to resume, or a model file (.safetensors/.pth.tar) to fine-tune")
    p.add_argument("--iterations", type=int, help="total iterations (default: train_params)")
    p.add_argument("--batch-size", type=int, help="batch size per process (default: train_params.batch_size)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument(
        "--vgg19",
        help="torchvision VGG19 ImageNet weights (.pth) for the perceptual loss; without it: multi-scale L1 + SSIM",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, help="iterations between checkpoints")
    p.add_argument("--log-every", type=int, default=10, help="iterations between log lines (default 10)")
    p.add_argument("--threads", type=int, help="CPU threads per process (torch.set_num_threads)")
    p.add_argument("--cache-dir", help="folder for decoded-frame .npy caches (default: decode into memory)")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    from ml_core.errors import FommError
    from ml_core.train.trainer import TrainOptions, default_run_dir, train

    if args.iterations is not None and args.iterations < 1:
        raise FommError("--iterations must be at least 1")
    if args.batch_size is not None and args.batch_size < 1:
        raise FommError("--batch-size must be at least 1")
    opts = TrainOptions(
        config=args.config,
        data=Path(args.data),
        out=Path(args.out) if args.out else default_run_dir(args.config),
        resume=Path(args.resume) if args.resume else None,
        iterations=args.iterations,
        batch_size=args.batch_size,
        device=args.device,
        vgg19=Path(args.vgg19) if args.vgg19 else None,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        log_every=max(1, args.log_every),
        threads=args.threads,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        channels_last=args.channels_last,
    )
    bar = None
    import os

    main = int(os.environ.get("RANK", "0")) == 0

    def progress(done: int, total: int | None) -> None:
        nonlocal bar
        if args.no_progress or not main:
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=done, unit="it", desc="train", dynamic_ncols=True)
        else:
            bar.update(done - bar.n)

    def log(record: dict) -> None:
        if bar is not None:
            bar.set_postfix(loss=f"{record['total']:.3f}")

    import signal

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Ctrl-C and SIGTERM (a scheduler or session ending) both save a checkpoint; SIGINT may arrive ignored when the
    # run was started in the background by a shell, so its handler is installed explicitly.
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        result = train(opts, progress=progress, log=log)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        if main:
            print(f"interrupted: checkpoint saved in {opts.out}", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    if main:
        print(f"trained to iteration {result.iteration}: {result.checkpoint} (resume), {result.model} (model)")
    return 0
