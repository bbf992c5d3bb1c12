"""Configurations: presets, overrides, and one clear error per bad value."""

import pytest

from mnistlab.config import PRESETS, FrozenOptions, config_from_dict, make_config, resolve_options
from mnistlab.errors import ConfigError
from mnistlab.models.base import OptionError


def test_tutorial_presets_match_the_tutorial():
    v1 = make_config(preset="tutorial-v1").model_config
    assert (v1.num_steps, v1.num_epochs, v1.batch_size, v1.repeat, v1.shuffle_buffer) == \
        (4000, None, 32, True, 5000)
    assert (v1.optimizer, v1.learning_rate, v1.init) == ("adam", 0.01, "normal")
    v2 = make_config(preset="tutorial-v2").model_config
    assert (v2.num_epochs, v2.batch_size, v2.repeat) == (10, 32, False)
    v3 = make_config(preset="tutorial-v3").model_config
    assert (v3.num_epochs, v3.batch_size) == (10, 300)
    assert make_config(preset="tutorial-rf").model_config == {
        "n_estimators": 50, "max_depth": None, "n_jobs": -1}


def test_presets_state_only_differences_from_the_model_defaults():
    from mnistlab.models import get_model_class
    from mnistlab.models.base import option_defaults

    for name, preset in PRESETS.items():
        defaults = option_defaults(get_model_class(preset.model))
        assert set(preset.options) <= set(defaults), name
        repeated = {key for key, value in preset.options.items() if defaults[key] == value}
        assert not repeated, f"{name} restates defaults {sorted(repeated)}"
        options = make_config(preset=name).model_config
        assert list(options) == list(defaults)  # every option resolved, in declared order
        for key, value in defaults.items():
            expected = preset.options.get(key, value)
            if key == "num_epochs" and "num_steps" in preset.options:
                expected = preset.options.get(key)  # steps decide the length
            assert options[key] == expected, (name, key)


def test_every_preset_builds_and_validates():
    for name, preset in PRESETS.items():
        config = make_config(preset=name)
        assert config.model == preset.model and config.preset == name


@pytest.mark.parametrize("model", ["softmax", "mlp", "cnn"])
def test_a_loop_runs_ten_epochs_by_default_and_steps_decide_when_given(model):
    from mnistlab.models import get_model_class
    from mnistlab.models.base import option_defaults

    defaults = option_defaults(get_model_class(model))
    assert (defaults["num_steps"], defaults["num_epochs"]) == (None, 10)
    options = make_config(model).model_config
    assert (options.num_steps, options.num_epochs) == (None, 10)
    # Steps given: they decide, the default epochs are dropped from the configuration.
    options = make_config(model, model_options={"num_steps": 7}).model_config
    assert (options.num_steps, options.num_epochs) == (7, None)
    with pytest.raises(OptionError, match="num_epochs must be given"):
        make_config(model, model_options={"num_epochs": None})


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
    restored = config_from_dict(config.to_dict()).model_config
    assert isinstance(restored, FrozenOptions)
    assert dict(restored) == dict(config.model_config)
    with pytest.raises(TypeError):
        restored["batch_size"] = 1  # frozen


def test_saved_config_with_an_unknown_field_is_refused():
    saved = {**make_config("softmax").to_dict(), "colour": "blue"}
    with pytest.raises(ConfigError, match="unknown field 'colour'"):
        config_from_dict(saved)
    saved = make_config("softmax").to_dict()
    saved["model_config"]["colour"] = "blue"
    with pytest.raises(ConfigError, match="'colour' does not apply"):
        config_from_dict(saved)


@pytest.mark.parametrize("model", ["softmax", "mlp", "cnn"])
def test_every_choice_in_the_option_tables_has_a_builder(model):
    """The option tables and the optimizer and schedule builders stay in step."""
    from mnistlab.models import get_model_class
    from mnistlab.training.optimizers import OPTIMIZERS, SCHEDULES

    options = get_model_class(model).options
    assert set(options["optimizer"].constraint.values) <= set(OPTIMIZERS)
    assert set(options["schedule"].constraint.values) <= set(SCHEDULES)
    for optimizer in options["optimizer"].constraint.values:
        make_config(model, model_options={"optimizer": optimizer})
    for schedule in options["schedule"].constraint.values:
        make_config(model, model_options={"schedule": schedule})


@pytest.mark.parametrize("options, option", [
    ({"optimizer": "adamax"}, "optimizer"),
    ({"optimizer": "nesterov"}, "optimizer"),  # a neural optimizer, not the softmax's
    ({"init": "ones"}, "init"),
    ({"schedule": "step"}, "schedule"),
    ({"schedule": "one-cycle"}, "schedule"),  # a neural schedule, not the softmax's
    ({"shuffle_buffer": -1}, "shuffle_buffer"),
])
def test_softmax_choices_checked_before_training(options, option):
    with pytest.raises(OptionError, match=f"^{option} ") as error:
        make_config("softmax", model_options=options)
    assert error.value.option == option
    assert repr(options[option]) in str(error.value)


@pytest.mark.parametrize("options, option", [
    ({"optimizer": "adagrad"}, "optimizer"), ({"schedule": "step"}, "schedule"),
    ({"schedule": "linear"}, "schedule")])
def test_neural_choices_checked_before_training(options, option):
    with pytest.raises(OptionError, match=f"^{option} must be one of") as error:
        make_config("cnn", model_options=options)
    assert error.value.option == option


def test_full_shuffle_may_be_spelled_zero():
    config = make_config("softmax", model_options={"shuffle_buffer": 0})
    assert config.model_config.shuffle_buffer == 0


def test_unknown_option_named_as_given():
    with pytest.raises(ConfigError, match="'num_steps' does not apply"):
        make_config("random-forest", model_options={"num_steps": 5})


@pytest.mark.parametrize("jobs", [-5, 0, 1.5])
def test_forest_jobs_positive_or_minus_one(jobs):
    with pytest.raises(ConfigError, match="n_jobs"):
        make_config("random-forest", model_options={"n_jobs": jobs})


def test_augmentation_settings_without_augmentation_are_kept_outside_the_command_line():
    """Only flags typed for a run without augmentation are refused (tests/test_cli_train.py);
    a preset's settings with augmentation turned off, a saved run's, a sweep's and the
    library's are harmless and accepted."""
    from mnistlab.models.neural import CNN

    assert resolve_options("cnn", "cnn-elastic", {"augment": False})["elastic"] == 17.0
    CNN(max_shift=3.0, elastic=5.0).validate_params()
