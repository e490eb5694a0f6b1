"""Lesson 04b's measurements of Adam's ε, bias correction and AMSGrad, and its panels.

- ``step_ratio_without_bias_correction``, ``bias_correction_table``, ``first_step_ratio``: how big the
  first steps are without bias correction, computed and measured on a real run;
- ``silent_weight_steps``: the steps of a weight that wakes up late, when the correction is spent;
- ``sgd_equivalent`` and ``large_epsilon_comparison``: the exact correspondence between Adam with a
  huge ε and momentum SGD, checked numerically against ``keras.optimizers.SGD``;
- ``reddi_trajectory``: the counterexample of Reddi, Kale & Kumar (ICLR 2018), solved by a real
  ``keras.optimizers.Adam`` on a ``keras.Variable`` projected onto [-1, 1] after every step;
- the lesson's panels, its opening figure, and the measurements exercise 04's hidden tests judge with.

Lesson 04a (``beta1_and_beta2``) comes first: β1, β2 and the step spikes below β1².
"""

from __future__ import annotations

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
from adamclinic.engine import TrainConfig, make_optimizer, run, seed_everything, step_trace
from adamclinic.models import small_relu_net
from adamclinic.panels import PALETTE, Legend, TrainingPanel, axis_ticks, log_slider, selection_slider

# ---------------------------------------------------------------------------------------------
# Bias correction: the size of the first steps
# ---------------------------------------------------------------------------------------------


def step_ratio_without_bias_correction(
    step: np.ndarray | int, beta_1: float = 0.9, beta_2: float = 0.999
) -> np.ndarray:
    """How much bigger step ``t`` is without bias correction, for a steady gradient: (1 - β1^t) / sqrt(1 - β2^t).

    At t = 1 it is (1 - β1) / sqrt(1 - β2) (3.16 with the defaults); it peaks near t = 10 and tends to 1.
    """
    t = np.asarray(step, dtype="float64")
    return (1 - beta_1**t) / np.sqrt(1 - beta_2**t)


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


def first_step_ratio(base: TrainConfig) -> float:
    """The size of the very first update without bias correction divided by the size with it, measured."""
    one = replace(base, epochs=1)
    with_correction = step_trace(replace(one, optimizer="adam"), epochs=1)
    without = step_trace(replace(one, optimizer="adam without bias correction"), epochs=1)
    return float(without.update_norm[0] / with_correction.update_norm[0])


def silent_weight_steps(
    silence: int = 3000, back: int = 12, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7
) -> np.ndarray:
    """The step sizes, in learning rates, of a weight whose gradient is exactly 0 for the first ``silence``
    steps of a run and 1 for the next ``back`` (a unit that wakes up late), under Keras's Adam.

    Zero gradients leave ``m`` and ``v`` at exactly 0, so the moments start afresh at step ``silence + 1``
    (``m = 1 - β1^k``, ``v = 1 - β2^k`` after ``k`` steps back) while the correction ``c_t`` counts the whole
    run: step ``silence + k`` is ``c_t (1 - β1^k) / (sqrt(1 - β2^k) + ε)``, the uncorrected step of a fresh
    start times ``c_t`` (about 1 late in a run)."""
    k = np.arange(1, back + 1, dtype="float64")
    fresh = (1 - beta_1**k) / (np.sqrt(1 - beta_2**k) + epsilon)
    return bias_correction_factor(silence + k, beta_1, beta_2) * fresh


# ---------------------------------------------------------------------------------------------
# A large ε turns Adam into momentum SGD
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
# Panels
# ---------------------------------------------------------------------------------------------

BIAS_CORRECTION = {"on": "adam", "off": "adam without bias correction"}


def denominator_config(base: TrainConfig, values: dict[str, Any]) -> TrainConfig:
    """The panel's controls to a config: the learning rate and ε as they are, the bias-correction toggle to an
    optimizer."""
    return replace(
        base,
        learning_rate=values["learning_rate"],
        epsilon=values["epsilon"],
        optimizer=BIAS_CORRECTION[values["bias correction"]],
    )


def epsilon_panel(base: TrainConfig, **panel_options: Any) -> TrainingPanel:
    """The lesson's main panel: the learning rate and ε (log sliders) and a bias-correction toggle."""
    controls = {
        "learning_rate": log_slider("learning_rate", base.learning_rate, 1e-4, 1.0, description="learning rate"),
        "epsilon": log_slider("epsilon", base.epsilon, 1e-8, 10.0, description="ε"),
        "bias correction": w.ToggleButtons(options=list(BIAS_CORRECTION), value="on", description="bias correction"),
    }
    return TrainingPanel(base, controls, make_config=denominator_config, **panel_options)


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
        self.beta_2 = selection_slider(REDDI_BETA_2, "paper", "β2")
        x_scale, y_scale = bq.LogScale(min=1.0, max=float(steps)), bq.LinearScale(min=-1.05, max=1.05)
        x_ticks, x_format = axis_ticks(1.0, float(steps))
        self.lines = {
            amsgrad: bq.Lines(
                x=[],
                y=[],
                scales={"x": x_scale, "y": y_scale},
                colors=[PALETTE[i]],
                labels=["AMSGrad" if amsgrad else "Adam"],
                stroke_width=1.5,
            )
            for i, amsgrad in enumerate((False, True))
        }
        self.figure = bq.Figure(
            marks=list(self.lines.values()),
            axes=[
                bq.Axis(
                    scale=x_scale,
                    label="step t (log scale)",
                    grid_lines="none",
                    tick_values=x_ticks,
                    tick_format=x_format,
                ),
                bq.Axis(scale=y_scale, side="left", label="x after step t", tick_format=".1f"),
            ],
            title="Reddi, Kale & Kumar's problem: the best point is x = -1",
            animation_duration=0,
            layout=w.Layout(width="680px", height="380px"),
            fig_margin={"top": 50, "bottom": 45, "left": 70, "right": 20},
        )
        self.status = w.HTML()
        self.runs: dict[bool, ReddiRun] = {}
        for control in (self.C, self.beta_2):
            control.observe(lambda _: self.update(), names="value")
        self.legend = Legend(self.figure)
        self.legend.follow()  # under the chart, outside the plot area
        self.widget = w.VBox([self.C, self.beta_2, self.figure, self.legend.html, self.status])

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
# Measurements the exercise's hidden tests judge with (exercise 04, Parts B and C)
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# The picture that opens the lesson (adamclinic.figures)
# ---------------------------------------------------------------------------------------------

FIGURE = {"title": "ε and bias correction on one network (seed 0)"}


def figure_curves() -> dict[str, np.ndarray]:
    """The training loss per epoch of the lesson's main run (seed 0) at the defaults, with ε = 1, and at
    lr = 0.03 with and without bias correction."""
    base = TrainConfig(
        data=smooth_regression(), build_model=small_relu_net, learning_rate=1e-3, epochs=30, batch_size=8, seed=0
    )
    runs = {
        "lr = 1e-3 (defaults)": base,
        "lr = 1e-3, ε = 1": replace(base, epsilon=1.0),
        "lr = 0.03": replace(base, learning_rate=0.03),
        "lr = 0.03, no bias correction": replace(base, learning_rate=0.03, optimizer="adam without bias correction"),
    }
    return {label: run(config).loss for label, config in runs.items()}
