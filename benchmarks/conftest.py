"""Benchmark-suite plumbing: lmfs's pytest plugin (markers, the ``adapter`` fixture), and pytest-benchmark's
machine_info enriched so every stored run says where it ran.

Conventions for benchmark authors (see reports/README.md): put lmfs and its peers in one ``benchmark.group``;
set ``benchmark.extra_info["impl"]`` to ``"lmfs"`` or the peer's name; optionally ``extra_info["bytes"|
"tokens"|"flops"]`` per round for throughput. The ``torch_threads`` fixture pins torch's CPU threads.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

# Loaded here, not installed as a global pytest plugin (installing lmfs changes no other project's pytest runs);
# only when nothing loaded it yet (``-p`` from ``lmfs bench run``, another of lmfs's conftests): pluggy refuses
# one module under two names, and pytest refuses ``pytest_plugins`` in a conftest it reaches late (``pytest .``).
if "lmfs.harness.pytest_plugin" not in sys.modules:
    pytest_plugins = ["lmfs.harness.pytest_plugin"]


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    from lmfs.harness.machine import machine_info as lmfs_machine_info

    machine_info.update(lmfs_machine_info())


def pytest_benchmark_update_commit_info(config: pytest.Config, commit_info: dict) -> None:
    """Outside git (e.g. a copy of the tree on the GPU machine) ``$LMFS_COMMIT`` names the commit."""
    env = os.environ.get("LMFS_COMMIT")
    if env and (commit_info.get("error") or commit_info.get("id") in (None, "", "unversioned")):
        commit_info.pop("error", None)
        commit_info["id"] = env.removesuffix("-dirty")
        commit_info["dirty"] = env.endswith("-dirty")


@pytest.fixture
def torch_threads() -> Iterator[int]:
    """Pin torch to ``$LMFS_THREADS`` CPU threads (default 1) for the test; restores the old count."""
    import torch

    old = torch.get_num_threads()
    n = int(os.environ.get("LMFS_THREADS", "1"))
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(old)
