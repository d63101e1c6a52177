"""Summarise the results of benchmarks/gpu_check.sh and extrapolate the paper's runs.

    python3 benchmarks/gpu_summary.py OUT_DIR
    python3 benchmarks/gpu_summary.py --tests FILE.jsonl...   # only the tests' outcomes

Search (docs/method.md): 50 epochs; per epoch 25,000 weight images and 25,000 architecture
images in batches of 64, i.e. 391 steps, each one architecture step plus one weight step,
then one forward pass over the 25,000 architecture images for the epoch's validation figure
(from the bench's timed evaluation batch, `eval_step_s_median` at `eval_batch_size`; for results
without one, estimated as a third of a weight step per training batch).
Training (docs/training.md): 600 epochs of 50,000 images in batches of 96, i.e. 521 steps, plus
one forward pass over the 10,000 test images per epoch (estimated likewise).
A compiled run's warm-up (compilation, CUDA-graph recording) is paid once per job and is left
out of the extrapolation; it is printed beside it.
Goals on an H100 (issue 7): search within 1 GPU-hour, training within 6.
Prints the equality tests' outcomes (from OUT_DIR/gpu_tests/*.jsonl, benchmarks/gpu_tests.sh), one line per run with its ratio to
the plain run of the same kind, the extrapolations, and writes OUT_DIR/summary.json.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

SEARCH_EPOCHS, SEARCH_HALF, SEARCH_BATCH = 50, 25_000, 64
TRAIN_EPOCHS, TRAIN_IMAGES, TEST_IMAGES, TRAIN_BATCH = 600, 50_000, 10_000, 96
FORWARD_SHARE = 1 / 3  # a forward pass costs about a third of forward + backward + update
GOALS_H = {"search": 1.0, "train": 6.0}
SEARCH_STEPS = math.ceil(SEARCH_HALF / SEARCH_BATCH)  # 391 weight steps (and as many arch steps)
TRAIN_STEPS = math.ceil(TRAIN_IMAGES / TRAIN_BATCH)  # 521


def eval_pass_s(r: dict, images: int, batch: int) -> float:
    """One evaluation pass over `images`: the measured eval batch (`eval_step_s_median`, at
    `eval_batch_size`) where the bench timed one, else FORWARD_SHARE of a training step per batch."""
    if r.get("eval_step_s_median") and r.get("eval_batch_size"):
        return math.ceil(images / r["eval_batch_size"]) * r["eval_step_s_median"]
    return math.ceil(images / batch) * FORWARD_SHARE * r["step_s_median"]


def search_hours(r: dict) -> dict:
    step = r["step_s_median"] + r["arch_step_s_median"]
    epoch = SEARCH_STEPS * step
    epoch_val = epoch + eval_pass_s(r, SEARCH_HALF, SEARCH_BATCH)
    return {"steps_per_epoch": SEARCH_STEPS, "search_step_s": step, "epoch_s": epoch, "epoch_with_val_s": epoch_val,
            "gpu_hours": SEARCH_EPOCHS * epoch / 3600, "gpu_hours_with_val": SEARCH_EPOCHS * epoch_val / 3600}


def train_hours(r: dict) -> dict:
    epoch = TRAIN_STEPS * r["step_s_median"]
    epoch_val = epoch + eval_pass_s(r, TEST_IMAGES, TRAIN_BATCH)
    return {"steps_per_epoch": TRAIN_STEPS, "epoch_s": epoch, "epoch_with_val_s": epoch_val,
            "gpu_hours": TRAIN_EPOCHS * epoch / 3600, "gpu_hours_with_val": TRAIN_EPOCHS * epoch_val / 3600}


def test_outcomes(files: list[Path]) -> list[tuple[str, str]]:
    """(test, outcome) from the results files of benchmarks/gpu_tests.sh (one JSON line per start
    and per result, written as they happen): 'no result' = started, but its group was killed
    before it ended (out of time); a group that never started says 'not run'. A failure or skip
    carries the first line of its message."""
    seen: dict[str, str] = {}
    for path in files:
        for line in path.read_text(errors="replace").splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue  # a line cut off by the kill
            if r.get("event") == "not run":
                seen[f"group {r.get('group')}"] = f"not run ({r.get('seconds_left')} s left)"
                continue
            name = str(r.get("test", "")).rpartition("::")[2]
            if r.get("event") == "started":
                seen.setdefault(name, "no result")
            elif name:
                message = f": {r['message']}" if r.get("message") else ""
                seen[name] = f"{str(r.get('event')).upper()} ({r.get('seconds', 0):.1f} s){message}"
    return list(seen.items())


def _peak(r: dict) -> str:
    """Peak memory of the timed steps, and of the warm-up where it was higher (CUDA graphs take
    their pool while recording), in GiB."""
    peak, warm = r["peak_memory_bytes"] / 2**30, (r.get("warmup_peak_memory_bytes") or 0) / 2**30
    return f"{peak:.2f} GiB" + (f" ({warm:.2f} in the warm-up)" if warm > peak else "")


def _step_s(r: dict) -> float:
    return r["step_s_median"] + (r.get("arch_step_s_median") or 0.0)


def main(out_dir: str) -> int:
    out = Path(out_dir)
    rows, summary = [], {"runs": {}, "tests": {}}
    tests = test_outcomes(sorted((out / "gpu_tests").glob("*.jsonl")))
    summary["tests"] = dict(tests)
    results = {}
    # In the order gpu_check.sh runs them (by value), then anything else by name.
    order = ["plain", "step_graphs", "step_graphs_channels_last", "step_graphs_streams4",
             "step_graphs_streams4_channels_last", "compile_cudagraphs", "compile_cudagraphs_amp",
             "compile_cudagraphs_channels_last", "compile_reduce_overhead"]

    def rank(path: Path) -> tuple:
        kind, _, variant = path.stem.partition("_")
        return (order.index(variant) if variant in order else len(order), kind, path.stem)

    for path in sorted(out.glob("*.json"), key=rank):
        if path.name == "summary.json":
            continue
        lines = [line for line in path.read_text().splitlines() if line.strip().startswith("{")]
        if not lines:
            rows.append((path.stem, "no result (failed or timed out; see its .log)"))
            continue
        results[path.stem] = json.loads(lines[-1])
    for name, r in results.items():
        plain = results.get(f"{r.get('bench')}_plain") if r.get("bench") in ("supernet", "train") else None
        vs = f"; {_step_s(r) / _step_s(plain):.2f} x plain" if plain and name != f"{r['bench']}_plain" else ""
        what = (f"amp {str(r.get('amp')).lower()}, channels-last {str(r.get('channels_last')).lower()}, "
                f"compile {r.get('compile') or 'no'}, streams {r.get('streams', 1)}, data {r.get('data')}")
        extra = (f"{r.get('dispatches_per_step')} aten ops/step, warm-up {r.get('warmup_s', 0):.0f} s "
                 f"({r.get('warmup')} steps)")
        if "lock_wait_s" in r:  # started beside others: compiled in parallel, timed alone
            extra += f", waited {r['lock_wait_s']:.0f} s to time"
        if r.get("bench") == "supernet":
            x = search_hours(r)
            rows.append((name, f"weight {1e3 * r['step_s_median']:.1f} ms + arch "
                               f"{1e3 * r['arch_step_s_median']:.1f} ms/step{vs} (CPU "
                               f"{1e3 * (r['step_cpu_s_median'] + r['arch_step_cpu_s_median']):.0f} ms), "
                               f"{r['images_per_s']:.0f} img/s, peak {_peak(r)}; "
                               f"epoch {x['epoch_s']:.0f} s; 50-epoch search {x['gpu_hours']:.2f} GPU-h "
                               f"({x['gpu_hours_with_val']:.2f} with validation); {extra}; {what}"))
        elif r.get("bench") == "train":
            x = train_hours(r)
            rows.append((name, f"{1e3 * r['step_s_median']:.1f} ms/step{vs} (CPU {1e3 * r['step_cpu_s_median']:.0f} ms), "
                               f"{r['images_per_s']:.0f} img/s, peak {_peak(r)}; "
                               f"epoch {x['epoch_s']:.0f} s; 600-epoch training {x['gpu_hours']:.2f} GPU-h "
                               f"({x['gpu_hours_with_val']:.2f} with test passes); {extra}; {what}"))
        else:
            continue
        summary["runs"][name] = {"result": r, "extrapolation": x,
                                 "vs_plain": _step_s(r) / _step_s(plain) if plain else None}
    best = {}
    for kind, key in (("search", "supernet"), ("train", "train")):
        hours = [(v["extrapolation"]["gpu_hours_with_val"], name) for name, v in summary["runs"].items()
                 if v["result"].get("bench") == key]
        if hours:
            h, name = min(hours)
            best[kind] = {"run": name, "gpu_hours_with_val": h, "goal_gpu_hours": GOALS_H[kind],
                          "meets_goal": h <= GOALS_H[kind]}
    summary["best"] = best
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    for name, outcome in tests:
        print(f"test {name}: {outcome}")
    width = max((len(name) for name, _ in rows), default=10)
    for name, text in rows:
        print(f"{name:<{width}}  {text}")
    print(f"extrapolation: search = {SEARCH_EPOCHS} epochs x {SEARCH_STEPS} steps (25,000 images per half / "
          f"batch {SEARCH_BATCH}) x (weight + arch step), + a validation pass over 25,000 images; training = "
          f"{TRAIN_EPOCHS} epochs x {TRAIN_STEPS} steps (50,000 images / batch {TRAIN_BATCH}), + a test pass "
          f"over 10,000 images. Passes from the measured eval batch (eval_step_s_median) where the run "
          f"has one, else {FORWARD_SHARE:.2f} of a training step per training-sized batch")
    for kind, b in best.items():
        print(f"best {kind}: {b['run']} -> {b['gpu_hours_with_val']:.2f} GPU-hours "
              f"(goal {b['goal_gpu_hours']:g}: {'met' if b['meets_goal'] else 'NOT met'})")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--tests"]:  # one line per test of the given results files
        for test, outcome in test_outcomes([Path(f) for f in sys.argv[2:]]):
            print(f"{test}: {outcome}")
        sys.exit(0)
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "gpu-out"))
