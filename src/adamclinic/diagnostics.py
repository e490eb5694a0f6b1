"""The clinic's instrument: watch a Keras run and name why it fails, with the evidence and the fix.

Two ways in, one report:

- with stock Keras, add ``ClinicMonitor(x_train, y_train)`` to ``model.fit(callbacks=[...])`` and call
  ``diagnose(monitor)``. The monitor keeps the same monitor across several ``fit`` calls, so a
  recompile between them shows up as a new start;
- with the course's engine, call ``diagnose(history)`` on the ``History`` that ``adamclinic.training.run``
  returns. The engine already records every epoch's loss, validation loss and per-layer gradient norms
  in its compiled loop; the rest is measured after the run from the seed's initial weights and the final
  weights, so watching costs the engine nothing while it trains.

Both paths fill one ``RunRecord`` (plain numbers, JSON-friendly), and ``diagnose`` reads only that: the
rules below never see the model or the code, just what a practitioner could measure. Each rule returns
a ``Finding`` with a score in [0, 1]; the report ranks them, and a run with no finding scoring at least
``THRESHOLD`` gets "no problem found".

Why a callback that does almost nothing per epoch: the probes run once when training starts (the loss
and each layer's gradient) and once when it ends (the loss in training and in inference mode, the
predictions), on at most ``probe_rows`` rows. Per epoch the monitor only copies two numbers out of
Keras's logs. ``monitor.seconds`` is the time spent inside it.
"""

from __future__ import annotations

import functools
import html
import json
import math
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from adamclinic.seeding import seed_everything
from adamclinic.training import History, TrainConfig, learning_rate_table

THRESHOLD = 0.5  # a finding below this score is not reported as a problem
UNSCALED_INPUT = 30.0  # a column whose root mean square is this large is in raw units
PROBE_ROWS = 256

CAUSES = {
    "nan_inputs": "NaN in the inputs",
    "unscaled_inputs": "unscaled input features",
    "unscaled_targets": "unscaled regression targets",
    "exploding_gradients": "exploding gradients",
    "vanishing_gradients": "vanishing gradients",
    "learning_rate_too_high": "learning rate too high",
    "learning_rate_too_low": "learning rate too low",
    "beta_2_too_low": "β2 too low for noisy gradients",
    "chance_plateau": "stuck at the loss of guessing",
    "output_loss_mismatch": "the output layer does not match the loss",
    "majority_class": "constant prediction of the majority class",
    "recompile_reset": "optimizer state lost on recompile",
    "train_eval_mismatch": "training and inference modes disagree",
    "overfitting": "overfitting: Adam is fine, the objective is wrong",
}
HEALTHY = "healthy"


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

    def to_json(self) -> str:
        return json.dumps(asdict(self), allow_nan=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "RunRecord":
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


def _layer_grads(model: keras.Model, loss_fn: Callable, x: np.ndarray, y: np.ndarray,
                 compiled: Callable | None = None) -> tuple[float, list[float]]:
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
    return {"rows": len(x), "nan_rows": nan_rows,
            "feature_scales": [float(s) for s in np.nan_to_num(scales, nan=0.0)], "target_scale": target_scale}


def _final_probe(model: keras.Model, loss_fn: Callable, x: np.ndarray, y: np.ndarray, task: str,
                 forward: Callable | None = None) -> dict[str, Any]:
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
    return {"improper_outputs": improper, "final_train_mode_loss": train_mode_loss,
            "final_eval_mode_loss": eval_mode_loss, "prediction_spread": spread}


def _kernel_change(start: Sequence[np.ndarray], end: Sequence[np.ndarray]) -> float:
    start = np.concatenate([np.ravel(w) for w in start])
    end = np.concatenate([np.ravel(w) for w in end])
    with np.errstate(all="ignore"):
        change = float(np.linalg.norm(end - start) / max(np.linalg.norm(start), 1e-12))
    return change if math.isfinite(change) else math.inf


def _clean(value: float | None) -> float | None:
    return None if value is None else float(value)


# Path 1: a Keras callback for model.fit ---------------------------------------------------------------


class ClinicMonitor(keras.callbacks.Callback):
    """Watch ``model.fit`` (one or several calls) and keep a ``RunRecord``; then ``diagnose(monitor)``.

    ``x`` and ``y`` are the training inputs and targets (the first ``probe_rows`` rows are probed; the
    data statistics use them all). Pass the same monitor to every ``fit`` of one model.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, probe_rows: int = PROBE_ROWS):
        super().__init__()
        self.x = np.asarray(x, dtype="float32")
        self.y = np.asarray(y, dtype="float32")
        if self.y.ndim == 1:
            self.y = self.y.reshape(-1, 1)
        self.probe_x, self.probe_y = self.x[:probe_rows], self.y[:probe_rows]
        self._start: dict[str, Any] | None = None
        self._start_kernels: list[np.ndarray] = []
        self._loss: list[float] = []
        self._val_loss: list[float | None] = []
        self._fit_starts: list[int] = []
        self._steps = 0
        self._end: dict[str, Any] = {}
        self.seconds = 0.0  # time spent inside the monitor, for measuring what watching costs

    def _loss_fn(self) -> Callable:
        loss = self.model.loss
        return keras.losses.get(loss) if isinstance(loss, str) else loss

    def on_train_begin(self, logs=None):
        started = time.perf_counter()
        self._fit_starts.append(len(self._loss))
        if self._start is None:
            self._probe_start()
        self.seconds += time.perf_counter() - started

    def _probe_start(self) -> None:
        loss_name = _loss_name(self.model.loss)
        task, classes = _task(loss_name, int(self.model.output_shape[-1]))
        optimizer = self.model.optimizer
        initial_loss, grads = _layer_grads(self.model, self._loss_fn(), self.probe_x, self.probe_y)
        baseline, shares = _baseline(task, self._loss_fn(), self.y, classes)
        self._start = {
            "task": task, "classes": classes, "optimizer": type(optimizer).__name__.lower(),
            "learning_rate": float(keras.ops.convert_to_numpy(optimizer.learning_rate)),
            "beta_1": float(optimizer.beta_1) if hasattr(optimizer, "beta_1") else None,
            "beta_2": float(optimizer.beta_2) if hasattr(optimizer, "beta_2") else None,
            **_data_statistics(self.x, self.y, task), "label_shares": shares, "baseline_loss": baseline,
            "initial_loss": initial_loss, "initial_layer_grads": grads,
        }
        self._start_kernels = [self.model.trainable_variables[i].numpy() for i in _kernel_indices(self.model)]

    def on_epoch_end(self, epoch, logs=None):
        # Steps are counted from the fit's parameters: a per-batch hook would make Keras wait for every
        # batch's logs, which costs more than all the probes together.
        self._steps += int(self.params.get("steps") or 0)
        logs = logs or {}
        self._loss.append(float(logs.get("loss", math.nan)))
        self._val_loss.append(_clean(logs.get("val_loss")))

    def on_train_end(self, logs=None):
        started = time.perf_counter()
        task = self._start["task"]
        self._end = _final_probe(self.model, self._loss_fn(), self.probe_x, self.probe_y, task)
        kernels = [self.model.trainable_variables[i].numpy() for i in _kernel_indices(self.model)]
        self._end["weight_change"] = _kernel_change(self._start_kernels, kernels)
        self.seconds += time.perf_counter() - started

    @property
    def record(self) -> RunRecord:
        if self._start is None:
            raise ValueError("This monitor has not watched a fit yet: pass it in model.fit(callbacks=[...]).")
        return RunRecord(**self._start, loss=list(self._loss), val_loss=list(self._val_loss),
                         fit_starts=list(self._fit_starts), steps=self._steps, **self._end)


# Path 2: the course's engine ------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _probe_model(build_model: Callable[[], keras.Model], loss: Any) -> tuple[keras.Model, Callable, tuple]:
    """One model per architecture and loss, its weights set per record, with its probes traced once:
    building a Keras model, or probing it eagerly, costs more than an engine run of a small net."""
    model = build_model()
    loss_fn = keras.losses.get(loss) if isinstance(loss, str) else loss
    compiled = (tf.function(functools.partial(_gradient_norms, model, loss_fn), reduce_retracing=True),
                tf.function(lambda x, training: model(x, training=training), reduce_retracing=True))
    return model, loss_fn, compiled


_initial_weights_cache: dict[tuple, list[np.ndarray]] = {}
# By data set (weakly: a data set that is gone takes its entries with it): baseline, initial probe, statistics.
_start_cache: "weakref.WeakKeyDictionary[Any, dict[tuple, tuple]]" = weakref.WeakKeyDictionary()


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
        raise ValueError("This history kept no weights; train it with adamclinic.training.run.")
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
        per_data[key] = (_baseline(task, loss_fn, data.y_train, classes),
                         _layer_grads(model, loss_fn, x, y, compiled[0]),
                         _data_statistics(data.x_train, data.y_train, task))
    (baseline, shares), (initial_loss, initial_grads), statistics = per_data[key]
    model.set_weights(history.final_weights)
    end = _final_probe(model, loss_fn, x, y, task, compiled[1])
    steps_per_epoch = len(data.x_train) // config.batch_size
    kernels = [i for i, w in enumerate(start) if np.ndim(w) >= 2]
    return RunRecord(
        task=task, classes=classes, optimizer=config.optimizer,
        learning_rate=float(np.max(learning_rate_table(config.learning_rate, 1 if isinstance(
            config.learning_rate, (int, float)) else config.epochs * steps_per_epoch))),
        beta_1=config.beta_1 if config.optimizer != "sgd" else None,
        beta_2=config.beta_2 if config.optimizer != "sgd" else None,
        **statistics, label_shares=shares, baseline_loss=baseline,
        initial_loss=initial_loss, initial_layer_grads=list(initial_grads),
        loss=[float(v) for v in history.loss],
        val_loss=[None if math.isnan(v) else float(v) for v in history.val_loss],
        fit_starts=[0], steps=len(history.epochs) * steps_per_epoch,
        weight_change=_kernel_change([start[i] for i in kernels], [history.final_weights[i] for i in kernels]),
        epoch_layer_grads=[list(e.layer_grad_norms) for e in history.epochs], **end,
    )


# The rules --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One likely cause: its key in ``CAUSES``, how strongly the run shows it, the numbers, the fix."""

    cause: str
    score: float
    evidence: str
    fix: str

    @property
    def title(self) -> str:
        return CAUSES.get(self.cause, self.cause)


@dataclass
class Report:
    """The ranked findings of one run (strongest first) and the record they were read from."""

    findings: list[Finding]
    record: RunRecord

    @property
    def top(self) -> str:
        """The most likely cause's key, or ``"healthy"`` when nothing scored above the threshold."""
        return self.findings[0].cause if self.findings else HEALTHY

    @property
    def causes(self) -> list[str]:
        return [f.cause for f in self.findings]

    def __str__(self) -> str:
        if not self.findings:
            return "No problem found: " + _healthy_summary(self.record)
        lines = []
        for rank, f in enumerate(self.findings, start=1):
            lines += [f"{rank}. {f.title} (score {f.score:.2f})", f"   evidence: {f.evidence}", f"   fix: {f.fix}"]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        if not self.findings:
            return f"<p><b style='color:#009E73'>No problem found.</b> {html.escape(_healthy_summary(self.record))}</p>"
        items = "".join(
            f"<li><b>{html.escape(f.title)}</b> <small>(score {f.score:.2f})</small><br>"
            f"<i>evidence:</i> {html.escape(f.evidence)}<br><i>fix:</i> {html.escape(f.fix)}</li>"
            for f in self.findings)
        return f"<ol>{items}</ol>"


def _healthy_summary(record: RunRecord) -> str:
    finite = [v for v in record.loss if math.isfinite(v)]
    return (f"the loss fell from {record.initial_loss:.3g} to {finite[-1]:.3g} "
            f"(the best constant prediction scores {record.baseline_loss:.3g}).") if finite else ""


def _finite(values: Sequence[float | None]) -> np.ndarray:
    return np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)


def _clip01(value: float) -> float:
    return float(min(max(value, 0.0), 1.0))


def _nan_inputs(r: RunRecord) -> Finding | None:
    if r.nan_rows == 0:
        return None
    when = next((i + 1 for i, v in enumerate(r.loss) if not math.isfinite(v)), None)
    outcome = (f"the loss became NaN at epoch {when}" if when
               else "the loss stayed finite (the NaN were silently zeroed)")
    return Finding("nan_inputs", 1.0,
                   f"{r.nan_rows} of {r.rows} training rows contain NaN or infinite inputs; {outcome}.",
                   "Impute or drop the missing values before training (fit the imputer on the training rows only).")


def _input_spread(r: RunRecord) -> tuple[float, float]:
    scales = np.array([s for s in r.feature_scales if s > 0])
    if scales.size == 0:
        return 1.0, 0.0
    return float(scales.max() / scales.min()), float(scales.max())


def _unscaled_inputs(r: RunRecord) -> Finding | None:
    spread, largest = _input_spread(r)
    # Standardized columns have a size near 1 and [0, 1] pixels below it; a column hundreds of times
    # larger is in raw units. (Tiny columns alone are harmless: they barely move the first layer.)
    if largest < UNSCALED_INPUT:
        return None
    decades = math.log10(largest)
    return Finding("unscaled_inputs", _clip01(0.3 + 0.15 * decades),
                   f"input columns range in size from {min(s for s in r.feature_scales if s > 0):.3g} to {largest:.3g} "
                   f"(a factor of {spread:.2g}); the first layer's initial gradient is "
                   f"{r.initial_layer_grads[0]:.3g} against {r.initial_layer_grads[-1]:.3g} at the output.",
                   "Standardize every input column (StandardScaler fitted on the training rows).")


def _unscaled_targets(r: RunRecord) -> Finding | None:
    if r.task != "regression" or r.target_scale < 30:
        return None
    losses = _finite(r.loss)
    if losses.size < 3:
        return None
    fallen = 1 - losses[-1] / max(r.initial_loss, 1e-12)
    # A crawl in a straight line: the loss falls by about the same amount every epoch.
    drops = -np.diff(losses)
    straight = float(np.std(drops) / max(abs(np.mean(drops)), 1e-12)) < 0.3
    shape = ", by about the same amount every epoch" if straight else ""
    return Finding("unscaled_targets", _clip01(0.5 + 0.1 * math.log10(r.target_scale)),
                   f"the targets have a typical size of {r.target_scale:.3g}; after {len(losses)} epochs the loss fell "
                   f"only {fallen:.0%} (from {r.initial_loss:.3g} to {losses[-1]:.3g}){shape}: Adam moves each weight "
                   f"by about the learning rate per step, and the output must travel thousands of those steps.",
                   "Standardize the targets (subtract the mean, divide by the standard deviation) and undo it on "
                   "the predictions.")


def _gradient_ratio(grads: Sequence[float]) -> float:
    if len(grads) < 2 or not grads[-1] > 0:
        return 1.0
    return float(grads[0] / grads[-1])


def _exploding(r: RunRecord) -> Finding | None:
    _, largest = _input_spread(r)
    if largest >= UNSCALED_INPUT:
        return None  # big inputs make big first-layer gradients: that is the scaling finding
    ratio = _gradient_ratio(r.initial_layer_grads)
    blown_start = r.initial_loss / max(r.baseline_loss, 1e-12)
    nan_at = next((i + 1 for i, v in enumerate(r.loss) if not math.isfinite(v)), None)
    evidence = []
    score = 0.0
    if ratio > 30:
        score += 0.35 + 0.1 * math.log10(ratio)
        evidence.append(f"at initialisation the first layer's gradient is {ratio:.3g} times the last layer's")
    if blown_start > 100:
        score += 0.3 + 0.1 * math.log10(blown_start / 100)
        evidence.append(f"the initial loss is {blown_start:.3g} times the loss of a constant prediction")
    if nan_at is not None and r.learning_rate <= 0.02:
        score += 0.5
        evidence.append(f"the loss became NaN at epoch {nan_at} at a learning rate of only {r.learning_rate:g}")
    if score == 0:
        return None
    return Finding("exploding_gradients", _clip01(score), "; ".join(evidence) + ".",
                   "Use a variance-preserving initialisation (He for ReLU, Glorot for tanh), add batch normalization, "
                   "and clip gradients (clipnorm=1).")


def _vanishing(r: RunRecord) -> Finding | None:
    grads = r.epoch_layer_grads[0] if r.epoch_layer_grads and r.epoch_layer_grads[0] else r.initial_layer_grads
    ratio = _gradient_ratio(grads)
    if not ratio < 1e-2 or len(grads) < 3:
        return None
    decades = -math.log10(max(ratio, 1e-30))
    losses = _finite(r.loss)
    learned = 1 - losses[-1] / max(r.baseline_loss, 1e-12) if losses.size else 0.0
    return Finding("vanishing_gradients", _clip01(0.3 + 0.12 * decades - 0.3 * max(learned, 0)),
                   f"in the first epoch the first layer's gradient norm is {grads[0]:.2g}, "
                   f"{decades:.1f} orders of magnitude below the last layer's ({grads[-1]:.2g}), across "
                   f"{len(grads)} weight matrices; the loss ends at {losses[-1] if losses.size else math.nan:.3g} "
                   f"against {r.baseline_loss:.3g} for a constant prediction.",
                   "Use ReLU with He initialisation, batch normalization or residual connections, or a shallower net.")


def _spikes(losses: np.ndarray, factor: float = 1.3) -> int:
    return int(np.sum(losses[1:] > factor * losses[:-1]))


def _learning_rate_too_high(r: RunRecord) -> Finding | None:
    losses = _finite(r.loss)
    per_step = r.weight_change / max(r.steps, 1)
    evidence, score = [], 0.0
    if r.weight_change > 2:
        score += 0.3
        evidence.append(f"the weights moved {r.weight_change:.3g} times their initial size")
    if losses.size and losses[0] > 3 * r.initial_loss:
        score += 0.35
        evidence.append(f"the first epoch's loss ({losses[0]:.3g}) is {losses[0] / r.initial_loss:.3g} times the "
                        f"initial loss ({r.initial_loss:.3g})")
    spikes = _spikes(losses)
    if spikes >= 3:
        score += 0.1 * min(spikes, 4)
        evidence.append(f"the loss jumped up by over 30% in {spikes} of {losses.size} epochs")
    if losses.size and losses[-1] > 0.8 * r.baseline_loss and r.weight_change > 1:
        score += 0.2
        evidence.append(f"it ends at {losses[-1]:.3g}, no better than a constant prediction ({r.baseline_loss:.3g})")
    if len(losses) < len(r.loss) and r.learning_rate > 0.02:
        score += 0.4
        evidence.append(f"the loss became NaN at a learning rate of {r.learning_rate:g}")
    if score < 0.3:
        return None
    # With Adam a rate of 3e-3 or less is rarely too high by itself: something else made the steps big.
    if r.beta_2 is not None:
        score += 0.15 if r.learning_rate >= 0.1 else (-0.2 if r.learning_rate <= 5e-3 else 0.0)
    return Finding("learning_rate_too_high", _clip01(score),
                   "; ".join(evidence) + f" (learning rate {r.learning_rate:g}; a net drift of {per_step:.2g} of the "
                   "weights' size per step).",
                   "Lower the learning rate by 10x (a range test finds a good one), or add warmup.")


def _learning_rate_too_low(r: RunRecord) -> Finding | None:
    losses = _finite(r.loss)
    if losses.size < 5 or r.weight_change > 0.05:
        return None
    tail = losses[-5:]
    falling = bool(np.all(np.diff(tail) < 0))
    learned = 1 - losses[-1] / max(r.baseline_loss, 1e-12)
    if not falling or learned > 0.5 or r.initial_loss > 100 * r.baseline_loss:
        return None
    score = 0.55 + 0.15 * -math.log10(max(r.weight_change, 1e-9)) - 0.3 * max(learned, 0)
    return Finding("learning_rate_too_low", _clip01(score),
                   f"in {r.steps} steps the weights moved only {r.weight_change:.2%} of their size; the loss is still "
                   f"falling ({tail[0]:.3g} to {tail[-1]:.3g} over the last 5 epochs) but is only "
                   f"{max(learned, 0):.0%} below a constant prediction's ({r.baseline_loss:.3g}); learning rate "
                   f"{r.learning_rate:g}.",
                   "Raise the learning rate (try 10x, or run a range test).")


def _beta_2_too_low(r: RunRecord) -> Finding | None:
    # Lesson 04: the step m/√v can only run away when β2 < β1² (it grows by β1/√β2 per quiet step).
    if r.beta_2 is None or r.beta_1 is None or r.beta_2 >= r.beta_1**2:
        return None
    losses = _finite(r.loss)
    if losses.size == 0:
        return None
    spikes = _spikes(losses, 1.3)
    best = float(np.min(losses))
    ends_above = losses[-1] > 1.5 * best or losses.size < len(r.loss)
    if spikes == 0 and not ends_above:
        return None
    blew_up = losses.size < len(r.loss) or float(np.max(losses)) > 10 * r.initial_loss
    score = 0.55 + 0.05 * min(spikes, 5) + (0.15 if ends_above else 0.0) + (0.2 if blew_up else 0.0)
    nan_at = next((i + 1 for i, v in enumerate(r.loss) if not math.isfinite(v)), None)
    if nan_at is not None:
        course = f"the loss reached {float(np.max(losses)):.3g} and became NaN at epoch {nan_at}"
    else:
        course = (f"the loss jumped by over 30% in {spikes} of {losses.size} epochs and ends at {losses[-1]:.3g}, "
                  f"against its best {best:.3g}")
    return Finding("beta_2_too_low", _clip01(score),
                   f"β2 = {r.beta_2:g} is below β1² = {r.beta_1**2:.3g}, so a step can grow by β1/√β2 = "
                   f"{r.beta_1 / math.sqrt(r.beta_2):.2f} per quiet step; {course}.",
                   "Keep β2 at 0.999 (the default); at least keep β2 above β1².")


def _chance_plateau(r: RunRecord) -> Finding | None:
    if r.task == "regression" or max(r.label_shares, default=1) >= 0.8:
        return None
    losses = _finite(r.loss)
    if losses.size == 0:
        return None
    last = losses[-min(5, losses.size):]
    gap = float(np.max(np.abs(last - r.baseline_loss)) / r.baseline_loss)
    # A net can memorize labels that do not follow from the inputs, so its training loss falls; what it
    # learned never reaches rows it has not seen: the validation loss stays at the loss of guessing.
    val = _finite(r.val_loss)
    val_gap = float(abs(np.min(val) - r.baseline_loss) / r.baseline_loss) if val.size else math.inf
    memorizing = bool(val.size) and np.min(val) >= 0.96 * r.baseline_loss and last[-1] < 0.9 * r.baseline_loss
    if gap > 0.06 and not (val_gap < 0.04 and gap < 0.15) and not memorizing:
        return None
    # Weights that barely moved while the loss still falls: a crawl (learning rate), not a plateau.
    crawling = r.weight_change < 0.05 and bool(np.all(np.diff(last) < 0))
    score = (0.8 if memorizing else 0.95 - 5 * min(gap, val_gap)) - (0.3 if r.weight_change > 2 else 0) \
        - (0.3 if crawling else 0)
    held_out = f"; the validation loss never got below {np.min(val):.4g}" if val.size else ""
    where = (f"the training loss fell to {last[-1]:.4g}, below" if memorizing else
             f"the training loss ends at {last[-1]:.4g}, within {gap:.1%} of")
    return Finding("chance_plateau", _clip01(score),
                   f"{where} the loss of guessing the label mix ({r.baseline_loss:.4g}; ln {r.classes} = "
                   f"{math.log(r.classes):.4g} for balanced classes){held_out}: the net learned nothing from the "
                   f"inputs that carries over to rows it has not seen.",
                   "Check that the labels line up with the inputs (same shuffle, same order), that the output layer "
                   "matches the loss (softmax with K units for sparse_categorical_crossentropy, one sigmoid unit for "
                   "binary_crossentropy), and that the labels are in the form the loss expects.")


def _output_loss_mismatch(r: RunRecord) -> Finding | None:
    if r.improper_outputs < 0.05:
        return None
    losses = _finite(r.loss)
    ends = (f"; the training loss ends at {losses[-1]:.4g} against {r.baseline_loss:.4g} for guessing"
            if losses.size else "")
    return Finding("output_loss_mismatch", _clip01(0.8 + 0.2 * r.improper_outputs),
                   f"the loss expects probabilities, but for {r.improper_outputs:.0%} of the probed rows the outputs "
                   f"are not (a value outside [0, 1], or several classes not summing to 1){ends}.",
                   "Give the output layer the activation the loss expects (softmax with K units for "
                   "sparse_categorical_crossentropy, one sigmoid unit for binary_crossentropy), or keep a linear "
                   "output and pass from_logits=True to the loss.")


def _majority_class(r: RunRecord) -> Finding | None:
    if r.task == "regression":
        return None
    majority = max(r.label_shares, default=0)
    # More one-sided than the labels themselves: halfway or more from the label mix to "always the majority".
    if majority < 0.8 or r.prediction_spread < majority + 0.5 * (1 - majority):
        return None
    return Finding("majority_class", _clip01(0.6 + 2 * (majority - 0.8)),
                   f"{majority:.1%} of the training labels are one class and the net predicts that class for "
                   f"{r.prediction_spread:.1%} of the rows: accuracy {majority:.1%} by guessing, minority recall 0.",
                   "Weight the classes (class_weight='balanced' shares), resample, and judge by balanced accuracy "
                   "or minority recall, not accuracy.")


def _recompile_reset(r: RunRecord) -> Finding | None:
    jumps = [(start, r.loss[start] / r.loss[start - 1]) for start in r.fit_starts[1:]
             if 0 < start < len(r.loss) and math.isfinite(r.loss[start]) and r.loss[start - 1] > 0]
    if not jumps:
        return None
    start, factor = max(jumps, key=lambda j: j[1])
    if factor < 1.25:
        return None
    return Finding("recompile_reset", _clip01(0.5 + 0.2 * math.log10(factor) + 0.2),
                   f"training restarted at epoch {start + 1} (a new fit, {len(r.fit_starts)} in all) and the loss "
                   f"jumped {factor:.3g}-fold, from {r.loss[start - 1]:.3g} to {r.loss[start]:.3g}.",
                   "Do not recompile a model mid-training (compile() makes a fresh optimizer with empty moments); "
                   "continue with fit(), or if you must recompile, lower the learning rate or warm it up.")


def _train_eval_mismatch(r: RunRecord) -> Finding | None:
    train, evaluation = r.final_train_mode_loss, r.final_eval_mode_loss
    if not (math.isfinite(train) and math.isfinite(evaluation)):
        return None
    if evaluation < 2 * train + 0.1 * r.baseline_loss:
        return None
    factor = evaluation / max(train, 1e-12)
    return Finding("train_eval_mismatch", _clip01(0.5 + 0.15 * math.log10(factor)),
                   f"on the same training rows the loss in training mode is {train:.3g} but in inference mode "
                   f"{evaluation:.3g} ({factor:.3g} times higher): a layer behaves differently when predicting.",
                   "Check batch normalization (moving statistics need enough steps; a larger momentum or batch) and "
                   "dropout; evaluate with model.evaluate on the training data to confirm.")


def _overfitting(r: RunRecord) -> Finding | None:
    val = [v for v in r.val_loss if v is not None]
    if len(val) < 5 or not all(math.isfinite(v) for v in val):
        return None
    val = np.array(val)
    best = int(np.argmin(val))
    rise = float(val[-1] / val[best] - 1)
    losses = _finite(r.loss)
    if best >= len(val) - 2 or rise < 0.1 or val[-1] - val[best] < 0.02 * r.baseline_loss:
        return None
    # Overfitting comes after learning: the validation loss first falls. One that rises from the first
    # epoch means the validation rows are unlike the training rows (a mix or a split problem).
    if best < 2 or val[best] > 0.95 * val[0]:
        return None
    if not (losses.size and losses[-1] < val[best] and losses[-1] < losses[best]):
        return None
    return Finding("overfitting", _clip01(0.45 + rise),
                   f"the training loss keeps falling (to {losses[-1]:.3g}) while the validation loss bottomed out at "
                   f"{val[best]:.3g} in epoch {best + 1} and rose {rise:.0%} to {val[-1]:.3g}.",
                   "Adam is fine, you are minimizing the wrong thing: stop early at the best validation epoch, add "
                   "data, weight decay or dropout, or use a smaller net.")


RULES = (_nan_inputs, _unscaled_inputs, _unscaled_targets, _exploding, _vanishing, _learning_rate_too_high,
         _learning_rate_too_low, _beta_2_too_low, _chance_plateau, _output_loss_mismatch, _majority_class,
         _recompile_reset, _train_eval_mismatch, _overfitting)


def diagnose(run: History | ClinicMonitor | RunRecord) -> Report:
    """The likely causes of a failing run, strongest first, each with its evidence and fix.

    Give it an engine ``History``, a ``ClinicMonitor`` that watched ``model.fit``, or a ``RunRecord``.
    An empty ``findings`` list means no problem found.
    """
    if isinstance(run, ClinicMonitor):
        record = run.record
    elif isinstance(run, History):
        record = record_from_history(run)
    elif isinstance(run, RunRecord):
        record = run
    else:
        raise TypeError("diagnose() takes an engine History, a ClinicMonitor or a RunRecord; "
                        f"got {type(run).__name__}.")
    findings = [f for f in (rule(record) for rule in RULES) if f is not None and f.score >= THRESHOLD]
    return Report(sorted(findings, key=lambda f: -f.score), record)
