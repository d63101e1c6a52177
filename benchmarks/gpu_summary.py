"""Summarise the JSON lines of benchmarks/gpu_check.sh and extrapolate the paper's runs.

    python3 benchmarks/gpu_summary.py OUT_DIR

Search (SPEC section 3): 50 epochs; per epoch 25,000 weight images and 25,000 architecture
images in batches of 64, i.e. 391 steps, each one architecture step plus one weight step,
then one forward pass over the 25,000 architecture images for the epoch's validation figure
(estimated here as a third of a weight step per batch: forward only, no update).
Training (SPEC section 7): 600 epochs of 50,000 images in batches of 96, i.e. 521 steps, plus
one forward pass over the 10,000 test images per epoch (estimated likewise).
Goals on an H100 (issue 7): search within 1 GPU-hour, training within 6.
Writes OUT_DIR/summary.json and prints a table.
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


def search_hours(r: dict) -> dict:
    steps = math.ceil(SEARCH_HALF / SEARCH_BATCH)
    step = r["step_s_median"] + r["arch_step_s_median"]
    epoch = steps * step
    epoch_val = epoch + steps * FORWARD_SHARE * r["step_s_median"]
    return {"steps_per_epoch": steps, "search_step_s": step, "epoch_s": epoch, "epoch_with_val_s": epoch_val,
            "gpu_hours": SEARCH_EPOCHS * epoch / 3600, "gpu_hours_with_val": SEARCH_EPOCHS * epoch_val / 3600}


def train_hours(r: dict) -> dict:
    steps = math.ceil(TRAIN_IMAGES / TRAIN_BATCH)
    epoch = steps * r["step_s_median"]
    epoch_val = epoch + math.ceil(TEST_IMAGES / TRAIN_BATCH) * FORWARD_SHARE * r["step_s_median"]
    return {"steps_per_epoch": steps, "epoch_s": epoch, "epoch_with_val_s": epoch_val,
            "gpu_hours": TRAIN_EPOCHS * epoch / 3600, "gpu_hours_with_val": TRAIN_EPOCHS * epoch_val / 3600}


def main(out_dir: str) -> int:
    rows, summary = [], {"runs": {}}
    for path in sorted(Path(out_dir).glob("*.json")):
        if path.name == "summary.json":
            continue
        lines = [line for line in path.read_text().splitlines() if line.strip().startswith("{")]
        if not lines:
            rows.append((path.stem, "no result (failed or timed out; see its .log)"))
            continue
        r = json.loads(lines[-1])
        if r.get("bench") == "supernet":
            x = search_hours(r)
            rows.append((path.stem, f"weight {1e3 * r['step_s_median']:.1f} ms + arch "
                                    f"{1e3 * r['arch_step_s_median']:.1f} ms/step, {r['images_per_s']:.0f} img/s, "
                                    f"peak {r['peak_memory_bytes'] / 2**30:.2f} GiB; epoch {x['epoch_s']:.0f} s; "
                                    f"50-epoch search {x['gpu_hours']:.2f} GPU-h "
                                    f"({x['gpu_hours_with_val']:.2f} with validation)"))
        elif r.get("bench") == "train":
            x = train_hours(r)
            rows.append((path.stem, f"{1e3 * r['step_s_median']:.1f} ms/step, {r['images_per_s']:.0f} img/s, "
                                    f"peak {r['peak_memory_bytes'] / 2**30:.2f} GiB; epoch {x['epoch_s']:.0f} s; "
                                    f"600-epoch training {x['gpu_hours']:.2f} GPU-h "
                                    f"({x['gpu_hours_with_val']:.2f} with test passes)"))
        else:
            continue
        summary["runs"][path.stem] = {"result": r, "extrapolation": x}
    best = {}
    for kind, key in (("search", "supernet"), ("train", "train")):
        hours = [(v["extrapolation"]["gpu_hours_with_val"], name) for name, v in summary["runs"].items()
                 if v["result"].get("bench") == key]
        if hours:
            h, name = min(hours)
            best[kind] = {"run": name, "gpu_hours_with_val": h, "goal_gpu_hours": GOALS_H[kind],
                          "meets_goal": h <= GOALS_H[kind]}
    summary["best"] = best
    (Path(out_dir) / "summary.json").write_text(json.dumps(summary, indent=1))
    width = max((len(name) for name, _ in rows), default=10)
    for name, text in rows:
        print(f"{name:<{width}}  {text}")
    for kind, b in best.items():
        print(f"best {kind}: {b['run']} -> {b['gpu_hours_with_val']:.2f} GPU-hours "
              f"(goal {b['goal_gpu_hours']:g}: {'met' if b['meets_goal'] else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "gpu-out"))
