"""Tests of the MLP and CNN, their loop, augmentation, storage and presets, on tiny data.

Networks here are small (a few thousand parameters) and runs a few dozen steps, so each fit
takes a second or two; fitted models are shared through module-scoped fixtures.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import tensorflow as tf

from mnistlab.cli import main
from mnistlab.config import make_config
from mnistlab.errors import ConfigError, TrainingDivergedError
from mnistlab.experiment import train_and_evaluate
from mnistlab.models import build_model
from mnistlab.models.neural import CNN, MLP, smoothed_cross_entropy
from mnistlab.training.augment import (
    affine_transforms,
    augment_images,
    displacement_fields,
    warp_images,
)
from mnistlab.training.batching import make_batch_plan
from mnistlab.training.optimizers import WarmupCosine
from mnistlab.training.seeding import derived_seeds

from shapes import make_images

SMALL = {
    MLP: {"width": 32, "depth": 2},
    CNN: {"width": 4, "depth": 2, "convs_per_block": 1, "dense_units": 16},
}
LOOP = {"num_steps": 23, "batch_size": 16, "log_every": 5, "learning_rate": 0.003, "seed": 4}


@pytest.fixture(scope="module")
def train_data():
    return make_images(160, seed=1)


@pytest.fixture(scope="module")
def test_data():
    return make_images(40, seed=2)


def fit(model_class, train_data, test_data=None, calls=None, **settings):
    callback = None if calls is None else (lambda *args: calls.append(args))
    model = model_class(**{**SMALL[model_class], **LOOP, **settings})
    return model.fit(*train_data, validation_data=test_data, callback=callback)


@pytest.fixture(scope="module", params=[MLP, CNN], ids=["mlp", "cnn"])
def fitted(request, train_data, test_data):
    calls: list = []
    model = fit(request.param, train_data, test_data, calls, batch_norm=True, dropout=0.1,
                ema_decay=0.9, schedule="one-cycle", warmup_fraction=0.2,
                weight_decay=1e-4, label_smoothing=0.1)
    return model, calls


# ------------------------------------------------------------------------------ presets
# Parameter counts worked out by hand (weights + biases + 4 per batch-norm channel: scale,
# offset, moving mean and variance; a layer followed by batch norm has no bias).
PRESET_PARAMETERS = {
    # 784*1024 + 1024 = 803,840; 1024*1024 + 1024 = 1,049,600; 1024*10 + 10 = 10,250.
    "mlp": 803_840 + 1_049_600 + 10_250,
    # conv 3*3*1*32 = 288 + BN 128; conv 3*3*32*64 = 18,432 + BN 256;
    # 28 -> 14 -> 7: dense 7*7*64*10 + 10 = 31,370.
    "cnn-fast": 288 + 128 + 18_432 + 256 + 31_370,
    # block 1: 3*3*1*16 = 144 + 64, 3*3*16*16 = 2,304 + 64; block 2: 3*3*16*32 = 4,608 + 128,
    # 3*3*32*32 = 9,216 + 128; block 3: 3*3*32*64 = 18,432 + 256, 3*3*64*64 = 36,864 + 256;
    # 28 -> 14 -> 7 -> 3: dense 3*3*64*128 = 73,728 + BN 512; 128*10 + 10 = 1,290.
    "cnn": 144 + 64 + 2_304 + 64 + 4_608 + 128 + 9_216 + 128 + 18_432 + 256 + 36_864 + 256
    + 73_728 + 512 + 1_290,
}


@pytest.mark.parametrize("preset", sorted(PRESET_PARAMETERS))
def test_preset_parameter_counts_and_output_shape(preset):
    config = make_config(preset=preset)
    model = build_model(config.model, dict(config.model_config), seed=0)
    # The network is built for what `fit` learns from the data: MNIST's classes and shape.
    model.classes_, model.image_shape_ = np.arange(10), (28, 28)
    network = model.build_network()
    assert network.count_params() == PRESET_PARAMETERS[preset]
    assert network(tf.zeros([3, 28, 28, 1])).shape == (3, 10)


@pytest.mark.parametrize("preset", sorted(PRESET_PARAMETERS))
def test_every_preset_trains_end_to_end_on_tiny_data(preset, toy_dataset, tmp_path):
    config = make_config(preset=preset, model_options={"num_steps": 3, "log_every": 2},
                         validation_split=0.1)
    result = train_and_evaluate(config, tmp_path / preset, dataset=toy_dataset, progress=False)
    assert [record["step"] for record in result.history] == [2, 3]
    assert {"val_loss", "val_accuracy"} <= set(result.history[0])
    assert result.metrics["parameters"] == PRESET_PARAMETERS[preset]
    assert (tmp_path / preset / "curves.png").is_file()


# --------------------------------------------------------------------- fused batch norm
def test_fused_batch_norm_computes_what_keras_batch_norm_does(tmp_path):
    """The fused layer's outputs, gradients and moving statistics in training, and its
    inference, are Keras' own within float rounding; weights files load both ways."""
    import keras

    from mnistlab.models._layers import fused_batch_normalization

    images = tf.random.stateless_normal([8, 6, 6, 5], seed=[1, 2]) * 3.0 + 1.0
    layers = [fused_batch_normalization()(momentum=0.9), keras.layers.BatchNormalization(
        momentum=0.9)]
    results = []
    for layer in layers:
        layer.build(images.shape)
        layer.gamma.assign(tf.linspace(0.5, 1.5, 5))
        layer.beta.assign(tf.linspace(-1.0, 1.0, 5))
        with tf.GradientTape() as tape:
            tape.watch(images)
            outputs = layer(images, training=True)
            loss = tf.reduce_sum(outputs * tf.range(outputs.shape[-1], dtype=tf.float32))
        gradients = tape.gradient(loss, [images, layer.gamma.value, layer.beta.value])
        results.append([outputs, *gradients, layer.moving_mean, layer.moving_variance,
                        layer(images, training=False)])
    assert type(layers[0]).__name__ == "BatchNormalization"  # Keras files weights by it
    for fused, plain in zip(*results):
        np.testing.assert_allclose(np.asarray(fused), np.asarray(plain), rtol=1e-4,
                                   atol=1e-4)
    network = keras.Sequential([keras.Input((6, 6, 5)), layers[0]])
    network.save_weights(str(tmp_path / "fused.weights.h5"))
    other = keras.Sequential([keras.Input((6, 6, 5)), keras.layers.BatchNormalization()])
    other.load_weights(str(tmp_path / "fused.weights.h5"))
    np.testing.assert_array_equal(np.asarray(other.layers[0].moving_variance),
                                  np.asarray(layers[0].moving_variance))


# --------------------------------------------------------------------- precise batch norm
def _first_norm_inputs(model, images):
    """The inputs of the network's first batch-norm layer (its layers before it run as in
    inference; none of them is a batch norm)."""
    import keras

    X = tf.cast(images.reshape(len(images), *model.image_shape_, 1), tf.float32) / 255.0
    for layer in model.network_.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            return layer, X.numpy().astype(np.float64)
        X = layer(X, training=False)
    raise AssertionError("no batch norm")


@pytest.mark.parametrize("model_class", [pytest.param(MLP, marks=pytest.mark.slow), CNN],
                         ids=["mlp", "cnn"])
def test_precise_batch_norm_sets_the_statistics_of_the_final_weights(model_class, train_data):
    """With `precise_bn` at least the training set's size, the first batch-norm layer's
    statistics are the mean and (biased) variance of its inputs over every training image;
    with 0 they are the moving averages, which lag the weights."""
    images, labels = train_data
    for precise_bn, expect_exact in ((1000, True), (0, False)):
        model = fit(model_class, train_data, batch_norm=True, precise_bn=precise_bn,
                    ema_decay=0.9)
        layer, inputs = _first_norm_inputs(model, images)
        axes = tuple(range(inputs.ndim - 1))
        error = max(np.max(np.abs(np.asarray(layer.moving_mean) - inputs.mean(axes))),
                    np.max(np.abs(np.asarray(layer.moving_variance) - inputs.var(axes))
                           / inputs.var(axes)))
        assert (error < 1e-4) == expect_exact, (precise_bn, error)


@pytest.mark.slow
def test_precise_batch_norm_combines_batches_into_the_subsets_statistics(train_data,
                                                                        monkeypatch):
    """Over several batches the statistics are those of the whole seeded subset (the mean
    of the batches' variances alone would miss the spread of their means)."""
    from mnistlab.models import neural

    images, _ = train_data
    monkeypatch.setattr(neural, "PREDICT_BATCH", 50)  # 130 images: 3 batches of 43
    model = fit(MLP, train_data, batch_norm=True, precise_bn=130)  # means of 43 differ
    chosen = np.sort(np.random.default_rng(derived_seeds(model.seed, 3)[2])
                     .permutation(len(images))[:129])
    layer, inputs = _first_norm_inputs(model, images[chosen])
    np.testing.assert_allclose(np.asarray(layer.moving_mean), inputs.mean(0), rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_allclose(np.asarray(layer.moving_variance), inputs.var(0), rtol=1e-4)


def test_precise_batch_norm_is_seeded_and_uses_the_number_of_images_asked(train_data):
    images, _ = train_data
    model = fit(CNN, train_data, batch_norm=True, precise_bn=64)
    layer = model.network_.layers[1]
    fitted = np.asarray(layer.moving_variance)
    model._precise_batch_norm(images, seed=derived_seeds(model.seed, 3)[2])
    np.testing.assert_array_equal(np.asarray(layer.moving_variance), fitted)
    model._precise_batch_norm(images, seed=1)  # another 64 of the 160 images
    assert not np.allclose(np.asarray(layer.moving_variance), fitted, rtol=1e-6)
    model.precise_bn = 1000  # all of them
    model._precise_batch_norm(images, seed=1)
    every = np.asarray(layer.moving_variance)
    model._precise_batch_norm(images, seed=2)
    np.testing.assert_allclose(np.asarray(layer.moving_variance), every, rtol=1e-5)
    assert not np.allclose(every, fitted, rtol=1e-6)


# ------------------------------------------------------------------------------ contract
def test_conformance(fitted, test_data):
    model, _ = fitted
    images, labels = test_data
    probabilities = model.predict_proba(images)
    assert probabilities.shape == (len(images), 10) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(model.predict(images), np.argmax(probabilities, axis=1))
    np.testing.assert_array_equal(model.classes_, np.arange(10))
    assert model.score(images, labels) == pytest.approx(
        np.mean(np.argmax(probabilities, axis=1) == labels))
    assert model.predict_proba(images[:0]).shape == (0, 10)
    # Flat (N, 784) input and more rows than one predict batch give the same answer.
    np.testing.assert_array_equal(model.predict_proba(images.reshape(-1, 784)), probabilities)
    many = np.concatenate([images] * 30)  # 1200 rows: two predict calls, the last padded
    np.testing.assert_allclose(model.predict_proba(many)[-len(images):], probabilities,
                               atol=1e-6)


def test_records_and_callback(fitted):
    model, calls = fitted
    steps = [record["step"] for record in model.history_]
    assert steps == [5, 10, 15, 20, 23]
    for record in model.history_:
        assert set(record) == {"step", "epoch", "train_loss", "train_accuracy", "val_loss",
                               "val_accuracy"}
        assert record["epoch"] == math.ceil(record["step"] * 16 / 160)
        assert all(math.isfinite(value) for value in record.values())
    assert [call[0] for call in calls] == steps
    assert all(call[1] == 23 and call[2] is not None for call in calls)
    assert model.num_steps_ == 23 and model.examples_seen_ == 23 * 16
    assert model.num_epochs == 10  # given too (the default): the steps decide the length


def test_learns_the_toy_digits(train_data, test_data):
    model = fit(MLP, train_data, num_steps=60)
    assert model.score(*test_data) >= 0.9


@pytest.mark.parametrize("model_class", [MLP, CNN], ids=["mlp", "cnn"])
def test_same_seed_same_run_and_other_seed_another(model_class, train_data, test_data):
    settings = {"augment": True, "dropout": 0.2, "num_steps": 10}
    first = fit(model_class, train_data, test_data, **settings)
    again = fit(model_class, train_data, test_data, **settings)
    other = fit(model_class, train_data, test_data, seed=5, **settings)
    assert first.history_ == again.history_
    np.testing.assert_array_equal(first.predict_proba(test_data[0]),
                                  again.predict_proba(test_data[0]))
    assert first.history_ != other.history_


def test_fit_scopes_its_seeding_and_leaves_the_process_random_state_alone(train_data):
    """`fit` seeds Keras within its own scope (it no longer calls `set_random_seed`): the
    process's Python, NumPy and Keras random states are as they were, and the same seed
    still builds the same initial network whatever the process did before."""
    import random

    import keras

    random.seed(123)
    np.random.seed(123)
    python_state, numpy_state = random.getstate(), np.random.get_state()[1].copy()
    first = fit(MLP, train_data, num_steps=1, log_every=1)
    assert random.getstate() == python_state
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)
    keras.utils.set_random_seed(99)  # whatever the process does in between
    again = fit(MLP, train_data, num_steps=1, log_every=1)
    for before, after in zip(first.network_.get_weights(), again.network_.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_save_and_load_predict_identically(fitted, test_data, tmp_path):
    model, _ = fitted
    model.save(tmp_path)
    loaded = type(model).load(tmp_path)
    np.testing.assert_array_equal(loaded.predict_proba(test_data[0]),
                                  model.predict_proba(test_data[0]))
    assert loaded.get_params() == model.get_params()
    assert loaded.count_parameters() == model.count_parameters()


def test_serving_module_matches_predict_proba(fitted, test_data):
    model, _ = fitted
    module = model.serving_module()  # `serve` holds its module weakly: keep it alive
    served = module.serve(tf.constant(test_data[0]))["probabilities"]
    np.testing.assert_allclose(served.numpy(), model.predict_proba(test_data[0]), atol=1e-6)


def test_diverging_loss_names_the_step(train_data):
    # The learning rate can no longer be absurd (the option table caps it at 100), so an
    # image of the largest finite pixels makes the network's sums overflow instead.
    images, labels = train_data
    features = images.astype(np.float32) / 255
    features[0] = np.finfo(np.float32).max
    model = MLP(**{**SMALL[MLP], **LOOP, "num_steps": 20, "log_every": 1})
    plan = make_batch_plan(len(images), model.batch_size, num_steps=20, num_epochs=None,
                           repeat=True, shuffle_buffer=None,
                           rng=np.random.default_rng(derived_seeds(model.seed, 2)[0]))
    step = 1 + int(np.argmax((plan.indices == 0).any(axis=1)))  # the first to draw image 0
    with pytest.raises(TrainingDivergedError, match=rf"became (nan|inf) at step {step}$"):
        model.fit(features, labels)
    # The records before the bad step are kept; the model is left unfitted.
    assert [record["step"] for record in model.history_] == list(range(1, step))
    assert not hasattr(model, "network_")


@pytest.mark.parametrize("setting", [
    {"dropout": 1.0}, {"label_smoothing": -0.1}, {"optimizer": "adagrad"},
    {"schedule": "linear"}, {"width": 0}, {"num_steps": None, "num_epochs": None},
    {"batch_norm": "yes"}, {"ema_decay": 1.0}, {"seed": -1}, {"batch_size": 0},
    {"learning_rate": 1e12},
])
def test_bad_settings_are_config_errors(setting, train_data):
    named = "num_epochs" if setting.get("num_steps", 0) is None else next(iter(setting))
    with pytest.raises(ConfigError, match=f"^{named} "):
        fit(MLP, train_data, **setting)


def test_sgd_is_plain_and_nesterov_is_the_former_sgd():
    """`optimizer="sgd"` is plain SGD now; the former SGD (Nesterov momentum 0.9) is
    `"nesterov"`."""
    from mnistlab.training.optimizers import build_optimizer

    sgd = build_optimizer("sgd", 0.1, 10)
    assert sgd.momentum == 0.0 and not sgd.nesterov
    momentum = build_optimizer("momentum", 0.1, 10)
    assert momentum.momentum == 0.9 and not momentum.nesterov
    nesterov = build_optimizer("nesterov", 0.1, 10)
    assert nesterov.momentum == 0.9 and nesterov.nesterov
    for model_class in (MLP, CNN):
        assert {"sgd", "momentum", "nesterov"} <= set(
            model_class.options["optimizer"].constraint.values)


def test_bad_preset_override_is_a_config_error():
    with pytest.raises(ConfigError, match="dropout"):
        make_config(preset="cnn", model_options={"dropout": 1.5})


# ------------------------------------------------------------------------------ the math
def test_augmentation_is_seeded():
    images = tf.random.stateless_uniform([4, 28, 28, 1], seed=[0, 1])
    settings = {"max_shift": 2.0, "max_rotation": 10.0, "max_zoom": 0.1}
    first = augment_images(images, tf.constant([7, 3]), **settings)
    again = augment_images(images, tf.constant([7, 3]), **settings)
    other = augment_images(images, tf.constant([7, 4]), **settings)
    np.testing.assert_array_equal(first.numpy(), again.numpy())
    assert not np.array_equal(first.numpy(), other.numpy())
    assert first.shape == images.shape


def test_augmentation_with_zero_amplitudes_is_the_identity_and_a_shift_moves_pixels():
    images = np.zeros([1, 28, 28, 1], np.float32)
    images[0, 10, 12, 0] = 1.0
    same = augment_images(tf.constant(images), tf.constant([1, 2]), max_shift=0.0,
                          max_rotation=0.0, max_zoom=0.0)
    np.testing.assert_allclose(same.numpy(), images, atol=1e-6)
    moved = augment_images(tf.constant(images), tf.constant([1, 2]), max_shift=3.0,
                           max_rotation=0.0, max_zoom=0.0).numpy()
    assert moved.sum() == pytest.approx(1.0, abs=1e-5)  # bilinear weights of a shifted pixel
    assert moved[0, 10, 12, 0] < 1.0


def test_the_gathering_warp_is_tensorflows_projective_warp():
    images = tf.random.stateless_uniform([6, 28, 28, 1], seed=[2, 3])
    transforms = affine_transforms(6, tf.constant([4, 5]), max_shift=3.0, max_rotation=20.0,
                                   max_zoom=0.2)
    expected = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.constant([28, 28]),
        fill_value=tf.constant(0.0), interpolation="BILINEAR", fill_mode="CONSTANT")
    np.testing.assert_allclose(warp_images(images, transforms).numpy(), expected.numpy(),
                               atol=1e-5)


def test_a_constant_displacement_moves_the_image_by_that_much():
    images = np.zeros([1, 28, 28, 1], np.float32)
    images[0, 10, 12, 0] = 1.0
    identity = tf.constant([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]])
    right_and_up = np.zeros([1, 28, 28, 2], np.float32)
    right_and_up[..., 0], right_and_up[..., 1] = 2.0, -3.0  # output (x, y) reads (x+2, y-3)
    moved = warp_images(tf.constant(images), identity, tf.constant(right_and_up)).numpy()
    assert moved[0, 13, 10, 0] == pytest.approx(1.0)
    assert moved.sum() == pytest.approx(1.0)
    half = warp_images(tf.constant(images), identity, tf.constant(right_and_up * 0.5)).numpy()
    assert half[0, 11:13, 11:13, 0].sum() == pytest.approx(1.0)  # split over the neighbours


def test_elastic_fields_are_smooth_seeded_and_scale_with_their_strength():
    seed = tf.constant([7, 3])
    field = displacement_fields(8, seed, alpha=34.0, sigma=4.0).numpy()
    assert field.shape == (8, 28, 28, 2)
    np.testing.assert_array_equal(field, displacement_fields(8, seed, alpha=34.0,
                                                             sigma=4.0).numpy())
    np.testing.assert_allclose(displacement_fields(8, seed, alpha=17.0, sigma=4.0).numpy(),
                               field / 2, rtol=1e-5, atol=1e-6)
    assert not np.allclose(field, displacement_fields(8, tf.constant([7, 4]), alpha=34.0,
                                                      sigma=4.0).numpy())
    # Smooth: neighbouring pixels move nearly together (raw noise scaled by alpha would differ
    # by 2/3 alpha, 23 pixels, on average; here by 0.16).
    step = np.abs(np.diff(field, axis=2)).mean()
    assert 0.5 < np.abs(field).mean() < 3.0 and step < 0.25 * np.abs(field).mean()


def test_elastic_augmentation_is_seeded_and_a_replica_slice_gets_its_rows():
    images = tf.random.stateless_uniform([8, 28, 28, 1], seed=[0, 1])
    settings = {"max_shift": 2.0, "max_rotation": 10.0, "max_zoom": 0.1, "elastic": 34.0}
    whole = augment_images(images, tf.constant([7, 3]), **settings).numpy()
    np.testing.assert_array_equal(whole, augment_images(images, tf.constant([7, 3]),
                                                        **settings).numpy())
    plain = augment_images(images, tf.constant([7, 3]), **{**settings, "elastic": 0.0})
    assert np.abs(whole - plain.numpy()).max() > 0.1  # the distortion moved pixels
    part = augment_images(images[4:], tf.constant([7, 3]), global_batch=8, offset=4,
                          **settings).numpy()
    np.testing.assert_allclose(part, whole[4:], atol=1e-6)


def test_label_smoothing_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 10)).astype(np.float32)
    labels = np.array([0, 3, 9, 3, 1], np.int32)
    log_p = logits - logits.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    target = 0.9 * np.eye(10)[labels] + 0.1 / 10
    expected = -(target * log_p).sum(axis=1)
    np.testing.assert_allclose(smoothed_cross_entropy(labels, logits, 0.1).numpy(), expected,
                               rtol=1e-5)


def test_one_cycle_schedule_shape():
    schedule = WarmupCosine(0.01, total_steps=100, warmup_steps=20, start_fraction=0.04,
                            end_fraction=1e-4)
    values = [float(schedule(step)) for step in (0, 10, 20, 60, 100)]
    assert values[0] == pytest.approx(0.0004)
    assert values[1] == pytest.approx((0.0004 + 0.01) / 2)
    assert values[2] == pytest.approx(0.01)
    assert values[3] == pytest.approx((0.01 + 1e-6) / 2)
    assert values[4] == pytest.approx(1e-6)


# ------------------------------------------------------------------------------ CLI
def test_cli_trains_a_cnn_with_neural_flags(toy_dataset_dir, tmp_path, capsys):
    out = tmp_path / "cnn"
    code = main(["train", "cnn", "--dataset", str(toy_dataset_dir), "--width", "4",
                 "--depth", "1", "--dense-units", "0", "--batch-norm", "--augment", "--ema",
                 "0.9", "--steps", "6", "--log-every", "3", "--schedule", "cosine",
                 "--warmup", "0.3", "--label-smoothing", "0.1", "--weight-decay", "1e-4",
                 "--out", str(out), "--quiet"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert f"test accuracy {metrics['test_accuracy']:.4f}" in capsys.readouterr().out
    saved = json.loads((out / "config.json").read_text())["model_config"]
    assert (saved["width"], saved["depth"], saved["dense_units"], saved["batch_norm"],
            saved["augment"], saved["ema_decay"], saved["num_steps"], saved["log_every"],
            saved["schedule"], saved["warmup_fraction"], saved["label_smoothing"],
            saved["weight_decay"]) == (4, 1, 0, True, True, 0.9, 6, 3, "cosine", 0.3, 0.1, 1e-4)
    assert main(["evaluate", str(out)]) == 0
    assert "same as at training time" in capsys.readouterr().out


def test_cli_rejects_a_neural_flag_for_the_forest(toy_dataset_dir, tmp_path, capsys):
    code = main(["train", "random-forest", "--dataset", str(toy_dataset_dir), "--dropout",
                 "0.1", "--out", str(tmp_path / "f"), "--quiet"])
    assert code == 2
    assert capsys.readouterr().err == \
        "mnistlab: error: --dropout does not apply to model 'random-forest'\n"
    assert not (tmp_path / "f").exists()


# ------------------------------------------------------------------------------ real data
@pytest.mark.realdata
@pytest.mark.slow
def test_cnn_fast_accuracy_floor_on_real_mnist(mnist_dir):
    from mnistlab.data import load_dataset

    dataset = load_dataset("mnist", data_dir=mnist_dir, progress=False)
    # 800 steps (about 35 s): batch norm's moving statistics (Keras' momentum 0.99, variance
    # starting at 1) need several hundred steps before inference mode is meaningful.
    config = make_config(preset="cnn-fast", model_options={"num_steps": 800})
    model = build_model("cnn", dict(config.model_config), seed=0)
    model.fit(dataset.train_images[:10000], dataset.train_labels[:10000])
    assert model.score(dataset.test_images[:2000], dataset.test_labels[:2000]) >= 0.95


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    """A tiny batch-normalised CNN run on the toy digits, and the dataset, shared by the
    export tests (one training for the three formats)."""
    from mnistlab.data import load_dataset, write_dataset

    from conftest import make_toy_arrays

    root = tmp_path_factory.mktemp("cnn-export")
    train_images, train_labels, test_images, test_labels = make_toy_arrays()
    dataset = load_dataset(write_dataset(root / "toy", train_images=train_images,
                                         train_labels=train_labels, test_images=test_images,
                                         test_labels=test_labels), progress=False)
    config = make_config("cnn", model_options={"width": 4, "depth": 1, "dense_units": 8,
                                               "batch_norm": True, "num_steps": 3})
    result = train_and_evaluate(config, root / "run", dataset=dataset, progress=False)
    return result.run_dir, dataset


@pytest.mark.parametrize("output_format", ["savedmodel", "tflite", "onnx"])
def test_a_cnn_run_exports_and_matches(output_format, cnn_run, tmp_path):
    if output_format == "onnx":
        pytest.importorskip("tf2onnx")
    from mnistlab.export import check_export, export_run

    run_dir, dataset = cnn_run
    out = export_run(run_dir, output_format, tmp_path / f"exported.{output_format}")
    result = check_export(run_dir, out, output_format, dataset.test_images)
    assert result.passed, result
    assert result.examples == len(dataset.test_images)
