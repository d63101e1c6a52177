"""The registry: complete metadata for every dataset, torchvision's sources, clear errors."""

from __future__ import annotations

import dataclasses
import re

import pytest

from itnas.data.registry import DatasetSpec, get_spec, list_specs, names
from itnas.errors import UserError
from itnas.files import read_yaml
from tests.conftest import REPO

SPECS = list_specs()
BENCHMARKS = {"cifar10", "cifar100", "svhn", "cinic10", "imagenet"}


def test_registry_holds_five_benchmarks_and_five_stand_ins():
    names = {s.name for s in SPECS}
    assert names == BENCHMARKS | {f"synthetic-{b}" for b in BENCHMARKS}


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_metadata_is_complete_and_consistent(spec: DatasetSpec):
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        if f.name == "extra" or (f.name in ("urls", "checksums") and spec.standin):
            continue  # stand-ins are generated: nothing to download or pin
        if isinstance(value, str | tuple | dict):
            assert value, f"{spec.name}.{f.name} is empty"
    assert spec.channels == 3 and len(spec.mean) == len(spec.std) == spec.channels
    assert all(0 < m < 1 for m in spec.mean) and all(0 < s < 1 for s in spec.std)
    assert spec.num_classes >= 2 and spec.image_size in (32, 64, 224)
    assert spec.protocol in ("cifar", "imagenet") and spec.storage in ("arrays", "folders")
    assert all(isinstance(n, int) and n > 0 for n in spec.splits.values())
    assert set(spec.train_parts) | set(spec.test_parts) <= set(spec.splits)
    assert not set(spec.train_parts) & set(spec.test_parts)
    assert spec.benchmark in BENCHMARKS
    if spec.protocol == "cifar":
        assert spec.image_size == spec.stored_size == 32
    if spec.standin:
        assert spec.name == f"synthetic-{spec.benchmark}" and spec.num_classes in (10, 20)
        assert spec.describe().startswith(f"{spec.name}: STAND-IN (synthetic, not {spec.benchmark})")
        # smoke-sized (the CIFAR-10 stand-in tests on 5,000 images: docs/validation.md)
        assert spec.train_size <= 5000 and spec.test_size <= 5000
        real = get_spec(spec.benchmark)
        assert spec.channels == real.channels and spec.protocol == real.protocol
    else:
        assert spec.name == spec.benchmark and "STAND-IN" not in spec.describe()
        assert set(spec.urls) == set(spec.checksums)
        assert all(len(c) in (32, 64) and int(c, 16) >= 0 for c in spec.checksums.values())


def test_sources_and_checksums_are_torchvisions():
    from torchvision import datasets

    for name, cls in (("cifar10", datasets.CIFAR10), ("cifar100", datasets.CIFAR100)):
        spec = get_spec(name)
        assert spec.urls == {cls.filename: cls.url}
        assert spec.checksums == {cls.filename: cls.tgz_md5}
        assert spec.extra["folder"] == cls.base_folder
    svhn = get_spec("svhn")
    for url, filename, md5 in datasets.SVHN.split_list.values():
        assert svhn.urls[filename] == url and svhn.checksums[filename] == md5
    from torchvision.datasets.imagenet import ARCHIVE_META

    assert get_spec("imagenet").checksums == dict(ARCHIVE_META.values())
    cinic = get_spec("cinic10")
    assert cinic.urls["CINIC-10.tar.gz"] == \
        "https://datashare.ed.ac.uk/bitstream/handle/10283/3192/CINIC-10.tar.gz"
    assert cinic.checksums["CINIC-10.tar.gz"] == "6ee4d0c996905fe93221de577967a372"


def test_training_compositions_follow_the_documented_choice():
    assert get_spec("svhn").train_parts == ("train", "extra")
    assert get_spec("svhn").train_size == 604388
    assert get_spec("cinic10").train_parts == ("train", "valid")
    assert get_spec("cinic10").test_size == 90000
    assert get_spec("imagenet").test_parts == ("val",)


def test_unknown_name_is_one_line_listing_the_known_ones():
    with pytest.raises(UserError) as exc:
        get_spec("cifar11")
    message = str(exc.value)
    assert message.startswith("unknown dataset 'cifar11' (expected one of: cifar10, ")
    assert "synthetic-imagenet" in message and "\n" not in message


def test_dvc_yaml_versions_exactly_the_registered_datasets():
    """dvc.yaml repeats the registry's names (DVC cannot import them): a dataset added to one and
    not the other fails here. Its `dvc pull` example names the five benchmarks."""
    text = (REPO / "dvc.yaml").read_text()
    versioned = read_yaml(REPO / "dvc.yaml", "DVC stages")["stages"]["dataset"]["foreach"]
    assert sorted(versioned) == sorted(names()) and len(versioned) == len(set(versioned))
    pull = next(line for line in text.splitlines() if "dvc pull" in line and "dataset@" in line)
    assert sorted(re.findall(r"dataset@([\w-]+)", pull)) == sorted(s.name for s in SPECS if not s.standin)
