"""Benchmark: how live does a slider move feel? Run ``python -m adamclinic.bench`` (or ``make bench``).

Prints JSON for lesson 01's demo run (small_relu_net, 1024 rows, batch 32, 30 epochs):

- ``naive_rerun_s``: median seconds to redo a run the obvious way (build, compile, fit) per slider move;
- ``engine_rerun_s``: median seconds of the engine's re-run with a new learning rate, after warm-up;
- ``speedup``: their ratio;
- ``first_epoch_s``: median seconds from a slider move to the first epoch's metrics (what the student
  waits for before the curve starts to draw);
- ``engine_first_trace_s``: the one-off cost of the first run of an architecture (trace + XLA compile).

Figures, not a test: timings vary with the machine and its load.
"""

from __future__ import annotations

import json
import platform
import statistics
import time

import adamclinic  # noqa: F401  (quiet TensorFlow import)
import keras

from adamclinic.data import smooth_regression
from adamclinic.models import small_relu_net
from adamclinic.seeding import seed_everything
from adamclinic.training import TrainConfig, run, train

RATES = [1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 1e-4, 1e-5, 3e-4]


def naive_rerun(config: TrainConfig) -> float:
    start = time.perf_counter()
    seed_everything(config.seed)
    model = config.build_model()
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=config.loss)
    model.fit(config.data.x_train, config.data.y_train, batch_size=config.batch_size, epochs=config.epochs,
              shuffle=True, verbose=0)
    return time.perf_counter() - start


def engine_rerun(config: TrainConfig) -> float:
    start = time.perf_counter()
    run(config)
    return time.perf_counter() - start


def first_epoch(config: TrainConfig) -> float:
    start = time.perf_counter()
    epochs = train(config)
    next(epochs)
    elapsed = time.perf_counter() - start
    epochs.close()
    return elapsed


def main(repeats: int = 5) -> dict:
    base = TrainConfig(smooth_regression(), small_relu_net, epochs=30, batch_size=32)
    configs = [base.with_learning_rate(rate) for rate in RATES]
    cold = engine_rerun(configs[0])
    naive = [naive_rerun(c) for c in configs[:repeats]]
    engine = [engine_rerun(c) for c in configs]
    firsts = [first_epoch(c) for c in configs]
    naive_median, engine_median = statistics.median(naive), statistics.median(engine)
    return {
        "workload": "lesson 01 demo: small_relu_net, 1024 rows, batch 32, 30 epochs (960 Adam steps)",
        "naive_rerun_s": round(naive_median, 4),
        "engine_rerun_s": round(engine_median, 4),
        "speedup": round(naive_median / engine_median, 1),
        "first_epoch_s": round(statistics.median(firsts), 4),
        "engine_first_trace_s": round(cold, 3),
        "runs": {"naive": len(naive), "engine": len(engine), "first_epoch": len(firsts)},
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
