"""`import mnistlab`: the public names, imported lazily, and docs/python-api.md's examples."""

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mnistlab
from mnistlab.errors import ConfigError
from mnistlab.models.forest import RandomForest
from mnistlab.models.softmax import SoftmaxRegression

DOC = Path(__file__).resolve().parent.parent / "docs" / "python-api.md"


def test_import_does_not_load_tensorflow():
    code = ("import sys, mnistlab; mnistlab.make_config; mnistlab.load_run; "
            "heavy = [m for m in ('tensorflow', 'keras') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stdout + finished.stderr


@pytest.mark.parametrize("name", [name for name in mnistlab.__all__ if name != "__version__"])
def test_every_public_name_resolves_with_a_docstring(name):
    value = getattr(mnistlab, name)
    if isinstance(value, dict):  # the DATASETS and PRESETS registries
        assert value
    else:
        assert (value.__doc__ or "").strip(), f"mnistlab.{name} has no docstring"
    assert name in dir(mnistlab)


def test_unknown_names_and_submodules():
    with pytest.raises(AttributeError, match="has no attribute 'train'"):
        mnistlab.train  # noqa: B018
    from mnistlab import data  # a submodule is still imported as one

    assert data.load_dataset is mnistlab.load_dataset
    assert mnistlab.__version__


def test_make_model_from_a_preset_and_options():
    model = mnistlab.make_model(preset="tutorial-v3", seed=4)
    assert isinstance(model, SoftmaxRegression)
    assert (model.batch_size, model.init, model.seed) == (300, "normal", 4)
    assert not hasattr(model, "classes_")  # unfitted
    forest = mnistlab.make_model("random-forest", n_estimators=7)
    assert isinstance(forest, RandomForest) and forest.n_estimators == 7
    # A length in steps replaces the preset's epochs, as --steps does on the command line.
    cnn = mnistlab.make_model(preset="cnn-fast", num_epochs=1)
    assert (cnn.num_epochs, cnn.num_steps, cnn.batch_norm) == (1, None, True)


@pytest.mark.parametrize(("arguments", "message"), [
    ({"model": "softmax", "n_estimators": 3}, "option 'n_estimators' does not apply"),
    ({"preset": "tutorial-v9"}, "did you mean tutorial-v3"),
    ({"model": "random-forest", "preset": "tutorial-v1"}, "is for model 'softmax'"),
    ({"model": "softmax", "batch_size": 0}, "batch_size"),
    ({"model": "ensemble"}, "an ensemble is built from fitted models"),
    ({}, "name a model or a preset"),
])
def test_make_model_refusals(arguments, message):
    with pytest.raises(ConfigError, match=message):
        mnistlab.make_model(**arguments)


def test_make_model_fits_like_an_estimator(toy_dataset):
    model = mnistlab.make_model("softmax", num_epochs=3, batch_size=50)
    assert model.fit(toy_dataset.train_images, toy_dataset.train_labels) is model
    assert model.score(toy_dataset.test_images, toy_dataset.test_labels) > 0.9


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.DOTALL | re.MULTILINE)


@pytest.mark.realdata
@pytest.mark.slow
def test_python_api_doc_examples_run(mnist_dir, tmp_path, monkeypatch, capsys):
    """Every python block of docs/python-api.md, in order, in one namespace, in a fresh
    directory, with MNISTLAB_DATA_DIR at the real MNIST (the examples limit themselves to
    5,000 training and 1,000 test images). About 45 s on two cores."""
    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 8
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(mnist_dir))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__python_api_doc__"}
    start = time.perf_counter()
    for number, block in enumerate(blocks, 1):
        try:
            exec(compile(block, f"docs/python-api.md block {number}", "exec"), namespace)
        except Exception as error:
            pytest.fail(f"block {number} of docs/python-api.md failed: {error!r}\n{block}")
    elapsed = time.perf_counter() - start
    output = capsys.readouterr().out
    assert "refused: batch_size" in output
    assert namespace["check"].passed
    assert namespace["result"].metrics["test_accuracy"] > 0.8
    assert namespace["checked"].accuracy >= 2 / 3
    assert (tmp_path / "runs" / "reproduction" / "report.html").is_file()
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert elapsed < 120, f"the examples took {elapsed:.0f} s"
