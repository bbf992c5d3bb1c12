"""Exports agree with the run's model; bad requests are refused cleanly."""

import numpy as np
import pytest

from mnistlab.cli import main
from mnistlab.config import make_config
from mnistlab.errors import MnistlabError
from mnistlab.experiment import train_and_evaluate
from mnistlab.export import check_export, export_run, load_exported


@pytest.fixture(scope="module")
def softmax_run(tmp_path_factory):
    from shapes import make_shapes_dataset

    config = make_config("softmax", model_options={"num_epochs": 5, "init": "zeros",
                                                   "batch_size": 16})
    run_dir = tmp_path_factory.mktemp("export") / "softmax"
    return train_and_evaluate(config, run_dir, dataset=make_shapes_dataset(),
                              progress=False).run_dir


def random_images(count=64):
    return np.random.default_rng(0).integers(0, 256, (count, 28, 28), dtype=np.uint8)


@pytest.mark.parametrize("output_format, name", [("savedmodel", "saved"), ("tflite", "m.tflite"),
                                                 ("onnx", "m.onnx")])
def test_softmax_exports_agree_with_the_run(softmax_run, tmp_path, output_format, name):
    out = export_run(softmax_run, output_format, tmp_path / name)
    result = check_export(softmax_run, out, output_format, random_images())
    assert result.passed, result
    assert result.examples == 64
    probabilities = load_exported(out, output_format)(random_images(3))
    assert probabilities.shape == (3, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_forest_exports_to_onnx_and_agrees(shapes_run, tmp_path):
    out = export_run(shapes_run, "onnx", tmp_path / "forest.onnx")
    result = check_export(shapes_run, out, "onnx", random_images(200))
    assert result.passed, result


def test_check_catches_a_wrong_export(softmax_run, shapes_run, tmp_path):
    out = export_run(shapes_run, "onnx", tmp_path / "forest.onnx")
    result = check_export(softmax_run, out, "onnx", random_images(200))
    assert not result.passed


def test_refusals(shapes_run, softmax_run, tmp_path):
    # A model says which formats it offers; the forest offers ONNX only.
    with pytest.raises(MnistlabError, match=r"random-forest model cannot be exported as "
                                            r"tflite \(it offers: onnx\)"):
        export_run(shapes_run, "tflite", tmp_path / "forest.tflite")
    assert not (tmp_path / "forest.tflite").exists()
    with pytest.raises(MnistlabError, match="unknown export format"):
        export_run(softmax_run, "pickle", tmp_path / "m.pkl")
    (tmp_path / "taken.onnx").write_text("keep")
    with pytest.raises(MnistlabError, match="already exists"):
        export_run(softmax_run, "onnx", tmp_path / "taken.onnx")
    assert (tmp_path / "taken.onnx").read_text() == "keep"


def test_cli_export_with_check(softmax_run, tmp_path, capsys, monkeypatch):
    from shapes import make_shapes_dataset

    dataset = make_shapes_dataset()
    monkeypatch.setattr("mnistlab.data.load_dataset", lambda *args, **kwargs: dataset)
    code = main(["export", str(softmax_run), "--format", "savedmodel", "--out",
                 str(tmp_path / "saved"), "--check"])
    output = capsys.readouterr().out
    assert code == 0, output
    assert "check PASSED" in output and f"{len(dataset.test_images)} test images" in output


def test_cli_export_errors_are_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--format", "onnx", "--out", str(tmp_path / "x")]) == 2
    error = capsys.readouterr().err
    assert "not a run directory" in error and len(error.strip().splitlines()) == 1


def test_overwrite_only_replaces_an_earlier_export(softmax_run, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    with pytest.raises(MnistlabError, match="not a SavedModel"):
        export_run(softmax_run, "savedmodel", precious, overwrite=True)
    assert (precious / "thesis.txt").read_text() == "years of work"
    with pytest.raises(MnistlabError, match="not a file"):
        export_run(softmax_run, "tflite", precious, overwrite=True)
    first = export_run(softmax_run, "savedmodel", tmp_path / "saved")
    export_run(softmax_run, "savedmodel", first, overwrite=True)
    assert (first / "saved_model.pb").is_file()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["precious", "saved"]


@pytest.mark.parametrize("output_format", ["onnx", "tflite"])
def test_overwrite_never_replaces_an_ordinary_file(softmax_run, tmp_path, capsys,
                                                   output_format):
    notes = tmp_path / "notes.txt"
    for content in (b"my notes\n", b"\x08\x07" + bytes(300), b"", b"1234TFL"):
        notes.write_bytes(content)
        code = main(["export", str(softmax_run), "--format", output_format, "--out",
                     str(notes), "--overwrite"])
        error = capsys.readouterr().err
        assert code == 2 and error.count("\n") == 1, error
        assert f"{notes} is not " in error and error.endswith("; not replacing it\n"), error
        assert notes.read_bytes() == content


def test_overwrite_replaces_what_mnistlab_exported(softmax_run, shapes_run, tmp_path):
    onnx = export_run(shapes_run, "onnx", tmp_path / "m.onnx")  # the forest's own converter
    export_run(softmax_run, "onnx", onnx, overwrite=True)  # tf2onnx
    export_run(softmax_run, "onnx", onnx, overwrite=True)
    tflite = export_run(softmax_run, "tflite", tmp_path / "m.tflite")
    export_run(softmax_run, "tflite", tflite, overwrite=True)
    with pytest.raises(MnistlabError, match="is not a TFLite model; not replacing it"):
        export_run(softmax_run, "tflite", onnx, overwrite=True)
    with pytest.raises(MnistlabError, match="is not an ONNX model"):
        export_run(softmax_run, "onnx", tflite, overwrite=True)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["m.onnx", "m.tflite"]


def test_overwrite_of_a_savedmodel_needs_mnistlabs_marker_and_nothing_else(softmax_run,
                                                                           tmp_path):
    from mnistlab.fileio import MARKER_FILE, read_marker

    saved = export_run(softmax_run, "savedmodel", tmp_path / "saved")
    assert read_marker(saved)["kind"] == "savedmodel"
    (saved / "thesis.txt").write_text("years of work")
    with pytest.raises(MnistlabError, match="holds thesis.txt, which mnistlab did not write; "
                                            "not replacing it"):
        export_run(softmax_run, "savedmodel", saved, overwrite=True)
    (saved / "thesis.txt").unlink()
    (saved / MARKER_FILE).unlink()  # a SavedModel some other tool wrote
    with pytest.raises(MnistlabError, match="not a SavedModel mnistlab exported"):
        export_run(softmax_run, "savedmodel", saved, overwrite=True)
    assert (saved / "saved_model.pb").is_file()
