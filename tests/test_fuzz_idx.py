"""Hostile and damaged IDX files: a property-based fuzz of the reader, and bounded failures.

Every generated file, raw or gzip, must either read as exactly the array a small reference
parser finds in it, or raise IdxFormatError; nothing else. The fuzz and the hostile cases (a
sparse 100 GiB file, gzip bombs, absurd declared sizes) run in a child process whose address
space is limited with RLIMIT_AS: `mnistlab.data` imports NumPy but not TensorFlow, so 1 GiB is
plenty for a correct reader, and a reader that allocated before checking would fail there
with MemoryError instead of exhausting this machine. The hostile cases also report their
time and the child's peak resident memory, which the tests bound.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnistlab.data import idx
from mnistlab.data.idx import (
    IDX_TYPES,
    MAX_IDX_BYTES,
    content_sha256,
    parse_idx,
    read_idx,
    read_idx_bytes,
)
from mnistlab.errors import DataError, IdxFormatError

ADDRESS_SPACE_LIMIT = 1 << 30  # for the child process; it needs about 200 MiB
FUZZ_EXAMPLES = 500
GIB = 1 << 30

# --- the child process -----------------------------------------------------------------------


def run_in_child(function: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `function(*args)` of this module in a fresh interpreter under the address-space limit."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import test_fuzz_idx as fuzz; "
        "fuzz.limit_address_space(); getattr(fuzz, sys.argv[2])(*sys.argv[3:])"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent), function, *args],
        capture_output=True, text=True, timeout=timeout,
    )


def limit_address_space(limit: int = ADDRESS_SPACE_LIMIT) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


# --- the fuzz ---------------------------------------------------------------------------------

# Dimension sizes: mostly small, one in eight from the large end (2**32 - 1 is the largest).
SIZES = st.integers(0, 7).flatmap(
    lambda pick: (
        st.sampled_from([1000, 65536, 2**31, 2**32 - 1]) if pick == 0 else st.integers(0, 6)
    )
)
VALID_ENCODINGS = ("raw", "gzip", "gzip-two-members", "gzip-zero-padded")
DAMAGED_ENCODINGS = ("gzip-truncated", "gzip-trailing-garbage", "gzip-flipped-byte")


def mostly(valid, damaged: st.SearchStrategy) -> st.SearchStrategy:
    """`valid` four times in five, else a value from `damaged` (which may happen to be valid)."""
    return st.integers(0, 4).flatmap(lambda pick: damaged if pick == 0 else st.just(valid))


@st.composite
def idx_contents(draw) -> bytes:
    """The decompressed bytes of an IDX file, often damaged: magic, type, dims, sizes, body."""
    magic = draw(mostly(b"\0\0", st.binary(min_size=2, max_size=2)))
    type_code = draw(
        st.one_of(st.sampled_from(sorted(IDX_TYPES)), mostly(0x08, st.integers(0, 255)))
    )
    ndim = draw(st.one_of(st.integers(1, 4), mostly(3, st.integers(0, 255))))
    shape = draw(st.lists(SIZES, min_size=ndim, max_size=ndim))
    header = magic + bytes([type_code, ndim]) + np.asarray(shape, dtype=">u4").tobytes()
    if draw(st.integers(0, 9)) == 0:
        return header[:draw(st.integers(0, len(header) - 1))]  # a truncated header
    itemsize = IDX_TYPES[type_code].itemsize if type_code in IDX_TYPES else 1
    declared = math.prod(shape) * itemsize
    kind = draw(st.sampled_from(["exact", "exact", "exact", "short", "long", "any"]))
    if kind == "exact" and declared <= 4096:
        length = declared
    elif kind == "short":
        length = max(0, min(declared, 4096) - draw(st.integers(1, 16)))
    elif kind == "long":
        length = min(declared, 4096) + draw(st.integers(1, 16))
    else:
        length = draw(st.integers(0, 64))
    seed = draw(st.integers(0, 2**32 - 1))
    body = np.random.default_rng(seed).integers(0, 256, length, dtype=np.uint8).tobytes()
    return header + body


def encode(data: bytes, encoding: str, position: int) -> bytes:
    """The file for `data` in one of the encodings; `position` picks where to split or damage."""
    if encoding == "raw":
        return data
    compressed = gzip.compress(data, mtime=0)
    if encoding == "gzip":
        return compressed
    if encoding == "gzip-two-members":
        cut = position % (len(data) + 1)
        return gzip.compress(data[:cut], mtime=0) + gzip.compress(data[cut:], mtime=0)
    if encoding == "gzip-zero-padded":
        return compressed + bytes(1 + position % 512)
    if encoding == "gzip-truncated":
        return compressed[:2 + position % (len(compressed) - 2)]
    if encoding == "gzip-trailing-garbage":
        return compressed + b"\x01" + bytes(position % 8)
    if encoding == "gzip-flipped-byte":
        damaged = bytearray(compressed)
        damaged[2 + position % (len(damaged) - 2)] ^= 1 + position % 255
        return bytes(damaged)
    raise ValueError(encoding)


def reference_parse(data: bytes, limit: int = MAX_IDX_BYTES) -> np.ndarray | None:
    """What a file holding `data` must read as, or None where it must be refused.

    Written apart from mnistlab's reader: struct-free slicing, one check per rule.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES or data[3] == 0:
        return None
    ndim, dtype = data[3], IDX_TYPES[data[2]]
    if len(data) < 4 + 4 * ndim:
        return None
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    body = data[4 + 4 * ndim:]
    if len(body) != math.prod(shape) * dtype.itemsize or len(body) > limit:
        return None
    try:
        return np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    except ValueError:  # a shape NumPy cannot hold (over 64 dimensions, absurd zero-size shapes)
        return None


# Fragments of IdxFormatError messages, and the kind of damage each reports.
ERROR_KINDS = {
    "truncated header": "truncated header",
    "wrong magic number": "wrong magic number",
    "unknown IDX type code": "unknown type code",
    "zero dimensions": "zero dimensions",
    "truncated data": "truncated data",
    "trailing bytes": "trailing bytes",
    "more than the": "declared size over the limit",
    "NumPy cannot represent": "shape NumPy cannot hold",
    "corrupt gzip data": "corrupt gzip data",
}


class FuzzTally:
    """What the generated cases did: how many, how many read, and the errors by kind."""

    def __init__(self):
        self.cases = 0
        self.read = 0
        self.errors: dict[str, int] = {}

    def error(self, error: Exception) -> None:
        kind = next(
            (kind for fragment, kind in ERROR_KINDS.items() if fragment in str(error)), "other"
        )
        self.errors[kind] = self.errors.get(kind, 0) + 1


def fuzz_idx_files(directory: str) -> None:
    """Run the property over generated files in `directory`; print a tally as JSON."""
    tally = FuzzTally()
    path = Path(directory) / "fuzzed"

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=idx_contents(), encoding=st.sampled_from(VALID_ENCODINGS + DAMAGED_ENCODINGS),
           position=st.integers(0, 2**16), chunk_bytes=st.sampled_from([1, 2, 3, 7, 64, 1 << 20]),
           limit=mostly(MAX_IDX_BYTES, st.integers(0, 4096)))
    def reads_as_declared_or_raises_idx_format_error(data, encoding, position, chunk_bytes, limit):
        # Small chunks put every boundary of the chunked reading somewhere in these small files.
        idx.CHUNK_BYTES, idx.MAX_IDX_BYTES = chunk_bytes, limit
        expected = reference_parse(data, limit)
        path.write_bytes(encode(data, encoding, position))
        tally.cases += 1
        try:
            array = read_idx(path)
        except IdxFormatError as error:
            assert str(error).startswith(str(path)) and "\n" not in str(error)
            # A valid file is refused only when its encoding was damaged.
            assert expected is None or encoding in DAMAGED_ENCODINGS, (encoding, str(error))
            tally.error(error)
            return
        # Read: the file was valid (a damaged gzip may still inflate correctly, e.g. a flipped
        # bit in the header's timestamp), and the array is exactly the declared one.
        assert expected is not None, (
            f"accepted invalid data as {array.shape} {array.dtype} ({encoding})"
        )
        assert array.shape == expected.shape and array.dtype == expected.dtype
        np.testing.assert_array_equal(array, expected)
        assert len(read_idx_bytes(path)) == len(data)
        assert content_sha256(path) == hashlib.sha256(data).hexdigest()
        tally.read += 1

    @settings(max_examples=FUZZ_EXAMPLES // 2, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=idx_contents())
    def parse_idx_agrees_with_the_reference(data):
        tally.cases += 1
        expected = reference_parse(data)
        try:
            array = parse_idx(data, "fuzzed")
        except IdxFormatError:
            assert expected is None
            return
        assert expected is not None
        np.testing.assert_array_equal(array, expected)
        tally.read += 1

    reads_as_declared_or_raises_idx_format_error()
    idx.CHUNK_BYTES, idx.MAX_IDX_BYTES = 1 << 20, MAX_IDX_BYTES
    parse_idx_agrees_with_the_reference()
    print(json.dumps({"cases": tally.cases, "read": tally.read, "errors": tally.errors}))


# --- hostile files, each built in milliseconds ------------------------------------------------


def header(type_code: int, *shape: int) -> bytes:
    return bytes([0, 0, type_code, len(shape)]) + np.asarray(shape, dtype=">u4").tobytes()


def gzip_bomb(first: bytes, inflated_bytes: int) -> bytes:
    """A multi-member gzip: `first`, then zeros, `inflated_bytes` in all, about 1 KB per MiB."""
    zeros = gzip.compress(bytes(1 << 20), mtime=0)
    members = [gzip.compress(first, mtime=0)] + [zeros] * ((inflated_bytes - len(first)) >> 20)
    return b"".join(members)


def make_hostile_files(directory: Path) -> dict[str, Path]:
    """Hostile files in `directory`, by name (the names of HOSTILE_EXPECTATIONS)."""
    hundred_gib = 100 * GIB
    mnist_header = header(0x08, 60000, 28, 28)
    declares_100_gib = header(0x08, 102400, 1024, 1024)
    # name -> (contents, size to extend to with a sparse hole, or None)
    contents = {
        "sparse-100GiB-zeros": (b"", hundred_gib),
        "sparse-100GiB-declared": (declares_100_gib, len(declares_100_gib) + hundred_gib),
        "sparse-100GiB-mnist-header": (mnist_header, hundred_gib),
        "raw-declares-100GiB": (declares_100_gib + bytes(10), None),
        "gzip-declares-100GiB": (gzip.compress(declares_100_gib + bytes(10)), None),
        "gzip-bomb-1GiB-declares-784KB": (gzip_bomb(header(0x08, 1000, 28, 28), GIB), None),
        "gzip-bomb-1GiB-declares-1GiB": (
            gzip_bomb(header(0x08, 1024, 1024, 1024), GIB + (2 << 20)), None
        ),
        "gzip-bomb-10MB-declares-fewer": (
            gzip.compress(header(0x08, 1000, 100) + bytes(10_000_000)), None
        ),
        "gzip-then-2GiB-zero-padding": (gzip.compress(header(0x08, 2, 2) + bytes(4)), 2 * GIB),
    }
    paths = {}
    for name, (data, sparse_size) in contents.items():
        path = paths[name] = directory / name
        path.write_bytes(data)
        if sparse_size is not None:
            os.truncate(path, sparse_size)  # a hole: no disk space used
    return paths


HOSTILE_EXPECTATIONS = {
    "sparse-100GiB-zeros": "unknown IDX type code 0x00",
    "sparse-100GiB-declared": "more than the 4294967296 bytes",
    "sparse-100GiB-mnist-header": "trailing bytes",
    "raw-declares-100GiB": "truncated data",
    "gzip-declares-100GiB": "truncated data",
    "gzip-bomb-1GiB-declares-784KB": "more than 1048576 trailing bytes",
    "gzip-bomb-1GiB-declares-1GiB": "cannot allocate",  # under the child's 1 GiB address space
    "gzip-bomb-10MB-declares-fewer": "more than 1048576 trailing bytes",
    "gzip-then-2GiB-zero-padding": "zero bytes after the compressed data",
}


def read_hostile_files(directory: str) -> None:
    """Read each hostile file; print one JSON line per file: error, seconds, peak RSS so far."""
    files = make_hostile_files(Path(directory))
    print(json.dumps({"case": "baseline", "peak_rss": peak_rss_bytes()}))
    for name, path in files.items():
        start = time.perf_counter()
        try:
            array = read_idx(path)
            outcome = {"read": list(array.shape)}
        except DataError as error:
            outcome = {"error": str(error)}
        outcome.update(case=name, seconds=time.perf_counter() - start, peak_rss=peak_rss_bytes())
        print(json.dumps(outcome), flush=True)


# --- the tests --------------------------------------------------------------------------------


def test_mnistlab_data_imports_neither_tensorflow_nor_keras():
    # What makes the child's 1 GiB address space enough (TensorFlow alone reserves more).
    code = (
        "import sys, mnistlab.data; "
        "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))"
    )
    imported = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "numpy" in imported.split()
    assert not {"tensorflow", "keras", "sklearn", "matplotlib"} & set(imported.split())


def test_generated_files_read_as_declared_or_raise_idx_format_error(tmp_path):
    child = run_in_child("fuzz_idx_files", str(tmp_path))
    assert child.returncode == 0, child.stdout + child.stderr
    tally = json.loads(child.stdout.splitlines()[-1])
    assert tally["cases"] >= FUZZ_EXAMPLES
    # Both outcomes, and many kinds of damage.
    assert tally["read"] > 0 and len(tally["errors"]) >= 5
    assert "other" not in tally["errors"], tally


def test_hostile_files_fail_fast_in_one_line_within_a_memory_bound(tmp_path):
    child = run_in_child("read_hostile_files", str(tmp_path))
    assert child.returncode == 0, child.stdout + child.stderr
    results = [json.loads(line) for line in child.stdout.splitlines()]
    baseline = results.pop(0)["peak_rss"]
    assert [result["case"] for result in results] == list(HOSTILE_EXPECTATIONS)
    for result in results:
        assert "error" in result, result
        assert (
            "\n" not in result["error"] and HOSTILE_EXPECTATIONS[result["case"]] in result["error"]
        ), result
        assert result["seconds"] < 2.0, result
    # The bombs and the 100 GiB files cost at most a few MiB above the interpreter's own memory:
    # the bomb declaring 784 KB fills that much, the one declaring 1 GiB cannot be allocated.
    assert results[-1]["peak_rss"] - baseline < 32 << 20, (baseline, results)
