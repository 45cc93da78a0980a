#!/usr/bin/env bash
# Every GPU check in one run on an H100/H200 (<= 10 min): GPU specs/tests of the kernels, the FlashAttention
# leaderboard and sweep, model-step benchmarks, a profile of the small model; results and logs land in $OUT.
#
#   OUT=/tmp/lmfs-gpu bash benchmarks/gpu/run_device.sh
#
# Env knobs: BUDGET_S (default 540: the script stops starting phases after it), SWEEP=0 to skip the sweep.
set -u
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TRITON_CACHE_DIR="${TRITON_CACHE_DIR:-/tmp/lmfs-triton-cache}"
OUT="${OUT:-/tmp/lmfs-device-out}"
mkdir -p "$OUT"
WORK="$(mktemp -d)"
START=$(date +%s)
BUDGET_S="${BUDGET_S:-540}"
PYTEST=(python3 -m pytest -p no:cacheprovider -q --adapter lmfs/adapters.py)
# lmfs is not pip-installed on the device image: load its pytest plugin (adapter fixture, markers) by hand
python3 -c "import importlib.metadata as m; m.distribution('lmfs')" 2>/dev/null || PYTEST+=(-p lmfs.harness.pytest_plugin)
LOG="$OUT/device.log"

left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }
# phase NAME CAP_S CMD...: run CMD under `timeout min(CAP, time left)`, log it; skip when < 20 s are left
phase() {
  local name=$1 cap=$2; shift 2
  local rem; rem=$(left)
  if (( rem < 20 )); then echo "### $name: skipped (budget spent)" | tee -a "$LOG"; return; fi
  local t=$(( cap < rem ? cap : rem ))
  echo "### $name (cap ${t}s) $(date -u +%H:%M:%S)" | tee -a "$LOG"
  local s=$(date +%s)
  timeout -s INT -k 15 "$t" "$@" >>"$LOG" 2>&1
  local rc=$?
  echo "### $name: rc=$rc in $(( $(date +%s) - s ))s" | tee -a "$LOG"
}

{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
  python3 -c "import torch, triton, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# 1. correctness on the GPU (fixed kernel configs: no autotune compile storm)
phase specs 150 env LMFS_TRITON_AUTOTUNE=0 "${PYTEST[@]}" specs/kernels tests/kernels -rs

# 2. the leaderboard configuration (autotuned)
phase leaderboard 100 "${PYTEST[@]}" benchmarks/test_kernels_attention.py -k leaderboard -m gpu \
  --benchmark-json "$WORK/leaderboard.json" --benchmark-disable-gc

# 3. the sweep, in chunks so a timeout loses one chunk only
if [ "${SWEEP:-1}" != "0" ]; then
  phase sweep-fwdbwd-64 80 "${PYTEST[@]}" benchmarks/test_kernels_attention.py -m gpu -k "sweep and fwdbwd and d64" \
    --benchmark-json "$WORK/sweep_fb64.json"
  phase sweep-fwdbwd-128 80 "${PYTEST[@]}" benchmarks/test_kernels_attention.py -m gpu -k "sweep and fwdbwd and d128" \
    --benchmark-json "$WORK/sweep_fb128.json"
  phase sweep-fwd 70 "${PYTEST[@]}" benchmarks/test_kernels_attention.py -m gpu -k "sweep and fwd and not fwdbwd" \
    --benchmark-json "$WORK/sweep_f.json"
  phase sweep-bwd 70 "${PYTEST[@]}" benchmarks/test_kernels_attention.py -m gpu -k "sweep and bwd and not fwdbwd" \
    --benchmark-json "$WORK/sweep_b.json"
fi

# 4. model steps with each attention kernel, then the CLI: bench model + profile (trace, memory snapshot)
phase model-step 70 "${PYTEST[@]}" benchmarks/test_model_step.py -m gpu --benchmark-json "$WORK/model.json"
phase bench-model 50 python3 -m benchmarks.gpu.profile_cli bench model --size small --context 512 --device cuda \
  --dtype fp32 bf16 --mode forward forward-backward step --steps 5 --out "$WORK/profile/model_bench.jsonl"
phase profile 50 python3 -m benchmarks.gpu.profile_cli profile --size small --context 512 --device cuda --dtype bf16 \
  --attention triton --active 2 --no-stack --tag small-ctx512-step-bf16-triton-cuda --out "$WORK/trace" \
  --data-dir "$WORK/profile"

# 5. collect: merged bench JSON, profile data (+ trace/snapshot when small enough), summary
python3 -m benchmarks.gpu.summarize "$OUT/kernels_gpu.json" "$WORK"/leaderboard.json "$WORK"/sweep_*.json \
  "$WORK"/model.json 2>&1 | tee "$OUT/summary.txt"
tar -czf "$OUT/profile_data.tar.gz" -C "$WORK" profile 2>/dev/null
tar -czf "$OUT/profile_trace.tar.gz" -C "$WORK" trace 2>/dev/null
if [ -f "$OUT/profile_trace.tar.gz" ] && [ "$(stat -c %s "$OUT/profile_trace.tar.gz")" -gt 15000000 ]; then
  rm -f "$OUT/profile_trace.tar.gz"; echo "trace archive over 15 MB: left out" | tee -a "$OUT/summary.txt"
fi
grep -E "^###|passed|failed|error" "$LOG" | tail -40
echo "total $(( $(date +%s) - START ))s; files in $OUT:"; ls -la "$OUT"
