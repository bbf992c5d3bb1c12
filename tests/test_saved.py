"""The saved-model document shared by the TensorFlow models and the ensemble."""

import pytest

from mnistlab.errors import RunError
from mnistlab.models._saved import read_model_document, write_model_document


def test_round_trip_and_refusals(tmp_path):
    path = tmp_path / "params.json"
    write_model_document(path, "softmax", params={"batch_size": 32})
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
