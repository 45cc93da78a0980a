"""Compile the Triton kernels for a Hopper GPU (sm_90) on a machine without one: catches front-end errors the
interpreter misses, and reports each config's shared memory (H100/H200 allow 227 KiB per block) and whether the
matrix products lowered to ``wgmma``.

    python -m lmfs.kernels.compile_check                 # every config, bf16 + fp32, head dims 64 and 128
    python -m lmfs.kernels.compile_check --quick         # first config of each kernel, bf16, d=64, causal

Must run with ``TRITON_INTERPRET`` unset (it is removed here before Triton is imported).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HOPPER_SMEM_LIMIT = 232_448  # bytes of shared memory a block may use on sm_90


def compile_kernel(name: str, dtype: str, head_dim: int, causal: bool, config: tuple[int, int, int, int],
                   arch: int = 90) -> dict:
    """Compile one kernel for ``cuda:sm_<arch>``; returns shared bytes, wgmma use and compile seconds."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from lmfs.kernels import flash_triton as ft

    kernel = ft._KERNELS[name]
    block_d = max(16, triton.next_power_of_2(head_dim))
    bq, bk, warps, stages = config
    constexprs = {"HEAD_DIM": head_dim, "BLOCK_D": block_d, "PAD_D": block_d != head_dim, "IS_CAUSAL": causal,
                  "BLOCK_Q": bq, "BLOCK_K": bk}
    pointer = f"*{dtype}"
    types = {n: pointer for n in ("Q", "K", "V", "O", "DO", "DQ", "DK", "DV")}
    types.update(L="*fp32", Delta="*fp32", qk_scale="fp32", sm_scale="fp32")
    signature = {p: "constexpr" if p in constexprs else types.get(p, "i32") for p in kernel.arg_names}
    src = ASTSource(fn=kernel, signature=signature,
                    constexprs={(kernel.arg_names.index(k),): v for k, v in constexprs.items()})
    t0 = time.perf_counter()
    compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32),
                              options={"num_warps": warps, "num_stages": stages})
    return {"kernel": name, "dtype": dtype, "head_dim": head_dim, "causal": causal, "config": config,
            "shared": compiled.metadata.shared, "fits": compiled.metadata.shared <= HOPPER_SMEM_LIMIT,
            "wgmma": "wgmma" in compiled.asm.get("ptx", ""), "seconds": time.perf_counter() - t0}


def check_autotune_pruning() -> None:
    """The autotuners offer exactly :func:`configs_for`'s list for each head dim (no GPU needed)."""
    from lmfs.kernels import flash_triton as ft

    for name in ft._KERNELS:
        tuner = ft._tuned_kernel(name)
        tuner.nargs = {}
        for d in (16, 64, 80, 128):
            got = [(c.kwargs["BLOCK_Q"], c.kwargs["BLOCK_K"], c.num_warps, c.num_stages)
                   for c in tuner.prune_configs({"HEAD_DIM": d})]
            assert sorted(got) == sorted(ft.configs_for(name, d)), (name, d, got)
    print("autotune pruning: ok")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="first config of each kernel, bf16, d=64, causal only")
    args = parser.parse_args(argv)
    os.environ.pop("TRITON_INTERPRET", None)
    from lmfs.kernels import flash_triton as ft

    if ft.interpreting():
        print("TRITON_INTERPRET is set: unset it and rerun", file=sys.stderr)
        return 2
    check_autotune_pruning()
    cases = []
    for name in ft._KERNELS:
        if args.quick:
            cases.append((name, "bf16", 64, True, ft.configs_for(name, 64)[0]))
            continue
        for dtype in ("bf16", "fp32"):
            for d in (64, 128):
                cases.extend((name, dtype, d, True, c) for c in ft.configs_for(name, d))
    bad = 0
    for case in cases:
        r = compile_kernel(*case)
        bad += not r["wgmma"] and r["dtype"] != "fp32"
        print(f"{r['kernel']:<7}{r['dtype']:<5} d={r['head_dim']:<4}{r['config']!s:<18}shared {r['shared']:>7} B "
              f"{'fits' if r['fits'] else 'TOO BIG':<8}wgmma={r['wgmma']!s:<6}{r['seconds']:.1f}s", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
