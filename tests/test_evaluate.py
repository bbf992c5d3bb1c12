"""Metrics against hand-computed values."""

import numpy as np
import pytest

from mnistlab.evaluate import compute_metrics


def test_metrics_on_a_hand_checked_example():
    y_true = np.array([0, 0, 1, 2])
    probabilities = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]])
    metrics = compute_metrics(y_true, probabilities, ["a", "b", "c"])
    assert metrics["test_accuracy"] == pytest.approx(0.75)
    expected_loss = -np.mean(np.log([0.8, 0.3, 0.7, 0.8]))
    assert metrics["test_loss"] == pytest.approx(expected_loss)
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert metrics["per_class"]["a"] == {"precision": 1.0, "recall": 0.5,
                                         "f1": pytest.approx(2 / 3), "support": 2}
    assert metrics["per_class"]["b"]["precision"] == pytest.approx(0.5)
    assert metrics["test_examples"] == 4


def test_absent_class_gets_zero_scores_not_an_error():
    metrics = compute_metrics(np.array([0, 1]), np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]]),
                              ["a", "b", "c"])
    assert metrics["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                         "support": 0}
