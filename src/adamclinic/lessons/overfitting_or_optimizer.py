"""Lesson 06's tools: telling a failure to minimize apart from overfitting, and the remedies for overfitting.

Overfitting is not the optimizer failing: the *training* loss goes down fine while the *validation*
loss turns up. The knobs here change what is being minimized, or on how much data, never Adam itself:

- ``classifier(width, dropout, coupled_l2)``: a cached builder for a 64-input, 10-class ReLU net (one
  builder object per setting, so the engine compiles each architecture once and reuses it);
- ``digits_subset(rows)``: the first ``rows`` training digits with the *same* 357 validation digits,
  so runs on different data sizes are judged on one yardstick;
- coupled L2 regularization, realised honestly. The engine's loss is ``loss_fn(y, pred)`` only: it does
  not add ``model.losses``, so a Keras ``kernel_regularizer`` would be silently ignored. Instead the
  layers of a ``coupled_l2=True`` builder pass every weight through a gradient hook that adds
  ``l2 * w`` to its gradient before Adam sees it: exactly the gradient of ``loss + l2/2 * ||w||²``,
  the "L2 regularization inside Adam" that Loshchilov and Hutter compare with AdamW's decoupled
  decay. The reported training loss stays the data loss, so curves stay comparable;
- ``run_with_adam_scale``: a run plus, for every weight, the number Adam divided its last gradient by
  (``sqrt(v_hat) + eps_hat``). Coupled L2's ``l2 * w`` is divided by it too, so the AdamW decay that
  does the same to a weight is ``l2 / (sqrt(v_hat) + eps_hat)``: set by the gradients, not the learning rate;
- early stopping on the validation loss, through ``run``'s ``on_epoch`` and ``cancel``;
- ``RegularizedConfig``: a ``TrainConfig`` with the L2 strength and the patience, and a legend label
  that names the model and the data size; ``run_regularized`` trains it;
- panel factories that retrain live, each drawing validation dashed beside training;
- ``FIGURE`` and ``figure_curves``: the picture that opens the lesson (``make figures``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

import ipywidgets as w
import keras
import numpy as np
import tensorflow as tf

from adamclinic.data import digits
from adamclinic.engine import Dataset, EpochMetrics, History, TrainConfig, run
from adamclinic.panels import TrainingPanel, log_slider, selection_slider

CHANCE_LOSS = math.log(10.0)  # cross-entropy of guessing 1/10 for each digit: about 2.303
WIDTHS = (8, 16, 32, 64, 128, 256, 512)
ROWS = (64, 128, 256, 512, 1024, 1440)  # multiples of the batch size 32
WEIGHT_DECAY_KINDS = ("none", "L2 in Adam (coupled)", "AdamW (decoupled)")

# The coupled-L2 strength. A module-level variable, not a layer attribute: Keras would track a layer
# attribute as a weight, and the engine resets weights to their initial values before every run.
_l2_strength = tf.Variable(0.0, trainable=False, dtype=tf.float32, name="coupled_l2_strength")
_l2_lock = threading.RLock()


@tf.custom_gradient
def _add_l2_to_gradient(weight, strength):
    """Identity going forward; going back, the gradient gains ``strength * weight``."""

    def grad(upstream):
        return upstream + strength * weight, tf.zeros_like(strength)

    return tf.identity(weight), grad


class CoupledL2Dense(keras.layers.Dense):
    """A Dense layer whose kernel and bias gradients include coupled L2 (see the module docstring)."""

    def call(self, inputs):
        strength = tf.convert_to_tensor(_l2_strength)
        kernel = _add_l2_to_gradient(self.kernel, strength)
        outputs = tf.matmul(inputs, kernel)
        if self.use_bias:
            outputs = outputs + _add_l2_to_gradient(self.bias, strength)
        return self.activation(outputs) if self.activation is not None else outputs


class SeededDropout(keras.layers.Layer):
    """Dropout whose masks replay exactly: same seed, same masks, however many runs came before.

    Keras's ``Dropout`` draws from a seed generator whose state the engine does not reset between
    runs (it resets the weights), so a second run of the same config would differ. Here the random
    stream is a weight: a non-trainable ``[stream, counter]`` pair, drawn when the layer is built
    (under the run's seed) and restored with the other weights before every run.
    """

    def __init__(self, rate: float, **kwargs: Any):
        super().__init__(**kwargs)
        self.rate = float(rate)

    def build(self, input_shape):
        stream = int(np.random.randint(0, 2**31 - 1))
        self.state = self.add_weight(
            shape=(2,),
            dtype="int32",
            trainable=False,
            name="dropout_stream",
            initializer=keras.initializers.Constant([stream, 0]),
        )

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        state = tf.convert_to_tensor(self.state)
        self.state.assign(state + tf.constant([0, 1], dtype="int32"))
        keep = tf.random.stateless_uniform(tf.shape(inputs), seed=state) >= self.rate
        return tf.where(keep, inputs / (1.0 - self.rate), tf.zeros_like(inputs))


@cache
def classifier(width: int = 256, dropout: float = 0.0, coupled_l2: bool = False) -> Callable[[], keras.Model]:
    """A builder for 64 → width → width → 10 (ReLU, softmax), with optional dropout and coupled L2.

    Cached: the same arguments give the same builder object, which the engine uses as its cache key.
    """
    dense = CoupledL2Dense if coupled_l2 else keras.layers.Dense
    name = f"{width}x2 net" + (f", dropout {dropout:g}" if dropout else "")

    def build() -> keras.Model:
        layers: list[Any] = [keras.Input((64,))]
        for _ in range(2):
            layers.append(dense(width, activation="relu"))
            if dropout:
                layers.append(SeededDropout(dropout))
        layers.append(dense(10, activation="softmax"))
        return keras.Sequential(layers, name=f"classifier_{width}")

    build.__name__ = build.__qualname__ = name
    build.width, build.dropout, build.coupled_l2 = width, dropout, coupled_l2  # type: ignore[attr-defined]
    return build


@cache
def digits_subset(rows: int = 256) -> Dataset:
    """The first ``rows`` of the 1440 training digits; always the same 357 validation digits."""
    full = digits()
    if not 1 <= rows <= len(full.x_train):
        raise ValueError(f"rows must be between 1 and {len(full.x_train)}; got {rows}.")
    return Dataset(full.x_train[:rows], full.y_train[:rows], full.x_val, full.y_val, name=f"{rows} digits")


@dataclass(frozen=True)
class RegularizedConfig(TrainConfig):
    """A ``TrainConfig`` plus coupled L2 strength ``l2`` and early-stopping ``patience`` (None: off).

    ``l2`` needs a builder made with ``classifier(..., coupled_l2=True)``; train with ``run_regularized``.
    """

    l2: float = 0.0
    patience: int | None = None

    def label(self) -> str:
        parts = [getattr(self.build_model, "__name__", "model"), self.data.name, super().label()]
        if self.l2:
            parts.append(f"L2={self.l2:g}")
        if self.patience is not None:
            parts.append(f"patience {self.patience}")
        return ", ".join(parts)


class _EitherEvent:
    """Set when either of two events is set (the panel's cancel, or early stopping's)."""

    def __init__(self, *events: threading.Event | None):
        self.events = [e for e in events if e is not None]

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)


def run_regularized(
    config: TrainConfig, cancel: threading.Event | None = None, on_epoch: Callable[[EpochMetrics], None] | None = None
) -> History:
    """``adamclinic.engine.training.run`` with coupled L2 and early stopping from a ``RegularizedConfig``.

    Early stopping watches the validation loss and stops once it has not improved for ``patience``
    epochs. The engine keeps the last weights, not the best; ``best_epoch(history)`` says where the
    best ones were. A run stopped by patience is not marked ``cancelled``.
    """
    l2 = float(getattr(config, "l2", 0.0))
    patience = getattr(config, "patience", None)
    if l2 < 0:
        raise ValueError(f"l2 must be 0 or positive; got {l2}.")
    if l2 and not getattr(config.build_model, "coupled_l2", False):
        raise ValueError("l2 needs a model built with classifier(..., coupled_l2=True).")
    if patience is not None and (patience < 1 or config.data.x_val is None):
        raise ValueError("Early stopping needs patience >= 1 and validation data.")
    stop = threading.Event()
    best = {"loss": math.inf, "epoch": 0}

    def watch(metrics: EpochMetrics) -> None:
        if on_epoch is not None:
            on_epoch(metrics)
        if patience is None or metrics.val_loss is None:
            return
        if metrics.val_loss < best["loss"]:
            best.update(loss=metrics.val_loss, epoch=metrics.epoch)
        elif metrics.epoch - best["epoch"] >= patience:
            stop.set()

    with _l2_lock:  # one strength at a time: runs from two panels must not mix their settings
        _l2_strength.assign(l2)
        history = run(config, cancel=_EitherEvent(cancel, stop), on_epoch=watch)
    history.cancelled = cancel is not None and cancel.is_set() and len(history.epochs) < config.epochs
    return history


def run_with_adam_scale(config: TrainConfig) -> tuple[History, np.ndarray]:
    """``run_regularized(config)`` and, for every weight (kernels and biases, flattened), ``sqrt(v_hat) + eps_hat``
    at the end of the run: the number Adam's last step divided that weight's gradient by.

    Keras's Adam keeps ``v`` without its bias correction; here ``v_hat = v / (1 - beta_2**t)`` and
    ``eps_hat = epsilon / sqrt(1 - beta_2**t)``, so that the step is ``lr * m_hat / (sqrt(v_hat) + eps_hat)``.
    Coupled L2's part of that step is ``lr * l2 * w / (sqrt(v_hat) + eps_hat)``; AdamW's decay is ``lr * wd * w``.
    The run is the same as ``run_regularized``'s (same seed, same numbers).
    """
    # The engine's compiled trainer for this config, the one ``run`` trains with; its optimizer still holds
    # the run's final state until the next run starts, so both locks are held from the run to the reading
    # (in ``run_regularized``'s order: the L2 strength first, then the trainer).
    from adamclinic.engine.training import _trainer_for

    steps = len(config.data.x_train) // config.batch_size
    if steps < 1:  # the engine refuses the batch size, with its own message
        return run_regularized(config), np.array([])
    trainer = _trainer_for(config, steps)
    with _l2_lock, trainer.lock:
        history = run_regularized(config)
        optimizer = trainer.optimizer
        t = float(optimizer.iterations.numpy())
        if t == 0:
            return history, np.array([])
        correction = math.sqrt(1.0 - float(optimizer.beta_2.numpy()) ** t)
        epsilon = float(optimizer.epsilon.numpy())
        v = np.concatenate([np.asarray(velocity).ravel() for velocity in optimizer._velocities])
    return history, (np.sqrt(v) + epsilon) / correction


def adam_scale_summary(scale: np.ndarray, l2: float | None = None) -> dict[str, float]:
    """Percentiles of ``sqrt(v_hat) + eps_hat`` over the weights (from ``run_with_adam_scale``).

    With ``l2``, also ``l2`` over the median: the AdamW ``weight_decay`` that would shrink the median
    weight as coupled L2 of strength ``l2`` does, per step.
    """
    low, median, high = np.percentile(scale, [10, 50, 90])
    summary = {"10th percentile": float(low), "median": float(median), "90th percentile": float(high)}
    if l2 is not None:
        summary["l2 / median"] = float(l2 / median)
    return summary


def best_epoch(history: History) -> int:
    """The epoch (1-based) with the lowest validation loss."""
    return int(np.nanargmin(history.val_loss)) + 1


def generalization_gap(history: History) -> float:
    """Final validation loss minus final training loss: near 0 when the model generalizes."""
    return float(history.val_loss[-1] - history.loss[-1])


def weight_norm(history: History) -> float:
    """The global L2 norm of all the final weights (kernels and biases)."""
    return float(np.sqrt(sum(float(np.sum(np.square(v))) for v in history.final_weights)))


def _as_regularized(base: TrainConfig, **changes: Any) -> RegularizedConfig:
    """``base`` (any ``TrainConfig``) as a ``RegularizedConfig``, with ``changes`` applied."""
    if isinstance(base, RegularizedConfig):
        return replace(base, **changes)
    fields = {name: getattr(base, name) for name in TrainConfig.__dataclass_fields__}
    return RegularizedConfig(**{**fields, **changes})


def weight_decay_config(base: TrainConfig, kind: str, strength: float) -> RegularizedConfig:
    """``base`` with no decay, coupled L2 in Adam, or AdamW's decoupled decay, at one nominal strength.

    Equal nominal strength means: coupled L2 adds ``strength * w`` to the gradient (before Adam's
    scaling); AdamW subtracts ``lr * strength * w`` from the weight (after it), as Keras's AdamW does.
    Both act on every weight and bias. With plain SGD the two would be the same update.
    """
    width, dropout = base.build_model.width, base.build_model.dropout
    plain = dict(build_model=classifier(width, dropout), l2=0.0, weight_decay=0.0, optimizer="adam")
    if kind == "none":
        return _as_regularized(base, **plain)
    if kind == "L2 in Adam (coupled)":
        return _as_regularized(base, **{**plain, "build_model": classifier(width, dropout, True), "l2": strength})
    if kind == "AdamW (decoupled)":
        return _as_regularized(base, **{**plain, "optimizer": "adamw", "weight_decay": strength})
    raise ValueError(f"Unknown kind {kind!r}; choose one of: {', '.join(WEIGHT_DECAY_KINDS)}.")


def capacity_config(base: TrainConfig, width: int, rows: int) -> RegularizedConfig:
    """``base`` with a ``width``x2 net trained on the first ``rows`` digits (same validation digits)."""
    dropout = getattr(base.build_model, "dropout", 0.0)
    return _as_regularized(base, build_model=classifier(int(width), dropout), data=digits_subset(int(rows)))


def dropout_config(base: TrainConfig, rate: float) -> RegularizedConfig:
    """``base`` with dropout ``rate`` after each hidden layer (0: none)."""
    return _as_regularized(base, build_model=classifier(base.build_model.width, round(float(rate), 2)))


def early_stopping_config(base: TrainConfig, patience: int | None) -> RegularizedConfig:
    """``base`` stopped once the validation loss has not improved for ``patience`` epochs (None: off)."""
    return _as_regularized(base, patience=None if patience is None else int(patience))


def curve_summary(history: History) -> dict[str, float]:
    """The numbers to read off the two curves: how far training fell, where validation bottomed out.

    ``val_rise`` is how far the last validation loss sits above its best: near 0 while the model
    still generalizes better with every epoch, large once it is memorizing the training rows.
    """
    best = best_epoch(history)
    return {
        "first train loss": float(history.loss[0]),
        "final train loss": history.final_loss,
        "best val loss": float(history.val_loss[best - 1]),
        "best epoch": best,
        "final val loss": float(history.val_loss[-1]),
        "val_rise": float(history.val_loss[-1] - history.val_loss[best - 1]),
        "final val accuracy": float(history.val_accuracy[-1]),
    }


class ValidationPanel(TrainingPanel):
    """A ``TrainingPanel`` that draws validation dashed, trains with ``run_regularized`` and reports
    the best validation epoch in its status line."""

    def __init__(
        self,
        base: TrainConfig,
        controls: dict[str, w.ValueWidget],
        make_config: Callable[[TrainConfig, dict[str, Any]], TrainConfig] | None = None,
        **panel_options: Any,
    ):
        panel_options.setdefault("title", "Training (solid) and validation (dashed) loss")
        super().__init__(
            _as_regularized(base),
            controls,
            make_config=make_config,
            train_fn=run_regularized,
            show_validation=True,
            **panel_options,
        )

    @staticmethod
    def _verdict(history: History) -> str:
        verdict = TrainingPanel._verdict(history)
        if history.diverged or not history.epochs or np.all(np.isnan(history.val_loss)):
            return verdict
        s = curve_summary(history)
        stopped = len(history.epochs) < history.config.epochs and not history.cancelled
        return (
            verdict + f"; validation best {s['best val loss']:.3g} at epoch {s['best epoch']}, "
            f"last {s['final val loss']:.3g}" + (" (early stopping)" if stopped else "")
        )


def learning_rate_validation_panel(base: TrainConfig, **panel_options: Any) -> ValidationPanel:
    """A learning-rate slider with both curves: a rate that fails to minimize versus one that overfits."""
    slider = log_slider("learning_rate", float(base.learning_rate), 1e-5, 1.0, description="learning rate")
    return ValidationPanel(base, {"learning_rate": slider}, **panel_options)


def capacity_panel(base: TrainConfig, **panel_options: Any) -> ValidationPanel:
    """Model-size and data-size sliders (training rows in multiples of the batch size 32)."""
    controls = {
        "width": selection_slider(WIDTHS, base.build_model.width, "units per hidden layer"),
        "rows": selection_slider(ROWS, len(base.data.x_train), "training rows"),
    }
    return ValidationPanel(
        base, controls, make_config=lambda b, v: capacity_config(b, v["width"], v["rows"]), **panel_options
    )


def weight_decay_panel(
    base: TrainConfig, kind: str = "AdamW (decoupled)", strength: float = 1.0, **panel_options: Any
) -> ValidationPanel:
    """Coupled L2 inside Adam versus AdamW's decoupled decay, at one nominal strength."""
    controls = {
        "kind": w.ToggleButtons(options=list(WEIGHT_DECAY_KINDS), value=kind, description="decay"),
        "strength": log_slider("strength", strength, 1e-5, 10.0, description="strength (L2 λ or AdamW wd)"),
    }
    return ValidationPanel(
        base, controls, make_config=lambda b, v: weight_decay_config(b, v["kind"], v["strength"]), **panel_options
    )


def dropout_panel(base: TrainConfig, rate: float = 0.5, **panel_options: Any) -> ValidationPanel:
    """A dropout-rate slider (0 to 0.8)."""
    slider = w.FloatSlider(
        value=rate,
        min=0.0,
        max=0.8,
        step=0.1,
        description="dropout rate",
        continuous_update=False,
        style={"description_width": "initial"},
    )
    return ValidationPanel(
        base, {"rate": slider}, make_config=lambda b, v: dropout_config(b, v["rate"]), **panel_options
    )


def early_stopping_panel(base: TrainConfig, patience: int = 10, **panel_options: Any) -> ValidationPanel:
    """A patience slider: stop once the validation loss has not improved for that many epochs."""
    slider = w.IntSlider(
        value=patience,
        min=1,
        max=50,
        description="patience (epochs)",
        continuous_update=False,
        style={"description_width": "initial"},
    )
    return ValidationPanel(
        base, {"patience": slider}, make_config=lambda b, v: early_stopping_config(b, v["patience"]), **panel_options
    )


# --------------------------------------------------------------------------------------------------
# Judging helpers for exercise ex06_wrong_objective: they retrain from a configuration and measure,
# never trusting a number the student computed.


def validation_rise(val_loss) -> float:
    """How far the last validation loss sits above the lowest one, as a fraction of the lowest (0.25: 25%)."""
    val = np.asarray(val_loss, dtype=float)
    lowest = float(np.nanmin(val))
    return float(val[-1] / lowest - 1.0)


def retrained(config: TrainConfig, seeds=(0, 1, 2)) -> list[History]:
    """``config`` trained again by ``run_regularized``, once per seed."""
    return [run_regularized(replace(config, seed=int(seed))) for seed in seeds]


def final_train_losses(config: TrainConfig, seeds=(0, 1, 2)) -> np.ndarray:
    """The last epoch's training loss of ``config`` retrained on each seed (``inf`` for a diverged run)."""
    losses = [h.final_loss for h in retrained(config, seeds)]
    return np.asarray([x if math.isfinite(x) else math.inf for x in losses], dtype=float)


def final_val_losses(config: TrainConfig, seeds=(0, 1, 2)) -> np.ndarray:
    """The last epoch's validation loss (the weights a run hands you) of ``config`` retrained on each seed.

    A run that diverged, or whose last validation loss is not finite, reports ``inf``.
    """
    losses = []
    for history in retrained(config, seeds):
        last = float(history.val_loss[-1]) if history.epochs and not history.diverged else math.inf
        losses.append(last if math.isfinite(last) else math.inf)
    return np.asarray(losses, dtype=float)


def fixed_setting_changes(
    candidate: Any,
    reference: TrainConfig,
    keep_epochs: bool = True,
    keep_rows: bool = True,
    keep_learning_rate: bool = False,
) -> list[str]:
    """What ``candidate`` changed among the settings an exercise keeps fixed (empty: nothing).

    Always fixed: the validation digits, the loss, the batch size and the network's width. ``keep_rows``
    also fixes the training rows, ``keep_epochs`` the number of epochs, ``keep_learning_rate`` the rate.
    """
    if not isinstance(candidate, TrainConfig):
        return [f"expected a training configuration (a RegularizedConfig), got {type(candidate).__name__}"]
    changes = []
    data, ref = candidate.data, reference.data
    if data.x_val is None or data.x_val.shape != ref.x_val.shape or not np.array_equal(data.x_val, ref.x_val):
        changes.append("the validation digits (use digits_subset(rows): it always keeps the same 357)")
    elif keep_rows and (data.x_train.shape != ref.x_train.shape or not np.array_equal(data.x_train, ref.x_train)):
        changes.append(f"the training rows (keep the {len(ref.x_train)} given)")
    elif not keep_rows and not np.array_equal(data.x_train, digits().x_train[: len(data.x_train)]):
        changes.append("the training rows (take them from digits_subset(rows))")
    if getattr(candidate.build_model, "width", None) != reference.build_model.width:
        changes.append(f"the network (keep classifier({reference.build_model.width}, ...))")
    for name in ("loss", "batch_size") + (("epochs",) if keep_epochs else ()):
        if getattr(candidate, name) != getattr(reference, name):
            changes.append(f"{name} (keep {getattr(reference, name)!r})")
    if keep_learning_rate and candidate.learning_rate != reference.learning_rate:
        changes.append(f"the learning rate (keep {reference.learning_rate:g})")
    return changes


# --------------------------------------------------------------------------------------------------
# The figure that opens the lesson (adamclinic.figures; make figures NAME=06_overfitting_or_optimizer).

FIGURE = {"title": "Training falls, validation turns up (seed 0)", "y_label": "cross-entropy loss", "log_y": False}


def figure_curves() -> dict[str, np.ndarray]:
    """Section 2's overfitting run (the lesson's base run, lr 1e-3, seed 0): its training and validation loss
    per epoch, beside the loss of guessing (ln 10), where a run that fails to minimize lies."""
    base = RegularizedConfig(
        data=digits_subset(256),
        build_model=classifier(256),
        loss="sparse_categorical_crossentropy",
        learning_rate=1e-3,
        epochs=100,
        batch_size=32,
        seed=0,
    )
    history = run_regularized(base)
    return {
        "training": history.loss,
        "validation": history.val_loss,
        "guessing (ln 10)": np.full(len(history.loss), CHANCE_LOSS),
    }
