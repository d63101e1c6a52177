"""A pytest plugin that writes each test's result to a file the moment the test ends, so that a
GPU session cut short keeps every result it got (benchmarks/gpu_tests.sh; issue 19).

    python -m pytest -p benchmarks.gpu_results --results-file OUT/group.jsonl ...

One JSON line per event, appended, flushed and fsynced:
  {"test": NODEID, "event": "started", "t": UNIX_TIME}
  {"test": NODEID, "event": "passed" | "failed" | "skipped" | "error", "seconds": S,
   "message": FIRST LINE OF THE FAILURE OR SKIP REASON, "t": UNIX_TIME}
A test with a "started" line and no result line was running when the group was killed (its
time limit or the session's); `gpu_tests_summary` (in benchmarks/gpu_summary.py) says so.
"""

from __future__ import annotations

import json
import os
import time

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--results-file", metavar="FILE", default=None,
                     help="append one JSON line per test start and result to FILE as each happens")


class ResultsFile:
    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the session
        self.durations: dict[str, float] = {}

    def write(self, **record) -> None:
        record["t"] = round(time.time(), 3)
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def pytest_runtest_logstart(self, nodeid: str, location) -> None:
        self.durations[nodeid] = 0.0
        self.write(test=nodeid, event="started")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.durations[report.nodeid] = self.durations.get(report.nodeid, 0.0) + report.duration
        # One result line per test: a setup failure or skip, the call's outcome, or a teardown error.
        if report.when == "call" or (report.when == "setup" and not report.passed) or \
                (report.when == "teardown" and report.failed):
            event = report.outcome
            if report.when != "call" and report.failed:
                event = "error"
            self.write(test=report.nodeid, event=event, seconds=round(self.durations[report.nodeid], 3),
                       message=_first_line(report))

    def pytest_sessionfinish(self) -> None:
        self.file.close()


def _first_line(report: pytest.TestReport) -> str:
    if report.passed:
        return ""
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    text = getattr(report, "longreprtext", "") or str(report.longrepr or "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E ")]
    return (errors[0][1:].strip() if errors else lines[-1] if lines else "")[:300]


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--results-file")
    if path:
        config.pluginmanager.register(ResultsFile(path), "gpu-results-file")
