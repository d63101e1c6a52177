"""Outputs that cannot be written end in one line naming the flag, before any work and without
writing anywhere else: an empty path (an unset shell variable, which would mean the current
folder), a path under a regular file, a file where a folder goes, a folder where a file goes, a
figure format matplotlib cannot write."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from itnas.cli import main
from itnas.errors import UserError
from itnas.files import output_path
from tests.reliability.errors import one_line_error

REPO = Path(__file__).resolve().parents[2]


def _commands(tmp_path: Path, out: str) -> dict[str, tuple[list[str], str]]:
    """Each command that writes, with `out` as its output: (argv, the flag named)."""
    history = tmp_path / "seed0" / "history.json"
    return {
        "search --out": (["search", "--seed", "0", "--out", out], "--out"),
        "train --out": (["train", "--genotype", "DARTS_V2", "--dataset", "synthetic-cifar10", "--seed", "0",
                         "--out", out], "--out"),
        "select --out": (["select", "--genotypes", "DARTS_V2", "--dataset", "synthetic-cifar10", "--seed", "0",
                          "--out", out], "--out"),
        "derive --out": (["derive", "--arch-state", str(tmp_path / "none.json"), "--method", "tiep",
                          "--out", out], "--out"),
        "sample --out": (["sample", "--seed", "0", "--out", out], "--out"),
        "plot cell --out": (["plot", "cell", "--genotype", "DARTS_V2", "--out", out], "--out"),
        "plot curves --out": (["plot", "curves", "--history", str(history), "--out", out], "--out"),
        "tables --out-dir": (["tables", "--published", str(REPO / "config/paper/published.yaml"), "--out-dir", out],
                             "--out-dir"),
        "data fetch --root": (["data", "fetch", "synthetic-cifar10", "--root", out], "--root"),
    }


COMMANDS = list(_commands(Path("/nonexistent"), "x"))
FILE_OUTPUTS = {"derive --out", "sample --out", "plot cell --out", "plot curves --out"}


@pytest.fixture(autouse=True)
def history(tmp_path):
    """The search history `itnas plot curves` reads, in its own folder."""
    path = tmp_path / "seed0" / "history.json"
    path.parent.mkdir()
    path.write_text(json.dumps([{"epoch": 1, "tau": 5.0, "val_acc": 10.0}]))


@pytest.mark.parametrize("command", COMMANDS)
def test_an_empty_output_path_is_refused_not_taken_for_the_current_folder(tmp_path, capsys, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    argv, flag = _commands(tmp_path, "")[command]
    before = set(os.listdir(tmp_path))
    err = one_line_error(capsys, main(argv))
    assert f"{flag} '': empty" in err, err
    assert set(os.listdir(tmp_path)) == before


@pytest.mark.parametrize("command", COMMANDS)
def test_an_output_under_a_regular_file_is_refused(tmp_path, capsys, command):
    (tmp_path / "afile").write_text("keep me")
    out = tmp_path / "afile" / ("x.png" if command in FILE_OUTPUTS else "out")
    argv, flag = _commands(tmp_path, str(out))[command]
    err = one_line_error(capsys, main(argv))
    assert f"{flag} {out}: {tmp_path / 'afile'} is a file, not a folder" in err, err
    assert (tmp_path / "afile").read_text() == "keep me"


@pytest.mark.parametrize("command", sorted(set(COMMANDS) - FILE_OUTPUTS))
def test_a_file_where_a_folder_goes_is_refused(tmp_path, capsys, command):
    (tmp_path / "afile").write_text("keep me")
    argv, flag = _commands(tmp_path, str(tmp_path / "afile"))[command]
    err = one_line_error(capsys, main(argv))
    assert f"{flag} {tmp_path / 'afile'}: exists and is not a folder" in err, err
    assert (tmp_path / "afile").read_text() == "keep me"


@pytest.mark.parametrize("command", sorted(FILE_OUTPUTS))
@pytest.mark.parametrize("folder", ["existing", "trailing slash"])
def test_a_folder_where_a_file_goes_is_refused(tmp_path, capsys, command, folder):
    out = str(tmp_path) if folder == "existing" else str(tmp_path / "new") + "/"
    argv, flag = _commands(tmp_path, out)[command]
    err = one_line_error(capsys, main(argv))
    assert "is a folder; expected a file name" in err, err
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("command", ["plot cell --out", "plot curves --out"])
@pytest.mark.parametrize("name", ["figure.xyz", "figure.doc", "figure.png.bak"])
def test_a_figure_format_matplotlib_cannot_write_is_refused_before_drawing(tmp_path, capsys, command, name):
    argv, _ = _commands(tmp_path, str(tmp_path / name))[command]
    err = one_line_error(capsys, main(argv))
    assert f"matplotlib cannot write .{name.rsplit('.', 1)[1]} files (use one of:" in err and ".png" in err
    assert not list(tmp_path.glob("*figure*")) and not list(tmp_path.glob(".*tmp"))


def test_figure_extensions_are_case_blind(tmp_path, capsys):
    assert main(["plot", "cell", "--genotype", "DARTS_V2", "--out", str(tmp_path / "cell.PNG")]) == 0
    assert (tmp_path / "cell.PNG").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_folder_we_may_not_write_in_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(UserError, match="permission denied"):
        output_path(locked / "run", "--out", folder=True)


def test_output_path_creates_the_folder_only_when_asked(tmp_path):
    assert output_path(tmp_path / "a" / "b", "--out", folder=True) == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()
    output_path(tmp_path / "a" / "b", "--out", folder=True, create=True)
    output_path(tmp_path / "c" / "g.json", "--out", folder=False, create=True)
    assert (tmp_path / "a" / "b").is_dir() and (tmp_path / "c").is_dir()
