"""The clinic's HELD-OUT zoo: labelled runs the rules were never tuned on (issue 21, item 1).

``adamclinic.clinic.patients.ZOO`` is the set the rules' thresholds were tuned on (the course's four data
sets, dense nets, seed 0). ``HELD_OUT`` is built from other data, other architectures and other seeds:

- data: scikit-learn's bundled breast-cancer, wine and diabetes sets (files shipped inside the
  scikit-learn package: nothing is downloaded), its synthetic Friedman 1/2/3, ``make_classification``
  and ``make_regression`` generators, two synthetic sequence tasks, and the course's 8x8 digits only as
  images for a small CNN (an architecture the tuned zoo does not have);
- architectures: ELU, SELU, GELU, swish, tanh and softplus nets of other shapes, a CNN, a GRU, an LSTM, an
  embedding model, batch norm before the activation, a three-target regression head;
- seeds 1, 2 and 3 (each patient has its own, stored with its record).

A multi-output model (several heads, a loss per head) is left out: a ``RunRecord`` holds one loss
curve and one output, and the engine takes one loss function, so neither path can record it. The
three-target regression (one head of three units, one mean squared error) is what fits.

Every label is planted by construction (a rate 100x too high, raw units, NaN cells, shuffled labels,
β2 = 0.3 with batches of 8, deep sigmoid stacks, N(0, 1) weights in deep ReLU nets, a linear output
into a cross-entropy, a recompile mid-training, batch-norm momentum 0.999 over ~100 steps, a wide net
on 48-64 rows for 60-300 epochs, a 4% minority class) and checked by ``check_label`` against
its healthy twin on the same data, never by what ``diagnose`` says. The list was fixed before the tool
was run on it once; nobody tunes the rules on it.

``python -m adamclinic.clinic.zoos`` scores this set beside the tuned zoo;
``tests/data/clinic_zoo_held_out.json`` keeps its recorded runs (``--write``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import keras
import numpy as np
from sklearn import datasets as sk

from adamclinic.clinic.monitor import monitored_fit
from adamclinic.clinic.patients import BCE, SCC, Patient, misaligned, recompiled_fit, with_nan
from adamclinic.clinic.record import RunRecord
from adamclinic.clinic.rules import HEALTHY
from adamclinic.engine import Dataset, TrainConfig
from adamclinic.models import mlp

# Data (every set built once: the engine and the probes cache by data-set identity) ----------------


def _split(x: np.ndarray, y: np.ndarray, train_rows: int, name: str, shuffle_seed: int | None = None) -> Dataset:
    """The first ``train_rows`` rows train, the rest validate (after a fixed shuffle when the file is sorted)."""
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(x))
        x, y = x[order], y[order]
    return Dataset(x[:train_rows], y[:train_rows], x[train_rows:], y[train_rows:], name=name)


def _standardize(data: Dataset, inputs: bool = True, targets: bool = False, name: str | None = None) -> Dataset:
    """Inputs (and regression targets) centred and scaled with the training rows' mean and deviation."""
    x, xv, y, yv = data.x_train, data.x_val, data.y_train, data.y_val
    if inputs:
        axes = tuple(range(x.ndim - 1))
        mean, sd = x.mean(axis=axes), x.std(axis=axes) + 1e-8
        x, xv = (x - mean) / sd, (xv - mean) / sd
    if targets:
        mean, sd = y.mean(axis=0), y.std(axis=0)
        y, yv = (y - mean) / sd, (yv - mean) / sd
    return Dataset(x, y, xv, yv, name=name or data.name + ", standardized")


@functools.cache
def breast_cancer(standardized: bool = True) -> Dataset:
    """scikit-learn's Wisconsin breast cancer: 30 features in their own units (0.001 to 4000), 448 + 121 rows."""
    x, y = sk.load_breast_cancer(return_X_y=True)
    raw = _split(x, y, 448, "breast_cancer, raw units", shuffle_seed=21)
    return _standardize(raw, name="breast_cancer") if standardized else raw


@functools.cache
def wine(standardized: bool = True) -> Dataset:
    """scikit-learn's wine: 13 chemical measurements (0.1 to 1700), 3 cultivars, 128 + 50 rows."""
    x, y = sk.load_wine(return_X_y=True)
    raw = _split(x, y, 128, "wine, raw units", shuffle_seed=21)  # the file is sorted by class
    return _standardize(raw, name="wine") if standardized else raw


@functools.cache
def diabetes(scaled_targets: bool = True) -> Dataset:
    """scikit-learn's diabetes progression: 10 features, a target of 25-346 points, 384 + 58 rows."""
    x, y = sk.load_diabetes(return_X_y=True)
    raw = _split(x, y, 384, "diabetes", shuffle_seed=21)
    if scaled_targets:
        return _standardize(raw, targets=True, name="diabetes")
    return _standardize(raw, name="diabetes, target in points")


@functools.cache
def friedman1(train_rows: int = 1024, scaled_targets: bool = True) -> Dataset:
    """Friedman #1: 10 uniform inputs (5 unused), y = 10 sin(π x0 x1) + 20 (x2 − ½)² + 10 x3 + 5 x4 + noise."""
    x, y = sk.make_friedman1(n_samples=train_rows + 256, noise=1.0, random_state=1)
    raw = _split(x, y, train_rows, f"friedman1[:{train_rows}]")
    return _standardize(raw, inputs=False, targets=scaled_targets, name=raw.name)


@functools.cache
def friedman2(scaled_inputs: bool = True, scaled_targets: bool = True) -> Dataset:
    """Friedman #2: 4 inputs in ranges 0-100, 40π-560π, 0-1, 1-11; y (an impedance) up to ~1700."""
    x, y = sk.make_friedman2(n_samples=1280, noise=10.0, random_state=2)
    name = "friedman2" + ("" if scaled_inputs else ", raw inputs") + ("" if scaled_targets else ", raw targets")
    return _standardize(_split(x, y, 1024, name), inputs=scaled_inputs, targets=scaled_targets, name=name)


@functools.cache
def friedman3() -> Dataset:
    """Friedman #3: the same 4 inputs as #2, y = arctan(...) (a phase angle), standardized."""
    x, y = sk.make_friedman3(n_samples=1280, noise=0.1, random_state=3)
    return _standardize(_split(x, y, 1024, "friedman3"), targets=True, name="friedman3")


@functools.cache
def friedman1_rare_events() -> Dataset:
    """Friedman #1 as a classification: is y in its top 4%? (inputs already in [0, 1])."""
    x, y = sk.make_friedman1(n_samples=1280, noise=1.0, random_state=11)
    return _split(x, (y > np.quantile(y, 0.96)).astype("float32"), 1024, "friedman1 top 4% events")


@functools.cache
def three_classes(train_rows: int = 1024) -> Dataset:
    """``make_classification``: 20 features (6 informative), 3 classes, 2 clusters each."""
    x, y = sk.make_classification(
        n_samples=train_rows + 256, n_features=20, n_informative=6, n_classes=3, random_state=3
    )
    return _split(x, y, train_rows, f"make_classification 3 classes[:{train_rows}]")


@functools.cache
def two_classes_12(minority_share: float | None = 0.04, class_sep: float = 0.5) -> Dataset:
    """``make_classification``: 12 features (3 informative), two classes ``class_sep`` apart, minority ``minority_share``."""
    weights = None if minority_share is None else [1 - minority_share]
    x, y = sk.make_classification(
        n_samples=1280, n_features=12, n_informative=3, class_sep=class_sep, weights=weights, flip_y=0.0, random_state=4
    )
    label = "balanced" if minority_share is None else f"{minority_share:.0%} positives"
    return _split(x, y, 1024, f"make_classification 2 classes, {label}, sep {class_sep}")


@functools.cache
def three_targets() -> Dataset:
    """``make_regression`` with 3 targets of 8 inputs, everything standardized."""
    x, y = sk.make_regression(n_samples=1280, n_features=8, n_informative=5, n_targets=3, noise=5.0, random_state=7)
    return _standardize(_split(x, y, 1024, "make_regression 3 targets"), targets=True, name="make_regression 3 targets")


@functools.cache
def digit_images_2d() -> Dataset:
    """The course's 8x8 digits as images (rows, 8, 8, 1) for a CNN: 1024 training, 357 validation images."""
    from adamclinic.data import digits

    full = digits()
    return Dataset(
        full.x_train[:1024].reshape(-1, 8, 8, 1),
        full.y_train[:1024],
        full.x_val.reshape(-1, 8, 8, 1),
        full.y_val,
        name="digits as 8x8x1 images",
    )


@functools.cache
def signed_sums(regression: bool = False, scaled_targets: bool = True) -> Dataset:
    """Sequences of 12 N(0, 1) numbers. Binary: is their sum positive? Regression: Σ x_t t / 12 (late steps weigh more)."""
    x = np.random.default_rng(5).normal(size=(1280, 12, 1))
    if not regression:
        return _split(x, (x.sum(axis=(1, 2)) > 0).astype("float32"), 1024, "signed sums")
    y = (x[:, :, 0] * np.arange(1, 13) / 12).sum(axis=1)
    y = y / y[:1024].std()
    if not scaled_targets:
        y = 100 * y + 500
    return _split(x, y, 1024, "weighted sums" + ("" if scaled_targets else ", raw targets"))


@functools.cache
def token_votes() -> Dataset:
    """Sequences of 11 tokens from a vocabulary of 20; the label: do tokens 0-9 outnumber tokens 10-19?"""
    tokens = np.random.default_rng(6).integers(0, 20, size=(1280, 11))
    return _split(tokens, ((tokens < 10).sum(axis=1) > 5).astype("float32"), 1024, "token votes")


def tiny(data: Dataset, rows: int) -> Dataset:
    """Only the first ``rows`` training rows (the validation rows unchanged)."""
    return Dataset(data.x_train[:rows], data.y_train[:rows], data.x_val, data.y_val, name=f"{data.name}, {rows} rows")


# Architectures (module-level builders, none shared with the tuned zoo) -----------------------------


def cancer_elu_net() -> keras.Model:
    """30-32-16-1: ELU layers and a sigmoid output."""
    return mlp("cancer_elu_net", 30, (32, 16), "elu", output_activation="sigmoid")


def cancer_linear_output_net() -> keras.Model:
    """30-32-16-1 ELU with a linear output: a score, fed to a loss that expects a probability."""
    return mlp("cancer_linear_output_net", 30, (32, 16), "elu")


def cancer_sigmoid_stack() -> keras.Model:
    """Ten hidden sigmoid layers of 16 on the 30 breast-cancer features."""
    return mlp("cancer_sigmoid_stack", 30, (16,) * 10, "sigmoid", output_activation="sigmoid")


def cancer_wide_net() -> keras.Model:
    """30-512-512-1 ReLU: a quarter of a million weights for a few dozen rows."""
    return mlp("cancer_wide_net", 30, (512, 512), "relu", output_activation="sigmoid")


def wine_selu_net() -> keras.Model:
    """13-32-3: one SELU layer and a softmax over the three cultivars."""
    return mlp("wine_selu_net", 13, (32,), "selu", outputs=3, output_activation="softmax")


def wine_linear_output_net() -> keras.Model:
    """13-32-3 SELU with linear outputs: scores, fed to a loss that expects probabilities."""
    return mlp("wine_linear_output_net", 13, (32,), "selu", outputs=3)


def diabetes_net() -> keras.Model:
    """10-48-24-1 ELU regression."""
    return mlp("diabetes_elu_net", 10, (48, 24), "elu")


def friedman1_net() -> keras.Model:
    """10-64-32-1 GELU regression."""
    return mlp("friedman1_gelu_net", 10, (64, 32), "gelu")


def friedman1_wide_net() -> keras.Model:
    """10-512-512-1 ReLU regression: far more weights than 48 rows can pin down."""
    return mlp("friedman1_wide_net", 10, (512, 512), "relu")


def friedman1_large_init_net() -> keras.Model:
    """Eight hidden ReLU layers of 48 at N(0, 1): each layer multiplies the signal by about 4.9."""
    normal = lambda: keras.initializers.RandomNormal(stddev=1.0)  # noqa: E731
    layers = [keras.Input((10,))]
    layers += [keras.layers.Dense(48, activation="relu", kernel_initializer=normal()) for _ in range(8)]
    layers.append(keras.layers.Dense(1, kernel_initializer=normal()))
    return keras.Sequential(layers, name="friedman1_large_init_net")


def friedman_small_net() -> keras.Model:
    """4-32-32-1 tanh regression for the four Friedman #2/#3 inputs."""
    return mlp("friedman_tanh_net", 4, (32, 32), "tanh")


def friedman3_sigmoid_stack() -> keras.Model:
    """Twelve hidden sigmoid layers of 16 on the four Friedman #3 inputs."""
    return mlp("friedman3_sigmoid_stack", 4, (16,) * 12, "sigmoid")


def rare_event_net() -> keras.Model:
    """10-32-32-1 tanh with a sigmoid output."""
    return mlp("rare_event_tanh_net", 10, (32, 32), "tanh", output_activation="sigmoid")


def swish_binary_net() -> keras.Model:
    """12-32-1 swish with a sigmoid output."""
    return mlp("swish_binary_net", 12, (32,), "swish", output_activation="sigmoid")


def three_class_net() -> keras.Model:
    """20-64-32-3 GELU with a softmax."""
    return mlp("three_class_gelu_net", 20, (64, 32), "gelu", outputs=3, output_activation="softmax")


def three_class_wide_net() -> keras.Model:
    """20-512-512-3 ReLU with a softmax, for 64 rows."""
    return mlp("three_class_wide_net", 20, (512, 512), "relu", outputs=3, output_activation="softmax")


def three_class_large_init_net() -> keras.Model:
    """Six hidden ReLU layers of 64 at N(0, 1) and a softmax (also at N(0, 1))."""
    normal = lambda: keras.initializers.RandomNormal(stddev=1.0)  # noqa: E731
    layers = [keras.Input((20,))]
    layers += [keras.layers.Dense(64, activation="relu", kernel_initializer=normal()) for _ in range(6)]
    layers.append(keras.layers.Dense(3, activation="softmax", kernel_initializer=normal()))
    return keras.Sequential(layers, name="three_class_large_init_net")


def softplus_batch_norm_net(inputs: int, outputs: int, output_activation: str | None, momentum: float):
    """Dense(48, softplus) → BatchNormalization(momentum), twice: batch norm after a softplus, whose outputs
    have a mean near 0.7 and a variance well below 1, far from the moving statistics' start (0 and 1)."""
    return _softplus_batch_norm_net(inputs, outputs, output_activation, momentum)


@functools.cache
def _softplus_batch_norm_net(
    inputs: int, outputs: int, output_activation: str | None, momentum: float
) -> Callable[[], keras.Model]:
    def build() -> keras.Model:
        layers = [keras.Input((inputs,))]
        for _ in range(2):
            layers += [
                keras.layers.Dense(48, activation="softplus"),
                keras.layers.BatchNormalization(momentum=momentum),
            ]
        layers.append(keras.layers.Dense(outputs, activation=output_activation))
        return keras.Sequential(layers, name=f"softplus_batch_norm_net_{inputs}_{outputs}")

    build.__name__ = f"softplus_batch_norm_net(momentum={momentum})"
    return build


def three_target_net() -> keras.Model:
    """8-32-32-3 ReLU: one head of three regression outputs."""
    return mlp("three_target_net", 8, (32, 32), "relu", outputs=3)


def _digits_cnn(name: str, output_activation: str | None) -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.AveragePooling2D(2),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation=output_activation),
        ],
        name=name,
    )


def digits_cnn() -> keras.Model:
    """A small CNN: 3x3 conv (16) → 2x2 average pool (XLA has no deterministic max-pool gradient) → 3x3 conv (32) → softmax over ten digits."""
    return _digits_cnn("digits_cnn", "softmax")


def digits_cnn_linear_output() -> keras.Model:
    """The same CNN with a linear output: ten scores, not probabilities."""
    return _digits_cnn("digits_cnn_linear_output", None)


def sequence_gru() -> keras.Model:
    """GRU(16) over 12 steps of one number, then a sigmoid."""
    return keras.Sequential(
        [keras.Input((12, 1)), keras.layers.GRU(16), keras.layers.Dense(1, activation="sigmoid")], name="sequence_gru"
    )


def sequence_lstm() -> keras.Model:
    """LSTM(16) over 12 steps of one number, then a linear output."""
    return keras.Sequential([keras.Input((12, 1)), keras.layers.LSTM(16), keras.layers.Dense(1)], name="sequence_lstm")


def token_embedding_net() -> keras.Model:
    """Embedding(20 → 8) → average over the 11 tokens → 16 ReLU → sigmoid."""
    return keras.Sequential(
        [
            keras.Input((11,)),
            keras.layers.Embedding(20, 8),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ],
        name="token_embedding_net",
    )


# Patients ----------------------------------------------------------------------------------------

MSE = "mean_squared_error"


def _held_out() -> list[Patient]:
    C, W, D = breast_cancer, wine, diabetes
    F1, F2, F3 = friedman1, friedman2, friedman3
    K3, IMG = three_classes, digit_images_2d
    E, P = TrainConfig, Patient
    return [
        # healthy ------------------------------------------------------------------------------
        P("breast cancer, ELU net", HEALTHY, lambda: E(C(), cancer_elu_net, epochs=20, loss=BCE), seed=1),
        P("wine, SELU net", HEALTHY, lambda: E(W(), wine_selu_net, epochs=30, batch_size=16, loss=SCC), seed=2),
        P("diabetes, ELU net", HEALTHY, lambda: E(D(), diabetes_net, epochs=20), seed=3),
        P("friedman1, GELU net", HEALTHY, lambda: E(F1(), friedman1_net, epochs=20), seed=1),
        P(
            "friedman2 (fit), tanh net",
            HEALTHY,
            lambda: E(F2(), friedman_small_net, epochs=20),
            fit=monitored_fit,
            seed=2,
        ),
        P("friedman3, tanh net", HEALTHY, lambda: E(F3(), friedman_small_net, epochs=20), seed=3),
        P(
            "3 classes (fit), GELU net",
            HEALTHY,
            lambda: E(K3(), three_class_net, epochs=15, loss=SCC),
            fit=monitored_fit,
            seed=1,
        ),
        P("digits CNN", HEALTHY, lambda: E(IMG(), digits_cnn, epochs=10, loss=SCC), seed=2),
        P(
            "signed sums (fit), GRU",
            HEALTHY,
            lambda: E(signed_sums(), sequence_gru, epochs=15, loss=BCE),
            fit=monitored_fit,
            seed=1,
        ),
        P(
            "token votes, embedding, batch 8, lr 3e-3",
            HEALTHY,
            lambda: E(token_votes(), token_embedding_net, learning_rate=3e-3, batch_size=8, epochs=10, loss=BCE),
            seed=3,
        ),
        P("3 targets, one 3-unit head", HEALTHY, lambda: E(three_targets(), three_target_net, epochs=20), seed=2),
        P("weighted sums, LSTM", HEALTHY, lambda: E(signed_sums(True), sequence_lstm, epochs=20), seed=3),
        P(
            "digits CNN (fit), batch 8, lr 3e-3",
            HEALTHY,
            lambda: E(IMG(), digits_cnn, learning_rate=3e-3, batch_size=8, epochs=5, loss=SCC),
            fit=monitored_fit,
            seed=2,
        ),
        P(
            "breast cancer, batch norm momentum 0.9",
            HEALTHY,
            lambda: E(C(), softplus_batch_norm_net(30, 1, "sigmoid", 0.9), epochs=10, loss=BCE),
            seed=2,
        ),
        P(
            "balanced 2 classes (fit), swish net",
            HEALTHY,
            lambda: E(two_classes_12(None, class_sep=1.5), swish_binary_net, epochs=15, loss=BCE),
            fit=monitored_fit,
            seed=3,
        ),
        # learning rate too high (100-1000x the default 1e-3) ------------------------------------------
        P(
            "3 classes, lr 0.5",
            "learning_rate_too_high",
            lambda: E(K3(), three_class_net, learning_rate=0.5, epochs=15, loss=SCC),
            seed=3,
        ),
        P(
            "friedman1 (fit), lr 1.0",
            "learning_rate_too_high",
            lambda: E(F1(), friedman1_net, learning_rate=1.0, epochs=20),
            fit=monitored_fit,
            seed=2,
        ),
        P(
            "digits CNN, lr 0.1",
            "learning_rate_too_high",
            lambda: E(IMG(), digits_cnn, learning_rate=0.1, epochs=10, loss=SCC),
            seed=1,
        ),
        # learning rate too low (1/1000 of the default) --------------------------------------------------
        P(
            "diabetes, lr 1e-6",
            "learning_rate_too_low",
            lambda: E(D(), diabetes_net, learning_rate=1e-6, epochs=20),
            seed=1,
        ),
        P(
            "breast cancer (fit), lr 1e-6",
            "learning_rate_too_low",
            lambda: E(C(), cancer_elu_net, learning_rate=1e-6, epochs=20, loss=BCE),
            fit=monitored_fit,
            seed=2,
        ),
        P(
            "signed sums (fit), GRU, lr 1e-6",
            "learning_rate_too_low",
            lambda: E(signed_sums(), sequence_gru, learning_rate=1e-6, epochs=15, loss=BCE),
            fit=monitored_fit,
            seed=3,
        ),
        # vanishing gradients: deep sigmoid stacks --------------------------------------------------------
        P(
            "breast cancer, 10 sigmoid layers",
            "vanishing_gradients",
            lambda: E(C(), cancer_sigmoid_stack, epochs=20, loss=BCE),
            seed=2,
        ),
        P(
            "friedman3 (fit), 12 sigmoid layers",
            "vanishing_gradients",
            lambda: E(F3(), friedman3_sigmoid_stack, epochs=20),
            fit=monitored_fit,
            seed=1,
        ),
        # exploding gradients: N(0, 1) weights in deep ReLU nets --------------------------------------------
        P(
            "friedman1, 8 ReLU layers at N(0, 1)",
            "exploding_gradients",
            lambda: E(F1(), friedman1_large_init_net, epochs=20),
            seed=3,
        ),
        P(
            "3 classes (fit), 6 ReLU layers at N(0, 1)",
            "exploding_gradients",
            lambda: E(K3(), three_class_large_init_net, epochs=15, loss=SCC),
            fit=monitored_fit,
            seed=2,
        ),
        # unscaled inputs: features in their raw units -------------------------------------------------------
        P(
            "breast cancer, raw units",
            "unscaled_inputs",
            lambda: E(C(False), cancer_elu_net, epochs=20, loss=BCE),
            seed=3,
        ),
        P(
            "wine (fit), raw units",
            "unscaled_inputs",
            lambda: E(W(False), wine_selu_net, epochs=30, batch_size=16, loss=SCC),
            fit=monitored_fit,
            seed=1,
        ),
        P(
            "friedman2, raw inputs",
            "unscaled_inputs",
            lambda: E(F2(scaled_inputs=False), friedman_small_net, epochs=20),
            seed=1,
        ),
        # unscaled targets: regression targets in raw units ---------------------------------------------------
        P(
            "diabetes, target in points",
            "unscaled_targets",
            lambda: E(D(False), diabetes_net, epochs=20),
            seed=2,
        ),
        P(
            "friedman2 (fit), raw targets",
            "unscaled_targets",
            lambda: E(F2(scaled_targets=False), friedman_small_net, epochs=20),
            fit=monitored_fit,
            seed=3,
        ),
        P(
            "weighted sums, LSTM, raw targets",
            "unscaled_targets",
            lambda: E(signed_sums(True, False), sequence_lstm, epochs=20),
            seed=1,
        ),
        # β2 = 0.3 with small batches -------------------------------------------------------------------------
        P(
            "token votes, β2 0.3, batch 8",
            "beta_2_too_low",
            lambda: E(
                token_votes(), token_embedding_net, beta_2=0.3, learning_rate=3e-3, batch_size=8, epochs=10, loss=BCE
            ),
            seed=2,
        ),
        P(
            "digits CNN (fit), β2 0.3, batch 8",
            "beta_2_too_low",
            lambda: E(IMG(), digits_cnn, beta_2=0.3, learning_rate=3e-3, batch_size=8, epochs=5, loss=SCC),
            fit=monitored_fit,
            seed=2,
        ),
        # NaN planted in the inputs ----------------------------------------------------------------------------
        P(
            "breast cancer, 1% missing inputs",
            "nan_inputs",
            lambda: E(with_nan(C(), 0.01, seed=1), cancer_elu_net, epochs=10, loss=BCE, check_inputs=False),
            seed=1,
        ),
        P(
            "friedman3 (fit), 2% missing inputs",
            "nan_inputs",
            lambda: E(with_nan(F3(), 0.02, seed=2), friedman_small_net, epochs=10),
            fit=monitored_fit,
            seed=2,
        ),
        # a 4% minority class --------------------------------------------------------------------------------
        P(
            "2 classes, 4% positives, swish net",
            "majority_class",
            lambda: E(two_classes_12(0.04), swish_binary_net, epochs=15, loss=BCE),
            seed=2,
        ),
        P(
            "friedman1 top 4% (fit), tanh net",
            "majority_class",
            lambda: E(friedman1_rare_events(), rare_event_net, epochs=15, loss=BCE),
            fit=monitored_fit,
            seed=3,
        ),
        # shuffled labels -----------------------------------------------------------------------------------------
        P(
            "breast cancer (fit), labels shuffled",
            "chance_plateau",
            lambda: E(misaligned(C(), seed=3), cancer_elu_net, epochs=20, loss=BCE),
            fit=monitored_fit,
            seed=1,
        ),
        P(
            "3 classes, 4096 rows, labels shuffled",
            "chance_plateau",
            lambda: E(misaligned(K3(4096), seed=3), three_class_net, epochs=10, loss=SCC),
            seed=2,
        ),
        P(
            "token votes, labels shuffled",
            "chance_plateau",
            lambda: E(misaligned(token_votes(), seed=3), token_embedding_net, epochs=20, loss=BCE),
            seed=1,
        ),
        # linear output into a probability loss -------------------------------------------------------------------
        P(
            "breast cancer, linear output",
            "output_loss_mismatch",
            lambda: E(C(), cancer_linear_output_net, epochs=20, loss=BCE),
            seed=3,
        ),
        P(
            "wine (fit), linear output",
            "output_loss_mismatch",
            lambda: E(W(), wine_linear_output_net, epochs=30, batch_size=16, loss=SCC),
            fit=monitored_fit,
            seed=2,
        ),
        P(
            "digits CNN, linear output",
            "output_loss_mismatch",
            lambda: E(IMG(), digits_cnn_linear_output, epochs=10, loss=SCC),
            seed=3,
        ),
        # recompiled mid-training -------------------------------------------------------------------------------------
        P(
            "friedman1 (fit), recompiled at epoch 10",
            "recompile_reset",
            lambda: E(F1(), friedman1_net, learning_rate=1e-2, epochs=20),
            fit=recompiled_fit(10),
            seed=3,
        ),
        P(
            "digits CNN (fit), recompiled at epoch 6",
            "recompile_reset",
            lambda: E(IMG(), digits_cnn, learning_rate=1e-2, epochs=12, loss=SCC),
            fit=recompiled_fit(6),
            seed=1,
        ),
        # batch-norm momentum 0.999 over few steps ---------------------------------------------------------------------
        P(
            "breast cancer, batch norm momentum 0.999",
            "train_eval_mismatch",
            lambda: E(C(), softplus_batch_norm_net(30, 1, "sigmoid", 0.999), epochs=10, loss=BCE),
            seed=3,
        ),
        P(
            "friedman1 (fit), batch norm momentum 0.999",
            "train_eval_mismatch",
            lambda: E(F1(), softplus_batch_norm_net(10, 1, None, 0.999), epochs=4),
            fit=monitored_fit,
            seed=1,
        ),
        # a wide net on a tiny training set, for many epochs ----------------------------------------------------------
        P(
            "friedman1, 48 rows, wide net, 300 epochs",
            "overfitting",
            lambda: E(tiny(F1(), 48), friedman1_wide_net, epochs=300, batch_size=16),
            seed=2,
        ),
        P(
            "breast cancer, 48 rows, wide net, 200 epochs",
            "overfitting",
            lambda: E(tiny(C(), 48), cancer_wide_net, epochs=200, batch_size=16, loss=BCE),
            seed=1,
        ),
        P(
            "3 classes (fit), 64 rows, wide net, 60 epochs",
            "overfitting",
            lambda: E(tiny(K3(), 64), three_class_wide_net, epochs=60, batch_size=16, loss=SCC),
            fit=monitored_fit,
            seed=3,
        ),
    ]


HELD_OUT: list[Patient] = _held_out()

# Each broken patient's healthy twin: the same data (or the same data, scaled), a healthy setup.
TWINS: dict[str, str] = {
    "3 classes, lr 0.5": "3 classes (fit), GELU net",
    "friedman1 (fit), lr 1.0": "friedman1, GELU net",
    "digits CNN, lr 0.1": "digits CNN",
    "diabetes, lr 1e-6": "diabetes, ELU net",
    "breast cancer (fit), lr 1e-6": "breast cancer, ELU net",
    "signed sums (fit), GRU, lr 1e-6": "signed sums (fit), GRU",
    "breast cancer, 10 sigmoid layers": "breast cancer, ELU net",
    "friedman3 (fit), 12 sigmoid layers": "friedman3, tanh net",
    "friedman1, 8 ReLU layers at N(0, 1)": "friedman1, GELU net",
    "3 classes (fit), 6 ReLU layers at N(0, 1)": "3 classes (fit), GELU net",
    "breast cancer, raw units": "breast cancer, ELU net",
    "wine (fit), raw units": "wine, SELU net",
    "friedman2, raw inputs": "friedman2 (fit), tanh net",
    "diabetes, target in points": "diabetes, ELU net",
    "friedman2 (fit), raw targets": "friedman2 (fit), tanh net",
    "weighted sums, LSTM, raw targets": "weighted sums, LSTM",
    "token votes, β2 0.3, batch 8": "token votes, embedding, batch 8, lr 3e-3",
    "digits CNN (fit), β2 0.3, batch 8": "digits CNN (fit), batch 8, lr 3e-3",
    "breast cancer, 1% missing inputs": "breast cancer, ELU net",
    "friedman3 (fit), 2% missing inputs": "friedman3, tanh net",
    "2 classes, 4% positives, swish net": "balanced 2 classes (fit), swish net",
    "breast cancer (fit), labels shuffled": "breast cancer, ELU net",
    "3 classes, 4096 rows, labels shuffled": "3 classes (fit), GELU net",
    "token votes, labels shuffled": "token votes, embedding, batch 8, lr 3e-3",
    "breast cancer, linear output": "breast cancer, ELU net",
    "wine (fit), linear output": "wine, SELU net",
    "digits CNN, linear output": "digits CNN",
    "friedman1 (fit), recompiled at epoch 10": "friedman1, GELU net",
    "digits CNN (fit), recompiled at epoch 6": "digits CNN",
    "breast cancer, batch norm momentum 0.999": "breast cancer, batch norm momentum 0.9",
    "friedman1 (fit), batch norm momentum 0.999": "friedman1, GELU net",
}


# Checking a label without the tool -----------------------------------------------------------------


def _final(record: RunRecord) -> float:
    """The last epoch's training loss; inf when any epoch's loss was NaN or infinite."""
    return record.loss[-1] if all(math.isfinite(v) for v in record.loss) else math.inf


def _relative(record: RunRecord) -> float:
    """The final training loss over the loss of predicting a constant (so raw and scaled targets compare)."""
    return _final(record) / max(record.baseline_loss, 1e-12)


def _val(record: RunRecord) -> list[float]:
    return [v for v in record.val_loss if v is not None and math.isfinite(v)]


def check_label(cause: str, record: RunRecord, twin: RunRecord | None = None) -> tuple[bool, str]:
    """Does the run show what was planted? Measured on the run itself and its healthy twin, never by ``diagnose``.

    Returns the verdict and the numbers it rests on. A broken run must be clearly worse than its twin
    (its final training loss, relative to the constant-prediction baseline, at least 1.5x the twin's,
    or not finite), plus what its cause means in numbers; a healthy run must learn (final training loss
    at most 60% of the baseline) without its validation loss rising more than 15% above its minimum
    (or, when the loss is tiny, more than 5% of the baseline).
    """
    rel, val = _relative(record), _val(record)
    facts = f"final/baseline {rel:.3g}"
    worse = True
    if twin is not None:
        worse = rel >= 1.5 * _relative(twin) or not math.isfinite(rel)
        facts += f", twin's {_relative(twin):.3g}"
    if cause == HEALTHY:
        rise = val[-1] / min(val) if val else 1.0
        # A rise of 15% of the best, or of 5% of the baseline (noise when the loss is already tiny).
        small = rise <= 1.15 or (val[-1] - min(val)) <= 0.05 * record.baseline_loss
        return rel <= 0.6 and small, f"{facts}, final val / best val {rise:.3g}"
    if cause == "learning_rate_too_low":
        moved = _final(record) / record.initial_loss
        return worse and moved >= 0.7, f"{facts}, final / initial loss {moved:.3g}"
    if cause == "vanishing_gradients":
        ratio = record.initial_layer_grads[0] / max(record.initial_layer_grads[-1], 1e-30)
        return worse and ratio <= 1e-2, f"{facts}, first/last layer gradient at the start {ratio:.2g}"
    if cause == "exploding_gradients":
        start = record.initial_loss / record.baseline_loss
        return worse and start >= 10, f"{facts}, initial loss / baseline {start:.3g}"
    if cause == "unscaled_inputs":
        scales = [s for s in record.feature_scales if s > 0]
        spread = max(scales) / min(scales)
        return worse and spread >= 100, f"{facts}, largest/smallest feature scale {spread:.3g}"
    if cause == "unscaled_targets":
        return worse and record.target_scale >= 10, f"{facts}, target scale {record.target_scale:.3g}"
    if cause == "nan_inputs":
        return record.nan_rows > 0 and worse, f"{facts}, rows with NaN {record.nan_rows}"
    if cause == "majority_class":
        minority = min(record.label_shares)
        ok = minority <= 0.05 and record.prediction_spread >= 0.99
        return ok, f"minority share {minority:.3g}, share predicted as the top class {record.prediction_spread:.3g}"
    if cause == "chance_plateau":
        return worse and rel >= 0.9, facts
    if cause == "recompile_reset":
        restart = record.fit_starts[-1]
        bump = record.loss[restart] / record.loss[restart - 1] if len(record.fit_starts) > 1 else 0.0
        return len(record.fit_starts) == 2 and bump > 1, f"{facts}, loss after / before the recompile {bump:.3g}"
    if cause == "train_eval_mismatch":
        gap = record.final_eval_mode_loss / record.final_train_mode_loss
        return gap >= 2, f"final loss in inference / training mode {gap:.3g}"
    if cause == "overfitting":
        rise = val[-1] / min(val)
        turned = int(np.argmin(val))
        gap = val[-1] / max(_final(record), 1e-12)
        ok = rel <= 0.05 and rise >= 1.1 and turned < len(val) - 5 and gap >= 5
        return ok, f"{facts}, val rose {rise:.3g}x from its minimum at epoch {turned}, val/train {gap:.3g}"
    # learning_rate_too_high, beta_2_too_low, output_loss_mismatch: worse than the twin is the measure
    return worse, facts
