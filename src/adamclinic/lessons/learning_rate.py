"""Lesson 01, the learning rate: the range test, what one step does, and the checks ex01's hidden tests run.

Three parts: the learning-rate range test as a Keras callback (``LRRangeTest``, ``lr_range_test``,
``suggest_learning_rate``; they live in ``adamclinic.engine.range_test``, where the clinic's treatments use
them too, and are re-exported here); small probes of a single Adam step, of Adam's first steps and of dead ReLU
units (``first_step_sizes``, ``first_gradient_sizes``, ``adam_first_step``, ``early_adam_steps``,
``dead_relu_fraction``); and the measurements ex01's hidden tests make in the student's kernel,
retraining from the student's settings with fixed seeds (``final_losses``, ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from adamclinic.data import smooth_regression
from adamclinic.engine import (
    Dataset,
    History,
    LearningRate,
    TrainConfig,
    learning_rate_table,
    run,
    seed_everything,
    step_trace,
)
from adamclinic.engine.range_test import (  # noqa: F401 (re-exported for lesson 01 and ex01)
    LRRangeTest,
    Sweep,
    lr_range_test,
    smooth,
    suggest_learning_rate,
)
from adamclinic.models import small_relu_net

# ---------------------------------------------------------------------------------------------
# Small measurements the lessons show and the tests assert: what one Adam step does, which units died.
# ---------------------------------------------------------------------------------------------


def first_step_sizes(
    build_model: Callable[[], keras.Model],
    data: Dataset,
    loss_scales: Sequence[float],
    learning_rate: float = 1e-3,
    seed: int = 0,
    batch_size: int = 32,
) -> pd.DataFrame:
    """How far one optimizer step moves the weights when the loss is multiplied by each scale.

    Multiplying the loss by ``s`` multiplies every gradient by ``s``. Plain SGD's step grows with it;
    Adam's first step is ``lr * m_hat / (sqrt(v_hat) + eps)`` = ``lr * g / |g|`` (up to ε), so it
    moves each weight by about ``lr`` whatever ``s`` is. Returns the median and largest absolute
    weight change per optimizer and scale.
    """
    grads = _first_gradients(build_model, data, seed, batch_size)
    rows = []
    for name, make_optimizer in (("Adam", keras.optimizers.Adam), ("SGD", keras.optimizers.SGD)):
        for scale in loss_scales:
            # The step is applied to variables that start at zero, so the new values are the update
            # itself: subtracting two float32 weights of size 0.1 cannot resolve a step below 1e-8.
            steps = [keras.Variable(np.zeros(g.shape, dtype="float32")) for g in grads]
            make_optimizer(learning_rate=learning_rate).apply([scale * g for g in grads], steps)
            moves = np.concatenate([np.abs(v.numpy()).ravel() for v in steps])
            moved = moves[moves > 0]
            rows.append(
                {
                    "optimizer": name,
                    "loss scale": scale,
                    "median |Δw|": float(np.median(moved)),
                    "largest |Δw|": float(moves.max()),
                }
            )
    return pd.DataFrame(rows)


def _first_gradients(build_model: Callable[[], keras.Model], data: Dataset, seed: int, batch_size: int) -> list:
    """The mean-squared-error gradient of a freshly seeded ``build_model()`` on the first ``batch_size`` rows."""
    xb = tf.constant(data.x_train[:batch_size])
    yb = tf.constant(data.y_train[:batch_size])
    seed_everything(seed)
    model = build_model()
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.mean_squared_error(yb, model(xb, training=True)))
    return tape.gradient(loss, model.trainable_variables)


def first_gradient_sizes(
    build_model: Callable[[], keras.Model], data: Dataset, seed: int = 0, batch_size: int = 32
) -> np.ndarray:
    """``|g|`` of every weight whose gradient is not zero, on the batch ``first_step_sizes`` steps with
    (multiply by a loss scale to get the gradients at that scale)."""
    sizes = np.concatenate([np.abs(g.numpy()).ravel() for g in _first_gradients(build_model, data, seed, batch_size)])
    return sizes[sizes > 0]


def adam_first_step(
    gradient: np.ndarray, learning_rate: float = 1e-3, beta_2: float = 0.999, epsilon: float = 1e-7
) -> np.ndarray:
    """How far Keras's Adam moves a weight on its first step, for a gradient ``gradient``.

    Keras adds ε to ``sqrt(v)`` *before* the bias correction (lesson 00). On step 1, ``m = (1 - β1) g``
    and ``v = (1 - β2) g²``, and the update ``lr · sqrt(1 - β2) / (1 - β1) · m / (sqrt(v) + ε)``
    simplifies to ``lr · |g| / (|g| + ε / sqrt(1 - β2))``: ε acts like ``ε / sqrt(1 - β2)``, about
    3.2e-6 for the defaults, not like 1e-7.
    """
    size = np.abs(np.asarray(gradient, dtype="float64"))
    return learning_rate * size / (size + epsilon / math.sqrt(1 - beta_2))


def early_adam_steps(
    config: TrainConfig, steps: Sequence[int] = (1, 8, 64, 512), draws: int = 300, pool: int = 512
) -> pd.DataFrame:
    """Why Adam wants warmup: its first steps rest on a second moment measured from very few gradients.

    Two columns, one row per step number t in ``steps``:

    * ``spread of √v̂``: how much the bias-corrected ``sqrt(v_hat)`` of a weight after t steps depends on
      which batches came first. At the initial weights of ``config``'s seeded network, ``pool``
      batch gradients are drawn (shuffled epochs, ``config.batch_size`` rows each); ``draws`` random
      orders of t of them give ``draws`` values of ``v_hat``; the column is the 90th percentile of
      ``sqrt(v_hat)`` over those orders divided by the 10th, for the median weight.
    * ``RMS step ÷ learning rate``: the root-mean-square move of all the weights at step t of the
      engine's run of ``config`` (a constant learning rate), in units of the learning rate.

    Liu et al. (2020, RAdam) traced the benefit of warmup to this: early on, v_hat averages so few
    squared gradients that the adaptive step size ``lr / sqrt(v_hat)`` varies wildly.
    """
    seed_everything(config.seed)
    model = config.build_model()
    loss_fn = keras.losses.get(config.loss) if isinstance(config.loss, str) else config.loss
    x = tf.constant(config.data.x_train, dtype="float32")
    y = tf.constant(config.data.y_train, dtype="float32")
    with tf.GradientTape() as tape:
        per_row = loss_fn(y, model(x, training=True))
    jacobian = tape.jacobian(per_row, model.trainable_variables)
    rows = len(config.data.x_train)
    per_example = np.concatenate([np.reshape(j.numpy(), (rows, -1)) for j in jacobian], axis=1)
    rng = np.random.default_rng(config.seed)
    per_epoch = rows // config.batch_size
    epochs = [
        rng.permutation(rows)[: per_epoch * config.batch_size].reshape(per_epoch, config.batch_size)
        for _ in range(-(-pool // per_epoch))
    ]
    squared = per_example[np.concatenate(epochs)[:pool]].mean(axis=1) ** 2  # pool batches x weights
    spread = []
    for t in steps:
        # v_hat after t steps is a weighted mean of t squared gradients: weights (1 - β2) β2^(t - i) / (1 - β2^t).
        weights = (1 - config.beta_2) * config.beta_2 ** np.arange(t - 1, -1, -1) / (1 - config.beta_2**t)
        mixing = np.zeros((draws, pool))
        order = rng.integers(0, pool, size=(draws, t))
        np.add.at(mixing, (np.repeat(np.arange(draws), t), order.ravel()), np.tile(weights, draws))
        root = np.sqrt(mixing @ squared)
        low, high = np.quantile(root, [0.1, 0.9], axis=0)
        seen = low > 0  # a weight whose gradient is 0 in many batches (a dead unit) has no spread to speak of
        spread.append(float(np.median(high[seen] / low[seen])))
    trace = step_trace(config, epochs=-(-max(steps) // per_epoch))
    weight_count = int(per_example.shape[1])
    rms = trace.update_norm / math.sqrt(weight_count) / float(config.learning_rate)
    return pd.DataFrame(
        {
            "spread of √v̂ (90th ÷ 10th percentile)": spread,
            "RMS step ÷ learning rate": [float(rms[t - 1]) for t in steps],
        },
        index=pd.Index(list(steps), name="after step"),
    )


def dead_relu_fraction(history: History, x: np.ndarray) -> float:
    """The fraction of hidden ReLU units that output zero for every row of ``x`` after training.

    A dead unit passes no gradient, so nothing can bring it back: a network whose units are all dead
    predicts one constant, and its loss stops at the loss of predicting that constant.
    """
    if history.final_weights is None:
        raise ValueError("This history has no final weights; train it with adamclinic.engine.training.run.")
    model = history.config.build_model()
    model.set_weights(history.final_weights)
    dead, total = 0, 0
    activations = np.asarray(x, dtype="float32")
    for layer in model.layers:
        activations = np.asarray(layer(activations))
        if getattr(layer, "activation", None) is keras.activations.relu:
            alive = (activations > 0).any(axis=0)
            dead += int((~alive).sum())
            total += alive.size
    if total == 0:
        raise ValueError("The model has no ReLU layers.")
    return dead / total


def prediction_spread(history: History, x: np.ndarray) -> float:
    """The standard deviation of the trained model's predictions over ``x`` (0 for a constant prediction)."""
    model = history.config.build_model()
    model.set_weights(history.final_weights)
    return float(np.std(np.asarray(model(np.asarray(x, dtype="float32")))))


# ---------------------------------------------------------------------------------------------
# Small helpers the hidden tests of the exercises use to judge a student's work.
#
# The bars themselves (how low a loss must get) are constants in the test cells, where an instructor
# reads and tunes them; these functions only retrain and measure. They never trust a number the
# student computed: every loss is measured again by ``adamclinic.engine.training.run`` from the student's
# settings, with fixed seeds, so the same notebook always earns the same score.
# ---------------------------------------------------------------------------------------------


GRADING_SEEDS = (0, 1, 2)


def final_losses(learning_rate: LearningRate, seeds=GRADING_SEEDS, epochs: int = 30) -> np.ndarray:
    """Train lesson 01's net (``small_relu_net`` on ``smooth_regression``) once per seed; the final losses.

    A run that diverged reports ``inf``, so it fails any bar.
    """
    data = smooth_regression()
    losses = []
    for seed in seeds:
        history = run(TrainConfig(data, small_relu_net, learning_rate=learning_rate, epochs=epochs, seed=seed))
        loss = history.final_loss
        losses.append(loss if math.isfinite(loss) else math.inf)
    return np.asarray(losses, dtype=float)


def peak_rate(schedule: LearningRate, total_steps: int) -> float:
    """The highest learning rate a float or schedule reaches over ``total_steps`` optimizer steps."""
    return float(np.max(learning_rate_table(schedule, total_steps)))


def decades_apart(a: float, b: float) -> float:
    """How far apart two positive rates are, in decades (powers of ten)."""
    return abs(math.log10(float(a)) - math.log10(float(b)))


def grid_step(learning_rates) -> float:
    """The spacing of an evenly log-spaced grid of rates, in decades."""
    rates = np.asarray(learning_rates, dtype=float)
    return float(np.median(np.diff(np.log10(rates))))


def reference_steepest_descent_lr(learning_rates, smoothed_losses) -> float:
    """The reference answer of ex01's steepest-descent rule (see the solution notebook)."""
    rates = np.asarray(learning_rates, dtype=float)
    losses = np.asarray(smoothed_losses, dtype=float)
    end = int(np.nanargmin(losses)) + 1
    slopes = np.gradient(losses[:end], np.log10(rates[:end]))
    return float(rates[int(np.argmin(slopes))])


def synthetic_sweep(
    steepest_at: float,
    minimum_at: float,
    start: float = 1e-6,
    stop: float = 10.0,
    points_per_decade: int = 10,
    width: float = 0.5,
    tail=None,
    flat_noise: float = 0.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A hand-made range-test curve whose steepest descent is exactly at ``steepest_at``.

    On an evenly log-spaced grid of rates (``points_per_decade`` per decade; both ends included
    when they fall on the grid) the loss falls from 1.0 to 0.1 along a tanh step centred on
    ``steepest_at`` (``width`` decades wide), keeps creeping down until ``minimum_at`` and then
    rises quadratically, as a loss that blows up. ``tail`` replaces the values after the minimum
    (for example a noisy rise with a steep drop or ``inf`` in it). ``flat_noise`` adds small
    deterministic noise to the plateau before the descent.
    """
    decades = math.log10(stop) - math.log10(start)
    x = np.log10(start) + np.arange(int(round(decades * points_per_decade)) + 1) / points_per_decade
    centre, bottom = math.log10(steepest_at), math.log10(minimum_at)
    loss = 0.55 - 0.45 * np.tanh((x - centre) / width)
    # a slow creep down to the minimum, then a blow-up
    loss = loss - 0.02 * np.clip(x - centre, 0, bottom - centre) / max(bottom - centre, 1e-9)
    loss = loss + 2.0 * np.clip(x - bottom, 0, None) ** 2
    if flat_noise:
        plateau = x < centre - 3 * width
        loss[plateau] += flat_noise * np.random.default_rng(seed).uniform(-1, 1, int(plateau.sum()))
    if tail is not None:
        after = np.flatnonzero(x > bottom + 1e-9)
        tail = np.asarray(tail, dtype=float)[: len(after)]
        loss[after[: len(tail)]] = tail
        loss = loss[: after[0] + len(tail)] if len(tail) < len(after) else loss
        x = x[: len(loss)]
    return 10.0**x, loss


# ---------------------------------------------------------------------------------------------
# The lesson's opening figure (adamclinic.figures; make figures): the same net at four learning rates.
# ---------------------------------------------------------------------------------------------

FIGURE = {"title": "One network, four learning rates (seed 0)"}


def figure_curves() -> dict[str, np.ndarray]:
    """The training loss per epoch at lr 1e-5, 1e-3, 1e-2 and 1.0, on the lesson's ``base`` run (seed 0)."""
    base = TrainConfig(data=smooth_regression(), build_model=small_relu_net, learning_rate=1e-3, epochs=30, seed=0)
    return {f"lr = {rate:g}": run(base.with_learning_rate(rate)).loss for rate in (1e-5, 1e-3, 1e-2, 1.0)}
