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
