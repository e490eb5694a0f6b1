"""The checks to run before blaming the optimizer: three questions, one call each, on any Keras model.

A loss that will not fall is blamed on Adam long before anyone looks for the bug that keeps it up. These
checks take a model (compiled or not), numpy arrays ``x`` and ``y`` and the loss (a Keras loss name, a
loss object or a function ``loss(y_true, y_pred)``), and answer in seconds:

1. ``check_initial_loss``: does the fresh model start where a model that knows nothing starts? A
   K-class softmax that guesses 1/K for every class scores ln K; one that knows only the class shares
   scores their entropy; a regression that predicts the mean of ``y`` scores its variance (for MSE). A
   fresh model far above that is confident and wrong before it has seen a single label: logits fed to a
   loss that expects probabilities, unscaled inputs through a large initializer, targets far from 0.
2. ``check_overfits_one_batch``: can it learn one small batch by heart? A few hundred Adam steps on 32
   rows take a healthy network to a loss near zero. One that cannot has a bug, not an optimizer problem:
   a frozen layer, a ``tf.stop_gradient``, an output activation that cannot reach the targets, a loss
   that does not depend on the weights. Labels shuffled against their inputs are learned by heart just
   as well (a network memorizes random labels); the check sees them on the rows outside the batch,
   which the memorized batch then predicts no better than chance.
3. ``check_gradients``: is the gradient the loss's gradient? The tape's gradient against central finite
   differences: of a loss function with respect to ``y_pred`` (in float64, entry by entry), or of the
   model's loss along one direction per weight (on a float64 clone of the model). It catches a custom
   loss whose gradient is silently zero (``tf.round``, ``argmax``, a cast to int, ``tf.stop_gradient``)
   or wrong (a ``tf.custom_gradient`` with a sign or factor bug).

``run_checks`` runs them all and returns a ``ChecksReport`` that prints what passed, what failed and what
to do. Every result is a frozen dataclass of plain numbers (``dataclasses.asdict`` gives JSON) with a
``passed`` flag and a ``message``.

None of them changes the caller's model or its compiled state: the initial loss only reads it (a model
that is not built yet is checked on a clone, so it stays unbuilt), the gradient and overfit checks work
on clones (``keras.models.clone_model`` with the caller's weights; a model that cannot be cloned in
float64 has its gradient checked in place in float32, every weight put back bit for bit), and a Keras
warning raised on the way is caught and quoted in the message instead of printed. The overfit check
calls ``seed_everything(seed)``, so its numbers are the same at every call.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf

from adamclinic.engine.seeding import seed_everything

# The thresholds, set from measurements over seeds 0-4 on the course's data and models (tests/test_checks.py
# holds them): healthy models pass and each planted bug fails, with a wide margin on both sides.

# A fresh classifier fails above this many times ln K (ln 2 for a sigmoid). Healthy: 0.59 .. 1.15 (digits
# 1.01 .. 1.08); logits into a probability loss 2.2 .. 11.6, raw 0-16 pixels 3.3 .. 10.
CLASSIFIER_START_FACTOR = 1.5
# A fresh regression fails above this many times the loss of predicting the mean. Healthy: 0.91 .. 1.96
# (0.92 .. 1.96 over seeds 0-19); targets + 10: 101 .. 123; raw parcel inputs: about 1e9.
REGRESSION_START_FACTOR = 4.0
# Below this share of the know-nothing loss, a fresh model knows what it cannot know yet (a leak).
TOO_GOOD_START = 0.5
# A batch counts as learned when its loss ends below this share of its know-nothing loss (ln K for a
# classifier, the loss of predicting the batch's mean for a regression). Healthy: at most 6e-3; the
# planted bugs at least 0.13 (a stop_gradient before the output layer) and mostly 0.3 .. 1.
OVERFIT_FRACTION = 0.05
# After learning the batch, the model predicts other rows; below this skill the labels do not follow from
# the inputs. Cohen's κ (0 is chance): healthy 0.30 .. 0.69, shuffled labels -0.02 .. 0.00. Skill
# 1 - loss / loss of the mean: healthy 0.05 .. 0.47, shuffled -0.90 .. -0.58.
CLASSIFIER_SKILL_LIMIT = 0.1
REGRESSION_SKILL_LIMIT = -0.25
HELD_OUT_ROWS = 512
# A first layer whose gradient is this much smaller than the last layer's does not learn (vanishing;
# a 10-layer sigmoid net: 5.5e-7).
VANISHING_RATIO = 1e-3
# Largest relative error between the tape and finite differences that still counts as agreement. A bug
# scores 0.5 (a factor 2) to 2 (a flipped sign); healthy losses at most 2.5e-7 in float64 and 4.6e-3 in
# float32; healthy models at most 5.2e-4 on a float64 clone and 0.053 in float32.
LOSS_GRADIENT_TOLERANCE = 1e-3  # float64, entry by entry
LOSS_GRADIENT_TOLERANCE_FLOAT32 = 0.05  # a loss that only runs in float32
MODEL_GRADIENT_TOLERANCE = 1e-2  # float64 clone, along one direction per weight
MODEL_GRADIENT_TOLERANCE_FLOAT32 = 0.2  # a model checked in float32 (ReLU kinks cost up to 0.05)
UNSCALED_INPUT = 30.0  # an input column whose root mean square is this large is in raw units (as the clinic)
INITIAL_LOSS_ROWS = 2048  # the initial loss is measured on at most this many rows


# The results -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InitialLossCheck:
    """The fresh model's loss against the loss of a prediction that knows nothing.

    ``know_nothing_loss`` is the best constant prediction's loss: the entropy of the class shares for a
    classifier (ln K when the classes are balanced), the loss of predicting the mean of ``y`` for a
    regression (its variance, for MSE). ``uniform_loss`` is ln K (ln 2 for each sigmoid), what a fresh
    classifier with small outputs scores; ``None`` for a regression. ``limit`` is the loss above which
    the check fails.
    """

    title: ClassVar[str] = "initial loss"

    passed: bool
    message: str
    loss_name: str
    task: str  # "multiclass", "binary", "regression" or "custom"
    initial_loss: float
    know_nothing_loss: float | None
    uniform_loss: float | None
    limit: float | None
    rows: int


@dataclass(frozen=True)
class OverfitCheck:
    """A clone trained with Adam on one batch: the batch's loss before and after, in inference mode.

    ``reference_loss`` is the know-nothing loss of that batch (ln K for a classifier, the loss of
    predicting the batch's mean for a regression); the check passes when ``end_loss`` falls below
    ``OVERFIT_FRACTION`` of it, every trainable weight gets a gradient, and what it learned carries over
    to other rows. ``held_out_skill`` measures that on up to ``HELD_OUT_ROWS`` rows outside the batch:
    Cohen's κ of the predicted classes (0 is chance) for a classifier, 1 − loss / loss of predicting
    those rows' mean for a regression; ``None`` (with ``held_out_rows`` 0) when it cannot tell. Labels
    shuffled against their inputs are learned by heart just as well (a network memorizes random labels),
    and only this shows them. ``loss_curve`` is the training-mode loss at each step.
    ``weights_without_gradient`` names the trainable weights whose gradient at the start is ``None`` or
    exactly zero.
    """

    title: ClassVar[str] = "overfit one batch"

    passed: bool
    message: str
    loss_name: str
    task: str
    batch_size: int
    steps: int
    learning_rate: float
    start_loss: float
    end_loss: float
    reference_loss: float
    limit: float
    trainable_weights: int
    weights_without_gradient: tuple[str, ...]
    held_out_skill: float | None
    held_out_rows: int
    seconds: float
    loss_curve: tuple[float, ...] = field(repr=False)


@dataclass(frozen=True)
class GradientCheck:
    """The tape's gradient against central finite differences.

    ``target`` is ``"loss function"`` (the gradient with respect to ``y_pred``, entry by entry) or
    ``"model weights"`` (the derivative of the loss along one direction per trainable weight).
    ``relative_errors`` pairs each place checked (``"y_pred[3, 7]"``, a weight's path) with
    ``|tape - finite difference| / max(|tape|, |finite difference|)``: 0 is agreement, 1 a gradient
    that is zero where it should not be (or the reverse), 2 a flipped sign. ``no_gradient`` names the
    places where the tape found no gradient at all (``None``).
    """

    passed: bool
    message: str
    loss_name: str
    target: str
    precision: str
    checked: int
    max_relative_error: float
    worst: str
    tolerance: float
    no_gradient: tuple[str, ...]
    relative_errors: tuple[tuple[str, float], ...] = field(repr=False)

    @property
    def title(self) -> str:
        return "gradient of the loss function" if self.target == "loss function" else "gradient through the weights"


CheckResult = InitialLossCheck | OverfitCheck | GradientCheck


@dataclass(frozen=True)
class ChecksReport:
    """The results of ``run_checks``, in the order they ran; ``print(report)`` says what to do."""

    results: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.results)

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(result for result in self.results if not result.passed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "results": [{"check": result.title, **asdict(result)} for result in self.results],
        }

    def __str__(self) -> str:
        lines = []
        for result in self.results:
            lines.append(f"[{'pass' if result.passed else 'FAIL'}] {result.title}: {result.message}")
        if self.passed:
            lines.append(
                "All checks passed: the model starts where it should, can learn, and its gradients are right. "
                "If full training still fails, look at the learning rate, the batch size and the data."
            )
        else:
            names = ", ".join(result.title for result in self.failed)
            lines.append(f"Fix what failed ({names}) before tuning the optimizer: no setting of Adam repairs it.")
        return "\n".join(lines)


# The loss, whatever form it was given in ---------------------------------------------------------------

# Keras's own loss functions whose know-nothing loss has a closed form, by the function's name.
_KERAS_LOSS_TASKS = {
    "sparse_categorical_crossentropy": "sparse",
    "categorical_crossentropy": "categorical",
    "binary_crossentropy": "binary",
    "mean_squared_error": "regression",
    "mean_absolute_error": "regression",
    "huber": "regression",
    "log_cosh": "regression",
}


@dataclass(frozen=True)
class _Loss:
    name: str
    kind: str  # a value of _KERAS_LOSS_TASKS, or "custom"
    from_logits: bool
    per_example: Callable[[Any, Any], Any]
    keras_loss: Any  # what compile gets: the caller's name, object or function

    @property
    def builtin(self) -> bool:
        return self.kind != "custom"

    def mean(self, y_true: Any, y_pred: Any) -> tf.Tensor:
        """The loss as ``compile`` reduces it: the mean over every row (and any axis the loss leaves)."""
        return tf.reduce_mean(self.per_example(y_true, y_pred))


def _same_rank(y_true: Any, y_pred: Any) -> tuple[Any, Any]:
    """Squeeze or expand a trailing axis of 1 so both have one rank, as ``compile`` does for a function."""
    true_rank, pred_rank = len(y_true.shape), len(y_pred.shape)
    if true_rank == pred_rank + 1 and y_true.shape[-1] == 1:
        return (y_true[..., 0], y_pred) if pred_rank != 1 else (y_true, y_pred[..., None])
    if pred_rank == true_rank + 1 and y_pred.shape[-1] == 1:
        return (y_true[..., None], y_pred) if true_rank == 1 else (y_true, y_pred[..., 0])
    return y_true, y_pred


def _resolve_loss(loss: Any) -> _Loss:
    if isinstance(loss, str):
        try:
            resolved = keras.losses.get(loss)
        except ValueError:
            raise ValueError(
                f"Unknown loss {loss!r}. Give a Keras loss name (for example 'mse', 'binary_crossentropy', "
                "'sparse_categorical_crossentropy'), a keras.losses object, or a function loss(y_true, y_pred)."
            ) from None
    else:
        resolved = loss
    if isinstance(resolved, keras.losses.Loss):
        function = getattr(resolved, "fn", None)
        config = resolved.get_config()
        per_example = resolved.call  # the per-row values, without the object's float32 cast
    elif callable(resolved):
        function, config = resolved, {}

        def per_example(y_true, y_pred):
            return resolved(*_same_rank(y_true, y_pred))
    else:
        raise TypeError(
            f"loss must be a Keras loss name, a keras.losses object or a function loss(y_true, y_pred); "
            f"got {type(loss).__name__}."
        )
    function_name = getattr(function, "__name__", "")
    builtin = function is not None and getattr(keras.losses, function_name, None) is function
    kind = _KERAS_LOSS_TASKS.get(function_name, "custom") if builtin else "custom"
    if isinstance(loss, str):
        name = loss
    elif isinstance(resolved, keras.losses.Loss):
        name = type(resolved).__name__
    else:
        name = getattr(resolved, "__name__", type(resolved).__name__)
    if config.get("from_logits"):
        name += "(from_logits=True)"
    return _Loss(name, kind, bool(config.get("from_logits", False)), per_example, loss)


# Input checks -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Problem:
    """The inputs of one check, validated: arrays, the loss, the model's output width and the task."""

    x: np.ndarray
    y: np.ndarray
    loss: _Loss
    outputs: int
    task: str  # "multiclass", "binary", "regression" or "custom"
    classes: int  # K for a classifier (2 for a sigmoid), 0 otherwise


def _prepare(model: Any, x: Any, y: Any, loss: Any) -> _Problem:
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a Keras model (keras.Model or keras.Sequential); got {type(model).__name__}.")
    resolved = _resolve_loss(loss)
    x, y = np.asarray(x), np.asarray(y)
    if x.dtype == object or y.dtype == object or not (_numeric(x) and _numeric(y)):
        raise ValueError("x and y must be numeric numpy arrays (convert a DataFrame with .to_numpy()).")
    if x.ndim == 0 or len(x) == 0:
        raise ValueError("x has no rows: give the training inputs, one row per example.")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}: give one target per row of x, in the same order.")
    x = x.astype(keras.config.floatx()) if np.issubdtype(x.dtype, np.floating) or x.dtype == bool else x
    for name, array in (("x", x), ("y", y)):
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            bad = int((~np.isfinite(array.reshape(len(array), -1))).any(axis=1).sum())
            raise ValueError(
                f"{bad} rows of {name} hold NaN or infinite values: impute or drop them first (lesson 05)."
            )
    try:
        sample = model(x[:2], training=False) if model.built else _working_copy(model, x)(x[:2], training=False)
    except Exception as error:  # Keras raises many kinds for an input it cannot take
        expected = getattr(model, "input_shape", None) if model.built else "(not built yet)"
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = next(
            (line for line in lines if "expected" in line.lower() or "incompatible" in line.lower()), lines[0]
        )
        raise ValueError(f"The model cannot take x of shape {x.shape} (it expects {expected}): {reason}") from error
    if isinstance(sample, (list, tuple, dict)):
        raise ValueError("The checks take a model with one output; check each output's model separately.")
    outputs = int(np.prod(sample.shape[1:])) if len(sample.shape) > 1 else 1
    task, classes = _task(resolved, y, outputs, sample.shape)
    return _Problem(x, y, resolved, outputs, task, classes)


def _numeric(array: np.ndarray) -> bool:
    return np.issubdtype(array.dtype, np.number) or array.dtype == bool


def _task(loss: _Loss, y: np.ndarray, outputs: int, output_shape: Sequence[int]) -> tuple[str, int]:
    """The task the loss sets, with the labels checked against it (a clear error instead of Keras's)."""
    if loss.kind == "sparse":
        labels = y.reshape(len(y), -1) if y.ndim > 1 else y[:, None]
        if labels.shape[1] != 1:
            raise ValueError(
                f"{loss.name} takes one integer label per row, but y has {labels.shape[1]} columns (one-hot?): "
                "use loss='categorical_crossentropy' for one-hot labels, or y.argmax(axis=1) as labels."
            )
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise ValueError(f"{loss.name} takes integer class labels 0 .. K-1; y holds fractions.")
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= outputs:
            hint = (
                f" The labels run from 1 to {outputs}: off by one? Use y - 1."
                if low == 1 and high == outputs
                else f" Give the output layer {high + 1} units, or map the labels to 0 .. {outputs - 1}."
            )
            raise ValueError(
                f"{loss.name} needs labels 0 .. {outputs - 1} for a model with {outputs} outputs, "
                f"but y runs from {low} to {high}.{hint}"
            )
        return "multiclass", outputs
    if loss.kind == "categorical":
        if y.ndim != 2 or y.shape[1] != outputs:
            raise ValueError(
                f"{loss.name} takes one-hot labels of shape (rows, {outputs}); y has shape {y.shape}. For integer "
                f"labels use loss='sparse_categorical_crossentropy', or one-hot them with "
                f"keras.utils.to_categorical(y, {outputs})."
            )
        if (y < 0).any() or not np.allclose(y.sum(axis=1), 1.0, atol=1e-3):
            raise ValueError(f"{loss.name} takes rows of class probabilities (one-hot): each row of y must sum to 1.")
        return "multiclass", outputs
    if loss.kind == "binary":
        if y.size != len(y) * outputs:
            raise ValueError(
                f"{loss.name} takes one label per output: y has shape {y.shape}, the model gives {outputs} outputs."
            )
        if (y < 0).any() or (y > 1).any():
            raise ValueError(
                f"{loss.name} takes labels 0 or 1 (or a probability between); y runs from {y.min():g} to "
                f"{y.max():g}. Map the two classes to 0 and 1 (for example y == positive_class)."
            )
        return "binary", 2
    if loss.kind == "regression":
        if y.size != len(y) * outputs:
            raise ValueError(
                f"{loss.name} compares each output with a target: y has shape {y.shape}, the model gives "
                f"{tuple(output_shape)[1:]} per row."
            )
        return "regression", 0
    return "custom", 0


def _working_copy(model: keras.Model, x: np.ndarray, dtype: str | None = None) -> keras.Model:
    """A clone of ``model`` with its weights (and frozen layers), built on ``x``: safe to train. With
    ``dtype`` every layer computes in that type (float64 for a gradient check)."""
    try:
        # clone_model compiles the clone as the model was compiled, which looks a custom loss up by name.
        with keras.saving.custom_object_scope(_compiled_custom_objects(model)):
            if isinstance(model, keras.Sequential) or hasattr(model, "_run_through_graph"):  # functional
                clone = keras.models.clone_model(model, clone_function=lambda layer: _clone_layer(layer, dtype))
            elif dtype is None:
                clone = keras.models.clone_model(model)  # a subclass, rebuilt from its get_config
            else:
                raise ValueError(f"a subclassed model cannot be cloned in {dtype}")
        if not clone.built:
            clone(x[:1], training=False)
        if model.built:
            clone.set_weights(model.get_weights())
    except Exception as error:
        raise ValueError(
            f"keras.models.clone_model cannot copy this model ({_first_words(error)}), and the checks "
            "never train the caller's model. Give a Sequential or functional model, or a subclass that "
            "implements get_config."
        ) from error
    return clone


def _first_words(error: BaseException) -> str:
    cause = error
    while not str(cause).strip() and cause.__cause__ is not None:
        cause = cause.__cause__
    text = " ".join(str(cause).split())  # Keras wraps its sentences over several lines
    return (text[:200] + ("…" if len(text) > 200 else "")) if text else type(cause).__name__


def _compiled_custom_objects(model: keras.Model) -> dict[str, Any]:
    """The model's compiled loss under the names its compile config gives it, so the clone finds it."""
    losses = getattr(model, "loss", None) if getattr(model, "compiled", False) else None
    found: dict[str, Any] = {}
    for loss in (
        losses.values() if isinstance(losses, dict) else losses if isinstance(losses, list | tuple) else [losses]
    ):
        if isinstance(loss, keras.losses.Loss):
            found[type(loss).__name__] = type(loss)
        elif callable(loss):
            found[getattr(loss, "__name__", "")] = loss
    return found


def _clone_layer(layer: keras.layers.Layer, dtype: str | None) -> keras.layers.Layer:
    config = layer.get_config()
    if dtype is not None:
        config["dtype"] = dtype
    try:
        return layer.__class__.from_config(config)
    except Exception:
        # A Lambda around a TensorFlow function (Lambda(tf.stop_gradient)) cannot be rebuilt from its
        # config: Keras looks the function up by name. The same function object serves the clone.
        if isinstance(layer, keras.layers.Lambda):
            return keras.layers.Lambda(
                layer.function, arguments=layer.arguments, name=layer.name, dtype=dtype or layer.dtype_policy
            )
        raise


class _KerasWarnings(warnings.catch_warnings):
    """Catches every warning raised inside (Keras's included), to quote them in a message."""

    def __init__(self) -> None:
        super().__init__(record=True)

    def __enter__(self) -> list[warnings.WarningMessage]:
        caught = super().__enter__()
        warnings.simplefilter("always")
        return caught


def _quote_warnings(caught: Sequence[warnings.WarningMessage]) -> str:
    texts = list(dict.fromkeys(" ".join(str(w.message).split()) for w in caught))
    return "".join(f" Keras warned: {text}" for text in texts[:2])


# 1. The initial loss ------------------------------------------------------------------------------------


def _know_nothing_loss(problem: _Problem, y: np.ndarray, output_shape: Sequence[int]) -> float | None:
    """The loss of the best constant prediction on ``y``: the class shares, or the mean (median for MAE)."""
    loss = problem.loss
    if problem.task == "multiclass":
        if loss.kind == "sparse":
            shares = np.bincount(y.reshape(-1).astype(int), minlength=problem.classes) / y.size
            return float(-sum(p * math.log(p) for p in shares if p > 0))
        shares = y.mean(axis=0)
        return float(-np.mean(np.sum(y * np.log(np.clip(shares, 1e-12, None)), axis=1)))
    if problem.task == "binary":
        labels = y.reshape(len(y), -1).astype("float64")
        shares = np.clip(labels.mean(axis=0), 1e-12, 1 - 1e-12)
        return float(-np.mean(labels * np.log(shares) + (1 - labels) * np.log(1 - shares)))
    targets = y.reshape((len(y), *output_shape[1:])) if y.size == len(y) * problem.outputs else None
    if targets is None:
        return None  # a custom loss on labels of another shape: no constant prediction to compare with
    center = np.median(targets, axis=0) if "absolute" in loss.name else targets.mean(axis=0)
    constant = np.broadcast_to(center, targets.shape).astype("float32")
    try:
        return float(loss.mean(targets.astype("float32"), constant))
    except Exception:
        return None


def _probabilities(outputs: np.ndarray, problem: _Problem) -> np.ndarray:
    """What the loss reads as the predicted probabilities (Keras clips and normalizes non-probabilities)."""
    if problem.loss.from_logits:
        if problem.task == "binary":
            return 1 / (1 + np.exp(-outputs))
        shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)
    epsilon = keras.config.epsilon()
    clipped = np.clip(outputs, epsilon, 1 - epsilon)
    return clipped if problem.task == "binary" else clipped / clipped.sum(axis=1, keepdims=True)


def _improper_share(outputs: np.ndarray, problem: _Problem) -> float:
    """The share of rows whose outputs are not probabilities (a value outside [0, 1], or a sum other than 1)."""
    outside = ((outputs < -1e-6) | (outputs > 1 + 1e-6)).any(axis=1)
    if problem.task == "multiclass":
        outside |= np.abs(outputs.sum(axis=1) - 1) > 1e-3
    return float(outside.mean())


def check_initial_loss(model: keras.Model, x: Any, y: Any, loss: Any) -> InitialLossCheck:
    """The loss of ``model`` as it is now (call it before training) against the loss of knowing nothing.

    Measured in inference mode on the first ``INITIAL_LOSS_ROWS`` rows. A classifier fails when it
    starts above ``CLASSIFIER_START_FACTOR`` times ln K, or when its outputs are not what the loss
    expects (logits where it expects probabilities); a regression when it starts above
    ``REGRESSION_START_FACTOR`` times the loss of predicting the mean; any model when it starts below
    ``TOO_GOOD_START`` times the know-nothing loss (it knows what it cannot know yet).
    """
    problem = _prepare(model, x, y, loss)
    x, y = problem.x[:INITIAL_LOSS_ROWS], problem.y[:INITIAL_LOSS_ROWS]
    reader = model if model.built else _working_copy(model, x)
    with _KerasWarnings() as caught:
        output_tensor = reader(x, training=False)
        initial = float(problem.loss.mean(y, output_tensor))
    outputs = np.asarray(output_tensor, dtype="float64").reshape(len(x), -1)
    keras_said = _quote_warnings(caught)
    know_nothing = _know_nothing_loss(problem, problem.y, output_tensor.shape)
    uniform = math.log(problem.classes) if problem.task in ("multiclass", "binary") else None
    name = problem.loss.name

    def result(passed: bool, message: str, limit: float | None) -> InitialLossCheck:
        return InitialLossCheck(
            passed, message + keras_said, name, problem.task, initial, know_nothing, uniform, limit, len(x)
        )

    if not math.isfinite(initial):
        return result(
            False,
            f"The fresh model's loss is {initial} before any training: look for a log of 0 or of a negative "
            "number in a custom loss, or outputs that overflow (inputs in the thousands through a large "
            "initializer).",
            None,
        )
    x_scale = _largest_input_scale(x)
    scale_hint = (
        f"inputs on a large scale (the largest input column's root mean square is {x_scale:.3g}: "
        "standardize x, fitting the scaler on the training rows)"
        if x_scale >= UNSCALED_INPUT
        else f"an initializer too large for the depth or width (the inputs look scaled: largest column RMS {x_scale:.3g})"
    )

    if problem.task in ("multiclass", "binary"):
        limit = CLASSIFIER_START_FACTOR * uniform
        k_text = "ln 2, a coin flip per output" if problem.task == "binary" else f"ln {problem.classes}"
        numbers = (
            f"The fresh model's loss is {initial:.3f}; {k_text} = {uniform:.3f} is the loss of equal guesses, "
            f"and {know_nothing:.3f} that of guessing the class shares."
        )
        improper = _improper_share(outputs, problem)
        softmaxed = hasattr(output_tensor, "_keras_logits")  # Keras's softmax/sigmoid: it reads the logits
        if not problem.loss.from_logits and improper > 0 and not softmaxed:
            fix = "a sigmoid" if problem.task == "binary" else "a softmax"
            return result(
                False,
                f"{numbers} The model's outputs are not probabilities ({improper:.0%} of rows have a value "
                f"outside [0, 1]{'' if problem.task == 'binary' else ' or do not sum to 1'}), but {name} expects "
                f"probabilities: Keras clips them into [1e-7, 1] and the loss, and its gradient, are wrong. "
                f"Add {fix} to the output layer, or give the loss from_logits=True.",
                limit,
            )
        if problem.loss.from_logits and improper == 0 and not softmaxed and _sums_to_one(outputs, problem):
            return result(
                False,
                f"{numbers} The outputs are already probabilities, but {name} applies a "
                f"{'sigmoid' if problem.task == 'binary' else 'softmax'} again: the model can never become "
                "confident, and the loss cannot fall far. Remove the output activation, or use "
                "from_logits=False.",
                limit,
            )
        probabilities = _probabilities(outputs, problem)
        confidence = float(
            np.mean(np.maximum(probabilities, 1 - probabilities))
            if problem.task == "binary"
            else np.mean(probabilities.max(axis=1))
        )
        if initial > limit:
            return result(
                False,
                f"{numbers} It starts {initial / uniform:.1f} times above {k_text}: before seeing a label it "
                f"is already confident (its top class gets {confidence:.0%} on average; equal guesses give "
                f"{1 / problem.classes:.0%}), and wrong. Look at: {scale_hint}; outputs that do not match the "
                "loss (logits into a loss that expects probabilities, from_logits set wrong); labels that do not "
                "match the outputs (off by one, one-hot against integer labels).",
                limit,
            )
        if initial < TOO_GOOD_START * know_nothing:
            return result(
                False,
                f"{numbers} It starts far below guessing the class shares, before any training: check that "
                "the labels are not among the inputs, and that the loss reads the labels you think.",
                limit,
            )
        note = ""
        if know_nothing < 0.7 * uniform and initial > 1.3 * know_nothing:
            note = (
                " The classes are imbalanced: setting the output layer's bias to the log of the class shares "
                f"(log(p / (1 - p)) for a sigmoid) starts the model at {know_nothing:.3f} instead of spending "
                "its first steps learning the shares."
            )
        return result(True, f"{numbers} A healthy start: about as unsure as a model that knows nothing.{note}", limit)

    if know_nothing is None or not know_nothing > 0:
        return result(
            True,
            f"The fresh model's loss is {initial:.4g}. The checks know no constant prediction for the custom loss "
            f"{name} on targets of shape {problem.y.shape}: compare it yourself with the loss of predicting the "
            "class shares, or the mean of y, for every row.",
            None,
        )
    what = "the median" if "absolute" in name else "the mean"
    limit = REGRESSION_START_FACTOR * know_nothing
    numbers = (
        f"The fresh model's loss is {initial:.4g}; predicting {what} of y for every row scores {know_nothing:.4g}"
        f"{' (the variance of y)' if name in ('mse', 'mean_squared_error', 'MeanSquaredError') else ''}: "
        f"{initial / know_nothing:.2f} times that."
    )
    if initial > limit:
        targets = problem.y.astype("float64")
        mean, spread = float(targets.mean()), float(targets.std())
        hints = []
        if abs(mean) > 2 * spread:
            hints.append(
                f"targets far from 0 (mean {mean:.4g}, standard deviation {spread:.4g}) while a fresh model "
                "predicts about 0: standardize y (and undo it on the predictions), or set the output bias to "
                "the mean"
            )
        if x_scale >= UNSCALED_INPUT or not hints:
            hints.append(scale_hint)
        return result(False, f"{numbers} Look at: {'; '.join(hints)}.", limit)
    if initial < TOO_GOOD_START * know_nothing:
        return result(
            False,
            f"{numbers} It starts far below predicting {what}, before any training: check that the targets "
            "are not among the inputs.",
            limit,
        )
    return result(True, f"{numbers} A healthy start.", limit)


def _sums_to_one(outputs: np.ndarray, problem: _Problem) -> bool:
    return problem.task == "binary" or bool(np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3))


def _largest_input_scale(x: np.ndarray) -> float:
    flat = np.asarray(x, dtype="float64").reshape(len(x), -1)
    return float(np.sqrt(np.mean(flat**2, axis=0)).max()) if flat.size else 0.0


# 2. Overfitting one batch ------------------------------------------------------------------------------


def check_overfits_one_batch(
    model: keras.Model,
    x: Any,
    y: Any,
    loss: Any,
    batch_size: int = 32,
    steps: int = 300,
    learning_rate: float = 3e-3,
    seed: int = 0,
    on_step: Callable[[int, float], None] | None = None,
) -> OverfitCheck:
    """Train a clone of ``model`` with Adam on ``batch_size`` rows of ``x`` (drawn with ``seed``) for
    ``steps`` steps, and see whether that batch's loss falls near zero. ``on_step(step, loss)``, if given,
    is called after every step while it trains (a live chart of the batch's loss).

    The clone starts from the caller's weights and keeps its frozen layers; the caller's model and its
    compiled state are untouched. A healthy model ends below ``OVERFIT_FRACTION`` of the batch's
    know-nothing loss. One that does not, or whose trainable weights get no gradient, has a bug. One
    that learns the batch but predicts other rows no better than chance was given labels that do not
    belong to its inputs.
    """
    problem = _prepare(model, x, y, loss)
    if not (isinstance(batch_size, int | np.integer) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive whole number of rows; got {batch_size!r}.")
    if not (isinstance(steps, int | np.integer) and steps >= 1):
        raise ValueError(f"steps must be a positive whole number; got {steps!r}.")
    if not (isinstance(learning_rate, int | float) and 0 < learning_rate < 1):
        raise ValueError(
            f"learning_rate must be a number between 0 and 1 (Adam's default is 1e-3); got {learning_rate!r}."
        )
    batch_size = min(int(batch_size), len(problem.x))
    rows = np.sort(np.random.default_rng(seed).choice(len(problem.x), size=batch_size, replace=False))
    x_batch, y_batch = problem.x[rows], problem.y[rows]
    name = problem.loss.name
    started = time.perf_counter()
    seed_everything(seed)
    clone = _working_copy(model, problem.x)
    held_out = np.setdiff1d(np.arange(len(problem.x)), rows)[:HELD_OUT_ROWS]
    with _KerasWarnings() as caught:
        start_loss = float(problem.loss.mean(y_batch, clone(x_batch, training=False)))
        silent, kernel_norms = _start_gradients(clone, problem.loss, x_batch, y_batch)
        trainable = len(clone.trainable_weights)
        curve: list[float] = []
        if trainable and len(silent) < trainable:
            clone.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=problem.loss.keras_loss)
            # One epoch over the batch repeated `steps` times: the same steps as `steps` epochs of one
            # batch, without Keras's per-epoch overhead (0.8 s of CPU instead of 7.5 s for 300 steps).
            recorder = _StepLosses(on_step)
            clone.fit(
                np.repeat(x_batch[None], steps, axis=0).reshape(-1, *x_batch.shape[1:]),
                np.repeat(y_batch[None], steps, axis=0).reshape(-1, *y_batch.shape[1:]),
                batch_size=batch_size,
                epochs=1,
                shuffle=False,
                verbose=0,
                callbacks=[recorder],
            )
            curve = recorder.losses
        end_output = clone(x_batch, training=False)
        end_loss = float(problem.loss.mean(y_batch, end_output)) if curve else start_loss
        skill = _held_out_skill(clone, problem, held_out) if curve and len(held_out) >= batch_size else None
    keras_said = _quote_warnings(caught)
    if problem.task in ("multiclass", "binary"):
        reference = math.log(problem.classes)
        reference_text = f"ln {problem.classes}, the loss of equal guesses"
    else:
        reference = _know_nothing_loss(problem, y_batch, end_output.shape)
        reference_text = "the loss of predicting the batch's mean"
        if reference is None or not reference > 0:
            reference, reference_text = start_loss, "the batch's starting loss"
    limit = OVERFIT_FRACTION * reference

    def result(passed: bool, message: str) -> OverfitCheck:
        return OverfitCheck(
            passed,
            message + keras_said,
            name,
            problem.task,
            batch_size,
            len(curve),
            float(learning_rate),
            start_loss,
            end_loss,
            float(reference),
            float(limit),
            trainable,
            tuple(silent),
            None if skill is None else float(skill),
            int(len(held_out)) if skill is not None else 0,
            time.perf_counter() - started,
            tuple(curve),
        )

    if not trainable:
        return result(
            False,
            "The model has no trainable weights: every layer is frozen (layer.trainable = False, or "
            "model.trainable = False). Unfreeze the layers you mean to train, and compile again after.",
        )
    if len(silent) == trainable:
        return result(
            False,
            f"No trainable weight gets a gradient from {name}: the loss does not depend on the weights "
            "through anything the tape can differentiate. Look for tf.round, argmax, a cast to int, a "
            "comparison or tf.stop_gradient between the output and the loss (check_gradients on the loss "
            "function finds it), or a loss that ignores y_pred.",
        )
    numbers = (
        f"{len(curve)} Adam steps (learning rate {learning_rate:g}) on one batch of {batch_size} rows took its "
        f"loss from {start_loss:.4g} to {end_loss:.4g}; below {limit:.3g} ({OVERFIT_FRACTION:.0%} of "
        f"{reference_text}) counts as learned."
    )
    blocked = ""
    if silent:
        blocked = (
            f" {len(silent)} of {trainable} trainable weights get no gradient ({', '.join(silent[:4])}"
            f"{', …' if len(silent) > 4 else ''}): a tf.stop_gradient, a non-differentiable op, a branch the "
            "output does not use, or dead ReLU units cut them off."
        )
    frozen = _frozen_layers(clone)
    nan_at = next((step for step, value in enumerate(curve, start=1) if not math.isfinite(value)), None)
    if nan_at is not None or not math.isfinite(end_loss):
        return result(
            False,
            f"{numbers} The loss became NaN or infinite (at step {nan_at}): look for a log of 0 or a division in "
            "a custom loss, or lower the learning rate if it also blows up at 1e-4." + blocked,
        )
    if end_loss > limit:
        hints = []
        if end_loss > 10 * max(start_loss, reference):
            hints.append(
                "the loss grew instead of falling: the gradient points uphill (a hand-written gradient with a "
                "wrong sign: run check_gradients), or the learning rate is far too high"
            )
        hints += _unreachable_targets(np.asarray(end_output, dtype="float64"), y_batch, problem)
        hints += _unconfident_classifier(end_output, problem)
        if len(kernel_norms) >= 2 and 0 < kernel_norms[0] < VANISHING_RATIO * kernel_norms[-1]:
            hints.append(
                f"the gradient vanishes on its way down: the first layer's is {kernel_norms[0] / kernel_norms[-1]:.1e} "
                "times the last layer's (saturating activations through many layers: use relu with he_normal, "
                "batch normalization or residual connections, lesson 04)"
            )
        if frozen:
            hints.append(frozen)
        hints.append(
            "a frozen layer; a tf.stop_gradient; an output activation that cannot reach the targets (relu or "
            "sigmoid before negative targets, a second softmax); a loss that hardly depends on the weights"
        )
        return result(
            False,
            f"{numbers} A healthy network learns {batch_size} rows by heart; one that cannot has a bug (or an "
            f"architecture that cannot train), and no optimizer setting fixes it. Look at: {'; '.join(hints)}."
            + blocked,
        )
    if silent:
        return result(False, f"{numbers} It learns, but not with all its weights.{blocked}")
    if skill is not None and skill < _skill_limit(problem):
        what = "Cohen's κ" if problem.task in ("multiclass", "binary") else "skill 1 − loss / loss of the mean"
        return result(
            False,
            f"{numbers} It learned the batch by heart, yet on {len(held_out)} other rows it predicts no better "
            f"than chance ({what} = {skill:.2f}; a model that learned anything real scores above "
            f"{_skill_limit(problem):g}): the labels do not follow from the inputs. Check that x and y were "
            "shuffled or split together (one permutation for both), and that y belongs to this x (same order, "
            "same file).",
        )
    note = f" Note: {frozen}." if frozen else ""
    return result(
        True,
        f"{numbers} The model can learn, and what it learned carries over to other rows"
        f"{'' if skill is None else f' (held-out skill {skill:.2f})'}: if full training fails, look at the "
        f"learning rate, the batch size and the data before the architecture.{note}",
    )


def _skill_limit(problem: _Problem) -> float:
    return CLASSIFIER_SKILL_LIMIT if problem.task in ("multiclass", "binary") else REGRESSION_SKILL_LIMIT


def _held_out_skill(model: keras.Model, problem: _Problem, rows: np.ndarray) -> float | None:
    """How much better than chance the model trained on one batch predicts other rows: Cohen's κ for a
    classifier (0 is chance, whatever the class shares), 1 − loss / loss of predicting those rows' mean
    for a regression. ``None`` when it cannot tell (a classifier that predicts one class for nearly
    every row, a custom loss on labels of another shape)."""
    outputs = np.asarray(model(problem.x[rows], training=False), dtype="float64").reshape(len(rows), -1)
    targets = problem.y[rows]
    if problem.task in ("multiclass", "binary"):
        if problem.task == "binary":
            if outputs.shape[1] != 1:
                return None  # several sigmoids (multi-label): no single class to compare
            predicted = (outputs[:, 0] > (0.0 if problem.loss.from_logits else 0.5)).astype(int)
            truth = (targets.reshape(len(rows)) > 0.5).astype(int)
        else:
            predicted = outputs.argmax(axis=1)
            truth = targets.argmax(axis=1) if problem.loss.kind == "categorical" else targets.reshape(-1).astype(int)
        classes = problem.classes
        predicted_shares = np.bincount(predicted, minlength=classes) / len(rows)
        true_shares = np.bincount(truth, minlength=classes) / len(rows)
        chance = float(np.sum(predicted_shares * true_shares))
        if predicted_shares.max() > 0.95 or chance > 0.95:
            return None
        return (float(np.mean(predicted == truth)) - chance) / (1 - chance)
    know_nothing = _know_nothing_loss(problem, targets, (None, *outputs.shape[1:]))
    if know_nothing is None or not know_nothing > 0:
        return None
    loss = float(problem.loss.mean(targets.reshape(outputs.shape).astype("float32"), outputs.astype("float32")))
    return 1 - loss / know_nothing


class _StepLosses(keras.callbacks.Callback):
    """Each step's training loss, recovered from the running mean that ``fit`` logs after every batch, and
    handed to ``on_step(step, loss)`` as it comes (for a live chart)."""

    def __init__(self, on_step: Callable[[int, float], None] | None = None) -> None:
        super().__init__()
        self.losses: list[float] = []
        self._running = 0.0
        self._on_step = on_step

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        running = float((logs or {}).get("loss", math.nan))
        self.losses.append((batch + 1) * running - batch * self._running)
        self._running = running
        if self._on_step is not None:
            self._on_step(batch + 1, self.losses[-1])


def _start_gradients(model: keras.Model, loss: _Loss, x: np.ndarray, y: np.ndarray) -> tuple[list[str], list[float]]:
    """The trainable weights whose gradient on ``x`` is ``None`` or exactly zero everywhere, and each
    weight matrix's gradient norm, first layer first (training mode moves batch-norm statistics: they
    are put back)."""
    saved = [v.numpy() for v in model.non_trainable_variables]
    with tf.GradientTape() as tape:
        value = loss.mean(y, model(x, training=True))
    gradients = tape.gradient(value, model.trainable_variables)
    for variable, old in zip(model.non_trainable_variables, saved):
        variable.assign(old)
    silent = [
        variable.path
        for variable, gradient in zip(model.trainable_variables, gradients)
        if gradient is None or not np.any(np.asarray(gradient))
    ]
    kernel_norms = [
        float(np.linalg.norm(np.asarray(gradient)))
        for variable, gradient in zip(model.trainable_variables, gradients)
        if len(variable.shape) >= 2 and gradient is not None
    ]
    return silent, kernel_norms


def _unreachable_targets(predictions: np.ndarray, y: np.ndarray, problem: _Problem) -> list[str]:
    """A hint when the outputs pile up on a bound the targets lie beyond (a relu or sigmoid output)."""
    if problem.task not in ("regression", "custom") or y.size != predictions.size:
        return []
    targets = y.reshape(predictions.shape).astype("float64")
    band = 0.05 * max(float(targets.std()), 1e-6)  # "at the bound": within 5% of the targets' spread
    hints = []
    below = targets < -1e-6
    if predictions.min() >= -1e-6 and below.mean() > 0.05 and np.mean(predictions[below] <= band) > 0.5:
        hints.append(
            f"the outputs never go below 0 but {below.mean():.0%} of the targets are negative: the output "
            "layer's activation (relu, sigmoid, softplus) cannot reach them; use a linear output"
        )
    above = targets > 1 + 1e-6
    if predictions.max() <= 1 + 1e-6 and above.mean() > 0.05 and np.mean(predictions[above] >= 1 - band) > 0.5:
        hints.append(
            f"the outputs never go above 1 but {above.mean():.0%} of the targets do: a sigmoid output cannot "
            "reach them; use a linear output, or scale the targets into [0, 1]"
        )
    return hints


def _unconfident_classifier(output_tensor: Any, problem: _Problem) -> list[str]:
    """A hint when a classifier's outputs are not what its loss reads, or cannot become confident."""
    if problem.task not in ("multiclass", "binary"):
        return []
    outputs = np.asarray(output_tensor, dtype="float64").reshape(output_tensor.shape[0], -1)
    softmaxed = hasattr(output_tensor, "_keras_logits")
    if not problem.loss.from_logits and not softmaxed and _improper_share(outputs, problem) > 0:
        return [
            f"the outputs are not probabilities but {problem.loss.name} expects them: Keras clips them into "
            "[1e-7, 1], where the gradient is 0 (add a softmax or sigmoid to the output, or use from_logits=True)"
        ]
    probabilities = _probabilities(outputs, problem)
    top = probabilities.max(axis=1) if problem.task == "multiclass" else np.maximum(probabilities, 1 - probabilities)
    if float(np.mean(top)) < 0.5:
        return [
            f"the model cannot become confident (its top class gets {float(np.mean(top)):.0%} on average after "
            "training): a second softmax or sigmoid on the output, or from_logits=True on outputs that are "
            "already probabilities"
        ]
    return []


def _frozen_layers(model: keras.Model) -> str | None:
    frozen_layers = [layer.name for layer in model.layers if layer.weights and not layer.trainable]
    if not frozen_layers:
        return None
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    total = trainable + sum(int(np.prod(v.shape)) for v in model.non_trainable_weights)
    return f"frozen layers ({', '.join(frozen_layers)}): only {trainable:,} of {total:,} parameters train"


# 3. Gradient checks -------------------------------------------------------------------------------------


def check_gradients(
    loss: Any,
    y_true: Any,
    y_pred: Any = None,
    *,
    model: keras.Model | None = None,
    x: Any = None,
    entries: int = 12,
    rows: int = 64,
    seed: int = 0,
) -> GradientCheck:
    """Compare the tape's gradient with central finite differences, in one of two ways.

    ``check_gradients(loss, y_true, y_pred)``: the gradient of ``loss`` with respect to ``y_pred``, at
    ``entries`` entries drawn with ``seed``, in float64 (float32 when the loss cannot run in float64).
    ``check_gradients(loss, y, model=model, x=x)``: the derivative of the model's loss on ``rows`` rows
    along one direction per trainable weight, on a float64 clone (see ``check_model_gradient``).
    """
    if model is not None:
        if x is None:
            raise ValueError("Give the inputs too: check_gradients(loss, y, model=model, x=x).")
        if y_pred is not None:
            raise ValueError("Give either y_pred (to check the loss function) or model and x, not both.")
        return check_model_gradient(model, x, y_true, loss, rows=rows, seed=seed)
    if y_pred is None:
        raise ValueError(
            "Give y_pred to check the loss function (for example model.predict(x[:64])), or model= and x= to "
            "check the gradient through the model's weights."
        )
    return check_loss_gradient(loss, y_true, y_pred, entries=entries, seed=seed)


def check_loss_gradient(loss: Any, y_true: Any, y_pred: Any, entries: int = 12, seed: int = 0) -> GradientCheck:
    """The gradient of the mean of ``loss(y_true, y_pred)`` with respect to ``y_pred``, tape against
    central finite differences, at ``entries`` entries of ``y_pred`` drawn with ``seed``.

    In float64 (step 1e-6), where a correct gradient agrees to about 1e-8; a loss that cannot run in
    float64 (a float32 constant inside it) is checked in float32 with a larger step and tolerance. A
    loss that is flat under small steps but moves under a large one is piecewise constant (``tf.round``,
    ``argmax``): its gradient is zero almost everywhere, and it fails too.
    """
    resolved = _resolve_loss(loss)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_pred.ndim == 0 or y_pred.size == 0 or len(y_true) != len(y_pred):
        raise ValueError(
            f"y_true has {len(y_true) if y_true.ndim else 0} rows and y_pred {len(y_pred) if y_pred.ndim else 0}: "
            "give one prediction row per target row (for example y_pred = model.predict(x[:64]))."
        )
    if not np.isfinite(y_pred).all():
        raise ValueError("y_pred holds NaN or infinite values: check the gradient at finite predictions.")
    rng = np.random.default_rng(seed)
    picked = rng.choice(y_pred.size, size=min(int(entries), y_pred.size), replace=False)
    places = [np.unravel_index(int(i), y_pred.shape) for i in picked]
    # float64 first; a loss with a float32 constant inside cannot mix it with float64 predictions.
    dtype, tolerance = "float64", LOSS_GRADIENT_TOLERANCE
    try:
        with _KerasWarnings():
            measured = _loss_gradient_entries(resolved, y_true, y_pred, places, dtype, 1e-6)
    except (TypeError, ValueError, tf.errors.InvalidArgumentError):
        dtype, tolerance = "float32", LOSS_GRADIENT_TOLERANCE_FLOAT32
        with _KerasWarnings():
            measured = _loss_gradient_entries(resolved, y_true, y_pred, places, dtype, 1e-2)
    tape, finite, coarse, big_move = measured
    labels = ["y_pred[" + ", ".join(str(int(i)) for i in place) + "]" for place in places]
    return _verdict(
        resolved.name,
        "loss function",
        dtype,
        tolerance,
        labels,
        tape,
        finite,
        coarse,
        big_move,
        what="y_pred",
    )


def _loss_gradient_entries(
    loss: _Loss, y_true: np.ndarray, y_pred: np.ndarray, places: list[tuple], dtype: str, step: float
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, float]:
    """The tape's gradient at ``places`` (None when it finds no path), finite differences with ``step``
    and with ``10 * step`` (a kink makes them disagree), and the largest change of the loss when each
    entry moves by a tenth of the predictions' spread (a piecewise-constant loss moves only then)."""
    truth = tf.constant(y_true.astype(dtype) if np.issubdtype(y_true.dtype, np.floating) else y_true)
    base = y_pred.astype(dtype)
    point = tf.Variable(base)
    with tf.GradientTape() as tape:
        value = loss.mean(truth, point)
    if value.dtype != tf.as_dtype(dtype):
        raise TypeError(f"the loss returns {value.dtype.name} for {dtype} predictions")
    gradient = tape.gradient(value, point)
    tape_values = None if gradient is None else np.array([np.asarray(gradient)[place] for place in places])

    def loss_at(place: tuple, offset: float) -> float:
        moved = base.copy()
        moved[place] += offset
        return float(loss.mean(truth, tf.constant(moved)))

    def difference(place: tuple, h: float) -> float:
        return (loss_at(place, h) - loss_at(place, -h)) / (2 * h)

    scale = [max(1.0, abs(float(base[place]))) for place in places]
    finite = np.array([difference(place, step * s) for place, s in zip(places, scale)])
    coarse = np.array([difference(place, 10 * step * s) for place, s in zip(places, scale)])
    spread = max(float(np.std(base)), 1e-3)
    reference = float(value)
    big_move = max(abs(loss_at(place, sign * 0.1 * spread) - reference) for place in places for sign in (1, -1))
    return tape_values, finite, coarse, big_move


def check_model_gradient(model: keras.Model, x: Any, y: Any, loss: Any, rows: int = 64, seed: int = 0) -> GradientCheck:
    """The derivative of the model's mean loss on ``rows`` rows (drawn with ``seed``), in inference mode,
    along one direction per trainable weight: the tape's answer against central finite differences.

    The direction is that weight's own gradient, where a wrong gradient shows most (a random direction
    in n numbers sees a derivative about √n times smaller). The check runs on a float64 clone of the
    model, where finite differences agree with a correct gradient to about 1e-7; a model that cannot be
    cloned in float64 (a layer with float32 constants inside, a subclass without ``get_config``) is
    checked in float32 on its own weights, each put back bit for bit, with a looser tolerance and the
    weights whose loss change float32 cannot resolve left out. A weight the tape gives no gradient is
    moved in a random direction: if the loss changes, the tape misses a path (``tf.stop_gradient``,
    ``tf.round``, a cast).
    """
    problem = _prepare(model, x, y, loss)
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(problem.x), size=min(int(rows), len(problem.x)), replace=False))
    precision = "float64"
    try:
        working = _working_copy(model, problem.x, dtype="float64")
        x_rows, y_rows = _rows_as(problem, picked, "float64")
        with _KerasWarnings():
            if problem.loss.mean(y_rows, working(x_rows, training=False)).dtype != tf.float64:
                raise TypeError("the loss does not return float64")
    except (TypeError, ValueError, tf.errors.InvalidArgumentError):
        # Checked in place: every weight moved is put back from a copy of its exact value.
        precision = "float32"
        working = model if model.built else _working_copy(model, problem.x)
        x_rows, y_rows = _rows_as(problem, picked, "float32")
    variables = list(working.trainable_variables)
    tolerance = MODEL_GRADIENT_TOLERANCE if precision == "float64" else MODEL_GRADIENT_TOLERANCE_FLOAT32
    if not variables:
        return GradientCheck(
            False,
            "The model has no trainable weights to check: every layer is frozen.",
            problem.loss.name,
            "model weights",
            precision,
            0,
            math.nan,
            "",
            tolerance,
            (),
            (),
        )
    with _KerasWarnings():
        with tf.GradientTape() as tape:
            value = problem.loss.mean(y_rows, working(x_rows, training=False))
        gradients = tape.gradient(value, variables)
        base_loss = float(value)
        # The smallest change of the loss the arithmetic resolves (a few roundings of a mean of rows).
        resolution = 1e-12 * max(abs(base_loss), 1.0) if precision == "float64" else 1e-5 * max(abs(base_loss), 1e-6)

        def loss_with(variable: tf.Variable, new_value: np.ndarray) -> float:
            original = variable.numpy()
            variable.assign(new_value)
            try:
                return float(problem.loss.mean(y_rows, working(x_rows, training=False)))
            finally:
                variable.assign(original)

        labels, tape_values, finite, coarse, unresolved, moves = [], [], [], [], [], []
        for variable, gradient in zip(variables, gradients):
            labels.append(variable.path)
            g = None if gradient is None else np.asarray(gradient, dtype="float64")
            norm = 0.0 if g is None else float(np.linalg.norm(g))
            if norm > 0:
                direction = g / norm
            else:
                direction = rng.standard_normal(variable.shape)
                direction /= max(float(np.linalg.norm(direction)), 1e-12)
            weights = variable.numpy().astype("float64")
            step = (1e-6 if precision == "float64" else 1e-3) * max(float(np.linalg.norm(weights)), 1e-2)
            fine_tape, fine_finite, change = _directional(loss_with, variable, weights, direction, g, step)
            _, coarse_finite, _ = _directional(loss_with, variable, weights, direction, g, 4 * step)
            tape_values.append(None if g is None else fine_tape)
            finite.append(fine_finite)
            coarse.append(coarse_finite)
            moves.append(change)
            unresolved.append(g is not None and change < 100 * resolution)
    no_gradient = tuple(label for label, value in zip(labels, tape_values) if value is None)
    tape_array = np.array([0.0 if v is None else v for v in tape_values])
    return _verdict(
        problem.loss.name,
        "model weights",
        precision,
        tolerance,
        labels,
        None if len(no_gradient) == len(labels) else tape_array,
        np.array(finite),
        np.array(coarse),
        max(moves) if moves else 0.0,
        what="the weights",
        no_gradient=no_gradient,
        noise=resolution,
        unresolved=np.array(unresolved, dtype=bool),
    )


def _rows_as(problem: _Problem, picked: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    def as_float(array: np.ndarray) -> np.ndarray:
        return array.astype(dtype) if np.issubdtype(array.dtype, np.floating) else array

    return as_float(problem.x[picked]), as_float(problem.y[picked])


def _directional(
    loss_with: Callable[[tf.Variable, np.ndarray], float],
    variable: tf.Variable,
    weights: np.ndarray,
    direction: np.ndarray,
    gradient: np.ndarray | None,
    step: float,
) -> tuple[float, float, float]:
    """The tape's and the finite difference's derivative along ``direction``, and the loss change.

    Both use the weights as actually stored (float32 rounds ``w + step * direction``), so rounding the
    weights costs no accuracy: the tape's answer is the gradient times the step really taken."""
    dtype = variable.dtype
    plus = (weights + step * direction).astype(dtype)
    minus = (weights - step * direction).astype(dtype)
    taken = plus.astype("float64") - minus.astype("float64")
    change = loss_with(variable, plus) - loss_with(variable, minus)
    tape = 0.0 if gradient is None else float(np.sum(gradient * taken)) / (2 * step)
    return tape, change / (2 * step), abs(change)


def _verdict(
    loss_name: str,
    target: str,
    precision: str,
    tolerance: float,
    labels: list[str],
    tape: np.ndarray | None,
    finite: np.ndarray,
    coarse: np.ndarray,
    big_move: float,
    what: str,
    no_gradient: tuple[str, ...] = (),
    noise: float | None = None,
    unresolved: np.ndarray | None = None,
) -> GradientCheck:
    """Relative errors, the worst place, and a message that says what the numbers mean."""
    scale = float(max(np.max(np.abs(finite)), 0.0 if tape is None else np.max(np.abs(tape)), 0.0))
    floor = max(1e-3 * scale, 1e-12)  # entries a thousand times smaller than the largest count as zero
    if tape is None:
        tape_values = np.zeros_like(finite)
        no_gradient = no_gradient or tuple(labels)
    else:
        tape_values = tape
    errors = np.abs(tape_values - finite) / np.maximum(np.maximum(np.abs(tape_values), np.abs(finite)), floor)
    # At a kink (relu, abs, a clip) the difference changes with the step; such places are not counted.
    kinks = np.abs(finite - coarse) > 0.1 * np.maximum(np.abs(finite), floor)
    if unresolved is not None:
        kinks |= unresolved  # float32 cannot see the loss change: no verdict there
    counted = np.where(kinks, 0.0, errors)
    worst = int(np.argmax(counted)) if len(counted) else 0
    pairs = tuple((label, float(e)) for label, e in zip(labels, errors))

    def result(passed: bool, message: str) -> GradientCheck:
        return GradientCheck(
            passed,
            message,
            loss_name,
            target,
            precision,
            len(labels),
            float(counted.max()) if len(counted) else 0.0,
            labels[worst] if labels else "",
            tolerance,
            tuple(no_gradient),
            pairs,
        )

    where = f"{len(labels)} {'entries of y_pred' if target == 'loss function' else 'trainable weights'}"
    flat = scale <= (noise if noise is not None else 1e-12)
    if tape is None:
        moves = big_move > (noise if noise is not None else 1e-9)
        return result(
            False,
            f"The tape finds no gradient from {loss_name} to {what} (None){' although the loss changes when they move' if moves else ''}: "
            "something between them is not differentiable, so Keras reports 'Gradients do not exist' and no "
            "weight trains. Look for tf.round, tf.floor, argmax, a cast to an integer type, a comparison or "
            "tf.stop_gradient in the loss or the model, and write it with smooth ops (a sigmoid or softmax "
            "instead of a rounding or an argmax).",
        )
    if flat and not np.any(np.abs(tape_values) > floor):
        if big_move > 1e-9:
            return result(
                False,
                f"The gradient of {loss_name} is 0 at all {where}, and finite differences agree, yet the loss "
                f"changes (by {big_move:.3g}) when {what} move further: the loss is piecewise constant (tf.round, "
                "argmax, a comparison, a cast), so its gradient is zero almost everywhere and Adam has nothing to "
                "follow. Write it with smooth ops.",
            )
        return result(
            False,
            f"{loss_name} does not change at all when {what} move: it does not depend on them. Check that the "
            "loss reads y_pred.",
        )
    if no_gradient:
        counted = np.where(np.isin(labels, no_gradient), 0.0, counted)
        worst = int(np.argmax(counted))
    bad = counted > tolerance
    details = f"largest relative error {counted.max():.1e} at {labels[worst]} (tolerance {tolerance:g}, {precision})"
    skipped = (
        f"; {int(kinks.sum())} places at a kink (or, in float32, too flat to resolve) were not counted"
        if kinks.any()
        else ""
    )
    if no_gradient:
        return result(
            False,
            f"{len(no_gradient)} of {len(labels)} trainable weights get no gradient (None): "
            f"{', '.join(no_gradient[:4])}{', …' if len(no_gradient) > 4 else ''}. A tf.stop_gradient, a "
            "non-differentiable op or a branch the output does not use cuts them off (unless they are meant to "
            f"stay fixed: then freeze them with trainable = False). The other weights: {details}.",
        )
    if not bad.any():
        return result(
            True,
            f"The tape's gradient of {loss_name} matches central finite differences at {where}: {details}{skipped}.",
        )
    ratios = tape_values[bad] / np.where(np.abs(finite[bad]) > floor, finite[bad], np.nan)
    ratio = float(np.nanmedian(ratios)) if np.isfinite(ratios).any() else math.nan
    if math.isfinite(ratio) and abs(ratio + 1) < 0.05:
        meaning = "the tape's gradient has the wrong sign: Adam climbs the loss instead of descending it"
    elif math.isfinite(ratio) and abs(ratio) < 0.05:
        meaning = "the tape's gradient is (nearly) zero where the loss does change"
    elif math.isfinite(ratio):
        meaning = f"the tape's gradient is {ratio:.3g} times the true one"
    else:
        meaning = "the tape reports a gradient where the loss does not change"
    return result(
        False,
        f"The tape's gradient of {loss_name} disagrees with finite differences at {int(bad.sum())} of {where}: "
        f"{details}; {meaning}. Look for a hand-written gradient (tf.custom_gradient) with a wrong sign or factor, "
        f"a tf.stop_gradient on part of the loss, or a straight-through trick{skipped}.",
    )


# All of them ----------------------------------------------------------------------------------------------


def run_checks(
    model: keras.Model,
    x: Any,
    y: Any,
    loss: Any,
    batch_size: int = 32,
    steps: int = 300,
    learning_rate: float = 3e-3,
    seed: int = 0,
    on_overfit_step: Callable[[int, float], None] | None = None,
) -> ChecksReport:
    """The initial loss, the gradient through the model's weights (and, for a custom loss, of the loss
    function itself), then overfitting one batch: ``print(run_checks(model, x, y, loss))``.
    ``on_overfit_step`` is the overfit check's ``on_step``.

    Call it on the fresh model, before training. The caller's model is not changed.
    """
    problem = _prepare(model, x, y, loss)
    results: list[CheckResult] = [check_initial_loss(model, problem.x, problem.y, loss)]
    if not problem.loss.builtin:
        rows = np.random.default_rng(seed).choice(len(problem.x), size=min(64, len(problem.x)), replace=False)
        reader = model if model.built else _working_copy(model, problem.x)
        predictions = np.asarray(reader(problem.x[np.sort(rows)], training=False))
        results.append(check_loss_gradient(loss, problem.y[np.sort(rows)], predictions, seed=seed))
    results.append(check_model_gradient(model, problem.x, problem.y, loss, seed=seed))
    results.append(
        check_overfits_one_batch(
            model,
            problem.x,
            problem.y,
            loss,
            batch_size=batch_size,
            steps=steps,
            learning_rate=learning_rate,
            seed=seed,
            on_step=on_overfit_step,
        )
    )
    return ChecksReport(tuple(results))
