"""One contract, checked over every model of the registry; and scikit-learn's own estimator
test battery as the peer test suite."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from mnistlab.errors import ConfigError
from mnistlab.models import MODEL_CLASSES, get_model_class
from mnistlab.models.base import Boolean, Choice, Classifier, Integer, OptionError, Real
from mnistlab.models.ensemble import EnsembleModel
from mnistlab.models.forest import RandomForest
from mnistlab.models.neural import CNN, MLP
from mnistlab.models.softmax import SoftmaxRegression

from conftest import make_toy_arrays

# A small, quick instance of every registered model. A model added to the registry without
# an entry here fails `test_every_registered_model_is_covered`.
SMALL = {
    "random-forest": lambda: RandomForest(n_estimators=5, n_jobs=1),
    "softmax": lambda: SoftmaxRegression(num_epochs=3, log_every=5),
    "mlp": lambda: MLP(width=16, num_steps=30, log_every=10),
    "cnn": lambda: CNN(width=4, depth=1, convs_per_block=1, dense_units=0, num_steps=12,
                       log_every=4),
    "ensemble": lambda: EnsembleModel(models=[SoftmaxRegression(num_epochs=2),
                                              RandomForest(n_estimators=3, n_jobs=1)]),
}


@pytest.fixture(scope="module")
def toy():
    train_images, train_labels, test_images, test_labels = make_toy_arrays(train=200, test=50)
    return train_images, train_labels, test_images, test_labels


def test_every_registered_model_is_covered():
    assert set(SMALL) == set(MODEL_CLASSES)


@pytest.mark.parametrize("name", sorted(MODEL_CLASSES))
def test_model_follows_the_contract(name, toy, tmp_path):
    train_images, train_labels, test_images, test_labels = toy
    model = SMALL[name]()
    assert isinstance(model, Classifier)
    assert model.fit(train_images, train_labels) is model
    assert model.n_features_in_ == 784 and tuple(model.image_shape_) == (28, 28)
    np.testing.assert_array_equal(model.classes_, np.arange(10))
    probabilities = model.predict_proba(test_images)
    assert probabilities.shape == (len(test_images), 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    predicted = model.predict(test_images)
    np.testing.assert_array_equal(predicted, model.classes_[probabilities.argmax(axis=1)])
    assert model.score(test_images, test_labels) == pytest.approx(
        float(np.mean(predicted == test_labels)))
    assert isinstance(model.history_, list)
    assert model.count_parameters() > 0
    assert isinstance(model.export_formats, tuple)
    model.save(tmp_path)
    loaded = get_model_class(name).load(tmp_path)
    np.testing.assert_array_equal(loaded.predict_proba(test_images), probabilities)
    unfitted = clone(model)
    assert unfitted.get_params(deep=False).keys() == model.get_params(deep=False).keys()
    assert not hasattr(unfitted, "classes_")


def _bad_values(option):
    """Values the option's constraint must refuse."""
    constraint = option.constraint
    if isinstance(constraint, Integer):
        return [constraint.high + 1, constraint.low - 1, 2.5, "3", True]
    if isinstance(constraint, Real):
        return [math.nan, math.inf, constraint.high + 1, constraint.low - 1, "0.1"]
    if isinstance(constraint, Choice):
        return ["no-such-choice", 3]
    if isinstance(constraint, Boolean):
        return ["yes", 1]
    return []


OPTION_CASES = [(name, option_name, bad)
                for name in sorted(MODEL_CLASSES)
                for option_name, option in get_model_class(name).options.items()
                for bad in _bad_values(option)]


@pytest.mark.parametrize("name, option_name, bad", OPTION_CASES)
def test_a_bad_option_is_refused_before_fit_touches_data(name, option_name, bad):
    model = SMALL[name]().set_params(**{option_name: bad})
    # The data is not data at all: validation must fail first, naming the option.
    with pytest.raises(ConfigError) as error:
        model.fit("not data", None)
    if isinstance(error.value, OptionError):
        assert error.value.option == option_name
    else:
        assert option_name in str(error.value)


@pytest.mark.parametrize("name", ["random-forest", "softmax", "mlp", "cnn"])
def test_models_learn_other_shapes_and_labels(name):
    """8x8 images in three classes named by strings: what a model learns comes from the data."""
    rng = np.random.default_rng(0)
    labels = np.array(["circle", "cross", "line"])[np.arange(90) % 3]
    images = rng.integers(0, 40, (90, 8, 8)).astype(np.uint8)
    for k, label in enumerate(["circle", "cross", "line"]):
        images[labels == label, 2 * k:2 * k + 2, :] = 250
    model = SMALL[name]()
    if name == "cnn":
        model.set_params(num_steps=60)
    elif name == "mlp":
        model.set_params(num_steps=60)
    elif name == "softmax":
        model.set_params(num_epochs=20)
    model.fit(images, labels)
    assert list(model.classes_) == ["circle", "cross", "line"]
    assert model.predict_proba(images).shape == (90, 3)
    assert set(model.predict(images)) <= set(model.classes_)
    assert model.score(images, labels) > 0.9


def test_a_cnn_refuses_features_that_are_not_a_square_image():
    with pytest.raises(ValueError, match="square"):
        SMALL["cnn"]().fit(np.zeros((20, 10), np.uint8), np.arange(20) % 2)


def test_predict_before_fit_raises_not_fitted():
    from sklearn.exceptions import NotFittedError

    for name in MODEL_CLASSES:
        with pytest.raises(NotFittedError):
            SMALL[name]().predict(np.zeros((1, 28, 28), np.uint8))


# ----------------------------------------------------------------------------- scikit-learn

# Checks that cannot apply to the CNN, with the reason: they fit on 1 to 20 arbitrary
# features (2, 3, 5, 10 ...), which are not a square image a convolution can slide over.
NOT_AN_IMAGE = "fits on arbitrary feature counts, not a square image a CNN can take"
CNN_CANNOT_APPLY = {name: NOT_AN_IMAGE for name in (
    "check_fit_score_takes_y", "check_estimators_overwrite_params",
    "check_dont_overwrite_parameters", "check_estimators_fit_returns_self",
    "check_readonly_memmap_input", "check_n_features_in_after_fitting",
    "check_positive_only_tag_during_fit", "check_estimators_dtypes", "check_dtype_object",
    "check_pipeline_consistency", "check_estimators_nan_inf", "check_estimators_pickle",
    "check_f_contiguous_array_estimator", "check_classifier_data_not_an_array",
    "check_classifiers_classes", "check_classifiers_train", "check_supervised_y_2d",
    "check_methods_sample_order_invariance", "check_methods_subset_invariance",
    "check_fit2d_1feature", "check_dict_unchanged", "check_fit_idempotent",
    "check_fit_check_is_fitted", "check_n_features_in", "check_fit2d_predict1d")}


def _expected_failed(estimator):
    return CNN_CANNOT_APPLY if isinstance(estimator, CNN) else {}


def _quiet_checks(estimators, **kwargs):
    warnings.filterwarnings("ignore")
    return parametrize_with_checks(estimators, expected_failed_checks=_expected_failed, **kwargs)


@pytest.mark.slow
@_quiet_checks([RandomForest(), SoftmaxRegression()])
def test_scikit_learn_estimator_checks(estimator, check):
    """scikit-learn's battery on the defaults (as `check_estimator(Model())` runs it)."""
    check(estimator)


@pytest.mark.slow
@_quiet_checks([MLP(width=16, num_steps=150, learning_rate=0.01, log_every=50),
                CNN(width=4, depth=1, convs_per_block=1, dense_units=0, num_steps=12,
                    log_every=4),
                EnsembleModel(models=[SoftmaxRegression(num_epochs=5),
                                      RandomForest(n_estimators=5, n_jobs=1)])])
def test_scikit_learn_estimator_checks_on_networks_and_ensembles(estimator, check):
    """The same battery on small networks and an ensemble (slower: every check trains); the
    CNN's checks on non-image data are listed above with the reason."""
    check(estimator)
