"""Atomic writes: whole files under final names, with the permissions a plain open() gives."""

import os
import stat

import pytest

from itnas.files import atomic_open, write_json


def test_written_files_get_umask_permissions_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "m.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m.json").stat().st_mode) == 0o644


def test_a_failed_write_leaves_neither_the_final_name_nor_a_temporary(tmp_path):
    with pytest.raises(RuntimeError), atomic_open(tmp_path / "out.txt") as fh:
        fh.write("half")
        raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []


def test_numbers_in_exponent_form_are_numbers_in_files_and_overrides():
    """PyYAML alone reads `3e-4` as text (YAML 1.1 floats need a dot); ours read it as JSON and
    Python do, in config files and in --set values, and leave look-alikes text."""
    from itnas.config import parse_override
    from itnas.files import parse_yaml

    assert parse_yaml("lr: 3e-4\nsteps: 1e5\nn: 12\nx: 1.5e-2\nname: 3e\ntag: e5") == \
        {"lr": 3e-4, "steps": 1e5, "n": 12, "x": 0.015, "name": "3e", "tag": "e5"}
    assert parse_override("arch_optim.lr=3e-3") == (["arch_optim", "lr"], 0.003)
    assert parse_override("arch_optim.lr=-2E+1") == (["arch_optim", "lr"], -20.0)
