"""IDX reading and writing: round trips, compression by content, and every malformed case."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mnistlab.data import read_idx, write_idx
from mnistlab.data.idx import encode_idx, parse_idx, read_idx_bytes
from mnistlab.errors import IdxFormatError

IDX_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def header(type_code: int, *shape: int) -> bytes:
    return bytes([0, 0, type_code, len(shape)]) + np.asarray(shape, dtype=">u4").tobytes()


@settings(max_examples=60, deadline=None)
@given(
    array=st.sampled_from(IDX_DTYPES).flatmap(
        lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5))
    ),
    compress=st.booleans(),
)
def test_write_then_read_returns_the_same_array(tmp_path_factory, array, compress):
    path = tmp_path_factory.mktemp("idx") / "array.idx"
    write_idx(path, array, compress=compress)
    result = read_idx(path)
    assert result.dtype == array.dtype
    assert result.shape == array.shape
    np.testing.assert_array_equal(result, array)


def test_multi_byte_elements_are_big_endian_on_disk(tmp_path):
    path = write_idx(tmp_path / "x.idx", np.array([1, 258], dtype="<i2"))
    assert path.read_bytes() == header(0x0B, 2) + b"\x00\x01\x01\x02"


def test_compression_follows_the_content_not_the_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    gzipped_without_suffix = write_idx(tmp_path / "images", array, compress=True)
    raw_with_gz_suffix = write_idx(tmp_path / "images.gz", array, compress=False)
    assert gzipped_without_suffix.read_bytes()[:2] == b"\x1f\x8b"
    assert raw_with_gz_suffix.read_bytes()[:2] == b"\x00\x00"
    np.testing.assert_array_equal(read_idx(gzipped_without_suffix), array)
    np.testing.assert_array_equal(read_idx(raw_with_gz_suffix), array)


def test_compression_defaults_to_the_file_name(tmp_path):
    array = np.zeros(3, dtype=np.uint8)
    assert write_idx(tmp_path / "a.gz", array).read_bytes()[:2] == b"\x1f\x8b"
    assert write_idx(tmp_path / "a", array).read_bytes()[:2] == b"\x00\x00"


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path):
    write_idx(tmp_path / "a", np.zeros(3, dtype=np.uint8))
    write_idx(tmp_path / "a", np.ones(4, dtype=np.uint8))
    assert [path.name for path in tmp_path.iterdir()] == ["a"]
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), np.ones(4, dtype=np.uint8))


def test_loaded_arrays_are_writable(tmp_path):
    for compress in (False, True):
        path = write_idx(tmp_path / f"a{compress}", np.zeros((2, 2), dtype=np.uint8), compress=compress)
        assert read_idx(path).flags.writeable


def test_write_rejects_types_idx_cannot_store(tmp_path):
    with pytest.raises(ValueError, match="uint16"):
        write_idx(tmp_path / "a", np.zeros(3, dtype=np.uint16))
    with pytest.raises(ValueError, match="dimensions"):
        write_idx(tmp_path / "a", np.array(5, dtype=np.uint8))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00", "truncated header"),
        (b"\x01\x00\x08\x01" + b"\x00\x00\x00\x01" + b"\x05", "wrong magic number"),
        (b"\x00\x00\x0a\x01" + b"\x00\x00\x00\x01" + b"\x05", "unknown IDX type code 0x0A"),
        (b"\x00\x00\x08\x00", "zero dimensions"),
        (b"\x00\x00\x08\x03" + b"\x00\x00\x00\x02", "truncated header"),
        (header(0x08, 3, 2) + bytes(5), r"truncated data: the header declares shape \(3, 2\) \(6 bytes\) but only 5"),
        (header(0x0C, 2) + bytes(7), "truncated data"),
        (header(0x08, 3, 2) + bytes(7), r"1 trailing bytes .*shape \(3, 2\)"),
        (header(0x0C, 2**32 - 1, 2**32 - 1, 2**32 - 1) + bytes(4), "truncated data"),
    ],
    ids=["short", "magic", "type-code", "no-dimensions", "short-sizes", "truncated", "truncated-int",
         "trailing", "huge-sizes"],
)
def test_malformed_files_raise_one_clear_error_naming_the_file(tmp_path, data, message):
    for compress in (False, True):
        path = tmp_path / ("bad.gz" if compress else "bad")
        path.write_bytes(gzip.compress(data) if compress else data)
        with pytest.raises(IdxFormatError, match=message) as raised:
            read_idx(path)
        assert str(raised.value).startswith(str(path))


def test_corrupt_gzip_is_reported(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(encode_idx(np.zeros(1000, dtype=np.uint8)))[:-20])
    with pytest.raises(IdxFormatError, match=f"{path}: corrupt gzip data"):
        read_idx(path)


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(IdxFormatError, match="file not found"):
        read_idx(tmp_path / "nothing")


def test_parse_idx_names_its_source_in_errors():
    with pytest.raises(IdxFormatError, match="^labels: wrong magic"):
        parse_idx(b"\xff\xff\x08\x01\x00\x00\x00\x00", "labels")


def test_read_idx_bytes_returns_decompressed_content(tmp_path):
    data = encode_idx(np.arange(10, dtype=np.uint8))
    (tmp_path / "a").write_bytes(gzip.compress(data))
    assert bytes(read_idx_bytes(tmp_path / "a")) == data


def test_reading_60000_raw_training_images_is_one_buffer_view(tmp_path):
    # Speed is measured by hand and in benchmarks, not asserted here; what the test pins is
    # the shape of the implementation: one frombuffer over the file, no copy per image.
    images = np.random.default_rng(0).integers(0, 256, size=(60_000, 28, 28), dtype=np.uint8)
    path = write_idx(tmp_path / "train-images-idx3-ubyte", images)
    loaded = read_idx(path)
    assert loaded.shape == (60_000, 28, 28) and loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, images)
    assert loaded.base is not None  # a view on the file's bytes
