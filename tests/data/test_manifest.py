"""verify: a prepared dataset is exactly what its manifest recorded, or a one-line error."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from itnas.data.fetch import fetch
from itnas.data.manifest import MANIFEST, check_present, load_manifest, verify
from itnas.errors import DataError

NAME = "synthetic-cifar10"


@pytest.fixture
def root(standin_root, tmp_path):
    shutil.copytree(standin_root / NAME, tmp_path / NAME)
    return tmp_path


def error(root, **kwargs) -> str:
    with pytest.raises(DataError) as exc:
        verify(NAME, root, **kwargs)
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_verify_passes_on_a_fresh_stand_in_checking_every_file(root):
    files = load_manifest(NAME, root)["files"]
    on_disk = {path.name for path in (root / NAME).iterdir() if path.name != MANIFEST}
    assert on_disk and set(files) == on_disk  # the manifest covers every prepared file, nothing else
    assert all(entry["size"] > 0 and len(entry["sha256"]) == 64 for entry in files.values())
    verify(NAME, root)
    verify(NAME, root, quick=True)
    assert check_present(NAME, root) == root / NAME


def test_verify_detects_a_modified_byte(root):
    path = root / NAME / "train_images.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert "corrupt file" in (message := error(root)) and str(path) in message
    assert "sha256" in message
    verify(NAME, root, quick=True)  # same size: only the thorough check can see it
    check_present(NAME, root)


def test_verify_and_the_load_check_detect_a_truncated_file(root):
    path = root / NAME / "test_labels.npy"
    path.write_bytes(path.read_bytes()[:100])
    assert "has 100 bytes" in (message := error(root, quick=True)) and str(path) in message
    with pytest.raises(DataError, match="corrupt file"):
        check_present(NAME, root)


def test_verify_detects_a_missing_file(root):
    (root / NAME / "train_labels.npy").unlink()
    assert "missing file" in (message := error(root)) and "train_labels.npy" in message
    with pytest.raises(DataError, match="missing file"):
        check_present(NAME, root)


def test_missing_dataset_or_manifest_says_how_to_fetch(root, tmp_path):
    message = error(tmp_path / "elsewhere")
    assert "not found" in message and f"itnas data fetch {NAME} --root" in message
    (root / NAME / MANIFEST).unlink()
    assert "did not finish" in error(root)


def test_garbled_manifest_is_reported(root):
    (root / NAME / MANIFEST).write_text("{not json")
    assert "corrupt file: unreadable manifest" in (message := error(root)) and "not valid JSON" in message
    assert f"itnas data fetch {NAME}" in message


def test_a_manifest_is_read_like_every_json_file_refusing_nan(root):
    path = root / NAME / MANIFEST
    path.write_text(path.read_text().replace('"hash": "sha256"', '"hash": NaN'))
    assert "NaN is not allowed" in (message := error(root)) and str(path) in message


def test_fetch_repairs_a_corrupted_stand_in(root):
    path = root / NAME / "train_images.npy"
    before = np.load(path)
    path.write_bytes(b"garbage")
    fetch(NAME, root)
    verify(NAME, root)
    np.testing.assert_array_equal(np.load(path), before)
    # No staging or old folders left; only the (empty) lock file fetch uses.
    assert sorted(p.name for p in root.iterdir()) == [f".{NAME}.lock", NAME]


def test_fetch_clears_the_leftovers_of_a_killed_fetch(root):
    (root / f".{NAME}.abc.staging").mkdir()
    (root / f".{NAME}.abc.staging" / "train_images.npy").write_bytes(b"half")
    fetch(NAME, root)
    assert sorted(p.name for p in root.iterdir()) == [f".{NAME}.lock", NAME]
