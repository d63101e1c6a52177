"""Run the `gpu`-marked tests of tests/perf where pytest is not installed (a bare GPU machine):
a minimal stand-in for the few pytest names those tests use, then each test in turn.

    python3 benchmarks/run_gpu_tests.py      # exit status 1 if any test failed
"""

from __future__ import annotations

import importlib
import inspect
import sys
import time
import traceback
import types
from pathlib import Path

MODULES = ["tests.perf.test_cuda_fast_paths"]


class Skipped(Exception):
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


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    try:
        import pytest  # noqa: F401
    except ImportError:
        install_shim()
    import torch

    # As the `cuda` fixture of tests/perf/conftest.py: float32 comparisons without TF32.
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    failed = passed = skipped = 0
    for name in MODULES:
        module = importlib.import_module(name)
        for test_name, fn in sorted(vars(module).items()):
            marks = set(getattr(fn, "_marks", ())) | {m.name for m in getattr(fn, "pytestmark", [])}
            if not (test_name.startswith("test_") and "gpu" in marks):
                continue
            kwargs = {"cuda": torch.device("cuda")} if "cuda" in inspect.signature(fn).parameters else {}
            t0 = time.monotonic()
            try:
                if kwargs and not torch.cuda.is_available():
                    raise Skipped("needs a CUDA device")
                fn(**kwargs)
                status = "PASSED"
                passed += 1
            except Skipped as exc:
                status = f"SKIPPED ({exc})"
                skipped += 1
            except Exception:
                failed += 1
                status = "FAILED\n" + traceback.format_exc()
            print(f"{name}::{test_name} {status} [{time.monotonic() - t0:.1f}s]", flush=True)
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
