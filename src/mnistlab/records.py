"""The records a run directory holds, each described once, and the one check every record
read from disk goes through.

A run directory is input like any other: people copy it, edit it by hand, and damage it.
Every record in it (`run.json`, `config.json`, `metrics.json`, each line of
`history.jsonl`, a saved model's `params.json` or `ensemble.json`) is described below by a
small declarative schema: its fields, which of them are required, and each one's type and
range. `check_record` walks a record against its schema before any code uses a value, and
raises `RunError` naming the file and the first bad field, in one line:

    runs/a/config.json: limit_test must be a whole number from 1 to 1,000,000,000 or
    null, got a text ('10')

Lengths that depend on the run are names looked up in a context: `ListOf(Whole(),
length="classes")` is a list with one item per class of the run being read (a row of its
confusion matrix), the classes its config.json names.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnistlab.errors import RunError

# Run statuses: written at the start ("running"), at the end ("completed"), when the loss
# diverged ("failed"), or when training was stopped by a signal ("interrupted").
STATUSES = ("completed", "failed", "running", "interrupted")
# The largest record file read whole, and the largest history: far beyond any real run,
# small enough that a damaged or hostile file cannot exhaust memory.
MAX_RECORD_BYTES = 64 * 2**20
MAX_HISTORY_BYTES = 512 * 2**20
# Bounds that keep a damaged model document from sizing huge arrays: at most this many
# classes (IDX labels are bytes), and images of at most 3 axes and this many values.
MAX_CLASSES = 65_536
MAX_IMAGE_VALUES = 2**24
BIG = 2**63 - 1


class _Problem(Exception):
    """A field that does not fit its schema: where it is (dotted), and what is wrong."""

    def __init__(self, where: str, message: str):
        super().__init__(message)
        self.where = where
        self.message = message


def _join(where: str, key: Any) -> str:
    """`where.key`, or `where[3]` for a list item, or `where['odd key']` for a key that
    would not read as one word (spaces, dots, control characters: one line, always)."""
    if isinstance(key, int):
        return f"{where}[{key}]"
    if not key or not all(c.isalnum() or c in "_-" for c in key) or not key.isprintable():
        return f"{where}[{key!r}]"
    return f"{where}.{key}" if where else key


def describe_value(value: Any) -> str:
    """A short, one-line description of a JSON value for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        text = repr(value)
        return f"a number ({text if len(text) <= 24 else text[:21] + '...'})"
    if isinstance(value, str):
        text = repr(value)
        return f"a text ({text if len(text) <= 40 else text[:37] + '...'})"
    if isinstance(value, list):
        return f"a list of {len(value)} item{'' if len(value) == 1 else 's'}"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _is_whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    """A finite number that a float can hold (JSON's integers have no size limit)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


# ------------------------------------------------------------------------------ the specs


@dataclass(frozen=True)
class Text:
    """A string; `choices` (a tuple, or a function returning one) restricts it."""

    choices: tuple[str, ...] | Callable[[], Any] | None = None
    nonempty: bool = False

    def check(self, value: Any, where: str, context: Mapping[str, Any]) -> None:
        choices = self.choices() if callable(self.choices) else self.choices
        if not isinstance(value, str) or (self.nonempty and not value):
            raise _Problem(where, f"must be {'a non-empty' if self.nonempty else 'a'} text, "
                                  f"got {describe_value(value)}")
        if choices is not None and value not in choices:
            raise _Problem(where, f"must be one of {', '.join(choices)}, "
                                  f"got {describe_value(value)}")


@dataclass(frozen=True)
class Whole:
    """A whole number (not a boolean) from `low` to `high`."""

    low: int = 0
    high: int = BIG

    def check(self, value: Any, where: str, context: Mapping[str, Any]) -> None:
        if not _is_whole(value) or not self.low <= value <= self.high:
            high = "" if self.high == BIG else f" to {self.high:,}"
            raise _Problem(where, f"must be a whole number from {self.low:,}{high}, "
                                  f"got {describe_value(value)}")


@dataclass(frozen=True)
class Number:
    """A number (whole or not, never a boolean) in [low, high] (or [low, high) with
    `high_open`); finite unless `finite` is False."""

    low: float = -math.inf
    high: float = math.inf
    high_open: bool = False
    finite: bool = True

    def check(self, value: Any, where: str, context: Mapping[str, Any]) -> None:
        if not self.finite and isinstance(value, float) and not math.isfinite(value):
            return  # NaN or an infinity, where they are allowed
        if (not _is_number(value) or not _is_finite(value) or value < self.low
                or value > self.high or (self.high_open and value == self.high)):
            raise _Problem(where, f"must be {self._range()}, got {describe_value(value)}")

    def _range(self) -> str:
        if self.low == -math.inf and self.high == math.inf:
            return "a finite number" if self.finite else "a number"
        if self.high == math.inf:
            return f"a finite number of at least {self.low:g}"
        return f"a number in [{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


@dataclass(frozen=True)
class Flag:
    """true or false."""

    def check(self, value: Any, where: str, context: Mapping[str, Any]) -> None:
        if not isinstance(value, bool):
            raise _Problem(where, f"must be true or false, got {describe_value(value)}")


@dataclass(frozen=True)
class Nullable:
    """null, or a value of `spec`."""

    spec: Any

    def check(self, value: Any, where: str, context: Mapping[str, Any]) -> None:
        if value is None:
            return
        try:
            self.spec.check(value, where, context)
        except _Problem as problem:
            wanted, got = problem.message.rpartition(", got ")[::2]
            if problem.where != where or not wanted.startswith("must be "):
                raise
            raise _Problem(where, f"{wanted} or null, got {got}") from None


@dataclass(frozen=True)
class OneOf:
    """A value of any of `specs` (the first one's problem is reported)."""

    specs: tuple

    def check(self, value: Any, where: str, context: Mapping[str, Any]) -> None:
        first = None
        for spec in self.specs:
            try:
                spec.check(value, where, context)
                return
            except _Problem as problem:
                first = first or problem
        raise first


@dataclass(frozen=True)
class ListOf:
    """A list of `item`s. `length` is an exact length, or the name of one in the context
    (skipped when the context lacks it); `unique` refuses repeated items."""

    item: Any
    length: int | str | None = None
    min_length: int = 0
    max_length: int | None = None
    unique: bool = False

    def check(self, value: Any, where: str, context: Mapping[str, Any]) -> None:
        length = context.get(self.length) if isinstance(self.length, str) else self.length
        if not isinstance(value, list):
            wanted = "a list" if length is None else f"a list of {length} items"
            raise _Problem(where, f"must be {wanted}, got {describe_value(value)}")
        if length is not None and len(value) != length:
            raise _Problem(where, f"must be a list of {length} items, got "
                                  f"{describe_value(value)}")
        if len(value) < self.min_length:
            raise _Problem(where, f"must be a list of at least {self.min_length} items, got "
                                  f"{describe_value(value)}")
        if self.max_length is not None and len(value) > self.max_length:
            raise _Problem(where, f"must be a list of at most {self.max_length:,} items, got "
                                  f"{describe_value(value)}")
        for index, item in enumerate(value):
            self.item.check(item, _join(where, index), context)
        if self.unique and len({json.dumps(item) for item in value}) != len(value):
            raise _Problem(where, "must not repeat an item")


@dataclass(frozen=True)
class Shape:
    """An image shape: a list of 1 to 3 positive whole numbers with at most `max_values`
    values in all."""

    max_values: int = MAX_IMAGE_VALUES

    def check(self, value: Any, where: str, context: Mapping[str, Any]) -> None:
        ListOf(Whole(1, self.max_values), min_length=1, max_length=3).check(
            value, where, context)
        if math.prod(value) > self.max_values:
            raise _Problem(where, f"must describe at most {self.max_values:,} values, got "
                                  f"{' x '.join(map(str, value))}")


@dataclass(frozen=True)
class Field:
    """A field of a `Record`: its spec, and whether it must be present."""

    spec: Any
    required: bool = True


def optional(spec: Any) -> Field:
    """A field that may be left out (but must fit `spec` when present)."""
    return Field(spec, required=False)


@dataclass(frozen=True)
class Record:
    """A JSON object with named fields (a spec, or a `Field` for an optional one).

    Fields not named are refused when `closed`; otherwise they are allowed, and checked
    against `rest` when it is given. `length` names a context entry that the number of
    entries must equal: `per_class` holds one entry per class.
    """

    fields: Mapping[str, Any] = field(default_factory=dict)
    closed: bool = False
    rest: Any = None
    length: str | None = None

    def check(self, value: Any, where: str, context: Mapping[str, Any]) -> None:
        if not isinstance(value, dict):
            raise _Problem(where, f"must be an object, got {describe_value(value)}")
        for name, entry in self.fields.items():
            entry = entry if isinstance(entry, Field) else Field(entry)
            if name in value:
                entry.spec.check(value[name], _join(where, name), context)
            elif entry.required:
                raise _Problem(_join(where, name), "is missing")
        for name, item in value.items():
            if name in self.fields:
                continue
            if self.closed:
                raise _Problem(where, f"has an unknown field {name!r}")
            if self.rest is not None:
                self.rest.check(item, _join(where, name), context)
        length = context.get(self.length) if self.length else None
        if length is not None and len(value) != length:
            raise _Problem(where, f"must have {length} entries, one per class, got "
                                  f"{len(value)}")


def _model_names() -> tuple[str, ...]:
    from mnistlab.models import MODEL_CLASSES

    return tuple(MODEL_CLASSES)


# ------------------------------------------------------------------------------ the records

TIME = Text()  # ISO 8601 as written by mnistlab; only displayed, so any text is accepted
MODEL_NAME = Text(choices=_model_names)

RUN_INFO = Record({
    "status": Text(choices=STATUSES),
    "model": MODEL_NAME,
    "preset": optional(Nullable(Text())),
    "started": optional(TIME),
    "resumed": optional(TIME),
    "finished": optional(TIME),
    "error": optional(Text()),
    "step": optional(Whole()),
})

DATA_RECORD = Record({
    "name": optional(Text()),
    "source": optional(Text()),
    "verified": optional(Flag()),
    "checksums": optional(Record(rest=Text())),
    "class_names": optional(ListOf(Text(nonempty=True), min_length=2, max_length=MAX_CLASSES,
                                   unique=True)),
    "train_examples": optional(Whole()),
    "validation_examples": optional(Whole()),
    "test_examples": optional(Whole()),
})

CONFIG = Record({
    "model": MODEL_NAME,
    "model_config": optional(Record()),  # each model checks its own options
    "preset": optional(Nullable(Text())),
    "dataset": optional(Text(nonempty=True)),
    "seed": optional(Whole(0, 2**32 - 1)),
    "validation_split": optional(Number(0.0, 1.0, high_open=True)),
    "limit_train": optional(Nullable(Whole(1, 10**9))),
    "limit_test": optional(Nullable(Whole(1, 10**9))),
    "versions": optional(Record(rest=Text())),
    "data": optional(DATA_RECORD),
}, closed=True)

FRACTION = Number(0.0, 1.0)
SECONDS = Number(0.0)
CLASS_SCORES = Record({"precision": FRACTION, "recall": FRACTION, "f1": FRACTION,
                       "support": Whole()})

METRICS = Record({
    "test_accuracy": optional(FRACTION),
    "test_loss": optional(Number(0.0)),
    "test_examples": optional(Whole()),
    "val_accuracy": optional(FRACTION),
    "val_loss": optional(Number(0.0)),
    "per_class": optional(Record(rest=CLASS_SCORES, length="classes")),
    "confusion_matrix": optional(ListOf(ListOf(Whole(), length="classes"), length="classes")),
    "train_seconds": optional(SECONDS),
    "predict_seconds": optional(SECONDS),
    "train_examples_per_second": optional(SECONDS),
    "parameters": optional(Whole()),
    "model_bytes": optional(Whole()),
})

# A history record: a step and an epoch, then metrics. A diverging run records NaN or an
# infinity before it stops, so those are numbers here too.
HISTORY_RECORD = Record({"step": Whole(1), "epoch": Whole(0)},
                        rest=Nullable(Number(finite=False)))

FITTED = Record({
    "classes_": optional(ListOf(OneOf((Whole(), Text())), min_length=2,
                                max_length=MAX_CLASSES, unique=True)),
    "image_shape_": optional(Shape()),
    "num_steps_": optional(Whole()),
    "examples_seen_": optional(Whole()),
})

# Every saved model's document; the forest's also holds its file's SHA-256, an ensemble's
# its members (each a directory inside the ensemble's) instead of settings.
MODEL_DOCUMENT = Record({"model": MODEL_NAME, "format_version": Whole(1),
                         "params": Record(), "fitted": FITTED})
FOREST_DOCUMENT = Record({"model": MODEL_NAME, "format_version": Whole(1),
                          "params": Record(), "fitted": optional(FITTED),
                          "sha256": Text(nonempty=True)})
ENSEMBLE_DOCUMENT = Record({
    "model": MODEL_NAME, "format_version": Whole(1),
    "members": ListOf(Record({"directory": Text(nonempty=True), "model": MODEL_NAME}),
                      min_length=1, max_length=1000),
    "classes": optional(ListOf(OneOf((Whole(), Text())), min_length=2,
                               max_length=MAX_CLASSES, unique=True)),
})
MODEL_DOCUMENTS = {"random-forest": FOREST_DOCUMENT, "ensemble": ENSEMBLE_DOCUMENT}


def model_document_schema(model_name: str) -> Record:
    """The schema of the document a saved `model_name` model keeps."""
    return MODEL_DOCUMENTS.get(model_name, MODEL_DOCUMENT)


# ------------------------------------------------------------------------------ checking


def check_record(schema: Any, data: Any, source: str | Path,
                 context: Mapping[str, Any] | None = None) -> Any:
    """Check `data` (read from `source`) against `schema`; return it unchanged.

    Raises `RunError` "<source>: <field> <problem>" for the first field that does not fit.
    """
    try:
        schema.check(data, "", context or {})
    except _Problem as problem:
        where = f"{problem.where} " if problem.where else ""
        raise RunError(f"{source}: {where}{problem.message}") from None
    return data


def parse_json(text: str | bytes, source: str | Path) -> Any:
    """Parse JSON text read from `source`; `RunError` naming it when the text is not JSON
    (or nests too deeply to be a record)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        detail = " ".join(str(error).split()) if isinstance(error, ValueError) else (
            "nested too deeply")
        raise RunError(f"{source} cannot be read: {detail[:200]}") from None


def read_record_text(path: Path, limit: int | None = None) -> bytes:
    """The bytes of a record file of at most `limit` bytes (default `MAX_RECORD_BYTES`);
    `RunError` naming the file when it is missing, not a regular file, unreadable or
    larger."""
    import os
    import stat

    path = Path(path)
    limit = MAX_RECORD_BYTES if limit is None else limit
    try:
        # O_NONBLOCK: a named pipe in a record's place must not block the reader.
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise RunError(f"{path} is missing") from None
    except OSError as error:
        raise RunError(f"{path} cannot be read: {error.strerror or error}") from None
    with os.fdopen(descriptor, "rb") as file:
        try:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise RunError(f"{path} is not a regular file")
            data = file.read(limit + 1)
        except OSError as error:
            raise RunError(f"{path} cannot be read: {error.strerror or error}") from None
    if len(data) > limit:
        raise RunError(f"{path} is larger than {limit:,} bytes: not a record")
    return data


def read_record(path: Path, schema: Any, context: Mapping[str, Any] | None = None) -> Any:
    """Read a JSON record file and check it against `schema` (see `check_record`)."""
    return check_record(schema, parse_json(read_record_text(path), path), path, context)
