"""Read and write IDX files, the format of the MNIST database.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 size per dimension, then the elements in C order, big-endian for
multi-byte types. Files may be gzip-compressed; compression is recognised by the content
(the gzip magic bytes 1f 8b), never by the file name.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zlib
from pathlib import Path

import numpy as np

from mnistlab.errors import IdxFormatError
from mnistlab.fileio import write_bytes_atomic

# Type code -> big-endian element type, as defined by the IDX format.
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# Element kind and size -> type code, for writing arrays of any byte order.
_TYPE_CODES = {(dtype.kind, dtype.itemsize): code for code, dtype in IDX_TYPES.items()}
GZIP_MAGIC = b"\x1f\x8b"
# Temporary files are created private (0600); finished data files are world-readable.


def read_idx_bytes(path: str | os.PathLike) -> bytes | bytearray:
    """Return the decompressed contents of an IDX file (gzip or raw, told apart by content)."""
    path = Path(path)
    try:
        with open(path, "rb") as file:
            head = file.read(2)
            file.seek(0)
            if head == GZIP_MAGIC:
                compressed = file.read()
            else:
                # Reading into a bytearray lets the parsed array share, and write to, this buffer.
                contents = bytearray(os.fstat(file.fileno()).st_size)
                size = file.readinto(contents)
                return contents[:size] if size != len(contents) else contents
    except FileNotFoundError:
        raise IdxFormatError(f"{path}: file not found") from None
    except OSError as error:
        raise IdxFormatError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        return gzip.decompress(compressed)
    except (OSError, EOFError, zlib.error) as error:
        raise IdxFormatError(f"{path}: corrupt gzip data ({error})") from None


def content_sha256(path: str | os.PathLike) -> str:
    """Return the SHA-256 hex digest of a file's decompressed contents."""
    return hashlib.sha256(read_idx_bytes(path)).hexdigest()


def parse_idx(data: bytes | bytearray, name: str = "<bytes>") -> np.ndarray:
    """Parse the decompressed bytes of an IDX file into an array of native byte order.

    `name` (usually the file path) starts every error message. Raises IdxFormatError for a
    wrong magic number, an unknown type code, a truncated header or body, or trailing bytes.
    """
    if len(data) < 4:
        raise IdxFormatError(f"{name}: truncated header ({len(data)} bytes, an IDX file needs at least 4)")
    if data[0] != 0 or data[1] != 0:
        raise IdxFormatError(
            f"{name}: wrong magic number {bytes(data[:4]).hex()} (an IDX file starts with two zero bytes)"
        )
    type_code, ndim = data[2], data[3]
    if type_code not in IDX_TYPES:
        known = ", ".join(f"0x{code:02X}" for code in IDX_TYPES)
        raise IdxFormatError(f"{name}: unknown IDX type code 0x{type_code:02X} (known: {known})")
    if ndim == 0:
        raise IdxFormatError(f"{name}: the header declares zero dimensions")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise IdxFormatError(
            f"{name}: truncated header: {ndim} dimensions need {header_size} bytes, the file has {len(data)}"
        )
    shape = tuple(int(size) for size in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_TYPES[type_code]
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow for absurd sizes
    actual = len(data) - header_size
    if actual < expected:
        raise IdxFormatError(
            f"{name}: truncated data: the header declares shape {shape} ({expected} bytes) "
            f"but only {actual} bytes follow"
        )
    if actual > expected:
        raise IdxFormatError(
            f"{name}: {actual - expected} trailing bytes after the data the header declares "
            f"(shape {shape}, {expected} bytes)"
        )
    array = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header_size)
    array = array.reshape(shape)
    if dtype.itemsize > 1:
        array = array.astype(dtype.newbyteorder("="))  # a native-order copy
    elif not array.flags.writeable:
        array = array.copy()  # bytes buffers are read-only; callers may want to modify
    return array


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip or raw) into an array of native byte order."""
    return parse_idx(read_idx_bytes(path), str(path))


def encode_idx(array: np.ndarray) -> bytes:
    """Return the IDX encoding (uncompressed) of an array."""
    array = np.asarray(array)
    type_code = _TYPE_CODES.get((array.dtype.kind, array.dtype.itemsize))
    if type_code is None:
        raise ValueError(
            f"IDX cannot store elements of type {array.dtype} (use uint8, int8, int16, int32, float32 or float64)"
        )
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"IDX stores 1 to 255 dimensions, the array has {array.ndim}")
    if any(size >= 2**32 for size in array.shape):
        raise ValueError(f"IDX sizes are 32-bit; shape {array.shape} is too large")
    header = bytes([0, 0, type_code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=IDX_TYPES[type_code]).tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write an array as an IDX file, atomically; returns the path.

    `compress` chooses gzip; by default it follows the file name (compressed when it ends
    in ".gz"). The data goes to a temporary file in the same directory that then replaces
    `path`, so readers never see a half-written file.
    """
    path = Path(path)
    if compress is None:
        compress = path.name.endswith(".gz")
    data = encode_idx(array)
    if compress:
        # mtime=0 makes the output depend on the data only.
        data = gzip.compress(data, compresslevel=6, mtime=0)
    return write_bytes_atomic(path, data)
