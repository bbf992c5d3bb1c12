"""Configurations: presets, overrides, and one clear error per bad value."""

import pytest

from mnistlab.config import PRESETS, ForestConfig, SoftmaxConfig, config_from_dict, make_config
from mnistlab.errors import ConfigError


def test_tutorial_presets_match_the_tutorial():
    v1 = make_config(preset="tutorial-v1").model_config
    assert (v1.num_steps, v1.num_epochs, v1.batch_size, v1.repeat, v1.shuffle_buffer) == \
        (4000, None, 32, True, 5000)
    assert (v1.optimizer, v1.learning_rate, v1.init) == ("adam", 0.01, "normal")
    v2 = make_config(preset="tutorial-v2").model_config
    assert (v2.num_epochs, v2.batch_size, v2.repeat) == (10, 32, False)
    v3 = make_config(preset="tutorial-v3").model_config
    assert (v3.num_epochs, v3.batch_size) == (10, 300)
    assert make_config(preset="tutorial-rf").model_config == ForestConfig(n_estimators=50)


def test_every_preset_builds_and_validates():
    for name, preset in PRESETS.items():
        config = make_config(preset=name)
        assert config.model == preset.model and config.preset == name


def test_steps_override_replaces_epochs_of_a_preset():
    config = make_config(preset="tutorial-v2", model_options={"num_steps": 7})
    assert (config.model_config.num_steps, config.model_config.num_epochs) == (7, None)
    config = make_config(preset="tutorial-v1", model_options={"num_epochs": 2})
    assert (config.model_config.num_steps, config.model_config.num_epochs) == (None, 2)


@pytest.mark.parametrize("model, kwargs, message", [
    ("softmax", {"model_options": {"num_steps": 5, "num_epochs": 2}}, "exactly one"),
    ("softmax", {"model_options": {"batch_size": 0}}, "batch_size"),
    ("softmax", {"model_options": {"batch_size": -3}}, "batch_size"),
    ("softmax", {"model_options": {"learning_rate": 0.0}}, "learning_rate"),
    ("softmax", {"model_options": {"learning_rate": float("nan")}}, "learning_rate"),
    ("softmax", {"model_options": {"learning_rate": -1.0}}, "learning_rate"),
    ("softmax", {"model_options": {"n_estimators": 5}}, "does not apply"),
    ("random-forest", {"model_options": {"num_steps": 5}}, "does not apply"),
    ("random-forest", {"model_options": {"n_estimators": 0}}, "n_estimators"),
    ("softmax", {"limit_train": 0}, "limit_train"),
    ("softmax", {"seed": -1}, "seed"),
    ("softmax", {"validation_split": 1.0}, "validation_split"),
    ("perceptron", {}, "unknown model"),
    ("softmax", {"preset": "tutorial-v9"}, "unknown preset"),
    ("random-forest", {"preset": "tutorial-v1"}, "is for model"),
    (None, {}, "name a model"),
])
def test_bad_values_raise_config_error_naming_them(model, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        make_config(model, **kwargs)


def test_config_round_trips_through_a_dict():
    config = make_config(preset="tutorial-v1", seed=3, limit_train=100)
    assert config_from_dict(config.to_dict()) == config
    assert isinstance(config_from_dict(config.to_dict()).model_config, SoftmaxConfig)


def test_softmax_choices_match_the_model():
    from mnistlab.config import NEURAL_CHOICES, SOFTMAX_CHOICES
    from mnistlab.models import neural, softmax

    assert set(NEURAL_CHOICES["optimizer"]) == set(neural.OPTIMIZERS)
    assert set(NEURAL_CHOICES["schedule"]) == set(neural.SCHEDULES)
    assert set(SOFTMAX_CHOICES["optimizer"]) == set(softmax.OPTIMIZERS)
    assert set(SOFTMAX_CHOICES["init"]) == set(softmax.INITIALIZERS)
    assert set(SOFTMAX_CHOICES["schedule"]) == set(softmax.SCHEDULES)


@pytest.mark.parametrize("options, message", [
    ({"optimizer": "adamax"}, "unknown optimizer"),
    ({"init": "ones"}, "unknown init"),
    ({"schedule": "step"}, "unknown schedule"),
    ({"shuffle_buffer": -1}, "shuffle_buffer"),
])
def test_softmax_choices_checked_before_training(options, message):
    with pytest.raises(ConfigError, match=message):
        make_config("softmax", model_options=options)


@pytest.mark.parametrize("options, message", [
    ({"optimizer": "adagrad"}, "unknown optimizer"), ({"schedule": "step"}, "unknown schedule")])
def test_neural_choices_checked_before_training(options, message):
    with pytest.raises(ConfigError, match=message):
        make_config("cnn", model_options=options)


def test_full_shuffle_may_be_spelled_zero():
    assert make_config("softmax", model_options={"shuffle_buffer": 0}).model_config.shuffle_buffer == 0


def test_unknown_option_named_as_given():
    with pytest.raises(ConfigError, match="'num_steps' does not apply"):
        make_config("random-forest", model_options={"num_steps": 5})


@pytest.mark.parametrize("jobs", [-5, 0, 1.5])
def test_forest_jobs_positive_or_minus_one(jobs):
    with pytest.raises(ConfigError, match="n_jobs"):
        make_config("random-forest", model_options={"n_jobs": jobs})
