"""Merge the pytest-benchmark JSON files of a device run and print the summary table (leaderboard, SDPA ratios,
sweep TFLOP/s, model steps). Usage: ``python -m benchmarks.gpu.summarize OUT.json IN1.json IN2.json ...``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lmfs.kernels.attention_backends import get_backend

H100_TARGET_MS = 5.3  # target: lmfs Triton <= 5.3 ms on an H100 (>= 1.3x SDPA flash); the real bar: cuDNN 4.49 ms


def merge(out: Path, inputs: list[Path]) -> dict:
    merged: dict | None = None
    for path in inputs:
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            print(f"[summarize] skipping {path}: {exc}")
            continue
        if merged is None:
            merged = doc
        else:
            merged["benchmarks"].extend(doc.get("benchmarks", []))
    merged = merged or {"benchmarks": []}
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(merged, indent=1))
    tmp.replace(out)
    return merged


def _rows(doc: dict) -> list[dict]:
    rows = []
    for b in doc.get("benchmarks", []):
        e = b.get("extra_info") or {}
        rows.append({"group": b.get("group"), "name": b.get("name"), "impl": e.get("attn_impl", e.get("impl")),
                     "device": e.get("device", "?"), "do_bench_ms": e.get("do_bench_ms"), "tflops": e.get("tflops"),
                     "median_ms": 1e3 * b["stats"]["median"], "mode": e.get("mode"), "shape": e.get("shape")})
    return rows


def report(doc: dict) -> None:
    rows = _rows(doc)
    lb = {r["impl"]: r for r in rows if str(r["group"]).startswith("attention-leaderboard")}
    print("\n=== leaderboard: (16, 16384, 64) bf16 causal fwd+bwd, do_bench median ===")
    if lb:
        device = next(iter(lb.values()))["device"]
        print(f"card: {device}")
        for impl, r in lb.items():
            print(f"  {impl:<20}{r['do_bench_ms']:>9.3f} ms {r['tflops']:>8.1f} TFLOP/s")
        ours = get_backend("triton").label
        mine = lb.get(ours)
        for peer in (get_backend(name).label for name in ("sdpa-flash", "sdpa-cudnn")):
            if mine and peer in lb:
                print(f"  speedup {ours} vs {peer}: {lb[peer]['do_bench_ms'] / mine['do_bench_ms']:.3f}x")
        if mine and "H100" in device:
            verdict = "MET" if mine["do_bench_ms"] <= H100_TARGET_MS else "NOT met"
            print(f"  H100 target <= {H100_TARGET_MS} ms: {verdict}")
    else:
        print("  (no leaderboard results)")
    sweep = [r for r in rows if str(r["group"]).startswith("attention-gpu-")]
    if sweep:
        print("\n=== sweep: TFLOP/s (do_bench median), bf16 causal ===")
        impls = sorted({r["impl"] for r in sweep})
        print(f"{'mode':<9}{'d':>4}{'seq':>7}  " + "".join(f"{i:>18}" for i in impls))
        keys = sorted({(r["mode"], r["shape"][2], r["shape"][1]) for r in sweep})
        for mode, d, n in keys:
            cells = []
            for i in impls:
                hit = [r for r in sweep if r["impl"] == i and r["mode"] == mode and r["shape"][2] == d and r["shape"][1] == n]
                cells.append(f"{hit[0]['tflops']:>18.1f}" if hit else f"{'-':>18}")
            print(f"{mode:<9}{d:>4}{n:>7}  " + "".join(cells))
    model = [r for r in rows if str(r["group"]).startswith("model-step-gpu")]
    if model:
        print("\n=== model step (small, ctx 1024, bf16 autocast, batch 4): median ms (host clock, synchronized) ===")
        for r in model:
            print(f"  {r['impl']:<22}{r['median_ms']:>9.2f} ms")


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    doc = merge(Path(argv[0]), [Path(p) for p in argv[1:] if Path(p).exists()])
    report(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
