"""`itnas data ...` through the real entry point: exit codes, one-line errors, labels."""

from __future__ import annotations

import shutil

import pytest

from itnas.cli import main
from itnas.data.registry import list_specs


def test_verify_of_a_missing_dataset_fails_with_exactly_one_line(tmp_path, capsys):
    rc = main(["data", "verify", "synthetic-cifar10", "--root", str(tmp_path)])
    out, err = capsys.readouterr()
    assert rc != 0 and out == ""
    assert len(err.splitlines()) == 1 and err.endswith("\n")
    assert "synthetic-cifar10" in err and "itnas data fetch" in err


def test_verify_of_a_corrupt_dataset_names_the_file(standin_root, tmp_path, capsys):
    shutil.copytree(standin_root / "synthetic-cifar10", tmp_path / "synthetic-cifar10")
    (tmp_path / "synthetic-cifar10" / "test_images.npy").write_bytes(b"x")
    rc = main(["data", "verify", "synthetic-cifar10", "--root", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.splitlines()) == 1 and "test_images.npy" in err


def test_fetch_then_verify_a_stand_in(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("itnas.data.manifest.SAY_BYTES", 1)  # as if it were a large dataset
    assert main(["data", "fetch", "synthetic-cifar100", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "STAND-IN (synthetic, not cifar100)" in out
    assert main(["data", "verify", "synthetic-cifar100", "--root", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert out == f"ok: synthetic-cifar100 (5 files) at {tmp_path / 'synthetic-cifar100'}\n"
    assert "checking the 5 files of synthetic-cifar100" in err  # said before reading every byte


def test_unknown_dataset_is_a_one_line_error(tmp_path, capsys):
    assert main(["data", "fetch", "mnist", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "unknown dataset 'mnist'" in err


def test_list_shows_every_dataset_and_labels_stand_ins(standin_root, capsys):
    assert main(["data", "list", "--root", str(standin_root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {s.name for s in list_specs()}
    for spec in list_specs():
        assert ("STAND-IN (synthetic, not " in rows[spec.name]) == spec.standin
    assert rows["synthetic-cifar10"].rstrip().endswith(f"yes ({standin_root / 'synthetic-cifar10'})")
    assert rows["cifar10"].rstrip().endswith("no")
    assert "604,388 (train+extra)" in rows["svhn"]


def test_list_refuses_a_root_that_is_a_file_in_one_line(tmp_path, capsys):
    root = tmp_path / "data"
    root.write_text("not a folder")
    assert main(["data", "list", "--root", str(root)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and f"--root {root}: is a file, not a folder" in err


@pytest.mark.parametrize("argv", [["data"], ["data", "fetch"], ["data", "verify"],
                                  ["data", "list"]])
def test_every_subcommand_has_help(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    assert "usage: itnas data" in capsys.readouterr().out
