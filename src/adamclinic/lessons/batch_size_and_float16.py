"""Lesson 09a, batch size and float16: what the batch size does to Adam's good learning rate, and what
pure float16 does to Adam's arithmetic.

**Part 1, batch size**, measured on the course's own data with the engine:

- **The good learning rate moves with the batch size.** ``learning_rate_sweep`` trains every batch size at
  every rate over seeds, for a fixed number of epochs or a fixed number of optimizer steps;
  ``best_learning_rates`` picks the best rate per batch size (median over seeds, refined between grid
  points); ``scaling_exponent`` fits ``log best rate = k · log batch size + c``. Two rules are quoted: the
  best rate grows like the batch size (``k = 1``, the linear rule for SGD, Goyal et al. 2017) or like its
  square root (``k = 1/2``, the rule for Adam, Malladi et al. 2022, "On the SDEs and scaling rules for
  adaptive gradient algorithms"). ``scaling_rule`` says which the measured ``k`` is closer to. Both rules
  are stated for a fixed number of epochs (the large batch takes fewer, larger steps); the same sweep at a
  fixed number of steps shows how much of the move is only the step count.
- **The classic trap.** At a fixed number of epochs, 16 times the batch size is 16 times fewer steps.
  ``batch_trap`` trains the large batch at the same epochs and rate, with the rate rescaled by a rule,
  and at the same number of steps, and says how much of the small batch's loss each setting recovers.
- **Gradient noise.** A minibatch gradient is the full-data gradient plus noise whose size falls like
  ``1 / batch size``. ``gradient_noise`` measures it directly from per-example gradients, beside the exact
  value for batches drawn without replacement.

Every run is a plain ``TrainConfig`` (``batch_size_config``), so a slider panel can retrain any point of
the sweep live. A new batch size is a new compiled trainer in the engine (XLA needs static shapes): the
first run at each batch size pays its compile, later runs at that size (any rate, seed or epoch count)
reuse it.

**Part 2, float16.** float16 has 10 bits of mantissa and 5 of exponent: its largest value is 65504,
its smallest normal value 6.1e-5 and its smallest subnormal 6.0e-8 (``float16_facts``). Training in it without care fails in three
ways, each measured here on the course's own data and nets:

- **Adam's second moment underflows.** Keras's Adam keeps ``m`` and ``v`` in the dtype of the weight. In
  float16, ``v = (1 - β2) g²`` is 0 after the first step for every ``|g|`` below about 5e-3, and the
  numerator ``m · α`` is 0 for ``|g|`` below about 1e-3: those weights do not move, while weights with a
  gradient between the two get ``m · α / ε``, steps hundreds of times the learning rate
  (``adam_first_steps``). ε = 1e-7 is *not* zero in float16: it rounds to the subnormal 1.19e-7, which
  is what makes those steps finite but huge (a CPU or GPU that flushes subnormals to zero makes them
  inf, and a zero gradient's 0 / 0 a NaN).
- **Small gradients underflow to zero**, in the backward pass itself (``train_in_precision`` counts the
  share of gradient entries that are exactly 0 at every step, beside the same run in float32).
- **Large values overflow to inf** (65504 and up): a squared error on targets in the hundreds, or an
  input in the hundred-thousands, is inf in float16; ``train_in_precision`` reports the first step whose
  loss is inf and the first whose loss or weights are NaN. Adam squares the gradient, so one entry above
  √65504 = 256 makes its ``v`` inf, and the next step's ``g² - v`` = inf - inf makes the weight NaN.
- **Float16 weights lose small updates**: a step below half the spacing of float16 numbers near the weight
  (1.2e-4 near 0.2) leaves it unchanged (``PrecisionRun.lost_update_share``), which is why the mixed
  policy keeps the weights in float32.

The fix is Keras's ``mixed_float16`` policy (variables, and so Adam's ``m`` and ``v``, in float32; the
layers compute in float16) with ``keras.optimizers.LossScaleOptimizer``, which multiplies the loss by a
large factor before the backward pass and divides the gradients by it after, so they no longer
underflow. ``model.compile`` wraps the optimizer in it by itself when the *model's* dtype policy is
``mixed_float16`` (``fit_in_precision`` checks that).

The runs here do not use the engine: ``train_in_precision`` is a small custom loop with
``tf.GradientTape`` (per step it needs the gradients and the weights before and after), with the
engine's batches (a seeded permutation per epoch, partial batch dropped) and the engine's initial
weights (the float32 model built under the seed, copied into the half-precision one). It runs without
XLA by default, like ``model.fit`` on a CPU (``jit_compile=True`` runs it under XLA, as the engine
would; on lesson 01's run it gave the same losses to four digits in all three precisions). Nothing here
changes Keras's global dtype policy except ``fit_in_precision``, which puts it back in a ``finally``.
"""

from __future__ import annotations

import html
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache

import ipywidgets as w
import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from adamclinic.data import smooth_regression
from adamclinic.engine import (
    Dataset,
    EpochMetrics,
    History,
    TrainConfig,
    call_seeded,
    run,
    seed_everything,
    step_trace,
)
from adamclinic.models import small_relu_net
from adamclinic.panels import ScoreBoard, TrainingPanel, log_slider

BATCH_SIZES = (16, 32, 64, 128, 256)  # each divides the 1024 training rows, so no run drops a partial batch
# Quarter-decade steps from about 3e-4 to 3e-1: with half decades, a square-root rule (16x the batch,
# 4x the rate, 0.6 decades) and a linear one (16x, 1.2 decades) would be hard to tell apart.
LEARNING_RATES = tuple(10.0 ** (k / 4) for k in range(-14, -1))
EPOCHS = 30  # lesson 01's runs
STEPS = 960  # lesson 01's runs too: 30 epochs of 32 batches of 32
SEEDS = (0, 1, 2, 3, 4)
RULES = {"linear": 1.0, "square root": 0.5}
METRICS = ("train_loss", "val_loss", "epoch_loss")


@cache
def lesson_data() -> Dataset:
    """Lesson 01's regression data (1024 training rows, 256 validation rows), loaded once.

    One object for every run: the engine keeps the arrays on the device per Dataset object.
    """
    return smooth_regression()


def steps_per_epoch(data: Dataset, batch_size: int) -> int:
    """How many optimizer steps one epoch takes: the engine drops a final partial batch."""
    if not 1 <= batch_size <= len(data.x_train):
        raise ValueError(f"batch_size must be between 1 and the {len(data.x_train)} training rows; got {batch_size}.")
    return len(data.x_train) // batch_size


def epochs_for_steps(data: Dataset, batch_size: int, steps: int) -> int:
    """The number of epochs that makes ``steps`` optimizer steps at ``batch_size``; it must be whole."""
    per_epoch = steps_per_epoch(data, batch_size)
    if steps < per_epoch or steps % per_epoch:
        raise ValueError(
            f"{steps} steps is not a whole number of epochs at batch size {batch_size} "
            f"({per_epoch} steps an epoch): choose a multiple of {per_epoch}."
        )
    return steps // per_epoch


def batch_size_config(
    batch_size: int,
    learning_rate: float,
    seed: int = 0,
    epochs: int | None = EPOCHS,
    steps: int | None = None,
    data: Dataset | None = None,
    build_model: Callable[[], keras.Model] = small_relu_net,
) -> TrainConfig:
    """One run of the lesson: ``build_model`` on ``data`` (lesson 01's net and data by default) with Adam.

    Give ``steps`` to train a fixed number of optimizer steps (the epochs follow from the batch size);
    otherwise the run trains ``epochs`` epochs, whatever number of steps that makes.
    """
    data = lesson_data() if data is None else data
    if steps is not None:
        epochs = epochs_for_steps(data, batch_size, steps)
    elif epochs is None:
        raise ValueError("Give epochs or steps: how long should the run train?")
    steps_per_epoch(data, batch_size)  # a clear message for a batch size that does not fit the data
    return TrainConfig(
        data=data,
        build_model=build_model,
        learning_rate=float(learning_rate),
        epochs=int(epochs),
        batch_size=int(batch_size),
        seed=int(seed),
        note=f"batch {batch_size}",
    )


def rescaled_learning_rate(learning_rate: float, from_batch: int, to_batch: int, exponent: float) -> float:
    """The rate a scaling rule gives at ``to_batch``: ``learning_rate · (to_batch / from_batch) ** exponent``
    (exponent 1: the linear rule; 0.5: the square-root rule)."""
    return float(learning_rate) * (to_batch / from_batch) ** exponent


# ---------------------------------------------------------------------------------------------
# Measuring a run: the training loss on all the training rows at the final weights.
#
# The engine reports the mean batch loss over the last epoch, taken while the weights still move:
# over 64 steps at batch 16 but over 4 at batch 256, so it lags by a different amount at each batch
# size. The loss of the final weights on every training row is the same yardstick for all of them.
# ---------------------------------------------------------------------------------------------

_evaluation_lock = threading.Lock()


@cache
def _evaluation_model(build_model: Callable[[], keras.Model]) -> keras.Model:
    return build_model()


def full_training_loss(history: History) -> float:
    """The loss of ``history``'s final weights on every training row (``inf`` when the run diverged)."""
    if history.diverged or history.final_weights is None:
        return math.inf
    config = history.config
    loss_fn = keras.losses.get(config.loss) if isinstance(config.loss, str) else config.loss
    with _evaluation_lock:
        model = _evaluation_model(config.build_model)
        model.set_weights(history.final_weights)
        loss = float(tf.reduce_mean(loss_fn(config.data.y_train, model(config.data.x_train, training=False))))
    return loss if math.isfinite(loss) else math.inf


def run_row(config: TrainConfig) -> dict[str, float | int | bool]:
    """Train ``config`` and return one row of a sweep: its settings, its losses and its CPU seconds."""
    start = time.process_time()
    history = run(config)
    seconds = time.process_time() - start
    diverged = history.diverged
    val = history.epochs[-1].val_loss if history.epochs else None
    return {
        "batch_size": config.batch_size,
        "learning_rate": float(config.learning_rate),
        "seed": config.seed,
        "epochs": config.epochs,
        "steps": config.epochs * steps_per_epoch(config.data, config.batch_size),
        "train_loss": full_training_loss(history),
        "val_loss": math.inf if diverged or val is None or not math.isfinite(val) else float(val),
        "epoch_loss": history.final_loss if math.isfinite(history.final_loss) else math.inf,
        "diverged": diverged,
        "cpu_seconds": seconds,
    }


def learning_rate_sweep(
    data: Dataset | None = None,
    build_model: Callable[[], keras.Model] = small_relu_net,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    learning_rates: Sequence[float] | Mapping[int, Sequence[float]] = LEARNING_RATES,
    seeds: Sequence[int] = SEEDS,
    epochs: int | None = None,
    steps: int | None = None,
) -> pd.DataFrame:
    """Train every batch size at every learning rate and seed, for ``epochs`` epochs or ``steps`` steps.

    ``learning_rates`` is one grid for all batch sizes or a grid per batch size (a mapping), for a
    reduced sweep around the rates that matter. One row per run, with the columns of ``run_row``:
    ``train_loss`` (all training rows, final weights), ``val_loss``, ``epoch_loss`` (the engine's last
    epoch), ``diverged`` and ``cpu_seconds``. A run that diverged has the loss ``inf``.
    """
    if (epochs is None) == (steps is None):
        raise ValueError("Give exactly one of epochs (a fixed number of epochs) or steps (a fixed number of steps).")
    data = lesson_data() if data is None else data
    rows = []
    for batch_size in batch_sizes:
        rates = learning_rates[batch_size] if isinstance(learning_rates, Mapping) else learning_rates
        for learning_rate in rates:
            for seed in seeds:
                config = batch_size_config(batch_size, learning_rate, seed, epochs, steps, data, build_model)
                rows.append(run_row(config))
    return pd.DataFrame(rows)


def _refined_minimum(log_rates: np.ndarray, log_losses: np.ndarray) -> float:
    """The log rate where a parabola through the grid's lowest point and its two neighbours bottoms out.

    At an edge of the grid, or where the three points do not curve upward, the grid point itself.
    """
    best = int(np.argmin(log_losses))
    if best in (0, len(log_rates) - 1) or not np.all(np.isfinite(log_losses[best - 1 : best + 2])):
        return float(log_rates[best])
    curve = np.polyfit(log_rates[best - 1 : best + 2], log_losses[best - 1 : best + 2], 2)
    if curve[0] <= 0:
        return float(log_rates[best])
    # Never beyond the neighbours: the parabola is only trusted between them.
    return float(np.clip(-curve[1] / (2 * curve[0]), log_rates[best - 1], log_rates[best + 1]))


def _best_of(losses_by_rate: pd.Series) -> dict[str, float]:
    rates = losses_by_rate.index.to_numpy(dtype=float)
    losses = losses_by_rate.to_numpy(dtype=float)
    best = int(np.argmin(losses))
    refined = _refined_minimum(np.log10(rates), np.log(losses))
    return {"best_rate": float(rates[best]), "refined_rate": float(10.0**refined), "loss": float(losses[best])}


def best_learning_rates(sweep: pd.DataFrame, metric: str = "train_loss", per_seed: bool = False) -> pd.DataFrame:
    """The best learning rate per batch size: ``best_rate`` on the grid, ``refined_rate`` between grid
    points (a parabola in log rate through the lowest log loss and its neighbours), and ``loss`` there.

    By the median loss over seeds (one row per batch size), or with ``per_seed`` the best rate of each
    seed on its own (one row per batch size and seed), for the spread of the scaling exponent.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}; got {metric!r}.")
    if per_seed:
        groups = sweep.groupby(["batch_size", "seed"])
        rows = {key: _best_of(group.set_index("learning_rate")[metric].sort_index()) for key, group in groups}
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis(["batch_size", "seed"])
    medians = sweep.groupby(["batch_size", "learning_rate"])[metric].median()
    rows = {batch: _best_of(medians.loc[batch].sort_index()) for batch in medians.index.unique("batch_size")}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("batch_size")


def scaling_exponent(best: pd.DataFrame, column: str = "refined_rate") -> float:
    """The slope ``k`` of ``log best rate`` against ``log batch size`` (least squares): the best rate grows
    like ``batch size ** k``. ``best`` is one row per batch size, as ``best_learning_rates`` gives."""
    if best.index.nlevels != 1:
        raise ValueError("Give one best rate per batch size: best_learning_rates(sweep), not per_seed=True.")
    if len(best) < 2:
        raise ValueError("A slope needs at least two batch sizes.")
    slope, _ = np.polyfit(np.log(best.index.to_numpy(dtype=float)), np.log(best[column].to_numpy(dtype=float)), 1)
    return float(slope)


def scaling_exponents_by_seed(
    sweep: pd.DataFrame, metric: str = "train_loss", column: str = "refined_rate"
) -> pd.Series:
    """``scaling_exponent`` fitted to each seed's own best rates: how much the measured ``k`` varies."""
    per_seed = best_learning_rates(sweep, metric, per_seed=True)
    return pd.Series(
        {seed: scaling_exponent(group.droplevel("seed"), column) for seed, group in per_seed.groupby(level="seed")},
        name="exponent",
    ).rename_axis("seed")


def scaling_rule(exponent: float, tolerance: float = 0.25) -> str:
    """The quoted rule a measured exponent is closest to (``"linear"``: 1, ``"square root"``: 1/2), or
    ``"neither"`` when it is farther than ``tolerance`` from both."""
    name, value = min(RULES.items(), key=lambda item: abs(item[1] - exponent))
    return name if abs(value - exponent) <= tolerance else "neither"


# ---------------------------------------------------------------------------------------------
# The classic trap: the same epochs at 16x the batch size are 16x fewer steps.
# ---------------------------------------------------------------------------------------------


def trap_settings(
    learning_rate: float,
    exponents: Sequence[float] = tuple(RULES.values()),
    small: int = 16,
    large: int = 256,
    epochs: int = EPOCHS,
) -> pd.DataFrame:
    """The settings ``batch_trap`` compares, one row each: the small batch at ``learning_rate``; the large
    batch at the same epochs and rate (the trap: ``large / small`` times fewer steps); the same epochs
    with the rate rescaled by ``(large / small) ** k`` for each ``k`` in ``exponents`` (0.5: the
    square-root rule, 1: the linear rule); and the same number of steps at the same rate (``large /
    small`` times the epochs)."""
    if large % small:
        raise ValueError(f"large ({large}) must be a multiple of small ({small}).")
    ratio = large // small
    settings = [
        ("small batch", small, learning_rate, epochs),
        ("large batch, same epochs, same rate", large, learning_rate, epochs),
    ]
    settings += [
        (
            f"large batch, same epochs, rate x {ratio}^{k:g}",
            large,
            rescaled_learning_rate(learning_rate, small, large, k),
            epochs,
        )
        for k in exponents
    ]
    settings.append(("large batch, same steps, same rate", large, learning_rate, epochs * ratio))
    return pd.DataFrame(settings, columns=["setting", "batch_size", "learning_rate", "epochs"])


def batch_trap(
    learning_rate: float,
    exponents: Sequence[float] = tuple(RULES.values()),
    data: Dataset | None = None,
    build_model: Callable[[], keras.Model] = small_relu_net,
    small: int = 16,
    large: int = 256,
    epochs: int = EPOCHS,
    seeds: Sequence[int] = SEEDS,
    metric: str = "train_loss",
) -> pd.DataFrame:
    """Train each of ``trap_settings`` over ``seeds``; one row per setting (indexed by its name) with its
    batch size, rate, epochs and steps, the ``median``, ``lowest`` and ``highest`` of ``metric`` over
    seeds, the ``losses`` per seed, and ``recovered``: the share of the gap between the trap (large
    batch, same epochs, same rate) and the small batch that the setting closes, in log loss (1: as low
    as the small batch; 0: no better than the trap; above 1: lower than the small batch).
    """
    data = lesson_data() if data is None else data
    rows = []
    for setting in trap_settings(learning_rate, exponents, small, large, epochs).itertuples(index=False):
        losses = [
            run_row(
                batch_size_config(
                    setting.batch_size, setting.learning_rate, seed, setting.epochs, None, data, build_model
                )
            )[metric]
            for seed in seeds
        ]
        rows.append(
            {
                "setting": setting.setting,
                "batch_size": setting.batch_size,
                "learning_rate": setting.learning_rate,
                "epochs": setting.epochs,
                "steps": setting.epochs * steps_per_epoch(data, setting.batch_size),
                "median": float(np.median(losses)),
                "lowest": float(np.min(losses)),
                "highest": float(np.max(losses)),
                "losses": tuple(losses),
            }
        )
    return with_recovered_share(pd.DataFrame(rows).set_index("setting"))


def with_recovered_share(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (the small batch first, the trap second, as ``batch_trap`` builds it) with a ``recovered``
    column: ``(log trap - log setting) / (log trap - log small batch)`` on the median losses."""
    small_loss = math.log(table["median"].iloc[0])
    trap_loss = math.log(table["median"].iloc[1])
    return table.assign(recovered=(trap_loss - np.log(table["median"])) / (trap_loss - small_loss))


# ---------------------------------------------------------------------------------------------
# Gradient noise: how far a minibatch gradient lies from the gradient over all the training rows.
# ---------------------------------------------------------------------------------------------


_gradient_lock = threading.Lock()


@cache
def _per_row_gradients(build_model: Callable[[], keras.Model], loss: str | Callable) -> tuple[keras.Model, Callable]:
    """One model and one traced function per architecture and loss, so later calls reuse the trace."""
    model = build_model()
    loss_fn = keras.losses.get(loss) if isinstance(loss, str) else loss

    # A vectorized gradient per row: about ten times faster than tape.jacobian in eager mode.
    @tf.function(reduce_retracing=True)
    def gradients(x, y):
        def one_row(row):
            x_row, y_row = row
            with tf.GradientTape() as tape:
                row_loss = tf.reduce_mean(loss_fn(y_row[None], model(x_row[None], training=True)))
            return tape.gradient(row_loss, model.trainable_variables)

        return tf.vectorized_map(one_row, (x, y))

    return model, gradients


def per_example_gradients(
    data: Dataset,
    build_model: Callable[[], keras.Model],
    seed: int = 0,
    weights: Sequence[np.ndarray] | None = None,
    loss: str | Callable = "mean_squared_error",
) -> np.ndarray:
    """Rows × weights: the gradient of each training row's loss, at the seeded initial weights (the same
    ones the engine starts from) or at ``weights`` (for example a run's ``final_weights``)."""
    if weights is None:
        seed_everything(seed)
        weights = build_model().get_weights()
    with _gradient_lock:
        model, gradients = _per_row_gradients(build_model, loss)
        model.set_weights(list(weights))
        per_variable = gradients(tf.constant(data.x_train, dtype="float32"), tf.constant(data.y_train, dtype="float32"))
    rows = len(data.x_train)
    return np.concatenate([np.reshape(g.numpy(), (rows, -1)) for g in per_variable], axis=1).astype("float64")


def gradient_noise(
    data: Dataset | None = None,
    build_model: Callable[[], keras.Model] = small_relu_net,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    seed: int = 0,
    weights: Sequence[np.ndarray] | None = None,
    batches: int = 256,
    loss: str | Callable = "mean_squared_error",
) -> pd.DataFrame:
    """The noise in a minibatch gradient, per batch size, at one set of weights (see ``per_example_gradients``).

    Batches are drawn as the engine draws them (a seeded permutation per epoch, cut into contiguous
    batches; ``batches`` of them per batch size, over as many epochs as that takes). Columns:

    - ``noise``: the mean of ``||g_batch - g||²`` over the batches drawn, ``g`` the gradient on all rows;
    - ``expected noise``: its exact expectation for batches drawn without replacement,
      ``tr Σ / B · (N - B) / (N - 1)`` (``Σ`` the covariance of the per-row gradients, ``N`` rows, ``B``
      the batch size): ``1 / B`` but for the last factor, which reaches 0 when a batch is all the data;
    - ``signal``: ``||g||²``, the same for every batch size;
    - ``noise ÷ signal``: above 1, a step's direction is more noise than gradient.
    """
    data = lesson_data() if data is None else data
    grads = per_example_gradients(data, build_model, seed, weights, loss)
    rows_count = len(grads)
    full = grads.mean(axis=0)
    total_variance = float(((grads - full) ** 2).sum(axis=1).mean())  # tr Σ, over the N rows
    rng = np.random.default_rng(seed)
    table = []
    for batch_size in batch_sizes:
        per_epoch = steps_per_epoch(data, batch_size)
        epochs = -(-batches // per_epoch)
        order = np.concatenate(
            [
                rng.permutation(rows_count)[: per_epoch * batch_size].reshape(per_epoch, batch_size)
                for _ in range(epochs)
            ]
        )[:batches]
        # Each batch's gradient is the mean of its rows' gradients: one matrix product, where indexing
        # grads[order] would copy batches × batch size × weights numbers (gigabytes on the digits).
        averaging = np.zeros((len(order), rows_count))
        np.put_along_axis(averaging, order, 1.0 / batch_size, axis=1)
        batch_grads = averaging @ grads
        noise = float(((batch_grads - full) ** 2).sum(axis=1).mean())
        expected = total_variance / batch_size * (rows_count - batch_size) / (rows_count - 1)
        table.append(
            {
                "batch_size": batch_size,
                "noise": noise,
                "expected noise": expected,
                "signal": float(full @ full),
                "noise ÷ signal": noise / float(full @ full),
            }
        )
    return pd.DataFrame(table).set_index("batch_size")


def noise_exponent(noise: pd.DataFrame, column: str = "noise") -> float:
    """The slope of ``log noise`` against ``log batch size``: about -1 when noise falls like ``1 / B``."""
    slope, _ = np.polyfit(np.log(noise.index.to_numpy(dtype=float)), np.log(noise[column].to_numpy(dtype=float)), 1)
    return float(slope)


def step_budget(config: TrainConfig) -> dict[str, float]:
    """How far ``config``'s run could move its weights and how far it did: the ``steps``, the largest move
    of any weight in one step in units of the learning rate (``largest_step_in_lr``: about 1 or less for
    Adam, whatever the batch size), the ``reach`` those steps allow (``steps × lr × largest_step_in_lr``)
    and the ``farthest_move`` of any weight from its start to its end."""
    trace = step_trace(config)
    history = run(config)
    seed_everything(config.seed)
    start = config.build_model().get_weights()
    steps = len(trace.loss)
    largest = trace.largest_step_in_learning_rates
    return {
        "steps": steps,
        "largest_step_in_lr": largest,
        "reach": steps * float(config.learning_rate) * largest,
        "farthest_move": max(float(np.abs(end - begin).max()) for end, begin in zip(history.final_weights, start)),
    }


def with_steps(config: TrainConfig, steps: int) -> TrainConfig:
    """``config`` retimed to ``steps`` optimizer steps at its own batch size (a whole number of epochs)."""
    return replace(config, epochs=epochs_for_steps(config.data, config.batch_size, steps))


# =============================================================================================
# Part 2: float16
# =============================================================================================

PRECISIONS = ("float32", "float16", "mixed_float16", "mixed_float16 without loss scaling")
"""What ``train_in_precision`` can train in:

- ``float32``: the course's default;
- ``float16``: everything half: weights, Adam's ``m`` and ``v``, activations, gradients and the loss;
- ``mixed_float16``: Keras's mixed policy (float32 variables, float16 computation, the loss computed in
  float32 as Keras's compiled loss does) with ``LossScaleOptimizer(Adam)``: the fix;
- ``mixed_float16 without loss scaling``: the same policy with a bare Adam, to separate the two halves of
  the fix (float32 variables cure Adam's arithmetic; loss scaling cures the gradients' underflow).
"""

_POLICY = {
    "float32": "float32",
    "float16": "float16",
    "mixed_float16": "mixed_float16",
    "mixed_float16 without loss scaling": "mixed_float16",
}


# ---------------------------------------------------------------------------------------------
# What float16 can hold, and what Keras's Adam does with one step in it
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Float16Facts:
    """The limits of float16, and what Adam's default constants become in it.

    ``adam_epsilon`` is Keras's ε = 1e-7 rounded to float16 by NumPy, ``adam_epsilon_tensorflow`` the same
    by a TensorFlow op on this CPU (0 would mean the CPU flushes subnormals). ``square_underflows_below``:
    a gradient smaller than this has ``g²`` = 0; ``first_v_underflows_below``: a gradient smaller than this
    has ``v = (1 - β2) g²`` = 0 after Adam's first step; ``square_overflows_above``: a gradient larger than
    this has ``g²`` = inf, so Adam's ``v`` is inf after one step (the weight does not move) and NaN after
    the second (``g² - v`` = inf - inf).
    """

    largest: float
    smallest_normal: float
    smallest_subnormal: float
    machine_epsilon: float
    adam_epsilon: float
    adam_epsilon_tensorflow: float
    adam_epsilon_xla: float
    square_underflows_below: float
    first_v_underflows_below: float
    square_overflows_above: float
    one_minus_beta_2: float

    @property
    def epsilon_is_zero(self) -> bool:
        """True when ε = 1e-7 rounds to 0 in float16 (it does not: it is the subnormal 2 × 6e-8)."""
        return self.adam_epsilon == 0.0


def float16_facts(beta_2: float = 0.999, epsilon: float = 1e-7) -> Float16Facts:
    """The representable limits of float16 and what ε, ``1 - β2`` and Adam's first ``v`` become in it.

    Shows that ε = 1e-7 is not zero in float16 but the subnormal 1.19e-7 (twice the smallest subnormal),
    in NumPy, in TensorFlow's CPU kernels and under XLA alike; the thresholds follow from the smallest
    subnormal, below half of which a result rounds to 0.
    """
    info = np.finfo(np.float16)
    half_tiny = float(info.smallest_subnormal) / 2  # a result below this rounds to 0
    one = tf.constant(1.0, tf.float16)
    in_tensorflow = float((one * tf.constant(epsilon, tf.float16)).numpy())

    @tf.function(jit_compile=True, autograph=False)
    def times_epsilon(a):
        return a * tf.constant(epsilon, tf.float16)

    in_xla = float(times_epsilon(one).numpy())
    one_minus_beta_2 = float(np.float16(1.0) - np.float16(beta_2))
    return Float16Facts(
        largest=float(info.max),
        smallest_normal=float(info.tiny),
        smallest_subnormal=float(info.smallest_subnormal),
        machine_epsilon=float(info.eps),
        adam_epsilon=float(np.float16(epsilon)),
        adam_epsilon_tensorflow=in_tensorflow,
        adam_epsilon_xla=in_xla,
        square_underflows_below=math.sqrt(half_tiny),
        first_v_underflows_below=math.sqrt(half_tiny / (1 - beta_2)),
        square_overflows_above=math.sqrt(float(info.max)),
        one_minus_beta_2=one_minus_beta_2,
    )


def adam_first_steps(
    gradients: Sequence[float], learning_rate: float = 1e-3, steps: int = 1, epsilon: float = 1e-7
) -> pd.DataFrame:
    """How far Keras's own Adam moves a weight in ``steps`` steps of a constant gradient, in float32 and float16.

    One row per gradient. The weights start at 0, so their new values are the moves themselves (a float16
    weight of size 0.1 could not show a move below 3e-5). In float32 every nonzero gradient moves its weight
    by about ``learning_rate`` per step (lesson 01). In float16 ``v`` is 0 for small gradients (column
    ``v in float16``): those below about 1e-3 do not move at all (``m · α`` underflows too), those between
    about 1e-3 and 5e-3 move by ``m · α / ε``, hundreds of learning rates, and a zero gradient stays put
    (0 / 1.19e-7, not 0 / 0).
    """
    values = np.asarray(gradients, dtype="float64")
    moves, velocities = {}, {}
    for dtype in ("float32", "float16"):
        weight = keras.Variable(np.zeros(len(values)), dtype=dtype)
        optimizer = keras.optimizers.Adam(learning_rate=learning_rate, epsilon=epsilon)
        gradient = tf.constant(values, dtype=dtype)
        for _ in range(steps):
            optimizer.apply([gradient], [weight])
        moves[dtype] = -weight.numpy().astype("float64")
        velocities[dtype] = optimizer._velocities[0].numpy().astype("float64")
    return pd.DataFrame(
        {
            "gradient": values,
            "move in float32": moves["float32"],
            "move in float16": moves["float16"],
            "float16 move ÷ float32 move": np.divide(
                moves["float16"], moves["float32"], out=np.full(len(values), np.nan), where=moves["float32"] != 0
            ),
            "v in float16": velocities["float16"],
        }
    )


# ---------------------------------------------------------------------------------------------
# Training in a precision: a custom loop that sees every step's gradients
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrecisionRun:
    """One run of ``train_in_precision``. Steps count from 1.

    Per epoch: ``loss`` (the mean batch loss, as Keras reports it; inf or NaN when a batch's was), and the
    wall and CPU seconds each epoch took. Per step: ``step_loss``; ``zero_gradient_share``, the share of
    all gradient entries that are exactly 0 (as the backward pass made them, before any unscaling);
    ``lost_update_share``, the share of entries whose gradient was finite and nonzero but whose weight did
    not change (the update was below half the weight's float16 spacing); ``largest_update``, the largest
    ``|Δw|`` of any weight in the step (Adam's is about the learning rate); ``largest_gradient``, the largest
    finite ``|g|`` (unscaled: divided by the loss scale); ``loss_scale``, the factor
    ``LossScaleOptimizer`` used (1 without it); ``skipped``, the steps it skipped because a gradient was
    not finite. The run stops after the first epoch whose weights are not all finite.
    """

    precision: str
    loss: np.ndarray
    step_loss: np.ndarray
    zero_gradient_share: np.ndarray
    lost_update_share: np.ndarray
    largest_update: np.ndarray
    largest_gradient: np.ndarray
    loss_scale: np.ndarray
    skipped: np.ndarray
    weights_finite: np.ndarray
    steps_per_epoch: int
    epoch_seconds: np.ndarray
    epoch_cpu_seconds: np.ndarray

    @property
    def final_loss(self) -> float:
        """The last epoch's loss (inf or NaN when the run broke)."""
        return float(self.loss[-1])

    @property
    def first_inf_step(self) -> int | None:
        """The first step whose loss was ±inf, or None."""
        return _first(np.isinf(self.step_loss))

    def first_step_with_gradient_above(self, size: float) -> int | None:
        """The first step in which some gradient entry's size passed ``size`` (or was not finite), or None."""
        return _first(self.largest_gradient > size)

    @property
    def first_nan_step(self) -> int | None:
        """The first step whose loss was NaN or after which a weight was not finite, or None."""
        return _first(np.isnan(self.step_loss) | ~self.weights_finite)

    @property
    def first_nonfinite_step(self) -> int | None:
        """The first step whose loss or weights were not finite, or None."""
        return _first(~np.isfinite(self.step_loss) | ~self.weights_finite)

    @property
    def first_nonfinite_epoch(self) -> int | None:
        """The epoch of ``first_nonfinite_step``, or None."""
        step = self.first_nonfinite_step
        return None if step is None else (step - 1) // self.steps_per_epoch + 1

    @property
    def diverged(self) -> bool:
        """True when some epoch's loss was inf or NaN."""
        return not bool(np.all(np.isfinite(self.loss)))

    @property
    def seconds_per_epoch(self) -> float:
        """Median wall seconds of an epoch, leaving out the first (it includes tracing)."""
        return float(np.median(self.epoch_seconds[1:] if len(self.epoch_seconds) > 1 else self.epoch_seconds))

    @property
    def cpu_seconds_per_epoch(self) -> float:
        """Median CPU seconds (all threads of this process) of an epoch, leaving out the first."""
        times = self.epoch_cpu_seconds
        return float(np.median(times[1:] if len(times) > 1 else times))

    def mean_zero_gradient_share(self, first_steps: int | None = None) -> float:
        """The mean share of exactly-zero gradient entries over the run's steps (or its first ``first_steps``)."""
        shares = self.zero_gradient_share[:first_steps]
        return float(np.mean(shares)) if len(shares) else math.nan

    def status(self) -> str:
        """One line for a student: how the run ended."""
        if self.first_nan_step is not None:
            inf = f"the loss was inf from step {self.first_inf_step}, " if self.first_inf_step else ""
            return f"{self.precision}: {inf}NaN from step {self.first_nan_step} (epoch {self.first_nonfinite_epoch})"
        if self.first_inf_step is not None:
            return (
                f"{self.precision}: the loss was inf from step {self.first_inf_step}; final loss {self.final_loss:.4g}"
            )
        return f"{self.precision}: {len(self.loss)} epochs, final loss {self.final_loss:.4g}"


def _first(flags: np.ndarray) -> int | None:
    hits = np.flatnonzero(flags)
    return int(hits[0]) + 1 if len(hits) else None


def model_in_precision(model: keras.Model, policy: str) -> keras.Model:
    """A copy of ``model`` whose every layer has the dtype policy ``policy``, with the same weights.

    Per layer, so Keras's global policy never changes. The model itself keeps the global policy, so
    ``compile`` would not wrap its optimizer in ``LossScaleOptimizer``: ``train_in_precision`` does that.
    """
    if policy == "float32":
        return model

    def in_policy(layer: keras.layers.Layer) -> keras.layers.Layer:
        return layer.__class__.from_config({**layer.get_config(), "dtype": policy})

    copy = keras.models.clone_model(model, clone_function=in_policy)
    copy.set_weights(model.get_weights())
    return copy


class _PrecisionTrainer:
    """One model and optimizer in one precision, and one traced epoch, reused by every seed and rate."""

    def __init__(
        self,
        build_model: Callable[[], keras.Model],
        precision: str,
        loss: str,
        batch_size: int,
        steps: int,
        jit_compile: bool,
    ):
        self.build_model = build_model
        self.precision = precision
        self.batch_size = batch_size
        self.steps = steps
        self.scaling = precision == "mixed_float16"
        self.loss_in_float32 = precision.startswith("mixed")  # as Keras's compiled loss (floatx) does
        self.loss_fn = keras.losses.get(loss)
        self.model = model_in_precision(build_model(), _POLICY[precision])
        self.variables = self.model.trainable_variables
        inner = keras.optimizers.Adam(learning_rate=1e-3)
        self.optimizer = keras.optimizers.LossScaleOptimizer(inner) if self.scaling else inner
        self.optimizer.build(self.variables)
        self._initial_weights: dict[int, list[np.ndarray]] = {}
        self.epoch = tf.function(self._epoch_fn, jit_compile=jit_compile, reduce_retracing=True)

    def reset(self, seed: int, learning_rate: float) -> None:
        if seed not in self._initial_weights:
            seed_everything(seed)
            self._initial_weights[seed] = self.build_model().get_weights()  # float32, as the engine's
        self.model.set_weights(self._initial_weights[seed])
        for variable in self.optimizer.variables:
            variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
        self.optimizer.learning_rate = learning_rate
        if self.scaling:
            self.optimizer.dynamic_scale.assign(self.optimizer.initial_scale)

    def _loss(self, y, pred, loss_weight):
        if self.loss_in_float32:
            pred = tf.cast(pred, tf.float32)
        task_loss = tf.reduce_mean(self.loss_fn(tf.cast(y, pred.dtype), pred))
        return task_loss, task_loss * tf.cast(loss_weight, pred.dtype)

    def _epoch_fn(self, x, y, order, loss_weight):
        used = order[: self.steps * self.batch_size]
        x_batches = tf.reshape(tf.gather(x, used), (self.steps, self.batch_size) + tuple(x.shape[1:]))
        y_batches = tf.reshape(tf.gather(y, used), (self.steps, self.batch_size) + tuple(y.shape[1:]))
        total = sum(int(np.prod(v.shape)) for v in self.variables)

        def one_step(step, losses, zeros, lost, largest, largest_grad, scales, skipped, finite):
            with tf.GradientTape() as tape:
                pred = self.model(x_batches[step], training=True)
                task_loss, loss = self._loss(y_batches[step], pred, loss_weight)
                if self.scaling:
                    loss = self.optimizer.scale_loss(loss)
            grads = tape.gradient(loss, self.variables)
            scale = tf.identity(self.optimizer.dynamic_scale) if self.scaling else tf.constant(1.0)
            before = [tf.identity(v) for v in self.variables]
            self.optimizer.apply(grads, self.variables)
            flat_grads = tf.concat([tf.reshape(tf.cast(g, tf.float32), [-1]) for g in grads], axis=0)
            after = tf.concat([tf.reshape(tf.cast(v, tf.float32), [-1]) for v in self.variables], axis=0)
            start = tf.concat([tf.reshape(tf.cast(b, tf.float32), [-1]) for b in before], axis=0)
            unmoved = tf.equal(after, start)
            finite_grads = tf.reduce_all(tf.math.is_finite(flat_grads))
            zero_count = tf.reduce_sum(tf.cast(tf.equal(flat_grads, 0.0), tf.float32))
            live = tf.logical_and(tf.math.is_finite(flat_grads), tf.not_equal(flat_grads, 0.0))
            lost_count = tf.reduce_sum(tf.cast(tf.logical_and(live, unmoved), tf.float32))
            weights_ok = tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in self.variables])
            return (
                step + 1,
                losses.write(step, tf.cast(task_loss, tf.float32)),
                zeros.write(step, zero_count / total),
                lost.write(step, lost_count / total),
                largest.write(step, tf.reduce_max(tf.abs(after - start))),
                largest_grad.write(
                    step, tf.reduce_max(tf.where(tf.math.is_finite(flat_grads), tf.abs(flat_grads), 0.0)) / scale
                ),
                scales.write(step, tf.cast(scale, tf.float32)),
                # LossScaleOptimizer skips a step whose gradients are not all finite
                skipped.write(step, tf.logical_and(tf.constant(self.scaling), tf.logical_not(finite_grads))),
                finite.write(step, weights_ok),
            )

        arrays = [tf.TensorArray(tf.float32, size=self.steps) for _ in range(6)]
        arrays += [tf.TensorArray(tf.bool, size=self.steps) for _ in range(2)]
        _, *records = tf.while_loop(lambda step, *_: step < self.steps, one_step, (tf.constant(0), *arrays))
        return [r.stack() for r in records]


_trainers: dict[tuple, _PrecisionTrainer] = {}


def train_in_precision(
    data: Dataset,
    build_model: Callable[[], keras.Model],
    precision: str,
    learning_rate: float = 1e-3,
    epochs: int = 10,
    seed: int = 0,
    batch_size: int = 32,
    loss: str = "mean_squared_error",
    loss_weight: float = 1.0,
    jit_compile: bool = False,
    stop_when_broken: bool = True,
) -> PrecisionRun:
    """Train ``build_model()`` on ``data`` with Keras's Adam in ``precision`` (one of ``PRECISIONS``).

    The same initial weights (the float32 model built under ``seed``), the same batches (the engine's seeded
    permutation per epoch) and the same Adam in every precision, so the runs differ by their arithmetic only.
    ``loss_weight`` multiplies the loss that is differentiated (a loss weight, or a loss averaged over many
    outputs): in float32 Adam hardly notices it (lesson 01), in float16 its gradients underflow. The reported
    losses are the unweighted task loss. Shows, per step, what float16 does (``PrecisionRun``). The run stops
    after the first epoch that leaves a weight NaN or inf, unless ``stop_when_broken`` is False (for timing).

    A new (model, precision, loss, batch size, data shape) traces its epoch once, about a second; later runs
    at any seed, rate or loss weight reuse it.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}.")
    if not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
        raise ValueError(f"learning_rate must be a positive number; got {learning_rate!r}.")
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1; got {epochs}.")
    rows = len(data.x_train)
    if not 1 <= batch_size <= rows:
        raise ValueError(f"batch_size must be between 1 and the {rows} training rows; got {batch_size}.")
    epochs_run = _precision_epochs(
        data, build_model, precision, loss, batch_size, seed, learning_rate, loss_weight, jit_compile
    )
    records, seconds, cpu_seconds = [], [], []
    for _, (record, wall, cpu) in zip(range(epochs), epochs_run):
        records.append(record)
        seconds.append(wall)
        cpu_seconds.append(cpu)
        if stop_when_broken and not record[-1].all():  # a weight is NaN or inf: every later step is NaN too
            break
    return _precision_run(precision, records, rows // batch_size, seconds, cpu_seconds)


def _precision_epochs(
    data: Dataset,
    build_model: Callable[[], keras.Model],
    precision: str,
    loss: str,
    batch_size: int,
    seed: int,
    learning_rate: float,
    loss_weight: float,
    jit_compile: bool,
):
    """Train epoch after epoch (the caller stops), yielding each epoch's per-step records and its wall and CPU
    seconds: the one loop behind ``train_in_precision`` and the panel's ``precision_history``."""
    rows = len(data.x_train)
    steps = rows // batch_size
    key = (build_model, precision, loss, batch_size, steps, data.x_train.shape[1:], data.y_train.shape[1:], jit_compile)
    if key not in _trainers:
        _trainers[key] = _PrecisionTrainer(build_model, precision, loss, batch_size, steps, jit_compile)
    trainer = _trainers[key]
    trainer.reset(seed, learning_rate)
    x, y = tf.constant(data.x_train), tf.constant(data.y_train)
    weight = tf.constant(loss_weight, tf.float32)
    rng = np.random.default_rng(seed)
    while True:
        wall, cpu = time.perf_counter(), time.process_time()
        order = tf.constant(rng.permutation(rows), dtype=tf.int32)
        record = [r.numpy() for r in trainer.epoch(x, y, order, weight)]
        yield record, time.perf_counter() - wall, time.process_time() - cpu


def compare_precisions(
    data: Dataset,
    build_model: Callable[[], keras.Model],
    precisions: Sequence[str] = PRECISIONS,
    seeds: Sequence[int] = (0,),
    **settings,
) -> pd.DataFrame:
    """One row per precision and seed: final loss, first inf and NaN step, mean share of zero gradients and
    of lost updates, skipped steps, seconds per epoch. ``settings`` go to ``train_in_precision``."""
    rows = []
    for precision in precisions:
        for seed in seeds:
            result = train_in_precision(data, build_model, precision, seed=seed, **settings)
            rows.append(
                {
                    "precision": precision,
                    "seed": seed,
                    "final loss": result.final_loss,
                    "first inf step": result.first_inf_step,
                    "first NaN step": result.first_nan_step,
                    "zero gradients": result.mean_zero_gradient_share(),
                    "lost updates": float(np.mean(result.lost_update_share)),
                    "skipped steps": int(result.skipped.sum()),
                    "CPU s / epoch": result.cpu_seconds_per_epoch,
                }
            )
    return pd.DataFrame(rows)


def scaled_targets(data: Dataset, factor: float) -> Dataset:
    """``data`` with its targets multiplied by ``factor``: a cost in cents instead of dollars, say.

    In float32 a target 300 times larger only scales the loss; in float16 its squared error passes 65504.
    """
    return replace(
        data,
        y_train=data.y_train * factor,
        y_val=None if data.y_val is None else data.y_val * factor,
        name=f"{data.name}, targets × {factor:g}",
    )


# ---------------------------------------------------------------------------------------------
# The same in plain Keras: a global dtype policy, compile and fit
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitResult:
    """What ``fit_in_precision`` saw: the loss per epoch, the optimizer ``compile`` ended up with, and
    the dtypes of the model's variables and computation."""

    loss: np.ndarray
    optimizer: str
    variable_dtype: str
    compute_dtype: str
    seconds_per_epoch: float


def fit_in_precision(
    data: Dataset,
    build_model: Callable[[], keras.Model],
    policy: str,
    learning_rate: float = 1e-3,
    epochs: int = 10,
    seed: int = 0,
    batch_size: int = 32,
    loss: str = "mean_squared_error",
) -> FitResult:
    """Train as a student would: ``keras.config.set_dtype_policy(policy)``, build, ``compile``, ``fit``.

    Shows what ``compile`` does under each policy: under ``"mixed_float16"`` it wraps Adam in
    ``LossScaleOptimizer`` (``optimizer`` names the class it ended up with). Keras's compiled loss computes
    in ``keras.config.floatx()`` (float32), so under ``"float16"`` the loss is float32 even though the model
    is half. The global policy is put back whatever happens.
    """
    previous = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy(policy)
        seed_everything(seed)
        model = build_model()
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss=loss)
        start = time.perf_counter()
        fitted = model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=batch_size, verbose=0)
        seconds = (time.perf_counter() - start) / epochs
        first_layer = next(layer for layer in model.layers if layer.weights)
        return FitResult(
            loss=np.asarray(fitted.history["loss"], dtype="float64"),
            optimizer=type(model.optimizer).__name__,
            variable_dtype=str(first_layer.weights[0].dtype),
            compute_dtype=str(first_layer.compute_dtype),
            seconds_per_epoch=seconds,
        )
    finally:
        keras.config.set_dtype_policy(previous)


# ---------------------------------------------------------------------------------------------
# Speed: what half precision costs on this CPU
# ---------------------------------------------------------------------------------------------


def seconds_per_epoch(
    data: Dataset,
    build_model: Callable[[], keras.Model],
    precisions: Sequence[str] = ("float32", "float16", "mixed_float16"),
    epochs: int = 4,
    jit_compile: bool = False,
) -> pd.DataFrame:
    """CPU and wall seconds per epoch of ``train_in_precision`` in each precision, and the ratio to float32.

    The median over ``epochs`` epochs after a first one that traces. Runs that break keep going (NaN costs
    the same arithmetic). A CPU without float16 arithmetic units converts every half value to float32 and
    back, so half precision is no faster here, and ``mixed_float16`` adds a cast per layer; on a GPU with
    tensor cores or a TPU the same policy runs matrix products several times faster.
    """
    rows = []
    for precision in precisions:
        result = train_in_precision(
            data, build_model, precision, epochs=epochs + 1, jit_compile=jit_compile, stop_when_broken=False
        )
        rows.append(
            {
                "precision": precision,
                "CPU s / epoch": result.cpu_seconds_per_epoch,
                "wall s / epoch": result.seconds_per_epoch,
            }
        )
    table = pd.DataFrame(rows).set_index("precision")
    if "float32" in table.index:
        table["CPU ÷ float32"] = table["CPU s / epoch"] / table.loc["float32", "CPU s / epoch"]
    return table


# =============================================================================================
# The lesson's live demos and its opening figure
# =============================================================================================
#
# Each panel wraps a pure function a test calls directly: the batch-size panel trains the engine's
# ``run(batch_size_config(...))``; the precision panel trains ``precision_history(PrecisionConfig)``,
# which is ``train_in_precision`` epoch by epoch (the same trainer, batches and weights), so the curve
# redraws while the run goes on.

PANEL_LEARNING_RATES = (1e-4, 1.0)  # the slider's range: below it nothing moves in 30 epochs, above it all die
TUNED_RATE = 10**-2.25  # 0.0056: the best rate at batch 16 over seeds 0-4 (tests/test_lesson09_claims.py)


def batch_size_panel_config(base: TrainConfig, values: Mapping[str, object]) -> TrainConfig:
    """The run the batch-size panel trains for its control ``values`` (``batch_size``, ``learning_rate``):
    ``batch_size_config`` at ``base``'s data, model, seed and epochs."""
    return batch_size_config(
        int(values["batch_size"]),
        float(values["learning_rate"]),
        seed=base.seed,
        epochs=base.epochs,
        data=base.data,
        build_model=base.build_model,
    )


def batch_size_scores(history: History) -> dict[str, float]:
    """What the batch-size panel's table shows after a run: its optimizer steps and the loss of its final
    weights on every training row (the yardstick the lesson's sweep uses)."""
    config = history.config
    return {
        "optimizer steps": config.epochs * steps_per_epoch(config.data, config.batch_size),
        "training loss, all rows": full_training_loss(history),
    }


def batch_size_panel(
    base: TrainConfig | None = None, batch_size: int = 16, learning_rate: float = TUNED_RATE, **options
) -> TrainingPanel:
    """Lesson 09a's main panel: a batch-size menu and a learning-rate slider on lesson 01's run (30 epochs).

    A new batch size compiles a new trainer once (about a second); later runs at it take a tenth of one.
    Beside the curve, each run's step count and final training loss on all the rows.
    """
    base = batch_size_config(batch_size, learning_rate) if base is None else base
    board = ScoreBoard(batch_size_scores)
    controls = {
        "batch_size": w.Dropdown(
            options=list(BATCH_SIZES),
            value=batch_size,
            description="batch size",
            style={"description_width": "initial"},
        ),
        "learning_rate": log_slider("learning_rate", learning_rate, *PANEL_LEARNING_RATES, description="learning rate"),
    }
    return TrainingPanel(
        batch_size_panel_config(base, {"batch_size": batch_size, "learning_rate": learning_rate}),
        controls,
        make_config=batch_size_panel_config,
        train_fn=board.wrap(run),
        views=[board],
        **options,
    )


# The precision panel ----------------------------------------------------------------------------------

PROBLEMS = {
    "none": {},
    "loss × 1e-6": {"loss_weight": 1e-6},  # tiny gradients: they underflow in float16
    "targets × 100": {"target_factor": 100.0},  # squared errors past 65504: inf, then NaN
}


@dataclass(frozen=True)
class PrecisionConfig(TrainConfig):
    """A ``TrainConfig`` trained by ``train_in_precision``: in ``precision`` (one of ``PRECISIONS``), with one
    of the lesson's ``PROBLEMS`` (a loss multiplied by 1e-6, targets multiplied by 100) or none."""

    precision: str = "float32"
    problem: str = "none"

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}; got {self.precision!r}.")
        if self.problem not in PROBLEMS:
            raise ValueError(f"problem must be one of {tuple(PROBLEMS)}; got {self.problem!r}.")

    @property
    def loss_weight(self) -> float:
        return float(PROBLEMS[self.problem].get("loss_weight", 1.0))

    @property
    def training_data(self) -> Dataset:
        """``data``, with its targets scaled when the problem says so."""
        factor = PROBLEMS[self.problem].get("target_factor")
        return self.data if factor is None else _scaled(self.data, factor)

    def label(self) -> str:
        problem = "" if self.problem == "none" else f", {self.problem}"
        return f"{self.precision}{problem}, lr={float(self.learning_rate):.3g}"


@cache
def _scaled(data: Dataset, factor: float) -> Dataset:
    return scaled_targets(data, factor)


def precision_config(
    precision: str = "float32",
    problem: str = "none",
    learning_rate: float = 1e-3,
    epochs: int = EPOCHS,
    seed: int = 0,
    data: Dataset | None = None,
    build_model: Callable[[], keras.Model] = small_relu_net,
) -> PrecisionConfig:
    """One run of the precision panel: lesson 01's net and data by default, batch 32."""
    return PrecisionConfig(
        data=lesson_data() if data is None else data,
        build_model=build_model,
        learning_rate=float(learning_rate),
        epochs=int(epochs),
        seed=int(seed),
        precision=precision,
        problem=problem,
    )


def _precision_run(precision: str, records, steps: int, seconds, cpu_seconds) -> PrecisionRun:
    step_loss, zeros, lost, largest, largest_grad, scales, skipped, finite = (np.concatenate(r) for r in zip(*records))
    return PrecisionRun(
        precision=precision,
        loss=step_loss.astype("float64").reshape(-1, steps).mean(axis=1),
        step_loss=step_loss.astype("float64"),
        zero_gradient_share=zeros.astype("float64"),
        lost_update_share=lost.astype("float64"),
        largest_update=largest.astype("float64"),
        largest_gradient=largest_grad.astype("float64"),
        loss_scale=scales.astype("float64"),
        skipped=skipped,
        weights_finite=finite,
        steps_per_epoch=steps,
        epoch_seconds=np.array(seconds),
        epoch_cpu_seconds=np.array(cpu_seconds),
    )


def precision_history(
    config: PrecisionConfig,
    cancel: threading.Event | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> History:
    """Train ``config`` as ``train_in_precision`` does (the same trainer, initial weights, batches and numbers),
    one epoch at a time, calling ``on_epoch`` after each; the ``History`` carries the ``PrecisionRun`` as
    ``precision_run``. Stops after the first epoch that leaves a weight NaN or inf, or when ``cancel`` is set."""
    data = config.training_data
    steps = steps_per_epoch(data, config.batch_size)
    epochs_run = _precision_epochs(
        data,
        config.build_model,
        config.precision,
        config.loss,
        config.batch_size,
        config.seed,
        float(config.learning_rate),
        config.loss_weight,
        False,
    )
    history = History(config)
    records, seconds, cpu_seconds = [], [], []
    for epoch in range(1, config.epochs + 1):
        if cancel is not None and cancel.is_set():
            history.cancelled = True
            break
        record, wall, cpu = next(epochs_run)
        records.append(record)
        seconds.append(wall)
        cpu_seconds.append(cpu)
        step_loss = records[-1][0].astype("float64")
        metrics = EpochMetrics(
            epoch=epoch,
            loss=float(step_loss.mean()),
            val_loss=None,
            learning_rate=float(config.learning_rate),
            grad_norm=math.nan,
            seconds=seconds[-1],
        )
        history.epochs.append(metrics)
        if metrics.diverged and history.diverged_at is None:
            history.diverged_at = epoch
        if on_epoch is not None:
            on_epoch(metrics)
        if not records[-1][-1].all():  # a weight is NaN or inf: every later step is NaN too
            break
    history.precision_run = _precision_run(config.precision, records, steps, seconds, cpu_seconds) if records else None
    return history


def describe_precision_run(history: History) -> str:
    """The precision panel's status line: the label, the loss from the first to the last epoch, the mean share
    of exactly-zero gradient entries, and the first step whose loss was inf and whose loss or weights were NaN."""
    label = html.escape(history.config.label())
    result = getattr(history, "precision_run", None)
    if history.cancelled:
        return f"<b>{label}</b>: stopped at epoch {len(history.epochs)} because the settings changed"
    if result is None:
        return f"<b>{label}</b>: trained no epoch"
    first, final = float(result.loss[0]), float(result.loss[-1])
    parts = [
        f"{len(result.loss)} epochs, loss {first:.4g} → {final:.4g}",
        f"zero gradients {result.mean_zero_gradient_share():.0%} of entries",
        f"first inf loss: {'step ' + str(result.first_inf_step) if result.first_inf_step else 'none'}",
        f"first NaN: {'step ' + str(result.first_nan_step) if result.first_nan_step else 'none'}",
    ]
    if int(result.skipped.sum()):
        parts.append(f"{int(result.skipped.sum())} steps skipped by LossScaleOptimizer")
    text = html.escape("; ".join(parts))
    if result.first_nan_step is not None or result.first_inf_step is not None:
        text = f"<span style='color:#D55E00'>{text}</span>"
    return f"<b>{label}</b>: {text}"


class PrecisionPanel(TrainingPanel):
    """A ``TrainingPanel`` whose status line reports what float16 did (``describe_precision_run``)."""

    @staticmethod
    def _verdict(history: History) -> str:
        return describe_precision_run(history)


def precision_panel_config(base: PrecisionConfig, values: Mapping[str, object]) -> PrecisionConfig:
    """The run the precision panel trains for its control ``values`` (``precision``, ``problem``)."""
    return replace(base, **values)


def precision_panel(
    base: PrecisionConfig | None = None, precision: str = "float32", problem: str = "none", **options
) -> PrecisionPanel:
    """Lesson 09a's float16 panel: a menu of precisions and one of problems (none, a loss × 1e-6, targets
    × 100), on lesson 01's run; the status line gives the share of zero gradients and the first inf and NaN."""
    base = precision_config(precision, problem) if base is None else replace(base, precision=precision, problem=problem)
    style = {"description_width": "initial"}
    controls = {
        "precision": w.Dropdown(options=list(PRECISIONS), value=precision, description="precision", style=style),
        "problem": w.Dropdown(options=list(PROBLEMS), value=problem, description="problem", style=style),
    }
    options.setdefault("title", "Training loss (an epoch whose loss is inf or NaN is not drawn)")
    return PrecisionPanel(base, controls, make_config=precision_panel_config, train_fn=precision_history, **options)


# The opening figure -------------------------------------------------------------------------------------

FIGURE = {"title": "The trap: 16× the batch at the same 30 epochs is 16× fewer steps (seed 0)"}


def figure_curves() -> dict[str, np.ndarray]:
    """The training loss per epoch of lesson 01's net at batch 16 and the tuned rate 0.0056, and at batch 256
    with the same rate, the square-root rule's rate (x4) and the linear rule's (x16): 30 epochs, seed 0."""
    runs = {
        "batch 16, lr 0.0056 (1920 steps)": batch_size_config(16, TUNED_RATE),
        "batch 256, lr 0.0056 (120 steps)": batch_size_config(256, TUNED_RATE),
        "batch 256, lr × 4 (square-root rule)": batch_size_config(
            256, rescaled_learning_rate(TUNED_RATE, 16, 256, 0.5)
        ),
        "batch 256, lr × 16 (linear rule)": batch_size_config(256, rescaled_learning_rate(TUNED_RATE, 16, 256, 1.0)),
    }
    return {label: run(config).loss for label, config in runs.items()}


# ---------------------------------------------------------------------------------------------
# Judging an exercise's repairs (ex09_batch_float16_checks, parts A and B)
# Each retrains the student's fix with fixed seeds, here, on data and with code the student does not
# control: the large batch on lesson 01's own rows, the float16 run on a model built and seeded here.
# ---------------------------------------------------------------------------------------------

SMALL_BATCH, LARGE_BATCH = 16, 256
SAME_STEPS_EPOCHS = EPOCHS * LARGE_BATCH // SMALL_BATCH  # 480: the small batch's 1920 steps at batch 256
LARGE_BATCH_SEEDS = SEEDS
FLOAT16_SEEDS = (0, 1)
FLOAT16_EPOCHS = 10
FLOAT16_RATE = 1e-3


def small_batch_run() -> TrainConfig:
    """Exercise 09's starting point (part A): lesson 01's net and data, batch 16, 30 epochs, at the rate
    tuned there (``TUNED_RATE``, 0.0056)."""
    return batch_size_config(SMALL_BATCH, TUNED_RATE)


def large_batch_losses(config: TrainConfig, seeds: Sequence[int] = LARGE_BATCH_SEEDS) -> np.ndarray:
    """The training loss (all 1024 rows, final weights) per seed of ``config`` retrained here on lesson 01's
    data: the student's batch-256 run. ``inf`` for a run that diverged.

    A ``TypeError`` for anything but a ``TrainConfig``; a ``ValueError`` for another batch size, other data,
    another net, another optimizer than Adam, or more than ``SAME_STEPS_EPOCHS`` epochs (as many steps as
    the small batch took: more would be more training, not a choice of rate)."""
    if not isinstance(config, TrainConfig):
        raise TypeError(
            f"expected a TrainConfig (for example dataclasses.replace(SMALL_BATCH_RUN, ...)); got {type(config).__name__}."
        )
    reference = lesson_data()
    if config.batch_size != LARGE_BATCH:
        raise ValueError(f"keep the batch size at {LARGE_BATCH}; the run asks for {config.batch_size}.")
    if not (
        config.data.x_train.shape == reference.x_train.shape
        and np.array_equal(config.data.x_train, reference.x_train)
        and np.array_equal(config.data.y_train, reference.y_train)
    ):
        raise ValueError("keep lesson 01's training rows (data=SMALL_BATCH_RUN.data).")
    if config.build_model is not small_relu_net:
        raise ValueError("keep lesson 01's net (build_model=small_relu_net).")
    if config.optimizer != "adam":
        raise ValueError(f"keep Adam; the run asks for {config.optimizer!r}.")
    if not 1 <= config.epochs <= SAME_STEPS_EPOCHS:
        raise ValueError(
            f"train between 1 and {SAME_STEPS_EPOCHS} epochs (the small batch's number of steps); got {config.epochs}."
        )
    losses = [full_training_loss(run(replace(config, data=reference, seed=seed))) for seed in seeds]
    return np.asarray(losses, dtype=float)


def _fit_float32(model: keras.Model, x: np.ndarray, y: np.ndarray, epochs: int, learning_rate: float) -> keras.Model:
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mean_squared_error")
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model


def float16_repair(
    train_in_float16: Callable,
    seeds: Sequence[int] = FLOAT16_SEEDS,
    epochs: int = FLOAT16_EPOCHS,
    learning_rate: float = FLOAT16_RATE,
) -> pd.DataFrame:
    """Run the student's ``train_in_float16(model, x, y, epochs, learning_rate) -> trained model`` on lesson
    01's net, built and seeded here, and on its data, beside the same run in float32 trained here with
    ``compile`` and ``fit``; both start from the same weights and draw the same batches (``call_seeded``).

    One row per seed: ``float16 layers`` (how many of the returned model's layers with weights compute in
    float16, of ``layers``), the training MSE of the returned model and of the float32 run (all 1024 rows,
    measured here in float64), and their ``ratio``. A model that did not come back, or whose predictions
    are not finite, has the MSE ``inf``."""
    data = lesson_data()
    run_helper = getattr(type(train_in_float16), "run_helper", None)
    rows = []
    for seed in seeds:
        seed_everything(seed)
        model = small_relu_net()
        x, y = data.x_train.copy(), data.y_train.copy()
        if run_helper is not None:  # the grader's handle to the student's function: it trains in their kernel
            returned = run_helper(train_in_float16, call_seeded, seed, model, x, y, epochs, learning_rate)
        else:
            returned = call_seeded(train_in_float16, seed, model, x, y, epochs, learning_rate)
        rows.append(
            {
                "seed": seed,
                **_half_model_summary(returned, data),
                "float32 MSE": _float32_mse(seed, epochs, learning_rate),
            }
        )
    table = pd.DataFrame(rows).set_index("seed")
    return table.assign(ratio=table["float16 MSE"] / table["float32 MSE"])


@cache
def _float32_mse(seed: int, epochs: int, learning_rate: float) -> float:
    """The float32 run ``float16_repair`` compares with: the same weights and batches, ``compile`` and ``fit``
    (deterministic, so computed once per process for every submission a judge grades)."""
    data = lesson_data()
    seed_everything(seed)
    model = small_relu_net()
    trained = call_seeded(_fit_float32, seed, model, data.x_train.copy(), data.y_train.copy(), epochs, learning_rate)
    return _training_mse(trained, data)


def _half_model_summary(model, data: Dataset) -> dict[str, float | int]:
    if not isinstance(model, keras.Model):
        return {"layers": 0, "float16 layers": 0, "float16 MSE": math.inf}
    with_weights = [layer for layer in model.layers if layer.weights]
    half = sum(1 for layer in with_weights if str(layer.compute_dtype) == "float16")
    return {"layers": len(with_weights), "float16 layers": half, "float16 MSE": _training_mse(model, data)}


def _training_mse(model: keras.Model, data: Dataset) -> float:
    try:
        predictions = np.asarray(model(data.x_train, training=False), dtype="float64").reshape(data.y_train.shape)
    except (ValueError, TypeError):
        return math.inf
    mse = float(np.mean((predictions - data.y_train) ** 2))
    return mse if math.isfinite(mse) else math.inf
