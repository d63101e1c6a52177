"""Helpers for kill-and-resume tests: run an `itnas` command, SIGKILL it at chosen moments."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from itnas.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]


def itnas(args: list[str], **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen([sys.executable, "-m", "itnas.cli", "-q", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def run_to_end(args: list[str], timeout: float = 300) -> None:
    proc = itnas(args)
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()[-2000:]


def kill_after(args: list[str], delay: float) -> bool:
    """Start the command and SIGKILL it after `delay` seconds; True if it was killed mid-run."""
    proc = itnas(args)
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


def assert_nothing_half_written(out: Path, final_outputs: tuple[str, ...]) -> None:
    """After a kill: a checkpoint, if any, verifies; the command's final outputs appear only once
    metrics.json (written last) does; temporary files may remain but never carry final names."""
    ckpt = out / "checkpoint.pt"
    if ckpt.exists():
        load_checkpoint(ckpt)  # raises CorruptFileError if torn
    for name in final_outputs:
        assert not (out / name).exists() or (out / "metrics.json").exists(), name
    for path in out.glob("*.json"):
        json.loads(path.read_text())  # any JSON under a final name is whole


def kill_at_random_moments(args: list[str], out: Path, delays: list[float],
                           final_outputs: tuple[str, ...] = ()) -> int:
    kills = 0
    for delay in delays:
        if (out / "metrics.json").exists():
            break
        kills += kill_after(args, delay)
        assert_nothing_half_written(out, final_outputs)
        time.sleep(0.05)
    return kills
