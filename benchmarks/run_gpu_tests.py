"""Run the `gpu`-marked tests of tests/accel where pytest (or pytest-timeout) is not installed (a
bare GPU machine): a minimal stand-in for the few pytest names those tests use, then each test
in turn, its name printed (and flushed) before it starts, each under its own time limit.

    python3 benchmarks/run_gpu_tests.py [-k EXPR] [-x] [--timeout S] [--results-file F]   # exit 1 if any failed

-k keeps tests whose name matches EXPR: a pytest-like expression of name substrings with
and/or/not and parentheses; -x stops at the first failure; --timeout fails a test that runs
longer than S seconds (SIGALRM: the test is interrupted when Python next gets control) and goes
on with the next one; --results-file appends each test's start and result as JSON lines as they
happen, in the format of benchmarks/gpu_results.py.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import re
import signal
import sys
import time
import traceback
import types
from pathlib import Path

MODULES = ["tests.accel.test_cuda"]


class Skipped(Exception):
    pass


class TimedOut(Exception):
    pass


def _marker(name):
    def mark(*args, **kwargs):
        def tag(f):
            f.__dict__.setdefault("_marks", set()).add(name)
            if name == "parametrize":
                f.__dict__.setdefault("_params", []).append((args, kwargs))
            return f
        return tag(args[0]) if len(args) == 1 and callable(args[0]) and not kwargs else tag
    return mark


def cases(fn) -> list[tuple[str, dict]]:
    """(id suffix, keyword arguments) of each case of a test: one per value of its single
    `parametrize` mark (pytest's own marks or the shim's), else one without arguments."""
    params = [(m.args, m.kwargs) for m in getattr(fn, "pytestmark", []) if m.name == "parametrize"]
    params += getattr(fn, "_params", [])
    if not params:
        return [("", {})]
    if len(params) > 1 or "," in params[0][0][0]:
        raise NotImplementedError(f"{fn.__name__}: only one single-name parametrize is supported here")
    (argname, values), kwargs = params[0]
    ids = kwargs.get("ids") or [str(v) for v in values]
    return [(f"[{i}]", {argname: v}) for i, v in zip(ids, values, strict=True)]


def install_shim() -> None:
    shim = types.ModuleType("pytest")
    shim.mark = types.SimpleNamespace(gpu=_marker("gpu"), parametrize=_marker("parametrize"),
                                      slow=_marker("slow"))

    def skip(reason=""):
        raise Skipped(reason)

    def fixture(*args, **kwargs):
        return args[0] if len(args) == 1 and callable(args[0]) else (lambda f: f)

    shim.skip, shim.fixture = skip, fixture
    sys.modules["pytest"] = shim


def selected(name: str, expr: str | None) -> bool:
    """Whether `name` matches a -k expression: words are substrings (case-insensitive), combined
    with and, or, not and parentheses, as pytest's -k."""
    if not expr:
        return True
    tokens = re.findall(r"\(|\)|[^\s()]+", expr)
    code = " ".join(t if t in ("(", ")", "and", "or", "not") else repr(t.lower() in name.lower()) for t in tokens)
    return bool(eval(code, {"__builtins__": {}}))  # only True/False, and/or/not and parentheses


class Results:
    """The --results-file: one JSON line per test start and result, flushed as each happens."""

    def __init__(self, path: str | None):
        self.file = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115

    def write(self, **record) -> None:
        if self.file:
            record["t"] = round(time.time(), 3)
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
            os.fsync(self.file.fileno())


def _alarm(signum, frame):
    raise TimedOut()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-k", dest="expr", help="which tests: name substrings with and/or/not/parentheses, as pytest -k")
    p.add_argument("-x", dest="exitfirst", action="store_true", help="stop at the first failure")
    p.add_argument("--timeout", type=int, default=0, help="seconds per test (0: none)")
    p.add_argument("--results-file", metavar="FILE", help="append each test's start and result as a JSON line")
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    try:
        import pytest  # noqa: F401
    except ImportError:
        install_shim()
    import torch

    # As the `cuda` fixture of tests/accel/conftest.py: float32 comparisons without TF32.
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    signal.signal(signal.SIGALRM, _alarm)
    results = Results(args.results_file)
    failed = passed = skipped = 0
    for name in MODULES:
        module = importlib.import_module(name)
        # Definition order, as pytest runs them.
        tests = [(n, fn) for n, fn in vars(module).items() if n.startswith("test_") and callable(fn)]
        for test_name, fn in tests:
            marks = set(getattr(fn, "_marks", ())) | {m.name for m in getattr(fn, "pytestmark", [])}
            if "gpu" not in marks or not selected(test_name, args.expr):
                continue
            for suffix, params in cases(fn):
                node = f"{name.replace('.', '/')}.py::{test_name}{suffix}"
                print(f"{node} ...", flush=True)
                results.write(test=node, event="started")
                kwargs = {"cuda": torch.device("cuda")} if "cuda" in inspect.signature(fn).parameters else {}
                kwargs.update(params)
                t0 = time.monotonic()
                signal.alarm(args.timeout)
                try:
                    if "cuda" in kwargs and not torch.cuda.is_available():
                        raise Skipped("needs a CUDA device")
                    fn(**kwargs)
                    status = "PASSED"
                    passed += 1
                except Skipped as exc:
                    status = f"SKIPPED ({exc})"
                    skipped += 1
                except TimedOut:
                    failed += 1
                    status = f"TIMEOUT (more than {args.timeout} s)"
                except Exception:
                    failed += 1
                    status = "FAILED\n" + traceback.format_exc()
                finally:
                    signal.alarm(0)
                seconds = time.monotonic() - t0
                print(f"{node} {status} [{seconds:.1f}s]", flush=True)
                event, _, detail = status.partition(" ")
                lines = detail.strip().splitlines()
                message = "" if event == "PASSED" else (lines[-1] if lines else "").strip("()")
                results.write(test=node, event="failed" if event == "TIMEOUT" else event.lower(),
                              seconds=round(seconds, 3), message=message[:300])
                if args.exitfirst and failed:
                    break
            if args.exitfirst and failed:
                break
    print(f"{passed} passed, {failed} failed, {skipped} skipped", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
