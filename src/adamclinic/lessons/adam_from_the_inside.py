"""Lesson 00, Adam from the inside: the update rule by hand, and the paths optimizers take on a plane.

Two parts, one per half of the lesson: Adam's update in NumPy in both of the paper's forms, checked
against Keras (``adam_updates``, ``keras_adam_updates``, ``compare_forms``); and two-variable loss
surfaces with the paths real Keras optimizers take across them (``trajectory``, ``SurfacePanel``).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import bqplot as bq
import ipywidgets as w
import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from IPython.display import display

from adamclinic.engine import AdamWithoutBiasCorrection
from adamclinic.panels import PALETTE, animation_pause, epoch_axis, fit_axis, legend_html, log_slider, ys

# ---------------------------------------------------------------------------------------------
# Adam's update rule in NumPy (float64), in the two forms the paper gives, checked against Keras.
#
# Why: the Adam paper's Algorithm 1 divides the bias-corrected moments, ``m_hat / (sqrt(v_hat) + ε)``;
# Keras 3 folds the bias correction into the step size, ``alpha = lr * sqrt(1 - β2^t) / (1 - β1^t)``, and
# divides ``m / (sqrt(v) + ε)`` (the paper's "ε-hat" form, end of its section 2). The two are the same
# rule with different ε: Keras's ε acts like Algorithm 1's ε multiplied by ``1 / sqrt(1 - β2^t)``, which
# is 31.6 at step 1 with β2 = 0.999 and fades to 1 over a few thousand steps. A student who implements
# Adam from the paper and compares with Keras sees the difference; this module measures it.
# ---------------------------------------------------------------------------------------------


FORMS = ("algorithm 1", "epsilon hat")


def adam_updates(
    gradients: np.ndarray,
    lr: float = 1e-3,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-7,
    form: str = "epsilon hat",
    bias_correction: bool = True,
) -> np.ndarray:
    """The update Adam subtracts from the weights at each step, for a given sequence of gradients.

    ``gradients`` has shape ``(steps, ...)``; the result has the same shape (float64). The update does
    not depend on the weights themselves, only on the gradients, so no weights are needed.
    """
    if form not in FORMS:
        raise ValueError(f"Unknown form {form!r}; choose one of: {', '.join(FORMS)}.")
    g = np.asarray(gradients, dtype=np.float64)
    m = np.zeros(g.shape[1:])
    v = np.zeros(g.shape[1:])
    updates = np.empty_like(g)
    for t in range(1, len(g) + 1):
        m = beta_1 * m + (1 - beta_1) * g[t - 1]  # first moment: a running mean of gradients
        v = beta_2 * v + (1 - beta_2) * g[t - 1] ** 2  # second moment: a running mean of squares
        if not bias_correction:
            updates[t - 1] = lr * m / (np.sqrt(v) + epsilon)
        elif form == "algorithm 1":
            m_hat = m / (1 - beta_1**t)  # undo the pull towards the zero start
            v_hat = v / (1 - beta_2**t)
            updates[t - 1] = lr * m_hat / (np.sqrt(v_hat) + epsilon)
        else:
            alpha = lr * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
            updates[t - 1] = alpha * m / (np.sqrt(v) + epsilon)
    return updates


def keras_adam_updates(
    gradients: np.ndarray, lr: float = 1e-3, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7
) -> np.ndarray:
    """What ``keras.optimizers.Adam`` subtracts at each step, for the same gradients (float32).

    The variable is reset to zero before every step, so reading it back gives the update exactly
    (subtracting two large positions would lose float32 digits). One compiled loop per gradient shape;
    lr, β1, β2 and ε are variables, so new values cost no retrace.
    """
    g = np.asarray(gradients, dtype=np.float32)
    if g.shape not in _runners:
        _runners[g.shape] = _KerasAdamRunner(g.shape)
    return _runners[g.shape](g, lr, beta_1, beta_2, epsilon)


class _KerasAdamRunner:
    def __init__(self, shape: tuple[int, ...]):
        steps = shape[0]
        self.w = keras.Variable(np.zeros(shape[1:], dtype=np.float32))
        self.optimizer = keras.optimizers.Adam()
        self.tunable = []
        for name in ("beta_1", "beta_2", "epsilon"):
            variable = keras.Variable(0.0, trainable=False, name=name)
            setattr(self.optimizer, name, variable)
            self.tunable.append(variable)
        self.optimizer.build([self.w])
        state = [
            v
            for v in self.optimizer.variables
            if v is not self.optimizer._learning_rate and not any(v is t for t in self.tunable)
        ]
        w, optimizer = self.w, self.optimizer

        def run(g, settings):
            for variable in state:
                variable.assign(tf.zeros_like(variable))
            optimizer.learning_rate.assign(settings[0])
            for i, variable in enumerate(self.tunable):
                variable.assign(settings[i + 1])

            def one_step(t, out):
                w.assign(tf.zeros_like(w))
                optimizer.apply([g[t]], [w])
                return t + 1, out.write(t, -w.value)

            _, out = tf.while_loop(
                lambda t, _: t < steps, one_step, (tf.constant(0), tf.TensorArray(tf.float32, size=steps))
            )
            return out.stack()

        self.run = tf.function(functools.partial(run), jit_compile=True)  # see adamclinic.lessons.adam_from_the_inside

    def __call__(self, g, lr, beta_1, beta_2, epsilon) -> np.ndarray:
        settings = tf.constant([lr, beta_1, beta_2, epsilon], dtype=tf.float32)
        return self.run(tf.constant(g), settings).numpy().astype(np.float64)


_runners: dict[tuple[int, ...], _KerasAdamRunner] = {}


def noisy_gradients(steps: int = 1000, size: int = 64, scale: float = 1.0, seed: int = 0) -> np.ndarray:
    """A seeded stand-in for a training run's gradients: a steady pull per weight plus noise, times ``scale``."""
    rng = np.random.default_rng(seed)
    return scale * (rng.normal(0.0, 1.0, size) + rng.normal(0.0, 1.0, (steps, size))).astype(np.float32)


def compare_forms(
    epsilons=(1e-7, 1e-3, 1e-1),
    steps: int = 1000,
    lr: float = 1e-3,
    scale: float = 1.0,
    seed: int = 0,
    at_steps=(1, 10, 100, 1000),
) -> pd.DataFrame:
    """How far each NumPy form is from Keras, in units of the learning rate, per ε and step.

    One row per (ε, step): the largest ``|update_keras - update_form| / lr`` over the weights at that
    step, for both forms, and ``1 / sqrt(1 - β2^t)``: the factor by which Keras's ε is effectively larger.
    """
    g = noisy_gradients(steps, scale=scale, seed=seed)
    rows = []
    for eps in epsilons:
        keras_u = keras_adam_updates(g, lr=lr, epsilon=eps)
        for form in FORMS:
            gap = np.abs(keras_u - adam_updates(g, lr=lr, epsilon=eps, form=form)).max(axis=1) / lr
            for t in at_steps:
                if t <= steps:
                    rows.append({"ε": eps, "form": form, "step": t, "max |Δ update| / lr": gap[t - 1]})
    table = pd.DataFrame(rows).pivot_table(index=["ε", "step"], columns="form", values="max |Δ update| / lr")
    table.columns.name = None
    table["Keras ε is effectively ×"] = [1 / np.sqrt(1 - 0.999**t) for _, t in table.index]
    return table


# Judging a student's one-step Adam (exercise ex00_adam_update) ------------------------------------------


def step_updates(
    step, gradients: np.ndarray, lr: float = 1e-3, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7
) -> np.ndarray:
    """The updates a one-step function makes over a gradient sequence, in the shape of ``adam_updates``.

    ``step(w, g, m, v, t, lr, beta_1, beta_2, epsilon)`` returns the new ``(w, m, v)``; ``t`` counts from 1
    and ``m``, ``v`` start at zero. The weights are zero before every call, so the update is exactly
    ``-w_new`` (no digits lost subtracting two positions, whatever precision the step computes in).
    """
    run_helper = getattr(type(step), "run_helper", None)
    if run_helper is not None:  # the grader's handle to a student's step in another process: loop over there
        return np.asarray(run_helper(step, step_updates, gradients, lr, beta_1, beta_2, epsilon), dtype=np.float64)
    g = np.asarray(gradients, dtype=np.float64)
    m = np.zeros(g.shape[1:])
    v = np.zeros(g.shape[1:])
    updates = np.empty_like(g)
    for t in range(1, len(g) + 1):
        w_new, m, v = step(np.zeros(g.shape[1:]), g[t - 1].copy(), m, v, t, lr, beta_1, beta_2, epsilon)
        updates[t - 1] = -np.asarray(w_new, dtype=np.float64)
    return updates


def gap_to_keras(
    step, gradients: np.ndarray, lr: float = 1e-3, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7
) -> float:
    """The largest ``|update_step - update_keras| / lr`` over every step and weight (``inf`` if not finite)."""
    with np.errstate(all="ignore"):
        mine = step_updates(step, gradients, lr, beta_1, beta_2, epsilon)
        gap = np.abs(mine - keras_adam_updates(gradients, lr, beta_1, beta_2, epsilon)) / lr
    return float(gap.max()) if np.all(np.isfinite(gap)) else float("inf")


def first_step_form_gap(
    gradient: float, lr: float = 1e-3, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7
) -> float:
    """``|Keras's first update - Algorithm 1's first update| / lr`` for one weight whose gradient is ``gradient``.

    Keras's update is measured on ``keras.optimizers.Adam`` itself (float32); Algorithm 1's is computed.
    At step 1 both are ``lr·|g| / (|g| + c·ε)``, with ``c = 1`` for Algorithm 1 and ``1 / sqrt(1 - β2)``
    (31.6 at the default β2) for Keras, so the gap peaks near ``|g| ≈ 5.6 ε`` at about 0.7.
    """
    g = np.full((1, 1), float(gradient), dtype=np.float32)
    keras_u = keras_adam_updates(g, lr, beta_1, beta_2, epsilon)[0, 0]
    paper_u = adam_updates(g, lr, beta_1, beta_2, epsilon, form="algorithm 1")[0, 0]
    return float(abs(keras_u - paper_u) / lr)


# ---------------------------------------------------------------------------------------------
# Two-variable loss surfaces and the paths real Keras optimizers take across them.
#
# Why two variables: on a plane you can *see* what an optimizer does with each coordinate (Adam moving
# both at about the learning rate per step, SGD zig-zagging down the steep axis and crawling along the
# shallow one), which no loss curve of a network shows.
#
# The paths are genuine ``keras.optimizers`` steps: two ``keras.Variable``s, gradients from
# ``tf.GradientTape``, ``optimizer.apply``. To make a slider move cost milliseconds, all ``steps`` steps
# run inside one XLA-compiled ``tf.while_loop`` that returns the whole path; one trace per
# (surface, optimizer kind, number of steps). The learning rate, β1, β2 and ε live in variables (Keras 3
# stores β1, β2 and ε as Python floats, which a trace would bake in; Adam reads them through
# ``ops.cast``, so variables work, as in ``adamclinic.engine.training``), and the optimizer's state is zeroed
# inside the compiled function before every path.
#
# ``trajectory(...)`` is the pure function the panel, the lesson and the tests share;
# ``SurfacePanel`` animates its result in chunks so the student sees the path move.
# ---------------------------------------------------------------------------------------------


KINDS = ("adam", "sgd", "momentum", "rmsprop")
LABELS = {"adam": "Adam", "sgd": "SGD", "momentum": "SGD + momentum 0.9", "rmsprop": "RMSprop (ρ 0.9)"}
COLOURS = {"adam": PALETTE[0], "sgd": PALETTE[1], "momentum": PALETTE[2], "rmsprop": PALETTE[3]}
SGD_MOMENTUM = 0.9  # fixed: Keras's SGD decides at trace time whether it uses momentum at all


@dataclass(frozen=True)
class Surface:
    """A loss ``f(x, y)`` written with plain arithmetic, so it works on floats, arrays and tensors.

    ``contour(level, n)`` returns a closed level curve ``f = level`` as two arrays (both surfaces here
    have exact parametric level sets, so no contouring library is needed).
    """

    name: str
    f: Callable[[Any, Any], Any]
    contour: Callable[[float, int], tuple[np.ndarray, np.ndarray]]
    minimum: tuple[float, float]
    start: tuple[float, float]
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    levels: tuple[float, ...] = field(default=())

    def loss(self, path: np.ndarray) -> np.ndarray:
        """The loss at every point of a path (float64)."""
        path = np.asarray(path, dtype=np.float64)
        return self.f(path[..., 0], path[..., 1])


def quadratic(a: float = 0.1, b: float = 10.0) -> Surface:
    """``f = (a x² + b y²) / 2``: a valley whose curvatures differ by the condition number ``b / a``.

    The defaults give condition number 100: plain gradient descent is stable only for lr < 2 / b, and
    at such a rate the shallow x-direction shrinks by just ``1 - lr a`` per step.
    """

    def contour(level: float, n: int = 120) -> tuple[np.ndarray, np.ndarray]:
        theta = np.linspace(0.0, 2 * np.pi, n)
        return np.sqrt(2 * level / a) * np.cos(theta), np.sqrt(2 * level / b) * np.sin(theta)

    return Surface(
        name=f"quadratic, condition number {b / a:g}",
        f=lambda x, y: 0.5 * (a * x * x + b * y * y),
        contour=contour,
        minimum=(0.0, 0.0),
        start=(-4.5, 1.2),
        x_range=(-5.0, 5.0),
        y_range=(-1.5, 1.5),
        levels=(0.01, 0.05, 0.2, 0.5, 1.0, 2.0, 4.0, 8.0),
    )


def rosenbrock() -> Surface:
    """Rosenbrock's banana valley ``(1 - x)² + 100 (y - x²)²``, minimum 0 at (1, 1).

    The valley floor ``y = x²`` is easy to reach and hard to follow: along it the loss falls gently,
    across it the walls are about 100 times steeper, and the valley bends.
    """

    def contour(level: float, n: int = 240) -> tuple[np.ndarray, np.ndarray]:
        theta = np.linspace(0.0, 2 * np.pi, n)
        x = 1.0 - np.sqrt(level) * np.cos(theta)
        return x, x * x + np.sqrt(level) * np.sin(theta) / 10.0

    return Surface(
        name="Rosenbrock",
        f=lambda x, y: (1.0 - x) ** 2 + 100.0 * (y - x * x) ** 2,
        contour=contour,
        minimum=(1.0, 1.0),
        start=(-1.5, 1.5),
        x_range=(-2.0, 2.0),
        y_range=(-1.0, 3.0),
        levels=(0.03, 0.3, 1.0, 3.0, 6.0, 12.0),
    )


QUADRATIC = quadratic()
ROSENBROCK = rosenbrock()


def _make_optimizer(kind: str) -> keras.optimizers.Optimizer:
    if kind == "adam":
        return keras.optimizers.Adam()
    if kind == "adam without bias correction":
        return AdamWithoutBiasCorrection()
    if kind == "sgd":
        return keras.optimizers.SGD()
    if kind == "momentum":
        return keras.optimizers.SGD(momentum=SGD_MOMENTUM)
    if kind == "rmsprop":
        return keras.optimizers.RMSprop()
    raise ValueError(f"Unknown optimizer {kind!r}; choose one of: {', '.join(KINDS)}.")


class _CompiledPath:
    """Two variables, one optimizer and one XLA-compiled loop of ``steps`` optimizer steps."""

    def __init__(self, surface: Surface, kind: str, steps: int):
        self.steps = steps
        self.x = keras.Variable(0.0, name="x")
        self.y = keras.Variable(0.0, name="y")
        self.optimizer = _make_optimizer(kind)
        self.tunable = []
        for name in ("beta_1", "beta_2", "epsilon"):
            if hasattr(self.optimizer, name) and kind.startswith("adam"):
                variable = keras.Variable(0.0, trainable=False, name=name)
                setattr(self.optimizer, name, variable)
                self.tunable.append(variable)
        self.optimizer.build([self.x, self.y])
        self.state = [
            v
            for v in self.optimizer.variables
            if v is not self.optimizer._learning_rate and not any(v is t for t in self.tunable)
        ]
        f = surface.f

        def path(start, settings):
            self.x.assign(start[0])
            self.y.assign(start[1])
            for variable in self.state:
                variable.assign(tf.zeros_like(variable))
            self.optimizer.learning_rate.assign(settings[0])
            for i, variable in enumerate(self.tunable):
                variable.assign(settings[i + 1])
            points = tf.TensorArray(tf.float32, size=steps + 1).write(0, start)

            def one_step(step, points):
                with tf.GradientTape() as tape:
                    loss = f(self.x.value, self.y.value)
                grads = tape.gradient(loss, [self.x.value, self.y.value])
                self.optimizer.apply(grads, [self.x, self.y])
                return step + 1, points.write(step + 1, tf.stack([self.x.value, self.y.value]))

            _, points = tf.while_loop(lambda step, _: step < steps, one_step, (tf.constant(0), points))
            return points.stack()

        # functools.partial: TensorFlow counts traces per code object, so many instances of one
        # closure would print a "frequent retracing" warning although each traces once.
        self._path = tf.function(functools.partial(path), jit_compile=True, reduce_retracing=True)

    def __call__(self, start, lr, beta_1, beta_2, epsilon) -> np.ndarray:
        settings = tf.constant([lr, beta_1, beta_2, epsilon], dtype=tf.float32)
        return self._path(tf.constant(start, dtype=tf.float32), settings).numpy()


_compiled: dict[tuple, _CompiledPath] = {}
_lock = threading.Lock()


def trajectory(
    surface: Surface,
    optimizer: str = "adam",
    lr: float = 0.1,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-7,
    bias_correction: bool = True,
    steps: int = 200,
    start: Sequence[float] | None = None,
) -> np.ndarray:
    """The ``(steps + 1, 2)`` path of ``optimizer`` on ``surface`` from ``start`` (row 0 is the start).

    ``optimizer`` is one of ``KINDS``: "adam" (β1, β2, ε and ``bias_correction`` apply to it only;
    without bias correction it is ``adamclinic.engine.optimizers.AdamWithoutBiasCorrection``), "sgd",
    "momentum" (Keras SGD with momentum 0.9) or "rmsprop" (Keras defaults: ρ 0.9, ε 1e-7). A pure
    function of its arguments; a path that leaves the float range contains inf or NaN.
    """
    kind = optimizer
    if kind not in KINDS:
        raise ValueError(f"Unknown optimizer {kind!r}; choose one of: {', '.join(KINDS)}.")
    if kind == "adam" and not bias_correction:
        kind = "adam without bias correction"
    start = tuple(float(s) for s in (surface.start if start is None else start))
    key = (surface.name, kind, int(steps))
    with _lock:
        if key not in _compiled:
            _compiled[key] = _CompiledPath(surface, kind, int(steps))
        return _compiled[key](start, lr, beta_1, beta_2, epsilon)


def distance_to_minimum(surface: Surface, path: np.ndarray) -> np.ndarray:
    """The Euclidean distance of every point of ``path`` from the surface's minimum (float64)."""
    path = np.asarray(path, dtype=np.float64)
    return np.hypot(path[:, 0] - surface.minimum[0], path[:, 1] - surface.minimum[1])


def step_lengths(path: np.ndarray) -> np.ndarray:
    """``|Δx|, |Δy|`` of every step: shape ``(steps, 2)``, float64."""
    return np.abs(np.diff(np.asarray(path, dtype=np.float64), axis=0))


def race(
    surface: Surface, runs: dict[str, dict[str, Any]], steps: int = 200, checkpoints: Sequence[int] = (10, 50, 100, 200)
) -> pd.DataFrame:
    """Distance to the minimum after each checkpoint, one row per named run of ``trajectory(**kwargs)``."""
    import pandas as pd

    rows = {}
    for label, kwargs in runs.items():
        d = distance_to_minimum(surface, trajectory(surface, steps=steps, **kwargs))
        rows[label] = {f"step {c}": d[c] for c in checkpoints if c <= steps}
    return pd.DataFrame(rows).T


# The panel --------------------------------------------------------------------------------------------


class SurfacePanel:
    """Sliders for Adam's lr, β1, β2, ε and bias correction, optional SGD / momentum / RMSprop overlays,
    a contour map with the paths drawn live, and a distance-to-minimum chart.

    Every change recomputes the paths with ``trajectory`` (milliseconds) and then animates them,
    ``chunk`` steps per frame; a newer change stops a stale animation.
    """

    def __init__(
        self,
        surface: Surface,
        lr: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        bias_correction: bool = True,
        compare: Sequence[str] = (),
        sgd_lr: float = 0.15,
        steps: int = 200,
        chunk: int = 10,
        seconds_per_frame: float = 0.03,
    ):
        self.surface = surface
        self.steps = steps
        self.chunk = chunk
        self.seconds_per_frame = seconds_per_frame
        self.controls: dict[str, w.ValueWidget] = {
            "lr": log_slider("lr", lr, 1e-4, 3.0, "Adam / RMSprop learning rate"),
            "beta_1": w.FloatSlider(
                value=beta_1, min=0.0, max=0.99, step=0.01, description="β1", continuous_update=False
            ),
            "beta_2": w.SelectionSlider(
                options=[0.9, 0.99, 0.999, 0.9999], value=beta_2, description="β2", continuous_update=False
            ),
            "epsilon": log_slider("epsilon", epsilon, 1e-8, 1.0, "ε"),
            "bias_correction": w.Checkbox(value=bias_correction, description="bias correction"),
            "sgd_lr": log_slider("sgd_lr", sgd_lr, 1e-4, 1.0, "SGD learning rate"),
        }
        self.compare = {
            kind: w.Checkbox(value=kind in compare, description=LABELS[kind]) for kind in ("sgd", "momentum", "rmsprop")
        }
        x_scale = bq.LinearScale(min=surface.x_range[0], max=surface.x_range[1])
        y_scale = bq.LinearScale(min=surface.y_range[0], max=surface.y_range[1])
        scales = {"x": x_scale, "y": y_scale}
        contours = []
        for level in surface.levels:
            cx, cy = surface.contour(level, 240)
            contours.append(bq.Lines(x=cx, y=cy, scales=scales, colors=["#bbbbbb"], stroke_width=1))
        landmarks = bq.Scatter(
            x=[surface.start[0], surface.minimum[0]],
            y=[surface.start[1], surface.minimum[1]],
            scales=scales,
            colors=["#000000"],
            marker="cross",
            default_size=60,
        )
        self.paths = {
            kind: bq.Lines(
                x=[],
                y=[],
                scales=scales,
                colors=[COLOURS[kind]],
                labels=[LABELS[kind]],
                stroke_width=2,
                marker="circle",
                marker_size=6,
            )
            for kind in KINDS
        }
        self.map = bq.Figure(
            marks=contours + [landmarks] + list(self.paths.values()),
            axes=[
                bq.Axis(scale=x_scale, label="x", grid_lines="none"),
                bq.Axis(scale=y_scale, side="left", label="y", grid_lines="none"),
            ],
            title=surface.name,
            animation_duration=0,
            layout=w.Layout(width="560px", height="400px"),
            fig_margin={"top": 50, "bottom": 45, "left": 55, "right": 20},
        )
        d_scales = {"x": bq.LinearScale(min=0.0, max=float(steps)), "y": bq.LogScale()}
        self.distances = {
            kind: bq.Lines(x=[], y=[], scales=d_scales, colors=[COLOURS[kind]], labels=[LABELS[kind]], stroke_width=2)
            for kind in KINDS
        }
        self.distance_axis = bq.Axis(
            scale=d_scales["y"], side="left", label="distance to the minimum", tick_format=".3~g"
        )
        self.distance_chart = bq.Figure(
            marks=list(self.distances.values()),
            axes=[epoch_axis(d_scales["x"], steps, label="step"), self.distance_axis],
            title="Distance to the minimum",
            animation_duration=0,
            layout=w.Layout(width="420px", height="400px"),
            fig_margin={"top": 50, "bottom": 45, "left": 75, "right": 20},
        )
        # One legend under both charts (an optimizer has the same colour in each), outside their plot areas.
        self.legend = w.HTML(value="", layout=w.Layout(padding="0 0 0 55px"))
        self.status = w.HTML(value="Ready.")
        self._generation = 0
        self._generation_lock = threading.Lock()
        self._draw_lock = threading.Lock()  # one animation at a time; a stale one quits at its next frame
        for control in list(self.controls.values()) + list(self.compare.values()):
            control.observe(self._on_change, names="value")
        adam_box = w.VBox([self.controls[name] for name in ("lr", "beta_1", "beta_2", "epsilon", "bias_correction")])
        other_box = w.VBox([w.HTML("<b>Compare with</b>")] + list(self.compare.values()) + [self.controls["sgd_lr"]])
        self.widget = w.VBox(
            [w.HBox([adam_box, other_box]), w.HBox([self.map, self.distance_chart]), self.legend, self.status]
        )

    def settings(self) -> dict[str, Any]:
        return {name: control.value for name, control in self.controls.items()}

    def compute(self) -> dict[str, np.ndarray]:
        """The paths the current settings ask for, by optimizer kind (Adam always; others if ticked)."""
        s = self.settings()
        paths = {
            "adam": trajectory(
                self.surface, "adam", s["lr"], s["beta_1"], s["beta_2"], s["epsilon"], s["bias_correction"], self.steps
            )
        }
        for kind, box in self.compare.items():
            if box.value:
                lr = s["sgd_lr"] if kind in ("sgd", "momentum") else s["lr"]
                paths[kind] = trajectory(self.surface, kind, lr, steps=self.steps)
        return paths

    def draw(self, generation: int | None = None) -> dict[str, np.ndarray]:
        """Compute the paths and animate them; returns them (stops early if a newer change arrived)."""
        paths = self.compute()
        self.legend.value = legend_html(
            [(LABELS[kind], COLOURS[kind], False) for kind in KINDS if kind in paths]
            + [("loss contour lines (map)", "#bbbbbb", False)],
            title="× on the map: the start and the minimum.",
        )
        for kind in KINDS:
            if kind not in paths:
                with self.paths[kind].hold_sync():
                    self.paths[kind].x, self.paths[kind].y = [], []
                with self.distances[kind].hold_sync():
                    self.distances[kind].x, self.distances[kind].y = [], []
        distances = {kind: distance_to_minimum(self.surface, p) for kind, p in paths.items()}
        for end in list(range(self.chunk, self.steps, self.chunk)) + [self.steps]:
            if generation is not None and generation != self._generation:
                return paths
            for kind, path in paths.items():
                shown = _drawable(path[: end + 1])
                with self.paths[kind].hold_sync():
                    self.paths[kind].x, self.paths[kind].y = shown[:, 0], shown[:, 1]
                d = distances[kind][: end + 1]
                ok = np.isfinite(d) & (d > 0)
                with self.distances[kind].hold_sync():
                    self.distances[kind].x, self.distances[kind].y = np.arange(end + 1)[ok], d[ok]
            fit_axis(self.distance_chart.axes[1].scale, self.distance_axis, ys(self.distances.values()))
            animation_pause(self.seconds_per_frame)
        self.status.value = self._summary(paths)
        return paths

    def _summary(self, paths: dict[str, np.ndarray]) -> str:
        parts = []
        for kind, path in paths.items():
            d = distance_to_minimum(self.surface, path)[-1]
            loss = float(self.surface.loss(path[-1:])[0])
            text = "left the map (inf or NaN)" if not np.isfinite(d) else f"distance {d:.3g}, loss {loss:.3g}"
            parts.append(f"<b style='color:{COLOURS[kind]}'>{LABELS[kind]}</b> after {self.steps} steps: {text}")
        return "<br>".join(parts)

    def _on_change(self, change: dict) -> None:
        with self._generation_lock:
            self._generation += 1
            generation = self._generation
        threading.Thread(target=self._safe_draw, args=(generation,), daemon=True).start()

    def _safe_draw(self, generation: int) -> None:
        try:
            with self._draw_lock:
                if generation == self._generation:
                    self.draw(generation)
        except Exception as error:  # a bad setting must not kill the panel
            self.status.value = f"<span style='color:#D55E00'>Could not compute the path: {error}</span>"

    def _ipython_display_(self) -> None:
        display(self.widget)


def _drawable(path: np.ndarray, limit: float = 1e6) -> np.ndarray:
    """The path up to its first non-finite or absurdly far point (bqplot cannot draw inf)."""
    bad = ~np.all(np.isfinite(path) & (np.abs(path) < limit), axis=1)
    return path[: int(np.argmax(bad))] if bad.any() else path


def show_surface_panel(panel: SurfacePanel) -> None:
    """Display a panel and draw its paths once at the defaults, in this thread (so a headless run does too)."""
    display(panel.widget)
    panel.draw()


# The figure that opens the lesson (adamclinic.figures; make figures NAME=00_adam_from_the_inside) -----------

FIGURE = {
    "title": "Four optimizers in a narrow valley (200 steps)",
    "x_label": "step",
    "y_label": "distance to the minimum",
}

# Section 3's race, in the order that gives each optimizer the figure's colour closest to its panel colour
# (Okabe-Ito in order: SGD orange, RMSprop sky blue, momentum green, Adam dark blue).
FIGURE_RUNS = {
    "SGD, lr 0.15": dict(optimizer="sgd", lr=0.15),
    "RMSprop, lr 0.1": dict(optimizer="rmsprop", lr=0.1),
    "SGD + momentum 0.9, lr 0.15": dict(optimizer="momentum", lr=0.15),
    "Adam, lr 0.1": dict(optimizer="adam", lr=0.1),
}


def figure_curves() -> dict[str, np.ndarray]:
    """Distance to the minimum after each of 200 steps on ``QUADRATIC``, the runs of section 3 (deterministic)."""
    return {
        label: distance_to_minimum(QUADRATIC, trajectory(QUADRATIC, steps=200, **kwargs))[1:]
        for label, kwargs in FIGURE_RUNS.items()
    }
