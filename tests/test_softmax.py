"""Tests of the softmax regression and its batch orders, on tiny synthetic data.

Every fit compiles its XLA loop (about a second), so the fitted models are shared through
module-scoped fixtures where a test only reads them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from mnistlab.errors import ConfigError, RunError, TrainingDivergedError
from mnistlab.models.softmax import SoftmaxRegression, _initial_parameters, batch_loss
from mnistlab.training.batching import epoch_batches, repeated_batches, shuffle_buffer_order
from mnistlab.training.seeding import derived_seeds

from shapes import make_images

NUM_TRAIN = 200


@pytest.fixture(scope="module")
def train_data() -> tuple[np.ndarray, np.ndarray]:
    return make_images(NUM_TRAIN, seed=1)


@pytest.fixture(scope="module")
def test_data() -> tuple[np.ndarray, np.ndarray]:
    return make_images(50, seed=2)


# Epochs mode with a partial last batch (200 = 6 * 32 + 8): 3 epochs of 7 steps.
SETTINGS = {"num_epochs": 3, "batch_size": 32, "log_every": 5, "shuffle_buffer": 64,
            "init": "zeros", "learning_rate": 0.05, "seed": 3}


def fit_model(train_data, test_data, calls=None, **settings) -> SoftmaxRegression:
    callback = None if calls is None else (lambda *args: calls.append(args))
    return SoftmaxRegression(**{**SETTINGS, **settings}).fit(
        *train_data, validation_data=test_data, callback=callback)


@pytest.fixture(scope="module")
def fitted(train_data, test_data) -> tuple[SoftmaxRegression, list]:
    calls: list = []
    return fit_model(train_data, test_data, calls), calls


# ------------------------------------------------------------------------------ the math
def numpy_loss_and_gradients(W, b, X, y, l2):
    """Softmax cross-entropy and its closed-form gradients, in float64."""
    logits = X @ W + b
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    onehot = np.eye(10)[y]
    n = len(X)
    loss = -np.log(probabilities[np.arange(n), y]).mean() + l2 * (W ** 2).sum()
    gradient_W = X.T @ (probabilities - onehot) / n + 2 * l2 * W
    gradient_b = (probabilities - onehot).sum(axis=0) / n
    return loss, gradient_W, gradient_b


@pytest.mark.parametrize("l2", [0.0, 0.01])
def test_tape_gradient_matches_closed_form(l2):
    rng = np.random.default_rng(0)
    X = rng.random((16, 784)).astype(np.float32)
    y = rng.integers(0, 10, 16).astype(np.int32)
    W = tf.Variable(rng.normal(size=(784, 10)).astype(np.float32) * 0.1)
    b = tf.Variable(rng.normal(size=10).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = batch_loss(W, b, tf.constant(X), tf.constant(y), tf.ones(16), l2)
    gradient_W, gradient_b = tape.gradient(loss, [W, b])
    expected = numpy_loss_and_gradients(W.numpy().astype(np.float64), b.numpy(),
                                        X.astype(np.float64), y, l2)
    np.testing.assert_allclose(loss.numpy(), expected[0], rtol=1e-5)
    np.testing.assert_allclose(gradient_W.numpy(), expected[1], atol=1e-6)
    np.testing.assert_allclose(gradient_b.numpy(), expected[2], atol=1e-6)


def test_mask_leaves_out_padding():
    rng = np.random.default_rng(1)
    X = tf.constant(rng.random((8, 784)).astype(np.float32))
    y = tf.constant(rng.integers(0, 10, 8).astype(np.int32))
    W, b = tf.constant(rng.normal(size=(784, 10)).astype(np.float32)), tf.zeros(10)
    mask = tf.constant([1.0] * 5 + [0.0] * 3)
    np.testing.assert_allclose(batch_loss(W, b, X, y, mask).numpy(),
                               batch_loss(W, b, X[:5], y[:5], tf.ones(5)).numpy(), rtol=1e-6)


def test_one_sgd_step_of_fit_matches_closed_form(train_data):
    """The whole compiled loop: one full-batch SGD step is W - lr * closed-form gradient."""
    images, labels = train_data
    # A normal init, so that the step's L2 gradient 2 * l2 * W is not zero.
    model = SoftmaxRegression(optimizer="sgd", learning_rate=0.5, l2=0.001, batch_size=NUM_TRAIN,
                              num_steps=1, shuffle_buffer=None, init="normal", seed=4)
    init_seed = derived_seeds(model.seed, 2)[0]
    W0, b0 = (tensor.numpy().astype(np.float64)
              for tensor in _initial_parameters(model.init, init_seed, 784, 10))
    model.fit(images, labels)
    X = images.reshape(-1, 784).astype(np.float64) / 255
    _, gradient_W, gradient_b = numpy_loss_and_gradients(W0, b0, X, labels, 0.001)
    np.testing.assert_allclose(model.weights_, W0 - 0.5 * gradient_W, atol=2e-5)
    np.testing.assert_allclose(model.bias_, b0 - 0.5 * gradient_b, atol=2e-5)
    assert np.abs(W0).max() > 1  # really the normal init
    assert model.num_steps_ == 1 and model.examples_seen_ == NUM_TRAIN


# ------------------------------------------------------------------------------ the contract
def test_predictions_follow_the_classifier_contract(fitted, test_data):
    model, _ = fitted
    images, labels = test_data
    probabilities = model.predict_proba(images)
    assert probabilities.dtype == np.float32 and probabilities.shape == (50, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(model.classes_, np.arange(10))
    np.testing.assert_array_equal(model.predict(images), np.argmax(probabilities, axis=1))
    assert model.score(images, labels) == np.mean(model.predict(images) == labels)
    assert model.score(images, labels) >= 0.9  # the bands are easy to separate
    assert 0 < model.cross_entropy(images, labels) < 1
    assert model.count_parameters() == 7850 == model.weights_.size + model.bias_.size
    assert model.weights_.shape == (784, 10)
    assert type(model.weights_) is np.ndarray and type(model.bias_) is np.ndarray
    assert model.n_features_in_ == 784 and model.image_shape_ == (28, 28)


def test_input_may_be_flat_or_float(fitted, test_data):
    model, _ = fitted
    images, _ = test_data
    expected = model.predict_proba(images)
    np.testing.assert_array_equal(model.predict_proba(images.reshape(-1, 784)), expected)
    np.testing.assert_allclose(model.predict_proba(images.astype(np.float32) / 255), expected,
                               rtol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        model.predict(images.reshape(-1, 28 * 14, 2))


def test_unfitted_model_refuses_to_predict(test_data):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        SoftmaxRegression().predict(test_data[0])


@pytest.mark.parametrize("settings, named", [
    ({"optimizer": "adamw"}, "'adamw'"),
    ({"init": "glorot"}, "'glorot'"),
    ({"schedule": "step"}, "'step'"),
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 2.5}, "batch_size"),
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"learning_rate": float("nan")}, "learning_rate"),
    ({"learning_rate": float("inf")}, "learning_rate"),
    ({"learning_rate": 1e38}, "learning_rate"),
    ({"num_steps": None, "num_epochs": None}, "num_epochs must be given"),
    ({"num_steps": -1}, "num_steps"),
    ({"num_epochs": 0}, "num_epochs"),
    ({"log_every": 0}, "log_every"),
    ({"shuffle_buffer": -5}, "shuffle_buffer"),
    ({"l2": -1.0}, "l2"),
    ({"seed": -1}, "seed"),
    ({"repeat": "yes"}, "repeat"),
])
def test_bad_settings_raise_config_error(settings, named, train_data):
    with pytest.raises(ConfigError, match=named):
        SoftmaxRegression(**settings).fit(*train_data)


def test_bad_labels_raise_value_error(train_data):
    images, labels = train_data
    with pytest.raises(ValueError, match=r"inconsistent numbers of samples: \[200, 199\]"):
        SoftmaxRegression(num_steps=1).fit(images, labels[:-1])
    with pytest.raises(ValueError, match="at least 2 classes"):
        SoftmaxRegression(num_steps=1).fit(images, np.zeros_like(labels))
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        SoftmaxRegression(num_steps=1).fit(images, labels + 0.5)
    assert not hasattr(SoftmaxRegression(num_steps=1), "weights_")


def test_classes_are_learned_from_the_labels(train_data, test_data):
    """Labels need not be 0..9: the model learns `classes_` and predicts labels from it."""
    images, labels = train_data
    keep = labels < 3
    model = SoftmaxRegression(num_steps=40, batch_size=20, init="zeros", learning_rate=0.05,
                              seed=0).fit(images[keep], labels[keep] * 2 + 1)  # 1, 3, 5
    np.testing.assert_array_equal(model.classes_, [1, 3, 5])
    assert model.weights_.shape == (784, 3) and model.bias_.shape == (3,)
    test_images, test_labels = test_data
    kept = test_labels < 3
    assert model.predict_proba(test_images[kept]).shape == (kept.sum(), 3)
    assert model.score(test_images[kept], test_labels[kept] * 2 + 1) >= 0.9


# ------------------------------------------------------------------------------ the loop
def test_epochs_mode_runs_whole_epochs_and_records_every_log_every_steps(fitted, test_data):
    model, calls = fitted
    steps_per_epoch = math.ceil(NUM_TRAIN / 32)  # 7, the last batch holding 8 examples
    assert model.num_steps_ == 3 * steps_per_epoch == 21
    assert model.examples_seen_ == 3 * NUM_TRAIN
    history = model.history_
    # Every log_every steps, and at the last step.
    assert [record["step"] for record in history] == [5, 10, 15, 20, 21]
    assert [record["epoch"] for record in history] == [1, 2, 3, 3, 3]
    for record in history:
        assert set(record) == {"step", "epoch", "train_loss", "train_accuracy", "val_loss",
                               "val_accuracy"}
        assert all(math.isfinite(value) for value in record.values())
        # Accuracy over the real examples of the step's batch only: whole counts of 32,
        # or of 8 at an epoch's last, partial batch (steps 7, 14, 21); of all 50 for val.
        real = 8 if record["step"] % 7 == 0 else 32
        assert (record["train_accuracy"] * real) == pytest.approx(
            round(record["train_accuracy"] * real), abs=1e-4)
        assert (record["val_accuracy"] * 50) == pytest.approx(
            round(record["val_accuracy"] * 50), abs=1e-4)
    # The callback saw every record, at the end of its chunk.
    assert [call[0] for call in calls] == [5, 10, 15, 20, 21]
    assert all(call[1] == 21 for call in calls)
    assert [call[2] for call in calls] == history
    assert history[-1]["val_accuracy"] == pytest.approx(model.score(*test_data))


def test_record_is_the_current_batch_after_the_update(train_data, test_data):
    """With one full batch per step, the record at step k is the model after k updates."""
    images, labels = train_data
    model = SoftmaxRegression(batch_size=NUM_TRAIN, num_steps=2, log_every=2, seed=5)
    model.fit(images, labels, validation_data=test_data)
    record = model.history_[-1]
    assert record["step"] == 2
    assert record["train_loss"] == pytest.approx(model.cross_entropy(images, labels), rel=1e-4)
    assert record["train_accuracy"] == pytest.approx(model.score(images, labels))
    assert record["val_loss"] == pytest.approx(model.cross_entropy(*test_data), rel=1e-4)
    assert record["val_accuracy"] == pytest.approx(model.score(*test_data))


def test_num_steps_decides_the_length_over_num_epochs(train_data):
    """Given both, the steps decide (7 steps make an epoch of 200 in batches of 32)."""
    model = SoftmaxRegression(num_steps=10, num_epochs=1, batch_size=32, log_every=5, seed=0)
    model.fit(*train_data)
    assert model.num_steps_ == 10 and model.examples_seen_ == 200 + 3 * 32
    assert [(record["step"], record["epoch"]) for record in model.history_] == [(5, 1), (10, 2)]


def test_repeated_mode_does_exactly_num_steps(train_data):
    model = SoftmaxRegression(repeat=True, num_steps=23, batch_size=16, log_every=10, seed=0)
    model.fit(*train_data)
    assert model.num_steps_ == 23 and model.examples_seen_ == 23 * 16
    assert [record["step"] for record in model.history_] == [10, 20, 23]
    assert "val_loss" not in model.history_[0]
    # 160, 320 and 368 examples of 200: epochs 1, 2 and 2.
    assert [record["epoch"] for record in model.history_] == [1, 2, 2]


def test_small_chunks_give_the_same_result(fitted, train_data, test_data):
    """The chunking is for progress reports only: many small calls give the same run."""
    model, _ = fitted
    chunked = SoftmaxRegression(**SETTINGS)
    chunked._chunk_steps = 4
    calls: list = []
    chunked.fit(*train_data, validation_data=test_data,
                callback=lambda *args: calls.append(args))
    assert chunked.history_ == model.history_
    np.testing.assert_array_equal(chunked.weights_, model.weights_)
    # Chunk ends that are not records come with None, so a progress bar keeps moving.
    assert [(step, record is None) for step, _, record in calls] == [
        (4, True), (5, False), (8, True), (10, False), (12, True), (15, False), (16, True),
        (20, False), (21, False)]


def test_same_seed_same_run_other_seed_other_run(fitted, train_data, test_data):
    model, _ = fitted
    again = fit_model(train_data, test_data)
    assert again.history_ == model.history_
    np.testing.assert_array_equal(again.predict_proba(test_data[0]),
                                  model.predict_proba(test_data[0]))
    other = fit_model(train_data, test_data, seed=4)
    assert other.history_ != model.history_
    assert not np.array_equal(other.weights_, model.weights_)


@pytest.mark.parametrize("optimizer, schedule", [
    ("adam", "constant"), pytest.param("adagrad", "cosine", marks=pytest.mark.slow)])
def test_later_fits_reuse_the_compiled_loop_and_compute_what_a_new_one_does(
        optimizer, schedule, train_data, test_data, monkeypatch):
    """A fit with the options of an earlier one in the process (another seed or constant
    learning rate) runs the earlier fit's compiled loop from a fresh state: the same
    weights and records, bit for bit, as a loop built for it."""
    from mnistlab.models import softmax

    fits = [{"seed": 3, "learning_rate": 0.05}, {"seed": 4, "learning_rate": 0.01},
            {"seed": 3, "learning_rate": 0.05}]
    runs, loops = {}, []
    for reuse in (False, True):
        monkeypatch.setattr(SoftmaxRegression, "_reuse_loops", reuse)
        monkeypatch.setattr(softmax, "_LOOPS", type(softmax._LOOPS)())
        runs[reuse] = []
        for settings in fits:
            model = fit_model(train_data, test_data, optimizer=optimizer, schedule=schedule,
                              **settings)
            runs[reuse].append((model.weights_, model.bias_, model.history_))
            loops.append([loop.train_chunk for loop in softmax._LOOPS.values()])
    for (weights, bias, history), (weights_, bias_, history_) in zip(*runs.values()):
        np.testing.assert_array_equal(weights, weights_)
        np.testing.assert_array_equal(bias, bias_)
        assert history == history_
    assert loops[:3] == [[], [], []]
    if schedule == "constant":  # one loop for every fit
        assert len(loops[3]) == 1 and loops[3] == loops[4] == loops[5]
    else:  # a schedule's learning rate is compiled in: one loop per rate
        assert len(loops[5]) == 2 and loops[5][-1] is loops[3][0]
    np.testing.assert_array_equal(runs[True][0][0], runs[True][2][0])
    assert not np.array_equal(runs[True][0][0], runs[True][1][0])


@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_huge_learning_rate_raises_diverged_naming_the_step(optimizer, train_data):
    # The largest learning rate and L2 penalty the option table allows: each SGD step
    # multiplies W by about 1 - 2 * 100 * 1000 = -2e5, so after 3 steps W is near 1e16 and
    # step 4's penalty 1000 * sum(W**2) overflows float32.
    model = SoftmaxRegression(optimizer=optimizer, learning_rate=100.0, l2=1000.0,
                              init="normal", batch_size=20, num_epochs=2, log_every=1)
    with pytest.raises(TrainingDivergedError, match=r"became inf at step 4$"):
        model.fit(*train_data)
    assert [record["step"] for record in model.history_] == [1, 2, 3]
    assert not hasattr(model, "weights_")  # a failed fit leaves the model unfitted


def test_huge_image_raises_diverged_at_its_batch(train_data):
    images, labels = train_data
    features = images.astype(np.float32) / 255
    model = SoftmaxRegression(batch_size=20, num_epochs=1, shuffle_buffer=None, init="normal",
                              seed=0)
    order, _ = epoch_batches(NUM_TRAIN, 20, 1, None,
                             np.random.default_rng(derived_seeds(model.seed, 2)[1]))
    # Finite pixels, but the image's logits overflow: drawn in step 4 (Adam, the default).
    features[order[3, 7]] = np.finfo(np.float32).max
    with pytest.raises(TrainingDivergedError, match=r"at step 4$"):
        model.fit(features, labels)


def test_non_finite_pixels_are_refused_before_training(train_data):
    images, labels = train_data
    features = images.astype(np.float32) / 255
    features[5, 10, 10] = np.inf
    with pytest.raises(ValueError, match="contains infinity"):
        SoftmaxRegression(num_steps=1).fit(features, labels)
    features[5, 10, 10] = np.nan
    with pytest.raises(ValueError, match="contains NaN"):
        SoftmaxRegression(num_steps=1).fit(features, labels)


def test_save_and_load_predict_identically(fitted, test_data, tmp_path):
    model, _ = fitted
    model.save(tmp_path)
    loaded = SoftmaxRegression.load(tmp_path)
    np.testing.assert_array_equal(loaded.predict_proba(test_data[0]),
                                  model.predict_proba(test_data[0]))
    assert loaded.get_params() == model.get_params()
    assert loaded.num_steps_ == model.num_steps_
    with pytest.raises(RunError, match="not empty"):
        model.save(tmp_path)
    with pytest.raises(RunError, match="params.json"):
        SoftmaxRegression.load(tmp_path / "missing")


# ------------------------------------------------------------------------------ batch orders
def test_shuffle_buffer_order_is_a_buffered_permutation():
    rng = np.random.default_rng(0)
    for num_inputs, buffer_size in [(100, 10), (100, 100), (100, 250), (1000, 1)]:
        order = shuffle_buffer_order(num_inputs, num_inputs, buffer_size, rng)
        np.testing.assert_array_equal(np.sort(order), np.arange(num_inputs))
        # Output t can only be an input already read into the buffer.
        assert np.all(order < np.arange(num_inputs) + buffer_size)
    np.testing.assert_array_equal(shuffle_buffer_order(50, 50, 1, rng), np.arange(50))


def test_shuffle_buffer_order_moves_like_tf_data():
    """Same distribution as tf.data's buffer: compare the mean and spread of displacements."""
    num_inputs, buffer_size = 5000, 200
    ours = shuffle_buffer_order(num_inputs, num_inputs, buffer_size, np.random.default_rng(0))
    theirs = np.concatenate(list(
        tf.data.Dataset.range(num_inputs).shuffle(buffer_size, seed=0).batch(num_inputs)
        .as_numpy_iterator()))
    for order in (ours, theirs):
        displacement = order - np.arange(num_inputs)
        assert np.abs(displacement).mean() == pytest.approx(
            np.abs(theirs - np.arange(num_inputs)).mean(), rel=0.15)
        assert displacement.std() == pytest.approx(
            (theirs - np.arange(num_inputs)).std(), rel=0.15)


def test_repeated_batches_cross_epoch_boundaries():
    rng = np.random.default_rng(0)
    batches = repeated_batches(100, 8, 40, 30, rng)  # 320 examples: 3.2 passes
    assert batches.shape == (40, 8) and batches.dtype == np.int32
    counts = np.bincount(batches.ravel(), minlength=100)
    assert counts.min() >= 2 and counts.max() <= 4
    # The buffer mixes the end of one pass with the start of the next.
    first_pass_end = batches.ravel()[85:115]
    assert (first_pass_end < 30).any() and (first_pass_end >= 70).any()
    full = repeated_batches(100, 10, 20, None, rng).reshape(2, 100)
    for epoch in full:
        np.testing.assert_array_equal(np.sort(epoch), np.arange(100))


def test_epoch_batches_keep_the_partial_last_batch():
    rng = np.random.default_rng(0)
    indices, sizes = epoch_batches(10, 4, 2, 3, rng)
    assert indices.shape == (6, 4)
    np.testing.assert_array_equal(sizes, [4, 4, 2, 4, 4, 2])
    for epoch in range(2):
        real = np.concatenate([indices[3 * epoch + k, :sizes[3 * epoch + k]] for k in range(3)])
        np.testing.assert_array_equal(np.sort(real), np.arange(10))
    assert not np.array_equal(indices[:3], indices[3:])  # reshuffled each epoch


# ------------------------------------------------------------------------------ real data
@pytest.mark.realdata
def test_one_epoch_on_real_mnist_reaches_the_floor(mnist_dir):
    from mnistlab.data import load_dataset

    dataset = load_dataset("mnist", data_dir=mnist_dir)
    # The tutorial's settings but zeros init: the tutorial's stddev-1 init needs more than
    # one epoch of 10,000 images (about 0.82 here); zeros reach about 0.895.
    model = SoftmaxRegression(num_epochs=1, batch_size=32, init="zeros", seed=0)
    model.fit(dataset.train_images[:10000], dataset.train_labels[:10000])
    assert model.score(dataset.test_images, dataset.test_labels) >= 0.88
