"""Figures from records and predictions. Each function draws on the `ax`/`axes`/`figure` it is
given or makes its own, and returns the figure; `save_figure` writes a PNG atomically. Nothing
is shown."""

from __future__ import annotations

import io
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

# Library code never opens windows: without a backend chosen by the user (a notebook's
# inline one, MPLBACKEND), figures are drawn off screen.
if not os.environ.get("MPLBACKEND") and "matplotlib.pyplot" not in sys.modules:
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from mnistlab.fileio import write_bytes_atomic  # noqa: E402


def save_figure(figure: Figure, path: Path, dpi: int = 100) -> None:
    """Render `figure` to PNG and write it atomically to `path`, then close it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    write_bytes_atomic(Path(path), buffer.getvalue())


def plot_curves(history: Sequence[dict], axes=None, title: str | None = None) -> Figure:
    """Loss and accuracy against the step, side by side, as the tutorial plots them.

    `history` holds records with `step`, `train_loss`, `train_accuracy` and optionally
    `val_loss`, `val_accuracy`. `axes` is a pair of axes to draw on, or None.
    """
    if axes is None:
        figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    else:
        figure = axes[0].figure
    steps = [record["step"] for record in history]
    for ax, quantity in zip(axes, ("loss", "accuracy")):
        for split, style in (("train", "-"), ("val", "--")):
            key = f"{split}_{quantity}"
            values = [record.get(key) for record in history]
            if any(value is not None for value in values):
                label = "training batch" if split == "train" else "validation"
                ax.plot(steps, [np.nan if v is None else v for v in values], style, label=label)
        ax.set_xlabel("step")
        ax.set_ylabel(quantity)
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def _image_grid(count: int, columns: int, scale: float = 1.3, figure: Figure | None = None):
    """A grid of image axes on `figure` (a new figure sized for the grid when None)."""
    rows = max(1, -(-count // columns))
    if figure is None:
        figure, axes = plt.subplots(rows, columns, squeeze=False, layout="constrained",
                                    figsize=(columns * scale, rows * scale * 1.2 + 0.4))
    else:
        axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return figure, axes.flat


def plot_predictions(images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray,
                     class_names: Sequence[str], count: int = 10,
                     figure: Figure | None = None) -> Figure:
    """The first `count` images with their predicted class; wrong ones in red with the truth."""
    count = min(count, len(images))
    figure, axes = _image_grid(count, min(count, 10), figure=figure)
    for i, ax in zip(range(count), axes):
        ax.imshow(images[i], cmap="gray")
        wrong = y_pred[i] != y_true[i]
        label = f"pred {class_names[y_pred[i]]}"
        if wrong:
            label += f"\n(true {class_names[y_true[i]]})"
        ax.set_title(label, color="red" if wrong else "black", fontsize=9)
    figure.suptitle("First test images and predicted classes (wrong in red)", fontsize=10)
    return figure


def format_probability(probability: float) -> str:
    """A probability with the digits that tell near-certain ones apart: 0.934; from 0.99 on,
    two significant digits of its distance from one (0.99987, 0.999910, 0.9999962) up to
    >0.9999999 (one, to the precision of float32 output); below 0.01, 1.2e-04."""
    probability = float(probability)
    if probability < 0.01:
        return f"{probability:.1e}"
    if probability < 0.99:
        return f"{probability:.3f}"
    gap = 1.0 - probability
    if gap < 1e-7:
        return ">0.9999999"
    return f"{probability:.{min(7, max(3, math.ceil(-math.log10(gap)) + 1))}f}"


def plot_misclassified(images: np.ndarray, y_true: np.ndarray, probabilities: np.ndarray,
                       class_names: Sequence[str], count: int = 20,
                       figure: Figure | None = None) -> Figure:
    """The most confidently wrong images, each with its predicted class and that class's
    probability, and its true class with the probability the model gave it."""
    y_pred = np.argmax(probabilities, axis=1)
    wrong = np.flatnonzero(y_pred != y_true)
    confidence = probabilities[wrong, y_pred[wrong]]
    chosen = wrong[np.argsort(-confidence, kind="stable")][:count]
    figure, axes = _image_grid(max(1, len(chosen)), 10, figure=figure)
    for index, ax in zip(chosen, axes):
        ax.imshow(images[index], cmap="gray")
        predicted, true = y_pred[index], y_true[index]
        ax.set_title(f"pred {class_names[predicted]} "
                     f"{format_probability(probabilities[index, predicted])}\n"
                     f"true {class_names[true]} {format_probability(probabilities[index, true])}",
                     fontsize=7, color="red")
    if len(chosen) == 0:
        figure.text(0.5, 0.5, "no misclassified images", ha="center")
    figure.suptitle(f"Most confidently wrong test images ({len(wrong)} wrong in all): predicted "
                    "class and its probability, true class and the probability it was given",
                    fontsize=9)
    return figure


def plot_confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray,
                          class_names: Sequence[str], ax=None) -> Figure:
    """The confusion matrix (rows true, columns predicted), via scikit-learn's display."""
    from sklearn.metrics import ConfusionMatrixDisplay

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 6))
    ConfusionMatrixDisplay.from_predictions(
        y_true, y_pred, labels=np.arange(len(class_names)), display_labels=list(class_names),
        ax=ax, colorbar=False, xticks_rotation=45 if max(map(len, class_names)) > 2 else 0)
    ax.set_title("Confusion matrix (test set)")
    return ax.figure


def plot_weights(weights: np.ndarray, class_names: Sequence[str],
                 image_shape: tuple[int, int] = (28, 28), figure: Figure | None = None,
                 mask: np.ndarray | None = None,
                 masked: str = "pixels no training image inks; their weights never change "
                               "from their initial values",
                 title: str | None = None) -> Figure:
    """The weight vector of each class as an image (red positive, blue negative).

    `mask` (one boolean per pixel, True where some training image has ink) leaves the other
    pixels out: their weights never receive a gradient, so from a random initialisation they
    keep their random values, which would otherwise dominate the colours. They are drawn
    grey and left out of the colour scale, and the caption says so with `masked`. `title`
    replaces the caption's first line (for weights minus their initial values, say).
    """
    weights = np.asarray(weights)  # (features, n_classes)
    shown = np.ones(weights.shape[0], bool) if mask is None else np.asarray(mask, bool).ravel()
    if shown.shape != (weights.shape[0],):
        raise ValueError(f"the mask has {shown.size} pixels, the weights {weights.shape[0]}")
    # A few border pixels, almost never inked, can hold large weights; scaling colours to
    # the 99th percentile keeps the digit-shaped templates visible.
    limit = float(np.percentile(np.abs(weights[shown]), 99)) if shown.any() else 0.0
    limit = limit or 1.0
    colours = plt.get_cmap("RdBu_r").with_extremes(bad="0.8")
    figure, axes = _image_grid(weights.shape[1], 5, scale=1.8, figure=figure)
    for k, ax in zip(range(weights.shape[1]), axes):
        image = weights[:, k] if mask is None else np.ma.masked_array(weights[:, k], ~shown)
        ax.imshow(image.reshape(image_shape), cmap=colours, vmin=-limit, vmax=limit)
        ax.set_title(str(class_names[k]), fontsize=9)
    title = title or "Softmax weights per class (red: evidence for, blue: against)"
    if mask is None:
        figure.suptitle(title, fontsize=10)
    else:
        figure.suptitle(f"{title}.\nGrey: {masked}.", fontsize=10)
    return figure


def plot_normalized_confusion_matrix(counts: np.ndarray, class_names: Sequence[str],
                                     ax=None) -> Figure:
    """The confusion matrix as percentages of each true class (rows sum to 100), from the
    counts (rows true, columns predicted); empty cells are left blank."""
    counts = np.asarray(counts, dtype=np.float64)  # (true, predicted)
    totals = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 5.6))
    ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    for true, predicted in zip(*np.nonzero(counts)):
        rate = rates[true, predicted]
        ax.text(predicted, true, f"{100 * rate:.0f}" if rate > 0.9995 else f"{100 * rate:.1f}",
                ha="center", va="center", fontsize=7, color="white" if rate > 0.5 else "black")
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, labels=list(class_names),
                  rotation=45 if max(map(len, class_names)) > 2 else 0)
    ax.set_yticks(ticks, labels=list(class_names))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("Confusion matrix: % of each true class (test set)", fontsize=10)
    return ax.figure


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """The mean of each `window` consecutive values (len(values) - window + 1 of them)."""
    totals = np.cumsum(np.insert(values, 0, 0.0))
    return (totals[window:] - totals[:-window]) / window


def plot_curves_overlay(histories: Mapping[str, Sequence[dict]],
                        steps_per_epoch: Mapping[str, float] | None = None, axes=None,
                        title: str | None = None) -> Figure:
    """Several runs' training loss and accuracy on shared axes, one colour per run.

    `histories` maps a run's name to its records (runs without records are left out). The
    x axis is in epochs when `steps_per_epoch` gives every run's, else in steps. Values of
    single batches are noisy: each run is drawn faint as recorded, and as a moving average
    over about a fifteenth of its records.
    """
    histories = {name: list(history) for name, history in histories.items() if history}
    in_epochs = steps_per_epoch is not None and all(
        steps_per_epoch.get(name) for name in histories)
    created = axes is None
    if created:
        figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    else:
        figure = axes[0].figure
    for number, (name, history) in enumerate(histories.items()):
        colour = f"C{number % 10}"
        steps = np.array([record["step"] for record in history], dtype=np.float64)
        x = steps / steps_per_epoch[name] if in_epochs else steps
        for ax, key in zip(axes, ("train_loss", "train_accuracy")):
            values = np.array([np.nan if record.get(key) is None else record[key]
                               for record in history], dtype=np.float64)
            if np.all(np.isnan(values)):
                continue
            window = max(1, len(values) // 15)
            ax.plot(x, values, color=colour, alpha=0.2, linewidth=0.8)
            ax.plot(x[window - 1:], _moving_average(values, window), color=colour,
                    linewidth=1.6, label=name)
    for ax, quantity in zip(axes, ("training loss", "training accuracy")):
        ax.set_xlabel("epoch" if in_epochs else "step")
        ax.set_ylabel(quantity)
        ax.grid(alpha=0.3)
        if not histories:
            ax.text(0.5, 0.5, "no training curves", ha="center", transform=ax.transAxes)
    if histories:
        axes[1].legend(loc="lower right", fontsize=8)
    axes[0].set_ylim(bottom=0)
    if title:
        figure.suptitle(title)
    if created:
        figure.tight_layout()
    return figure


def plot_accuracy_bars(accuracies: Mapping[str, float | None], ax=None,
                       title: str = "Test accuracy") -> Figure:
    """One horizontal bar per run, labelled with its test accuracy (4 digits); the axis
    starts near the lowest so that small differences show."""
    names = [name for name, value in accuracies.items() if value is not None]
    values = np.array([accuracies[name] for name in names], dtype=np.float64)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.5 * max(2, len(names)) + 1))
    ax.barh(np.arange(len(names)), values, color=[f"C{k % 10}" for k in range(len(names))])
    ax.set_yticks(np.arange(len(names)), labels=names)
    ax.invert_yaxis()  # the first run on top
    if len(values):
        low, high = float(values.min()), float(values.max())
        spread = max(0.02, high - low)
        ax.set_xlim(max(0.0, low - spread), min(1.0, high + 0.3 * spread))
        for k, value in enumerate(values):
            ax.text(value, k, f" {value:.4f}", va="center", fontsize=8)
    ax.set_xlabel("test accuracy")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return ax.figure


def plot_run_comparison(histories: Mapping[str, Sequence[dict]],
                        accuracies: Mapping[str, float | None],
                        steps_per_epoch: Mapping[str, float] | None = None) -> Figure:
    """One figure comparing runs: their training curves overlaid (loss, accuracy) and a bar
    chart of their test accuracy."""
    figure = plt.figure(figsize=(15, 4.2), layout="constrained")
    curves, bars = figure.subfigures(1, 2, width_ratios=(2, 1))
    plot_curves_overlay(histories, steps_per_epoch, axes=curves.subplots(1, 2))
    plot_accuracy_bars(accuracies, ax=bars.subplots())
    return figure
