"""Reading and writing the project's files, without torch: one home for both.

Readers (`read_json`, `read_yaml`) turn every problem into one `UserError` line naming the
file and what was expected. JSON never carries NaN or infinity here: writers refuse them
(`allow_nan=False`; runs record a non-finite value as null) and readers refuse the
`NaN`/`Infinity` constants that other tools may write. YAML is parsed with the safe loader.

Writers are atomic: write to a temporary name in the same folder, fsync, then rename, so a
reader never sees a half-written file under the final name, whatever kills the writer.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import yaml

from itnas.errors import CorruptFileError, UserError

# ----------------------------------------------------------------------------- readers


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """The UTF-8 text of `path`, or one line naming it and why it cannot be read."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, expected a {what}") from None
    except UnicodeDecodeError:
        raise CorruptFileError(f"{path}: not UTF-8 text; expected a {what}") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read {what}: {exc.strerror or type(exc).__name__}") from None


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed")


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """A JSON file; NaN and Infinity are refused like any other syntax error."""
    text = read_text(path, what)
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise CorruptFileError(f"{path}: not valid JSON ({exc}); expected a {what}") from None


def read_yaml(path: str | os.PathLike, what: str = "YAML file") -> Any:
    """A YAML file through the safe loader; a syntax error is one line with its position."""
    text = read_text(path, what)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}: YAML syntax error{where}: {problem}") from None


# ----------------------------------------------------------------------------- writers


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside `path`; on success it replaces `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600; shared result folders must stay readable by the team.
        usual_mode(tmp, 0o666)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def usual_mode(path: str | os.PathLike, mode: int) -> None:
    """Give an entry made by mkstemp/mkdtemp (0600/0700, private) the permissions a plain open()
    (mode 0o666) or mkdir() (0o777) would have given it: `mode` less the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def publish_folder(stage: str | os.PathLike, final: str | os.PathLike) -> Path:
    """Move a complete staging folder to its final name (beside it), replacing an old one only
    once the new one is whole; returns the final path."""
    stage, final = Path(stage), Path(final)
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(stage, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(stage, final)
    return final
