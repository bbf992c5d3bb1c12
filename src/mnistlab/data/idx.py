"""Read and write IDX files, the format of the MNIST database.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 size per dimension, then the elements in C order, big-endian for
multi-byte types. Files may be gzip-compressed; compression is recognised by the content
(the gzip magic bytes 1f 8b), never by the file name.

Reading is bounded by what the header declares. The header is read and checked first; memory
is allocated only for the declared size, only when that size is at most `MAX_IDX_BYTES` and
fits the file (a raw file must hold exactly the header plus the declared bytes; a gzip file
cannot inflate to more than `DEFLATE_MAX_RATIO` times its size). Gzip data is inflated in
chunks of at most `CHUNK_BYTES` straight into that allocation, and reading stops at the first
byte past the declared size. So a damaged or hostile file (a sparse 100 GiB file, a gzip bomb)
costs at most the declared size in memory, and usually fails before anything is allocated.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import stat
import zlib
from collections.abc import Callable
from dataclasses import dataclass
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
# The largest data (after the header) a file may declare: 4 GiB. MNIST's training images are
# 47 MB and EMNIST's largest split 550 MB; anything larger is refused before it is read.
MAX_IDX_BYTES = 4 << 30
# Deflate cannot inflate by more than 1032:1 (a 258-byte match costs at least 2 bits), so a
# gzip file of n bytes whose header declares more than 1032 n bytes is certainly truncated.
DEFLATE_MAX_RATIO = 1032
# Gzip data is inflated at most this many bytes at a time.
CHUNK_BYTES = 1 << 20
# Zero bytes after the last gzip member are ignored (as gzip does), up to this many.
MAX_GZIP_PADDING = 1 << 20
# Trailing bytes are counted up to this many for the error message, then reading stops.
_TRAILING_COUNT_LIMIT = 1 << 20
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib parses the gzip wrapper and checks CRC and length


@dataclass(frozen=True)
class IdxHeader:
    """What an IDX header declares: the element type (big-endian) and the shape."""

    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        """The length of the header in bytes: 4, plus 4 per dimension."""
        return 4 + 4 * len(self.shape)

    @property
    def data_size(self) -> int:
        """The number of data bytes the header declares (a Python int: never overflows)."""
        return math.prod(self.shape) * self.dtype.itemsize


def parse_header(data: bytes | bytearray | memoryview, name: str = "<bytes>") -> IdxHeader:
    """Parse the header at the start of `data`, which may hold only the header.

    Raises IdxFormatError for a wrong magic number, an unknown type code, zero dimensions or
    a truncated header (`len(data)` is then taken to be the whole file's length).
    """
    if len(data) < 4:
        raise IdxFormatError(
            f"{name}: truncated header ({len(data)} bytes, an IDX file needs at least 4)"
        )
    if data[0] != 0 or data[1] != 0:
        raise IdxFormatError(
            f"{name}: wrong magic number {bytes(data[:4]).hex()} "
            "(an IDX file starts with two zero bytes)"
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
            f"{name}: truncated header: {ndim} dimensions need {header_size} bytes, "
            f"the file has {len(data)}"
        )
    shape = tuple(int(size) for size in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    return IdxHeader(IDX_TYPES[type_code], shape)


def parse_idx(data: bytes | bytearray | memoryview, name: str = "<bytes>") -> np.ndarray:
    """Parse the decompressed bytes of an IDX file into an array of native byte order.

    `name` (usually the file path) starts every error message. Raises IdxFormatError for a
    wrong magic number, an unknown type code, a truncated header or body, trailing bytes, or
    a shape NumPy cannot represent. A writable buffer (as `read_idx_bytes` returns) is shared
    by a uint8 result, not copied.
    """
    header = parse_header(data, name)
    _check_data_size(header, len(data) - header.size, name)
    dtype = header.dtype
    array = np.frombuffer(
        data, dtype=dtype, count=header.data_size // dtype.itemsize, offset=header.size
    )
    try:
        array = array.reshape(header.shape)
    except ValueError as error:  # more than 64 dimensions, or zero-size with absurd sides
        raise IdxFormatError(
            f"{name}: NumPy cannot represent shape {_shape_text(header.shape)}: {error}"
        ) from None
    if dtype.itemsize > 1:
        array = array.astype(dtype.newbyteorder("="))  # a native-order copy
    elif not array.flags.writeable:
        array = array.copy()  # bytes buffers are read-only; callers may want to modify
    return array


def read_idx_bytes(path: str | os.PathLike) -> memoryview:
    """Return the decompressed contents of an IDX file (gzip or raw, told apart by content).

    The contents are checked to be one valid header followed by exactly the bytes it
    declares, without ever holding more than that in memory (see the module docstring);
    the result is a writable buffer of that size. Raises IdxFormatError naming the file.
    """
    path = Path(path)
    name = str(path)
    try:
        with open(path, "rb") as file:
            status = os.fstat(file.fileno())
            # A regular file's size is known up front; a pipe's or a device's is not.
            file_size = status.st_size if stat.S_ISREG(status.st_mode) else None
            if file.peek(2)[:2] == GZIP_MAGIC:
                return _read_gzip(file, file_size, name)
            return _read_raw(file, file_size, name)
    except FileNotFoundError:
        raise IdxFormatError(f"{name}: file not found") from None
    except OSError as error:
        raise IdxFormatError(f"{name}: cannot read: {error.strerror or error}") from None
    except zlib.error as error:
        raise IdxFormatError(f"{name}: corrupt gzip data ({error})") from None


def content_sha256(path: str | os.PathLike) -> str:
    """Return the SHA-256 hex digest of an IDX file's decompressed contents.

    The contents are checked as in `read_idx_bytes`.
    """
    return hashlib.sha256(read_idx_bytes(path)).hexdigest()


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip or raw) into an array of native byte order."""
    return parse_idx(read_idx_bytes(path), str(path))


def encode_idx(array: np.ndarray) -> bytes:
    """Return the IDX encoding (uncompressed) of an array."""
    array = np.asarray(array)
    type_code = _TYPE_CODES.get((array.dtype.kind, array.dtype.itemsize))
    if type_code is None:
        raise ValueError(
            f"IDX cannot store elements of type {array.dtype} "
            "(use uint8, int8, int16, int32, float32 or float64)"
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


# --- bounded reading -------------------------------------------------------------------------


def _read_raw(file, file_size: int | None, name: str) -> memoryview:
    """Read a raw IDX file: header, size checks, then one readinto of the declared bytes."""
    header, prefix = _read_header(file.read, name)
    if file_size is not None:
        # Exact for a regular file, and known before anything is allocated.
        _check_data_size(header, file_size - header.size, name)
    _check_limit(header, name)
    contents = _allocate(header, prefix, name)
    view = contents[header.size:]
    filled = 0
    while filled < len(view):
        count = file.readinto(view[filled:])
        if not count:
            _check_data_size(header, filled, name)  # the file shrank while being read
        filled += count
    _check_no_trailing(header, file.read, name)
    return contents


def _read_gzip(file, file_size: int | None, name: str) -> memoryview:
    """Inflate a gzip IDX file chunk by chunk into a buffer of exactly the declared size."""
    stream = _GzipStream(file, name)
    header, prefix = _read_header(stream.read, name)
    total = header.size + header.data_size
    if file_size is not None and total > DEFLATE_MAX_RATIO * file_size:
        raise IdxFormatError(
            f"{name}: truncated data: the header declares shape {_shape_text(header.shape)} "
            f"({header.data_size} bytes) but a {file_size}-byte gzip file inflates to at most "
            f"{DEFLATE_MAX_RATIO * file_size} bytes"
        )
    _check_limit(header, name)
    contents = _allocate(header, prefix, name)
    filled = header.size
    while filled < total:
        chunk = stream.read(min(CHUNK_BYTES, total - filled))
        if not chunk:
            _check_data_size(header, filled - header.size, name)
        contents[filled:filled + len(chunk)] = chunk
        filled += len(chunk)
    # Reading on to the end also makes zlib check every member's CRC-32 and length.
    _check_no_trailing(header, stream.read, name)
    return contents


def _read_exactly(read: Callable[[int], bytes], size: int) -> bytes:
    """Up to `size` bytes from `read`, fewer only at the end of the data."""
    parts, remaining = [], size
    while remaining:
        part = read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def _read_header(read: Callable[[int], bytes], name: str) -> tuple[IdxHeader, bytes]:
    """Read and parse the header (at most 1024 bytes); returns it and its bytes."""
    prefix = _read_exactly(read, 4)
    if len(prefix) == 4 and prefix[:2] == b"\0\0":
        prefix += _read_exactly(read, 4 * prefix[3])
    header = parse_header(prefix, name)
    return header, prefix


def _check_data_size(header: IdxHeader, actual: int, name: str) -> None:
    """Raise IdxFormatError unless `actual` data bytes are exactly what the header declares."""
    expected = header.data_size
    if actual < expected:
        raise IdxFormatError(
            f"{name}: truncated data: the header declares shape {_shape_text(header.shape)} "
            f"({expected} bytes) but only {actual} bytes follow"
        )
    if actual > expected:
        raise IdxFormatError(
            f"{name}: {actual - expected} trailing bytes after the data the header declares "
            f"(shape {_shape_text(header.shape)}, {expected} bytes)"
        )


def _check_no_trailing(header: IdxHeader, read: Callable[[int], bytes], name: str) -> None:
    """Raise IdxFormatError if `read` yields anything more (reading at most 1 MiB + 1 byte)."""
    trailing = 0
    while trailing <= _TRAILING_COUNT_LIMIT and (
        chunk := read(min(CHUNK_BYTES, _TRAILING_COUNT_LIMIT + 1 - trailing))
    ):
        trailing += len(chunk)
    if trailing > _TRAILING_COUNT_LIMIT:
        raise IdxFormatError(
            f"{name}: more than {_TRAILING_COUNT_LIMIT} trailing bytes "
            "after the data the header declares "
            f"(shape {_shape_text(header.shape)}, {header.data_size} bytes)"
        )
    if trailing:
        _check_data_size(header, header.data_size + trailing, name)


def _check_limit(header: IdxHeader, name: str) -> None:
    if header.data_size > MAX_IDX_BYTES:
        raise IdxFormatError(
            f"{name}: the header declares shape {_shape_text(header.shape)} "
            f"({header.data_size} bytes), "
            f"more than the {MAX_IDX_BYTES} bytes an IDX file may hold here "
            "(mnistlab.data.idx.MAX_IDX_BYTES)"
        )


def _allocate(header: IdxHeader, prefix: bytes, name: str) -> memoryview:
    """A writable buffer of header plus declared data, the header already in place.

    np.empty leaves the pages untouched until written, so a file that turns out short costs
    only what was actually read.
    """
    total = header.size + header.data_size
    try:
        contents = memoryview(np.empty(total, dtype=np.uint8))
    except MemoryError:
        raise IdxFormatError(
            f"{name}: cannot allocate {total} bytes "
            f"for the shape {_shape_text(header.shape)} its header declares"
        ) from None
    contents[:header.size] = prefix
    return contents


def _shape_text(shape: tuple[int, ...]) -> str:
    """A shape as text, shortened when the header declares very many dimensions."""
    if len(shape) <= 8:
        return str(shape)
    return f"({', '.join(map(str, shape[:8]))}, ... {len(shape)} dimensions)"


class _GzipStream:
    """The inflated bytes of a gzip file, read in bounded pieces.

    Handles several concatenated members and zero padding after them, as `gzip.decompress`
    does, but never inflates more than asked: `read(size)` returns at most `size` bytes.
    """

    def __init__(self, file, name: str):
        self._file = file
        self._name = name
        self._decompressor = zlib.decompressobj(_GZIP_WBITS)  # None between members
        self._pending = b""  # compressed input not yet given to zlib
        self._padding = 0

    def read(self, size: int) -> bytes:
        """Return up to `size` inflated bytes, at least one unless the data has ended."""
        while True:
            if self._decompressor is not None:
                output = self._decompressor.decompress(self._pending, size)
                if self._decompressor.eof:
                    self._pending = self._decompressor.unused_data
                    self._decompressor = None
                else:
                    self._pending = self._decompressor.unconsumed_tail
                if output:
                    return output
                if self._decompressor is not None and not self._pending and not self._refill():
                    raise IdxFormatError(
                        f"{self._name}: corrupt gzip data "
                        "(the compressed stream ends before its end marker)"
                    )
                continue
            # Between members: the end, zero padding, or another member.
            if not self._pending and not self._refill():
                return b""
            unpadded = self._pending.lstrip(b"\0")
            self._padding += len(self._pending) - len(unpadded)
            if self._padding > MAX_GZIP_PADDING:
                raise IdxFormatError(
                    f"{self._name}: corrupt gzip data "
                    f"(more than {MAX_GZIP_PADDING} zero bytes after the compressed data)"
                )
            self._pending = unpadded
            if unpadded:
                self._decompressor = zlib.decompressobj(_GZIP_WBITS)  # zlib checks its magic

    def _refill(self) -> bool:
        self._pending = self._file.read(CHUNK_BYTES)
        return bool(self._pending)
