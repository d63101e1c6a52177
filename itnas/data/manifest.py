"""A prepared dataset's manifest: every file (ImageNet: every class folder) with its size and
sha256, written when the dataset is prepared and checked by `verify` (thorough) and
`check_present` (sizes only, before every load); and the staging folder a preparation builds in.
Shared by the downloads (fetch.py) and the stand-ins (synthetic.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from itnas.data.registry import DatasetSpec, get_spec
from itnas.errors import DataError, UserError
from itnas.files import read_json, usual_mode, write_json

log = logging.getLogger(__name__)

MANIFEST = ".itnas-manifest.json"
SAY_BYTES = 1e9  # a thorough verify of this much says what it does before it starts
MANIFEST_FORMAT = "itnas-data-manifest/1"


def hash_name(hexdigest: str) -> str:
    """The algorithm a pinned checksum uses, told by its length."""
    return {32: "md5", 64: "sha256"}.get(len(hexdigest), "unknown")


def file_hash(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, algorithm).hexdigest()


@contextlib.contextmanager
def staging_folder(root: str | os.PathLike, name: str) -> Iterator[Path]:
    """A fresh folder beside `<root>/<name>` to build into; removed if the build fails."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".staging", dir=root))
    usual_mode(stage, 0o777)
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _folder_digest(folder: Path, quick: bool) -> dict:
    """Count, bytes and (unless quick) a sha256 over every file's name, size and sha256."""
    digest = hashlib.sha256()
    count = size = 0
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if not entry.is_file():
            continue
        n = entry.stat().st_size
        count += 1
        size += n
        if not quick:
            digest.update(f"{entry.name}\0{n}\0{file_hash(entry.path)}\n".encode())
    out = {"files": count, "bytes": size}
    if not quick:
        out["sha256"] = digest.hexdigest()
    return out


def write_manifest(folder: str | os.PathLike, spec: DatasetSpec) -> dict:
    """Record every prepared file (or, for ImageNet, every image folder) for `verify`.

    sha256 per file for the array datasets; ImageNet's 1.3 M images are summarised per
    class folder (count, bytes, and a sha256 over the files' names, sizes and sha256s), so
    the manifest stays small and `verify` names the folder that changed.
    """
    folder = Path(folder)
    files: dict[str, dict] = {}
    folders: dict[str, dict] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(folder).as_posix()
        if spec.manifest_hash == "per-folder" and rel_dir != ".":
            folders[rel_dir] = _folder_digest(Path(dirpath), quick=False)
            continue
        for fname in sorted(filenames):
            if fname == MANIFEST:
                continue
            path = Path(dirpath) / fname
            rel = path.relative_to(folder).as_posix()
            files[rel] = {"size": path.stat().st_size, "sha256": file_hash(path)}
    manifest = {"format": MANIFEST_FORMAT, "dataset": spec.name, "benchmark": spec.benchmark,
                "standin": spec.standin, "hash": "sha256", "files": files}
    if folders:
        manifest["folders"] = {k: v for k, v in folders.items() if v["files"]}
    write_json(folder / MANIFEST, manifest)
    usual_mode(folder / MANIFEST, 0o666)
    return manifest


def _fetch_hint(name: str, root: Path) -> str:
    return f"run `itnas data fetch {name} --root {root}`"


def load_manifest(name: str, root: str | os.PathLike) -> dict:
    """The manifest of a prepared dataset; DataError if the folder or manifest is missing."""
    root = Path(root)
    folder = root / name
    if not folder.is_dir():
        raise DataError(f"dataset '{name}' not found: no folder {folder} "
                        f"({_fetch_hint(name, root)})")
    path = folder / MANIFEST
    try:
        manifest = read_json(path, "dataset manifest")
    except UserError as exc:
        if not os.path.lexists(path):
            raise DataError(f"incomplete dataset: {path} is missing, the prepare did not "
                            f"finish ({_fetch_hint(name, root)})") from None
        raise DataError(f"corrupt file: unreadable manifest, {exc}; {_fetch_hint(name, root)}") from None
    if (not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT
            or manifest.get("dataset") != name or not isinstance(manifest.get("files"), dict)):
        raise DataError(f"corrupt file: {path} is not an {MANIFEST_FORMAT} manifest for "
                        f"'{name}'; {_fetch_hint(name, root)}")
    return manifest


def manifest_count(manifest: dict) -> int:
    """Number of data files a manifest covers (files plus the files in summarised folders)."""
    return len(manifest["files"]) + sum(v["files"] for v in manifest.get("folders", {}).values())


def verify(name: str, root: str | os.PathLike, quick: bool = False) -> None:
    """Check a prepared dataset against its manifest; a DataError names the first bad file.

    Detects missing files, changed sizes (truncation) and changed contents (sha256). `quick`
    checks presence and sizes only.
    """
    get_spec(name)
    root = Path(root)
    folder = root / name
    manifest = load_manifest(name, root)
    size = sum(e["size"] for e in manifest["files"].values()) + sum(
        e["bytes"] for e in manifest.get("folders", {}).values())
    if size >= SAY_BYTES and not quick:  # minutes of reading: say so first
        log.info("checking the %d files of %s at %s (%.1f GB: sizes and sha256, reads every byte)",
                 manifest_count(manifest), name, folder, size / 1e9)
    hint = _fetch_hint(name, root)
    for rel, entry in manifest["files"].items():
        path = folder / rel
        if not path.is_file():
            raise DataError(f"missing file: {path} ({hint})")
        size = path.stat().st_size
        if size != entry["size"]:
            raise DataError(f"corrupt file: {path} has {size} bytes, expected "
                            f"{entry['size']} ({hint})")
        if not quick and file_hash(path) != entry["sha256"]:
            raise DataError(f"corrupt file: {path} (sha256 differs from the manifest; {hint})")
    for rel, entry in manifest.get("folders", {}).items():
        path = folder / rel
        if not path.is_dir():
            raise DataError(f"missing folder: {path} ({hint})")
        actual = _folder_digest(path, quick)
        for key in ("files", "bytes", "sha256"):
            if key in actual and actual[key] != entry[key]:
                raise DataError(f"corrupt folder: {path} ({key} differs from the manifest: "
                                f"{actual[key]} vs {entry[key]}; {hint})")


def check_present(name: str, root: str | os.PathLike) -> Path:
    """Cheap check before every load: the manifest exists and its files have their sizes.

    Reads no data; `verify` is the thorough check.
    """
    root = Path(root)
    folder = root / name
    manifest = load_manifest(name, root)
    for rel, entry in manifest["files"].items():
        try:
            size = (folder / rel).stat().st_size
        except FileNotFoundError:
            raise DataError(f"missing file: {folder / rel} ({_fetch_hint(name, root)})") from None
        if size != entry["size"]:
            raise DataError(f"corrupt file: {folder / rel} has {size} bytes, expected "
                            f"{entry['size']} ({_fetch_hint(name, root)})")
    for rel in manifest.get("folders", {}):
        if not (folder / rel).is_dir():
            raise DataError(f"missing folder: {folder / rel} ({_fetch_hint(name, root)})")
    return folder
