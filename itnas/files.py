"""Reading and writing the project's files, without torch: one home for both.

Readers (`read_json`, `read_yaml`) turn every problem into one `UserError` line naming the
file and what was expected; they read regular files only (a named pipe would block). JSON never
carries NaN or infinity here: writers refuse them (`allow_nan=False`; runs record a non-finite
value as null) and readers refuse the `NaN`/`Infinity` constants that other tools may write.
YAML is parsed with the safe loader, refusing duplicate keys, and refused by size, depth and
expanded size before it is built (a config is small; an alias bomb is not).

`output_path` checks a folder or file a command is asked to write (`--out`, `--out-dir`,
`--root`) before any work, so a bad one is one line, not a traceback after hours.

Writers are atomic: write to a temporary name in the same folder, fsync, then rename, so a
reader never sees a half-written file under the final name, whatever kills the writer.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import yaml

from itnas.errors import CorruptFileError, UserError

# ----------------------------------------------------------------------------- readers

# A config, an overlay or the published numbers is a few kilobytes, a few levels deep: anything far
# beyond is refused before it is parsed further (a YAML alias bomb expands exponentially).
YAML_MAX_BYTES = 1 << 20
YAML_MAX_DEPTH = 32
YAML_MAX_NODES = 100_000


def _read_bytes(path: str | os.PathLike, what: str = "file", max_bytes: int | None = None) -> bytes:
    """The bytes of regular file `path` (at most `max_bytes`), or one line naming it and why not.
    A named pipe, device or socket is refused, never read: opening one could block forever."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # O_NONBLOCK: a FIFO with no writer must not hang
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read {what}: {_why(path, exc)}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise UserError(f"{path}: is a folder, expected a {what}")
        raise UserError(f"{path}: not a regular file (a named pipe, device or socket); expected a {what}")
    with os.fdopen(fd, "rb") as fh:
        try:
            data = fh.read() if max_bytes is None else fh.read(max_bytes + 1)
        except OSError as exc:
            raise UserError(f"{path}: cannot read {what}: {_why(path, exc)}") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise UserError(f"{path}: larger than {max_bytes:,} bytes, too large for a {what}")
    return data


def _why(path: Path, exc: OSError) -> str:
    """An OS error on `path` in words."""
    if exc.errno == errno.ELOOP:
        return "a loop of symbolic links"
    if exc.errno == errno.ENOTDIR:
        blocker = _nearest_existing(path.parent)
        return f"{blocker} is a file, not a folder" if blocker and not blocker.is_dir() else "a parent is not a folder"
    return exc.strerror or type(exc).__name__


def _nearest_existing(folder: Path) -> Path | None:
    """`folder` or the nearest of its parents that exists (a file there blocks everything below)."""
    return next((entry for entry in (folder, *folder.parents) if entry.exists()), None)


def read_text(path: str | os.PathLike, what: str = "file", max_bytes: int | None = None) -> str:
    """The UTF-8 text of `path`, or one line naming it and why it cannot be read."""
    data = _read_bytes(path, what, max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptFileError(f"{path}: not UTF-8 text; expected a {what}") from None


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed")


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """A JSON file; NaN and Infinity are refused like any other syntax error."""
    text = read_text(path, what)
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise CorruptFileError(f"{path}: not valid JSON ({exc}); expected a {what}") from None
    except RecursionError:
        raise CorruptFileError(f"{path}: nested too deeply; expected a {what}") from None


class YAMLRefused(yaml.YAMLError):
    """YAML that parses but that we refuse: a duplicated key, too deep, too many values."""

    def __init__(self, problem: str, mark: yaml.Mark | None = None):
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing a key given twice in one mapping (YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base`: keys given beside it override the merged ones on purpose
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: the base class refuses it
            if first is not None:
                raise YAMLRefused(f"duplicate key '{key}' (first given at line {first + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


# YAML 1.1 (PyYAML) reads `3e-4` as the text '3e-4' (its floats need a dot); YAML 1.2, JSON and
# Python read a number, and so do we: `--set arch_optim.lr=3e-3` is a learning rate, not an error.
_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
                              list("-+0123456789"))


def _check_shape(text: str) -> None:
    """Refuse YAML nested deeper than YAML_MAX_DEPTH or holding more than YAML_MAX_NODES values
    once its aliases are expanded, from the parser's events, before any object is built."""
    nodes = 0
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (values, levels of nesting) it stands for
    stack: list[list] = []  # open collections: [anchor, values before it, its depth, deepest inside]
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        reached = len(stack)
        if isinstance(event, yaml.AliasEvent):
            size, height = anchors.get(event.anchor, (1, 0))
            nodes += size
            reached += height
        elif isinstance(event, yaml.ScalarEvent):
            nodes += 1
            if event.anchor:
                anchors[event.anchor] = (1, 0)
        elif isinstance(event, yaml.CollectionStartEvent):
            nodes += 1
            stack.append([event.anchor, nodes - 1, len(stack) + 1, len(stack) + 1])
            reached = len(stack)
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, before, depth, deepest = stack.pop()
            if anchor:
                anchors[anchor] = (nodes - before, deepest - depth + 1)
            reached = deepest
        if stack:
            stack[-1][3] = max(stack[-1][3], reached)
        if reached > YAML_MAX_DEPTH:
            raise YAMLRefused(f"nested deeper than {YAML_MAX_DEPTH} levels", event.start_mark)
        if nodes > YAML_MAX_NODES:
            raise YAMLRefused(f"more than {YAML_MAX_NODES:,} values once its aliases are expanded",
                              event.start_mark)


def parse_yaml(text: str) -> Any:
    """YAML text through the safe loader, refusing duplicate keys, deep nesting and alias bombs;
    raises yaml.YAMLError (YAMLRefused for what we refuse)."""
    _check_shape(text)
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml(path: str | os.PathLike, what: str = "YAML file") -> Any:
    """A YAML file (see `parse_yaml`); every problem is one line with its position."""
    text = read_text(path, what, max_bytes=YAML_MAX_BYTES)
    try:
        return parse_yaml(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: {yaml_problem(exc)}") from None


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error in one line: what is wrong and where."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if isinstance(exc, YAMLRefused):
        return f"refused{where}: {problem}"
    return f"YAML syntax error{where}: {problem}"


# ----------------------------------------------------------------------------- output paths


def given_path(text: str | os.PathLike, flag: str, what: str) -> Path:
    """`text` as a path, refusing an empty one (an unset shell variable), which would otherwise
    mean the current folder."""
    text = os.fspath(text)
    if not text.strip():
        raise UserError(f"{flag} '{text}': empty; expected a {what} (an unset shell variable?)")
    return Path(text)


def output_path(text: str | os.PathLike, flag: str, *, folder: bool, create: bool = False) -> Path:
    """Check that `text` can be written: as a folder (`folder`), or else as a file. Refused, each
    in one line naming `flag`: an empty path, a path under a regular file, a file where a folder
    goes and a folder where a file goes, a place we may not write in. With `create`, make the
    folder (a file's folder) now."""
    path = given_path(text, flag, "folder" if folder else "file name")
    if folder:
        if path.exists() and not path.is_dir():
            raise UserError(f"{flag} {path}: exists and is not a folder")
        target = path
    else:
        if os.fspath(text).endswith(("/", os.sep)) or path.is_dir():
            raise UserError(f"{flag} {path}: is a folder; expected a file name")
        target = path.parent
    existing = _nearest_existing(target)
    if existing is not None and not existing.is_dir():
        raise UserError(f"{flag} {path}: {existing} is a file, not a folder")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: cannot write in {existing} (permission denied)")
    if create:
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{flag} {path}: cannot create folder {target}: {_why(target, exc)}") from None
    return path


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
