"""Parallel training from ``torch.distributed`` primitives: DDP (per-parameter and bucketed) and ZeRO-1."""

from lmfs.parallel.ddp import DDPBucketed, DDPIndividualParameters
from lmfs.parallel.sharded_optimizer import ShardedOptimizer

__all__ = ["DDPBucketed", "DDPIndividualParameters", "ShardedOptimizer"]
