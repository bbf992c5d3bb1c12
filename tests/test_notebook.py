"""notebooks/tutorial.ipynb: stored without outputs, and runs top to bottom on a subset."""

import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "tutorial.ipynb"


def test_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)
    assert "without outputs" in notebook.cells[0].source


@pytest.mark.realdata
@pytest.mark.slow
def test_notebook_runs_top_to_bottom(mnist_dir, tmp_path, monkeypatch):
    """Executed in a fresh kernel on 2,000 training images with 200 eager-loop and CNN steps
    (20 to 40 s on two cores, kernel start included); it must draw its figures and keep the
    eager GradientTape loop a learner can edit."""
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(mnist_dir))
    monkeypatch.setenv("MNISTLAB_NOTEBOOK_LIMIT", "2000")
    monkeypatch.setenv("MNISTLAB_NOTEBOOK_STEPS", "200")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    start = time.perf_counter()
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3").execute(
        cwd=str(tmp_path))
    elapsed = time.perf_counter() - start
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    outputs = [output for cell in code for output in cell.outputs]
    figures = [output for output in outputs if "image/png" in output.get("data", {})]
    text = "".join(output.get("text", "") for output in outputs)
    assert not [output for output in outputs if output.output_type == "error"]
    assert len(figures) >= 6
    assert any("tf.GradientTape()" in cell.source and "tf.function" not in cell.source
               for cell in code)
    for expected in ("random forest, test accuracy", "eager softmax regression, test accuracy",
                     "compiled", "cnn-fast, 200 steps"):
        assert expected in text
    assert not list(tmp_path.iterdir()), "the notebook must not write files"
    assert elapsed < 300, f"the notebook took {elapsed:.0f} s"
