"""What the clinic knows about a run: a ``RunRecord`` of plain numbers, and the probes that fill it.

The probes run once when training starts and once when it ends; ``record_from_history`` fills a record
from an engine run, ``ClinicMonitor`` (``adamclinic.clinic.monitor``) from ``model.fit``.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from adamclinic.engine.seeding import seed_everything
from adamclinic.engine.training import History, TrainConfig, learning_rate_table

PROBE_ROWS = 256


# The record -----------------------------------------------------------------------------------------


@dataclass
class RunRecord:
    """Everything the rules read about one run: settings, data statistics, curves and two probes.

    Probes (``initial_*`` and ``final_*``) are measured on the first ``probe_rows`` training rows.
    ``weight_change`` is ‖w_end − w_start‖ / ‖w_start‖ over all weight matrices (kernels) together;
    ``steps`` the optimizer steps taken. ``fit_starts`` lists the epoch indices (0-based) where a new
    ``fit`` began: more than one means the model was trained again, usually after a recompile.
    ``prediction_spread`` is the standard deviation of the final predictions over the target's
    (regression) or the share of probe rows given the most common predicted class (classification).
    ``improper_outputs`` is the share of probe rows whose outputs are not probabilities (a value outside
    [0, 1], or, for several classes, a sum other than 1) although the loss expects probabilities.

    A record read from logs alone (``adamclinic.clinic.logs``) lists in ``unknown`` the fields its source
    could not measure (data statistics, gradients, probes...); those hold ``None`` or an empty list, never
    a stand-in number, and the rules that need them stay silent. ``curves`` keeps the log's other
    per-epoch curves (accuracy, learning rate...) and ``source`` says where the record came from.
    """

    task: str  # "regression", "binary" or "multiclass"
    classes: int
    optimizer: str
    learning_rate: float
    beta_1: float | None
    beta_2: float | None
    rows: int
    nan_rows: int
    feature_scales: list[float]
    target_scale: float
    label_shares: list[float]
    baseline_loss: float
    initial_loss: float
    initial_layer_grads: list[float]
    loss: list[float]
    val_loss: list[float | None]
    fit_starts: list[int]
    steps: int
    weight_change: float
    final_train_mode_loss: float
    final_eval_mode_loss: float
    prediction_spread: float
    epoch_layer_grads: list[list[float]] = field(default_factory=list)
    improper_outputs: float = 0.0
    unknown: list[str] = field(default_factory=list)  # empty: everything was measured
    curves: dict[str, list[float | None]] = field(default_factory=dict)
    source: str = ""

    def knows(self, *names: str) -> bool:
        """Whether every named field was measured (a record from logs lacks the data and the probes)."""
        return not any(name in self.unknown for name in names)

    def to_json(self) -> str:
        return json.dumps(asdict(self), allow_nan=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> RunRecord:
        return cls(**json.loads(text))


# Probes shared by both paths ------------------------------------------------------------------------


def _task(loss_name: str, outputs: int) -> tuple[str, int]:
    if "crossentropy" not in loss_name:
        return "regression", 0
    if outputs == 1:
        return "binary", 2
    return "multiclass", outputs


def _loss_name(loss: Any) -> str:
    if isinstance(loss, str):
        return loss
    return getattr(loss, "name", None) or getattr(loss, "__name__", type(loss).__name__)


def _kernel_indices(model: keras.Model) -> list[int]:
    return [i for i, v in enumerate(model.trainable_variables) if len(v.shape) >= 2]


def _gradient_norms(model: keras.Model, loss_fn: Callable, x, y):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(loss_fn(y, model(x, training=True)))
    grads = tape.gradient(loss, model.trainable_variables)
    return loss, [tf.norm(grads[i]) if grads[i] is not None else tf.constant(0.0) for i in _kernel_indices(model)]


def _layer_grads(
    model: keras.Model, loss_fn: Callable, x: np.ndarray, y: np.ndarray, compiled: Callable | None = None
) -> tuple[float, list[float]]:
    """The training-mode loss on ``x`` and each weight matrix's gradient norm, first layer first.

    Training mode updates batch-norm statistics; they are put back, so probing never changes the model.
    ``compiled`` is a traced ``_gradient_norms`` for a model that is probed again and again.
    """
    saved = [v.numpy() for v in model.non_trainable_variables]
    loss, norms = (compiled or functools.partial(_gradient_norms, model, loss_fn))(x, y)
    for variable, value in zip(model.non_trainable_variables, saved):
        variable.assign(value)
    return float(loss), [float(n) for n in norms]


def _baseline(task: str, loss_fn: Callable, y: np.ndarray, classes: int) -> tuple[float, list[float]]:
    """The loss of the best constant prediction (the mean, or the label shares) and the label shares."""
    if task == "regression":
        constant = np.broadcast_to(np.nanmean(y, axis=0), y.shape).astype("float32")
        return float(tf.reduce_mean(loss_fn(y, constant))), []
    labels = y.reshape(len(y), -1)
    labels = labels.argmax(axis=1) if labels.shape[1] > 1 else labels[:, 0]
    shares = np.bincount(labels.astype(int), minlength=classes)[:classes] / len(labels)
    # The entropy of the label shares: what a net that learned only the class frequencies scores.
    entropy = float(-sum(p * math.log(p) for p in shares if p > 0))
    return entropy, [float(s) for s in shares]


def _data_statistics(x: np.ndarray, y: np.ndarray, task: str) -> dict[str, Any]:
    x = np.asarray(x, dtype="float64")
    nan_rows = int((~np.isfinite(x)).any(axis=tuple(range(1, x.ndim))).sum())
    flat = x.reshape(len(x), -1)
    with np.errstate(all="ignore"):
        # The typical size of each column: its root mean square, so a big offset counts like a big spread.
        scales = np.sqrt(np.nanmean(np.where(np.isfinite(flat), flat, np.nan) ** 2, axis=0))
    target_scale = float(np.sqrt(np.nanmean(np.asarray(y, dtype="float64") ** 2))) if task == "regression" else 1.0
    return {
        "rows": len(x),
        "nan_rows": nan_rows,
        "feature_scales": [float(s) for s in np.nan_to_num(scales, nan=0.0)],
        "target_scale": target_scale,
    }


def _final_probe(
    model: keras.Model, loss_fn: Callable, x: np.ndarray, y: np.ndarray, task: str, forward: Callable | None = None
) -> dict[str, Any]:
    """The loss on ``x`` in training mode and in inference mode, and how varied the predictions are."""
    forward = forward or model
    saved = [v.numpy() for v in model.non_trainable_variables]
    train_mode_loss = float(tf.reduce_mean(loss_fn(y, forward(x, training=True))))
    for variable, value in zip(model.non_trainable_variables, saved):
        variable.assign(value)  # training mode moved the batch-norm statistics: put them back
    predictions = np.asarray(forward(x, training=False))
    eval_mode_loss = float(tf.reduce_mean(loss_fn(y, predictions)))
    with np.errstate(all="ignore"):
        if task == "regression":
            spread = float(np.std(predictions) / max(np.std(y), 1e-12))
        else:
            predicted = (predictions[:, 0] > 0.5).astype(int) if task == "binary" else predictions.argmax(axis=1)
            spread = float(np.bincount(predicted).max() / len(predicted))
    improper = 0.0
    from_logits = getattr(loss_fn, "from_logits", None) or getattr(loss_fn, "_fn_kwargs", {}).get("from_logits")
    if task != "regression" and not from_logits:
        outside = ((predictions < -1e-3) | (predictions > 1 + 1e-3)).any(axis=1)
        if task == "multiclass":
            outside |= np.abs(predictions.sum(axis=1) - 1) > 1e-2
        improper = float(outside.mean())
    return {
        "improper_outputs": improper,
        "final_train_mode_loss": train_mode_loss,
        "final_eval_mode_loss": eval_mode_loss,
        "prediction_spread": spread,
    }


def _kernel_change(start: Sequence[np.ndarray], end: Sequence[np.ndarray]) -> float:
    start = np.concatenate([np.ravel(w) for w in start])
    end = np.concatenate([np.ravel(w) for w in end])
    with np.errstate(all="ignore"):
        change = float(np.linalg.norm(end - start) / max(np.linalg.norm(start), 1e-12))
    return change if math.isfinite(change) else math.inf


def _clean(value: float | None) -> float | None:
    return None if value is None else float(value)


# Path 2: the course's engine ------------------------------------------------------------------------


class _DeliberateTracing(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" warning. The probes are traced once per
    architecture on purpose (a student's notebook meets a dozen of them), and TensorFlow, which counts
    new functions as retracing, would print a paragraph of advice on the student's screen (and on stderr,
    where nbgrader zeroes a test cell)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


tf.get_logger().addFilter(_DeliberateTracing())


@functools.lru_cache(maxsize=32)
def _probe_model(build_model: Callable[[], keras.Model], loss: Any) -> tuple[keras.Model, Callable, tuple]:
    """One model per architecture and loss, its weights set per record, with its probes traced once:
    building a Keras model, or probing it eagerly, costs more than an engine run of a small net."""
    model = build_model()
    loss_fn = keras.losses.get(loss) if isinstance(loss, str) else loss
    compiled = (
        tf.function(functools.partial(_gradient_norms, model, loss_fn), reduce_retracing=True),
        tf.function(lambda x, training: model(x, training=training), reduce_retracing=True),
    )
    return model, loss_fn, compiled


_initial_weights_cache: dict[tuple, list[np.ndarray]] = {}
# By data set (weakly: a data set that is gone takes its entries with it): baseline, initial probe, statistics.
_start_cache: weakref.WeakKeyDictionary[Any, dict[tuple, tuple]] = weakref.WeakKeyDictionary()


def _initial_weights(config: TrainConfig) -> list[np.ndarray]:
    """The weights a run starts from, built under its seed exactly as the engine builds them."""
    key = (config.build_model, config.seed)
    if key not in _initial_weights_cache:
        seed_everything(config.seed)
        _initial_weights_cache[key] = config.build_model().get_weights()
    return _initial_weights_cache[key]


def record_from_history(history: History, probe_rows: int = PROBE_ROWS) -> RunRecord:
    """The ``RunRecord`` of an engine run: its curves as recorded, probes measured after the run."""
    config = history.config
    if history.final_weights is None:
        raise ValueError("This history kept no weights; train it with adamclinic.engine.training.run.")
    model, loss_fn, compiled = _probe_model(config.build_model, config.loss)
    task, classes = _task(_loss_name(config.loss), int(model.output_shape[-1]))
    data = config.data
    x, y = data.x_train[:probe_rows], data.y_train[:probe_rows]
    start = _initial_weights(config)
    # What depends only on the data and the starting point is measured once: a slider move keeps both.
    per_data = _start_cache.setdefault(data, {})
    key = (config.build_model, config.loss, config.seed, probe_rows)
    if key not in per_data:
        model.set_weights(start)
        per_data[key] = (
            _baseline(task, loss_fn, data.y_train, classes),
            _layer_grads(model, loss_fn, x, y, compiled[0]),
            _data_statistics(data.x_train, data.y_train, task),
        )
    (baseline, shares), (initial_loss, initial_grads), statistics = per_data[key]
    model.set_weights(history.final_weights)
    end = _final_probe(model, loss_fn, x, y, task, compiled[1])
    steps_per_epoch = len(data.x_train) // config.batch_size
    kernels = [i for i, w in enumerate(start) if np.ndim(w) >= 2]
    return RunRecord(
        task=task,
        classes=classes,
        optimizer=config.optimizer,
        learning_rate=float(
            np.max(
                learning_rate_table(
                    config.learning_rate,
                    1 if isinstance(config.learning_rate, (int, float)) else config.epochs * steps_per_epoch,
                )
            )
        ),
        beta_1=config.beta_1 if config.optimizer != "sgd" else None,
        beta_2=config.beta_2 if config.optimizer != "sgd" else None,
        **statistics,
        label_shares=shares,
        baseline_loss=baseline,
        initial_loss=initial_loss,
        initial_layer_grads=list(initial_grads),
        loss=[float(v) for v in history.loss],
        val_loss=[None if math.isnan(v) else float(v) for v in history.val_loss],
        fit_starts=[0],
        steps=len(history.epochs) * steps_per_epoch,
        weight_change=_kernel_change([start[i] for i in kernels], [history.final_weights[i] for i in kernels]),
        epoch_layer_grads=[list(e.layer_grad_norms) for e in history.epochs],
        **end,
    )
