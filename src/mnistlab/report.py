"""Figures of one run, and the reproduction report (HTML, Markdown, JSON) over several runs."""

from __future__ import annotations

import base64
import html
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnistlab import plots
from mnistlab.config import PRESETS
from mnistlab.fileio import write_text_atomic
from mnistlab.runs import Run, write_json

FIGURES = ("curves.png", "predictions.png", "confusion_matrix.png", "misclassified.png",
           "weights.png")


def write_run_figures(directory: Path, model, history: Sequence[dict], images: np.ndarray,
                      labels: np.ndarray, probabilities: np.ndarray,
                      class_names: Sequence[str], title: str = "",
                      train_images: np.ndarray | None = None) -> list[Path]:
    """Write a run's PNG figures into `directory`; returns the paths written.

    `curves.png` needs a history (the forest has none); `weights.png` needs a model with
    `weights_` of shape (features, classes) on 2-D images, and shows what training changed
    (see `initial_weights`). When the initial weights are unknown, its colours leave out the
    pixels no image of `train_images` inks (their weights never receive a gradient; without
    `train_images`, those no test image inks).
    """
    directory = Path(directory)
    predicted = np.argmax(probabilities, axis=1)
    figures = {
        "predictions.png": plots.plot_predictions(images, labels, predicted, class_names),
        "confusion_matrix.png": plots.plot_confusion_matrix(labels, predicted, class_names),
        "misclassified.png": plots.plot_misclassified(images, labels, probabilities,
                                                      class_names),
    }
    if history:
        figures["curves.png"] = plots.plot_curves(history, title=title)
    weights = getattr(model, "weights_", None)
    image_shape = tuple(getattr(model, "image_shape_", ()))
    if weights is not None and len(image_shape) == 2:
        figures["weights.png"] = _weights_figure(model, np.asarray(weights), class_names,
                                                 image_shape, images, train_images)
    written = []
    for name, figure in figures.items():
        plots.save_figure(figure, directory / name)
        written.append(directory / name)
    return written


# What each model family is, in one sentence a learner can follow.
MODEL_DESCRIPTIONS = {
    "random-forest": "A random forest: many decision trees, each grown on a random sample of "
                     "the training images and pixels, vote for the class.",
    "softmax": "Softmax (multinomial logistic) regression: a linear model with one weight per "
               "pixel and class, whose scores a softmax turns into class probabilities.",
    "mlp": "A multilayer perceptron: the pixels pass through fully connected layers of ReLU "
           "units before a softmax layer.",
    "cnn": "A convolutional network: small learned filters slide over the image, find strokes "
           "and shapes, and dense layers classify what they found.",
    "ensemble": "An ensemble: the average of its member models' class probabilities.",
}
FIGURE_CAPTIONS = {
    "curves.png": "Loss and accuracy on the training batches (and on the validation images, "
                  "when some were held out) as training went on.",
    "predictions.png": "The first test images and the class the model predicted; wrong ones "
                       "in red, with the true class.",
    "confusion.png": "Confusion matrix: for each true class (row), the percentage of its test "
                     "images predicted as each class (column). The diagonal is the per-class "
                     "accuracy.",
    "confusion_matrix.png": "Confusion matrix (counts of test images; rows true class, "
                            "columns predicted).",
    "misclassified.png": "The test images the model got wrong with the most confidence: the "
                         "predicted class and its probability, the true class and the "
                         "probability the model gave it.",
    "weights.png": "What the linear model learned: for each class, its weight for every pixel "
                   "drawn as an image (minus the weight's random initial value, when training "
                   "started from random weights); red pixels are evidence for the class, blue "
                   "against.",
}
REPORT_FIGURES_DIR = "figures"


def _count(value) -> str:
    return "" if value is None else f"{value:,}"


def subset_caveat(limits: dict) -> str | None:
    """The warning a reproduction on part of the data carries, or None on the full data."""
    parts = []
    if limits.get("limit_train"):
        parts.append(f"trained on the first {limits['limit_train']:,} training images")
    if limits.get("limit_test"):
        parts.append(f"tested on the first {limits['limit_test']:,} test images")
    if not parts:
        return None
    return (f"Subset: these models were {' and '.join(parts)}, not the full data. Their "
            "accuracies are lower and noisier than on the full data, and cannot be compared "
            "with the tutorial's numbers.")


def initial_weights(model) -> np.ndarray | None:
    """The weights (features, classes) a fitted linear model started from, or None if unknown.

    A model may record them as `initial_weights_`. Softmax regression draws them from its
    seed, so they are drawn again here as its fit drew them, and kept only if they check
    out: some pixels (the corners of MNIST) are never inked, so their weights never move,
    and the difference must be exactly zero there.
    """
    recorded = getattr(model, "initial_weights_", None)
    if recorded is not None:
        return np.asarray(recorded)
    weights = np.asarray(model.weights_)
    if getattr(model, "init", None) == "zeros":
        return np.zeros_like(weights)
    try:
        from mnistlab.models.softmax import _initial_parameters
        from mnistlab.training.seeding import derived_seeds

        init_seed = derived_seeds(model.seed, 2)[0]
        initial = np.asarray(_initial_parameters(model.init, init_seed, *weights.shape)[0])
    except (ImportError, AttributeError, TypeError, ValueError):
        return None
    if initial.shape != weights.shape or not np.any(np.all(weights == initial, axis=1)):
        return None
    return initial


def _weights_figure(model, weights: np.ndarray, class_names: Sequence[str],
                    image_shape: tuple, test_images: np.ndarray,
                    train_images: np.ndarray | None):
    """weights.png: what training changed. From a zero start, the weights themselves; from a
    random start, the weights minus their initial values when those are known, else the
    weights with the never-inked pixels (which keep their random values) greyed out."""
    initial = initial_weights(model)
    if initial is not None and not np.any(initial):
        return plots.plot_weights(weights, class_names, image_shape)
    if initial is not None:
        return plots.plot_weights(
            weights - initial, class_names, image_shape,
            title="What training changed: softmax weights minus their random initial values "
                  "(red: evidence for, blue: against).\nPixels no training image inks never "
                  "change (white)")
    inked = test_images if train_images is None else train_images
    mask = np.asarray(inked).reshape(len(inked), -1).max(axis=0) > 0
    masked = {} if train_images is not None else {
        "masked": "pixels no test image inks, left out of the colour scale (nearly all "
                  "are never inked in training either, and keep their initial weights)"}
    return plots.plot_weights(weights, class_names, image_shape, mask=mask, **masked)


@dataclass
class ReportRow:
    """One model's line in the reproduction report: its run, and the same model's runs with
    other seeds when the reproduction repeated it."""

    name: str
    run: Run
    seed_runs: Sequence[Run] = ()

    def relative_path(self, base: Path) -> Path:
        """The run directory relative to `base` when it lies inside it."""
        path = Path(self.run.path)
        return path.relative_to(base) if path.is_relative_to(base) else path

    def summary(self, base: Path) -> dict:
        """The row as JSON-ready data, the run directory relative to `base`."""
        metrics = self.run.metrics
        config = self.run.config
        published = PRESETS[self.name].published_accuracy if self.name in PRESETS else None
        accuracy = metrics.get("test_accuracy")
        data = config.get("data") if isinstance(config.get("data"), dict) else {}
        summary = {
            "name": self.name, "model": self.run.info.get("model"),
            "run_dir": str(self.relative_path(base)), "test_accuracy": accuracy,
            "tutorial_accuracy": published,
            "difference": None if published is None or accuracy is None
            else round(accuracy - published, 4),
            "test_loss": metrics.get("test_loss"), "train_seconds": metrics.get("train_seconds"),
            "predict_seconds": metrics.get("predict_seconds"),
            "parameters": metrics.get("parameters"),
            "train_examples": data.get("train_examples"),
            "test_examples": metrics.get("test_examples", data.get("test_examples")),
            "subset": bool(config.get("limit_train") or config.get("limit_test")),
        }
        if len(self.seed_runs) > 1:
            accuracies = np.array([run.metrics["test_accuracy"] for run in self.seed_runs])
            summary["seeds"] = {
                "seeds": [run.config.get("seed") for run in self.seed_runs],
                "test_accuracies": accuracies.tolist(),
                "mean": float(accuracies.mean()), "std": float(accuracies.std(ddof=1)),
                "min": float(accuracies.min()), "max": float(accuracies.max()),
                "at_or_above_tutorial": None if published is None
                else int(np.sum(accuracies >= published)),
            }
        return summary

    def description(self) -> list[str]:
        """Two sentences: what the model is, and how this run trained it."""
        model = self.run.info.get("model", "")
        what = MODEL_DESCRIPTIONS.get(model, f"A {model} model.")
        preset = PRESETS.get(self.name)
        how = preset.description if preset is not None else f"The {model} model."
        metrics, config = self.run.metrics, self.run.config
        data = config.get("data") if isinstance(config.get("data"), dict) else {}
        facts = []
        if data.get("train_examples"):
            facts.append(f"trained on {data['train_examples']:,} images")
        if config.get("seed") is not None:
            facts.append(f"seed {config['seed']}")
        if metrics.get("train_seconds") is not None:
            facts.append(f"{metrics['train_seconds']:.1f} s")
        if metrics.get("parameters") is not None:
            facts.append(f"{metrics['parameters']:,} parameters")
        if facts:
            how = f"{how} Here: {', '.join(facts)}."
        return [what, how]


def report_table(summaries: Sequence[dict]) -> list[list[str]]:
    """The report's table as rows of cells, the header first; the accuracy column says
    "(subset)" when a model used part of the data."""
    with_seeds = any("seeds" in item for item in summaries)
    accuracy = "test acc (subset)" if any(item.get("subset") for item in summaries) \
        else "test acc"
    header = ["model", accuracy, "tutorial", "diff", "train s", "params"]
    if with_seeds:
        header += ["mean ± sd over seeds", "range", ">= tutorial"]
    rows = [header]
    for item in summaries:
        row = [item["name"], _decimal(item["test_accuracy"]), _decimal(item["tutorial_accuracy"]),
               "" if item["difference"] is None else f"{item['difference']:+.4f}",
               "" if item["train_seconds"] is None else f"{item['train_seconds']:.2f}",
               _count(item["parameters"])]
        if with_seeds:
            seeds = item.get("seeds")
            if seeds is None:
                row += ["", "", ""]
            else:
                above = seeds["at_or_above_tutorial"]
                row += [f"{seeds['mean']:.4f} ± {seeds['std']:.4f}",
                        f"{seeds['min']:.4f}-{seeds['max']:.4f}",
                        "" if above is None else f"{above} of {len(seeds['seeds'])}"]
        rows.append(row)
    return rows


def _decimal(value) -> str:
    return "" if value is None else f"{value:.4f}"


def environment(runs: Sequence[Run]) -> dict:
    """Where and with what the runs were made, from their config.json and run.json: package
    versions, dates, the dataset's source and checksums; and the machine writing the report
    (the runs do not record theirs; a reproduction writes its report where it trained)."""
    versions: dict[str, list[str]] = {}
    datasets: dict[str, dict] = {}
    times = []
    for run in runs:
        for name, version in (run.config.get("versions") or {}).items():
            versions.setdefault(name, [])
            if version not in versions[name]:
                versions[name].append(version)
        data = run.config.get("data")
        if isinstance(data, dict) and data.get("name") is not None:
            datasets.setdefault(str(data.get("name")), {
                "name": data.get("name"), "source": data.get("source"),
                "verified": data.get("verified"), "checksums": data.get("checksums") or {}})
        times += [run.info[key] for key in ("started", "finished")
                  if isinstance(run.info.get(key), str)]
    return {
        "versions": {name: ", ".join(values) for name, values in versions.items()},
        "dates": {"first started": min(times), "last finished": max(times)} if times else {},
        "machine": {"platform": platform.platform(), "processor": platform.machine(),
                    "cpus": os.cpu_count(), "python": platform.python_version()},
        "datasets": list(datasets.values()),
    }


def _figure_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _html_figure(path: Path, alt: str, caption: str) -> str:
    return (f"<figure>{_figure_tag(path, alt)}<figcaption>{html.escape(caption)}"
            "</figcaption></figure>")


def steps_per_epoch(run: Run) -> float | None:
    """Training steps per pass over the training images (for curves in epochs)."""
    options = run.config.get("model_config") or {}
    data = run.config.get("data") if isinstance(run.config.get("data"), dict) else {}
    batch, examples = options.get("batch_size"), data.get("train_examples")
    if isinstance(batch, int) and batch > 0 and isinstance(examples, int) and examples > 0:
        return examples / batch
    return None


def write_report_figures(out_dir: Path, rows: Sequence[ReportRow]) -> dict[str, Path]:
    """The report's own figures, under `out_dir/figures/`: the training curves of every
    model with a history overlaid (`curves.png`), and each model's confusion matrix as
    percentages of the true class (`<name>-confusion.png`). Returns name -> path."""
    directory = Path(out_dir) / REPORT_FIGURES_DIR
    directory.mkdir(exist_ok=True)
    written = {}
    histories = {row.name: row.run.history for row in rows if row.run.history}
    if histories:
        figure = plots.plot_curves_overlay(
            histories, {row.name: steps_per_epoch(row.run) for row in rows},
            title="Training curves (moving averages; each run's recorded values faint)")
        written["curves.png"] = directory / "curves.png"
        plots.save_figure(figure, written["curves.png"])
    for row in rows:
        counts = row.run.metrics.get("confusion_matrix")
        if isinstance(counts, list) and counts:
            path = directory / f"{row.name}-confusion.png"
            plots.save_figure(plots.plot_normalized_confusion_matrix(counts, row.run.class_names),
                              path)
            written[f"{row.name}-confusion.png"] = path
    return written


REPORT_STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;line-height:1.5;color:#222;
 max-width:1000px;margin:0 auto;padding:0 16px 3em}
h1{font-size:1.6em;line-height:1.25}
h2{margin-top:2em;border-bottom:1px solid #ddd}
.caveat{border-left:6px solid #d97706;background:#fff4e0;padding:.7em 1em;font-weight:600}
table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
td:first-child,th:first-child{text-align:left}
img{max-width:100%;height:auto;display:block}
figure{margin:1.2em 0}
figcaption{font-size:.9em;color:#555}
code{overflow-wrap:anywhere;word-break:break-word}
.description p{margin:.3em 0}
ul.env li{margin:.2em 0;overflow-wrap:anywhere}
@media (max-width:700px){
 table.results,table.results tbody,table.results tr,table.results td{display:block;width:100%}
 table.results thead{display:none}
 table.results tr{border:1px solid #ccc;margin:0 0 .8em}
 table.results td{border:none;border-bottom:1px solid #eee;text-align:right}
 table.results td:empty{display:none}
 table.results td::before{content:attr(data-label);float:left;font-weight:600;
  padding-right:1em}
 table.results td:first-child{font-weight:700;text-align:left;background:#f4f4f4}
 table.results td:first-child::before{content:none}
}
"""


def _environment_html(env: dict) -> list[str]:
    items = [f"<li><b>{html.escape(name)}</b> {html.escape(version)}</li>"
             for name, version in env["versions"].items()]
    parts = ["<h2>Environment</h2>", "<p>Package versions, as recorded in the runs:</p>",
             '<ul class="env">' + "".join(items) + "</ul>"]
    if env["dates"]:
        parts.append(f"<p>Trained from {html.escape(env['dates']['first started'])} to "
                     f"{html.escape(env['dates']['last finished'])} (UTC).</p>")
    machine = env["machine"]
    parts.append(f"<p>Machine (where this report was written): "
                 f"{html.escape(machine['platform'])}, {machine['cpus']} CPUs, "
                 f"Python {html.escape(machine['python'])}.</p>")
    for dataset in env["datasets"]:
        sums = "".join(f"<li>{html.escape(name)}: <code>{html.escape(str(digest))}</code></li>"
                       for name, digest in dataset["checksums"].items())
        verified = "verified against the registry's checksums" if dataset["verified"] \
            else "not verified against a registry"
        parts += [f"<p>Dataset <b>{html.escape(str(dataset['name']))}</b> from "
                  f"<code>{html.escape(str(dataset['source']))}</code> ({verified}); SHA-256 "
                  "of each file:</p>", f'<ul class="env">{sums}</ul>']
    return parts


def _environment_markdown(env: dict) -> list[str]:
    lines = ["## Environment", "", "Package versions, as recorded in the runs: "
             + ", ".join(f"{name} {version}" for name, version in env["versions"].items())
             + ".", ""]
    if env["dates"]:
        lines += [f"Trained from {env['dates']['first started']} to "
                  f"{env['dates']['last finished']} (UTC).", ""]
    machine = env["machine"]
    lines += [f"Machine (where this report was written): {machine['platform']}, "
              f"{machine['cpus']} CPUs, Python {machine['python']}.", ""]
    for dataset in env["datasets"]:
        lines += [f"Dataset {dataset['name']} from `{dataset['source']}`"
                  f"{' (verified)' if dataset['verified'] else ''}; SHA-256 of each file:", ""]
        lines += [f"- {name}: `{digest}`" for name, digest in dataset["checksums"].items()]
        lines.append("")
    return lines


def write_reproduction_report(out_dir: Path, rows: Sequence[ReportRow], *, dataset: str,
                              seed: int, limits: dict, num_seeds: int = 1) -> dict:
    """Write `summary.json`, `report.md` and a self-contained `report.html` into `out_dir`,
    with the report's own figures under `out_dir/figures/`.

    The report opens with a caveat when the runs used a subset of the data, then gives the
    table (ours beside the tutorial's number, with the spread over seeds), the training
    curves overlaid, each model with two sentences on what it is and how it was trained and
    its figures, and the environment. The HTML reads on a phone as well as on a desktop.
    """
    out_dir = Path(out_dir)
    summaries = [row.summary(out_dir) for row in rows]
    caveat = subset_caveat(limits)
    env = environment([run for row in rows for run in (row.seed_runs or [row.run])])
    summary = {"dataset": dataset, "seed": seed, "num_seeds": num_seeds, "limits": limits,
               "caveat": caveat, "models": summaries, "environment": env}
    report_figures = write_report_figures(out_dir, rows)

    heading = f"Reproduction of 'MNIST using TensorFlow' on {dataset}"
    intro = ("The tutorial trains a random forest on raw pixels, then softmax regression with a "
             "hand-written TensorFlow training loop in three variants. Each model was trained "
             "again here; the table puts our test accuracy beside the tutorial's single, "
             "unseeded number (diff = ours - tutorial).")
    seeds = (f"Seed {seed} (figures and the first columns); every model also trained with "
             f"seeds {seed} to {seed + num_seeds - 1}, whose spread the last columns give."
             if num_seeds > 1 else f"Seed {seed}.")
    table = report_table(summaries)
    markdown = [f"# {heading}", ""]
    html_parts = [f"<h1>{html.escape(heading)}</h1>"]
    if caveat:
        markdown += [f"> **{caveat}**", ""]
        html_parts.append(f'<p class="caveat">{html.escape(caveat)}</p>')
    markdown += [intro, "", seeds, "", "| " + " | ".join(table[0]) + " |",
                 "|" + "---|" * len(table[0])]
    markdown += ["| " + " | ".join(row) + " |" for row in table[1:]] + [""]
    html_parts += [f"<p>{html.escape(intro)}</p>", f"<p>{html.escape(seeds)}</p>",
                   '<table class="results"><thead><tr>'
                   + "".join(f"<th>{html.escape(cell)}</th>" for cell in table[0])
                   + "</tr></thead><tbody>"]
    html_parts += ["<tr>" + "".join(f'<td data-label="{html.escape(label)}">{html.escape(cell)}'
                                    "</td>" for label, cell in zip(table[0], row)) + "</tr>"
                   for row in table[1:]]
    html_parts.append("</tbody></table>")
    if "curves.png" in report_figures:
        caption = ("Training loss and accuracy of every model with a training loop, on shared "
                   "axes (in epochs: passes over the training images). The random forest has "
                   "no curves.")
        markdown += ["## Training curves", "", f"![training curves]({REPORT_FIGURES_DIR}/"
                     "curves.png)", "", caption, ""]
        html_parts += ["<h2>Training curves</h2>",
                       _html_figure(report_figures["curves.png"], "training curves", caption)]
    markdown += ["## The models", ""]
    html_parts.append("<h2>The models</h2>")
    for row in rows:
        relative = row.relative_path(out_dir)
        what, how = row.description()
        markdown += [f"### {row.name}", "", what, "", how, "", f"Run directory: `{relative}`",
                     ""]
        html_parts.append(f"<h3>{html.escape(row.name)}</h3>"
                          f'<div class="description"><p>{html.escape(what)}</p>'
                          f"<p>{html.escape(how)}</p></div>"
                          f"<p>Run directory: <code>{html.escape(str(relative))}</code></p>")
        for figure in FIGURES:
            path, link = row.run.path / figure, f"{relative}/{figure}"
            if figure == "confusion_matrix.png" and f"{row.name}-confusion.png" in report_figures:
                path = report_figures[f"{row.name}-confusion.png"]
                link, figure = f"{REPORT_FIGURES_DIR}/{path.name}", "confusion.png"
            if path.exists():
                markdown += [f"![{row.name} {figure}]({link})", ""]
                html_parts.append(_html_figure(path, f"{row.name} {figure}",
                                               FIGURE_CAPTIONS[figure]))
    markdown += _environment_markdown(env)
    html_parts += _environment_html(env)
    document = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
                "<meta name='viewport' content='width=device-width, initial-scale=1'>"
                f"<title>{html.escape(heading)}</title><style>{REPORT_STYLE}</style></head>"
                "<body>" + "\n".join(html_parts) + "</body></html>\n")
    write_text_atomic(out_dir / "report.md", "\n".join(markdown))
    write_text_atomic(out_dir / "report.html", document)
    # Last: a reproduction with summary.json is finished (`reproduce --resume` checks it).
    write_json(out_dir / "summary.json", summary)
    return summary
