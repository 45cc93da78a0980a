"""A broken FSDP adapter (see broken_fsdp_base.py): NotAveraged."""

from broken_fsdp_base import NotAveraged  # this folder is on sys.path when the harness loads the file

from lmfs.adapters import *  # noqa: F403
from lmfs.parallel.fsdp import gather_full_params


def get_fsdp(module, compute_dtype=None):
    return NotAveraged(module, compute_dtype=compute_dtype)


def fsdp_gather_full_params(fsdp_model):
    return gather_full_params(fsdp_model)
