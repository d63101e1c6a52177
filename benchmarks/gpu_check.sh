#!/usr/bin/env bash
# The one prepared GPU run (docs/performance.md): how fast are the paper's search supernet (C=16, 8 cells,
# batch 64, 32 px) and the DARTS_V2 CIFAR network (20 cells, C=36, batch 96), plain and with CUDA
# graphs, are the graphed steps correct, and what do a 50-epoch search and a 600-epoch training
# cost in GPU-hours.
#
#   bash benchmarks/gpu_check.sh                              # repository root, on the GPU machine
#   DEVICE=cpu STEPS=2 bash benchmarks/gpu_check.sh           # the CPU dry run (toy sizes)
#
# Three phases within BUDGET seconds (default 540):
#   0. the `gpu`-marked tests first (benchmarks/gpu_tests.sh: three groups one after another,
#      each test's result written to $OUT/gpu_tests/GROUP.jsonl the moment it ends), within
#      TEST_BUDGET seconds (default 240), so a session cut short still has them;
#   1. alone, one after the other: the plain (fp32, NCHW, eager) supernet and training steps, the
#      baseline, and the supernet with its whole steps recorded as CUDA graphs (compile
#      step-graphs, NCHW and channels-last, one CUDA stream and STREAMS side by side). Eager
#      steps are bound by the host CPU's launches, and these compile nothing, so nothing else
#      runs meanwhile.
#   2. at the same time, in the background, each under the time that is left, the compiled benches: `cudagraphs` (torch's backend: CUDA graphs of the captured graph, no
#        Inductor, the quickest compile), the same with bf16 autocast and with channels-last,
#        and `reduce-overhead` (Inductor's fused kernels in CUDA graphs, the longest compile);
#        compiling is CPU work, so they compile side by side on the host's cores, and a shared
#        --timing-lock lets only one of them time its steps at a time.
#      Inductor's compile workers are capped (COMPILE_THREADS, default 4 a process) so that the
#      process timing its steps keeps a core.
# Results: one JSON line per run in $OUT/<run>.json (stderr in <run>.log), the tests' results
# and logs in $OUT/gpu_tests/, $OUT/summary.txt and $OUT/summary.json. OUT defaults to ./gpu-out.
# Knobs: BUDGET, OUT, PYTHON, STEPS, TRAIN_STEPS, COMPILE (0: no compiled benches), TESTS (0: no
# tests), TEST_BUDGET, TEST_GROUPS and TESTS_ONLY (see gpu_tests.sh), TEST_TIMEOUT (seconds
# per test), COMPILE_THREADS, STREAMS (stream counts to bench under step-graphs, default 4; empty:
# none), ONLY (a regular expression over the part names, e.g.
# ONLY='supernet_compile_reduce_overhead|tests'; parts: supernet_plain,
# supernet_step_graphs, supernet_step_graphs_channels_last, supernet_step_graphs_streams<N>,
# supernet_step_graphs_streams<N>_channels_last, train_plain,
# {supernet,train}_compile_{cudagraphs,reduce_overhead,cudagraphs_amp,cudagraphs_channels_last},
# tests). Needs only python3 with torch and numpy; pytest (and pytest-timeout) are used where
# installed, else benchmarks/run_gpu_tests.py.
set -u

START=$SECONDS
BUDGET=${BUDGET:-540}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-./gpu-out}
PY=${PYTHON:-python3}
TESTS=${TESTS:-1}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOCK="$OUT/timing.lock"
# A part killed by its time limit must still leave its log lines.
export PYTHONUNBUFFERED=1

# The checkout itself, importable without installing it (the GPU machine's image lacks the
# project's other dependencies; a test run must not reinstall into its environment).
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ "$DEVICE" = cpu ]; then
    # The dry run: the same parts at toy sizes, so the script is known to work end to end.
    STEPS=${STEPS:-2}; WARMUP=1; TRAIN_STEPS=${TRAIN_STEPS:-$STEPS}; COMPILE=${COMPILE:-0}
    COMPILE_WARMUP=2; TEST_TIMEOUT=${TEST_TIMEOUT:-120}
    SUPERNET="--layers 3 --init-channels 4 --batch-size 4 --image-size 32 --eval-batch-size 8"
    TRAIN="--layers 3 --init-channels 4 --batch-size 4 --eval-batch-size 8"
    EXTRA="--threads 1"
else
    STEPS=${STEPS:-30}; WARMUP=5; TRAIN_STEPS=${TRAIN_STEPS:-100}; COMPILE=${COMPILE:-1}
    # CUDA-graph trees run a compiled function eagerly once, record it on the second call and
    # replay it from the third; the first call also compiles.
    COMPILE_WARMUP=5; TEST_TIMEOUT=${TEST_TIMEOUT:-240}
    SUPERNET="--layers 8 --init-channels 16 --batch-size 64 --image-size 32"
    TRAIN="--layers 20 --init-channels 36 --batch-size 96"
    EXTRA=""
fi
STREAMS=${STREAMS-4}
PLAIN="--amp false --channels-last false"
BENCH=("$PY" -m itnas.cli.bench)

left() { echo $(( BUDGET - (SECONDS - START) )); }

# report NAME: one line from $OUT/NAME.json, or the end of its log
report() {
    local name=$1
    if grep -q '^{' "$OUT/$name.json" 2>/dev/null; then
        "$PY" - "$OUT/$name.json" <<'EOF'
import json, sys
r = json.loads([l for l in open(sys.argv[1]) if l.startswith("{")][-1])
arch = f", arch {1e3 * r['arch_step_s_median']:.1f} ms" if r.get("arch_step_s_median") else ""
wait = f", waited {r['lock_wait_s']:.0f} s to time" if "lock_wait_s" in r else ""
print(f"   {sys.argv[1].rsplit('/', 1)[-1][:-5]}: {1e3 * r['step_s_median']:.1f} ms/step{arch}, "
      f"{r['images_per_s']:.0f} images/s, peak {r['peak_memory_bytes'] / 2**30:.2f} GiB "
      f"({r['peak_memory_kind']}), {r.get('dispatches_per_step')} aten ops/step, "
      f"warm-up {r.get('warmup_s', 0):.0f} s{wait}")
EOF
    else
        echo "   $name: no result; last lines of $OUT/$name.log:"
        tail -n 5 "$OUT/$name.log" 2>/dev/null | sed 's/^/   | /'
    fi
}

# wanted NAME: whether NAME matches $ONLY (an extended regular expression; default: every part)
wanted() { [[ "$1" =~ ^(${ONLY:-.*})$ ]]; }

# run NAME LIMIT_S COMMAND...: in the foreground; stdout to $OUT/NAME.json, stderr to $OUT/NAME.log
run() {
    local name=$1 limit=$2 rest
    shift 2
    wanted "$name" || return 0
    rest=$(left)
    if [ "$rest" -lt 45 ]; then
        echo "== $name: skipped, $rest s of the ${BUDGET} s budget left"
        return 0
    fi
    [ "$limit" -gt "$rest" ] && limit=$rest
    echo "== $name (at most ${limit} s; $(( SECONDS - START )) s elapsed)"
    timeout -k 10 "$limit" "$@" >"$OUT/$name.json" 2>"$OUT/$name.log"
    local rc=$?
    [ $rc -ne 0 ] && echo "   exit $rc$([ $rc -eq 124 ] && echo ' (timed out)')"
    report "$name"
}

# background NAME COMMAND...: like run, in the background, until what is left of the budget
# (less 20 s for the summary) runs out
PIDS=()
NAMES=()
background() {
    local name=$1 limit
    shift
    wanted "$name" || return 0
    limit=$(( $(left) - 20 ))
    if [ "$limit" -lt 30 ]; then
        echo "== $name: skipped, $(left) s left"
        return 0
    fi
    echo "== $name: started in the background (at most ${limit} s; $(( SECONDS - START )) s elapsed)"
    timeout -k 10 "$limit" "$@" >"$OUT/$name.json" 2>"$OUT/$name.log" &
    PIDS+=($!)
    NAMES+=("$name")
}

{
    echo "date: $(date -u +%FT%TZ)  host: $(hostname)  device: $DEVICE  budget: ${BUDGET}s  cores: $(getconf _NPROCESSORS_ONLN)"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    "$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)"
    "$PY" -c "import pytest, pytest_timeout, importlib.metadata as m; print('pytest', pytest.__version__, 'pytest-timeout', m.version('pytest-timeout'))" 2>/dev/null \
        || echo "pytest or pytest-timeout missing: benchmarks/run_gpu_tests.py runs the tests"
    git rev-parse --short HEAD 2>/dev/null | sed 's/^/commit /'
    git status --porcelain 2>/dev/null | grep -q . && echo "working tree has uncommitted changes"
} 2>&1 | tee "$OUT/env.txt"

# 0. The tests first: their results are what a short session must not lose.
if [ "$TESTS" = 1 ] && wanted tests; then
    limit=${TEST_BUDGET:-240}
    [ "$limit" -gt "$(left)" ] && limit=$(left)
    BUDGET=$limit OUT="$OUT" PYTHON="$PY" DEVICE="$DEVICE" TEST_TIMEOUT="$TEST_TIMEOUT" bash benchmarks/gpu_tests.sh
fi

# 1. The baseline, alone: plain eager steps (ITNAS variant: what the paper's search runs). Then,
#    also alone, the search's steps recorded whole as CUDA graphs (compile step-graphs: nothing to
#    compile, so nothing to overlap), in NCHW and in channels-last.
run supernet_plain 120 "${BENCH[@]}" supernet --variant itnas $SUPERNET --steps "$STEPS" --warmup $WARMUP \
    --device "$DEVICE" $PLAIN $EXTRA --json
run supernet_step_graphs 120 "${BENCH[@]}" supernet --variant itnas $SUPERNET --steps "$STEPS" --warmup $WARMUP \
    --device "$DEVICE" $PLAIN --compile step-graphs $EXTRA --json
run supernet_step_graphs_channels_last 120 "${BENCH[@]}" supernet --variant itnas $SUPERNET --steps "$STEPS" \
    --warmup $WARMUP --device "$DEVICE" --amp false --channels-last true --compile step-graphs $EXTRA --json
# The same with the ops into each cell node on N CUDA streams side by side (runtime.streams), for
# each N in STREAMS; channels-last too on the GPU (the CPU dry run ignores streams anyway).
for n in $STREAMS; do
    run supernet_step_graphs_streams$n 120 "${BENCH[@]}" supernet --variant itnas $SUPERNET --steps "$STEPS" \
        --warmup $WARMUP --device "$DEVICE" $PLAIN --compile step-graphs --streams "$n" $EXTRA --json
    [ "$DEVICE" = cpu ] || run supernet_step_graphs_streams${n}_channels_last 120 "${BENCH[@]}" supernet \
        --variant itnas $SUPERNET --steps "$STEPS" --warmup $WARMUP --device "$DEVICE" --amp false \
        --channels-last true --compile step-graphs --streams "$n" $EXTRA --json
done
run train_plain 90 "${BENCH[@]}" train --genotype DARTS_V2 $TRAIN --steps "$TRAIN_STEPS" --warmup $WARMUP \
    --device "$DEVICE" $PLAIN $EXTRA --json

# 2. The compiled benches at once (compiled side by side, timed one at a time).
export TORCHINDUCTOR_COMPILE_THREADS=${COMPILE_THREADS:-4}
if [ "$COMPILE" = 1 ]; then
    GRAPHED=(--warmup "$COMPILE_WARMUP" --device "$DEVICE" --timing-lock "$LOCK" $EXTRA --json)
    for net in supernet train; do
        if [ $net = supernet ]; then
            args=(supernet --variant itnas $SUPERNET --steps "$STEPS")
        else
            args=(train --genotype DARTS_V2 $TRAIN --steps "$TRAIN_STEPS")
        fi
        background ${net}_compile_cudagraphs "${BENCH[@]}" "${args[@]}" $PLAIN --compile cudagraphs "${GRAPHED[@]}"
        background ${net}_compile_reduce_overhead "${BENCH[@]}" "${args[@]}" $PLAIN --compile reduce-overhead \
            "${GRAPHED[@]}"
        background ${net}_compile_cudagraphs_amp "${BENCH[@]}" "${args[@]}" --amp true --channels-last false \
            --compile cudagraphs "${GRAPHED[@]}"
        background ${net}_compile_cudagraphs_channels_last "${BENCH[@]}" "${args[@]}" --amp false \
            --channels-last true --compile cudagraphs "${GRAPHED[@]}"
    done
fi
# Report each as it ends; what is still running when the budget ends is killed by its timeout.
while [ ${#PIDS[@]} -gt 0 ]; do
    wait -n "${PIDS[@]}" 2>/dev/null
    for i in "${!PIDS[@]}"; do
        if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
            wait "${PIDS[$i]}"
            rc=$?
            name=${NAMES[$i]}
            echo "== $name ended (exit $rc$([ $rc -eq 124 ] && echo ', out of time'); $(( SECONDS - START )) s elapsed)"
            report "$name"
            unset "PIDS[$i]" "NAMES[$i]"
        fi
    done
    PIDS=("${PIDS[@]}")
    NAMES=("${NAMES[@]}")
done

echo "== summary ($(( SECONDS - START )) s elapsed)"
"$PY" benchmarks/gpu_summary.py "$OUT" | tee "$OUT/summary.txt"
echo "done in $(( SECONDS - START )) s; results in $OUT"
