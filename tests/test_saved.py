"""The saved-model document shared by every model: written whole, read through its schema."""

import json
import os

import pytest

from mnistlab.errors import RunError
from mnistlab.models._saved import read_model_document, write_model_document

FITTED = {"num_steps_": 3, "examples_seen_": 96, "classes_": list(range(10)),
          "image_shape_": [28, 28]}


def test_round_trip_and_refusals(tmp_path):
    path = tmp_path / "params.json"
    write_model_document(path, "softmax", params={"batch_size": 32}, fitted=FITTED)
    assert read_model_document(path, "softmax")["params"] == {"batch_size": 32}
    with pytest.raises(RunError, match="not a saved cnn model"):
        read_model_document(path, "cnn")
    path.write_text('{"model": "softmax", "format_version": 99}')
    with pytest.raises(RunError, match="format 1"):
        read_model_document(path, "softmax")
    path.write_text("[broken")
    with pytest.raises(RunError, match="cannot read"):
        read_model_document(path, "softmax")
    with pytest.raises(RunError, match="cannot read"):
        read_model_document(tmp_path / "missing.json", "softmax")


@pytest.mark.parametrize("change, message", [
    ({"params": [1]}, "params must be an object, got a list of 1 item"),
    ({"fitted": None}, "fitted must be an object, got null"),
    ({"fitted": {**FITTED, "classes_": 10}}, "fitted.classes_ must be a list, got a number"),
    ({"fitted": {**FITTED, "classes_": [0]}}, "fitted.classes_ must be a list of at least 2"),
    ({"fitted": {**FITTED, "classes_": [0, 0, 1]}}, "fitted.classes_ must not repeat"),
    ({"fitted": {**FITTED, "classes_": [0, None]}}, "fitted.classes_[1] must be a whole"),
    ({"fitted": {**FITTED, "image_shape_": [0, 28]}}, "fitted.image_shape_[0] must be a whole "
                                                      "number from 1"),
    ({"fitted": {**FITTED, "image_shape_": [28, -1]}}, "fitted.image_shape_[1] must be"),
    ({"fitted": {**FITTED, "image_shape_": "28x28"}}, "fitted.image_shape_ must be a list"),
    ({"fitted": {**FITTED, "image_shape_": []}}, "must be a list of at least 1 items"),
    ({"fitted": {**FITTED, "image_shape_": [1, 1, 1, 1]}}, "at most 3 items"),
    ({"fitted": {**FITTED, "image_shape_": [100_000, 100_000]}}, "must describe at most "
                                                                 "16,777,216 values"),
    ({"fitted": {**FITTED, "examples_seen_": -1}}, "fitted.examples_seen_ must be a whole"),
])
def test_every_field_is_checked_in_one_line(tmp_path, change, message):
    path = tmp_path / "params.json"
    write_model_document(path, "softmax", **{"params": {}, "fitted": FITTED, **change})
    with pytest.raises(RunError) as caught:
        read_model_document(path, "softmax")
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_fields(tmp_path):
    path = tmp_path / "params.json"
    write_model_document(path, "softmax", params={})
    with pytest.raises(RunError, match="params.json: fitted is missing"):
        read_model_document(path, "softmax")
    # The forest's documents before `fitted` existed are still read; its checksum is not
    # optional.
    write_model_document(path, "random-forest", params={}, sha256="00")
    assert read_model_document(path, "random-forest")["sha256"] == "00"
    write_model_document(path, "random-forest", params={}, fitted=FITTED)
    with pytest.raises(RunError, match="params.json: sha256 is missing"):
        read_model_document(path, "random-forest")


@pytest.mark.parametrize("members, message", [
    ([], "members must be a list of at least 1 items"),
    ("member-0", "members must be a list"),
    ([{"directory": 3, "model": "softmax"}], "members[0].directory must be a non-empty text"),
    ([{"directory": "", "model": "softmax"}], "members[0].directory must be a non-empty text"),
    ([{"directory": "member-0", "model": "sofmax"}], "members[0].model must be one of"),
    ([{"model": "softmax"}], "members[0].directory is missing"),
])
def test_ensemble_documents(tmp_path, members, message):
    path = tmp_path / "ensemble.json"
    write_model_document(path, "ensemble", members=members, classes=list(range(10)))
    with pytest.raises(RunError) as caught:
        read_model_document(path, "ensemble")
    assert message in str(caught.value)


def test_special_and_hostile_files(tmp_path):
    path = tmp_path / "params.json"
    os.mkfifo(path)
    with pytest.raises(RunError, match="cannot read .*params.json: is not a regular file"):
        read_model_document(path, "softmax")  # without waiting for a writer
    path.unlink()
    path.write_text("[" * 100_000)
    with pytest.raises(RunError, match="nested too deeply"):
        read_model_document(path, "softmax")
    path.write_text(json.dumps({"model": "softmax", "format_version": True, "params": {},
                                "fitted": FITTED}))
    with pytest.raises(RunError, match="format_version must be a whole number"):
        read_model_document(path, "softmax")  # True == 1 in Python, not in the schema
