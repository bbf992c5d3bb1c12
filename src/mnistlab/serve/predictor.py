"""A run's model, loaded once, and the answer it gives for one image."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# How many classes `top` lists in a prediction.
TOP_COUNT = 3


@dataclass
class Prediction:
    """One image's answer: probabilities over the classes and the image the model saw."""

    probabilities: np.ndarray   # (n_classes,) float32
    class_names: list[str]
    model_input: np.ndarray     # (28, 28) uint8

    def to_dict(self, top: int = TOP_COUNT) -> dict[str, Any]:
        """The JSON answer of `POST /api/predict`."""
        best = int(np.argmax(self.probabilities))
        order = np.argsort(-self.probabilities, kind="stable")[:top]
        return {
            "probabilities": [round(float(p), 6) for p in self.probabilities],
            "prediction": best,
            "label": self.class_names[best],
            "top": [{"label": self.class_names[i],
                     "probability": round(float(self.probabilities[i]), 6)} for i in order],
            "input": self.model_input.astype(int).tolist(),
        }


class Predictor:
    """A run's model behind a lock, with the run's class names.

    Models need not be thread-safe (a Keras model's `predict` is not guaranteed to be), and
    one image takes milliseconds, so predictions take turns at the model rather than risk
    it; preparing the images, the larger part of the work, runs in parallel.
    """

    def __init__(self, run_dir: Path):
        from mnistlab.runs import load_model, load_run

        self.run_dir = Path(run_dir)
        run = load_run(self.run_dir)
        self.model = load_model(self.run_dir)
        self.model_name = run.info.get("preset") or run.info.get("model", "unknown")
        self.test_accuracy = run.metrics.get("test_accuracy")
        classes = getattr(self.model, "classes_", range(10))
        names = run.config.get("data", {}).get("class_names")
        self.class_names = [str(name) for name in (names or classes)]
        self._lock = threading.Lock()

    def info(self) -> dict[str, Any]:
        """The model's part of the answer of `GET /api/info`."""
        return {"model": self.model_name, "run": self.run_dir.resolve().name,
                "class_names": self.class_names, "test_accuracy": self.test_accuracy}

    def predict(self, image) -> Prediction:
        """Prepare one image (PIL or array, any size or polarity) and classify it.

        Raises `EmptyImageError` when there is no ink and `ImageError` when it is unusable.
        """
        from mnistlab.prepare import prepare_image

        model_input = prepare_image(image)  # (28, 28) uint8, ink bright
        with self._lock:
            probabilities = self.model.predict_proba(model_input[np.newaxis])[0]
        if len(probabilities) != len(self.class_names):
            raise RuntimeError(f"the model gives {len(probabilities)} probabilities for "
                               f"{len(self.class_names)} class names")
        return Prediction(np.asarray(probabilities, dtype=np.float32), self.class_names,
                          model_input)
