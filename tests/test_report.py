"""The reproduction report and the figures that say something: a caveat on a subset, two
sentences per model, the curves overlaid, normalised confusion matrices, the environment, a
layout that reads on a phone (in a real headless Chromium); weights that show what training
changed; probabilities that tell the misclassified images apart."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from mnistlab import plots
from mnistlab.config import PRESETS
from mnistlab.report import initial_weights, report_table, subset_caveat

CHROMIUM = os.environ.get("MNISTLAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def reproduction(tmp_path_factory):
    """`reproduce` of the forest and v3 on a subset of the toy data: its output directory."""
    from mnistlab.data import write_dataset
    from mnistlab.experiment import reproduce

    from conftest import make_toy_arrays

    root = tmp_path_factory.mktemp("report")
    train_images, train_labels, test_images, test_labels = make_toy_arrays()
    data = write_dataset(root / "toy", train_images=train_images, train_labels=train_labels,
                         test_images=test_images, test_labels=test_labels)
    reproduce(root / "repro", dataset_name=str(data), presets=("tutorial-rf", "tutorial-v3"),
              limit_train=300, limit_test=50, progress=False)
    return root / "repro"


# ------------------------------------------------------------------------------ the report


def test_report_opens_with_the_subset_caveat(reproduction):
    summary = json.loads((reproduction / "summary.json").read_text())
    caveat = summary["caveat"]
    assert caveat.startswith("Subset:") and "first 300 training images" in caveat \
        and "first 50 test images" in caveat
    html = (reproduction / "report.html").read_text()
    assert html.index('class="caveat"') < html.index("<table")
    assert caveat.replace("'", "&#x27;") in html
    markdown = (reproduction / "report.md").read_text()
    assert markdown.index(caveat) < markdown.index("| model |")
    assert subset_caveat({"limit_train": None, "limit_test": None}) is None


def test_report_table_marks_a_subset_and_formats_numbers(reproduction):
    summary = json.loads((reproduction / "summary.json").read_text())
    header, *rows = report_table(summary["models"])
    assert header[1] == "test acc (subset)"
    assert rows[1][0] == "tutorial-v3" and rows[1][2] == "0.9103"  # the tutorial's number
    assert rows[1][5] == "7,850"
    whole = [{**item, "subset": False} for item in summary["models"]]
    assert report_table(whole)[0][1] == "test acc"


def test_report_describes_each_model_and_its_training(reproduction):
    html = (reproduction / "report.html").read_text()
    markdown = (reproduction / "report.md").read_text()
    for name in ("tutorial-rf", "tutorial-v3"):
        description = PRESETS[name].description.replace("'", "&#x27;")
        assert description in html
        assert PRESETS[name].description in markdown
    assert "Softmax (multinomial logistic) regression" in html
    assert "A random forest" in html
    assert "trained on 300 images, seed 0" in html


def test_report_figures_curves_overlaid_and_confusion_normalised(reproduction):
    figures = reproduction / "figures"
    assert sorted(path.name for path in figures.iterdir()) == [
        "curves.png", "tutorial-rf-confusion.png", "tutorial-v3-confusion.png"]
    markdown = (reproduction / "report.md").read_text()
    assert "(figures/curves.png)" in markdown
    assert "(figures/tutorial-v3-confusion.png)" in markdown
    assert "tutorial-rf/predictions.png" in markdown and "tutorial-v3/weights.png" in markdown
    html = (reproduction / "report.html").read_text()
    # The overlay, then per model: predictions, confusion (forest); + curves, weights (v3).
    assert html.count("<img ") == 1 + 3 + 5
    assert "the percentage of its test images predicted as each class" in html


def test_report_environment_comes_from_the_runs(reproduction):
    config = json.loads((reproduction / "tutorial-v3" / "config.json").read_text())
    html = (reproduction / "report.html").read_text()
    environment = html[html.index("<h2>Environment</h2>"):]
    for name, version in config["versions"].items():
        assert f"<b>{name}</b> {version}" in environment
    for file_name, digest in config["data"]["checksums"].items():
        assert f"{file_name}: <code>{digest}</code>" in environment
    assert "Trained from " in environment and "CPUs" in environment
    summary = json.loads((reproduction / "summary.json").read_text())
    assert summary["environment"]["versions"] == config["versions"]
    assert summary["environment"]["datasets"][0]["checksums"] == config["data"]["checksums"]


def test_normalised_confusion_matrix_rows_are_percentages():
    figure = plots.plot_normalized_confusion_matrix([[3, 1], [0, 4]], ["a", "b"])
    texts = sorted(text.get_text() for text in figure.axes[0].texts)
    assert texts == ["100", "25.0", "75.0"]  # the empty cell is blank
    plots.plt.close(figure)


def test_curves_overlay_uses_epochs_when_known():
    history = [{"step": step, "train_loss": 1.0 / step, "train_accuracy": 0.5}
               for step in range(1, 41)]
    figure = plots.plot_curves_overlay({"a": history, "b": history[:20], "forest": []},
                                       {"a": 10.0, "b": 5.0, "forest": None})
    loss_axes = figure.axes[0]
    assert loss_axes.get_xlabel() == "epoch"
    assert max(line.get_xdata().max() for line in loss_axes.lines) == pytest.approx(4.0)
    labels = [text.get_text() for text in figure.axes[1].get_legend().get_texts()]
    assert labels == ["a", "b"]  # a run without records has no curve
    plots.plt.close(figure)


# ------------------------------------------------------------------------------ figures


@pytest.mark.parametrize("probability, text", [
    (0.5, "0.500"), (0.93412, "0.934"), (0.995, "0.9950"), (0.99987, "0.99987"),
    (0.9999962, "0.9999962"), (1.0, ">0.9999999"), (0.0012, "1.2e-03"), (3e-9, "3.0e-09"),
])
def test_probabilities_have_the_digits_that_tell_them_apart(probability, text):
    assert plots.format_probability(probability) == text


def test_misclassified_shows_both_probabilities():
    images = np.zeros((3, 28, 28), np.uint8)
    labels = np.array([0, 1, 2])
    probabilities = np.array([[0.00012, 0.99987, 0.00001],
                              [0.99991, 0.00002, 0.00007],
                              [0.0, 0.0, 1.0]])
    figure = plots.plot_misclassified(images, labels, probabilities, ["0", "1", "2"])
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert titles == ["pred 0 0.999910\ntrue 1 2.0e-05", "pred 1 0.99987\ntrue 0 1.2e-04"]
    plots.plt.close(figure)


def test_weights_mask_greys_out_pixels_and_is_checked():
    weights = np.random.default_rng(0).normal(size=(16, 2))
    mask = np.ones(16, bool)
    mask[:4] = False
    figure = plots.plot_weights(weights, ["a", "b"], (4, 4), mask=mask)
    image = figure.axes[0].images[0].get_array()
    assert np.ma.getmaskarray(image).ravel().tolist() == (~mask).tolist()
    assert "Grey: pixels no training image inks" in figure._suptitle.get_text()
    plots.plt.close(figure)
    with pytest.raises(ValueError, match="the mask has 15 pixels"):
        plots.plot_weights(weights, ["a", "b"], (4, 4), mask=np.ones(15, bool))


def test_initial_weights_of_softmax_are_drawn_again_and_checked():
    """From a random start the figure shows weights minus their initial values; those are
    drawn again from the seed, and only kept when the never-inked pixels did not move."""
    from mnistlab.models.softmax import SoftmaxRegression

    from conftest import make_toy_arrays

    images, labels, _, _ = make_toy_arrays(train=100)
    images[:, 0, :] = 0  # the first row of pixels is never inked
    model = SoftmaxRegression(init="normal", num_steps=5, batch_size=20, seed=3)
    model.fit(images, labels)
    initial = initial_weights(model)
    assert initial is not None and np.any(initial)
    change = model.weights_ - initial
    assert np.all(change[:28] == 0) and np.any(change[28:] != 0)
    model.seed = 4  # initial weights drawn from the wrong seed do not check out
    assert initial_weights(model) is None
    zeros = SoftmaxRegression(init="zeros", num_steps=2, batch_size=20).fit(images, labels)
    assert not np.any(initial_weights(zeros))


# ------------------------------------------------------------------------------ browser


def _require_browser():
    if Path(CHROMIUM).is_file() or shutil.which(CHROMIUM):
        try:
            from playwright.sync_api import sync_playwright  # noqa: F401
            return
        except ImportError:
            reason = "Playwright is not installed (pip install -e '.[test]')"
    else:
        reason = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so the browser test must run)")
    pytest.skip(reason)


@pytest.mark.browser
@pytest.mark.parametrize("width", [390, 1280])
def test_report_reads_on_a_phone_and_a_desktop(reproduction, width):
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 844})
            page.goto((reproduction / "report.html").as_uri())
            page.wait_for_load_state("load")
            scroll_width = page.evaluate("document.documentElement.scrollWidth")
            loaded = page.evaluate(
                "[...document.images].map(image => image.complete && image.naturalWidth > 0)")
            widest = page.evaluate(
                "Math.max(...[...document.images].map(i => i.getBoundingClientRect().width))")
            caveat = page.evaluate("document.querySelector('.caveat').innerText")
        finally:
            browser.close()
    assert scroll_width <= width  # no horizontal scroll
    assert len(loaded) == 9 and all(loaded)
    assert widest <= width
    assert caveat.startswith("Subset:")
