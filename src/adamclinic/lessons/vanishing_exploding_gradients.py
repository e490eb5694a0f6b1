"""Deep dense networks for watching gradients vanish or explode, and the measurements lesson 02 makes.

Why a factory: every depth / activation / initializer / batch-norm / residual combination is a
different architecture, and the engine keeps one compiled trainer per ``build_model`` *object*.
``deep_net(...)`` is cached, so asking twice for the same architecture returns the same builder and
the second run reuses the first run's XLA trace (a fresh lambda per run would retrace every time).

The measurements read only what a run already records: the per-kernel gradient norms the engine
reports every epoch (``History.layer_grad_norms``), and how far each kernel travelled from its
initial value (``weight_movement``), the initial value being rebuilt exactly as the engine builds it.
One looks inside Adam instead: ``adam_steps`` trains a run's first epochs again, step by step, and
reports each layer's gradient *per weight* (the scale Adam's ε acts on), Adam's running size of it,
and the steps the weights take, in learning rates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import bqplot as bq
import ipywidgets as w
import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from adamclinic.engine import Dataset, EpochMetrics, History, TrainConfig, seed_everything
from adamclinic.models import ACTIVATIONS, INITIALIZERS, deep_net


@dataclass(frozen=True)
class DeepNetConfig(TrainConfig):
    """A ``TrainConfig`` whose label names the architecture, so plot legends tell deep nets apart."""

    def label(self) -> str:
        model = getattr(self.build_model, "description", getattr(self.build_model, "__name__", "model"))
        return f"{model}, {super().label()}"


def lesson_config(data: Dataset, **fields: Any) -> DeepNetConfig:
    """Lesson 02's base run: a 10-layer sigmoid net on ``data`` (digits), Adam at 1e-3, 30 epochs of 32."""
    settings = dict(
        build_model=deep_net(10, "sigmoid"),
        loss="sparse_categorical_crossentropy",
        learning_rate=1e-3,
        epochs=30,
        batch_size=32,
        seed=0,
    )
    return DeepNetConfig(data=data, **{**settings, **fields})


# Measurements -------------------------------------------------------------------------------------


def initial_weights(config: TrainConfig) -> list[np.ndarray]:
    """The weights a run of ``config`` starts from: built under its seed, exactly as the engine does."""
    seed_everything(config.seed)
    return config.build_model().get_weights()


def _kernels(weights: list[np.ndarray]) -> list[np.ndarray]:
    # Kernels are the 2-D weights, in layer order (biases and batch-norm parameters are 1-D).
    return [np.asarray(v) for v in weights if np.ndim(v) >= 2]


def weight_movement(history: History) -> np.ndarray:
    """How far each kernel moved during the run, relative to its size: ``|W_end - W_start| / |W_start|``.

    One value per kernel, first layer first. This is what "the first layers barely learn" means when
    it is measured, rather than inferred from gradient norms. NaN for a run that diverged.
    """
    if history.final_weights is None:
        raise ValueError("This history has no final weights; train it with adamclinic.engine.training.run.")
    start = _kernels(initial_weights(history.config))
    end = _kernels(history.final_weights)
    with np.errstate(all="ignore"):  # a diverged run's NaN weights give NaN, quietly
        return np.array([np.linalg.norm(b - a) / np.linalg.norm(a) for a, b in zip(start, end)])


def adam_steps(config: TrainConfig, epochs: int = 1) -> pd.DataFrame:
    """What Adam does with each weight's gradient, layer by layer, in the first ``epochs`` epochs of ``config``.

    Trains those epochs again exactly as the engine does (the run's initial weights, its batches in its
    order, a stock ``keras.optimizers.Adam`` with the run's settings) and records every step. One row per
    kernel (1 = the first hidden layer, the last row is the output layer), each value averaged over the steps:

    - ``gradient norm``: the kernel's gradient norm, the number ``History.layer_grad_norms`` reports;
    - ``per-weight |g|``: the same gradient per weight (root mean square over the kernel's weights,
      the norm divided by the square root of their number). Adam's ε is added per weight, so this,
      not the norm, is what to compare with ε;
    - ``median √v̂``: Adam's running size of one weight's gradient (bias-corrected), median over the kernel;
    - ``median step / lr``: how far one weight moves in one step, median over the kernel, in learning rates
      (the change of the float32 weight, as training really applies it).

    Where ``√v̂`` is far above ε Adam's step is a sizeable fraction of the learning rate whatever the
    gradient's size; where it is far below, the step is ``lr · √(1 - β2^t) · m̂ / ε`` (SGD on the averaged
    gradient ``m̂``) and shrinks with the gradient.
    """
    if config.optimizer != "adam" or not isinstance(config.learning_rate, (int, float)) or config.class_weight:
        raise ValueError("adam_steps measures plain Adam at a constant learning rate, without class weights.")
    seed_everything(config.seed)
    model = config.build_model()
    optimizer = keras.optimizers.Adam(
        learning_rate=float(config.learning_rate),
        beta_1=config.beta_1,
        beta_2=config.beta_2,
        epsilon=config.epsilon,
        clipnorm=config.clipnorm,
        global_clipnorm=config.global_clipnorm,
    )
    variables = model.trainable_variables
    optimizer.build(variables)
    kernels = [v for v in variables if len(v.shape) >= 2]
    velocities = [optimizer._velocities[optimizer._get_variable_index(k)] for k in kernels]
    loss_fn = keras.losses.get(config.loss) if isinstance(config.loss, str) else config.loss

    @tf.function
    def step(xb, yb):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(loss_fn(yb, model(xb, training=True)))
        grads = tape.gradient(loss, variables)
        before = [tf.identity(k) for k in kernels]
        optimizer.apply(grads, variables)
        kernel_grads = [g for g, v in zip(grads, variables) if len(v.shape) >= 2]
        return kernel_grads, [k - b for k, b in zip(kernels, before)], [tf.identity(v) for v in velocities]

    x = np.asarray(config.data.x_train, dtype="float32")
    y = np.asarray(config.data.y_train)
    n, size = len(x), config.batch_size
    rng = np.random.default_rng(config.seed)  # the engine's batch order, epoch by epoch
    records, t = [], 0
    for _ in range(epochs):
        order = rng.permutation(n) if config.shuffle else np.arange(n)
        for batch in order[: (n // size) * size].reshape(-1, size):
            grads, moves, velocity = step(tf.constant(x[batch]), tf.constant(y[batch]))
            t += 1
            correction = math.sqrt(1 - config.beta_2**t)  # v̂ = v / (1 - β2^t)
            records.append(
                [
                    (
                        np.linalg.norm(g),
                        np.sqrt(np.mean(np.square(g))),
                        np.median(np.sqrt(v)) / correction,
                        np.median(np.abs(d)) / config.learning_rate,
                    )
                    for g, d, v in ((g.numpy(), d.numpy(), v.numpy()) for g, d, v in zip(grads, moves, velocity))
                ]
            )
    columns = ["gradient norm", "per-weight |g|", "median √v̂", "median step / lr"]
    table = pd.DataFrame(np.mean(records, axis=0), columns=columns)
    table.index = pd.RangeIndex(1, len(table) + 1, name="layer")
    return table


def gradient_ratio(history: History, epoch: int = 1) -> float:
    """The first layer's mean gradient norm divided by the last layer's, in the given epoch (1-based)."""
    norms = history.layer_grad_norms[epoch - 1]
    return float(norms[0] / norms[-1])


# What exercise 02's hidden tests measure on runs they train again -------------------------------


def seeded_runs(config: TrainConfig, seeds=(0, 1, 2)) -> list[History]:
    """``config`` trained once per seed (everything else unchanged)."""
    from adamclinic.engine import run

    return [run(replace(config, seed=int(seed))) for seed in seeds]


def hidden_dense_layers(build_model: Callable[[], keras.Model]) -> int:
    """How many ``Dense`` layers a builder's model has before its output layer (its depth)."""
    model = build_model()
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    return max(len(dense) - 1, 0)


def final_val_accuracy(history: History) -> float:
    """The last epoch's validation accuracy; 0 for a run that diverged or recorded none."""
    accuracy = history.epochs[-1].val_accuracy if history.epochs else None
    if history.diverged or accuracy is None or not math.isfinite(accuracy):
        return 0.0
    return float(accuracy)


def peak_loss(history: History) -> float:
    """The largest per-epoch training loss of a run; ``inf`` if any epoch's loss was NaN or infinite."""
    losses = np.asarray(history.loss, dtype=float)
    if history.diverged or losses.size == 0 or not np.all(np.isfinite(losses)):
        return math.inf
    return float(losses.max())


def gradient_table(histories: list[History] | dict[str, History], epoch: int = 1) -> pd.DataFrame:
    """One row per run: first- and last-layer gradient norms in ``epoch``, their ratio, how far the
    first and last kernels moved, the final loss and validation accuracy."""
    if not isinstance(histories, dict):
        histories = {h.config.label(): h for h in histories}
    rows = []
    for name, history in histories.items():
        norms = history.layer_grad_norms[min(epoch, len(history.epochs)) - 1]
        moved = weight_movement(history)
        accuracy = history.epochs[-1].val_accuracy
        with np.errstate(all="ignore"):
            ratio = norms[0] / norms[-1]
        rows.append(
            {
                "run": name,
                "|g| layer 1": norms[0],
                "|g| last layer": norms[-1],
                "ratio first/last": ratio,
                "layer 1 moved": moved[0],
                "last layer moved": moved[-1],
                "final loss": history.final_loss,
                "val accuracy": math.nan if accuracy is None else accuracy,
            }
        )
    return pd.DataFrame(rows).set_index("run")


# Live chart and panel -----------------------------------------------------------------------------

CLIPPING = {"off": {}, "clipnorm=1": {"clipnorm": 1.0}, "global_clipnorm=1": {"global_clipnorm": 1.0}}


def _drawable(norms: Any) -> tuple[list[int], list[float]]:
    # A log scale cannot draw zero, NaN or infinity: those layers are left out of the line.
    layers = [i + 1 for i, v in enumerate(norms) if math.isfinite(v) and v > 0]
    return layers, [float(norms[i - 1]) for i in layers]


class GradientNormView:
    """A live chart of each layer's mean gradient norm (log scale), redrawn after every epoch.

    One line per run, in the colour of its loss curve and named by its run's label; x is the layer (1 =
    first hidden layer, the last point is the output layer). A line that slopes up steeply from left to
    right is a gradient that vanishes on its way back to the first layers; a flat line is a healthy
    network. Implements ``adamclinic.panels.EpochView`` for ``TrainingPanel(views=[...])``, whose legend
    under the charts names the runs; ``plot_gradient_norms`` gives the chart a legend of its own.
    """

    def __init__(self, keep: int = 5, title: str = "Gradient norm per layer"):
        from adamclinic.panels import axis_ticks

        self.keep = keep
        self.title = title
        self.x_scale = bq.LinearScale(min=1.0, max=2.0)
        self.y_scale = bq.LogScale()
        self.lines: list[bq.Lines] = []
        self._current: bq.Lines | None = None
        ticks, tick_format = axis_ticks(1.0, 2.0, log=False, integer=True)
        self.x_axis = bq.Axis(
            scale=self.x_scale,
            label="layer (1 = first)",
            tick_values=ticks,
            tick_format=tick_format,
            grid_lines="none",
        )
        self.y_axis = bq.Axis(
            scale=self.y_scale, side="left", label="mean gradient norm (per weight matrix)", tick_format=".3~g"
        )
        self.figure = bq.Figure(
            marks=[],
            axes=[self.x_axis, self.y_axis],
            title=title,
            layout=w.Layout(width="460px", height="380px"),
            fig_margin={"top": 50, "bottom": 45, "left": 75, "right": 20},
            animation_duration=0,
        )
        self.widget = self.figure

    def start(self, config: TrainConfig, colour: str) -> None:
        line = bq.Lines(
            x=[],
            y=[],
            scales={"x": self.x_scale, "y": self.y_scale},
            colors=[colour],
            labels=[config.label()],
            marker="circle",
            marker_size=24,
            stroke_width=2.5,
        )
        self.lines = (self.lines + [line])[-self.keep :]
        self._current = line
        self.figure.marks = list(self.lines)

    def update(self, metrics: EpochMetrics) -> None:
        from adamclinic.panels import axis_ticks, fit_axis, ys

        if self._current is None or not metrics.layer_grad_norms:
            return
        layers, norms = _drawable(metrics.layer_grad_norms)
        with self._current.hold_sync():
            self._current.x = layers
            self._current.y = norms
        last = float(max(max((len(m.x) for m in self.lines), default=2), 2))
        if last != self.x_scale.max:
            self.x_scale.max = last
            ticks, tick_format = axis_ticks(1.0, last, log=False, integer=True)
            with self.x_axis.hold_sync():
                self.x_axis.tick_values, self.x_axis.tick_format = ticks, tick_format
        fit_axis(self.y_scale, self.y_axis, ys(self.lines))
        self.figure.title = f"{self.title} (epoch {metrics.epoch})"

    def show(self, history: History, colour: str, epoch: int = 1) -> None:
        """Draw one finished run's gradient norms at ``epoch`` (for static comparisons)."""
        self.start(history.config, colour)
        self.update(history.epochs[min(epoch, len(history.epochs)) - 1])
        self.figure.title = f"{self.title} (epoch {epoch})"

    def clear(self) -> None:
        self.lines = []
        self._current = None
        self.figure.marks = []


def plot_gradient_norms(histories: list[History], epoch: int = 1):
    """The per-layer gradient norms of finished runs at ``epoch``, one line each, coloured as ``compare``
    colours them, with a legend under the chart naming each run (an ``adamclinic.panels.Chart``; its
    ``marks`` are the lines)."""
    from adamclinic.panels import PALETTE, Chart

    view = GradientNormView(keep=len(histories))
    for index, history in enumerate(histories):
        view.show(history, PALETTE[index % len(PALETTE)], epoch=epoch)
    return Chart(view.figure)


DEFAULT_SETTINGS = {
    "depth": 10,
    "activation": "sigmoid",
    "initializer": "glorot_uniform",
    "batch_norm": False,
    "residual": False,
}


def gradient_config(
    base: TrainConfig,
    depth: int | None = None,
    activation: str | None = None,
    initializer: str | None = None,
    batch_norm: bool | None = None,
    residual: bool | None = None,
    clipping: str | None = None,
    **overrides: Any,
) -> TrainConfig:
    """``base`` with one or more architecture settings or the clipping changed (the panel's pure function).

    Settings left out keep ``base``'s values when ``base`` trains a ``deep_net`` (otherwise the
    defaults: 10 sigmoid layers, Glorot uniform, no batch norm, no residual), so
    ``gradient_config(exploding, initializer="he_normal")`` changes the initializer and nothing else.
    ``overrides`` are other ``TrainConfig`` fields (``optimizer``, ``learning_rate``, ``epochs``...).
    """
    settings = dict(getattr(base.build_model, "settings", DEFAULT_SETTINGS))
    changes = {
        "depth": depth,
        "activation": activation,
        "initializer": initializer,
        "batch_norm": batch_norm,
        "residual": residual,
    }
    settings.update({name: value for name, value in changes.items() if value is not None})
    if clipping is not None:
        if clipping not in CLIPPING:
            raise ValueError(f"clipping must be one of {tuple(CLIPPING)}; got {clipping!r}.")
        overrides = {"clipnorm": None, "global_clipnorm": None, **CLIPPING[clipping], **overrides}
    return replace(base, build_model=deep_net(**settings), **overrides)


def gradients_panel(
    base: TrainConfig,
    depth: int = 10,
    activation: str = "sigmoid",
    initializer: str = "glorot_uniform",
    batch_norm: bool = False,
    residual: bool = False,
    clipping: str = "off",
    **panel_options: Any,
):
    """Lesson 02's panel: depth, activation, initializer, batch norm, residual, clipping, learning rate.

    Beside the loss curve, a ``GradientNormView`` redraws every layer's gradient norm after each
    epoch. Each new architecture costs one XLA trace (about a second) the first time it is chosen;
    returning to it later reuses the trace.
    """
    from adamclinic.panels import TrainingPanel, log_slider

    style = {"description_width": "initial"}
    controls = {
        "depth": w.IntSlider(
            value=depth, min=1, max=20, description="hidden layers", continuous_update=False, style=style
        ),
        "activation": w.ToggleButtons(
            options=list(ACTIVATIONS[:3]), value=activation, description="activation", style=style
        ),
        "initializer": w.Dropdown(
            options=list(INITIALIZERS), value=initializer, description="initializer", style=style
        ),
        "batch_norm": w.Checkbox(value=batch_norm, description="batch normalization"),
        "residual": w.Checkbox(value=residual, description="residual connections"),
        "clipping": w.ToggleButtons(
            options=list(CLIPPING), value=clipping, description="gradient clipping", style=style
        ),
        "learning_rate": log_slider(
            "learning_rate", float(base.learning_rate), 1e-4, 1e-1, description="learning rate"
        ),
    }

    def make_config(base: TrainConfig, values: dict[str, Any]) -> TrainConfig:
        return gradient_config(base, **values)  # every setting given: the panel's values, nothing from base

    return TrainingPanel(base, controls, make_config=make_config, views=[GradientNormView()], **panel_options)


# The lesson's opening figure (adamclinic.figures; make figures) -----------------------------------

FIGURE = {"title": "Ten sigmoid layers and three fixes (seed 0)", "y_label": "training loss (cross-entropy)"}


def figure_curves() -> dict[str, np.ndarray]:
    """The training loss per epoch of the lesson's runs (seed 0): the 10-layer sigmoid net over 100 epochs
    (section 3's long run), and its three fixes over 30 (section 4). The configs are the claim tests' own, so
    the engine reuses their compiled trainers."""
    from adamclinic.data import digits
    from adamclinic.engine import run

    base = lesson_config(digits())
    runs = {
        "10 sigmoid layers (no fix)": gradient_config(base, epochs=100),
        "ReLU + He initialization": gradient_config(base, activation="relu", initializer="he_normal"),
        "batch normalization": gradient_config(base, batch_norm=True),
        "residual connections": gradient_config(base, residual=True),
    }
    return {label: run(config).loss for label, config in runs.items()}
