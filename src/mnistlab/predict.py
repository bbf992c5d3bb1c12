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
from mnistlab.fileio import write_bytes_atomic


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
        probabilities = model.predict_proba(np.stack([result.image for result in prepared]))
        top_k = min(top_k, probabilities.shape[1])
        for result, row in zip(prepared, probabilities):
            order = np.argsort(-row, kind="stable")[:top_k]
            result.top = [(str(class_names[k]), float(row[k])) for k in order]
    return results


def save_inputs(results: Sequence[FilePrediction], directory: Path,
                overwrite: bool = False) -> list[Path]:
    """Write the 28x28 image each file became as `<index>-<name>.png` in `directory`.

    Existing files are refused (before anything is written) unless `overwrite`.
    """
    from PIL import Image

    directory = Path(directory)
    targets = [(directory / f"{index:04d}-{result.path.stem}.png", result)
               for index, result in enumerate(results) if result.image is not None]
    taken = [target for target, _ in targets if target.exists()]
    if taken and not overwrite:
        raise MnistlabError(f"{taken[0]} already exists (use --overwrite to replace it)")
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for target, result in targets:
        buffer = io.BytesIO()
        Image.fromarray(result.image).save(buffer, format="PNG")
        write_bytes_atomic(target, buffer.getvalue())
        written.append(target)
    return written


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
