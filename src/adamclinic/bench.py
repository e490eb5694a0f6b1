"""Benchmark: how live does a control move feel? Run ``python -m adamclinic.bench`` (or ``make bench``).

For the main live demo of every lesson it prints, as JSON:

- ``naive_rerun_s``: median seconds to redo the run the obvious way (build, compile, fit) per move;
- ``engine_rerun_s``: median seconds of the engine's re-run with new settings, after warm-up;
- ``speedup``: their ratio;
- ``first_epoch_s``: median seconds from a move to the first epoch's metrics (what the student waits
  for before the curve starts to draw);
- ``first_trace_s``: the one-off cost of the first run of an architecture (trace + XLA compile).

Lesson 00 draws optimizer paths on a 2-D surface instead of training a network: its figures are for
one 500-step path (``adamclinic.lessons.adam_from_the_inside.trajectory``), against the same steps taken eagerly.

Lesson 09a's precision panel and lesson 09b's two panels do not train on the engine (a custom float16 loop,
the clinic's checks, plain ``model.fit``): ``lesson09_figures`` times each move whole, first and again.

``python -m adamclinic.bench grading`` times the class grader instead (``adamclinic.grading.bench``).

Figures, not a test: timings vary with the machine and its load.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import replace

import keras
import numpy as np
import tensorflow as tf

import adamclinic  # noqa: F401  (quiet TensorFlow import)
from adamclinic.engine import TrainConfig, run, seed_everything, train

RATES = [1e-3, 3e-3, 1e-2, 3e-3, 3e-4, 2e-3, 5e-4, 1e-3]


def _seconds(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def naive_rerun(config: TrainConfig) -> float:
    """Build, compile and fit from scratch, as a slider callback written the obvious way would."""

    def fit() -> None:
        seed_everything(config.seed)
        model = config.build_model()
        model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=config.loss)
        model.fit(
            config.data.x_train,
            config.data.y_train,
            batch_size=config.batch_size,
            epochs=config.epochs,
            shuffle=True,
            verbose=0,
        )

    return _seconds(fit)


def first_epoch(config: TrainConfig) -> float:
    def one_epoch() -> None:
        epochs = train(config)
        next(epochs)
        epochs.close()

    return _seconds(one_epoch)


def engine_figures(config: TrainConfig, naive_repeats: int = 2) -> dict:
    configs = [replace(config, learning_rate=rate) for rate in RATES]
    cold = _seconds(lambda: run(configs[0]))
    engine = statistics.median(_seconds(lambda c=c: run(c)) for c in configs)
    naive = statistics.median(naive_rerun(c) for c in configs[:naive_repeats])
    return {
        "workload": f"{config.build_model.__name__ if hasattr(config.build_model, '__name__') else 'model'}, "
        f"{len(config.data.x_train)} rows, batch {config.batch_size}, {config.epochs} epochs",
        "naive_rerun_s": round(naive, 4),
        "engine_rerun_s": round(engine, 4),
        "speedup": round(naive / engine, 1),
        "first_epoch_s": round(statistics.median(first_epoch(c) for c in configs), 4),
        "first_trace_s": round(cold, 3),
    }


def surface_figures(steps: int = 500) -> dict:
    from adamclinic.lessons.adam_from_the_inside import rosenbrock, trajectory

    surface = rosenbrock()
    cold = _seconds(lambda: trajectory(surface, "adam", lr=0.1, steps=steps))
    compiled = statistics.median(
        _seconds(lambda r=r: trajectory(surface, "adam", lr=r, steps=steps)) for r in (0.05, 0.1, 0.2, 0.3, 0.5)
    )

    def eager() -> None:
        point = keras.Variable(np.array([-1.5, 1.5], dtype="float32"))
        optimizer = keras.optimizers.Adam(0.1)
        for _ in range(steps):
            with tf.GradientTape() as tape:
                x, y = point[0], point[1]
                value = (1 - x) ** 2 + 100 * (y - x**2) ** 2
            optimizer.apply([tape.gradient(value, point)], [point])

    naive = _seconds(eager)
    return {
        "workload": f"Adam on the Rosenbrock valley, {steps} steps",
        "naive_rerun_s": round(naive, 4),
        "engine_rerun_s": round(compiled, 4),
        "speedup": round(naive / compiled, 1),
        "first_trace_s": round(cold, 3),
    }


def diagnostics_figures(repeats: int = 5) -> dict:
    """Lesson 08's tool: the cost of watching a run, as a share of the run itself.

    ``monitor_share``: the time a ``ClinicMonitor`` spends inside its hooks during a stock ``model.fit``
    (digits, 15 epochs), over the fit's time (timing the whole fit with and without the monitor is
    swamped by the fit's own variation); ``engine_share``: ``diagnose(history)`` after an engine run,
    over the run (the engine itself is not slowed: it records what the diagnosis needs in its loop), for a
    new seed (the diagnosis rebuilds the model under it to get the initial weights) and for a seed seen
    before (a slider move: the initial weights and probe are cached).
    """
    from adamclinic.clinic import ClinicMonitor, diagnose
    from adamclinic.clinic.patients import digit_images, digits_tanh_net

    data = digit_images()

    def watched_fit() -> tuple[float, float]:
        seed_everything(0)
        model = digits_tanh_net()
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
        monitor = ClinicMonitor(data.x_train, data.y_train)
        fit_seconds = _seconds(
            lambda: model.fit(data.x_train, data.y_train, epochs=15, batch_size=32, callbacks=[monitor], verbose=0)
        )
        return fit_seconds, monitor.seconds

    watched_fit()  # warm-up
    fits = [watched_fit() for _ in range(repeats)]
    fit_s = statistics.median(f for f, _ in fits)
    monitor_s = statistics.median(m for _, m in fits)
    config = TrainConfig(data, digits_tanh_net, loss="sparse_categorical_crossentropy", epochs=15)
    diagnose(run(config))  # warm-up: traces the engine and the probes
    engine, diagnosis = [], []
    for seed in range(1, repeats + 1):  # a new seed each time: nothing cached from an earlier diagnosis
        seeded = replace(config, seed=seed)
        engine.append(_seconds(lambda seeded=seeded: run(seeded)))
        history = run(seeded)
        diagnosis.append(_seconds(lambda history=history: diagnose(history)))
    engine_s, diagnose_s = statistics.median(engine), statistics.median(diagnosis)
    moved = [run(replace(config, learning_rate=rate)) for rate in (3e-3, 1e-2, 3e-4)]  # seed 0: seen
    cached_s = statistics.median(_seconds(lambda h=h: diagnose(h)) for h in moved)
    return {
        "workload": "digits[:512], 64-32-32-10 tanh, batch 32, 15 epochs",
        "fit_s": round(fit_s, 3),
        "monitor_s": round(monitor_s, 4),
        "monitor_share": round(monitor_s / fit_s, 3),
        "engine_run_s": round(engine_s, 4),
        "diagnose_s": round(diagnose_s, 4),
        "engine_share": round(diagnose_s / engine_s, 3),
        "diagnose_seen_seed_s": round(cached_s, 4),
        "engine_share_seen_seed": round(cached_s / engine_s, 3),
    }


def lesson_demos() -> dict[str, Callable[[], TrainConfig]]:
    """The main live demo of each lesson that trains a network, as the lesson builds it."""
    from adamclinic.data import digits, parcels, smooth_regression
    from adamclinic.models import parcel_relu_net, small_relu_net

    def lesson02() -> TrainConfig:
        from adamclinic.lessons.vanishing_exploding_gradients import lesson_config

        return lesson_config(digits())

    def lesson03() -> TrainConfig:
        from adamclinic.lessons.feature_scaling import scaled_config

        return scaled_config(TrainConfig(parcels(), parcel_relu_net), 0, "StandardScaler")

    def lesson05() -> TrainConfig:
        from adamclinic.lessons.data_problems import outlier_config

        return outlier_config(TrainConfig(smooth_regression(), small_relu_net), 0.02, 30.0, fix="Huber loss")

    def lesson06() -> TrainConfig:
        from adamclinic.lessons.overfitting_or_optimizer import RegularizedConfig, classifier, digits_subset

        return RegularizedConfig(
            data=digits_subset(256),
            build_model=classifier(256),
            loss="sparse_categorical_crossentropy",
            epochs=100,
            batch_size=32,
        )

    def lesson07() -> TrainConfig:
        from adamclinic.lessons.bugs_in_the_model_and_loss import target_config

        return target_config(TrainConfig(smooth_regression(), small_relu_net), 250_000.0, "standardize")

    def lesson09a() -> TrainConfig:
        from adamclinic.lessons.batch_size_and_float16 import TUNED_RATE, batch_size_config

        return batch_size_config(256, TUNED_RATE)  # the trap: a new batch size is a new compiled trainer

    return {
        "01_learning_rate": lambda: TrainConfig(smooth_regression(), small_relu_net),
        "02_vanishing_exploding_gradients": lesson02,
        "03_feature_scaling": lesson03,
        "04a_beta1_and_beta2": lambda: TrainConfig(smooth_regression(), small_relu_net, batch_size=8),
        "05_data_problems": lesson05,
        "06_overfitting_or_optimizer": lesson06,
        "07a_bugs_in_the_model_and_loss": lesson07,
        "09a_batch_size_and_float16": lesson09a,
    }


def lesson09_figures(repeats: int = 2) -> dict:
    """Seconds per move of the panels that do not train on the engine: the first move (which traces and
    compiles) and the median of ``repeats`` more."""
    from adamclinic.lessons.batch_size_and_float16 import PRECISIONS, precision_config, precision_history
    from adamclinic.lessons.checks_and_generalization import (
        CHECK_CASES,
        TUNED_RATES,
        checks_for,
        optimizer_run,
        panel_setting,
    )

    def timed(function: Callable, *args: object) -> dict:
        first = _seconds(lambda: function(*args))
        again = statistics.median(_seconds(lambda: function(*args)) for _ in range(repeats))
        return {"first_s": round(first, 3), "again_s": round(again, 3)}

    return {
        "09a precision panel, 30 epochs": {
            name: timed(precision_history, precision_config(name)) for name in PRECISIONS
        },
        "09b checks panel, one model": {name: timed(checks_for, name) for name in CHECK_CASES},
        "09b optimizer panel, 50 epochs": {
            family: timed(optimizer_run, panel_setting(family, rate)) for family, rate in TUNED_RATES.items()
        },
    }


def main() -> dict:
    figures = {"00_adam_from_the_inside": surface_figures()}
    for lesson, make in lesson_demos().items():
        figures[lesson] = engine_figures(make())
    figures["08_the_clinic"] = diagnostics_figures()
    figures["09_panels_off_the_engine"] = lesson09_figures()
    figures["machine"] = f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
    return figures


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["grading"]:  # python -m adamclinic.bench grading: see adamclinic.grading.bench
        from adamclinic.grading import bench as grading_bench

        print(json.dumps(grading_bench.main(sys.argv[2:]), indent=2))
    else:
        print(json.dumps(main(), indent=2))
