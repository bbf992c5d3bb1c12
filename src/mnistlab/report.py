"""Figures of one run, and the reproduction report (HTML, Markdown, JSON) over several runs."""

from __future__ import annotations

import base64
import html
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
                      class_names: Sequence[str], title: str = "") -> list[Path]:
    """Write a run's PNG figures into `directory`; returns the paths written.

    `curves.png` needs a history (the forest has none); `weights.png` needs a model with
    `weights_` of shape (features, classes) on 28x28 images.
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
        figures["weights.png"] = plots.plot_weights(weights, class_names, image_shape)
    written = []
    for name, figure in figures.items():
        plots.save_figure(figure, directory / name)
        written.append(directory / name)
    return written


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
        published = PRESETS[self.name].published_accuracy if self.name in PRESETS else None
        accuracy = metrics.get("test_accuracy")
        summary = {
            "name": self.name, "model": self.run.info.get("model"),
            "run_dir": str(self.relative_path(base)), "test_accuracy": accuracy,
            "tutorial_accuracy": published,
            "difference": None if published is None or accuracy is None
            else round(accuracy - published, 4),
            "test_loss": metrics.get("test_loss"), "train_seconds": metrics.get("train_seconds"),
            "predict_seconds": metrics.get("predict_seconds"),
            "parameters": metrics.get("parameters"),
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


def report_table(summaries: Sequence[dict]) -> list[list[str]]:
    """The report's table as rows of cells, the header first."""
    with_seeds = any("seeds" in item for item in summaries)
    header = ["model", "test acc", "tutorial", "diff", "train s", "params"]
    if with_seeds:
        header += ["mean ± sd over seeds", "range", ">= tutorial"]
    rows = [header]
    for item in summaries:
        row = [item["name"], _decimal(item["test_accuracy"]), _decimal(item["tutorial_accuracy"]),
               "" if item["difference"] is None else f"{item['difference']:+.4f}",
               f"{item['train_seconds']:.2f}", str(item["parameters"])]
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


def _figure_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def write_reproduction_report(out_dir: Path, rows: Sequence[ReportRow], *, dataset: str,
                              seed: int, limits: dict, num_seeds: int = 1) -> dict:
    """Write `summary.json`, `report.md` and a self-contained `report.html` into `out_dir`."""
    out_dir = Path(out_dir)
    summaries = [row.summary(out_dir) for row in rows]
    summary = {"dataset": dataset, "seed": seed, "num_seeds": num_seeds, "limits": limits,
               "models": summaries}
    write_json(out_dir / "summary.json", summary)

    subset = ", ".join(f"{key} {value}" for key, value in limits.items() if value)
    heading = f"Reproduction of 'MNIST using TensorFlow' on {dataset}"
    seeds = (f"Seed {seed} (figures and the first columns); every model also trained with "
             f"seeds {seed} to {seed + num_seeds - 1}." if num_seeds > 1 else f"Seed {seed}.")
    note = (seeds + (f" Subset: {subset}; accuracies are not comparable with the "
                               "tutorial's, which used the full data." if subset else ""))
    table = report_table(summaries)
    markdown = [f"# {heading}", "", note, "", "| " + " | ".join(table[0]) + " |",
                "|" + "---|" * len(table[0])]
    markdown += ["| " + " | ".join(row) + " |" for row in table[1:]] + [""]
    html_parts = [f"<h1>{html.escape(heading)}</h1>", f"<p>{html.escape(note)}</p>", "<table>",
                  "<tr>" + "".join(f"<th>{html.escape(cell)}</th>" for cell in table[0]) + "</tr>"]
    html_parts += ["<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
                   for row in table[1:]]
    html_parts.append("</table>")
    for row in rows:
        relative = row.relative_path(out_dir)
        markdown += [f"## {row.name}", "", f"Run directory: `{relative}`", ""]
        html_parts.append(f"<h2>{html.escape(row.name)}</h2>"
                          f"<p>Run directory: <code>{html.escape(str(relative))}</code></p>")
        for figure in FIGURES:
            path = row.run.path / figure
            if path.exists():
                markdown += [f"![{row.name} {figure}]({relative}/{figure})", ""]
                html_parts.append(_figure_tag(path, f"{row.name} {figure}"))
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px;"
             "text-align:right}td:first-child{text-align:left}img{max-width:100%;"
             "display:block;margin:1em 0}")
    document = ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
                f"<title>{html.escape(heading)}</title><style>{style}</style></head><body>"
                + "\n".join(html_parts) + "</body></html>\n")
    write_text_atomic(out_dir / "report.md", "\n".join(markdown))
    write_text_atomic(out_dir / "report.html", document)
    return summary
