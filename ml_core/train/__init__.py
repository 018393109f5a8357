"""Self-supervised FOMM training: data (``dataset``, ``augmentation``), random affine + TPS warps (``transforms``),
losses (``losses``), the loop with resumable checkpoints (``trainer``) and multi-process training (``distributed``).

Entry point: ``python -m ml_core train --config CONFIG --data DIR`` (``ml_core/commands/train.py``).
"""
