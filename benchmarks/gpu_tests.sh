#!/usr/bin/env bash
# The `gpu`-marked tests, first thing in a GPU session (issue 19): each group one pytest process
# under its own time limit, one after another, cheapest first; each test's start and result go
# to $OUT/gpu_tests/<group>.jsonl the moment they happen (benchmarks/gpu_results.py), so a
# session cut short keeps every result it got, and a test that was running when time ran out
# shows as started without a result.
#
#   bash benchmarks/gpu_tests.sh                     # repository root, on the GPU machine
#   DEVICE=cpu bash benchmarks/gpu_tests.sh          # the CPU dry run: every test skips
#
# Groups (pytest -k expressions over the gpu-marked tests, in whichever files under tests/ hold them):
#   numerics  fast paths, channels-last, bf16 autocast and the device pipeline against eager fp32
#   graphs    step-graphs and CUDA streams against eager steps (records graphs, compiles nothing)
#   compiled  torch.compile (Inductor, reduce-overhead, the cudagraphs backend) against eager
# Knobs: OUT (default ./gpu-out), BUDGET (seconds for all groups, default 300), TEST_TIMEOUT
# (seconds per test, default 240; 120 on the CPU), TEST_GROUPS (names to run, default all three in
# that order), TESTS_ONLY (a -k expression that narrows every group), PYTHON.
# Without pytest-timeout (or pytest) benchmarks/run_gpu_tests.py runs each group instead and
# writes the same files. Exit status: 1 if any test failed or a group ran out of time, else 0.
set -u

START=$SECONDS
BUDGET=${BUDGET:-300}
OUT=${OUT:-./gpu-out}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
if [ "$DEVICE" = cpu ]; then TEST_TIMEOUT=${TEST_TIMEOUT:-120}; else TEST_TIMEOUT=${TEST_TIMEOUT:-240}; fi
GROUPS_TO_RUN=${TEST_GROUPS:-numerics graphs compiled}  # (bash's own GROUPS is read-only)
mkdir -p "$OUT/gpu_tests"
OUT=$(cd "$OUT" && pwd)
export PYTHONUNBUFFERED=1
# The checkout itself, importable without installing it (a GPU machine's image lacks the
# project's other dependencies; a test run must not reinstall into its environment).
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

GRAPHS="step_graph or streams"
COMPILED="reduce_overhead or cudagraphs or inductor"
expr_of() {
    case $1 in
        numerics) echo "not ($GRAPHS or $COMPILED)" ;;
        graphs) echo "($GRAPHS) and not ($COMPILED)" ;;
        compiled) echo "$COMPILED" ;;
        *) echo "gpu_tests.sh: unknown group '$1' (expected numerics, graphs or compiled)" >&2; exit 2 ;;
    esac
}

if "$PY" -c "import pytest, pytest_timeout" 2>/dev/null; then RUNNER=pytest; else RUNNER=standalone; fi
# Only the test files that hold gpu-marked tests are collected (collecting all of tests/ imports
# the workflow's dependencies, which a GPU machine's image may lack).
mapfile -t FILES < <(grep -rl --include='test_*.py' 'mark\.gpu' tests | sort)
echo "== gpu tests: groups '$GROUPS_TO_RUN', ${BUDGET} s in all, ${TEST_TIMEOUT} s a test, runner $RUNNER"
status=0
for group in $GROUPS_TO_RUN; do
    expr="$(expr_of "$group")${TESTS_ONLY:+ and ($TESTS_ONLY)}"
    left=$(( BUDGET - (SECONDS - START) ))
    if [ "$left" -lt 20 ]; then
        echo "== $group: not run, ${left} s of the ${BUDGET} s left"
        echo "{\"group\": \"$group\", \"event\": \"not run\", \"seconds_left\": $left}" >"$OUT/gpu_tests/$group.jsonl"
        status=1
        continue
    fi
    echo "== $group (at most ${left} s; $(( SECONDS - START )) s elapsed)"
    : >"$OUT/gpu_tests/$group.jsonl"
    if [ $RUNNER = pytest ]; then
        timeout -k 10 "$left" "$PY" -m pytest "${FILES[@]}" -m gpu -k "$expr" -v -rfE --tb=short -p no:cacheprovider \
            -p no:logging --show-capture=no -o addopts="" --timeout "$TEST_TIMEOUT" -p benchmarks.gpu_results \
            --results-file "$OUT/gpu_tests/$group.jsonl" >"$OUT/gpu_tests/$group.log" 2>&1
    else
        timeout -k 10 "$left" "$PY" benchmarks/run_gpu_tests.py -k "$expr" --timeout "$TEST_TIMEOUT" \
            --results-file "$OUT/gpu_tests/$group.jsonl" >"$OUT/gpu_tests/$group.log" 2>&1
    fi
    rc=$?
    # pytest: 0 all passed, 5 nothing collected (no such test in this tree); anything else counts.
    case $rc in 0|5) ;; 124|137) echo "   out of time"; status=1 ;; *) status=1 ;; esac
    "$PY" benchmarks/gpu_summary.py --tests "$OUT/gpu_tests/$group.jsonl" | sed 's/^/   /'
done
echo "== gpu tests done in $(( SECONDS - START )) s (results in $OUT/gpu_tests)"
exit $status
