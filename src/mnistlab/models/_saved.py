"""The small JSON document every saved model keeps beside its weights: which model, which
format version, its settings; written atomically, and checked before anything is loaded."""

from __future__ import annotations

import json
from pathlib import Path

from mnistlab.errors import RunError
from mnistlab.fileio import write_text_atomic

FORMAT_VERSION = 1


def empty_save_directory(directory: str | Path) -> Path:
    """`directory` as a Path, checked to be an existing, empty directory to save a model in;
    `RunError` otherwise."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RunError(f"cannot save the model: {directory} is not a directory")
    if any(directory.iterdir()):
        raise RunError(f"cannot save the model: {directory} is not empty")
    return directory


def write_model_document(path: Path, model_name: str, **content) -> None:
    """Write `{"model", "format_version", **content}` as JSON to `path`."""
    document = {"model": model_name, "format_version": FORMAT_VERSION, **content}
    write_text_atomic(Path(path), json.dumps(document, indent=2) + "\n")


def read_model_document(path: Path, model_name: str) -> dict:
    """Read a document written by `write_model_document` for `model_name`, checked against
    its schema (`mnistlab.records.model_document_schema`: settings an object, classes a
    list, the image shape positive whole numbers, ...); `RunError` in one line if it is
    missing, broken, damaged, or belongs to another model or format version."""
    from mnistlab.records import (
        check_record,
        model_document_schema,
        parse_json,
        read_record_text,
    )

    path = Path(path)
    try:
        document = parse_json(read_record_text(path), path)
    except RunError as error:
        raise RunError(f"cannot read {path}: {str(error).removeprefix(f'{path} ')}") from None
    if (not isinstance(document, dict) or document.get("model") != model_name
            or document.get("format_version") != FORMAT_VERSION):
        raise RunError(f"{path} is not a saved {model_name} model of format {FORMAT_VERSION}")
    return check_record(model_document_schema(model_name), document, path)
