"""Executors: run the pipeline's units of work on local worker processes or on a Ray cluster.

Both have one method, ``map(fn, args_list, desc, progress) -> [(ok, value_or_error), ...]`` in input order:
a unit that raises becomes ``(False, "ErrorType: message")`` and the other units still run. ``fn`` is a
module-level function (:func:`lmfs.data.pipeline.run_shard_task`), so nothing but its arguments (the config
as a dict, a stage index and a shard path) crosses to the workers; results are the small stats dicts.

* :class:`LocalExecutor` — the default: ``workers`` processes (``concurrent.futures``; ``forkserver`` start so
  workers never inherit a driver's threads, e.g. Ray's); ``workers = 1`` runs in the calling process.
* :class:`RayExecutor` — one Ray task per unit (``num_cpus=1``, no retries: a failed shard is reported and
  retried by the next run, like the local executor). ``address=None`` starts a local cluster with ``num_cpus``
  CPUs (or joins the one this process already started); a real cluster is ``address = "auto"`` or
  ``"ray://head:10001"`` in the config's ``[executor]`` table — no code change. On a cluster the inputs and
  ``output_dir`` must be on storage every node sees (NFS, a shared volume), as the units read and write files.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import traceback
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["LocalExecutor", "RayExecutor"]

Result = tuple[bool, Any]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _progress(total: int, desc: str | None, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="shard", disable=not enabled or not total, leave=False)


class LocalExecutor:
    def __init__(self, workers: int = 2, start_method: str = "forkserver") -> None:
        if workers < 1:
            raise ValueError(f"executor.workers must be >= 1, got {workers}")
        self.workers, self.start_method = workers, start_method
        self._pool: cf.ProcessPoolExecutor | None = None

    def _get_pool(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(self.workers, mp_context=mp.get_context(self.start_method))
        return self._pool

    def map(self, fn: Callable[..., Any], args_list: Sequence[tuple], desc: str | None = None,
            progress: bool = True) -> list[Result]:
        results: list[Result | None] = [None] * len(args_list)
        bar = _progress(len(args_list), desc, progress)
        try:
            if self.workers == 1 or len(args_list) <= 1:
                for i, args in enumerate(args_list):
                    try:
                        results[i] = (True, fn(*args))
                    except Exception as e:
                        traceback.print_exc()
                        results[i] = (False, _describe(e))
                    bar.update()
            else:
                pool = self._get_pool()
                futures = {pool.submit(fn, *args): i for i, args in enumerate(args_list)}
                for fut in cf.as_completed(futures):
                    i = futures[fut]
                    try:
                        results[i] = (True, fut.result())
                    except Exception as e:
                        results[i] = (False, _describe(e))
                    bar.update()
        finally:
            bar.close()
        return [r for r in results if r is not None]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class RayExecutor:
    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("the Ray executor needs ray: pip install 'lmfs[ray]'") from e
        self.ray = ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address:
                kwargs["address"] = address
            elif num_cpus:
                kwargs["num_cpus"] = int(num_cpus)
            ray.init(**kwargs)
        self._remote: dict[Callable, Any] = {}

    def map(self, fn: Callable[..., Any], args_list: Sequence[tuple], desc: str | None = None,
            progress: bool = True) -> list[Result]:
        ray = self.ray
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = ray.remote(num_cpus=1, max_retries=0)(fn)
        refs = [remote.remote(*args) for args in args_list]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[Result | None] = [None] * len(refs)
        bar = _progress(len(refs), desc, progress)
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    try:
                        results[index[ref]] = (True, ray.get(ref))
                    except Exception as e:
                        cause = getattr(e, "cause", None) or e
                        results[index[ref]] = (False, _describe(cause))
                    bar.update()
        finally:
            bar.close()
        return [r for r in results if r is not None]

    def close(self) -> None:
        """Leaves the cluster running (it may be shared, or reused by the next run in this process)."""
