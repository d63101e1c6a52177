"""Safe archive extraction: nothing an archive holds may land outside the target folder.

Members with absolute paths, `..` components, links that point outside the target, links
that a later member writes through, and device or FIFO entries are refused with a one-line
DataError. Extraction goes to a temporary sibling folder that is renamed into place only
when every member is out, so a refused or interrupted archive leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path

from tqdm import tqdm

from itnas.errors import DataError
from itnas.files import publish_folder, usual_mode


def _progress(total: int | None, desc: str):
    # disable=None: bars only on a terminal, so logs and captured output stay clean.
    return tqdm(total=total, desc=desc, unit=" files", disable=None, leave=False)


def _check_name(archive: Path, name: str) -> str:
    """The member's normalised relative path, or a DataError naming the archive and member."""
    if not name or "\x00" in name:
        raise DataError(f"{archive.name}: refusing member with an empty or invalid name")
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        raise DataError(f"{archive.name}: refusing absolute path '{name}'")
    parts = [p for p in posix.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DataError(f"{archive.name}: refusing path with '..': '{name}'")
    return "/".join(parts)


def _check_link(archive: Path, member: str, target: str, hard: bool) -> None:
    """A link must resolve inside the target folder (lexically: links are not followed)."""
    if target.startswith("/") or (len(target) > 1 and target[1] == ":"):
        raise DataError(f"{archive.name}: refusing link '{member}' to absolute path '{target}'")
    # Hard-link targets are archive paths; symlink targets are relative to the link's folder.
    base = "" if hard else posixpath.dirname(member)
    resolved = posixpath.normpath(posixpath.join(base, target))
    if resolved == ".." or resolved.startswith("../"):
        raise DataError(f"{archive.name}: refusing link '{member}' -> '{target}' that leaves "
                        "the target folder")


def _through_link(archive: Path, name: str, links: set[str]) -> None:
    # A member written below a link could land wherever the link points; refuse it rather
    # than reason about chains of links.
    parts = name.split("/")
    for i in range(1, len(parts)):
        if "/".join(parts[:i]) in links:
            raise DataError(f"{archive.name}: refusing member '{name}' below link "
                            f"'{'/'.join(parts[:i])}'")


def _extract_tar(archive: Path, into: Path) -> int:
    count = 0
    links: set[str] = set()
    # Stream mode ('r|*'): one pass over compressed archives, checking each member before
    # it is written.
    with tarfile.open(archive, "r|*") as tf, _progress(None, f"extract {archive.name}") as bar:
        for member in tf:
            name = _check_name(archive, member.name)
            _through_link(archive, name, links)
            if member.issym() or member.islnk():
                _check_link(archive, name, member.linkname, hard=member.islnk())
                if member.islnk():
                    member.linkname = _check_name(archive, member.linkname)
                links.add(name)
            elif not (member.isfile() or member.isdir()):
                raise DataError(f"{archive.name}: refusing special file '{member.name}'")
            if not name:
                continue  # the archive's own root folder
            member.name = name
            try:
                # The 'data' filter re-checks paths and links and drops setuid bits and
                # odd permissions: a second line of defence, not the only one.
                tf.extract(member, into, filter="data")
            except tarfile.FilterError as exc:
                raise DataError(f"{archive.name}: refusing member '{name}': {exc}") from None
            count += 1
            bar.update()
    return count


def _extract_zip(archive: Path, into: Path) -> int:
    count = 0
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        with _progress(len(infos), f"extract {archive.name}") as bar:
            for info in infos:
                name = _check_name(archive, info.filename)
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    _check_link(archive, name, zf.read(info).decode("utf-8", "replace"),
                                hard=False)
                if not name:
                    continue
                target = into / name
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                count += 1
                bar.update()
    return count


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike,
                 overwrite: bool = False) -> int:
    """Extract a tar (any compression) or zip archive into `dest`; returns the member count.

    `dest` must not exist unless `overwrite` is set, in which case it is replaced only after
    the new extraction has succeeded.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise DataError(f"archive not found: {archive}")
    if dest.exists() and not overwrite:
        raise DataError(f"extraction target already exists: {dest}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".extracting", dir=dest.parent))
    usual_mode(tmp, 0o777)  # mkdtemp's 0700 would make the extracted folder private
    try:
        try:
            if zipfile.is_zipfile(archive):
                count = _extract_zip(archive, tmp)
            else:
                count = _extract_tar(archive, tmp)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
            # Unreadable, truncated or unwritable: say which archive and why, in one line.
            raise DataError(f"cannot extract {archive} ({exc.__class__.__name__}: {exc})") \
                from None
        publish_folder(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    return count
