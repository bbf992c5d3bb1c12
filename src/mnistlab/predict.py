"""Predictions on people's own image files, through any run's model."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnistlab.errors import MnistlabError
from mnistlab.fileio import publish_mode


@dataclass
class FilePrediction:
    """The outcome for one file: its top classes, or why it has none."""

    path: Path
    top: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None
    image: np.ndarray | None = None  # (28, 28) uint8: what the model saw

    @property
    def ok(self) -> bool:
        """Whether the file got a prediction."""
        return self.error is None


def predict_files(model, paths: Sequence[Path], class_names: Sequence[str],
                  top_k: int = 3) -> list[FilePrediction]:
    """Prepare each image file MNIST-style and classify all of them in one batch.

    Directories are walked for image files. A file that cannot be read, or has no ink,
    gets an `error` instead of a prediction; the others are unaffected.
    """
    from mnistlab.prepare import iter_image_files, load_image, prepare_image

    if top_k < 1:
        raise MnistlabError(f"--top must be at least 1, got {top_k}")
    results = []
    for path in iter_image_files([Path(p) for p in paths]):
        try:
            results.append(FilePrediction(path, image=prepare_image(load_image(path))))
        except MnistlabError as error:
            message = str(error)
            if str(path) not in message:  # "no ink found in the image" names no file
                message = f"{path}: {message}"
            results.append(FilePrediction(path, error=message))
    prepared = [result for result in results if result.ok]
    if prepared:
        images = np.stack([result.image for result in prepared])  # (N, 28, 28)
        try:
            probabilities = model.predict_proba(images)
        except ValueError as error:  # a model fitted on images of another shape
            raise MnistlabError(f"the model cannot classify {images.shape[1]}x"
                                f"{images.shape[2]} images: {error}") from None
        top_k = min(top_k, probabilities.shape[1])
        for result, row in zip(prepared, probabilities):
            order = np.argsort(-row, kind="stable")[:top_k]
            result.top = [(str(class_names[k]), float(row[k])) for k in order]
    return results


def save_inputs(results: Sequence[FilePrediction], directory: Path,
                overwrite: bool = False) -> list[Path]:
    """Write the 28x28 image each file became as `<index>-<name>.png` in `directory`.

    Existing files are refused (before anything is written) unless `overwrite`. All or
    nothing: every image is written to a temporary file first, and only when all of them
    are written (a full disk fails here) are they renamed into place; on a failure the
    temporary files, and `directory` if this call created it, are removed.
    """
    import os
    import tempfile

    from PIL import Image

    directory = Path(directory)
    targets = [(directory / f"{index:04d}-{result.path.stem}.png", result)
               for index, result in enumerate(results) if result.image is not None]
    taken = [target for target, _ in targets if target.exists() or target.is_symlink()]
    if taken and not overwrite:
        raise MnistlabError(f"{taken[0]} already exists (use --overwrite to replace it)")
    folders = [target for target in taken if target.is_dir()]
    if folders:
        raise MnistlabError(f"{folders[0]} is a directory; not replacing it")
    created = [parent for parent in (directory, *directory.parents) if not parent.exists()]
    directory.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    try:
        for target, result in targets:
            buffer = io.BytesIO()
            Image.fromarray(result.image).save(buffer, format="PNG")
            handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.",
                                                 suffix=".tmp")
            staged.append((Path(temporary), target))
            with os.fdopen(handle, "wb") as file:
                file.write(buffer.getvalue())
            publish_mode(Path(temporary))
        for temporary, target in staged:
            os.replace(temporary, target)
    except BaseException:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        for folder in created:  # innermost first; only the empty ones this call made
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    return [target for target, _ in targets]


def format_results(results: Sequence[FilePrediction], output_format: str) -> str:
    """The results as JSON or CSV text (the table format is drawn by the CLI)."""
    if output_format == "json":
        return json.dumps([{
            "path": str(result.path),
            "prediction": result.top[0][0] if result.top else None,
            "top": [{"label": label, "probability": round(probability, 6)}
                    for label, probability in result.top],
            "error": result.error,
        } for result in results], indent=2) + "\n"
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["path", "prediction", "probability", "top", "error"])
        for result in results:
            top = " ".join(f"{label}:{probability:.4f}" for label, probability in result.top)
            writer.writerow([result.path, result.top[0][0] if result.top else "",
                             f"{result.top[0][1]:.6f}" if result.top else "", top,
                             result.error or ""])
        return buffer.getvalue()
    raise MnistlabError(f"unknown output format {output_format!r} (table, json or csv)")


# ------------------------------------------------------------------ labelled images


@dataclass
class LabelledFile:
    """One labelled image file: its true class and the model's answer, or why it has none."""

    path: Path
    label: str | None  # the true class name; None when the file has no usable label
    prediction: str | None = None
    probability: float | None = None  # of the predicted class
    label_probability: float | None = None  # of the true class
    error: str | None = None
    image: np.ndarray | None = None  # (28, 28) uint8: what the model saw

    @property
    def ok(self) -> bool:
        """Whether the file was evaluated (it has a label and a prediction)."""
        return self.error is None

    @property
    def correct(self) -> bool:
        """Whether the model predicted the file's label."""
        return self.ok and self.prediction == self.label


@dataclass
class LabelledEvaluation:
    """How a model did on labelled image files: accuracy, confusion matrix, one row per file.

    `accuracy` and `confusion_matrix` count the files that were evaluated (`evaluated`);
    files that could not be read, held no ink or had no usable label are in `failed`.
    """

    class_names: list[str]
    files: list[LabelledFile]
    accuracy: float
    confusion_matrix: np.ndarray  # (classes, classes): rows true class, columns predicted

    @property
    def evaluated(self) -> list[LabelledFile]:
        """The files with a label and a prediction."""
        return [row for row in self.files if row.ok]

    @property
    def misclassified(self) -> list[LabelledFile]:
        """The evaluated files whose prediction is not their label."""
        return [row for row in self.evaluated if not row.correct]

    @property
    def failed(self) -> list[LabelledFile]:
        """The files that could not be evaluated, each with its `error`."""
        return [row for row in self.files if not row.ok]

    def to_dict(self) -> dict:
        """The evaluation as JSON-ready data."""
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 6)

        return {
            "accuracy": self.accuracy,
            "evaluated": len(self.evaluated),
            "misclassified": len(self.misclassified),
            "failed": len(self.failed),
            "class_names": list(self.class_names),
            "confusion_matrix": self.confusion_matrix.tolist(),
            "files": [{"path": str(row.path), "label": row.label, "prediction": row.prediction,
                       "probability": rounded(row.probability),
                       "label_probability": rounded(row.label_probability),
                       "correct": row.correct, "error": row.error} for row in self.files],
        }


def _class_name(label: str, class_names: Sequence[str]) -> str | None:
    """The class a label names: a class name, or a class index where no class has that name."""
    label = label.strip()
    if label in class_names:
        return label
    if label.isdigit() and int(label) < len(class_names):
        return class_names[int(label)]
    return None


def read_labels_csv(path: str | Path) -> dict[Path, str]:
    """Read a CSV file of `file,label` rows into {file: label}.

    A first row naming its columns (`file,label` or `path,label`) is skipped. Relative file
    names are taken from the CSV file's folder; a bare file name (no folder) is kept as it
    is, and labels every image of that name. Raises `MnistlabError` naming the line of a row
    that is not two fields, or of a file listed twice with different labels.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise MnistlabError(f"{path}: cannot read the labels ({error.strerror or error})") from None
    labels: dict[Path, str] = {}
    for number, row in enumerate(csv.reader(io.StringIO(text)), 1):
        if not row or all(not cell.strip() for cell in row):
            continue
        if number == 1 and row[0].strip().lower() in ("file", "path", "filename"):
            continue
        if len(row) != 2 or not row[0].strip():
            raise MnistlabError(f"{path}, line {number}: expected 'file,label', got {row!r}")
        name, label = Path(row[0].strip()), row[1].strip()
        key = name if len(name.parts) == 1 else path.parent / name
        if labels.get(key, label) != label:
            raise MnistlabError(f"{path}, line {number}: {name} is listed again with another "
                                f"label ({labels[key]!r}, then {label!r})")
        labels[key] = label
    return labels


def _labels_from_folders(paths: Sequence[Path], class_names: Sequence[str]
                         ) -> list[tuple[Path, str | None, str | None]]:
    """(file, class name or None, error or None) with the label taken from the folder."""
    from mnistlab.prepare import iter_image_files

    rows = []
    for given in paths:
        for file in iter_image_files([given]):
            relative = file.relative_to(given).parts if given.is_dir() else ()
            # digits/7/a.png and digits/7/phone/a.png are 7s; a file given by itself, or
            # directly in a given folder, takes the name of the folder it is in.
            folder = relative[0] if len(relative) > 1 else file.resolve().parent.name
            name = _class_name(folder, class_names)
            error = None if name is not None else (
                f"{file}: folder {folder!r} is not named after a class "
                f"({', '.join(class_names)})")
            rows.append((file, name, error))
    return rows


def _labels_from_mapping(paths: Sequence[Path], class_names: Sequence[str], labels,
                         ) -> list[tuple[Path, str | None, str | None]]:
    """(file, class name or None, error or None) with the label looked up in `labels`."""
    import os

    from mnistlab.prepare import iter_image_files

    source = "the labels"
    if isinstance(labels, (str, os.PathLike)):
        source = str(labels)
        labels = read_labels_csv(labels)
    folders = [Path.cwd()] + [path for path in paths if path.is_dir()]
    by_path: dict[Path, str] = {}
    by_name: dict[str, str] = {}
    for key, label in labels.items():
        key = Path(key)
        if len(key.parts) == 1:
            by_name[key.name] = str(label)
        for folder in folders:
            by_path[(folder / key).resolve()] = str(label)
    rows = []
    for file in iter_image_files(paths):
        label = by_path.get(file.resolve(), by_name.get(file.name))
        name = None if label is None else _class_name(label, class_names)
        error = None
        if label is None:
            error = f"{file}: no label for this file in {source}"
        elif name is None:
            error = (f"{file}: label {label!r} is not one of the classes "
                     f"({', '.join(class_names)})")
        rows.append((file, name, error))
    return rows


def evaluate_labelled_files(model, paths_or_dir, class_names: Sequence[str],
                            labels=None) -> LabelledEvaluation:
    """Classify image files whose true class is known; accuracy, confusion matrix, rows.

    `paths_or_dir` is a file or directory, or a list of them; directories are walked for
    image files, which are prepared MNIST-style as `predict_files` does. Where the labels
    come from:

    - `labels=None`: from the folders, named after the classes: `digits/7/a.png` (and
      `digits/7/phone/a.png`) is a 7 when `digits` is given; a file given by itself, or
      directly in a given folder, takes the name of the folder it is in.
    - `labels`: a mapping {file: label}, or the path of a CSV file of `file,label` rows
      (see `read_labels_csv`). A file is a path relative to the current directory, to a
      given directory or (for a CSV) to the CSV's folder, or a bare file name.

    A label is a class name, or a class index where no class has that name. A file that
    cannot be read, holds no ink or has no usable label is kept in `files` with an `error`
    and left out of the accuracy. Raises `MnistlabError` when no file could be evaluated.
    """
    if isinstance(paths_or_dir, (str, Path)):
        paths_or_dir = [paths_or_dir]
    paths = [Path(path) for path in paths_or_dir]
    class_names = [str(name) for name in class_names]
    labelled = (_labels_from_folders(paths, class_names) if labels is None
                else _labels_from_mapping(paths, class_names, labels))
    rows = {file: LabelledFile(file, name, error=error) for file, name, error in labelled}
    to_predict = [file for file, row in rows.items() if row.ok]
    results = predict_files(model, to_predict, class_names,
                            top_k=len(class_names)) if to_predict else []
    for result in results:
        row = rows[result.path]
        if not result.ok:
            row.error = result.error
            continue
        probabilities = dict(result.top)
        row.image = result.image
        row.prediction, row.probability = result.top[0]
        row.label_probability = probabilities.get(row.label, 0.0)
    files = list(rows.values())
    evaluated = [row for row in files if row.ok]
    if not evaluated:
        reason = files[0].error if files else "no image files found in the given paths"
        raise MnistlabError(f"no labelled image could be evaluated ({reason})")
    index = {name: k for k, name in enumerate(class_names)}
    matrix = np.zeros((len(class_names), len(class_names)), dtype=np.int64)
    for row in evaluated:
        matrix[index[row.label], index[row.prediction]] += 1
    accuracy = float(np.trace(matrix) / len(evaluated))
    return LabelledEvaluation(class_names, files, accuracy, matrix)


def plot_misclassified_files(evaluation: LabelledEvaluation, count: int = 40,
                             columns: int = 8, figure=None):
    """The misclassified files as the model saw them (28x28), with file name, true and
    predicted class and their probabilities; returns the matplotlib figure.

    Draws on `figure` when given; otherwise makes one without pyplot, so nothing is shown
    and no backend is changed. Save it with `figure.savefig(path)`.
    """
    from matplotlib.figure import Figure

    wrong = evaluation.misclassified[:count]
    columns = max(1, min(columns, len(wrong)))
    rows = max(1, -(-len(wrong) // columns))
    if figure is None:
        figure = Figure(figsize=(columns * 1.6, rows * 2.0 + 0.5), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for row, ax in zip(wrong, axes.flat):
        ax.imshow(row.image, cmap="gray", vmin=0, vmax=255)
        name = row.path.name if len(row.path.name) <= 16 else row.path.name[:15] + "…"
        ax.set_title(f"{name}\ntrue {row.label} ({row.label_probability:.2f})\n"
                     f"pred {row.prediction} ({row.probability:.2f})", fontsize=7, color="red")
    if not wrong:
        figure.text(0.5, 0.5, "no misclassified images", ha="center", va="center")
    shown = f", the first {len(wrong)} shown" if len(evaluation.misclassified) > len(wrong) else ""
    figure.suptitle(f"Misclassified: {len(evaluation.misclassified)} of "
                    f"{len(evaluation.evaluated)} labelled images{shown} "
                    f"(accuracy {evaluation.accuracy:.4f})", fontsize=9)
    return figure
