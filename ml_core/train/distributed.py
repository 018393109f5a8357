"""Multi-process training on PyTorch's own engine: ``torchrun`` + DistributedDataParallel + synchronised batch norm.

``torchrun --nproc-per-node N -m ml_core train ...`` sets ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``; :func:`setup`
joins the process group (NCCL on CUDA, gloo on CPU). Every BatchNorm is converted: to ``torch.nn.SyncBatchNorm`` on
CUDA, and on CPU (where PyTorch's SyncBatchNorm refuses to run) to :class:`CpuSyncBatchNorm`, which all-reduces the
per-channel sums itself. Both keep BatchNorm2d's parameter and buffer names, so checkpoints are unchanged.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: torch.device) -> DistInfo:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1); no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local, False)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=10))
    return DistInfo(rank, world, local, True)


def teardown(info: DistInfo, finished: bool = False) -> None:
    """Leave the process group. After a run every process finished (``finished``), the processes first meet at a
    barrier, so that none closes its connections while another is still writing the last checkpoint; after an
    error there is no barrier (the others may never arrive)."""
    if info.initialised_here and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """Differentiable all-reduce (sum): the gradient of a sum over processes is the sum of the gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = tensor.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = grad.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out


class CpuSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are computed over the whole process group (any backend/device)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        count = x.new_full((1,), x.numel() / c)
        stats = _AllReduceSum.apply(torch.cat([x.sum(dim=(0, 2, 3)), (x * x).sum(dim=(0, 2, 3)), count]))
        total = stats[-1]
        mean = stats[:c] / total
        var = (stats[c : 2 * c] / total - mean * mean).clamp_min(0.0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var.detach() * total.detach() / (total.detach() - 1).clamp_min(1.0)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
        y = (x - mean.view(1, c, 1, 1)) * torch.rsqrt(var.view(1, c, 1, 1) + self.eps)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return y


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm2d of ``module`` (in place) by a synchronised one with the same state."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in list(module.named_children()):
        if type(child) is nn.BatchNorm2d:
            new = CpuSyncBatchNorm(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            )
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            new.to(next(iter(child.buffers())).device if list(child.buffers()) else device)
            setattr(module, name, new)
        else:
            convert_sync_batchnorm(child, device)
    return module


def all_reduce_mean(values: dict[str, float], info: DistInfo, device: torch.device | str = "cpu") -> dict[str, float]:
    """Average scalar logs over processes (for the log written by rank 0)."""
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return {k: float(v) / info.world_size for k, v in zip(keys, t.tolist(), strict=True)}
