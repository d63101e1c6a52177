"""Summarise a Snakemake run of the DAG (benchmarks/gpu_rehearsal.sh): each job's rule, wildcards,
seconds and status from Snakemake's log, seconds per rule, and each run's warm-up from its own
history (the first epoch's first steps against its steady step, where the run recorded them).

    python3 benchmarks/rehearsal_summary.py SNAKEMAKE.log RESULTS_DIR [OUT_DIR]

Writes OUT_DIR/jobs.json and OUT_DIR/warmup.json when OUT_DIR is given; prints a table. Jobs
that started and never finished (out of time) are listed as 'running'.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime
from pathlib import Path

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
START = re.compile(r"^(?:local)?rule (\w+):$")
FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)")
ERROR = re.compile(r"^Error in rule (\w+):$")
FIELD = re.compile(r"^\s+(\w+): (.*)$")


def parse_log(text: str) -> tuple[list[dict], datetime | None]:
    """One dict per job (rule, jobid, wildcards, log, start, end as datetimes, status), and the
    log's last time stamp (where unfinished jobs were when it ended)."""
    jobs: dict[str, dict] = {}
    stamp = None
    block = None  # the job whose indented fields follow
    for line in text.splitlines():
        m = STAMP.match(line.strip())
        if m:
            stamp = datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S %Y")
            block = None
            continue
        if m := START.match(line):
            block = {"rule": m.group(1), "start": stamp, "end": None, "status": "running", "wildcards": "", "log": ""}
            continue
        if m := ERROR.match(line):
            block = {"error": True}
            continue
        if m := FINISHED.match(line):
            job = jobs.get(m.group(1))
            if job:
                job["end"], job["status"] = stamp, "done"
            block = None
            continue
        if block is not None and (f := FIELD.match(line)):
            key, value = f.groups()
            if key == "jobid":
                if block.get("error"):
                    if value in jobs:
                        jobs[value]["status"] = "failed"
                        jobs[value]["end"] = jobs[value]["end"] or stamp
                    block = None
                else:
                    jobs[value] = block
            elif key in ("wildcards", "log") and not block.get("error"):
                block[key] = value.split(" (check log")[0]
        elif not line.startswith(" "):
            block = None
    return [{"jobid": int(k), **v} for k, v in jobs.items()], stamp


def warmups(results: Path) -> list[dict]:
    """Per run folder with a history: the first epoch's warm-up and steady step, where recorded."""
    rows = []
    for history in sorted(results.rglob("history.json")):
        try:
            first = json.loads(history.read_text())[0]
        except (ValueError, IndexError, OSError):
            continue
        rows.append({"run": str(history.parent.relative_to(results)),
                     **{k: first[k] for k in ("warmup_s", "warmup_steps", "step_s", "epoch_s", "time_s") if k in first}})
    return rows


def main(argv: list[str]) -> int:
    log, results = Path(argv[0]), Path(argv[1])
    out = Path(argv[2]) if len(argv) > 2 else None
    jobs, end = parse_log(log.read_text(errors="replace")) if log.exists() else ([], None)
    for j in jobs:
        stop = j["end"] or end
        j["seconds"] = (stop - j["start"]).total_seconds() if stop and j["start"] else None
        j["start"] = j["start"].isoformat() if j["start"] else None
        j["end"] = j["end"].isoformat() if j["end"] else None
    per_rule: dict[str, dict] = {}
    for j in jobs:
        r = per_rule.setdefault(j["rule"], {"jobs": 0, "done": 0, "failed": 0, "running": 0, "seconds": 0.0})
        r["jobs"] += 1
        r[j["status"]] += 1
        r["seconds"] += j["seconds"] or 0.0
    warm = warmups(results) if results.exists() else []
    if out:
        (out / "jobs.json").write_text(json.dumps({"jobs": jobs, "per_rule": per_rule}, indent=1))
        (out / "warmup.json").write_text(json.dumps(warm, indent=1))
    print(f"{'rule':<16} {'jobs':>4} {'done':>4} {'failed':>6} {'running':>7} {'job-seconds':>11}")
    for rule, r in sorted(per_rule.items(), key=lambda kv: -kv[1]["seconds"]):
        print(f"{rule:<16} {r['jobs']:>4} {r['done']:>4} {r['failed']:>6} {r['running']:>7} {r['seconds']:>11.0f}")
    for j in jobs:
        if j["status"] != "done":
            print(f"{j['status']}: {j['rule']} {j['wildcards']} (log {j['log'] or '-'})")
    for w in warm:
        parts = [f"{k} {w[k]:.2f}" if isinstance(w[k], float) else f"{k} {w[k]}" for k in w if k != "run"]
        print(f"warm-up {w['run']}: {', '.join(parts)}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1:]))
