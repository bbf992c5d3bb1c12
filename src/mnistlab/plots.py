"""Figures from records and predictions. Each function draws on the `ax`/`axes`/`figure` it is
given or makes its own, and returns the figure; `save_figure` writes a PNG atomically. Nothing
is shown."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # library code never opens windows

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


def plot_misclassified(images: np.ndarray, y_true: np.ndarray, probabilities: np.ndarray,
                       class_names: Sequence[str], count: int = 20,
                       figure: Figure | None = None) -> Figure:
    """The most confidently wrong images, with true and predicted class and confidence."""
    y_pred = np.argmax(probabilities, axis=1)
    wrong = np.flatnonzero(y_pred != y_true)
    confidence = probabilities[wrong, y_pred[wrong]]
    chosen = wrong[np.argsort(-confidence, kind="stable")][:count]
    figure, axes = _image_grid(max(1, len(chosen)), 10, figure=figure)
    for index, ax in zip(chosen, axes):
        ax.imshow(images[index], cmap="gray")
        ax.set_title(f"true {class_names[y_true[index]]}\npred {class_names[y_pred[index]]} "
                     f"{probabilities[index, y_pred[index]]:.2f}", fontsize=8, color="red")
    if len(chosen) == 0:
        figure.text(0.5, 0.5, "no misclassified images", ha="center")
    figure.suptitle(f"Most confidently wrong test images ({len(wrong)} wrong in all)",
                    fontsize=10)
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
                 image_shape: tuple[int, int] = (28, 28), figure: Figure | None = None) -> Figure:
    """The weight vector of each class as an image (red positive, blue negative)."""
    weights = np.asarray(weights)  # (features, n_classes)
    # A few border pixels, almost never inked, can hold large weights; scaling colours to
    # the 99th percentile keeps the digit-shaped templates visible.
    limit = float(np.percentile(np.abs(weights), 99)) or 1.0
    figure, axes = _image_grid(weights.shape[1], 5, scale=1.8, figure=figure)
    for k, ax in zip(range(weights.shape[1]), axes):
        ax.imshow(weights[:, k].reshape(image_shape), cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(str(class_names[k]), fontsize=9)
    figure.suptitle("Softmax weights per class (red: evidence for, blue: against)", fontsize=10)
    return figure
