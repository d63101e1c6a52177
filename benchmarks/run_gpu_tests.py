"""Run the `gpu`-marked tests of tests/accel where pytest (or pytest-timeout) is not installed (a
bare GPU machine): a minimal stand-in for the few pytest names those tests use, then each test
in turn, its name printed (and flushed) before it starts, each under its own time limit.

    python3 benchmarks/run_gpu_tests.py [-k EXPR] [-x] [--timeout S]   # exit 1 if any test failed

-k keeps tests whose name contains EXPR ('not EXPR': whose name does not); -x stops at the
first failure; --timeout fails a test that runs longer than S seconds (SIGALRM: the test is
interrupted when Python next gets control) and goes on with the next one.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import signal
import sys
import time
import traceback
import types
from pathlib import Path

MODULES = ["tests.accel.test_cuda_fast_paths"]


class Skipped(Exception):
    pass


class TimedOut(Exception):
    pass


def _marker(name):
    def mark(*args, **kwargs):
        def tag(f):
            f.__dict__.setdefault("_marks", set()).add(name)
            return f
        return tag(args[0]) if len(args) == 1 and callable(args[0]) and not kwargs else tag
    return mark


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
    if not expr:
        return True
    if expr.startswith("not "):
        return expr[4:].strip() not in name
    return expr in name


def _alarm(signum, frame):
    raise TimedOut()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-k", dest="expr", help="substring of the test names to run ('not X' to leave out)")
    p.add_argument("-x", dest="exitfirst", action="store_true", help="stop at the first failure")
    p.add_argument("--timeout", type=int, default=0, help="seconds per test (0: none)")
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
    failed = passed = skipped = 0
    for name in MODULES:
        module = importlib.import_module(name)
        # Definition order, as pytest runs them.
        tests = [(n, fn) for n, fn in vars(module).items() if n.startswith("test_") and callable(fn)]
        for test_name, fn in tests:
            marks = set(getattr(fn, "_marks", ())) | {m.name for m in getattr(fn, "pytestmark", [])}
            if "gpu" not in marks or not selected(test_name, args.expr):
                continue
            node = f"{name.replace('.', '/')}.py::{test_name}"
            print(f"{node} ...", flush=True)
            kwargs = {"cuda": torch.device("cuda")} if "cuda" in inspect.signature(fn).parameters else {}
            t0 = time.monotonic()
            signal.alarm(args.timeout)
            try:
                if kwargs and not torch.cuda.is_available():
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
            print(f"{node} {status} [{time.monotonic() - t0:.1f}s]", flush=True)
            if args.exitfirst and failed:
                break
    print(f"{passed} passed, {failed} failed, {skipped} skipped", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
