#!/usr/bin/env bash
# The one prepared GPU run of issue 7 (items 4 and 5): step times of the paper's search
# supernet (C=16, 8 cells, batch 64, 32 px) and of the DARTS_V2 CIFAR network (20 cells, C=36,
# batch 96), plain (fp32, NCHW) and fast (bf16 autocast + channels-last + the GPU-resident data
# pipeline, then + torch.compile); the fast-path equality tests on the GPU; and the
# extrapolation to a 50-epoch search and a 600-epoch training in GPU-hours.
#
#   bash benchmarks/gpu_check.sh                      # from the repository root, on the GPU machine
#   DEVICE=cpu STEPS=2 bash benchmarks/gpu_check.sh   # the CPU dry run (tiny sizes)
#
# Results: one JSON line per run in $OUT/<run>.json (stderr in <run>.log), the test log in
# $OUT/gpu_tests.log, $OUT/summary.txt and $OUT/summary.json. OUT defaults to ./gpu-out.
# Every part has its own timeout and the whole run aims at BUDGET seconds (default 420): parts
# that no longer fit are skipped, most expendable last (compile runs). Needs only python3 with
# torch and numpy; pytest is used where installed (else benchmarks/run_gpu_tests.py).
set -u

START=$SECONDS
BUDGET=${BUDGET:-420}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-./gpu-out}
PY=${PYTHON:-python3}
mkdir -p "$OUT"

timeout 30 "$PY" -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 || true
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ "$DEVICE" = cpu ]; then
    # The dry run: the same parts at toy sizes, so the script is known to work end to end.
    STEPS=${STEPS:-2}; WARMUP=1; TRAIN_STEPS=${TRAIN_STEPS:-$STEPS}; COMPILE=${COMPILE:-0}
    SUPERNET="--layers 3 --init-channels 4 --batch-size 4 --image-size 32"
    TRAIN="--layers 3 --init-channels 4 --batch-size 4"
    EXTRA="--threads 1"
else
    STEPS=${STEPS:-30}; WARMUP=5; TRAIN_STEPS=${TRAIN_STEPS:-100}; COMPILE=${COMPILE:-1}
    SUPERNET="--layers 8 --init-channels 16 --batch-size 64 --image-size 32"
    TRAIN="--layers 20 --init-channels 36 --batch-size 96"
    EXTRA=""
fi
PLAIN="--amp false --channels-last false"
FAST="--amp true --channels-last true --data device"

left() { echo $(( BUDGET - (SECONDS - START) )); }

# run NAME LIMIT_S COMMAND...: stdout to $OUT/NAME.json, stderr to $OUT/NAME.log
run() {
    local name=$1 limit=$2 rest
    shift 2
    rest=$(left)
    if [ "$rest" -lt 45 ]; then
        echo "== $name: skipped, $rest s of the ${BUDGET} s budget left"
        return 0
    fi
    [ "$limit" -gt "$rest" ] && limit=$rest
    echo "== $name (at most ${limit} s; $(( SECONDS - START )) s elapsed)"
    timeout -k 10 "$limit" "$@" >"$OUT/$name.json" 2>"$OUT/$name.log"
    local rc=$?
    if [ $rc -ne 0 ]; then
        echo "   exit $rc$([ $rc -eq 124 ] && echo ' (timed out)'); last lines of $OUT/$name.log:"
        tail -n 5 "$OUT/$name.log" | sed 's/^/   | /'
    else
        "$PY" - "$OUT/$name.json" <<'EOF'
import json, sys
r = json.loads([l for l in open(sys.argv[1]) if l.startswith("{")][-1])
arch = f", arch {1e3 * r['arch_step_s_median']:.1f} ms" if r.get("arch_step_s_median") else ""
print(f"   {1e3 * r['step_s_median']:.1f} ms/step{arch}, {r['images_per_s']:.0f} images/s, "
      f"peak {r['peak_memory_bytes'] / 2**30:.2f} GiB ({r['peak_memory_kind']})")
EOF
    fi
}

{
    echo "date: $(date -u +%FT%TZ)  host: $(hostname)  device: $DEVICE  budget: ${BUDGET}s"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    "$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)"
    git rev-parse --short HEAD 2>/dev/null | sed 's/^/commit /'
} 2>&1 | tee "$OUT/env.txt"

BENCH=("$PY" -m itnas.bench_cli)
# 1. The search supernet (ITNAS variant: what the paper's search runs), plain then fast.
run supernet_plain 150 "${BENCH[@]}" supernet --variant itnas $SUPERNET --steps "$STEPS" --warmup $WARMUP \
    --device "$DEVICE" $PLAIN $EXTRA --json
run supernet_fast 150 "${BENCH[@]}" supernet --variant itnas $SUPERNET --steps "$STEPS" --warmup $WARMUP \
    --device "$DEVICE" $FAST $EXTRA --json
# 2. The DARTS_V2 evaluation network at the paper's batch (auxiliary head, drop-path, cutout).
run train_plain 150 "${BENCH[@]}" train --genotype DARTS_V2 $TRAIN --steps "$TRAIN_STEPS" --warmup $WARMUP \
    --device "$DEVICE" $PLAIN $EXTRA --json
run train_fast 150 "${BENCH[@]}" train --genotype DARTS_V2 $TRAIN --steps $(( 2 * TRAIN_STEPS )) --warmup $WARMUP \
    --device "$DEVICE" $FAST $EXTRA --json
# 3. The fast paths against the plain ones, on this device.
echo "== gpu tests ($(( SECONDS - START )) s elapsed)"
if "$PY" -c "import pytest" 2>/dev/null; then
    TESTS=("$PY" -m pytest tests/perf -v -m gpu -p no:cacheprovider -o addopts="")
else
    TESTS=("$PY" benchmarks/run_gpu_tests.py)
fi
rest=$(left); limit=$(( rest < 150 ? rest : 150 ))
if [ "$limit" -ge 45 ]; then
    timeout -k 10 "$limit" "${TESTS[@]}" >"$OUT/gpu_tests.log" 2>&1
    echo "   exit $?: $(tail -n 1 "$OUT/gpu_tests.log") (log: $OUT/gpu_tests.log)"
    grep -E "^FAILED|FAILED$|Error" "$OUT/gpu_tests.log" | head -n 8 | sed 's/^/   | /'
else
    echo "   skipped, $rest s left"
fi
# 4. torch.compile on top of the fast path (compiling the whole network takes minutes).
if [ "$COMPILE" = 1 ]; then
    run supernet_fast_compile 180 "${BENCH[@]}" supernet --variant itnas $SUPERNET --steps "$STEPS" \
        --warmup 3 --device "$DEVICE" $FAST --compile $EXTRA --json
    run train_fast_compile 150 "${BENCH[@]}" train --genotype DARTS_V2 $TRAIN --steps $(( 2 * TRAIN_STEPS )) \
        --warmup 3 --device "$DEVICE" $FAST --compile $EXTRA --json
fi
# 5. Figures and extrapolation.
echo "== summary ($(( SECONDS - START )) s elapsed)"
"$PY" benchmarks/gpu_summary.py "$OUT" | tee "$OUT/summary.txt"
echo "done in $(( SECONDS - START )) s; results in $OUT"
