"""MNIST-format datasets: the IDX file format, the registry of known datasets, where their
files come from, and loading them as uint8 arrays.

    from mnistlab.data import load_dataset
    dataset = load_dataset("mnist")            # or a directory holding the four IDX files
    dataset.train_images.shape                 # (60000, 28, 28), uint8
"""

from mnistlab.data.dataset import (
    Dataset,
    DatasetInfo,
    Verification,
    dataset_info,
    fetch_dataset,
    find_dataset,
    load_dataset,
    read_dataset,
    verify_dataset,
    write_dataset,
)
from mnistlab.data.idx import parse_idx, read_idx, write_idx
from mnistlab.data.registry import DATASETS, FILE_NAMES, DatasetSpec, get_spec
from mnistlab.data.sources import FileCheck, Location, cache_root

__all__ = [
    "DATASETS",
    "FILE_NAMES",
    "Dataset",
    "DatasetInfo",
    "DatasetSpec",
    "FileCheck",
    "Location",
    "Verification",
    "cache_root",
    "dataset_info",
    "fetch_dataset",
    "find_dataset",
    "get_spec",
    "load_dataset",
    "parse_idx",
    "read_dataset",
    "read_idx",
    "verify_dataset",
    "write_dataset",
    "write_idx",
]
