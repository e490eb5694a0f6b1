"""Lesson 07a's bugs in the model and the loss that look like an optimizer failure, each with a switch.

Section 1 (outputs, losses and labels that do not match) and section 2 (targets on the wrong scale, and
outputs that cannot reach them) are about what the engine trains, so they run on it: a slider move
retrains in a fraction of a second. Lesson 07b (``adamclinic.lessons.bugs_in_the_training_loop``) has the
bugs in ``compile``/``fit`` and around them. Every run is a pure function of its config:
``config -> History``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import replace
from functools import cache
from typing import Any

import ipywidgets as w
import keras
import numpy as np
import tensorflow as tf

from adamclinic.data import digits, smooth_regression
from adamclinic.engine import Dataset, History, TrainConfig, run
from adamclinic.models import mlp
from adamclinic.panels import ScoreBoard, TrainingPanel, log_slider, tagged

# Section 1: outputs, losses and labels that do not match ------------------------------------------

# The two warnings Keras gives about this section's setups would print on stderr at every new trace,
# in the middle of a demo (and nbgrader zeroes a test cell that writes to stderr). The lesson shows them
# on purpose, with ``loss_warning``.
warnings.filterwarnings(
    "ignore",
    message=r".*received `from_logits=True`, but the `output` argument was produced by a Softmax",
    category=UserWarning,
)
warnings.filterwarnings(
    "ignore", message=r"You are using a softmax over axis -1 of a tensor of shape \(\w*, 1\)", category=UserWarning
)

# One loss object for every run: the engine keys its compiled epoch on the loss, so a new object per run
# would recompile.
SPARSE_CE_FROM_LOGITS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

CLASSIFIER_SETUPS = (
    "softmax output, from_logits=False",
    "linear output, from_logits=False",
    "softmax output, from_logits=True",
    "linear output, from_logits=True",
)


@cache
def digit_classifier(classes: int = 10, output: str = "softmax") -> Callable[[], keras.Model]:
    """A builder for 64 → 64 ReLU → ``classes`` outputs, with a softmax or a linear (logit) output.

    Cached: the same arguments give the same builder, which the engine uses as its cache key.
    """

    def build() -> keras.Model:
        return mlp(
            f"digits_{output}_{classes}",
            64,
            (64,),
            "relu",
            outputs=classes,
            output_activation="softmax" if output == "softmax" else None,
        )

    build.__name__ = build.__qualname__ = f"{output} output"
    return build


@cache
def digits_classes(classes: int = 10) -> Dataset:
    """The digits 0 to ``classes - 1`` only: training rows trimmed to whole batches of 32, and the
    validation digits of those classes."""
    full = digits()
    train, val = full.y_train[:, 0] < classes, full.y_val[:, 0] < classes
    rows = int(train.sum()) // 32 * 32
    return Dataset(
        full.x_train[train][:rows],
        full.y_train[train][:rows],
        full.x_val[val],
        full.y_val[val],
        name=f"digits 0-{classes - 1}",
    )


def classifier_config(base: TrainConfig, setup: str, classes: int = 10) -> TrainConfig:
    """``base`` on the digits of ``classes`` classes, with one of ``CLASSIFIER_SETUPS`` as output and loss."""
    if setup not in CLASSIFIER_SETUPS:
        raise ValueError(f"Unknown setup {setup!r}; choose one of: {', '.join(CLASSIFIER_SETUPS)}.")
    output = setup.split()[0]
    loss = SPARSE_CE_FROM_LOGITS if setup.endswith("from_logits=True") else "sparse_categorical_crossentropy"
    return tagged(
        replace(base, data=digits_classes(classes), build_model=digit_classifier(classes, output), loss=loss),
        f"{classes} classes, {setup}",
    )


def held_out_accuracy(history: History) -> float:
    """The share of validation rows whose largest output is the right class (outputs may be logits)."""
    data = history.config.data
    predictions = history.predict(data.x_val)
    return float((predictions.argmax(axis=1) == data.y_val[:, 0].astype(int)).mean())


def clip_autopsy(history: History) -> dict[str, float]:
    """What the loss sees, on the training rows at the end of a run, of a network whose outputs it takes
    as probabilities (``from_logits=False``).

    Keras's ``sparse_categorical_crossentropy`` clips every output into ``[ε, 1 - ε]`` (ε =
    ``keras.config.epsilon()``, 1e-7), takes its log and normalizes, so an output outside that range
    passes back a gradient of exactly 0. A row whose K outputs all lie at or below ε is read as K equal
    probabilities: its loss is exactly ln K and its gradient exactly 0, however different the raw
    outputs are. Returns the share of rows with every output at or below ε, the share whose loss is ln K,
    the share whose gradient with respect to the outputs is exactly 0, and the median spread (standard
    deviation) of the raw outputs within a row.
    """
    data = history.config.data
    loss = history.config.loss
    loss_fn = keras.losses.get(loss) if isinstance(loss, str) else loss
    outputs = keras.ops.convert_to_tensor(history.predict(data.x_train).astype("float32"))
    labels = keras.ops.convert_to_tensor(data.y_train[:, 0].astype("int64"))
    with tf.GradientTape() as tape:
        tape.watch(outputs)
        per_row = loss_fn(labels, outputs)
    gradient = np.asarray(tape.gradient(per_row, outputs))
    values, per_row = np.asarray(outputs), np.asarray(per_row)
    classes = values.shape[1]
    epsilon = keras.config.epsilon()
    return {
        "rows with every output at or below ε": float(np.mean(np.all(values <= epsilon, axis=1))),
        "rows whose loss is ln K": float(np.mean(np.isclose(per_row, math.log(classes), atol=1e-4))),
        "rows with a gradient of exactly 0": float(np.mean(np.all(gradient == 0, axis=1))),
        "spread of the raw outputs in a row": float(np.median(values.std(axis=1))),
        "ln K": math.log(classes),
    }


def loss_warning(build_model: Callable[[], keras.Model], loss: Any, rows: int = 4) -> str | None:
    """The warning Keras gives (if any) when ``loss`` is applied to ``build_model()``'s outputs."""
    model = build_model()
    x = np.zeros((rows, model.input_shape[-1]), dtype="float32")
    y = np.zeros((rows,), dtype="float32")
    loss_fn = keras.losses.get(loss) if isinstance(loss, str) else loss
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss_fn(y, model(x))
    messages = [str(c.message) for c in caught if issubclass(c.category, UserWarning)]
    return messages[0] if messages else None


def softmax_over_one_unit_warning() -> str | None:
    """The warning Keras gives when a softmax is applied over an axis of size 1 (silenced in demos)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keras.ops.softmax(np.zeros((2, 1), dtype="float32"))
    return str(caught[0].message) if caught else None


def binary_softmax_net(inputs: int = 8) -> keras.Model:
    """``binary_relu_net`` with the sigmoid swapped for a softmax over its single output: always 1.0."""
    return mlp("binary_softmax_net", inputs, (32, 32), "relu", outputs=1, output_activation="softmax")


def label_format_error(loss: str, one_hot: bool) -> str | None:
    """The error ``model.fit`` raises for digits labels given as integers or one-hot rows with ``loss``
    (None when it trains). One step on 32 rows: the error comes before any training."""
    data = digits_classes(10)
    labels = keras.utils.to_categorical(data.y_train[:32, 0], 10) if one_hot else data.y_train[:32]
    model = digit_classifier(10, "softmax")()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    try:
        model.fit(data.x_train[:32], labels, epochs=1, batch_size=32, verbose=0)
    except ValueError as error:
        return str(error).strip().splitlines()[0]
    return None


def classifier_panel(
    base: TrainConfig, setup: str = "linear output, from_logits=False", classes: int = 10, **options: Any
) -> TrainingPanel:
    """A choice of output and loss, and a slider for the number of classes; the score board shows the
    held-out accuracy next to ln K, the loss of a classifier that gives every class 1/K."""
    board = ScoreBoard(
        lambda h: {
            "held-out accuracy": held_out_accuracy(h),
            "final loss": h.final_loss,
            "ln K": math.log(h.config.data.y_val.max() + 1),
        }
    )
    controls = {
        "setup": w.Dropdown(
            options=list(CLASSIFIER_SETUPS),
            value=setup,
            description="output, loss",
            style={"description_width": "initial"},
            layout=w.Layout(width="420px"),
        ),
        "classes": w.IntSlider(value=classes, min=2, max=10, description="classes K", continuous_update=False),
    }
    return TrainingPanel(
        base,
        controls,
        make_config=lambda b, v: classifier_config(b, **v),
        train_fn=board.wrap(),
        views=[board],
        **options,
    )


# Section 2: targets on the wrong scale, and outputs that cannot reach them -------------------------

TARGET_SCALINGS = ("none", "standardize", "min-max to [0, 1]")
OUTPUTS = ("linear", "sigmoid")


def regression_net(output: str = "linear") -> Callable[[], keras.Model]:
    """Lesson 01's 10-32-32-1 ReLU net with a linear or a sigmoid output."""
    return _REGRESSION_NETS[output]


_REGRESSION_NETS = {
    "linear": lambda: mlp("regression_linear", 10, (32, 32), "relu"),
    "sigmoid": lambda: mlp("regression_sigmoid", 10, (32, 32), "relu", output_activation="sigmoid"),
}


def priced_targets(data: Dataset, mean: float, spread: float = 0.2) -> Dataset:
    """``data`` with its standardized targets turned into prices: ``mean`` on average, with a standard
    deviation of ``spread * mean`` (a house price of 250,000 varies by about 50,000)."""
    to_price = lambda y: mean + spread * mean * y  # noqa: E731
    return replace(data, y_train=to_price(data.y_train), y_val=to_price(data.y_val), name=f"targets ≈ {mean:,.0f}")


def target_transform(y_train: np.ndarray, scaling: str) -> tuple[float, float]:
    """``(center, scale)`` with ``(y - center) / scale`` the scaled target, from the training targets only."""
    y = np.asarray(y_train, dtype="float64")
    if scaling == "none":
        return 0.0, 1.0
    if scaling == "standardize":
        return float(y.mean()), float(y.std())
    if scaling == "min-max to [0, 1]":
        return float(y.min()), float(y.max() - y.min())
    raise ValueError(f"Unknown scaling {scaling!r}; choose one of: {', '.join(TARGET_SCALINGS)}.")


def scaled_targets(data: Dataset, center: float, scale: float) -> Dataset:
    """Both splits' targets mapped to ``(y - center) / scale``."""
    center, scale = float(center), float(scale)
    if not (math.isfinite(center) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number and center finite; got center={center}, scale={scale}.")
    return replace(data, y_train=(data.y_train - center) / scale, y_val=(data.y_val - center) / scale)


def target_config(
    base: TrainConfig, mean: float = 250_000.0, scaling: str = "none", output: str = "linear"
) -> TrainConfig:
    """The run the target panel trains: lesson 01's data with prices around ``mean`` as targets, scaled
    by ``scaling`` (fitted on the training targets), through a ``output`` output unit."""
    priced = priced_targets(smooth_regression(), mean)
    data = scaled_targets(priced, *target_transform(priced.y_train, scaling))
    return tagged(
        replace(base, data=data, build_model=regression_net(output)),
        f"mean {mean:,.0f}, {scaling} scaling, {output} output",
    )


def held_out_r2(history: History) -> float:
    """1 - MSE / variance on the validation rows. The same in prices as in scaled units: scaling the
    targets and predictions alike changes the MSE and the variance by the same factor."""
    data = history.config.data
    errors = history.predict(data.x_val) - data.y_val
    return float(1.0 - np.mean(errors**2) / np.var(data.y_val))


def mean_prediction(history: History, center: float = 0.0, scale: float = 1.0) -> float:
    """The mean validation prediction, mapped back to prices with ``center`` and ``scale``."""
    return float(history.predict(history.config.data.x_val).mean() * scale + center)


def bounded_output_floor(y: np.ndarray, low: float = 0.0, high: float = 1.0) -> float:
    """The lowest MSE any model whose outputs lie in ``[low, high]`` can reach on targets ``y``: the
    mean squared distance from each target to the interval."""
    y = np.asarray(y, dtype="float64")
    return float(np.mean((y - np.clip(y, low, high)) ** 2))


def target_panel(
    base: TrainConfig, mean: float = 250_000.0, scaling: str = "none", output: str = "linear", **options: Any
) -> TrainingPanel:
    """A log slider for the targets' mean, a choice of target scaling and of output unit; the score
    board shows the held-out R² (1 is perfect, 0 is predicting the mean)."""
    board = ScoreBoard(lambda h: {"held-out R²": held_out_r2(h), "final training loss": h.final_loss})
    controls = {
        "mean": log_slider("mean", mean, 1.0, 1e6, description="targets' mean"),
        "scaling": w.ToggleButtons(options=list(TARGET_SCALINGS), value=scaling, description="scaling"),
        "output": w.ToggleButtons(options=list(OUTPUTS), value=output, description="output unit"),
    }
    return TrainingPanel(
        base, controls, make_config=lambda b, v: target_config(b, **v), train_fn=board.wrap(), views=[board], **options
    )


# Judging an exercise's repairs (ex07_not_adam, parts A and B) -------------------------------------------
# Each retrains the student's repair with fixed seeds and measures it on rows and with code the student
# does not control: the digits' own validation rows, the priced targets' held-out rows.

EXERCISE_SEEDS = (0, 1)


def broken_classifier() -> TrainConfig:
    """Exercise 07's first patient (part A): a linear output trained with ``from_logits=False`` (section 1's bug)."""
    base = TrainConfig(digits_classes(10), digit_classifier(10), loss="sparse_categorical_crossentropy", epochs=30)
    return replace(classifier_config(base, "linear output, from_logits=False"), note="")


def classifier_repair_accuracy(config: TrainConfig, seeds=EXERCISE_SEEDS) -> np.ndarray:
    """Held-out accuracy per seed of ``config`` retrained on the broken classifier's training digits, scored
    on the 357 validation digits by the largest output (probabilities or logits alike). 0 for a run that
    diverged; a ``TypeError`` for anything but a ``TrainConfig``, a ``ValueError`` for other training rows
    or more than 30 epochs."""
    if not isinstance(config, TrainConfig):
        raise TypeError(
            f"expected a TrainConfig (for example dataclasses.replace(BROKEN_CLASSIFIER, ...)); got {type(config).__name__}."
        )
    reference = digits_classes(10)
    if (
        config.data.x_train.shape != reference.x_train.shape
        or not np.array_equal(config.data.x_train, reference.x_train)
        or not np.array_equal(config.data.y_train, reference.y_train)
    ):
        raise ValueError("keep the broken classifier's training digits and labels (data=BROKEN_CLASSIFIER.data).")
    if config.epochs > 30:
        raise ValueError(f"keep to 30 epochs at most; the repair asks for {config.epochs}.")
    scores = []
    for seed in seeds:
        history = run(replace(config, data=reference, seed=seed))
        scores.append(0.0 if history.diverged else held_out_accuracy(history))
    return np.asarray(scores, dtype=float)


def target_scaling_r2(target_scaling, seeds=EXERCISE_SEEDS, mean: float = 250_000.0) -> np.ndarray:
    """Held-out R² per seed of lesson 07a's priced regression, trained on targets scaled by the student's
    ``target_scaling(y_train) -> (center, scale)`` (called on a copy of the training targets; its two
    numbers are coerced with ``float``). R² is measured here, in prices: -inf for a diverged run."""
    priced = priced_targets(smooth_regression(), mean)
    center, scale = target_scaling(priced.y_train.copy())
    data = scaled_targets(priced, float(center), float(scale))
    scores = []
    for seed in seeds:
        history = run(TrainConfig(data, regression_net("linear"), epochs=30, seed=seed))
        if history.diverged:
            scores.append(-math.inf)
            continue
        predictions = history.predict(priced.x_val) * float(scale) + float(center)
        scores.append(float(1.0 - np.mean((predictions - priced.y_val) ** 2) / np.var(priced.y_val)))
    return np.asarray(scores, dtype=float)


# ---------------------------------------------------------------------------------------------
# The lesson's opening figure (adamclinic.figures; make figures): section 1's bug beside its fix.
# ---------------------------------------------------------------------------------------------

FIGURE = {"title": "One flag apart: stuck under ln 10, or trained", "y_label": "training loss (cross-entropy)"}


def figure_curves() -> dict[str, np.ndarray]:
    """Section 1's linear-output network on the ten digits (seed 0), with the loss told it gets
    probabilities (the bug) and logits (the fix), beside ln 10, the loss of ten equal probabilities."""
    base = TrainConfig(digits_classes(10), digit_classifier(10), loss="sparse_categorical_crossentropy", epochs=30)
    bug = run(classifier_config(base, "linear output, from_logits=False"))
    fix = run(classifier_config(base, "linear output, from_logits=True"))
    return {  # ln 10 first: drawn underneath, the bug's plateau lies on it
        "ln 10": np.full(len(bug.loss), math.log(10)),
        "from_logits=False (bug)": bug.loss,
        "from_logits=True (fix)": fix.loss,
    }
