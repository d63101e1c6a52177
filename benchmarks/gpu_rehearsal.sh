#!/usr/bin/env bash
# The GPU rehearsal of the whole DAG (issue 19): config/gpu-rehearsal.yaml under Snakemake on one
# GPU, timed per job and per rule, with each run's warm-up (compilation, CUDA-graph recording)
# from its own history. Run from the repository root on the GPU machine:
#
#   bash benchmarks/gpu_rehearsal.sh                    # BUDGET seconds (default 480)
#   DRY=1 bash benchmarks/gpu_rehearsal.sh              # the CPU dry run: snakemake -n, no GPU
#
# The GPU machine has no network and lacks snakemake, mlflow and jsonschema: carry the wheels
# of benchmarks/gpu_wheels.txt (`bash benchmarks/gpu_wheels.sh` here puts them in .whl/; name
# .whl in the device call's carry); this script installs them into /tmp/site. itnas itself runs
# from the checkout (PYTHONPATH), through a small `itnas` launcher on PATH.
# Results in $OUT (default ./gpu-out): rehearsal.log (Snakemake's), jobs.json (each job's rule,
# wildcards, seconds and status), warmup.json (per run: first epoch's warm-up and steady step),
# summary.txt; the run folders stay in results/gpu-rehearsal/.
# Knobs: BUDGET, OUT, PYTHON, CORES (default: all), GPUS (Snakemake's gpu resource, default 1),
# ARGS (more snakemake arguments).
set -u

START=$SECONDS
BUDGET=${BUDGET:-480}
OUT=${OUT:-./gpu-out}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export PYTHONUNBUFFERED=1

if [ -d .whl ] && ! "$PY" -c "import snakemake, mlflow, jsonschema" 2>/dev/null; then
    echo "== installing the carried wheels into /tmp/site"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "wheel install failed"; exit 1; }
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    # Every carried wheel's requirements against the image's real versions (no network needed).
    "$PY" benchmarks/gpu_wheels_check.py --on-target /tmp/site | tee "$OUT/wheels_check.txt"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! command -v itnas >/dev/null; then
    mkdir -p /tmp/itnas-bin
    printf '#!/bin/sh\nexec %s -m itnas.cli "$@"\n' "$(command -v "$PY")" >/tmp/itnas-bin/itnas
    chmod +x /tmp/itnas-bin/itnas
    export PATH="/tmp/itnas-bin:$PATH"
fi
"$PY" -c "import snakemake, mlflow, jsonschema, itnas" || { echo "missing packages: see benchmarks/gpu_wheels.sh"; exit 1; }

SMK=("$PY" -m snakemake --configfile config/gpu-rehearsal.yaml --cores "${CORES:-all}" --resources "gpu=${GPUS:-1}"
     --printshellcmds ${ARGS:-})
if [ "${DRY:-0}" = 1 ]; then
    "${SMK[@]}" -n --quiet rules
    exit $?
fi
{
    echo "date: $(date -u +%FT%TZ)  host: $(hostname)  budget: ${BUDGET}s  cores: $(getconf _NPROCESSORS_ONLN)"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    git rev-parse --short HEAD 2>/dev/null | sed 's/^/commit /'
} | tee "$OUT/env.txt"
echo "== snakemake (at most ${BUDGET} s)"
timeout -k 20 "$BUDGET" "${SMK[@]}" >"$OUT/rehearsal.log" 2>&1
rc=$?
echo "   exit $rc$([ $rc -eq 124 ] && echo ' (out of time)') after $(( SECONDS - START )) s"
"$PY" benchmarks/rehearsal_summary.py "$OUT/rehearsal.log" results/gpu-rehearsal "$OUT" | tee "$OUT/summary.txt"
# The end of each failed or unfinished job's own log, where it says why.
"$PY" - "$OUT/jobs.json" <<'EOF2'
import json, sys
from pathlib import Path
for job in json.load(open(sys.argv[1]))["jobs"]:
    log = Path(job["log"]) if job["status"] != "done" and job["log"] else None
    if log and log.is_file():
        print(f"== {job['status']}: {log}")
        print("\n".join(log.read_text(errors="replace").splitlines()[-15:]))
EOF2
exit $rc
