"""Small helpers the hidden tests of the exercises use to judge a student's work.

The bars themselves (how low a loss must get) are constants in the test cells, where an instructor
reads and tunes them; these functions only retrain and measure. They never trust a number the
student computed: every loss is measured again by ``adamclinic.training.run`` from the student's
settings, with fixed seeds, so the same notebook always earns the same score.
"""

from __future__ import annotations

import math

import numpy as np

from adamclinic.data import smooth_regression
from adamclinic.models import small_relu_net
from adamclinic.training import LearningRate, TrainConfig, learning_rate_table, run

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


def synthetic_sweep(steepest_at: float, minimum_at: float, start: float = 1e-6, stop: float = 10.0,
                    points_per_decade: int = 10, width: float = 0.5, tail=None,
                    flat_noise: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
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
