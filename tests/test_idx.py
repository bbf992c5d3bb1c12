"""IDX reading and writing: round trips, compression by content, and every malformed case."""

from __future__ import annotations

import gzip
import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mnistlab.data import idx, read_idx, write_idx
from mnistlab.data.idx import encode_idx, parse_idx, read_idx_bytes
from mnistlab.errors import IdxFormatError

IDX_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def header(type_code: int, *shape: int) -> bytes:
    return bytes([0, 0, type_code, len(shape)]) + np.asarray(shape, dtype=">u4").tobytes()


@settings(max_examples=60, deadline=None)
@given(
    array=st.sampled_from(IDX_DTYPES).flatmap(
        lambda dtype: hnp.arrays(
            dtype, hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5)
        )
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
        path = write_idx(
            tmp_path / f"a{compress}", np.zeros((2, 2), dtype=np.uint8), compress=compress
        )
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
        (
            header(0x08, 3, 2) + bytes(5),
            r"truncated data: the header declares shape \(3, 2\) \(6 bytes\) but only 5",
        ),
        (header(0x0C, 2) + bytes(7), "truncated data"),
        (header(0x08, 3, 2) + bytes(7), r"1 trailing bytes .*shape \(3, 2\)"),
        (header(0x0C, 2**32 - 1, 2**32 - 1, 2**32 - 1) + bytes(4), "truncated data"),
    ],
    ids=["short", "magic", "type-code", "no-dimensions", "short-sizes", "truncated",
         "truncated-int", "trailing", "huge-sizes"],
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


# --- bounded reading: the header decides what may be allocated --------------------------------


def test_a_sparse_file_declaring_100_gib_fails_before_anything_is_read(tmp_path):
    path = tmp_path / "huge"
    path.write_bytes(header(0x08, 102400, 1024, 1024))
    os.truncate(path, 16 + (100 << 30))  # a hole: no disk space used
    with pytest.raises(
        IdxFormatError, match=r"\(107374182400 bytes\), more than the 4294967296 bytes"
    ) as raised:
        read_idx(path)
    assert "MAX_IDX_BYTES" in str(raised.value)


def test_the_declared_size_is_checked_against_the_raw_file_before_allocating(
    tmp_path, monkeypatch
):
    path = tmp_path / "images"
    path.write_bytes(header(0x08, 60000, 28, 28))
    os.truncate(path, 100 << 30)
    allocations = []
    monkeypatch.setattr(idx, "_allocate", lambda *args: allocations.append(args))
    with pytest.raises(
        IdxFormatError, match=r"107327142384 trailing bytes after .*\(60000, 28, 28\)"
    ):
        read_idx(path)
    assert allocations == []


def test_a_gzip_file_cannot_declare_more_than_deflate_can_inflate(tmp_path):
    path = tmp_path / "small.gz"
    path.write_bytes(gzip.compress(header(0x08, 1000, 1000, 1000) + bytes(10)))
    size = path.stat().st_size
    with pytest.raises(
        IdxFormatError,
        match=f"truncated data: .*but a {size}-byte gzip file inflates to at most "
        f"{1032 * size} bytes",
    ):
        read_idx(path)


def test_the_size_limit_is_a_module_constant(tmp_path, monkeypatch):
    path = write_idx(tmp_path / "a.gz", np.zeros((4, 4), np.uint8))
    monkeypatch.setattr(idx, "MAX_IDX_BYTES", 15)
    with pytest.raises(
        IdxFormatError, match=r"shape \(4, 4\) \(16 bytes\), more than the 15 bytes"
    ):
        read_idx(path)
    monkeypatch.setattr(idx, "MAX_IDX_BYTES", 16)
    assert read_idx(path).shape == (4, 4)


@pytest.mark.parametrize("chunk_bytes", [1, 5, 1 << 20])
def test_a_gzip_bomb_stops_soon_after_the_declared_size(tmp_path, monkeypatch, chunk_bytes):
    monkeypatch.setattr(idx, "CHUNK_BYTES", chunk_bytes)
    monkeypatch.setattr(idx, "_TRAILING_COUNT_LIMIT", 4096)  # 1 MiB by default
    path = tmp_path / "bomb.gz"
    # 64 MiB of zeros after a header declaring 6 bytes, as 64 gzip members of 1 MiB each.
    member = gzip.compress(bytes(1 << 20), mtime=0)
    path.write_bytes(gzip.compress(header(0x08, 3, 2) + bytes(6), mtime=0) + member * 64)
    inflated = []
    original_read = idx._GzipStream.read

    def read(self, size):
        inflated.append(len(chunk := original_read(self, size)))
        return chunk

    monkeypatch.setattr(idx._GzipStream, "read", read)
    with pytest.raises(
        IdxFormatError, match=r"more than 4096 trailing bytes after .*shape \(3, 2\), 6 bytes"
    ):
        read_idx(path)
    # The header, the data and the trailing bytes counted; not 64 MiB.
    assert sum(inflated) == 12 + 6 + 4096 + 1


def test_concatenated_gzip_members_and_zero_padding_read_as_one_file(tmp_path):
    data = encode_idx(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    path = tmp_path / "members.gz"
    path.write_bytes(gzip.compress(data[:5]) + bytes(3) + gzip.compress(data[5:]) + bytes(100))
    np.testing.assert_array_equal(read_idx(path), np.arange(24).reshape(2, 3, 4))


def test_garbage_or_too_much_padding_after_gzip_data_is_refused(tmp_path):
    data = gzip.compress(encode_idx(np.zeros(4, np.uint8)))
    path = tmp_path / "a.gz"
    path.write_bytes(data + b"garbage")
    with pytest.raises(IdxFormatError, match="corrupt gzip data"):
        read_idx(path)
    path.write_bytes(data)
    os.truncate(path, len(data) + (2 << 20))
    with pytest.raises(
        IdxFormatError, match="more than 1048576 zero bytes after the compressed data"
    ):
        read_idx(path)


def test_a_gzip_checksum_error_is_caught(tmp_path):
    data = bytearray(gzip.compress(encode_idx(np.zeros(100, np.uint8))))
    data[-8] ^= 0xFF  # the CRC-32 of the trailer
    path = tmp_path / "a.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(IdxFormatError, match="corrupt gzip data .*incorrect data check"):
        read_idx(path)


@pytest.mark.parametrize(
    "shape", [(1,) * 65, (0, 2**32 - 1, 2**32 - 1, 2**32 - 1)], ids=["65-dims", "zero-size"]
)
def test_shapes_numpy_cannot_hold_are_a_format_error(shape):
    with pytest.raises(IdxFormatError, match="NumPy cannot represent shape"):
        parse_idx(header(0x08, *shape) + bytes(math.prod(shape)))


def test_a_failed_allocation_is_a_one_line_error(tmp_path, monkeypatch):
    path = write_idx(tmp_path / "a", np.zeros(10, np.uint8))

    def refuse(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(idx.np, "empty", refuse)
    with pytest.raises(IdxFormatError, match=r"cannot allocate 18 bytes for the shape \(10,\)"):
        read_idx(path)


def test_reading_a_directory_or_an_unreadable_path_is_a_format_error(tmp_path):
    with pytest.raises(IdxFormatError, match="cannot read: Is a directory"):
        read_idx(tmp_path)


def test_header_only_is_read_when_the_header_is_bad(tmp_path):
    # /dev/zero never ends: only the 4 + 4 * 0 header bytes may be read from it.
    with pytest.raises(IdxFormatError, match="unknown IDX type code 0x00"):
        read_idx("/dev/zero")
