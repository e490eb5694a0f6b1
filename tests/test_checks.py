"""The checks to run before blaming the optimizer (adamclinic.clinic.checks): healthy models of the course
pass, each planted bug fails with the message that names it, and the caller's model is never changed.

The initial-loss and gradient checks train nothing and run under ``make check``; the overfit-one-batch
check trains a clone, so its tests are marked slow. Measured on an AMD EPYC (AVX2), Keras 3.15 /
TensorFlow 2.21; every bound has a wide margin on both sides (the comment beside it gives the measured
range over seeds 0-4, also where the test runs fewer seeds to keep the file cheap).
"""

from __future__ import annotations

import json
import math
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from adamclinic.clinic.checks import (
    CLASSIFIER_START_FACTOR,
    OVERFIT_FRACTION,
    ChecksReport,
    check_gradients,
    check_initial_loss,
    check_loss_gradient,
    check_model_gradient,
    check_overfits_one_batch,
    run_checks,
)
from adamclinic.data import digits, imbalanced, overlapping_classes, smooth_regression
from adamclinic.engine import seed_everything
from adamclinic.models import binary_relu_net, digits_relu_net, mlp, small_relu_net

# One group: the module fixtures build and train models once, on one worker.
pytestmark = pytest.mark.xdist_group("clinic_checks")

SEEDS = range(5)
SCE = "sparse_categorical_crossentropy"
SCE_LOGITS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@pytest.fixture(scope="module")
def data():
    pool, held_out = overlapping_classes()
    return {
        "digits": digits(),
        "regression": smooth_regression(),
        "balanced": imbalanced(pool, held_out, 0.5, rows=512),
        "imbalanced": imbalanced(pool, held_out, 0.05, rows=512),
    }


def fresh(build, seed):
    seed_everything(seed)
    return build()


def linear_digits() -> keras.Model:
    """The digits net with its softmax left out: its outputs are logits."""
    return mlp("digits_linear", 64, (64,), "relu", outputs=10)


# Custom losses, correct and planted --------------------------------------------------------------------


def mse_by_hand(y_true, y_pred):
    return tf.reduce_mean(tf.square(y_true - y_pred), axis=-1)


def mse_of_rounded(y_true, y_pred):
    return tf.reduce_mean(tf.square(y_true - tf.round(y_pred)), axis=-1)


def mse_through_int(y_true, y_pred):
    quarters = tf.cast(tf.cast(y_pred * 4, tf.int32), y_pred.dtype) / 4
    return tf.reduce_mean(tf.square(y_true - quarters), axis=-1)


def mse_stopped(y_true, y_pred):
    return tf.reduce_mean(tf.square(y_true - tf.stop_gradient(y_pred)), axis=-1)


def mse_half_stopped(y_true, y_pred):
    """The right value, half the gradient: one factor of the square is stopped."""
    error = y_true - y_pred
    return tf.reduce_mean(error * tf.stop_gradient(error), axis=-1)


def error_rate(y_true, y_pred):
    """Accuracy turned into a loss: argmax has no gradient."""
    labels = tf.cast(tf.reshape(y_true, [-1]), tf.int64)
    return 1.0 - tf.cast(tf.equal(tf.argmax(y_pred, axis=-1), labels), y_pred.dtype)


@tf.custom_gradient
def _square_with_sign_bug(error):
    return tf.square(error), lambda upstream: -2.0 * error * upstream


@tf.custom_gradient
def _square_without_the_2(error):
    return tf.square(error), lambda upstream: error * upstream


def mse_sign_bug(y_true, y_pred):
    return tf.reduce_mean(_square_with_sign_bug(y_true - y_pred), axis=-1)


def mse_factor_bug(y_true, y_pred):
    return tf.reduce_mean(_square_without_the_2(y_true - y_pred), axis=-1)


def mse_float32_only(y_true, y_pred):
    """Correct, but a float32 constant inside: it cannot run on float64 predictions."""
    return tf.constant(1.0) * tf.reduce_mean(tf.square(y_true - y_pred), axis=-1)


def mse_float32_only_sign_bug(y_true, y_pred):
    return tf.constant(1.0) * mse_sign_bug(y_true, y_pred)


class SignBugDense(keras.layers.Dense):
    """A Dense layer whose hand-written gradient flips the kernel's sign."""

    def call(self, inputs):
        @tf.custom_gradient
        def matmul(a, kernel):
            def grad(upstream):
                return tf.matmul(upstream, kernel, transpose_b=True), -tf.matmul(a, upstream, transpose_a=True)

            return tf.matmul(a, kernel), grad

        return self.activation(matmul(inputs, tf.convert_to_tensor(self.kernel)) + self.bias)


def sign_bug_net() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((10,)),
            SignBugDense(32, activation="relu", name="sign_bug"),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(1),
        ]
    )


def stop_gradient_before_output() -> keras.Model:
    inputs = keras.Input((64,))
    hidden = keras.layers.Lambda(tf.stop_gradient)(keras.layers.Dense(64, activation="relu", name="cut_off")(inputs))
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(hidden))


def double_softmax_net() -> keras.Model:
    inputs = keras.Input((64,))
    hidden = keras.layers.Dense(64, activation="relu")(inputs)
    probabilities = keras.layers.Dense(10, activation="softmax")(hidden)
    return keras.Model(inputs, keras.layers.Lambda(tf.nn.softmax)(probabilities))


def weights_of(model):
    return [w.copy() for w in model.get_weights()]


def same_weights(before, model):
    after = model.get_weights()
    return len(before) == len(after) and all(np.array_equal(a, b) for a, b in zip(before, after))


# 1. The initial loss (fast: nothing trains) ------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_a_fresh_healthy_model_starts_where_a_know_nothing_model_does(data, seed):
    ln_10 = math.log(10)
    for build, loss in ((digits_relu_net, SCE), (linear_digits, SCE_LOGITS)):
        model = fresh(build, seed)
        before = weights_of(model)
        result = check_initial_loss(model, data["digits"].x_train, data["digits"].y_train, loss)
        assert result.passed, result.message
        assert same_weights(before, model)
        assert result.uniform_loss == pytest.approx(ln_10)
        assert 1.0 < result.initial_loss / ln_10 < 1.3  # measured 1.01 .. 1.08
    regression = data["regression"]
    result = check_initial_loss(fresh(small_relu_net, seed), regression.x_train, regression.y_train, "mse")
    assert result.passed, result.message
    assert result.know_nothing_loss == pytest.approx(np.var(regression.y_train), rel=1e-4)  # the variance of y
    assert (
        0.8 < result.initial_loss / result.know_nothing_loss < 2.5
    )  # measured 0.91 .. 1.96 (0.92 .. 1.96 over 20 seeds)
    balanced = data["balanced"]
    result = check_initial_loss(fresh(binary_relu_net, seed), balanced.x_train, balanced.y_train, "binary_crossentropy")
    assert result.passed, result.message
    assert 0.9 < result.initial_loss / math.log(2) < 1.3  # measured 0.97 .. 1.15
    assert json.loads(json.dumps(result.__dict__))  # plain numbers


@pytest.mark.parametrize("seed", SEEDS)
def test_imbalanced_classes_pass_with_a_note_about_the_output_bias(data, seed):
    imbalanced_data = data["imbalanced"]
    result = check_initial_loss(
        fresh(binary_relu_net, seed), imbalanced_data.x_train, imbalanced_data.y_train, "binary_crossentropy"
    )
    assert result.passed, result.message
    assert 0.19 < result.know_nothing_loss < 0.21  # the entropy of a 5% share: 0.199
    assert "imbalanced" in result.message and "bias" in result.message  # starts at 0.41 .. 0.78


@pytest.mark.parametrize("seed", SEEDS)
def test_logits_into_a_loss_that_expects_probabilities_start_far_above_ln_k(data, seed):
    result = check_initial_loss(fresh(linear_digits, seed), data["digits"].x_train, data["digits"].y_train, SCE)
    assert not result.passed
    assert result.initial_loss > 3 * math.log(10)  # measured 8.5 .. 11.6 (ln 10 = 2.30)
    assert "not probabilities" in result.message and "from_logits=True" in result.message


@pytest.mark.parametrize("seed", SEEDS)
def test_unscaled_inputs_make_a_fresh_classifier_confident_and_wrong(data, seed):
    raw_pixels = data["digits"].x_train * 16  # 0 .. 16 instead of 0 .. 1
    result = check_initial_loss(fresh(digits_relu_net, seed), raw_pixels, data["digits"].y_train, SCE)
    assert not result.passed
    assert result.initial_loss > 2 * CLASSIFIER_START_FACTOR * math.log(10)  # measured 7.6 .. 15.1
    assert "confident" in result.message and "initializer" in result.message


@pytest.mark.parametrize("seed", SEEDS)
def test_targets_far_from_zero_start_far_above_their_variance(data, seed):
    regression = data["regression"]
    result = check_initial_loss(fresh(small_relu_net, seed), regression.x_train, regression.y_train + 10, "mse")
    assert not result.passed
    assert result.initial_loss / result.know_nothing_loss > 30  # measured 101 .. 123
    assert "standardize y" in result.message


def test_a_softmax_with_from_logits_passes_and_quotes_keras_warning_without_printing_it(data):
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        result = check_initial_loss(
            fresh(digits_relu_net, 0), data["digits"].x_train, data["digits"].y_train, SCE_LOGITS
        )
    # Keras 3 reads the softmax's logits in this case, so the loss is right; it warns, and the check quotes it.
    assert result.passed
    assert "Keras warned" in result.message and "from_logits=True" in result.message
    assert not escaped


def test_an_unbuilt_model_is_checked_on_a_clone_and_stays_unbuilt(data):
    model = keras.Sequential([keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    result = check_initial_loss(model, data["regression"].x_train, data["regression"].y_train, "mse")
    assert result.passed and not model.built


@pytest.mark.parametrize(
    "case, fix",
    [
        ("labels 1..10", "off by one"),
        ("one-hot into sparse", "categorical_crossentropy"),
        ("integers into categorical", "sparse_categorical_crossentropy"),
        ("y one row short", "one target per row"),
        ("unknown loss name", "Keras loss name"),
        ("x of the wrong width", "cannot take x"),
        ("binary labels 1 and 2", "0 and 1"),
        ("NaN in x", "impute"),
    ],
)
def test_bad_input_gets_a_value_error_that_says_what_to_do(data, case, fix):
    x, y = data["digits"].x_train, data["digits"].y_train
    balanced = data["balanced"]
    arguments = {
        "labels 1..10": (digits_relu_net, x, y + 1, SCE),
        "one-hot into sparse": (digits_relu_net, x, keras.utils.to_categorical(y[:, 0], 10), SCE),
        "integers into categorical": (digits_relu_net, x, y, "categorical_crossentropy"),
        "y one row short": (digits_relu_net, x, y[:-1], SCE),
        "unknown loss name": (digits_relu_net, x, y, "mean_sqared_error"),
        "x of the wrong width": (digits_relu_net, x[:, :10], y, SCE),
        "binary labels 1 and 2": (binary_relu_net, balanced.x_train, balanced.y_train + 1, "binary_crossentropy"),
        "NaN in x": (digits_relu_net, np.where(np.arange(64) == 3, np.nan, x), y, SCE),
    }[case]
    build, x_in, y_in, loss = arguments
    with pytest.raises(ValueError, match=fix):
        check_initial_loss(build(), x_in, y_in, loss)


def test_a_loss_that_is_not_a_loss_gets_a_type_error(data):
    with pytest.raises(TypeError, match="function loss"):
        check_initial_loss(digits_relu_net(), data["digits"].x_train, data["digits"].y_train, 3)


# 3. Gradient checks (fast: nothing trains) -------------------------------------------------------------------


@pytest.fixture(scope="module")
def predictions(data):
    """Fresh models' predictions on 64 rows, per seed: where the loss-function check is made."""
    cache = {}

    def get(seed):
        if seed not in cache:
            rows = slice(0, 64)
            regression, digit, balanced = data["regression"], data["digits"], data["balanced"]
            cache[seed] = {
                "regression": (
                    regression.y_train[rows],
                    np.asarray(fresh(small_relu_net, seed)(regression.x_train[rows])),
                ),
                "digits": (digit.y_train[rows], np.asarray(fresh(digits_relu_net, seed)(digit.x_train[rows]))),
                "logits": (digit.y_train[rows], np.asarray(fresh(linear_digits, seed)(digit.x_train[rows]))),
                "binary": (balanced.y_train[rows], np.asarray(fresh(binary_relu_net, seed)(balanced.x_train[rows]))),
            }
        return cache[seed]

    return get


HEALTHY_LOSSES = {
    "mse": ("mse", "regression"),
    "mae": ("mae", "regression"),
    "huber": (keras.losses.Huber(), "regression"),
    "mse by hand": (mse_by_hand, "regression"),
    "sparse categorical": (SCE, "digits"),
    "sparse categorical from logits": (SCE_LOGITS, "logits"),
    "binary": ("binary_crossentropy", "binary"),
}


@pytest.mark.parametrize("seed", SEEDS)
def test_correct_losses_pass_the_gradient_check_in_float64(predictions, seed):
    for name, (loss, where) in HEALTHY_LOSSES.items():
        y_true, y_pred = predictions(seed)[where]
        result = check_gradients(loss, y_true, y_pred, seed=seed)
        assert result.passed, (name, result.message)
        assert result.precision == "float64"
        assert result.max_relative_error < 1e-5  # measured at most 2.5e-7 over these losses and seeds
    y_true, y_pred = predictions(seed)["regression"]
    result = check_loss_gradient(mse_float32_only, y_true, y_pred, seed=seed)
    assert result.passed and result.precision == "float32"  # measured at most 4.6e-3 (tolerance 0.05)


PLANTED_LOSS_BUGS = {
    # loss, where, the words the message must hold, the relative error at the worst entry
    "tf.round": (mse_of_rounded, "regression", "no gradient", None),
    "a cast to int": (mse_through_int, "regression", "no gradient", None),
    "argmax": (error_rate, "digits", "no gradient", None),
    "tf.stop_gradient": (mse_stopped, "regression", "no gradient", None),
    "half the gradient stopped": (mse_half_stopped, "regression", "0.5 times the true one", 0.5),
    "custom gradient without its 2": (mse_factor_bug, "regression", "0.5 times the true one", 0.5),
    "custom gradient with a flipped sign": (mse_sign_bug, "regression", "wrong sign", 2.0),
}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("bug", PLANTED_LOSS_BUGS)
def test_a_custom_loss_with_a_wrong_or_missing_gradient_fails(predictions, bug, seed):
    loss, where, words, error = PLANTED_LOSS_BUGS[bug]
    y_true, y_pred = predictions(seed)[where]
    result = check_gradients(loss, y_true, y_pred, seed=seed)
    assert not result.passed
    assert words in result.message, result.message
    if error is not None:
        assert result.max_relative_error == pytest.approx(error, abs=1e-3)  # measured exactly 0.5 / 2.0
    else:
        assert result.no_gradient  # the tape found no path at all


@pytest.fixture(scope="module")
def model_checks(data):
    """check_model_gradient per (case, seed), each asserting that the caller's weights did not move."""
    regression, digit = data["regression"], data["digits"]
    cases = {
        "digits": (digits_relu_net, digit.x_train, digit.y_train, SCE),
        "regression": (small_relu_net, regression.x_train, regression.y_train, "mse"),
        "binary": (binary_relu_net, data["balanced"].x_train, data["balanced"].y_train, "binary_crossentropy"),
        "sign bug in a layer": (sign_bug_net, regression.x_train, regression.y_train, "mse"),
        "sign bug in the loss": (small_relu_net, regression.x_train, regression.y_train, mse_sign_bug),
        "stop_gradient before the output": (stop_gradient_before_output, digit.x_train, digit.y_train, SCE),
        "float32 only": (small_relu_net, regression.x_train, regression.y_train, mse_float32_only),
        "float32 only, sign bug": (small_relu_net, regression.x_train, regression.y_train, mse_float32_only_sign_bug),
    }
    cache = {}

    def get(case, seed):
        if (case, seed) not in cache:
            build, x, y, loss = cases[case]
            model = fresh(build, seed)
            before = weights_of(model)
            cache[case, seed] = check_model_gradient(model, x, y, loss, seed=seed)
            assert same_weights(before, model), f"check_model_gradient changed the caller's weights ({case})"
        return cache[case, seed]

    return get


@pytest.mark.parametrize("seed", range(3))  # measured over seeds 0-4
def test_healthy_models_pass_the_gradient_check_through_their_weights(model_checks, seed):
    for case in ("digits", "regression", "binary"):
        result = model_checks(case, seed)
        assert result.passed, (case, result.message)
        assert result.precision == "float64"
        assert result.max_relative_error < 1e-4  # measured at most 2.3e-7 (tolerance 1e-2)
    result = model_checks("float32 only", seed)
    assert result.passed and result.precision == "float32"  # measured at most 1.2e-3 (tolerance 0.2)


@pytest.mark.parametrize("seed", range(3))  # measured over seeds 0-4
def test_a_wrong_gradient_inside_the_model_is_found_and_located(model_checks, seed):
    layer = model_checks("sign bug in a layer", seed)
    assert not layer.passed and "wrong sign" in layer.message
    assert layer.worst.endswith("/sign_bug/kernel")  # only that weight is wrong: error 2.0, others about 1e-7
    for case in ("sign bug in the loss", "float32 only, sign bug"):
        result = model_checks(case, seed)
        assert not result.passed and "wrong sign" in result.message
        assert result.max_relative_error == pytest.approx(2.0, abs=0.01)  # measured 2.0
    stopped = model_checks("stop_gradient before the output", seed)
    assert not stopped.passed
    assert stopped.no_gradient == ("cut_off/kernel", "cut_off/bias")  # the layer before the stop_gradient


def test_check_gradients_says_what_to_give_it():
    with pytest.raises(ValueError, match="y_pred"):
        check_gradients("mse", np.zeros(4))
    with pytest.raises(ValueError, match="one prediction row per target row"):
        check_gradients("mse", np.zeros(4), np.zeros((3, 1)))


# 2. Overfitting one batch (slow: each call trains a clone for 300 steps, about 0.9 s of CPU) -------------------

# To keep the file cheap, healthy models run over seeds 0-2 and the bugs over seeds 0-1 (all were measured
# over seeds 0-4: the ranges in the comments).
OVERFIT_CASES = {
    "digits": ("digits", digits_relu_net, SCE, range(3)),
    "regression": ("regression", small_relu_net, "mse", range(3)),
    "binary": ("balanced", binary_relu_net, "binary_crossentropy", range(1)),
    "frozen": ("digits", lambda: _frozen(digits_relu_net()), SCE, range(2)),
    "stop_gradient before the output": ("digits", stop_gradient_before_output, SCE, range(2)),
    "round in the loss": ("regression", small_relu_net, mse_of_rounded, range(2)),
    "relu output, negative targets": (
        "regression",
        lambda: mlp("relu_output", 10, (32, 32), "relu", output_activation="relu"),
        "mse",
        range(2),
    ),
    "a second softmax": ("digits", double_softmax_net, SCE, range(2)),
    "sign bug in the loss": ("regression", small_relu_net, mse_sign_bug, range(2)),
    "shuffled digits": ("digits", digits_relu_net, SCE, range(2)),
    "shuffled regression": ("regression", small_relu_net, "mse", range(2)),
}


def _frozen(model: keras.Model) -> keras.Model:
    model.trainable = False
    return model


@pytest.fixture(scope="module")
def overfit(data):
    """check_overfits_one_batch per (case, seed) on a compiled model, asserting that neither its weights
    nor its optimizer moved."""
    cache = {}
    shuffled = np.random.default_rng(123)

    def get(case, seed):
        if (case, seed) not in cache:
            dataset, build, loss, _ = OVERFIT_CASES[case]
            x, y = data[dataset].x_train, data[dataset].y_train
            if case.startswith("shuffled"):
                y = shuffled.permutation(y)
            model = fresh(build, seed)
            optimizer = keras.optimizers.Adam(1e-3)
            model.compile(optimizer=optimizer, loss=loss)
            before = weights_of(model)
            cache[case, seed] = check_overfits_one_batch(model, x, y, loss, seed=seed)
            assert same_weights(before, model), f"the check changed the caller's weights ({case})"
            assert model.optimizer is optimizer and int(optimizer.iterations) == 0
        return cache[case, seed]

    return get


def seeds_of(case):
    return list(OVERFIT_CASES[case][3])


@pytest.mark.slow
@pytest.mark.parametrize("case", ["digits", "regression", "binary"])
def test_a_healthy_model_learns_one_batch_by_heart(overfit, case):
    for seed in seeds_of(case):
        result = overfit(case, seed)
        assert result.passed, result.message
        assert result.steps == 300 and result.batch_size == 32
        # measured end / know-nothing loss: digits 1.3e-3 .. 1.6e-3, regression below 1e-12, binary 5e-4 .. 1.2e-3
        assert result.end_loss < OVERFIT_FRACTION / 10 * result.reference_loss
        # what it learned carries over: held-out κ 0.61 .. 0.69 (digits), 0.30 .. 0.53 (binary); regression
        # skill 0.05 .. 0.47
        if case != "regression":  # (a regression passes above -0.25)
            assert result.held_out_skill > 0.2
        assert result.loss_curve[0] == pytest.approx(result.start_loss, rel=0.05)  # training mode: no dropout
        assert json.loads(json.dumps(result.__dict__))


@pytest.mark.slow
@pytest.mark.parametrize(
    "case, words",
    [
        ("frozen", "no trainable weights"),
        ("round in the loss", "No trainable weight gets a gradient"),
        ("stop_gradient before the output", "get no gradient"),
        ("relu output, negative targets", "never go below 0"),
        ("a second softmax", "cannot become confident"),
        ("sign bug in the loss", "the loss grew"),
    ],
)
def test_a_model_that_cannot_learn_one_batch_fails_with_the_cause(overfit, case, words):
    for seed in seeds_of(case):
        result = overfit(case, seed)
        assert not result.passed
        assert words in result.message, result.message
    # measured end / know-nothing loss over seeds 0-4: stop_gradient before the output 0.13 .. 0.24 (and its
    # first layer gets no gradient), relu output 0.23 .. 1.0, second softmax 0.64 .. 0.66 (the floor is
    # ln(e + 9) - 1 = 1.46), sign bug 1e8 .. 1e9; frozen and round never train
    if case in ("relu output, negative targets", "a second softmax", "stop_gradient before the output"):
        assert all(
            overfit(case, seed).end_loss > 2 * OVERFIT_FRACTION * overfit(case, seed).reference_loss
            for seed in seeds_of(case)
        )


@pytest.mark.slow
@pytest.mark.parametrize("case", ["shuffled digits", "shuffled regression"])
def test_labels_shuffled_against_their_inputs_are_learned_by_heart_but_do_not_carry_over(overfit, case):
    for seed in seeds_of(case):
        result = overfit(case, seed)
        # A network memorizes random labels: the batch's loss falls as far as with the true labels ...
        assert result.end_loss < OVERFIT_FRACTION * result.reference_loss  # measured 3e-3 .. 5e-3 of ln 10
        # ... and only the rows outside the batch show it: κ -0.02 .. 0.00 (digits), skill -0.90 .. -0.58
        assert not result.passed and "do not follow from the inputs" in result.message
        assert result.held_out_skill < (0.05 if case == "shuffled digits" else -0.4)


@pytest.mark.slow
def test_run_checks_reports_each_check_and_what_to_do(data):
    regression = data["regression"]
    healthy = run_checks(fresh(small_relu_net, 0), regression.x_train, regression.y_train, mse_by_hand)
    assert isinstance(healthy, ChecksReport) and healthy.passed
    assert [r.title for r in healthy.results] == [
        "initial loss",
        "gradient of the loss function",  # a custom loss is checked on its own too
        "gradient through the weights",
        "overfit one batch",
    ]
    assert "All checks passed" in str(healthy)
    buggy = run_checks(fresh(small_relu_net, 0), regression.x_train, regression.y_train, mse_sign_bug)
    assert not buggy.passed
    assert [r.title for r in buggy.failed] == [
        "gradient of the loss function",
        "gradient through the weights",
        "overfit one batch",
    ]
    text = str(buggy)
    assert text.count("[FAIL]") == 3 and "wrong sign" in text and "before tuning the optimizer" in text
    assert json.loads(json.dumps(buggy.to_dict()))["passed"] is False
