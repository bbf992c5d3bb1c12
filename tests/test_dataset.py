"""Loading, verifying and describing datasets: custom directories, validation, real MNIST."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mnistlab.data import (
    DATASETS,
    dataset_info,
    fetch_dataset,
    find_dataset,
    load_dataset,
    read_dataset,
    read_idx,
    verify_dataset,
    write_dataset,
    write_idx,
)
from mnistlab.errors import ConfigError, DataError, IdxFormatError

MNIST_TRAIN_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
MNIST_TEST_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)


def test_a_directory_loads_as_a_custom_dataset(tiny_dataset_dir):
    dataset = load_dataset(tiny_dataset_dir)
    assert dataset.name == "tiny-dataset"
    assert dataset.train_images.shape == (200, 28, 28) and dataset.train_images.dtype == np.uint8
    assert dataset.train_labels.shape == (200,) and dataset.train_labels.dtype == np.uint8
    assert dataset.test_images.shape == (50, 28, 28)
    assert dataset.test_labels.shape == (50,)
    assert dataset.class_names == tuple("0123456789")
    assert not dataset.verified
    assert dataset.source == f"directory {tiny_dataset_dir}"
    assert set(dataset.checksums) == {
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
    }
    assert "tiny-dataset" in repr(dataset) and "array" not in repr(dataset)


def test_a_custom_dataset_may_be_gzipped(tiny_dataset_dir, tmp_path):
    plain = load_dataset(tiny_dataset_dir)
    gzipped = write_dataset(tmp_path / "gz", plain.train_images, plain.train_labels,
                            plain.test_images, plain.test_labels, compress=True)
    dataset = load_dataset(str(gzipped))
    np.testing.assert_array_equal(dataset.test_images, plain.test_images)
    assert dataset.checksums == plain.checksums  # checksums are of the decompressed bytes


def test_counts_that_disagree_are_an_error(tiny_dataset_dir):
    labels = tiny_dataset_dir / "train-labels-idx1-ubyte"
    write_idx(labels, read_idx(labels)[:-1])
    with pytest.raises(
        IdxFormatError, match="holds 200 images but .*train-labels-idx1-ubyte holds 199 labels"
    ):
        load_dataset(tiny_dataset_dir)


def test_labels_outside_the_class_range_are_an_error(tiny_dataset_dir):
    path = tiny_dataset_dir / "t10k-labels-idx1-ubyte"
    labels = read_idx(path)
    labels[7] = 10
    write_idx(path, labels)
    # A registered dataset's class range is fixed; register the altered files as one.
    checksums = {check.name: check.actual for check in verify_dataset(tiny_dataset_dir).files}
    spec = dataclasses.replace(DATASETS["mnist"], sha256=checksums)
    with pytest.raises(
        IdxFormatError, match=f"{path}: label 10 at index 7 is outside the class range 0-9"
    ):
        read_dataset(tiny_dataset_dir, spec)


def test_a_custom_dataset_takes_its_classes_from_the_labels(tiny_dataset_dir):
    path = tiny_dataset_dir / "t10k-labels-idx1-ubyte"
    labels = read_idx(path)
    labels[0] = 11
    write_idx(path, labels)
    assert load_dataset(tiny_dataset_dir).class_names == tuple(str(label) for label in range(12))


@pytest.mark.parametrize(
    ("name", "array", "message"),
    [
        (
            "train-images-idx3-ubyte", np.zeros((200, 784), np.uint8),
            "expected 3-D unsigned-byte images",
        ),
        (
            "train-images-idx3-ubyte", np.zeros((200, 28, 28), np.float32),
            "expected 3-D unsigned-byte images",
        ),
        (
            "t10k-labels-idx1-ubyte", np.zeros((50, 1), np.uint8),
            "expected 1-D unsigned-byte labels",
        ),
        ("t10k-labels-idx1-ubyte", np.zeros(50, np.int32), "expected 1-D unsigned-byte labels"),
    ],
)
def test_files_of_the_wrong_kind_are_named(tiny_dataset_dir, name, array, message):
    write_idx(tiny_dataset_dir / name, array)
    with pytest.raises(IdxFormatError, match=f"{tiny_dataset_dir / name}: {message}"):
        load_dataset(tiny_dataset_dir)


@pytest.mark.parametrize(
    "test_shape", [(20, 20), (14, 56)], ids=["20x20", "14x56-same-pixel-count"]
)
def test_test_images_of_another_shape_are_refused_naming_both_shapes(
    tiny_dataset_dir, test_shape
):
    path = tiny_dataset_dir / "t10k-images-idx3-ubyte"
    write_idx(path, np.zeros((50, *test_shape), np.uint8))
    rows, columns = test_shape
    with pytest.raises(DataError) as raised:
        load_dataset(tiny_dataset_dir)
    message = str(raised.value)
    assert message == (
        f"{path}: the test images are {rows}x{columns} "
        "but the training images in train-images-idx3-ubyte "
        "are 28x28; both splits need one image shape"
    )
    with pytest.raises(
        DataError, match=f"test images are {rows}x{columns} but the training images"
    ):
        fetch_dataset(tiny_dataset_dir)


@pytest.mark.parametrize(
    ("name", "shape", "message"),
    [
        (
            "train-images-idx3-ubyte", (200, 0, 0),
            "the images are 0x0 pixels; each side needs at least one",
        ),
        (
            "t10k-images-idx3-ubyte", (50, 28, 0),
            "the images are 28x0 pixels; each side needs at least one",
        ),
        ("t10k-images-idx3-ubyte", (0, 28, 28), "holds no images"),
    ],
    ids=["0x0", "28x0", "no-images"],
)
def test_zero_size_images_or_splits_are_refused(tiny_dataset_dir, name, shape, message):
    write_idx(tiny_dataset_dir / name, np.zeros(shape, np.uint8))
    if shape[0] == 0:
        write_idx(
            tiny_dataset_dir / name.replace("images-idx3", "labels-idx1"), np.zeros(0, np.uint8)
        )
    with pytest.raises(DataError, match=f"^{tiny_dataset_dir / name}: {message}$"):
        load_dataset(tiny_dataset_dir)


def test_a_folder_holding_another_registered_dataset_is_named_as_such(
    tiny_dataset_dir, monkeypatch
):
    checksums = {check.name: check.actual for check in verify_dataset(tiny_dataset_dir).files}
    monkeypatch.setitem(
        DATASETS, "tiny-a",
        dataclasses.replace(DATASETS["mnist"], name="tiny-a", sha256=checksums),
    )
    expected = (
        f"{tiny_dataset_dir} holds tiny-a, not fashion-mnist: "
        "train-images-idx3-ubyte has the checksum of tiny-a's train-images-idx3-ubyte"
    )
    with pytest.raises(DataError) as raised:
        load_dataset("fashion-mnist", data_dir=tiny_dataset_dir)
    assert str(raised.value) == expected
    verification = verify_dataset("fashion-mnist", data_dir=tiny_dataset_dir)
    assert not verification.ok and verification.files[0].problem == expected


def test_a_misnamed_file_of_the_right_dataset_is_named_as_such(tiny_dataset_dir, monkeypatch):
    checksums = {check.name: check.actual for check in verify_dataset(tiny_dataset_dir).files}
    monkeypatch.setitem(
        DATASETS, "tiny", dataclasses.replace(DATASETS["mnist"], name="tiny", sha256=checksums)
    )
    train, test = (
        tiny_dataset_dir / "train-labels-idx1-ubyte", tiny_dataset_dir / "t10k-labels-idx1-ubyte"
    )
    train.write_bytes(test.read_bytes())
    with pytest.raises(DataError, match=f"^{train}: this is tiny's t10k-labels-idx1-ubyte, not its "
                                        "train-labels-idx1-ubyte \\(misnamed file\\)$"):
        load_dataset("tiny", data_dir=tiny_dataset_dir)


def test_a_malformed_file_in_a_dataset_is_named(tiny_dataset_dir):
    path = tiny_dataset_dir / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(IdxFormatError, match=f"{path}: 1 trailing bytes"):
        load_dataset(tiny_dataset_dir)


def test_unknown_names_and_misused_options_are_errors(tiny_dataset_dir):
    with pytest.raises(DataError, match="unknown dataset 'digits'"):
        load_dataset("digits")
    with pytest.raises(ConfigError, match="data_dir applies to registered datasets"):
        load_dataset(tiny_dataset_dir, data_dir=tiny_dataset_dir)


def test_write_dataset_wants_uint8(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_dataset(tmp_path, np.zeros((1, 2, 2), np.int16), np.zeros(1, np.uint8),
                      np.zeros((1, 2, 2), np.uint8), np.zeros(1, np.uint8))


def test_verify_and_info_of_a_custom_dataset(tiny_dataset_dir):
    verification = verify_dataset(tiny_dataset_dir)
    assert verification.ok and not verification.verified
    assert all(check.actual and check.expected is None for check in verification.files)
    info = dataset_info(tiny_dataset_dir)
    assert (info.train_size, info.test_size, info.image_shape) == (200, 50, (28, 28))
    assert info.train_class_counts == (20,) * 10 and info.test_class_counts == (5,) * 10
    images = load_dataset(tiny_dataset_dir).train_images
    assert info.train_pixel_mean == pytest.approx(images.mean())
    assert info.train_pixel_std == pytest.approx(images.std())
    assert fetch_dataset(tiny_dataset_dir).directory == tiny_dataset_dir


def test_verify_without_any_copy_is_an_error():
    with pytest.raises(DataError, match="no copy of mnist is present.*mnistlab data fetch mnist"):
        verify_dataset("mnist")
    assert find_dataset("mnist") is None


@pytest.mark.realdata
def test_real_mnist_through_data_dir(mnist_dir):
    dataset = load_dataset("mnist", data_dir=mnist_dir)
    check_real_mnist(dataset)
    assert dataset.source == f"data dir {mnist_dir}"
    info = dataset_info("mnist", data_dir=mnist_dir)
    assert (info.train_class_counts, info.test_class_counts) == (
        MNIST_TRAIN_COUNTS, MNIST_TEST_COUNTS
    )
    assert info.train_pixel_mean / 255 == pytest.approx(0.1307, abs=1e-4)
    assert info.train_pixel_std / 255 == pytest.approx(0.3081, abs=1e-4)


@pytest.mark.realdata
def test_real_mnist_asked_for_as_fashion_mnist_is_named(mnist_dir, monkeypatch):
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(mnist_dir))
    with pytest.raises(DataError, match=f"^{mnist_dir} holds mnist, not fashion-mnist: "):
        load_dataset("fashion-mnist")


@pytest.mark.realdata
def test_real_mnist_through_the_environment(mnist_dir, monkeypatch):
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(mnist_dir))
    check_real_mnist(load_dataset("mnist"))
    verification = verify_dataset("mnist")
    assert verification.ok and verification.verified
    assert verification.location.directory == mnist_dir


def check_real_mnist(dataset):
    assert dataset.verified and dataset.name == "mnist"
    assert (
        dataset.train_images.shape == (60_000, 28, 28)
        and dataset.test_images.shape == (10_000, 28, 28)
    )
    assert tuple(np.bincount(dataset.train_labels)) == MNIST_TRAIN_COUNTS
    assert tuple(np.bincount(dataset.test_labels)) == MNIST_TEST_COUNTS
    assert dataset.checksums == DATASETS["mnist"].sha256
