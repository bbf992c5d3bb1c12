"""Metrics from predictions: accuracy, loss, per-class scores and the confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, log_loss, precision_recall_fscore_support


def compute_metrics(y_true: np.ndarray, probabilities: np.ndarray,
                    class_names: Sequence[str]) -> dict:
    """Test metrics from true labels and predicted probabilities `(N, n_classes)`.

    Returns JSON-ready data: `test_accuracy`, `test_loss` (mean cross-entropy of the
    probabilities, clipped by scikit-learn's `log_loss` where a model gives exactly 0),
    `per_class` precision/recall/F1/support keyed by class name, and `confusion_matrix`
    (rows: true class, columns: predicted class).
    """
    y_true = np.asarray(y_true).astype(np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.arange(len(class_names))
    y_pred = np.argmax(probabilities, axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    # Renormalise rows so float32 rounding does not trip log_loss's sum check.
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    return {
        "test_accuracy": float(np.mean(y_pred == y_true)),
        "test_loss": float(log_loss(y_true, probabilities, labels=labels)),
        "test_examples": int(len(y_true)),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]),
                   "f1": float(f1[i]), "support": int(support[i])}
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
