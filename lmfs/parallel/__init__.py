"""Parallel training from ``torch.distributed`` primitives: DDP (per-parameter and bucketed), ZeRO-1 and FSDP."""

from lmfs.parallel.ddp import DDPBucketed, DDPIndividualParameters
from lmfs.parallel.fsdp import FSDP
from lmfs.parallel.sharded_optimizer import ShardedOptimizer

__all__ = ["FSDP", "DDPBucketed", "DDPIndividualParameters", "ShardedOptimizer"]
