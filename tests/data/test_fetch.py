"""Downloading and preparing benchmarks, offline: tiny archives in the real formats are served
from a local HTTP server and the registry's checksums are pointed at them."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from itnas.data import registry
from itnas.data.fetch import download, fetch
from itnas.data.loaders import build_dataset
from itnas.data.manifest import MANIFEST, verify
from itnas.errors import DataError, UserError


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def tar_bytes(members: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def png(rgb, mode="RGB", size=32) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (size, size), rgb if mode == "RGB" else rgb[0]).save(buf, "PNG")
    return buf.getvalue()


def jpeg(value: int, size=8) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (value, value, value)).save(buf, "JPEG")
    return buf.getvalue()


def fake_cifar10(per_batch: int = 4) -> tuple[bytes, np.ndarray]:
    """A cifar-10-python.tar.gz in the real layout; returns it and the training images."""
    rng = np.random.default_rng(0)
    members, train = {}, []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        if name != "test_batch":
            train.append(data)
        batch = {"batch_label": name, "data": data,
                 "labels": [int(v) for v in rng.integers(0, 10, per_batch)],
                 "filenames": [f"{name}_{i}.png" for i in range(per_batch)]}
        members[f"cifar-10-batches-py/{name}"] = pickle.dumps(batch, protocol=2)
    members["cifar-10-batches-py/batches.meta"] = pickle.dumps(
        {"label_names": list(registry.CIFAR10_CLASSES)}, protocol=2)
    images = np.concatenate(train).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return tar_bytes(members), images


def patch_spec(monkeypatch, name: str, **changes) -> registry.DatasetSpec:
    spec = dataclasses.replace(registry.get_spec(name), **changes)
    monkeypatch.setitem(registry._SPECS, name, spec)
    return spec


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --- the downloader -------------------------------------------------------------------

def test_download_with_matching_checksum_lands_under_final_name(file_server, tmp_path):
    file_server.files["a.bin"] = body = b"x" * 5000
    dest = download(f"{file_server.url}/a.bin", tmp_path / "a.bin", md5(body), backoff=0)
    assert dest.read_bytes() == body
    assert not (tmp_path / "a.bin.part").exists()
    # Present and matching: no second request.
    download(f"{file_server.url}/a.bin", tmp_path / "a.bin", md5(body), backoff=0)
    assert file_server.requests["a.bin"] == 1


def test_checksum_mismatch_keeps_file_aside_and_nothing_under_final_name(file_server, tmp_path):
    file_server.files["a.bin"] = b"tampered"
    with pytest.raises(DataError) as exc:
        download(f"{file_server.url}/a.bin", tmp_path / "a.bin", md5(b"original"), backoff=0)
    message = one_line(exc)
    assert "checksum mismatch" in message and "a.bin" in message and ".corrupt" in message
    assert not (tmp_path / "a.bin").exists()
    assert not (tmp_path / "a.bin.part").exists()
    assert (tmp_path / "a.bin.corrupt").read_bytes() == b"tampered"


def test_interrupted_download_is_retried_and_never_left_partial(file_server, tmp_path):
    body = bytes(range(256)) * 400
    file_server.files["a.bin"] = body
    file_server.cut_short["a.bin"] = 2
    dest = download(f"{file_server.url}/a.bin", tmp_path / "a.bin", md5(body), retries=3,
                    backoff=0.01)
    assert dest.read_bytes() == body
    assert file_server.requests["a.bin"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_download_that_keeps_failing_raises_and_leaves_nothing(file_server, tmp_path):
    body = b"y" * 10000
    file_server.files["a.bin"] = body
    file_server.cut_short["a.bin"] = 99
    with pytest.raises(DataError) as exc:
        download(f"{file_server.url}/a.bin", tmp_path / "a.bin", md5(body), retries=2,
                 backoff=0.01)
    assert "after 3 attempts" in one_line(exc)
    assert file_server.requests["a.bin"] == 3
    assert list(tmp_path.iterdir()) == []


def test_missing_file_on_server_is_not_retried(file_server, tmp_path):
    with pytest.raises(DataError) as exc:
        download(f"{file_server.url}/nope.bin", tmp_path / "nope.bin", None, retries=3, backoff=0)
    assert "HTTP 404" in one_line(exc)
    assert file_server.requests["nope.bin"] == 1
    assert list(tmp_path.iterdir()) == []


# --- fetch + prepare + verify ------------------------------------------------------------

def test_fetch_cifar10_through_mirror_prepares_verifies_and_is_idempotent(
        file_server, tmp_path, monkeypatch):
    archive, train_images = fake_cifar10()
    file_server.files["cifar-10-python.tar.gz"] = archive
    patch_spec(monkeypatch, "cifar10", splits={"train": 20, "test": 4},
               checksums={"cifar-10-python.tar.gz": md5(archive)})
    monkeypatch.setenv("ITNAS_DATA_MIRROR", file_server.url)
    folder = fetch("cifar10", tmp_path, backoff=0)
    assert folder == tmp_path / "cifar10"
    assert (folder / MANIFEST).is_file()
    np.testing.assert_array_equal(np.load(folder / "train_images.npy"), train_images)
    assert np.load(folder / "test_labels.npy").shape == (4,)
    verify("cifar10", tmp_path)
    # Extraction scratch is gone, the archive is kept for offline re-prepares.
    assert sorted(p.name for p in (tmp_path / "downloads" / "cifar10").iterdir()) == \
        ["cifar-10-python.tar.gz"]
    fetch("cifar10", tmp_path, backoff=0)
    assert file_server.requests["cifar-10-python.tar.gz"] == 1
    dataset = build_dataset("cifar10", tmp_path, "train", augment=False)
    assert len(dataset) == 20 and dataset[0][0].shape == (3, 32, 32)


def test_fetch_with_bad_archive_checksum_prepares_nothing(file_server, tmp_path, monkeypatch):
    archive, _ = fake_cifar10()
    file_server.files["cifar-10-python.tar.gz"] = archive
    patch_spec(monkeypatch, "cifar10", splits={"train": 20, "test": 4},
               checksums={"cifar-10-python.tar.gz": md5(b"the real one")})
    with pytest.raises(DataError) as exc:
        fetch("cifar10", tmp_path, mirror=file_server.url, backoff=0)
    assert "checksum mismatch" in one_line(exc)
    assert not (tmp_path / "cifar10").exists()
    downloads = tmp_path / "downloads" / "cifar10"
    assert sorted(p.name for p in downloads.iterdir()) == ["cifar-10-python.tar.gz.corrupt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [".cifar10.lock"]


def test_fetch_refuses_path_traversal_archive(file_server, tmp_path, monkeypatch):
    archive = tar_bytes({"cifar-10-batches-py/data_batch_1": b"x", "../../escaped": b"evil"})
    file_server.files["cifar-10-python.tar.gz"] = archive
    patch_spec(monkeypatch, "cifar10", checksums={"cifar-10-python.tar.gz": md5(archive)})
    with pytest.raises(DataError) as exc:
        fetch("cifar10", tmp_path, mirror=file_server.url, backoff=0)
    assert "'..'" in one_line(exc)
    assert not (tmp_path / "cifar10").exists()
    assert not list(tmp_path.parent.rglob("escaped"))


def test_fetch_cinic10_converts_png_folders_including_greyscale(file_server, tmp_path,
                                                                monkeypatch):
    classes = registry.CIFAR10_CLASSES
    members = {}
    for split in ("train", "valid", "test"):
        for label, cls in enumerate(classes):
            members[f"{split}/{cls}/a.png"] = png((label * 20, 0, 0))
    members["train/cat/b.png"] = png((77,), mode="L")  # greyscale, as some CINIC images are
    members["README.md"] = b"CINIC-10"
    archive = tar_bytes(members)
    file_server.files["CINIC-10.tar.gz"] = archive
    patch_spec(monkeypatch, "cinic10", splits={"train": 11, "valid": 10, "test": 10},
               checksums={"CINIC-10.tar.gz": md5(archive)})
    fetch("cinic10", tmp_path, mirror=file_server.url, backoff=0)
    verify("cinic10", tmp_path)
    labels = np.load(tmp_path / "cinic10" / "train_labels.npy")
    images = np.load(tmp_path / "cinic10" / "train_images.npy")
    assert labels.tolist() == [0, 1, 2, 3, 3, 4, 5, 6, 7, 8, 9]
    assert images[1, 0, 0].tolist() == [20, 0, 0]
    assert images[4, 5, 5].tolist() == [77, 77, 77]
    # split='train' is train + valid for CINIC-10.
    assert len(build_dataset("cinic10", tmp_path, "train", augment=False)) == 21


def test_fetch_svhn_uses_train_plus_extra_and_maps_label_10_to_0(file_server, tmp_path,
                                                                 monkeypatch):
    from scipy.io import savemat

    sizes = {"train": 3, "extra": 5, "test": 2}
    checksums = {}
    for split, n in sizes.items():
        buf = io.BytesIO()
        x = np.full((32, 32, 3, n), 7, dtype=np.uint8)
        savemat(buf, {"X": x, "y": np.array([[10]] + [[i + 1] for i in range(n - 1)],
                                            dtype=np.uint8)})
        file_server.files[f"{split}_32x32.mat"] = buf.getvalue()
        checksums[f"{split}_32x32.mat"] = md5(buf.getvalue())
    patch_spec(monkeypatch, "svhn", splits=sizes, checksums=checksums)
    fetch("svhn", tmp_path, mirror=file_server.url, backoff=0)
    verify("svhn", tmp_path)
    assert np.load(tmp_path / "svhn" / "extra_labels.npy").tolist() == [0, 1, 2, 3, 4]
    assert len(build_dataset("svhn", tmp_path, "train", augment=False)) == 8
    assert len(build_dataset("svhn", tmp_path, "test", augment=False)) == 2


def test_imagenet_without_archives_says_which_files_to_put_where(tmp_path):
    with pytest.raises(UserError) as exc:
        fetch("imagenet", tmp_path)
    message = one_line(exc)
    for name in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar",
                 "ILSVRC2012_devkit_t12.tar.gz"):
        assert name in message
    assert str(tmp_path / "downloads" / "imagenet") in message


def test_imagenet_prepares_placed_archives_into_class_folders(tmp_path, monkeypatch):
    from scipy.io import savemat

    src = tmp_path / "downloads" / "imagenet"
    src.mkdir(parents=True)
    synsets = np.array([(1, "n0001", "tench", 0), (2, "n0002", "goldfish", 0),
                        (3, "n9999", "fish", 2)],
                       dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"),
                              ("num_children", "O")])
    meta = io.BytesIO()
    savemat(meta, {"synsets": synsets})
    files = {
        "ILSVRC2012_devkit_t12.tar.gz": tar_bytes({
            "ILSVRC2012_devkit_t12/data/meta.mat": meta.getvalue(),
            "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt": b"2\n1\n2\n"}),
        "ILSVRC2012_img_val.tar": tar_bytes(
            {f"ILSVRC2012_val_0000000{i}.JPEG": jpeg(10 * i) for i in (1, 2, 3)}, "w"),
        "ILSVRC2012_img_train.tar": tar_bytes({
            f"{wnid}.tar": tar_bytes({f"{wnid}_{i}.JPEG": jpeg(i) for i in range(2)}, "w")
            for wnid in ("n0001", "n0002")}, "w"),
    }
    for name, data in files.items():
        (src / name).write_bytes(data)
    patch_spec(monkeypatch, "imagenet", num_classes=2, splits={"train": 4, "val": 3},
               checksums={name: md5(data) for name, data in files.items()})
    folder = fetch("imagenet", tmp_path)
    assert sorted(p.name for p in (folder / "val" / "n0002").iterdir()) == \
        ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000003.JPEG"]
    assert len(list((folder / "train" / "n0001").iterdir())) == 2
    verify("imagenet", tmp_path)
    test = build_dataset("imagenet", tmp_path, "test", augment=False)
    assert len(test) == 3 and test[0][0].shape == (3, 224, 224)
    (folder / "train" / "n0002" / "n0002_1.JPEG").write_bytes(jpeg(99))
    with pytest.raises(DataError) as exc:
        verify("imagenet", tmp_path)
    assert "train/n0002" in one_line(exc)


def test_a_fresh_empty_folder_is_fetched_without_a_rebuilding_warning(tmp_path, caplog):
    """Snakemake creates the output's folder before the job runs: that is no broken dataset."""
    (tmp_path / "synthetic-svhn").mkdir()
    with caplog.at_level("WARNING", logger="itnas.data.fetch"):
        fetch("synthetic-svhn", tmp_path)
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    verify("synthetic-svhn", tmp_path)
    (tmp_path / "synthetic-svhn" / MANIFEST).unlink()  # a folder with content and no manifest is broken
    with caplog.at_level("WARNING", logger="itnas.data.fetch"):
        fetch("synthetic-svhn", tmp_path)
    assert any("rebuilding synthetic-svhn" in r.getMessage() for r in caplog.records)
