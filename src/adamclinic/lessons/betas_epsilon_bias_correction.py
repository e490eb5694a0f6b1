"""Lesson 04's measurements of Adam's β1, β2, ε and bias correction, and its panels.

The engine (``adamclinic.engine.training``) reports one loss per epoch. Two of this lesson's effects live at
the level of single steps (a spike in one update, the size of the very first step), so this module
adds a step-by-step trace of exactly the same run the engine trains: same initial weights, same
batches in the same order, a real ``keras.optimizers.Adam`` (or its no-bias-correction variant)
applying every update, with each step's size recorded.

It also holds:

- ``noisy_regression``: lesson 01's regression with label noise on the training targets, a cheap way
  to make minibatch gradients noisy;
- ``sgd_equivalent`` and ``large_epsilon_comparison``: the exact correspondence between Adam with a
  huge ε and momentum SGD, checked numerically against ``keras.optimizers.SGD``;
- ``reddi_trajectory``: the counterexample of Reddi, Kale & Kumar (ICLR 2018), solved by a real
  ``keras.optimizers.Adam`` on a ``keras.Variable`` projected onto [-1, 1] after every step;
- ``quiet_streak_table``, ``silent_weight_steps``, ``weight_moves`` and ``big_step_report``: when
  the big steps happen, on one weight whose gradient switches off and on (Keras's Adam in NumPy) and on
  every weight of a real run (a replay that matches ``step_trace`` bit for bit);
- the lesson's panel factories.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import bqplot as bq
import ipywidgets as w
import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from adamclinic.data import smooth_regression
from adamclinic.engine import Dataset, StepTrace, TrainConfig, make_optimizer, seed_everything, step_trace
from adamclinic.panels import PALETTE, TrainingPanel, log_slider

# ---------------------------------------------------------------------------------------------
# Data and a quadratic-loss model
# ---------------------------------------------------------------------------------------------


def noisy_regression(noise: float = 1.0, seed: int = 0) -> Dataset:
    """``smooth_regression`` with Gaussian label noise of standard deviation ``noise`` on the training
    targets (the validation targets stay clean, so validation loss still measures what was learned).

    Label noise makes every minibatch gradient noisy, which is what exposes a too-small β2.
    """
    clean = smooth_regression()
    rng = np.random.default_rng(seed)
    y = clean.y_train + noise * rng.standard_normal(clean.y_train.shape).astype("float32")
    return Dataset(clean.x_train, y, clean.x_val, clean.y_val, name=f"noisy_regression(noise={noise:g})")


def linear_model(inputs: int = 10) -> keras.Model:
    """One Dense unit, no activation: with mean squared error its loss is a quadratic bowl in the weights."""
    return keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(1)], name="linear_model")


# ---------------------------------------------------------------------------------------------
# Step-by-step trace of an engine run (``adamclinic.engine.step_trace``)
# ---------------------------------------------------------------------------------------------


def batches_of(config: TrainConfig, epochs: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The training batches of a run, in the engine's order: one seeded permutation per epoch,
    contiguous batches, the remainder dropped. Shapes (steps, batch, ...)."""
    data, size = config.data, config.batch_size
    n = len(data.x_train)
    per_epoch = n // size
    rng = np.random.default_rng(config.seed)
    xs, ys = [], []
    for _ in range(config.epochs if epochs is None else epochs):
        order = rng.permutation(n) if config.shuffle else np.arange(n)
        used = order[: per_epoch * size]
        xs.append(data.x_train[used].reshape((per_epoch, size) + data.x_train.shape[1:]))
        ys.append(data.y_train[used].reshape((per_epoch, size) + data.y_train.shape[1:]))
    return np.concatenate(xs), np.concatenate(ys)


def spike_table(
    base: TrainConfig, beta_2s: Sequence[float], seeds: Sequence[int] = range(5), threshold: float = 10.0
) -> pd.DataFrame:
    """For each β2: the largest move of any single weight in any step (in learning rates), and how many
    steps moved some weight by more than ``threshold`` learning rates, over the given seeds."""
    rows = []
    for beta_2 in beta_2s:
        traces = [step_trace(replace(base, beta_2=beta_2, seed=seed)) for seed in seeds]
        largest = [t.largest_step_in_learning_rates for t in traces]
        spikes = [int(np.sum(t.largest_update > threshold * t.learning_rate)) for t in traces]
        rows.append(
            {
                "β2": beta_2,
                "β2 < β1²": beta_2 < base.beta_1**2,
                "largest step / lr (min over seeds)": min(largest),
                "largest step / lr (max over seeds)": max(largest),
                f"steps > {threshold:g} lr (per run, mean)": float(np.mean(spikes)),
            }
        )
    return pd.DataFrame(rows)


def oscillation_report(histories: Sequence[Any]) -> pd.DataFrame:
    """Per run: the final and lowest loss, and on how many steps (epochs) the loss rose instead of falling.

    On a quadratic bowl with full-batch steps, plain descent never makes the loss rise; every rise is an
    overshoot past the bottom.
    """
    return pd.DataFrame(
        [
            {
                "run": h.config.label(),
                "final loss": h.final_loss,
                "lowest loss": float(np.min(h.loss)),
                "steps where the loss rose": int(np.sum(np.diff(h.loss) > 0)),
            }
            for h in histories
        ]
    )


def step_ratio_without_bias_correction(
    step: np.ndarray | int, beta_1: float = 0.9, beta_2: float = 0.999
) -> np.ndarray:
    """How much bigger step ``t`` is without bias correction, for a steady gradient: (1 - β1^t) / sqrt(1 - β2^t).

    At t = 1 it is (1 - β1) / sqrt(1 - β2) (3.16 with the defaults); it peaks near t = 10 and tends to 1.
    """
    t = np.asarray(step, dtype="float64")
    return (1 - beta_1**t) / np.sqrt(1 - beta_2**t)


def first_step_ratio(base: TrainConfig) -> float:
    """The size of the very first update without bias correction divided by the size with it, measured."""
    one = replace(base, epochs=1)
    with_correction = step_trace(replace(one, optimizer="adam"), epochs=1)
    without = step_trace(replace(one, optimizer="adam without bias correction"), epochs=1)
    return float(without.update_norm[0] / with_correction.update_norm[0])


def climb_report(histories: Sequence[Any]) -> pd.DataFrame:
    """``oscillation_report`` plus the longest climb: the most consecutive steps on which the loss rose.

    On the bowl, momentum's overshoot is one long climb; a high learning rate's is many short ones.
    """
    report = oscillation_report(histories)
    climbs = []
    for h in histories:
        longest = current = 0
        for rose in np.diff(h.loss) > 0:
            current = current + 1 if rose else 0
            longest = max(longest, current)
        climbs.append(longest)
    report["longest climb (steps)"] = climbs
    return report


# ---------------------------------------------------------------------------------------------
# When the big steps happen: one weight's gradient switching off and on, and every weight of a real run
# ---------------------------------------------------------------------------------------------


def numpy_adam_updates(
    gradients: np.ndarray, lr: float = 1.0, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7
) -> np.ndarray:
    """The update Keras's Adam subtracts at each step for a sequence of gradients, in float64 NumPy:
    ``lr * sqrt(1 - β2^t) / (1 - β1^t) * m / (sqrt(v) + ε)``. Shape ``(steps, ...)`` in and out."""
    g = np.asarray(gradients, dtype=np.float64)
    m, v = np.zeros(g.shape[1:]), np.zeros(g.shape[1:])
    updates = np.empty_like(g)
    for t in range(1, len(g) + 1):
        m = beta_1 * m + (1 - beta_1) * g[t - 1]
        v = beta_2 * v + (1 - beta_2) * g[t - 1] ** 2
        updates[t - 1] = lr * math.sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / (np.sqrt(v) + epsilon)
    return updates


def quiet_streak(
    beta_1: float = 0.9,
    beta_2: float = 0.5,
    burst: int = 1000,
    quiet: int = 60,
    back: int = 20,
    gradient: float = 1.0,
    epsilon: float = 1e-7,
) -> np.ndarray:
    """One weight's step sizes in learning rates: ``burst`` steps of a steady ``gradient``, then ``quiet``
    steps of gradient exactly 0 (a ReLU unit silent for a whole batch), then ``back`` steps of the
    gradient again. Keras's Adam (``numpy_adam_updates``)."""
    g = np.r_[np.full(burst, gradient), np.zeros(quiet), np.full(back, gradient)]
    return np.abs(numpy_adam_updates(g, 1.0, beta_1, beta_2, epsilon))


def quiet_streak_table(
    beta_2s: Sequence[float] = (0.5, 0.7, 0.81, 0.999),
    beta_1: float = 0.9,
    burst: int = 1000,
    quiet: int = 60,
    gradient: float = 1.0,
    epsilon: float = 1e-7,
) -> pd.DataFrame:
    """Per β2, what ``quiet_streak`` does: how fast the step changes per quiet step (against β1/√β2), how
    big it is after 30 quiet steps, the largest step while quiet, and the first step once the gradient
    is back."""
    rows = []
    for beta_2 in beta_2s:
        steps = quiet_streak(beta_1, beta_2, burst, quiet, 1, gradient, epsilon)
        silent = steps[burst : burst + quiet]
        rows.append(
            {
                "β2": beta_2,
                "β1/√β2": beta_1 / math.sqrt(beta_2),
                "step k+1 / step k while quiet": float(np.median(silent[1:11] / silent[:10])),
                "after 30 quiet steps (lr)": float(silent[29]),
                "largest while quiet (lr)": float(silent.max()),
                "at quiet step": int(np.argmax(silent)) + 1,
                "first step back (lr)": float(steps[-1]),
            }
        )
    return pd.DataFrame(rows)


def silent_weight_steps(
    silence: int = 3000, back: int = 12, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7
) -> np.ndarray:
    """The step sizes, in learning rates, of a weight whose gradient is exactly 0 for the first ``silence``
    steps of a run and 1 for the next ``back`` (a unit that wakes up late): Keras's Adam."""
    g = np.r_[np.zeros(silence), np.ones(back)]
    return np.abs(numpy_adam_updates(g, 1.0, beta_1, beta_2, epsilon))[silence:]


@dataclass(frozen=True)
class WeightMoves:
    """Every weight at every step of a run: ``moves[s, i]`` is ``|Δw_i|`` at step s+1 and ``gradients[s, i]``
    the gradient it was given (shape (steps, weights), float32)."""

    config: TrainConfig
    moves: np.ndarray
    gradients: np.ndarray

    @property
    def learning_rate(self) -> float:
        return float(self.config.learning_rate)

    @property
    def largest_update(self) -> np.ndarray:
        """Per step, the largest single-weight move: ``step_trace``'s ``largest_update``."""
        return self.moves.max(axis=1)


class _WeightTracer:
    """One model, one optimizer and one compiled epoch that records every weight's move and gradient.

    It repeats ``adamclinic.engine``'s compiled epoch operation for operation (the same batches, the same
    loss with its per-example weights of 1, the same Keras optimizer with β1, β2 and ε as variables), so
    its moves agree with ``step_trace`` bit for bit; the claim tests check that.
    """

    def __init__(self, config: TrainConfig, steps: int):
        self.steps, self.batch_size = steps, config.batch_size
        self.model = config.build_model()
        self.optimizer = make_optimizer(config.optimizer, config.amsgrad, config.clipnorm, config.global_clipnorm)
        self.tunable = {}
        for name in ("beta_1", "beta_2", "epsilon"):
            self.tunable[name] = keras.Variable(0.0, trainable=False, name=name)
            setattr(self.optimizer, name, self.tunable[name])
        self.optimizer.build(self.model.trainable_variables)
        self.loss_fn = keras.losses.get(config.loss) if isinstance(config.loss, str) else config.loss
        self.epoch = tf.function(self._epoch_fn, jit_compile=True, reduce_retracing=True)
        self.lock = threading.Lock()

    def _epoch_fn(self, x, y, weights, order, rates):
        variables = self.model.trainable_variables
        used = order[: self.steps * self.batch_size]
        x_b, y_b, w_b = (
            tf.reshape(tf.gather(a, used), (self.steps, self.batch_size) + tuple(a.shape[1:])) for a in (x, y, weights)
        )

        def one_step(step, moves, gradients):
            before = [tf.identity(v) for v in variables]
            self.optimizer.learning_rate = rates[step]
            with tf.GradientTape() as tape:
                pred = self.model(x_b[step], training=True)
                loss = tf.reduce_mean(self.loss_fn(y_b[step], pred) * w_b[step])
            grads = tape.gradient(loss, variables)
            self.optimizer.apply(grads, variables)
            delta = tf.concat([tf.reshape(v - b, [-1]) for v, b in zip(variables, before)], axis=0)
            flat = tf.concat([tf.reshape(g, [-1]) for g in grads], axis=0)
            return step + 1, moves.write(step, tf.abs(delta)), gradients.write(step, flat)

        arrays = [tf.TensorArray(tf.float32, size=self.steps) for _ in range(2)]
        _, moves, gradients = tf.while_loop(lambda step, *_: step < self.steps, one_step, (tf.constant(0), *arrays))
        return moves.stack(), gradients.stack()

    def __call__(self, config: TrainConfig, epochs: int) -> WeightMoves:
        with self.lock:
            seed_everything(config.seed)
            self.model.set_weights(config.build_model().get_weights())
            skip = [self.optimizer._learning_rate, *self.tunable.values()]
            for variable in self.optimizer.variables:
                if not any(variable is s for s in skip):
                    variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
            for name, variable in self.tunable.items():
                variable.assign(getattr(config, name))
            data, n = config.data, len(config.data.x_train)
            x, y, ones = tf.constant(data.x_train), tf.constant(data.y_train), tf.ones(n)
            rates = tf.constant(np.full(self.steps, config.learning_rate, dtype="float32"))
            rng = np.random.default_rng(config.seed)
            parts = []
            for _ in range(epochs):
                order = rng.permutation(n) if config.shuffle else np.arange(n)
                parts.append([t.numpy() for t in self.epoch(x, y, ones, tf.constant(order, dtype=tf.int32), rates)])
        moves, gradients = (np.concatenate(p) for p in zip(*parts))
        return WeightMoves(config, moves, gradients)


_weight_tracers: dict[tuple, _WeightTracer] = {}


def weight_moves(config: TrainConfig, epochs: int | None = None) -> WeightMoves:
    """Replay ``config`` (constant learning rate, no class weights) recording every weight's move and
    gradient at every step: the same run as ``step_trace``, one level finer."""
    if not isinstance(config.learning_rate, (int, float)) or config.class_weight:
        raise ValueError("weight_moves needs a constant learning rate and no class weights.")
    steps = len(config.data.x_train) // config.batch_size
    key = (config.build_model, config.optimizer, config.amsgrad, config.clipnorm, config.global_clipnorm)
    key += (config.batch_size, steps, config.loss)
    if key not in _weight_tracers:
        _weight_tracers[key] = _WeightTracer(config, steps)
    return _weight_tracers[key](config, config.epochs if epochs is None else epochs)


def big_step_report(
    base: TrainConfig, threshold: float = 10.0, seeds: Sequence[int] = range(5), streak: int = 20, window: int = 100
) -> pd.DataFrame:
    """Per seed: when the single-weight moves larger than ``threshold`` learning rates happen.

    Columns: the largest move and the first step's largest move (in lr); how many (step, weight) moves
    exceed the threshold and the first step with one; the share of them made on a step where that
    weight's gradient was exactly 0; for those moves, the median share of zero gradients over the weight's
    previous ``window`` steps, against the median weight's share over the run; and the median move on
    the first step a gradient returns after at least ``streak`` quiet steps.
    """
    rows = []
    for seed in seeds:
        trace = weight_moves(replace(base, seed=seed))
        lr, moves, quiet = trace.learning_rate, trace.moves, trace.gradients == 0
        with np.errstate(invalid="ignore"):
            big = moves > threshold * lr
        steps, weights = np.nonzero(big)
        zero_before = [quiet[max(0, s - window) : s, i].mean() if s else 0.0 for s, i in zip(steps, weights)]
        run_length = np.zeros(moves.shape[1], dtype=int)
        returns = []
        for s in range(len(moves)):
            back = ~quiet[s] & (run_length >= streak)
            returns.extend(moves[s, back] / lr)
            run_length = np.where(quiet[s], run_length + 1, 0)
        rows.append(
            {
                "seed": seed,
                "largest move (lr)": float(np.nanmax(np.where(np.isfinite(moves), moves, np.nan)) / lr),
                "step 1's largest move (lr)": float(moves[0].max() / lr),
                f"moves > {threshold:g} lr": int(big.sum()),
                f"first step with a move > {threshold:g} lr": int(steps.min()) + 1 if len(steps) else None,
                "share made while the weight's gradient is 0": float(quiet[big].mean()) if len(steps) else None,
                f"mover's zero gradients over its previous {window} steps (median)": (
                    float(np.median(zero_before)) if len(steps) else None
                ),
                "median weight's zero gradients over the run": float(np.median(quiet.mean(axis=0))),
                f"first move after ≥ {streak} quiet steps (lr, median)": (
                    float(np.median(returns)) if returns else None
                ),
            }
        )
    return pd.DataFrame(rows).set_index("seed")


# ---------------------------------------------------------------------------------------------
# A large ε turns Adam into momentum SGD
# ---------------------------------------------------------------------------------------------


def sgd_equivalent(learning_rate: float, beta_1: float, epsilon: float) -> dict[str, float]:
    """The ``keras.optimizers.SGD`` settings that Adam becomes when ε is far larger than sqrt(v).

    Keras's Adam steps ``-lr * c_t * m_t / (sqrt(v_t) + ε)`` with ``m_t = β1 m + (1 - β1) g`` and the
    bias-correction factor ``c_t = sqrt(1 - β2^t) / (1 - β1^t)``. When ε ≫ sqrt(v) that is
    ``-(lr / ε) * c_t * m_t``. Keras's SGD with momentum μ steps ``u_t = μ u - η g``. With μ = β1 and
    η = lr (1 - β1) / ε, ``u_t = -(lr / ε) m_t``: the same step up to the factor c_t (which is exactly 1
    without bias correction). For a steady gradient either one moves ``η / (1 - μ) = lr / ε`` per unit
    gradient: momentum SGD with an effective learning rate lr / ε.
    """
    return {"momentum": beta_1, "learning_rate": float(f"{learning_rate * (1 - beta_1) / epsilon:.12g}")}


def bias_correction_factor(step: np.ndarray | int, beta_1: float = 0.9, beta_2: float = 0.999) -> np.ndarray:
    """Keras's ``c_t = sqrt(1 - β2^t) / (1 - β1^t)``, the factor bias correction puts on each step."""
    return 1.0 / step_ratio_without_bias_correction(step, beta_1, beta_2)


def bias_correction_table(steps: Sequence[int], beta_1: float = 0.9, beta_2: float = 0.999) -> pd.DataFrame:
    """Per step: Keras's bias-correction factor c_t and how many times bigger the step is without it."""
    steps = np.asarray(steps)
    return pd.DataFrame(
        {
            "step": steps,
            "c_t (correction factor)": bias_correction_factor(steps, beta_1, beta_2).round(3),
            "step without correction / with": step_ratio_without_bias_correction(steps, beta_1, beta_2).round(2),
        }
    )


def large_epsilon_comparison(
    base: TrainConfig, epsilon: float = 1e4, learning_rate: float = 100.0, steps: int = 300
) -> pd.DataFrame:
    """Check ``sgd_equivalent`` numerically on ``base``'s model and batches.

    Three rows, each comparing an Adam with this huge ε against ``keras.optimizers.SGD`` with the
    equivalent momentum and learning rate, from the same initial weights on the same batches:

    - Adam without bias correction, each optimizer on its own trajectory: the largest weight
      difference after ``steps`` steps, relative to how far the weights travelled (≈ 0: identical);
    - Keras's Adam, fed the same gradients as SGD at every step: the largest difference between
      Adam's step and ``c_t`` times SGD's, relative to the step's size (≈ 0: they differ by exactly c_t);
    - Keras's Adam on its own trajectory: the same relative weight difference as the first row (not
      small: the c_t factor is a slow warmup that SGD does not have).
    """
    x_batches, y_batches = batches_of(replace(base, epochs=steps * base.batch_size // len(base.data.x_train) + 1))
    x_batches, y_batches = tf.constant(x_batches[:steps]), tf.constant(y_batches[:steps])
    loss_fn = keras.losses.get(base.loss) if isinstance(base.loss, str) else base.loss
    seed_everything(base.seed)
    start = base.build_model().get_weights()
    sgd_settings = sgd_equivalent(learning_rate, base.beta_1, epsilon)

    def adam(kind: str) -> keras.optimizers.Optimizer:
        optimizer = make_optimizer(kind)
        optimizer.learning_rate = learning_rate
        optimizer.beta_1, optimizer.beta_2, optimizer.epsilon = base.beta_1, base.beta_2, epsilon
        return optimizer

    def fresh_model() -> keras.Model:
        model = base.build_model()
        model.set_weights(start)
        return model

    def own_trajectory(optimizer: keras.optimizers.Optimizer) -> list[np.ndarray]:
        model = fresh_model()
        variables = model.trainable_variables

        @tf.function
        def step(xb, yb):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(loss_fn(yb, model(xb, training=True)))
            optimizer.apply(tape.gradient(loss, variables), variables)

        for i in range(steps):
            step(x_batches[i], y_batches[i])
        return model.get_weights()

    def relative_gap(a: list[np.ndarray], b: list[np.ndarray]) -> float:
        gap = max(float(np.abs(x - y).max()) for x, y in zip(a, b))
        travelled = max(float(np.abs(y - s).max()) for y, s in zip(b, start))
        return gap / travelled

    sgd_weights = own_trajectory(keras.optimizers.SGD(**sgd_settings))
    no_bc_weights = own_trajectory(adam("adam without bias correction"))
    adam_weights = own_trajectory(adam("adam"))

    # Same gradients into both optimizers. Each applies its step to its own variables reset to zero
    # just before, so the new values are the step itself (a difference of two float32 weights of
    # size 0.3 could not resolve a step of 1e-7). Adam's step then moves the model, whose weights
    # give the next gradient.
    model = fresh_model()
    variables = model.trainable_variables
    adam_steps = [keras.Variable(np.zeros(v.shape, "float32")) for v in variables]
    sgd_steps = [keras.Variable(np.zeros(v.shape, "float32")) for v in variables]
    optimizer, sgd = adam("adam"), keras.optimizers.SGD(**sgd_settings)
    optimizer.build(adam_steps)
    sgd.build(sgd_steps)

    @tf.function
    def paired_step(xb, yb):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(loss_fn(yb, model(xb, training=True)))
        grads = tape.gradient(loss, variables)
        for a, b in zip(adam_steps, sgd_steps):
            a.assign(tf.zeros_like(a))
            b.assign(tf.zeros_like(b))
        optimizer.apply(grads, adam_steps)
        sgd.apply(grads, sgd_steps)
        for v, a in zip(variables, adam_steps):
            v.assign_add(a)
        return (
            tf.concat([tf.reshape(a, [-1]) for a in adam_steps], 0),
            tf.concat([tf.reshape(b, [-1]) for b in sgd_steps], 0),
        )

    deviation = 0.0
    factors = bias_correction_factor(np.arange(1, steps + 1), base.beta_1, base.beta_2)
    for i in range(steps):
        adam_step, sgd_step = (t.numpy() for t in paired_step(x_batches[i], y_batches[i]))
        expected = factors[i] * sgd_step
        # Relative to the step's largest element: elementwise ratios of near-cancelled momenta are
        # float32 round-off, not a difference between the methods.
        deviation = max(deviation, float(np.abs(adam_step - expected).max() / np.abs(expected).max()))

    label = f"Adam(lr={learning_rate:g}, ε={epsilon:g})"
    sgd_label = f"SGD(lr={sgd_settings['learning_rate']:.3g}, momentum={sgd_settings['momentum']:g})"
    return pd.DataFrame(
        [
            {
                "comparison": f"{label} without bias correction vs {sgd_label}, own trajectories",
                "measure": "weight gap / distance travelled",
                "value": relative_gap(no_bc_weights, sgd_weights),
            },
            {
                "comparison": f"{label} vs {sgd_label}, same gradients",
                "measure": "largest |Adam step - c_t SGD step| / largest |c_t SGD step|",
                "value": deviation,
            },
            {
                "comparison": f"{label} vs {sgd_label}, own trajectories",
                "measure": "weight gap / distance travelled",
                "value": relative_gap(adam_weights, sgd_weights),
            },
        ]
    )


# ---------------------------------------------------------------------------------------------
# Reddi, Kale & Kumar (ICLR 2018): a convex problem on which Adam converges to the worst point
# ---------------------------------------------------------------------------------------------


def reddi_gradients(steps: int, C: float = 3.0, period: int = 3, small: float = -1.0) -> np.ndarray:
    """The gradients of the online problem ``f_t(x) = C x`` when ``t mod period == 1``, else ``small * x``.

    With period 3 and small = -1 (the paper's Section 3), the three-step total is (C - 2) x: for C > 2
    the best fixed point of [-1, 1] is x = -1 and the worst is x = +1.
    """
    t = np.arange(1, steps + 1)
    return np.where(t % period == 1, C, small).astype("float32")


@dataclass(frozen=True)
class ReddiRun:
    """One trajectory on the online problem: ``x[t]`` is the point after step t+1 (after projection)."""

    x: np.ndarray
    gradients: np.ndarray
    amsgrad: bool

    @property
    def end(self) -> float:
        """Where the run ends: the mean of x over the last period of the problem (x wobbles within one)."""
        return float(np.mean(self.x[-self._period() :]))

    def _period(self) -> int:
        big = np.flatnonzero(self.gradients == self.gradients.max())
        return int(big[1] - big[0]) if len(big) > 1 else 1

    @property
    def average_regret(self) -> float:
        """(1/T) Σ f_t(x_t) - min over fixed x in [-1, 1] of (1/T) Σ f_t(x): tends to 0 for a method that converges."""
        points = np.concatenate([[self.x0], self.x[:-1]])  # x_t is the point the loss f_t is paid at
        total = float(np.sum(self.gradients * points))
        best = -abs(float(np.sum(self.gradients)))
        return (total - best) / len(self.gradients)

    @property
    def x0(self) -> float:
        return float(self._x0)

    _x0: float = 0.0


class _ReddiSolver:
    """A real ``keras.optimizers.Adam`` on one ``keras.Variable``, stepping and projecting onto [-1, 1]
    inside one compiled loop; β1, β2 and ε are variables, so a slider move costs no retrace."""

    def __init__(self, amsgrad: bool):
        self.x = keras.Variable(0.0, name="x")
        self.optimizer = keras.optimizers.Adam(learning_rate=0.1, amsgrad=amsgrad)
        self.tunable = {}
        for name in ("beta_1", "beta_2", "epsilon"):
            variable = keras.Variable(0.0, trainable=False, name=name)
            setattr(self.optimizer, name, variable)
            self.tunable[name] = variable
        self.optimizer.build([self.x])
        self._run = tf.function(self._run_fn, jit_compile=True, reduce_retracing=True)
        self.lock = threading.Lock()

    def _run_fn(self, gradients, rates):
        steps = tf.shape(gradients)[0]

        def one_step(step, xs):
            self.optimizer.learning_rate = rates[step]
            self.optimizer.apply([gradients[step]], [self.x])
            self.x.assign(tf.clip_by_value(self.x, -1.0, 1.0))  # projection onto the feasible set
            return step + 1, xs.write(step, self.x.value)

        _, xs = tf.while_loop(
            lambda step, _: step < steps, one_step, (tf.constant(0), tf.TensorArray(tf.float32, size=steps))
        )
        return xs.stack()

    def run(
        self, gradients: np.ndarray, rates: np.ndarray, x0: float, beta_1: float, beta_2: float, epsilon: float
    ) -> np.ndarray:
        with self.lock:
            self.x.assign(x0)
            skip = [self.optimizer._learning_rate, *self.tunable.values()]
            for variable in self.optimizer.variables:
                if not any(variable is s for s in skip):
                    variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
            for name, value in (("beta_1", beta_1), ("beta_2", beta_2), ("epsilon", epsilon)):
                self.tunable[name].assign(value)
            return self._run(tf.constant(gradients), tf.constant(rates)).numpy()


_reddi_solvers: dict[bool, _ReddiSolver] = {}


def reddi_trajectory(
    C: float = 3.0,
    beta_1: float = 0.0,
    beta_2: float | None = None,
    amsgrad: bool = False,
    steps: int = 3000,
    alpha: float = 0.5,
    x0: float = 0.0,
    epsilon: float = 1e-7,
    period: int = 3,
    small: float = -1.0,
) -> ReddiRun:
    """Solve the Reddi-Kale-Kumar online problem with Keras's Adam (or AMSGrad) and step size α/√t.

    ``beta_2=None`` takes the paper's choice 1 / (1 + C²), with β1 = 0; for this setting the paper
    proves that Adam's average regret does not vanish, and its iterate heads for x = +1.
    """
    if beta_2 is None:
        beta_2 = 1.0 / (1.0 + C * C)
    gradients = reddi_gradients(steps, C, period, small)
    rates = (alpha / np.sqrt(np.arange(1, steps + 1))).astype("float32")
    if amsgrad not in _reddi_solvers:
        _reddi_solvers[amsgrad] = _ReddiSolver(amsgrad)
    x = _reddi_solvers[amsgrad].run(gradients, rates, x0, beta_1, beta_2, epsilon)
    return ReddiRun(x=x, gradients=gradients, amsgrad=amsgrad, _x0=x0)


# ---------------------------------------------------------------------------------------------
# Panels and plots
# ---------------------------------------------------------------------------------------------

BETA_1_CHOICES = (0.0, 0.5, 0.9, 0.95, 0.99, 0.995, 0.999)
BETA_2_CHOICES = (0.5, 0.6, 0.7, 0.8, 0.9, 0.99, 0.999, 0.9999)
BIAS_CORRECTION = {"on": "adam", "off": "adam without bias correction"}


def _selection_slider(options: Sequence[Any], value: Any, description: str) -> w.SelectionSlider:
    return w.SelectionSlider(
        options=list(options),
        value=value,
        description=description,
        continuous_update=False,
        style={"description_width": "initial"},
        layout=w.Layout(width="420px"),
    )


def _figure(
    marks: list, x_scale, y_scale, x_label: str, y_label: str, title: str, y_format: str = ".0e", width: str = "680px"
) -> bq.Figure:
    return bq.Figure(
        marks=marks,
        axes=[
            bq.Axis(scale=x_scale, label=x_label, grid_lines="none"),
            bq.Axis(scale=y_scale, side="left", label=y_label, tick_format=y_format),
        ],
        title=title,
        legend_location="top-right",
        animation_duration=0,
        layout=w.Layout(width=width, height="380px"),
        fig_margin={"top": 50, "bottom": 45, "left": 70, "right": 20},
    )


class StepSizeView:
    """An ``EpochView``: the largest single-weight move of each step, in learning rates, drawn epoch by
    epoch beside the loss plot.

    The engine reports epochs, not steps, so at the start of each run this view traces the same run
    step by step with ``step_trace`` (same initial weights, same batches, the same Keras optimizer; the
    epoch losses agree with the engine's to float32 round-off) and reveals one epoch of it whenever the
    engine finishes that epoch. Each point is the largest move within a bin of ``bin_steps`` steps.
    """

    def __init__(self, epochs: int, keep: int = 5, bin_steps: int = 16):
        self.keep, self.bin_steps = keep, bin_steps
        self.x_scale = bq.LinearScale(min=0.0, max=float(epochs))
        self.y_scale = bq.LogScale()
        self.lines: list[bq.Lines] = []
        self.traces: list[StepTrace] = []
        self._trace: StepTrace | None = None
        self._line: bq.Lines | None = None
        self.widget = _figure(
            [],
            self.x_scale,
            self.y_scale,
            "epoch",
            "largest |Δw| / lr",
            "Largest single-weight step",
            y_format=".0e",
            width="520px",
        )

    def start(self, config: TrainConfig, colour: str) -> None:
        self._trace = step_trace(config)
        self.traces = (self.traces + [self._trace])[-self.keep :]
        self._line = bq.Lines(
            x=[], y=[], scales={"x": self.x_scale, "y": self.y_scale}, colors=[colour], stroke_width=1.5
        )
        self.lines = (self.lines + [self._line])[-self.keep :]
        self.widget.marks = list(self.lines)

    def update(self, metrics: Any) -> None:
        trace, line = self._trace, self._line
        if trace is None or line is None:
            return
        per_epoch = len(trace.config.data.x_train) // trace.config.batch_size
        chunk = trace.largest_update[(metrics.epoch - 1) * per_epoch : metrics.epoch * per_epoch] / trace.learning_rate
        size = max(1, min(self.bin_steps, per_epoch))
        bins = chunk[: len(chunk) // size * size].reshape(-1, size)
        peaks = np.nanmax(np.where(np.isfinite(bins), bins, np.nan), axis=1) if len(bins) else np.array([])
        x = metrics.epoch - 1 + (np.arange(len(peaks)) + 1) / max(len(peaks), 1)
        keep = np.isfinite(peaks) & (peaks > 0)
        with line.hold_sync():
            line.x = list(line.x) + list(x[keep])
            line.y = list(line.y) + list(peaks[keep])

    def clear(self) -> None:
        self.lines, self.traces = [], []
        self.widget.marks = []


def moments_config(base: TrainConfig, values: dict[str, Any]) -> TrainConfig:
    """The panel's controls to a config: β1, β2, ε as they are, the bias-correction toggle to an optimizer."""
    return replace(
        base,
        beta_1=values["beta_1"],
        beta_2=values["beta_2"],
        epsilon=values["epsilon"],
        optimizer=BIAS_CORRECTION[values["bias correction"]],
    )


def moments_panel(base: TrainConfig, **panel_options: Any) -> TrainingPanel:
    """The lesson's main panel: β1, β2 (sliders over typical values), ε (log slider) and a bias-correction
    toggle; beside the loss, the largest single-weight step of every step."""
    controls = {
        "beta_1": _selection_slider(BETA_1_CHOICES, base.beta_1, "β1"),
        "beta_2": _selection_slider(BETA_2_CHOICES, base.beta_2, "β2"),
        "epsilon": log_slider("epsilon", base.epsilon, 1e-8, 10.0, description="ε"),
        "bias correction": w.ToggleButtons(options=list(BIAS_CORRECTION), value="on", description="bias correction"),
    }
    return TrainingPanel(base, controls, make_config=moments_config, views=[StepSizeView(base.epochs)], **panel_options)


def beta_1_panel(base: TrainConfig, **panel_options: Any) -> TrainingPanel:
    """One β1 slider, for the quadratic bowl (``linear_model``), where momentum's overshoot shows."""
    panel_options.setdefault("min_seconds_per_epoch", 0.005)
    return TrainingPanel(base, {"beta_1": _selection_slider(BETA_1_CHOICES, base.beta_1, "β1")}, **panel_options)


def plot_step_sizes(traces: Sequence[StepTrace], title: str = "Largest single-weight step") -> bq.Figure:
    """Static chart: each trace's largest single-weight move per step, in learning rates (log scale)."""
    x_scale, y_scale = bq.LinearScale(), bq.LogScale()
    marks = []
    for index, trace in enumerate(traces):
        y = trace.largest_update / trace.learning_rate
        keep = np.isfinite(y) & (y > 0)
        marks.append(
            bq.Lines(
                x=np.arange(1, len(y) + 1)[keep],
                y=y[keep],
                scales={"x": x_scale, "y": y_scale},
                colors=[PALETTE[index % len(PALETTE)]],
                labels=[trace.config.label()],
                display_legend=True,
                stroke_width=1.0,
            )
        )
    return _figure(marks, x_scale, y_scale, "step", "largest |Δw| / lr", title)


REDDI_BETA_2 = (("1/(1+C²)", "paper"), ("0.3", 0.3), ("0.5", 0.5), ("0.7", 0.7), ("0.9", 0.9), ("0.999", 0.999))


class ReddiPanel:
    """Sliders for C and β2 over the Reddi-Kale-Kumar problem; each move re-solves it with Keras's Adam and
    with AMSGrad (``reddi_trajectory``, a pure function) and redraws both trajectories."""

    def __init__(self, C: float = 3.0, steps: int = 3000):
        self.steps = steps
        self.C = w.FloatSlider(
            value=C,
            min=2.5,
            max=10.0,
            step=0.5,
            description="C",
            continuous_update=False,
            style={"description_width": "initial"},
            layout=w.Layout(width="420px"),
        )
        self.beta_2 = _selection_slider(REDDI_BETA_2, "paper", "β2")
        x_scale, y_scale = bq.LogScale(), bq.LinearScale(min=-1.05, max=1.05)
        self.lines = {
            amsgrad: bq.Lines(
                x=[],
                y=[],
                scales={"x": x_scale, "y": y_scale},
                colors=[PALETTE[i]],
                labels=["AMSGrad" if amsgrad else "Adam"],
                display_legend=True,
                stroke_width=1.5,
            )
            for i, amsgrad in enumerate((False, True))
        }
        self.figure = _figure(
            list(self.lines.values()),
            x_scale,
            y_scale,
            "step t",
            "x after step t",
            "Reddi, Kale & Kumar's problem: the best point is x = -1",
            y_format=".1f",
        )
        self.status = w.HTML()
        self.runs: dict[bool, ReddiRun] = {}
        for control in (self.C, self.beta_2):
            control.observe(lambda _: self.update(), names="value")
        self.widget = w.VBox([self.C, self.beta_2, self.figure, self.status])

    def update(self) -> dict[bool, ReddiRun]:
        steps = np.arange(1, self.steps + 1)
        shown = np.unique(np.geomspace(1, self.steps, 600).astype(int)) - 1  # a log-spaced sample of the steps
        beta_2 = 1 / (1 + self.C.value**2) if self.beta_2.value == "paper" else self.beta_2.value
        for amsgrad, line in self.lines.items():
            run_ = reddi_trajectory(C=self.C.value, beta_2=beta_2, amsgrad=amsgrad, steps=self.steps)
            self.runs[amsgrad] = run_
            with line.hold_sync():
                line.x, line.y = steps[shown], run_.x[shown]
        self.status.value = (
            f"C = {self.C.value:g}, β1 = 0, β2 = {beta_2:.3g}, step 0.5/√t: "
            f"Adam ends at x = {self.runs[False].end:+.3f} (average regret {self.runs[False].average_regret:.3f}), "
            f"AMSGrad at x = {self.runs[True].end:+.3f} (average regret {self.runs[True].average_regret:.3f})"
        )
        return self.runs

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def reddi_panel(C: float = 3.0, steps: int = 3000) -> ReddiPanel:
    """The counterexample with sliders; solved once at its defaults so the plot is never empty."""
    panel = ReddiPanel(C, steps)
    panel.update()
    return panel


# ---------------------------------------------------------------------------------------------
# Measurements the exercise's hidden tests judge with (exercise 04)
# ---------------------------------------------------------------------------------------------


def spikes_and_validation_loss(config: TrainConfig, seeds: Sequence[int] = (0, 1, 2)) -> dict[str, np.ndarray]:
    """Per seed, retrain ``config`` twice from the same start: step by step (``step_trace``) for the largest
    single-weight move in learning rates, and with the engine for the final validation loss.

    A run whose loss or validation loss is not finite reports ``inf`` for both, so it fails any bar.
    """
    from adamclinic.engine import run

    largest, val_losses = [], []
    for seed in seeds:
        seeded = replace(config, seed=seed)
        trace, history = step_trace(seeded), run(seeded)
        val = float(history.val_loss[-1])
        broken = trace.diverged or not math.isfinite(val)
        largest.append(math.inf if broken else trace.largest_step_in_learning_rates)
        val_losses.append(math.inf if broken else val)
    return {
        "largest step / lr": np.asarray(largest, dtype=float),
        "final validation loss": np.asarray(val_losses, dtype=float),
    }


def reddi_ends(
    beta_1: float = 0.0,
    beta_2: float | None = None,
    epsilon: float = 1e-7,
    amsgrad: bool = False,
    C: float = 3.0,
    starts: Sequence[float] = (-1.0, 0.0, 1.0),
    steps: int = 3000,
) -> np.ndarray:
    """Where Keras's Adam with these settings ends on the Reddi-Kale-Kumar problem, from each start:
    the best point is -1, the worst +1 (step size 0.5/√t, projected onto [-1, 1])."""
    return np.array(
        [
            reddi_trajectory(
                C=C, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, amsgrad=amsgrad, steps=steps, x0=x0
            ).end
            for x0 in starts
        ]
    )
