"""What `itnas ... --help` tells a user: every option explained, no "(default: None)", every
output format named, and no pointer to a document outside the repository."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from itnas.cli import build_parser

REPO = Path(__file__).resolve().parents[1]


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


COMMANDS = {" ".join(path) or "itnas": parser for path, parser in _commands(build_parser())}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_explains_every_option_without_empty_defaults(name):
    parser = COMMANDS[name]
    text = parser.format_help()
    assert not re.search(r"\(default: (None|False|\[\])\)", text), text
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{name} {action.option_strings[0]} has no help"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_points_only_at_documents_in_the_repository(name):
    text = COMMANDS[name].format_help()
    assert "SPEC" not in text and not re.search(r"\bissue \d", text), name
    for path in re.findall(r"\b((?:docs|config|workflow)/[\w./-]+\.(?:md|yaml))", text):
        assert (REPO / path).exists(), f"{name} --help names {path}, which is not in the repository"


def test_every_output_format_of_tables_and_plots_is_named():
    top = build_parser().format_help()
    assert "(md, csv, tex, html)" in top
    tables = COMMANDS["tables"].format_help()
    for ext in ("md", "csv", "tex", "html"):
        assert f"table{{N}}.{ext}".replace("{N}", "N") in tables, ext
    for figure in ("plot cell", "plot curves"):
        assert ".png, .pdf or .svg" in COMMANDS[figure].format_help(), figure


def test_threads_help_says_what_the_workflow_really_does():
    text = " ".join(build_parser().format_help().split())
    assert "OMP_NUM_THREADS (which the workflow sets to each rule's threads)" in text
    workflow = "".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    assert "--threads" not in workflow and "OMP_NUM_THREADS={threads}" in workflow
