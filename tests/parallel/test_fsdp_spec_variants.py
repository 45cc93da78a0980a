"""The FSDP specs fail on deliberately broken adapters (tests/parallel/fsdp_broken/), each for its reason, and
pass on lmfs's: one 2-rank spawn runs the specs' checks for every variant, then each spec's assertion is applied
to each variant's results."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmfs.harness.adapter import Adapter, load_adapter
from specs.parallel import test_fsdp as spec

BROKEN = Path(__file__).parent / "fsdp_broken"

ALL = (
    spec.assert_matches_single_process,
    spec.assert_gradients_averaged,
    spec.assert_reduce_scatter_during_backward,
    spec.assert_gather_full_params,
    spec.assert_state_sharded,
    spec.assert_fp16_compute,
)

#: variant -> (the checks its run needs, the spec assertions that must fail)
VARIANTS = {
    "not_averaged": (("fp32", "grad"), {spec.assert_matches_single_process, spec.assert_gradients_averaged}),
    "no_communication": (
        ("fp32", "grad"),
        {
            spec.assert_matches_single_process,
            spec.assert_gradients_averaged,
            spec.assert_reduce_scatter_during_backward,
        },
    ),
    "all_reduce_after_backward": (("fp32",), {spec.assert_reduce_scatter_during_backward}),
    "master_in_compute_dtype": (("fp16",), {spec.assert_fp16_compute}),
    "gather_returns_shard": (
        ("fp32", "grad"),
        {spec.assert_gather_full_params, spec.assert_matches_single_process, spec.assert_gradients_averaged},
    ),
    "keeps_gathered_copies": (("fp32",), {spec.assert_state_sharded}),
}


def _variant_runs(rank: int, world: int, adapters: dict[str, tuple[Adapter, tuple[str, ...]]]) -> dict:
    return {name: spec._checks(rank, world, adapter, names) for name, (adapter, names) in adapters.items()}


def _adapter(spec_path: str) -> Adapter:
    return Adapter(load_adapter(spec_path), spec_path)


@pytest.fixture(scope="module")
def variant_results(run_ranks) -> dict[str, list[dict]]:
    adapters = {name: (_adapter(str(BROKEN / f"{name}.py")), names) for name, (names, _) in VARIANTS.items()}
    per_rank = run_ranks(_variant_runs, 2, adapters, timeout=300)
    return {name: [r[name] for r in per_rank] for name in VARIANTS}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_broken_variant_fails_its_specs(variant_results, variant):
    names, must_fail = VARIANTS[variant]
    results = variant_results[variant]
    for check in ALL:
        needs = {
            spec.assert_fp16_compute: {"fp16"},
            spec.assert_gradients_averaged: {"grad"},
        }.get(check, {"fp32"})
        if not needs <= set(names):
            continue
        if check in must_fail:
            with pytest.raises((AssertionError, pytest.fail.Exception)):
                check(results)
        else:  # the variant is broken in one way only: the other specs still pass on it
            check(results)
