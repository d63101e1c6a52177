"""safe_extract: archives cannot write outside their target, and a refused one leaves nothing."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile

import pytest

from itnas.data.archive import safe_extract
from itnas.errors import DataError


def make_tar(path, entries, mode="w:gz"):
    """entries: (name, kind, payload) with kind 'file' (bytes), 'dir', 'sym' or 'hard' (target)."""
    with tarfile.open(path, mode) as tf:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
                continue
            if kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, payload
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, payload
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            tf.addfile(info)
    return path


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_extracts_tar_and_zip_with_nested_folders(tmp_path):
    archive = make_tar(tmp_path / "a.tar.gz", [
        ("top", "dir", None), ("top/sub/x.txt", "file", b"hello"),
        ("top/link", "sym", "sub/x.txt"), ("top/hard", "hard", "top/sub/x.txt")])
    assert safe_extract(archive, tmp_path / "out") == 4
    assert (tmp_path / "out/top/sub/x.txt").read_bytes() == b"hello"
    assert os.readlink(tmp_path / "out/top/link") == "sub/x.txt"
    assert (tmp_path / "out/top/hard").read_bytes() == b"hello"
    with zipfile.ZipFile(tmp_path / "b.zip", "w") as zf:
        zf.writestr("d/e/f.txt", "zip!")
    safe_extract(tmp_path / "b.zip", tmp_path / "zout")
    assert (tmp_path / "zout/d/e/f.txt").read_text() == "zip!"


@pytest.mark.parametrize("entries, why", [
    ([("ok.txt", "file", b"1"), ("../escaped.txt", "file", b"evil")], "'..'"),
    ([("a/../../escaped.txt", "file", b"evil")], "'..'"),
    ([("/tmp/itnas-escaped.txt", "file", b"evil")], "absolute path"),
    ([("link", "sym", "../../outside")], "leaves the target"),
    ([("link", "sym", "/etc/passwd")], "absolute path"),
    ([("sub/link", "sym", "../../x")], "leaves the target"),
    ([("hard", "hard", "../outside")], "leaves the target"),
    ([("d", "dir", None), ("d/link", "sym", "."), ("d/link/f.txt", "file", b"x")], "below link"),
    ([("pipe", "fifo", None)], "special file"),
], ids=["dotdot", "inner-dotdot", "absolute", "symlink-out", "symlink-absolute",
        "symlink-nested-out", "hardlink-out", "through-symlink", "fifo"])
def test_refuses_members_that_could_leave_the_target(tmp_path, entries, why):
    archive = make_tar(tmp_path / "evil.tar.gz", entries)
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(DataError) as exc:
        safe_extract(archive, work / "out")
    message = str(exc.value)
    assert "\n" not in message and why in message and "evil.tar.gz" in message
    assert leftovers(work) == []  # no target, no temporary folder
    assert not (tmp_path / "escaped.txt").exists()
    assert not os.path.exists("/tmp/itnas-escaped.txt")


def test_refuses_zip_with_dotdot_and_escaping_symlink(tmp_path):
    with zipfile.ZipFile(tmp_path / "dots.zip", "w") as zf:
        zf.writestr("../escaped.txt", "evil")
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "../../outside")
    for name, why in (("dots.zip", "'..'"), ("link.zip", "leaves the target")):
        with pytest.raises(DataError, match=why):
            safe_extract(tmp_path / name, tmp_path / "out")
        assert not (tmp_path / "out").exists()


def test_existing_target_is_kept_unless_overwrite(tmp_path):
    archive = make_tar(tmp_path / "a.tar", [("new.txt", "file", b"new")], mode="w")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    with pytest.raises(DataError, match="already exists"):
        safe_extract(archive, tmp_path / "out")
    safe_extract(archive, tmp_path / "out", overwrite=True)
    assert leftovers(tmp_path / "out") == ["new.txt"]


def test_truncated_archive_is_a_one_line_error_and_leaves_nothing(tmp_path):
    archive = make_tar(tmp_path / "a.tar.gz", [(f"f{i}", "file", os.urandom(20000))
                                               for i in range(5)])
    archive.write_bytes(archive.read_bytes()[:30000])
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(DataError) as exc:
        safe_extract(archive, work / "out")
    assert "cannot extract" in str(exc.value) and "\n" not in str(exc.value)
    assert leftovers(work) == []
