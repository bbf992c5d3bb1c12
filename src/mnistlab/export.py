"""Export a run's model for serving elsewhere, and check the export against the run.

Every exported model takes raw uint8 images `(N, 28, 28)` (ink bright on dark, as MNIST)
and returns class probabilities `(N, classes)`: the scaling lives inside the export, so
whoever serves it cannot get the preparation wrong.

A model says what it offers (`export_formats`) and how: a TensorFlow model builds a
`tf.Module` (`serving_module()`) saved as a SavedModel with a `serving_default` signature,
converted to TFLite, or to ONNX through tf2onnx; the random forest converts itself to ONNX
(`onnx_model()`, through skl2onnx).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnistlab.errors import MnistlabError
from mnistlab.fileio import MARKER_FILE, read_marker, write_bytes_atomic, write_marker
from mnistlab.runs import load_run

FORMATS = ("savedmodel", "onnx", "tflite")
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
# What a SavedModel directory holds as TensorFlow writes it, and mnistlab's marker.
SAVEDMODEL_ENTRIES = frozenset({"saved_model.pb", "fingerprint.pb", "variables", "assets",
                                MARKER_FILE})
# A TFLite model is a FlatBuffer with this file identifier at bytes 4 to 8.
TFLITE_IDENTIFIER = b"TFL3"
# The largest ONNX file read to check it: protobuf's own limit.
MAX_ONNX_BYTES = 2**31


class ExportError(MnistlabError):
    """A model cannot be exported in the asked format, or its export disagrees with it."""


def _require(module_name: str):
    """Import an optional export dependency, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module_name)
    except ImportError:
        raise ExportError(f"exporting to onnx needs {module_name}: "
                          "pip install 'mnistlab[export]'") from None


def _save_savedmodel(module, directory: Path) -> None:
    import tensorflow as tf

    tf.saved_model.save(module, str(directory), signatures={"serving_default": module.serve})


def _tflite_bytes(module) -> bytes:
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as scratch:
        _save_savedmodel(module, Path(scratch))
        return tf.lite.TFLiteConverter.from_saved_model(scratch).convert()


def _tf_onnx_bytes(module) -> bytes:
    tf2onnx = _require("tf2onnx")
    proto, _ = tf2onnx.convert.from_function(module.serve,
                                             input_signature=module.serve.input_signature,
                                             opset=17)
    return proto.SerializeToString()


def export_run(run_dir: Path, output_format: str, out: Path, *, overwrite: bool = False) -> Path:
    """Export the model of `run_dir` as `output_format` to `out`; returns `out`.

    `out` is a directory for a SavedModel and a file otherwise. It is written beside its
    final place and renamed into it, so an existing `out` is never half-replaced.
    """
    from mnistlab.runs import load_model

    if output_format not in FORMATS:
        raise ExportError(f"unknown export format {output_format!r} (known: {', '.join(FORMATS)})")
    out = Path(out)
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise ExportError(f"{out} already exists (use --overwrite to replace it)")
        # --overwrite replaces an earlier export of the same kind, never anything else.
        problem = _not_an_export(out, output_format)
        if problem is not None:
            raise ExportError(f"{out} {problem}; not replacing it")
    model = load_model(run_dir)
    model_name = load_run(run_dir).info["model"]
    if output_format not in model.export_formats:
        offered = ", ".join(model.export_formats) or "none"
        raise ExportError(f"a {model_name} model cannot be exported as {output_format} "
                          f"(it offers: {offered})")
    out.parent.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "onnx_model"):  # a model that converts itself (the forest)
        _require("skl2onnx")
        write_bytes_atomic(out, model.onnx_model())
        return out
    module = model.serving_module()
    if output_format == "tflite":
        write_bytes_atomic(out, _tflite_bytes(module))
    elif output_format == "onnx":
        write_bytes_atomic(out, _tf_onnx_bytes(module))
    else:
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
        try:
            _save_savedmodel(module, staging / "model")
            write_marker(staging / "model", "savedmodel")
            if out.exists():
                os.replace(out, staging / "old")
            os.replace(staging / "model", out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return out


def _not_an_export(out: Path, output_format: str) -> str | None:
    """Why `out` is not something mnistlab exported as `output_format` (and so must not be
    replaced), or None when it is: a SavedModel directory with mnistlab's marker and only
    TensorFlow's files beside it; a TFLite file with the TFLite identifier; an ONNX model
    that takes `images` and gives `probabilities`, as every export does."""
    if output_format == "savedmodel":
        if out.is_symlink() or not out.is_dir():
            return "is not a directory"
        if not (out / "saved_model.pb").is_file():
            return "is not a SavedModel (it has no saved_model.pb)"
        marker = read_marker(out)
        if marker is None or marker["kind"] != "savedmodel":
            return f"is not a SavedModel mnistlab exported (it has no {MARKER_FILE} marker)"
        foreign = sorted(entry.name for entry in out.iterdir()
                         if entry.name not in SAVEDMODEL_ENTRIES)
        return f"holds {foreign[0]}, which mnistlab did not write" if foreign else None
    if out.is_symlink() or not out.is_file():
        return "is not a file"
    if output_format == "tflite":
        with open(out, "rb") as file:
            head = file.read(8)
        return None if head[4:8] == TFLITE_IDENTIFIER else "is not a TFLite model"
    if out.stat().st_size > MAX_ONNX_BYTES:
        return "is not an ONNX model (too large)"
    onnx = _require("onnx")
    try:
        graph = onnx.load_model_from_string(out.read_bytes()).graph
        inputs = [value.name for value in graph.input]
        outputs = [value.name for value in graph.output]
    except Exception:  # protobuf raises several kinds on bytes that are not a model
        return "is not an ONNX model"
    if inputs != [INPUT_NAME] or OUTPUT_NAME not in outputs:
        return "is not an ONNX model mnistlab exported"
    return None


def load_exported(path: Path, output_format: str) -> Callable[[np.ndarray], np.ndarray]:
    """A function uint8 images (N, 28, 28) -> probabilities, running the exported model."""
    path = Path(path)
    if output_format == "savedmodel":
        import tensorflow as tf

        serve = tf.saved_model.load(str(path)).signatures["serving_default"]
        return lambda images: serve(**{INPUT_NAME: tf.constant(images)})[OUTPUT_NAME].numpy()
    if output_format == "onnx":
        onnxruntime = _require("onnxruntime")
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        index = [output.name for output in session.get_outputs()].index(OUTPUT_NAME)
        return lambda images: session.run(None, {name: images})[index]
    if output_format == "tflite":
        try:  # LiteRT is TFLite's successor; TensorFlow's own interpreter is deprecated.
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            import warnings

            import tensorflow as tf

            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            Interpreter = tf.lite.Interpreter
        from mnistlab._quiet import quiet_native_output

        with quiet_native_output():  # the interpreter announces XNNPACK on allocation
            interpreter = Interpreter(model_path=str(path))
            interpreter.allocate_tensors()
            runner = interpreter.get_signature_runner("serving_default")
            runner.get_input_details()
        return lambda images: runner(**{INPUT_NAME: images})[OUTPUT_NAME]
    raise ExportError(f"unknown export format {output_format!r}")


@dataclass
class ExportCheck:
    """How an export compares with its run's model on a set of images."""

    examples: int
    disagreements: int
    ties: int
    max_abs_difference: float
    tolerance: float

    @property
    def passed(self) -> bool:
        """Identical predicted classes and probabilities within the tolerance."""
        return self.disagreements == 0 and self.max_abs_difference <= self.tolerance


def check_export(run_dir: Path, path: Path, output_format: str,
                 images: np.ndarray | None = None, tolerance: float = 1e-5,
                 batch_size: int = 1000, data_dir: Path | None = None) -> ExportCheck:
    """Run the export and the run's own model on `images` (default: the run's whole test
    set); compare predicted classes and probabilities."""
    import math

    from mnistlab.runs import load_model

    if not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) \
            or not 0 <= tolerance <= 1:
        raise ExportError(f"the tolerance must be a number from 0 to 1, got {tolerance!r}")
    if images is None:
        from mnistlab.experiment import run_test_split

        images = run_test_split(run_dir, data_dir=data_dir)[0].test_images
    model = load_model(run_dir)
    exported = load_exported(path, output_format)
    images = np.ascontiguousarray(images, dtype=np.uint8)
    expected = model.predict_proba(images)
    got = np.concatenate([exported(images[start:start + batch_size])
                          for start in range(0, len(images), batch_size)])
    if len(images) == 0:
        raise ExportError("no images to check the export on")
    rows = np.arange(len(images))
    differs = expected.argmax(1) != got.argmax(1)
    # A forest's votes can tie exactly (e.g. 21/50 for two classes); float rounding in the
    # export may then pick the other tied class. That is a tie, not a disagreement: the
    # class the export picked must be within the tolerance of the model's top probability.
    tied = differs & (expected[rows, got.argmax(1)] >= expected.max(1) - tolerance)
    return ExportCheck(len(images), int(np.sum(differs & ~tied)), int(np.sum(tied)),
                       float(np.max(np.abs(expected - got))), tolerance)
