#!/usr/bin/env bash
# The one prepared GPU run (issue 7): is the compiled, CUDA-graph step correct, and how fast are
# the paper's search supernet (C=16, 8 cells, batch 64, 32 px) and the DARTS_V2 CIFAR network
# (20 cells, C=36, batch 96) plain, compiled with CUDA graphs, with each eager fast path alone,
# and compiled without CUDA graphs; then the extrapolation to a 50-epoch search and a
# 600-epoch training in GPU-hours.
#
#   bash benchmarks/gpu_check.sh                              # repository root, on the GPU machine
#   DEVICE=cpu STEPS=2 bash benchmarks/gpu_check.sh           # the CPU dry run (toy sizes)
#
# Parts, in order of value; each has its own time limit, and a part that no longer fits in what
# is left of BUDGET seconds (default 540) is skipped, so the most valuable ones always run:
#   1. plain (fp32, NCHW, eager) supernet and training steps: the baseline
#   2. the same compiled with mode reduce-overhead (CUDA graphs): the remedy for launch-bound
#      steps, and the measurement the GPU goals rest on (compiling takes minutes: it comes
#      before the tests so that a slow compile cannot leave the session without it)
#   3. the `gpu`-marked CUDA-graph equality tests, verbose (each test's name is logged before it
#      runs) and unbuffered, each under its own timeout, -x: is what part 2 timed correct?
#   4. bf16 autocast alone and channels-last alone (eager), so each is attributed by itself
#   5. the other `gpu`-marked equality tests (same options)
#   6. the same as 2 with mode default (Inductor without CUDA graphs)
# Results: one JSON line per run in $OUT/<run>.json (stderr in <run>.log), the test log in
# $OUT/gpu_tests.log, $OUT/summary.txt and $OUT/summary.json. OUT defaults to ./gpu-out.
# Knobs: BUDGET, OUT, PYTHON, STEPS, TRAIN_STEPS, COMPILE (0: skip parts 2 and 6), TESTS (0: skip
# parts 3 and 5), TEST_TIMEOUT (seconds per test). Needs only python3 with torch and numpy; pytest (and
# pytest-timeout) are used where installed, else benchmarks/run_gpu_tests.py.
set -u

START=$SECONDS
BUDGET=${BUDGET:-540}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-./gpu-out}
PY=${PYTHON:-python3}
TESTS=${TESTS:-1}
mkdir -p "$OUT"
# A part killed by its time limit must still leave its log lines (last time a test log was cut).
export PYTHONUNBUFFERED=1

timeout 30 "$PY" -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 || true
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ "$DEVICE" = cpu ]; then
    # The dry run: the same parts at toy sizes, so the script is known to work end to end.
    STEPS=${STEPS:-2}; WARMUP=1; TRAIN_STEPS=${TRAIN_STEPS:-$STEPS}; COMPILE=${COMPILE:-0}
    COMPILE_WARMUP=2; TEST_TIMEOUT=${TEST_TIMEOUT:-120}
    SUPERNET="--layers 3 --init-channels 4 --batch-size 4 --image-size 32"
    TRAIN="--layers 3 --init-channels 4 --batch-size 4"
    EXTRA="--threads 1"
else
    STEPS=${STEPS:-30}; WARMUP=5; TRAIN_STEPS=${TRAIN_STEPS:-100}; COMPILE=${COMPILE:-1}
    # CUDA-graph trees run a compiled function eagerly once, record it on the second call and
    # replay it from the third; the first call also compiles.
    COMPILE_WARMUP=5; TEST_TIMEOUT=${TEST_TIMEOUT:-200}
    SUPERNET="--layers 8 --init-channels 16 --batch-size 64 --image-size 32"
    TRAIN="--layers 20 --init-channels 36 --batch-size 96"
    EXTRA=""
fi
PLAIN="--amp false --channels-last false"

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
      f"peak {r['peak_memory_bytes'] / 2**30:.2f} GiB ({r['peak_memory_kind']}), "
      f"{r.get('dispatches_per_step')} aten ops/step, warm-up {r.get('warmup_s', 0):.0f} s")
EOF
    fi
}

# tests GROUP K_EXPR LIMIT_S: one group of gpu-marked tests, appended to $OUT/gpu_tests.log
tests() {
    local group=$1 expr=$2 limit=$3 rest rc
    rest=$(left)
    if [ "$rest" -lt 45 ]; then
        echo "== gpu tests ($group): skipped, $rest s left" | tee -a "$OUT/gpu_tests.log"
        return 0
    fi
    [ "$limit" -gt "$rest" ] && limit=$rest
    echo "== gpu tests ($group; at most ${limit} s, ${TEST_TIMEOUT} s per test; $(( SECONDS - START )) s elapsed)"
    echo "== group $group" >>"$OUT/gpu_tests.log"
    if "$PY" -c "import pytest, pytest_timeout" 2>/dev/null; then
        timeout -k 10 "$limit" "$PY" -m pytest tests/perf/test_cuda_fast_paths.py -m gpu -k "$expr" -v -x \
            -rfE --tb=short --timeout "$TEST_TIMEOUT" -p no:cacheprovider -o addopts="" \
            >>"$OUT/gpu_tests.log" 2>&1
    else
        # Without pytest-timeout (or pytest): the stand-in runner, which times each test itself.
        timeout -k 10 "$limit" "$PY" benchmarks/run_gpu_tests.py -k "$expr" -x --timeout "$TEST_TIMEOUT" \
            >>"$OUT/gpu_tests.log" 2>&1
    fi
    rc=$?
    echo "   exit $rc$([ $rc -eq 124 ] && echo " (the group's ${limit} s ran out)")"
    # Every test that started, with its outcome; a test with none was running when time ran out.
    sed -n "/^== group $group\$/,\$p" "$OUT/gpu_tests.log" \
        | grep -oE "::test_[A-Za-z0-9_]+(\[[^]]*\])?( (PASSED|FAILED|ERROR|SKIPPED|TIMEOUT))?" \
        | awk '!seen[$1]++' | sed 's/^::/   | /'
}

{
    echo "date: $(date -u +%FT%TZ)  host: $(hostname)  device: $DEVICE  budget: ${BUDGET}s"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    "$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)"
    "$PY" -c "import pytest, pytest_timeout, importlib.metadata as m; print('pytest', pytest.__version__, 'pytest-timeout', m.version('pytest-timeout'))" 2>/dev/null \
        || echo "pytest or pytest-timeout missing: benchmarks/run_gpu_tests.py runs the tests"
    git rev-parse --short HEAD 2>/dev/null | sed 's/^/commit /'
    git status --porcelain 2>/dev/null | grep -q . && echo "working tree has uncommitted changes"
} 2>&1 | tee "$OUT/env.txt"

BENCH=("$PY" -m itnas.bench_cli)
: >"$OUT/gpu_tests.log"
# 1. The baseline: plain eager steps (ITNAS variant: what the paper's search runs).
run supernet_plain 120 "${BENCH[@]}" supernet --variant itnas $SUPERNET --steps "$STEPS" --warmup $WARMUP \
    --device "$DEVICE" $PLAIN $EXTRA --json
run train_plain 90 "${BENCH[@]}" train --genotype DARTS_V2 $TRAIN --steps "$TRAIN_STEPS" --warmup $WARMUP \
    --device "$DEVICE" $PLAIN $EXTRA --json
# 2. torch.compile with CUDA graphs over the plain settings (compiling happens in the warm-up).
if [ "$COMPILE" = 1 ]; then
    run supernet_compile_reduce_overhead 300 "${BENCH[@]}" supernet --variant itnas $SUPERNET --steps "$STEPS" \
        --warmup $COMPILE_WARMUP --device "$DEVICE" $PLAIN --compile reduce-overhead $EXTRA --json
    run train_compile_reduce_overhead 240 "${BENCH[@]}" train --genotype DARTS_V2 $TRAIN --steps "$TRAIN_STEPS" \
        --warmup $COMPILE_WARMUP --device "$DEVICE" $PLAIN --compile reduce-overhead $EXTRA --json
fi
# 3. Is what part 2 timed correct? The CUDA-graph steps against eager ones.
[ "$TESTS" = 1 ] && tests cuda-graphs "reduce_overhead" 180
# 4. Each eager fast path alone (last time only their combination was measured: slower).
run supernet_amp 120 "${BENCH[@]}" supernet --variant itnas $SUPERNET --steps "$STEPS" --warmup $WARMUP \
    --device "$DEVICE" --amp true --channels-last false $EXTRA --json
run supernet_channels_last 120 "${BENCH[@]}" supernet --variant itnas $SUPERNET --steps "$STEPS" --warmup $WARMUP \
    --device "$DEVICE" --amp false --channels-last true $EXTRA --json
run train_amp 90 "${BENCH[@]}" train --genotype DARTS_V2 $TRAIN --steps "$TRAIN_STEPS" --warmup $WARMUP \
    --device "$DEVICE" --amp true --channels-last false $EXTRA --json
run train_channels_last 90 "${BENCH[@]}" train --genotype DARTS_V2 $TRAIN --steps "$TRAIN_STEPS" --warmup $WARMUP \
    --device "$DEVICE" --amp false --channels-last true $EXTRA --json
# 5. The other equality tests (last time one failed, unnamed: the second in file order).
[ "$TESTS" = 1 ] && tests others "not reduce_overhead" 120
# 6. Inductor without CUDA graphs: how much of part 2 the graphs themselves give.
if [ "$COMPILE" = 1 ]; then
    run supernet_compile_default 300 "${BENCH[@]}" supernet --variant itnas $SUPERNET --steps "$STEPS" \
        --warmup 3 --device "$DEVICE" $PLAIN --compile $EXTRA --json
    run train_compile_default 240 "${BENCH[@]}" train --genotype DARTS_V2 $TRAIN --steps "$TRAIN_STEPS" \
        --warmup 3 --device "$DEVICE" $PLAIN --compile $EXTRA --json
fi
# 6. Figures, ratios to plain and extrapolation.
echo "== summary ($(( SECONDS - START )) s elapsed)"
"$PY" benchmarks/gpu_summary.py "$OUT" | tee "$OUT/summary.txt"
echo "done in $(( SECONDS - START )) s; results in $OUT"
