"""Fetch and prepare datasets under one root folder (manifest.py verifies them).

Layout under `root`:
  downloads/<name>/<file>        archives as downloaded (or placed, for ImageNet); kept
  <name>/                        the prepared dataset the loaders read
  <name>/.itnas-manifest.json    written last by a completed prepare; `verify` checks it

32-px datasets are prepared as uint8 arrays (`<split>_images.npy`, NHWC, and
`<split>_labels.npy`, int64), so loading needs no image decoding; ImageNet as class folders
of JPEGs (`train/<wnid>/`, `val/<wnid>/`). A prepared folder appears under its final name
only when complete (it is built in a staging folder and renamed), downloads go to
`<file>.part` and are renamed after their checksum matched, and a file whose checksum does not
match is moved aside to `<file>.corrupt` and never used.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import logging
import os
import pickle
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from itnas.data import synthetic
from itnas.data.archive import safe_extract
from itnas.data.manifest import file_hash, hash_name, staging_folder, verify, write_manifest
from itnas.data.registry import DatasetSpec, get_spec
from itnas.errors import DataError, UserError
from itnas.files import publish_folder

log = logging.getLogger(__name__)

MIRROR_ENV = "ITNAS_DATA_MIRROR"
_CHUNK = 1 << 20


# ---------------------------------------------------------------------------------------
# checksums and downloads

def source_url(spec: DatasetSpec, filename: str, mirror: str | None = None) -> str:
    """Where to download `filename`: the mirror (argument, else $ITNAS_DATA_MIRROR) or the
    official URL. A mirror is a base URL holding the files under their own names; file://
    works, so a folder of archives is a mirror too."""
    mirror = mirror or os.environ.get(MIRROR_ENV) or ""
    if mirror:
        return mirror.rstrip("/") + "/" + filename
    url = spec.urls.get(filename, "")
    if not url:
        raise UserError(f"{spec.name}: {filename} has no download URL; place it by hand")
    return url


class _ShortRead(OSError):
    """The server closed the connection before sending Content-Length bytes."""


def _progress_bytes(total: int | None, desc: str):
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                disable=None, leave=False)


def _download_once(url: str, part: Path, timeout: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "itnas-data"})
    with urllib.request.urlopen(request, timeout=timeout) as resp, open(part, "wb") as out:
        length = resp.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        received = 0
        with _progress_bytes(expected, part.name[: -len(".part")]) as bar:
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        # http.client returns a short body without complaint when the peer closes early,
        # so the length has to be checked here.
        if expected is not None and received != expected:
            raise _ShortRead(f"connection closed after {received} of {expected} bytes")
        out.flush()
        os.fsync(out.fileno())


def _permanent(exc: BaseException) -> bool:
    return isinstance(exc, urllib.error.HTTPError) and 400 <= exc.code < 500 \
        and exc.code not in (408, 425, 429)


def download(url: str, dest: str | os.PathLike, checksum: str | None = None, *,
             retries: int = 4, backoff: float = 1.0, timeout: float = 60.0) -> Path:
    """Download `url` to `dest`, retrying with exponential backoff; returns `dest`.

    The body goes to `<dest>.part` and is renamed to `dest` only after the whole body
    arrived and `checksum` (md5 or sha256 hex) matched. On a mismatch the file is moved to
    `<dest>.corrupt` and a one-line DataError is raised. An existing `dest` whose checksum
    matches is kept without downloading.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    corrupt = dest.with_name(dest.name + ".corrupt")
    algorithm = hash_name(checksum) if checksum else None
    if dest.is_file():
        if checksum is None or file_hash(dest, algorithm) == checksum.lower():
            log.info("already downloaded: %s", dest)
            return dest
        log.warning("%s does not match its checksum; moved to %s, downloading again",
                    dest, corrupt.name)
        os.replace(dest, corrupt)
    last: BaseException | None = None
    for attempt in range(retries + 1):
        if attempt:
            delay = backoff * 2 ** (attempt - 1)
            log.warning("download of %s failed (%s); retry %d/%d in %.1f s",
                        dest.name, last, attempt, retries, delay)
            time.sleep(delay)
        try:
            _download_once(url, part, timeout)
            break
        except (OSError, http.client.HTTPException, ValueError) as exc:
            last = exc
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
            if _permanent(exc) or isinstance(exc, ValueError):
                raise DataError(f"download failed: {url} ({_reason(exc)})") from None
    else:
        raise DataError(f"download failed after {retries + 1} attempts: {url} "
                        f"({_reason(last)})")
    if checksum:
        actual = file_hash(part, algorithm)
        if actual != checksum.lower():
            os.replace(part, corrupt)
            raise DataError(f"checksum mismatch for {dest.name} from {url}: expected "
                            f"{algorithm} {checksum}, got {actual}; kept aside as "
                            f"{corrupt} and not used")
    os.replace(part, dest)
    return dest


def _reason(exc: BaseException | None) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return f"{exc.__class__.__name__}: {exc}" if exc else "unknown error"


def _download_all(spec: DatasetSpec, root: Path, mirror: str | None, retries: int,
                  backoff: float) -> dict[str, Path]:
    folder = root / "downloads" / spec.name
    return {f: download(source_url(spec, f, mirror), folder / f, spec.checksums.get(f),
                        retries=retries, backoff=backoff)
            for f in spec.urls}


# ---------------------------------------------------------------------------------------
# preparing each benchmark

def _save_split(stage: Path, split: str, images: np.ndarray, labels: np.ndarray,
                spec: DatasetSpec) -> None:
    images = np.ascontiguousarray(images, dtype=np.uint8)
    labels = np.asarray(labels, dtype=np.int64)
    expected = spec.splits[split]
    if len(images) != expected or len(labels) != expected:
        raise DataError(f"{spec.name}: split '{split}' has {len(images)} images and "
                        f"{len(labels)} labels, expected {expected}")
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= spec.num_classes:
        raise DataError(f"{spec.name}: split '{split}' has labels outside 0..{spec.num_classes - 1}")
    np.save(stage / f"{split}_images.npy", images, allow_pickle=False)
    np.save(stage / f"{split}_labels.npy", labels, allow_pickle=False)


def _write_info(stage: Path, spec: DatasetSpec, classes: list[str] | None = None,
                **more) -> None:
    info = {"dataset": spec.name, "standin": spec.standin, "source": spec.source,
            "citation": spec.citation, "splits": dict(spec.splits),
            "train_parts": list(spec.train_parts), "test_parts": list(spec.test_parts)}
    if classes is not None:
        info["classes"] = list(classes)
    info.update(more)
    (stage / "info.json").write_text(json.dumps(info, indent=2) + "\n")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR batches (dicts of lists, bytes and numpy arrays) and nothing else,
    so a tampered archive cannot run code even if it slipped past the checksum."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"),
                ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct"),
                ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
                ("_codecs", "encode")}  # how protocol-2 pickles spell bytes

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return _ArrayUnpickler(fh, encoding="latin1").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise DataError(f"corrupt file: {path} ({exc.__class__.__name__}: {exc})") from None


def _prepare_cifar(spec: DatasetSpec, root: Path, mirror, retries, backoff) -> Path:
    (archive,) = _download_all(spec, root, mirror, retries, backoff).values()
    extracted = root / "downloads" / spec.name / "extracted"
    safe_extract(archive, extracted, overwrite=True)
    base = extracted / spec.extra["folder"]
    if spec.name == "cifar10":
        parts = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        label_key, meta_file, names_key = "labels", "batches.meta", "label_names"
    else:
        parts = {"train": ["train"], "test": ["test"]}
        label_key, meta_file, names_key = "fine_labels", "meta", "fine_label_names"
    try:
        with staging_folder(root, spec.name) as stage:
            for split, files in parts.items():
                batches = [_read_cifar_batch(base / f) for f in files]
                try:
                    data = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
                    labels = np.concatenate([np.asarray(b[label_key]) for b in batches])
                except (KeyError, ValueError) as exc:
                    raise DataError(f"{spec.name}: unexpected batch format in {base} "
                                    f"({exc.__class__.__name__}: {exc})") from None
                images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
                _save_split(stage, split, images, labels, spec)
            classes = _read_cifar_batch(base / meta_file).get(names_key)
            _write_info(stage, spec, classes=classes)
            write_manifest(stage, spec)
            return publish_folder(stage, root / spec.name)
    finally:
        shutil.rmtree(extracted, ignore_errors=True)


def _prepare_svhn(spec: DatasetSpec, root: Path, mirror, retries, backoff) -> Path:
    try:
        from scipy.io import loadmat
    except ImportError:
        raise UserError("preparing svhn needs scipy (pip install scipy)") from None
    files = _download_all(spec, root, mirror, retries, backoff)
    with staging_folder(root, spec.name) as stage:
        for split in spec.splits:
            path = files[f"{split}_32x32.mat"]
            try:
                mat = loadmat(path)
                images = np.asarray(mat["X"]).transpose(3, 0, 1, 2)  # HWCN -> NHWC
                labels = np.asarray(mat["y"]).reshape(-1).astype(np.int64) % 10  # '10' is 0
            except (OSError, ValueError, KeyError) as exc:
                raise DataError(f"corrupt file: {path} ({exc.__class__.__name__})") from None
            _save_split(stage, split, images, labels, spec)
        _write_info(stage, spec, classes=[str(d) for d in range(10)])
        write_manifest(stage, spec)
        return publish_folder(stage, root / spec.name)


def _prepare_cinic(spec: DatasetSpec, root: Path, mirror, retries, backoff) -> Path:
    from PIL import Image

    (archive,) = _download_all(spec, root, mirror, retries, backoff).values()
    extracted = root / "downloads" / spec.name / "extracted"
    safe_extract(archive, extracted, overwrite=True)
    base = next((p for p in (extracted, extracted / "CINIC-10") if (p / "train").is_dir()), None)
    if base is None:
        raise DataError(f"{archive.name}: no train/ folder inside the archive")
    classes = list(spec.extra["classes"])
    try:
        with staging_folder(root, spec.name) as stage:
            for split in spec.splits:
                files = [(label, path) for label, cls in enumerate(classes)
                         for path in sorted((base / split / cls).glob("*.png"))]
                images = np.empty((len(files), 32, 32, 3), dtype=np.uint8)
                for i, (_, path) in enumerate(files):
                    try:
                        with Image.open(path) as im:
                            # A few CINIC-10 images are greyscale; all become RGB.
                            images[i] = np.asarray(im.convert("RGB"), dtype=np.uint8)
                    except (OSError, ValueError) as exc:
                        raise DataError(f"corrupt file: {path} ({exc.__class__.__name__})") \
                            from None
                labels = np.array([label for label, _ in files], dtype=np.int64)
                _save_split(stage, split, images, labels, spec)
            _write_info(stage, spec, classes=classes)
            write_manifest(stage, spec)
            return publish_folder(stage, root / spec.name)
    finally:
        shutil.rmtree(extracted, ignore_errors=True)


def imagenet_instructions(root: Path, missing: list[str]) -> str:
    folder = root / "downloads" / "imagenet"
    return (f"ImageNet cannot be downloaded without an account. Missing: {', '.join(missing)}. "
            f"Download ILSVRC2012_img_train.tar (138 GB), ILSVRC2012_img_val.tar (6.3 GB) and "
            f"ILSVRC2012_devkit_t12.tar.gz (2.5 MB) from https://image-net.org/ "
            f"(ILSVRC2012 / 'Training images (Task 1 & 2)', 'Validation images (all tasks)', "
            f"'Development kit (Task 1 & 2)'), put the three files, under these exact names, "
            f"in {folder}/ and run `itnas data fetch imagenet --root {root}` again; it checks "
            f"their md5s and unpacks them into {root / 'imagenet'}/train/<wnid>/ and "
            f"{root / 'imagenet'}/val/<wnid>/ (about 150 GB more).")


def _imagenet_meta(devkit: Path) -> tuple[dict[int, str], dict[str, str], list[int]]:
    """(ILSVRC id -> wnid, wnid -> class words, validation ground-truth ids) from the devkit."""
    try:
        from scipy.io import loadmat
    except ImportError:
        raise UserError("preparing imagenet needs scipy (pip install scipy)") from None
    data = next(devkit.rglob("meta.mat"), None)
    truth = next(devkit.rglob("ILSVRC2012_validation_ground_truth.txt"), None)
    if data is None or truth is None:
        raise DataError("ILSVRC2012_devkit_t12.tar.gz: meta.mat or the validation ground "
                        "truth is missing")
    synsets = loadmat(data, squeeze_me=True)["synsets"]
    leaves = [s for s in synsets if int(s["num_children"]) == 0]  # the 1000 classes
    id_to_wnid = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in leaves}
    words = {str(s["WNID"]): str(s["words"]) for s in leaves}
    ids = [int(line) for line in truth.read_text().split()]
    return id_to_wnid, words, ids


def _prepare_imagenet(spec: DatasetSpec, root: Path, mirror, retries, backoff) -> Path:
    src = root / "downloads" / "imagenet"
    missing = [f for f in spec.checksums if not (src / f).is_file()]
    if missing:
        raise UserError(imagenet_instructions(root, missing))
    for fname, md5 in spec.checksums.items():
        log.info("checking md5 of %s (minutes for the 138 GB training archive)", fname)
        if file_hash(src / fname, hash_name(md5)) != md5:
            # The user's own file: reported, not moved.
            raise DataError(f"checksum mismatch: {src / fname} is not the ILSVRC2012 file "
                            f"(md5 should be {md5}); download it again")
    with staging_folder(root, spec.name) as stage:
        scratch = stage / ".scratch"
        safe_extract(src / "ILSVRC2012_devkit_t12.tar.gz", scratch / "devkit")
        id_to_wnid, words, val_ids = _imagenet_meta(scratch / "devkit")

        safe_extract(src / "ILSVRC2012_img_val.tar", stage / "val")
        images = sorted(p for p in (stage / "val").iterdir() if p.is_file())
        if len(images) != len(val_ids) or len(images) != spec.splits["val"]:
            raise DataError(f"ILSVRC2012_img_val.tar: {len(images)} images, "
                            f"{len(val_ids)} labels, expected {spec.splits['val']}")
        for image, label in zip(images, val_ids):
            wnid_dir = stage / "val" / id_to_wnid[label]
            wnid_dir.mkdir(exist_ok=True)
            os.replace(image, wnid_dir / image.name)

        safe_extract(src / "ILSVRC2012_img_train.tar", scratch / "train")
        for inner in sorted((scratch / "train").glob("*.tar")):
            safe_extract(inner, stage / "train" / inner.stem)
            inner.unlink()  # halves the peak disk use
        shutil.rmtree(scratch)
        counted = sum(1 for _ in (stage / "train").rglob("*") if _.is_file())
        if counted != spec.splits["train"]:
            raise DataError(f"ILSVRC2012_img_train.tar: {counted} images, expected "
                            f"{spec.splits['train']}")
        wnids = sorted(words)
        _write_info(stage, spec, classes=wnids, class_words=[words[w] for w in wnids])
        write_manifest(stage, spec)
        return publish_folder(stage, root / spec.name)


_PREPARERS = {"cifar10": _prepare_cifar, "cifar100": _prepare_cifar, "svhn": _prepare_svhn,
              "cinic10": _prepare_cinic, "imagenet": _prepare_imagenet}


def fetch(name: str, root: str | os.PathLike, mirror: str | None = None, *,
          retries: int = 4, backoff: float = 1.0, force: bool = False) -> Path:
    """Make `<root>/<name>` a complete, verified dataset; returns its folder.

    Nothing is done when `verify` already passes (unless `force`; for ImageNet the quick
    verify). Stand-ins are generated; benchmarks are downloaded (from `mirror` or
    $ITNAS_DATA_MIRROR if set), checked and prepared; ImageNet is prepared from archives the
    user placed (see `imagenet_instructions`).
    """
    spec = get_spec(name)
    root = Path(root)
    with _fetch_lock(root, name):
        _remove_leftovers(root, name)
        if not force:
            try:
                # ImageNet: sizes and counts only; hashing 150 GB on every fetch would make
                # "already there" cost as much as preparing. `verify` still hashes on request.
                verify(name, root, quick=spec.storage == "folders")
                log.info("%s is present and verified at %s", name, root / name)
                return root / name
            except DataError as exc:
                # An empty folder is a fresh start (Snakemake makes the output's folder first),
                # not a broken dataset.
                if (root / name).is_dir() and any((root / name).iterdir()):
                    log.warning("rebuilding %s: %s", name, exc)
        if spec.standin:
            return synthetic.generate(name, root)
        folder = _PREPARERS[name](spec, root, mirror, retries, backoff)
        log.info("prepared %s at %s", spec.describe(), folder)
        return folder


def _remove_leftovers(root: Path, name: str) -> None:
    """Staging and extraction folders of a fetch that was killed; safe under the lock."""
    patterns = [(root, f".{name}.*.staging"), (root, f".{name}.old"),
                (root / "downloads" / name, ".extracted.*.extracting"),
                (root / "downloads" / name, "*.part")]
    for folder, pattern in patterns:
        for path in folder.glob(pattern) if folder.is_dir() else ():
            log.info("removing leftover of an interrupted fetch: %s", path)
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


@contextlib.contextmanager
def _fetch_lock(root: Path, name: str) -> Iterator[None]:
    """One fetch of a dataset at a time per root: parallel workflow jobs that all ask for
    the same dataset wait for the first, then find it verified."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
