"""From-scratch optimization: AdamW, the cosine schedule with warmup, global-norm gradient clipping."""

from lmfs.optim.adamw import AdamW
from lmfs.optim.clip import clip_grad_norm_
from lmfs.optim.schedule import cosine_lr

__all__ = ["AdamW", "clip_grad_norm_", "cosine_lr"]
