"""`mnistlab predict --labels-from-dirs/--labels` and `evaluate_labelled_files`: a trained
model on a user's own labelled images."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnistlab.cli import main
from mnistlab.config import make_config
from mnistlab.errors import MnistlabError
from mnistlab.experiment import train_and_evaluate
from mnistlab.predict import evaluate_labelled_files, plot_misclassified_files, read_labels_csv
from mnistlab.runs import load_model

from shapes import CLASS_NAMES, draw_shape

FIXTURES = Path(__file__).parent / "fixtures" / "digits"


def save_shape(path: Path, kind: int, seed: int) -> Path:
    """A shape as a person would supply it: big, dark ink on light paper."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ink = np.asarray(draw_shape(kind, np.random.default_rng(seed), size=200))
    Image.fromarray(255 - ink).convert("RGB").save(path)
    return path


@pytest.fixture
def shape_folders(tmp_path):
    """mine/zero/ and mine/one/ with two shapes each, one 'one' filed under zero/ by mistake,
    a stray image directly in mine/, a folder named after no class, and an unreadable file."""
    root = tmp_path / "mine"
    for kind, folder in ((0, "zero"), (1, "one")):
        for seed in (1, 2):
            save_shape(root / folder / f"{folder}-{seed}.png", kind, seed)
    save_shape(root / "zero" / "actually-one.png", 1, 3)
    save_shape(root / "stray.png", 2, 4)
    save_shape(root / "banana" / "b.png", 3, 5)
    (root / "one" / "notes.png").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def shapes_model(shapes_run):
    return load_model(shapes_run)


def by_name(evaluation):
    return {row.path.name: row for row in evaluation.files}


def test_labels_from_folders(shapes_model, shape_folders):
    evaluation = evaluate_labelled_files(shapes_model, shape_folders, CLASS_NAMES)
    rows = by_name(evaluation)
    assert set(rows) == {"zero-1.png", "zero-2.png", "one-1.png", "one-2.png",
                         "actually-one.png", "stray.png", "b.png", "notes.png"}
    assert [row.path.name for row in evaluation.misclassified] == ["actually-one.png"]
    assert rows["actually-one.png"].label == "zero"
    assert rows["actually-one.png"].prediction == "one"
    assert rows["actually-one.png"].label_probability < rows["actually-one.png"].probability
    assert rows["one-1.png"].correct and rows["one-1.png"].image.shape == (28, 28)
    # A file directly in the given folder takes that folder's name, which is no class here.
    assert "folder 'mine' is not named after a class" in rows["stray.png"].error
    assert "folder 'banana'" in rows["b.png"].error
    assert "notes.png" in rows["notes.png"].error
    assert {row.path.name for row in evaluation.failed} == {"stray.png", "b.png", "notes.png"}
    assert len(evaluation.evaluated) == 5
    assert evaluation.accuracy == pytest.approx(4 / 5)
    matrix = evaluation.confusion_matrix
    assert matrix.shape == (10, 10) and matrix.sum() == 5
    assert matrix[0, 0] == 2 and matrix[1, 1] == 2 and matrix[0, 1] == 1
    data = evaluation.to_dict()
    assert data["accuracy"] == evaluation.accuracy and data["misclassified"] == 1
    assert json.loads(json.dumps(data))["confusion_matrix"][0][1] == 1


def test_folders_may_be_named_by_class_index(shapes_model, tmp_path):
    save_shape(tmp_path / "mine" / "0" / "a.png", 0, 1)
    save_shape(tmp_path / "mine" / "1" / "phone" / "b.png", 1, 2)  # the first folder counts
    evaluation = evaluate_labelled_files(shapes_model, [tmp_path / "mine"], CLASS_NAMES)
    assert [(row.label, row.prediction) for row in evaluation.files] == [
        ("zero", "zero"), ("one", "one")]
    assert evaluation.accuracy == 1.0


def test_a_file_given_by_itself_takes_its_folders_name(shapes_model, shape_folders):
    evaluation = evaluate_labelled_files(
        shapes_model, [shape_folders / "one" / "one-1.png", shape_folders / "zero"], CLASS_NAMES)
    assert [(row.path.name, row.label) for row in evaluation.files] == [
        ("one-1.png", "one"), ("actually-one.png", "zero"), ("zero-1.png", "zero"),
        ("zero-2.png", "zero")]


def test_labels_from_csv(shapes_model, shape_folders, tmp_path):
    csv_file = shape_folders / "labels.csv"
    csv_file.write_text("file,label\n"
                        "zero/zero-1.png,zero\n"
                        "one-2.png,1\n"                # a bare name, a class index
                        "zero/actually-one.png,one\n"  # the CSV corrects the folder
                        "stray.png,two\n"
                        "banana/b.png,banana\n")
    evaluation = evaluate_labelled_files(shapes_model, shape_folders, CLASS_NAMES,
                                         labels=csv_file)
    rows = by_name(evaluation)
    assert rows["zero-1.png"].label == "zero" and rows["one-2.png"].label == "one"
    assert rows["actually-one.png"].correct
    assert rows["stray.png"].label == "two"
    assert "label 'banana' is not one of the classes" in rows["b.png"].error
    assert f"no label for this file in {csv_file}" in rows["zero-2.png"].error
    assert {row.path.name for row in evaluation.evaluated} == {
        "zero-1.png", "one-2.png", "actually-one.png", "stray.png"}


def test_labels_from_a_mapping_relative_to_the_given_folder(shapes_model, shape_folders):
    evaluation = evaluate_labelled_files(
        shapes_model, shape_folders / "one", CLASS_NAMES,
        labels={"one-1.png": "one", Path("one-2.png"): "one", "notes.png": "one"})
    assert [row.label for row in evaluation.evaluated] == ["one", "one"]
    assert evaluation.accuracy == 1.0 and len(evaluation.failed) == 1


def test_read_labels_csv_refuses_bad_rows(tmp_path):
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("a.png,1\n\nb/c.png,2\n")
    assert read_labels_csv(csv_file) == {Path("a.png"): "1", tmp_path / "b" / "c.png": "2"}
    csv_file.write_text("a.png,1\nb.png\n")
    with pytest.raises(MnistlabError, match=r"labels.csv, line 2: expected 'file,label'"):
        read_labels_csv(csv_file)
    csv_file.write_text("a.png,1\na.png,2\n")
    with pytest.raises(MnistlabError, match="line 2: a.png is listed again"):
        read_labels_csv(csv_file)
    with pytest.raises(MnistlabError, match="cannot read the labels"):
        read_labels_csv(tmp_path / "missing.csv")


def test_nothing_to_evaluate_is_an_error(shapes_model, shape_folders):
    with pytest.raises(MnistlabError, match="no labelled image could be evaluated"):
        evaluate_labelled_files(shapes_model, shape_folders / "banana", CLASS_NAMES)


def test_misclassified_figure(shapes_model, shape_folders):
    evaluation = evaluate_labelled_files(shapes_model, shape_folders, CLASS_NAMES)
    figure = plot_misclassified_files(evaluation)
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert len(titles) == 1 and "actually-one.png" in titles[0] and "true zero" in titles[0]
    assert "1 of 5" in figure.get_suptitle()


def run_cli(arguments):
    try:
        return main([str(argument) for argument in arguments])
    except SystemExit as exit_info:
        return exit_info.code


def test_cli_labels_from_dirs(shapes_run, shape_folders, tmp_path, capsys):
    figure = tmp_path / "wrong.png"
    code = run_cli(["predict", shapes_run, shape_folders, "--labels-from-dirs",
                    "--misclassified", figure])
    output = capsys.readouterr()
    assert code == 1  # three files could not be evaluated
    assert len(output.err.strip().splitlines()) == 3 and "Traceback" not in output.err
    assert "confusion matrix" in output.out
    assert "accuracy 0.8000 (4 of 5 images right; 3 files skipped)" in output.out
    assert Image.open(figure).size[0] > 100
    # The figure is not replaced without --overwrite, before anything is computed.
    assert run_cli(["predict", shapes_run, shape_folders, "--labels-from-dirs",
                    "--misclassified", figure]) == 2
    assert "already exists" in capsys.readouterr().err


def test_cli_labels_csv_as_json(shapes_run, shape_folders, tmp_path, capsys):
    (tmp_path / "labels.csv").write_text("mine/one/one-1.png,one\nmine/zero/zero-1.png,zero\n")
    code = run_cli(["predict", shapes_run, shape_folders / "one" / "one-1.png",
                    shape_folders / "zero" / "zero-1.png", "--labels", tmp_path / "labels.csv",
                    "--format", "json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["accuracy"] == 1.0 and data["evaluated"] == 2
    assert [row["label"] for row in data["files"]] == ["one", "zero"]


def test_cli_labelled_csv_output(shapes_run, shape_folders, tmp_path):
    output = tmp_path / "rows.csv"
    run_cli(["predict", shapes_run, shape_folders / "zero", "--labels-from-dirs",
             "--format", "csv", "--output", output])
    lines = output.read_text().splitlines()
    assert lines[0] == "path,label,prediction,probability,label_probability,correct,error"
    assert sum(line.endswith(",0,") for line in lines) == 1  # actually-one.png


def test_cli_refusals(shapes_run, shape_folders, capsys):
    assert run_cli(["predict", shapes_run, shape_folders, "--misclassified", "x.png"]) == 2
    assert "--misclassified needs --labels-from-dirs or --labels" in capsys.readouterr().err
    assert run_cli(["predict", shapes_run, shape_folders, "--labels-from-dirs",
                    "--labels", "labels.csv"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.realdata
def test_real_model_on_the_fixture_digits(mnist_dir, tmp_path, capsys):
    """A softmax trained on 10,000 real MNIST images gets most of the fixture digits (named
    '<digit>_...') right when they are filed in folders 0..9."""
    config = make_config(preset="tutorial-v2", limit_train=10000, limit_test=1000)
    run_dir = train_and_evaluate(config, tmp_path / "run", data_dir=mnist_dir,
                                 progress=False).run_dir
    digits = tmp_path / "digits"
    for image in sorted(FIXTURES.iterdir()):
        if image.name[0].isdigit():
            (digits / image.name[0]).mkdir(parents=True, exist_ok=True)
            shutil.copy(image, digits / image.name[0] / image.name)
    evaluation = evaluate_labelled_files(load_model(run_dir), digits, [str(k) for k in range(10)])
    assert not evaluation.failed
    assert len(evaluation.evaluated) >= 40
    assert evaluation.accuracy >= 0.85
    assert evaluation.confusion_matrix.sum() == len(evaluation.evaluated)
    figure = tmp_path / "wrong.png"
    assert run_cli(["predict", run_dir, digits, "--labels-from-dirs",
                    "--misclassified", figure]) == 0
    assert f"accuracy {evaluation.accuracy:.4f}" in capsys.readouterr().out
    assert figure.stat().st_size > 1000
