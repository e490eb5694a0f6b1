"""Lesson 04a's measurements of Adam's β1 and β2, and its panels.

The engine (``adamclinic.engine.training``) reports one loss per epoch. This lesson's spikes live at the
level of single steps, so it reads the engine's step-by-step trace (``adamclinic.engine.step_trace``) of
exactly the same run: same initial weights, same batches in the same order, a real
``keras.optimizers.Adam`` applying every update, with each step's size recorded.

It also holds:

- ``noisy_regression``: lesson 01's regression with label noise on the training targets, a cheap way
  to make minibatch gradients noisy;
- ``linear_model`` and ``climb_report``: a quadratic bowl on which momentum's overshoot shows;
- ``quiet_streak_table``, ``weight_moves`` and ``big_step_report``: when the big steps happen, on one
  weight whose gradient switches off and on (Keras's Adam in NumPy) and on every weight of a real run
  (a replay that matches ``step_trace`` bit for bit);
- the lesson's panels, its opening figure, and the measurement exercise 04's hidden tests judge with.

Lesson 04b (``epsilon_and_bias_correction``) continues with ε, bias correction and AMSGrad.
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
from adamclinic.engine import Dataset, StepTrace, TrainConfig, make_optimizer, run, seed_everything, step_trace
from adamclinic.models import small_relu_net
from adamclinic.panels import PALETTE, Chart, TrainingPanel, epoch_axis, fit_axis, selection_slider, ys

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
# β1 near 1: overshoot on the bowl
# ---------------------------------------------------------------------------------------------


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
# β2 below β1²: step spikes, and when they happen
# ---------------------------------------------------------------------------------------------


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
# Panels and plots
# ---------------------------------------------------------------------------------------------

BETA_1_CHOICES = (0.0, 0.5, 0.9, 0.95, 0.99, 0.995, 0.999)


BETA_2_CHOICES = (0.5, 0.6, 0.7, 0.8, 0.9, 0.99, 0.999, 0.9999)


def _figure(marks: list, x_scale, y_scale, x_label: str, y_label: str, title: str, width: str = "680px") -> bq.Figure:
    """A chart with a log y axis whose range and ticks follow its lines (``fit_axis``), and no legend in the
    plot area (``Chart`` or the panel's legend names the lines, under the chart)."""
    figure = bq.Figure(
        marks=marks,
        axes=[
            bq.Axis(scale=x_scale, label=x_label, grid_lines="none"),
            bq.Axis(scale=y_scale, side="left", label=y_label, tick_format=".3~g"),
        ],
        title=title,
        animation_duration=0,
        layout=w.Layout(width=width, height="380px"),
        fig_margin={"top": 50, "bottom": 45, "left": 75, "right": 20},
    )
    _fit_y(figure)
    return figure


def _fit_y(figure: bq.Figure) -> None:
    fit_axis(figure.axes[1].scale, figure.axes[1], ys(figure.marks))


class StepSizeView:
    """An ``EpochView``: the largest single-weight move of each step, in learning rates, drawn epoch by
    epoch beside the loss plot.

    The engine reports epochs, not steps, so at the start of each run this view traces the same run
    step by step with ``step_trace`` (same initial weights, same batches, the same Keras optimizer; the
    epoch losses agree with the engine's to float32 round-off) and reveals one epoch of it whenever the
    engine finishes that epoch. Each point is the largest move within a bin of ``bin_steps`` steps. Each
    line carries its run's label and colour (the panel's legend, under the charts, names them).
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
            "largest |Δw| / learning rate",
            "Largest single-weight step",
            width="520px",
        )
        self.widget.axes = [epoch_axis(self.x_scale, epochs), self.widget.axes[1]]

    def start(self, config: TrainConfig, colour: str) -> None:
        self._trace = step_trace(config)
        self.traces = (self.traces + [self._trace])[-self.keep :]
        self._line = bq.Lines(
            x=[],
            y=[],
            scales={"x": self.x_scale, "y": self.y_scale},
            colors=[colour],
            labels=[config.label()],
            stroke_width=1.5,
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
        _fit_y(self.widget)

    def clear(self) -> None:
        self.lines, self.traces = [], []
        self.widget.marks = []


def _dropdown(options: Sequence[Any], value: Any, description: str) -> w.Dropdown:
    return w.Dropdown(
        options=list(options),
        value=value,
        description=description,
        style={"description_width": "initial"},
        layout=w.Layout(width="160px"),
    )


def betas_panel(base: TrainConfig, **panel_options: Any) -> TrainingPanel:
    """The lesson's main panel: β1 and β2 (menus of typical values); beside the loss, the largest
    single-weight step of every step."""
    controls = {
        "beta_1": _dropdown(BETA_1_CHOICES, base.beta_1, "β1"),
        "beta_2": _dropdown(BETA_2_CHOICES, base.beta_2, "β2"),
    }
    return TrainingPanel(base, controls, views=[StepSizeView(base.epochs)], **panel_options)


def beta_1_panel(base: TrainConfig, **panel_options: Any) -> TrainingPanel:
    """One β1 slider, for the quadratic bowl (``linear_model``), where momentum's overshoot shows."""
    panel_options.setdefault("min_seconds_per_epoch", 0.005)
    return TrainingPanel(base, {"beta_1": selection_slider(BETA_1_CHOICES, base.beta_1, "β1")}, **panel_options)


def plot_step_sizes(traces: Sequence[StepTrace], title: str = "Largest single-weight step") -> Chart:
    """Static chart: each trace's largest single-weight move per step, in learning rates (log scale), with
    a legend under it naming each run."""
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
                stroke_width=1.0,
            )
        )
    return Chart(_figure(marks, x_scale, y_scale, "optimizer step", "largest |Δw| / learning rate", title))


# ---------------------------------------------------------------------------------------------
# Measurements the exercise's hidden tests judge with (exercise 04, Part A)
# ---------------------------------------------------------------------------------------------


def spikes_and_validation_loss(config: TrainConfig, seeds: Sequence[int] = (0, 1, 2)) -> dict[str, np.ndarray]:
    """Per seed, retrain ``config`` twice from the same start: step by step (``step_trace``) for the largest
    single-weight move in learning rates, and with the engine for the final validation loss.

    A run whose loss or validation loss is not finite reports ``inf`` for both, so it fails any bar.
    """
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


# ---------------------------------------------------------------------------------------------
# The picture that opens the lesson (adamclinic.figures)
# ---------------------------------------------------------------------------------------------

FIGURE = {"title": "Largest single-weight step per epoch (seed 0)", "y_label": "largest step (learning rates)"}


def figure_curves() -> dict[str, np.ndarray]:
    """Per epoch, the largest move of any single weight in learning rates, at β2 = 0.5, 0.7 and 0.999: the
    lesson's main run (seed 0), step by step (``step_trace``)."""
    base = TrainConfig(
        data=smooth_regression(), build_model=small_relu_net, learning_rate=1e-3, epochs=30, batch_size=8, seed=0
    )
    labels = {0.5: "β2 = 0.5 (below β1² = 0.81)", 0.7: "β2 = 0.7 (below β1²)", 0.999: "β2 = 0.999 (the default)"}
    curves = {}
    for beta_2, label in labels.items():
        trace = step_trace(replace(base, beta_2=beta_2))
        curves[label] = trace.largest_update.reshape(base.epochs, -1).max(axis=1) / trace.learning_rate
    return curves
