"""The live-training engine: train a Keras model with ``keras.optimizers.Adam`` from a plain config.

(Also AdamW, AMSGrad, Adam without bias correction and plain SGD, for the lessons that compare them:
see ``adamclinic.engine.optimizers``.)

``train(config)`` is a pure function of its config (same config, same numbers) that yields one
``EpochMetrics`` per epoch as training goes, so a plot can redraw while the model trains.
``run(config)`` collects the whole ``History``.

Why not ``model.compile`` + ``model.fit`` per slider move: Keras pays a fixed cost per epoch and per
fit call that dwarfs the arithmetic of a small model (see ``python -m adamclinic.bench``). The engine
instead keeps, per architecture, one model, one Adam optimizer and one XLA-compiled function that
runs a whole epoch as an in-graph loop. What a slider changes lives in variables, so a new value
costs no retrace:

- the learning rate: the optimizer's own learning-rate variable, set at every step from a table of
  per-step rates (a float gives a constant table; any ``keras.optimizers.schedules`` schedule, or any
  callable of the step, is evaluated into the table before the run);
- ``beta_1``, ``beta_2``, ``epsilon`` and AdamW's ``weight_decay``: Keras 3 stores them as Python floats, which a traced
  function would bake in; the engine replaces them with non-trainable variables, which Adam's update
  reads through ``ops.cast`` exactly as it reads floats. ``tests/test_training.py`` checks the result
  against a stock ``model.fit`` run step for step;
- the initial weights (one set per seed, made by building the model under that seed) and the
  optimizer's state, both reset before every run.

Batches are drawn by a seeded permutation per epoch; a final partial batch is dropped so every step
has one static shape (XLA needs that). Choose data sizes divisible by the batch size to lose nothing.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from adamclinic.engine.optimizers import make_optimizer
from adamclinic.engine.seeding import seed_everything

LearningRate = float | Callable[[Any], Any]


@dataclass(frozen=True, eq=False)
class Dataset:
    """Training (and optional validation) arrays, as float32."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    name: str = "data"

    def __post_init__(self) -> None:
        for attr in ("x_train", "y_train", "x_val", "y_val"):
            value = getattr(self, attr)
            if value is not None:
                array = np.asarray(value, dtype="float32")
                if array.ndim == 1:
                    array = array.reshape(-1, 1)
                object.__setattr__(self, attr, array)
        if len(self.x_train) != len(self.y_train):
            raise ValueError(
                f"x_train has {len(self.x_train)} rows but y_train has {len(self.y_train)}: "
                "give one target per example."
            )
        if (self.x_val is None) != (self.y_val is None):
            raise ValueError("Give both x_val and y_val, or neither.")


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run depends on. Change a field with ``dataclasses.replace``.

    ``optimizer`` is one of ``adamclinic.engine.optimizers.OPTIMIZERS``; ``weight_decay`` applies to
    ``"adamw"`` only (decoupled decay). ``clipnorm`` clips each variable's gradient,
    ``global_clipnorm`` all of them together, as in Keras. ``class_weight`` maps a class label to the
    weight of its examples in the loss, as ``model.fit(class_weight=...)`` does. ``check_inputs=False``
    lets NaN inputs through, for the lesson that shows what they do. ``note`` says what else sets
    this run apart (the data, the model) and leads its plot label.
    """

    data: Dataset
    build_model: Callable[[], keras.Model]
    learning_rate: LearningRate = 1e-3
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    epochs: int = 30
    batch_size: int = 32
    seed: int = 0
    loss: str | Callable = "mean_squared_error"
    shuffle: bool = True
    optimizer: str = "adam"
    amsgrad: bool = False
    weight_decay: float = 0.0
    clipnorm: float | None = None
    global_clipnorm: float | None = None
    class_weight: dict[int, float] | None = None
    check_inputs: bool = True
    note: str = ""

    def with_learning_rate(self, learning_rate: LearningRate) -> TrainConfig:
        """The same run with another learning rate (a number or a schedule)."""
        return replace(self, learning_rate=learning_rate)

    def label(self) -> str:
        """A short description of the settings that tell runs apart in a plot legend."""
        parts = [self.note + ","] if self.note else []
        if self.optimizer != "adam":
            parts.append(self.optimizer)
        parts.append(describe_learning_rate(self.learning_rate))
        if self.beta_1 != 0.9:
            parts.append(f"β1={self.beta_1:g}")
        if self.beta_2 != 0.999:
            parts.append(f"β2={self.beta_2:g}")
        if self.epsilon != 1e-7:
            parts.append(f"ε={self.epsilon:.0e}")
        if self.amsgrad:
            parts.append("amsgrad")
        if self.weight_decay:
            parts.append(f"wd={self.weight_decay:g}")
        if self.clipnorm is not None:
            parts.append(f"clipnorm={self.clipnorm:g}")
        if self.global_clipnorm is not None:
            parts.append(f"global_clipnorm={self.global_clipnorm:g}")
        if self.class_weight:
            parts.append("class weights")
        return " ".join(parts)


def describe_learning_rate(learning_rate: LearningRate) -> str:
    """``lr=0.001`` for a number; the schedule's name and peak for a Keras schedule."""
    if isinstance(learning_rate, (int, float, np.floating)):
        return f"lr={float(learning_rate):.3g}"
    name = type(learning_rate).__name__
    peak = getattr(learning_rate, "warmup_target", None) or getattr(learning_rate, "initial_learning_rate", None)
    if peak is None:
        return name
    warmup = " + warmup" if getattr(learning_rate, "warmup_steps", 0) else ""
    return f"{name}{warmup}, peak {float(peak):.3g}"


@dataclass(frozen=True)
class EpochMetrics:
    """What one epoch produced. ``loss`` is the mean training loss over its batches, as Keras reports.

    ``grad_norm`` is the mean over the epoch's steps of the global gradient norm; ``layer_grad_norms``
    the same per weight matrix (kernel), first layer first, for watching gradients vanish or explode.
    ``accuracy`` and ``val_accuracy`` are filled in for classification losses (cross-entropies).
    """

    epoch: int
    loss: float
    val_loss: float | None
    learning_rate: float
    grad_norm: float
    seconds: float
    layer_grad_norms: tuple[float, ...] = ()
    accuracy: float | None = None
    val_accuracy: float | None = None

    @property
    def diverged(self) -> bool:
        """True when this epoch's loss was NaN or infinite."""
        return not math.isfinite(self.loss)


@dataclass
class History:
    """A finished (or stopped) run."""

    config: TrainConfig
    epochs: list[EpochMetrics] = field(default_factory=list)
    diverged_at: int | None = None
    cancelled: bool = False
    final_weights: list[np.ndarray] | None = None

    @property
    def loss(self) -> np.ndarray:
        return np.array([e.loss for e in self.epochs])

    @property
    def val_loss(self) -> np.ndarray:
        return np.array([np.nan if e.val_loss is None else e.val_loss for e in self.epochs])

    @property
    def layer_grad_norms(self) -> np.ndarray:
        """Epochs × kernels: each weight matrix's mean gradient norm per epoch (first layer first)."""
        return np.array([e.layer_grad_norms for e in self.epochs])

    @property
    def val_accuracy(self) -> np.ndarray:
        return np.array([np.nan if e.val_accuracy is None else e.val_accuracy for e in self.epochs])

    def trained_model(self) -> keras.Model:
        """A new model with the weights this run ended with (the engine's own model is reused)."""
        if self.final_weights is None:
            raise ValueError("This run kept no weights; train it with adamclinic.engine.training.run.")
        model = self.config.build_model()
        model.set_weights(self.final_weights)
        return model

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The trained model's outputs for ``x``."""
        return np.asarray(self.trained_model()(np.asarray(x, dtype="float32"), training=False))

    @property
    def final_loss(self) -> float:
        """The last epoch's training loss (NaN or inf when the run diverged)."""
        return float(self.epochs[-1].loss) if self.epochs else math.nan

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    def status(self) -> str:
        """One line for a student: how the run ended."""
        if self.diverged:
            return f"diverged at epoch {self.diverged_at}: the loss became NaN or infinite"
        if self.cancelled:
            return f"stopped at epoch {len(self.epochs)} (settings changed)"
        return f"finished {len(self.epochs)} epochs, final loss {self.final_loss:.4g}"


def learning_rate_table(learning_rate: LearningRate, total_steps: int) -> np.ndarray:
    """The learning rate at each optimizer step, from a float, a Keras schedule or any step -> rate callable."""
    if isinstance(learning_rate, (int, float, np.floating)):
        rate = float(learning_rate)
        if not math.isfinite(rate) or rate <= 0:
            raise ValueError(f"The learning rate must be a positive number; got {learning_rate!r}.")
        return np.full(total_steps, rate, dtype="float32")
    if not callable(learning_rate):
        raise TypeError(
            "learning_rate must be a number or a schedule such as "
            f"keras.optimizers.schedules.ExponentialDecay(...); got {type(learning_rate).__name__}."
        )
    try:
        table = np.asarray(learning_rate(np.arange(total_steps, dtype="int64")), dtype="float32").reshape(-1)
    except Exception:  # schedules with branches (warmup) take one step at a time
        table = None
    if table is None or table.shape != (total_steps,):
        # One traced map over the steps: about 8 times faster than calling the schedule 1000 times.
        per_step = tf.function(
            lambda steps: tf.map_fn(
                lambda step: tf.cast(learning_rate(step), tf.float32), steps, fn_output_signature=tf.float32
            )
        )
        try:
            table = per_step(tf.range(total_steps, dtype=tf.int64)).numpy()
        except Exception:  # a plain Python function of an int step
            table = np.array([float(learning_rate(step)) for step in range(total_steps)], dtype="float32")
    if not np.all(np.isfinite(table)) or np.any(table < 0):
        raise ValueError("The schedule produced a negative or non-finite learning rate; check its arguments.")
    return table


def _is_classification(loss: str | Callable) -> bool:
    return isinstance(loss, str) and "crossentropy" in loss


class _CompiledTrainer:
    """One model, one optimizer and one compiled epoch, reused by every run of the same structure."""

    def __init__(self, config: TrainConfig, steps: int):
        self.build_model = config.build_model
        self.batch_size = config.batch_size
        self.steps = steps
        self.lock = threading.RLock()
        self.model = config.build_model()
        self.loss_fn = keras.losses.get(config.loss) if isinstance(config.loss, str) else config.loss
        self.classification = _is_classification(config.loss)
        self.sparse_labels = config.loss == "sparse_categorical_crossentropy"
        self.optimizer = make_optimizer(config.optimizer, config.amsgrad, config.clipnorm, config.global_clipnorm)
        # Variables, not floats, so new values need no retrace (see the module docstring).
        for name in ("beta_1", "beta_2", "epsilon", "weight_decay"):
            if hasattr(self.optimizer, name):
                setattr(self.optimizer, name, keras.Variable(0.0, trainable=False, name=name))
        self.optimizer.build(self.model.trainable_variables)
        variables = self.model.trainable_variables
        self.kernel_indices = [i for i, v in enumerate(variables) if len(v.shape) >= 2]
        self.kernel_names = [variables[i].path for i in self.kernel_indices]
        self._initial_weights: dict[int, list[np.ndarray]] = {}
        self._epoch = tf.function(self._epoch_fn, jit_compile=True, reduce_retracing=True)
        self._evaluate = tf.function(self._evaluate_fn, jit_compile=True, reduce_retracing=True)
        self._traced_epoch = tf.function(self._traced_epoch_fn, jit_compile=True, reduce_retracing=True)

    def _accuracy(self, y, pred):
        if self.sparse_labels:
            hits = tf.equal(tf.cast(tf.argmax(pred, axis=-1), y.dtype), tf.reshape(y, [-1]))
        elif pred.shape[-1] == 1:  # binary: a probability per example
            hits = tf.equal(tf.cast(pred > 0.5, y.dtype), y)
        else:  # one-hot labels
            hits = tf.equal(tf.argmax(pred, axis=-1), tf.argmax(y, axis=-1))
        return tf.reduce_mean(tf.cast(hits, tf.float32))

    def _batches(self, order, *arrays):
        # Shuffle once, then take contiguous batches: slicing indices per step inside the loop made
        # each step about 7 times slower under XLA on CPU.
        used = order[: self.steps * self.batch_size]
        return [tf.reshape(tf.gather(a, used), (self.steps, self.batch_size) + tuple(a.shape[1:])) for a in arrays]

    def _step(self, xb, yb, wb, rate):
        """One optimizer step, the same in every run: returns the batch loss, the gradients, the predictions."""
        variables = self.model.trainable_variables
        self.optimizer.learning_rate = rate
        with tf.GradientTape() as tape:
            pred = self.model(xb, training=True)
            loss = tf.reduce_mean(self.loss_fn(yb, pred) * wb)
        grads = tape.gradient(loss, variables)
        self.optimizer.apply(grads, variables)
        return loss, grads, pred

    def _epoch_fn(self, x, y, weights, order, rates):
        x_batches, y_batches, w_batches = self._batches(order, x, y, weights)

        def one_step(step, total_loss, total_norm, layer_norms, total_accuracy):
            loss, grads, pred = self._step(x_batches[step], y_batches[step], w_batches[step], rates[step])
            norms = tf.stack([tf.norm(grads[i]) for i in self.kernel_indices]) if self.kernel_indices else layer_norms
            accuracy = self._accuracy(y_batches[step], pred) if self.classification else tf.constant(0.0)
            return (
                step + 1,
                total_loss + loss,
                total_norm + tf.linalg.global_norm(grads),
                layer_norms + norms,
                total_accuracy + accuracy,
            )

        # An explicit while_loop: autograph would turn the learning-rate assignment into a loop
        # variable, which XLA rejects.
        start = (
            tf.constant(0),
            tf.constant(0.0),
            tf.constant(0.0),
            tf.zeros(max(len(self.kernel_indices), 1)),
            tf.constant(0.0),
        )
        _, total_loss, total_norm, layer_norms, total_accuracy = tf.while_loop(
            lambda step, *_: step < self.steps, one_step, start
        )
        return total_loss / self.steps, total_norm / self.steps, layer_norms / self.steps, total_accuracy / self.steps

    def _traced_epoch_fn(self, x, y, weights, order, rates):
        """The same epoch, recording per step the batch loss, ``||Δw||`` and ``max |Δw_i|`` (``step_trace``)."""
        variables = self.model.trainable_variables
        x_batches, y_batches, w_batches = self._batches(order, x, y, weights)

        def one_step(step, losses, norms, largest):
            before = [tf.identity(v) for v in variables]
            loss, _, _ = self._step(x_batches[step], y_batches[step], w_batches[step], rates[step])
            delta = tf.concat([tf.reshape(v - b, [-1]) for v, b in zip(variables, before)], axis=0)
            return (
                step + 1,
                losses.write(step, loss),
                norms.write(step, tf.norm(delta)),
                largest.write(step, tf.reduce_max(tf.abs(delta))),
            )

        arrays = [tf.TensorArray(tf.float32, size=self.steps) for _ in range(3)]
        _, losses, norms, largest = tf.while_loop(
            lambda step, *_: step < self.steps, one_step, (tf.constant(0), *arrays)
        )
        return losses.stack(), norms.stack(), largest.stack()

    def _evaluate_fn(self, x, y):
        pred = self.model(x, training=False)
        loss = tf.reduce_mean(self.loss_fn(y, pred))
        return loss, (self._accuracy(y, pred) if self.classification else tf.constant(0.0))

    def reset(self, config: TrainConfig) -> None:
        if config.seed not in self._initial_weights:
            seed_everything(config.seed)
            self._initial_weights[config.seed] = self.build_model().get_weights()
        self.model.set_weights(self._initial_weights[config.seed])
        settings = {
            "beta_1": config.beta_1,
            "beta_2": config.beta_2,
            "epsilon": config.epsilon,
            "weight_decay": config.weight_decay,
        }
        tunable = {name: getattr(self.optimizer, name) for name in settings if hasattr(self.optimizer, name)}
        for variable in self.optimizer.variables:
            if variable is self.optimizer._learning_rate or any(variable is t for t in tunable.values()):
                continue
            variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
        for name, variable in tunable.items():
            variable.assign(settings[name])


_trainers: dict[tuple, _CompiledTrainer] = {}
_tensors: dict[int, tuple[Dataset, tuple]] = {}
_cache_lock = threading.Lock()


def _trainer_for(config: TrainConfig, steps: int) -> _CompiledTrainer:
    # What changes the traced computation; everything else is a variable or an input.
    key = (
        config.build_model,
        config.loss,
        config.batch_size,
        steps,
        config.optimizer,
        config.amsgrad,
        config.clipnorm,
        config.global_clipnorm,
        config.data.x_train.shape[1:],
        config.data.y_train.shape[1:],
    )
    with _cache_lock:
        if key not in _trainers:
            _trainers[key] = _CompiledTrainer(config, steps)
        return _trainers[key]


def _tensors_for(data: Dataset) -> tuple:
    with _cache_lock:
        cached = _tensors.get(id(data))
        if cached is None or cached[0] is not data:
            as_tensor = lambda a: None if a is None else tf.constant(a)  # noqa: E731
            cached = (data, tuple(as_tensor(a) for a in (data.x_train, data.y_train, data.x_val, data.y_val)))
            _tensors[id(data)] = cached
        return cached[1]


def _sample_weights(config: TrainConfig) -> tf.Tensor:
    """One weight per training example: 1, or its class's weight from ``config.class_weight``."""
    n = len(config.data.x_train)
    if not config.class_weight:
        return tf.ones(n)
    labels = config.data.y_train.reshape(n, -1)
    labels = labels.argmax(axis=1) if labels.shape[1] > 1 else labels[:, 0]
    missing = sorted(set(np.unique(labels).astype(int)) - set(config.class_weight))
    if missing:
        raise ValueError(f"class_weight has no weight for class(es) {missing}: give every class a weight.")
    return tf.constant(np.array([config.class_weight[int(label)] for label in labels], dtype="float32"))


def _validate(config: TrainConfig) -> int:
    n = len(config.data.x_train)
    if config.epochs < 1:
        raise ValueError(f"epochs must be at least 1; got {config.epochs}.")
    if not 1 <= config.batch_size <= n:
        raise ValueError(f"batch_size must be between 1 and the {n} training rows; got {config.batch_size}.")
    if not (0 <= config.beta_1 < 1 and 0 <= config.beta_2 < 1):
        raise ValueError(f"beta_1 and beta_2 must lie in [0, 1); got {config.beta_1} and {config.beta_2}.")
    if not config.epsilon > 0:
        raise ValueError(f"epsilon must be positive; got {config.epsilon}.")
    if config.weight_decay < 0 or (config.weight_decay and config.optimizer != "adamw"):
        raise ValueError("weight_decay must be 0 or positive, and needs optimizer='adamw' (decoupled decay).")
    for name in ("clipnorm", "global_clipnorm"):
        value = getattr(config, name)
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be positive or None; got {value}.")
    if config.check_inputs and not np.all(np.isfinite(config.data.x_train)):
        raise ValueError(
            f"The training inputs of {config.data.name!r} contain NaN or infinite values: "
            "impute or drop them before training (lesson 05 shows how)."
        )
    return n // config.batch_size


def train(config: TrainConfig, cancel: threading.Event | None = None) -> Generator[EpochMetrics, None, list]:
    """Train from scratch and yield each epoch's metrics as soon as it ends.

    Stops after the first epoch whose loss is NaN or infinite (that epoch is yielded, with
    ``diverged`` true). Stops early, cleanly, when ``cancel`` is set. Returns (as the generator's
    value) a copy of the final weights.
    """
    steps = _validate(config)
    trainer = _trainer_for(config, steps)
    x, y, x_val, y_val = _tensors_for(config.data)
    weights = _sample_weights(config)
    n = len(config.data.x_train)
    rates = learning_rate_table(config.learning_rate, config.epochs * steps)
    rng = np.random.default_rng(config.seed)
    with trainer.lock:
        trainer.reset(config)
        for epoch in range(1, config.epochs + 1):
            if cancel is not None and cancel.is_set():
                break
            start = time.perf_counter()
            order = rng.permutation(n) if config.shuffle else np.arange(n)
            epoch_rates = rates[(epoch - 1) * steps : epoch * steps]
            loss, grad_norm, layer_norms, accuracy = trainer._epoch(
                x, y, weights, tf.constant(order, dtype=tf.int32), tf.constant(epoch_rates)
            )
            loss = float(loss)
            diverged = not math.isfinite(loss)
            val_loss = val_accuracy = None
            if x_val is not None and not diverged:
                val_loss, val_accuracy = (float(v) for v in trainer._evaluate(x_val, y_val))
            yield EpochMetrics(
                epoch=epoch,
                loss=loss,
                val_loss=val_loss,
                learning_rate=float(epoch_rates[-1]),
                grad_norm=float(grad_norm),
                seconds=time.perf_counter() - start,
                layer_grad_norms=tuple(float(v) for v in np.asarray(layer_norms)[: len(trainer.kernel_indices)]),
                accuracy=float(accuracy) if trainer.classification else None,
                val_accuracy=val_accuracy if trainer.classification else None,
            )
            if diverged:
                break
        # A copy: the trained model itself is reset by the next run, so it is never handed out.
        return trainer.model.get_weights()


def run(
    config: TrainConfig, cancel: threading.Event | None = None, on_epoch: Callable[[EpochMetrics], None] | None = None
) -> History:
    """Train and return the whole ``History``; ``on_epoch`` is called after every epoch."""
    history = History(config)
    epochs = train(config, cancel)
    while True:
        try:
            metrics = next(epochs)
        except StopIteration as end:
            history.final_weights = end.value
            break
        history.epochs.append(metrics)
        if metrics.diverged:
            history.diverged_at = metrics.epoch
        if on_epoch is not None:
            on_epoch(metrics)
    history.cancelled = cancel is not None and cancel.is_set() and len(history.epochs) < config.epochs
    return history


@dataclass(frozen=True)
class StepTrace:
    """Per optimizer step: the batch loss, the global size of the update ``||Δw||`` and the largest
    single-weight move ``max |Δw_i|``. ``learning_rate`` is the run's (constant) rate."""

    config: TrainConfig
    loss: np.ndarray
    update_norm: np.ndarray
    largest_update: np.ndarray

    @property
    def learning_rate(self) -> float:
        return float(self.config.learning_rate)

    @property
    def epoch_loss(self) -> np.ndarray:
        """The mean batch loss per epoch: what the engine reports for the same run."""
        steps = len(self.config.data.x_train) // self.config.batch_size
        usable = (len(self.loss) // steps) * steps
        return self.loss[:usable].reshape(-1, steps).mean(axis=1)

    @property
    def largest_step_in_learning_rates(self) -> float:
        """The largest move of any weight in any step, in units of the learning rate."""
        finite = self.largest_update[np.isfinite(self.largest_update)]
        return float(finite.max() / self.learning_rate) if len(finite) else math.inf

    @property
    def diverged(self) -> bool:
        return not bool(np.all(np.isfinite(self.loss)))


def step_trace(config: TrainConfig, epochs: int | None = None) -> StepTrace:
    """Train ``config`` exactly as ``run`` does (the same compiled trainer, initial weights and batches)
    and record every step instead of every epoch; ``epochs`` trains only the first few epochs.

    Needs a constant learning rate. Unlike ``run`` it does not stop when the loss becomes NaN: lesson 04a
    looks at the steps that lead there.
    """
    if not isinstance(config.learning_rate, (int, float)):
        raise TypeError("step_trace needs a constant learning rate.")
    steps = _validate(config)
    trainer = _trainer_for(config, steps)
    x, y, _, _ = _tensors_for(config.data)
    weights = _sample_weights(config)
    n = len(config.data.x_train)
    epochs = config.epochs if epochs is None else epochs
    rates = learning_rate_table(config.learning_rate, epochs * steps)
    rng = np.random.default_rng(config.seed)
    parts = []
    with trainer.lock:
        trainer.reset(config)
        for epoch in range(epochs):
            order = rng.permutation(n) if config.shuffle else np.arange(n)
            traced = trainer._traced_epoch(
                x,
                y,
                weights,
                tf.constant(order, dtype=tf.int32),
                tf.constant(rates[epoch * steps : (epoch + 1) * steps]),
            )
            parts.append([t.numpy() for t in traced])
    loss, update_norm, largest_update = (np.concatenate(p) for p in zip(*parts))
    return StepTrace(config, loss, update_norm, largest_update)
