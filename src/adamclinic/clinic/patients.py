"""The clinic's patients: labelled training setups, broken in known ways or healthy.

``ZOO`` is the labelled set the diagnostic tool (``adamclinic.clinic``) was tuned on: at least two
patients per cause, built from different data and architectures, and healthy runs that must get "no
problem found". Most patients train on the course's engine; the ``fit`` ones train with stock
``model.compile`` + ``model.fit`` watched by a ``ClinicMonitor`` (recompiling is a ``fit`` matter).
``adamclinic.clinic.held_out.HELD_OUT`` is the set it is judged on: other data, architectures and seeds,
never tuned on.

``python -m adamclinic.clinic.zoos`` trains both sets (the tuned zoo with seed 0, ``--seed N`` for
another; each held-out patient with its own seed) and prints each patient's label, the tool's verdict and
its findings, then per set the top-1 accuracy and the false-alarm rate (false alarms / healthy runs).
``--write`` also stores the recorded runs in ``tests/data/clinic_zoo.json`` and
``tests/data/clinic_zoo_held_out.json``, which ``tests/test_diagnostics.py`` and
``tests/test_clinic_held_out.py`` score (and re-train a few of, to check they still match); ``--stored``
scores those files without training.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import keras
import numpy as np

from adamclinic.clinic import (
    HEALTHY,
    ClinicMonitor,
    Report,
    RunRecord,
    diagnose,
    monitored_fit,
    record_from_history,
)
from adamclinic.data import digits, overlapping_classes, parcels, smooth_regression
from adamclinic.engine import Dataset, TrainConfig, run
from adamclinic.models import binary_relu_net, deep_net, digits_relu_net, mlp, small_relu_net
from adamclinic.paths import REPOSITORY_ROOT

# Architectures (module-level builders, so the engine reuses one trace per architecture) ------------


def wide_binary_net() -> keras.Model:
    """8-256-256-1 ReLU with a sigmoid output: far more weights than 128 overlapping rows can pin down."""
    return mlp("wide_binary_net", 8, (256, 256), "relu", output_activation="sigmoid")


def deep_sigmoid_regression_net() -> keras.Model:
    """Eight hidden sigmoid layers of 32 on the 10 regression inputs."""
    return mlp("deep_sigmoid_regression_net", 10, (32,) * 8, "sigmoid")


def tanh_binary_net() -> keras.Model:
    """8-64-1: one hidden tanh layer and a sigmoid output."""
    return mlp("tanh_binary_net", 8, (64,), "tanh", output_activation="sigmoid")


def digits_tanh_net() -> keras.Model:
    """64-32-32-10: two tanh layers and a softmax."""
    return mlp("digits_tanh_net", 64, (32, 32), "tanh", outputs=10, output_activation="softmax")


def digits_linear_output_net() -> keras.Model:
    """64-64-10 ReLU with a linear output: scores, not probabilities."""
    return mlp("digits_linear_output_net", 64, (64,), "relu", outputs=10)


def linear_binary_net() -> keras.Model:
    """8-32-1 tanh with a linear output: a score, not a probability."""
    return mlp("linear_binary_net", 8, (32,), "tanh")


def digits_regression_net() -> keras.Model:
    """64-64-1 ReLU with a linear output, for a regression target computed from the digits."""
    return mlp("digits_regression_net", 64, (64,), "relu")


def parcel_net() -> keras.Model:
    return small_relu_net(inputs=5)


def large_init_relu_net() -> keras.Model:
    """Eight hidden ReLU layers of 64 initialised with N(0, 1): each layer multiplies the signal by ~5.7."""
    layers = [keras.Input((10,))]
    layers += [
        keras.layers.Dense(64, activation="relu", kernel_initializer=keras.initializers.RandomNormal(stddev=1.0))
        for _ in range(8)
    ]
    layers.append(keras.layers.Dense(1, kernel_initializer=keras.initializers.RandomNormal(stddev=1.0)))
    return keras.Sequential(layers, name="large_init_relu_net")


def batch_norm_net(
    inputs: int, outputs: int, output_activation: str | None, momentum: float
) -> Callable[[], keras.Model]:
    return _batch_norm_net(inputs, outputs, output_activation, momentum)


@functools.cache
def _batch_norm_net(inputs: int, outputs: int, output_activation: str | None, momentum: float):
    def build() -> keras.Model:
        # Batch norm after the ReLU: its input has a large positive mean that the moving mean must learn.
        return keras.Sequential(
            [
                keras.Input((inputs,)),
                keras.layers.Dense(64, activation="relu"),
                keras.layers.BatchNormalization(momentum=momentum),
                keras.layers.Dense(64, activation="relu"),
                keras.layers.BatchNormalization(momentum=momentum),
                keras.layers.Dense(outputs, activation=output_activation),
            ],
            name=f"batch_norm_net_{inputs}_{outputs}",
        )

    build.__name__ = f"batch_norm_net(momentum={momentum})"
    return build


# Data --------------------------------------------------------------------------------------------


@functools.cache
def regression() -> Dataset:
    return smooth_regression()


@functools.cache
def digit_images(rows: int = 512) -> Dataset:
    full = digits()
    return Dataset(full.x_train[:rows], full.y_train[:rows], full.x_val, full.y_val, name=f"digits[:{rows}]")


@functools.cache
def two_classes(rows: int = 1024) -> Dataset:
    pool, held_out = overlapping_classes()
    features = [c for c in pool.columns if c != "label"]
    return Dataset(
        pool[features].to_numpy()[:rows],
        pool["label"].to_numpy()[:rows],
        held_out[features].to_numpy(),
        held_out["label"].to_numpy(),
        name="overlapping_classes",
    )


def imbalanced_two_classes(minority_share: float, rows: int = 1024, seed: int = 0) -> Dataset:
    from adamclinic.data import imbalanced

    pool, held_out = overlapping_classes()
    return imbalanced(pool, held_out, minority_share, rows=rows, seed=seed)


def misaligned(data: Dataset, seed: int = 0) -> Dataset:
    """The labels shuffled on their own: each input now sits next to another row's label."""
    order = np.random.default_rng(seed).permutation(len(data.y_train))
    return replace(data, y_train=data.y_train[order], name=data.name + ", labels misaligned")


def with_nan(data: Dataset, fraction: float, seed: int = 0) -> Dataset:
    from adamclinic.data import with_missing

    return with_missing(data, fraction, seed=seed)


def rescaled_columns(data: Dataset, factors: np.ndarray) -> Dataset:
    factors = np.asarray(factors, dtype="float32")
    return replace(
        data,
        x_train=data.x_train * factors,
        x_val=None if data.x_val is None else data.x_val * factors,
        name=data.name + ", columns in mixed units",
    )


def shifted_targets(data: Dataset, scale: float, offset: float) -> Dataset:
    return replace(
        data,
        y_train=data.y_train * scale + offset,
        y_val=None if data.y_val is None else data.y_val * scale + offset,
        name=data.name + ", raw targets",
    )


@functools.cache
def standardized_parcels() -> Dataset:
    data = parcels()
    mean, sd = data.x_train.mean(axis=0), data.x_train.std(axis=0)
    return Dataset(
        (data.x_train - mean) / sd, data.y_train, (data.x_val - mean) / sd, data.y_val, name="parcels, scaled"
    )


@functools.cache
def digit_prices() -> Dataset:
    """A regression on the digits: a made-up price of 500 + 100 × the digit, in dollars."""
    data = digit_images(512)
    return Dataset(data.x_train, 500 + 100 * data.y_train, data.x_val, 500 + 100 * data.y_val, name="digit prices")


# Patients ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Patient:
    """A labelled setup: ``cause`` is a key of ``adamclinic.clinic.CAUSES`` or ``"healthy"``.

    ``make`` returns the engine config; ``fit`` (for the ``model.fit`` patients) trains and returns
    the watching ``ClinicMonitor`` itself. ``seed`` is the patient's own seed (the held-out patients
    have one each); ``None`` takes the seed the whole zoo is recorded with.
    """

    name: str
    cause: str
    make: Callable[[], TrainConfig]
    fit: Callable[[TrainConfig], ClinicMonitor] | None = None
    story: str = ""
    seed: int | None = None

    def config(self, seed: int = 0) -> TrainConfig:
        return replace(self.make(), seed=seed)

    def record(self, seed: int = 0) -> RunRecord:
        config = self.config(seed)
        if self.fit is not None:
            return self.fit(config).record
        return record_from_history(run(config))

    def diagnose(self, seed: int = 0) -> Report:
        return diagnose(self.record(seed))


def recompiled_fit(after: int) -> Callable[[TrainConfig], ClinicMonitor]:
    return functools.partial(monitored_fit, recompile_after=after)


SCC = "sparse_categorical_crossentropy"
BCE = "binary_crossentropy"
MIXED_UNITS = np.array([1e-3, 1e-2, 1.0, 10.0, 1e2, 1e3, 1e4, 1.0, 1e-1, 1e5])


def _zoo() -> list[Patient]:
    R, B = regression, two_classes
    return [
        # learning rate too high
        Patient(
            "regression, lr 1.0",
            "learning_rate_too_high",
            lambda: TrainConfig(R(), small_relu_net, learning_rate=1.0, epochs=20),
        ),
        Patient(
            "digits, lr 0.3",
            "learning_rate_too_high",
            lambda: TrainConfig(digit_images(), digits_relu_net, learning_rate=0.3, epochs=20, loss=SCC),
        ),
        Patient(
            "two classes (fit), tanh net, lr 3.0",
            "learning_rate_too_high",
            lambda: TrainConfig(B(), tanh_binary_net, learning_rate=3.0, epochs=15, loss=BCE),
            fit=monitored_fit,
        ),
        # learning rate too low
        Patient(
            "regression, lr 1e-5",
            "learning_rate_too_low",
            lambda: TrainConfig(R(), small_relu_net, learning_rate=1e-5, epochs=20),
        ),
        Patient(
            "digits, tanh net, lr 3e-6",
            "learning_rate_too_low",
            lambda: TrainConfig(digit_images(), digits_tanh_net, learning_rate=3e-6, epochs=20, loss=SCC),
        ),
        Patient(
            "two classes (fit), lr 1e-5",
            "learning_rate_too_low",
            lambda: TrainConfig(B(), binary_relu_net, learning_rate=1e-5, epochs=15, loss=BCE),
            fit=monitored_fit,
        ),
        # vanishing gradients
        Patient(
            "digits, 10 sigmoid layers",
            "vanishing_gradients",
            lambda: TrainConfig(digit_images(), deep_net(10, "sigmoid"), epochs=20, loss=SCC),
        ),
        Patient(
            "regression, 8 sigmoid layers",
            "vanishing_gradients",
            lambda: TrainConfig(R(), deep_sigmoid_regression_net, epochs=20),
        ),
        # exploding gradients
        Patient(
            "regression, 8 ReLU layers at N(0, 1)",
            "exploding_gradients",
            lambda: TrainConfig(R(), large_init_relu_net, epochs=20),
        ),
        Patient(
            "digits, 10 linear layers at N(0, 1), SGD",
            "exploding_gradients",
            lambda: TrainConfig(
                digit_images(),
                deep_net(10, "linear", "normal(1)"),
                optimizer="sgd",
                learning_rate=1e-3,
                epochs=20,
                loss=SCC,
            ),
        ),
        # unscaled inputs
        Patient("parcels, raw units", "unscaled_inputs", lambda: TrainConfig(parcels(), parcel_net, epochs=20)),
        Patient(
            "regression, columns in mixed units",
            "unscaled_inputs",
            lambda: TrainConfig(rescaled_columns(R(), MIXED_UNITS), small_relu_net, epochs=20),
        ),
        # unscaled targets
        Patient(
            "regression, targets in dollars",
            "unscaled_targets",
            lambda: TrainConfig(shifted_targets(R(), 300.0, 2000.0), small_relu_net, epochs=20),
        ),
        Patient(
            "digit prices", "unscaled_targets", lambda: TrainConfig(digit_prices(), digits_regression_net, epochs=20)
        ),
        # β2 too low
        Patient(
            "regression, β2 0.3, batch 8",
            "beta_2_too_low",
            lambda: TrainConfig(R(), small_relu_net, beta_2=0.3, batch_size=8, learning_rate=3e-3, epochs=20),
        ),
        Patient(
            "digits, β2 0.3",
            "beta_2_too_low",
            lambda: TrainConfig(
                digit_images(), digits_relu_net, beta_2=0.3, batch_size=16, learning_rate=3e-3, epochs=20, loss=SCC
            ),
        ),
        # NaN inputs
        Patient(
            "regression, 1% missing inputs",
            "nan_inputs",
            lambda: TrainConfig(with_nan(R(), 0.01), small_relu_net, epochs=10, check_inputs=False),
        ),
        Patient(
            "two classes (fit), 2% missing inputs",
            "nan_inputs",
            lambda: TrainConfig(with_nan(B(), 0.02), tanh_binary_net, epochs=10, loss=BCE),
            fit=monitored_fit,
        ),
        # constant prediction of the majority class
        Patient(
            "two classes, 3% minority",
            "majority_class",
            lambda: TrainConfig(imbalanced_two_classes(0.03), binary_relu_net, epochs=20, loss=BCE),
        ),
        Patient(
            "two classes (fit), tanh net, 5% minority",
            "majority_class",
            lambda: TrainConfig(imbalanced_two_classes(0.05, seed=1), tanh_binary_net, epochs=15, loss=BCE),
            fit=monitored_fit,
        ),
        # stuck at the loss of guessing
        Patient(
            "digits, labels misaligned",
            "chance_plateau",
            lambda: TrainConfig(misaligned(digit_images()), digits_relu_net, epochs=20, loss=SCC),
        ),
        Patient(
            "two classes (fit), labels misaligned",
            "chance_plateau",
            lambda: TrainConfig(misaligned(B()), tanh_binary_net, epochs=15, loss=BCE),
            fit=monitored_fit,
        ),
        # the output layer does not match the loss
        Patient(
            "digits, linear output",
            "output_loss_mismatch",
            lambda: TrainConfig(digit_images(), digits_linear_output_net, epochs=15, loss=SCC),
        ),
        Patient(
            "two classes (fit), linear output",
            "output_loss_mismatch",
            lambda: TrainConfig(B(), linear_binary_net, epochs=15, loss=BCE),
            fit=monitored_fit,
        ),
        # optimizer state lost on recompile
        Patient(
            "regression (fit), recompiled at epoch 10",
            "recompile_reset",
            lambda: TrainConfig(R(), small_relu_net, learning_rate=1e-2, epochs=20),
            fit=recompiled_fit(10),
        ),
        Patient(
            "digits (fit), tanh net recompiled at epoch 10",
            "recompile_reset",
            lambda: TrainConfig(digit_images(), digits_tanh_net, learning_rate=1e-2, epochs=20, loss=SCC),
            fit=recompiled_fit(10),
        ),
        # training and inference modes disagree
        Patient(
            "regression, batch norm momentum 0.999",
            "train_eval_mismatch",
            lambda: TrainConfig(R(), batch_norm_net(10, 1, None, 0.999), epochs=10),
        ),
        Patient(
            "digits (fit), batch norm momentum 0.999",
            "train_eval_mismatch",
            lambda: TrainConfig(digit_images(), batch_norm_net(64, 10, "softmax", 0.999), epochs=8, loss=SCC),
            fit=monitored_fit,
        ),
        # overfitting
        Patient(
            "digits, 256 rows, wide net, 60 epochs",
            "overfitting",
            lambda: TrainConfig(digit_images(256), digits_wide_net, epochs=60, loss=SCC),
        ),
        Patient(
            "two classes, 128 rows, wide net",
            "overfitting",
            lambda: TrainConfig(two_classes(128), wide_binary_net, epochs=60, loss=BCE),
        ),
        # healthy
        Patient("regression, defaults", HEALTHY, lambda: TrainConfig(R(), small_relu_net, epochs=20)),
        Patient("digits, defaults", HEALTHY, lambda: TrainConfig(digit_images(), digits_relu_net, epochs=15, loss=SCC)),
        Patient("two classes, defaults", HEALTHY, lambda: TrainConfig(B(), binary_relu_net, epochs=15, loss=BCE)),
        Patient("parcels, standardized", HEALTHY, lambda: TrainConfig(standardized_parcels(), parcel_net, epochs=20)),
        Patient(
            "digits (fit), tanh net",
            HEALTHY,
            lambda: TrainConfig(digit_images(), digits_tanh_net, epochs=15, loss=SCC),
            fit=monitored_fit,
        ),
        Patient(
            "all digits, 10 ReLU layers, He init",
            HEALTHY,
            lambda: TrainConfig(digit_images(1440), deep_net(10, "relu", "he_normal"), epochs=10, loss=SCC),
        ),
    ]


def digits_wide_net() -> keras.Model:
    return mlp("digits_wide_net", 64, (256, 256), "relu", outputs=10, output_activation="softmax")


ZOO: list[Patient] = _zoo()


def scorecard(reports: dict[str, tuple[str, Report]]) -> dict[str, float]:
    """Top-1 accuracy over every patient, and how many healthy runs got a problem named (and their share)."""
    hits = sum(report.top == cause for cause, report in reports.values())
    false_alarms = sum(cause == HEALTHY and report.top != HEALTHY for cause, report in reports.values())
    healthy = sum(cause == HEALTHY for cause, _ in reports.values())
    return {
        "patients": len(reports),
        "top1_accuracy": hits / len(reports),
        "false_alarms": false_alarms,
        "healthy": healthy,
        "false_alarm_rate": false_alarms / healthy if healthy else 0.0,
    }


def stored_path() -> Path:
    """Where the zoo's recorded runs are kept (``tests/data/clinic_zoo.json``), written by ``--write``."""
    return REPOSITORY_ROOT / "tests" / "data" / "clinic_zoo.json"


def held_out_path() -> Path:
    """Where the held-out zoo's recorded runs are kept (``tests/data/clinic_zoo_held_out.json``)."""
    return REPOSITORY_ROOT / "tests" / "data" / "clinic_zoo_held_out.json"


def record_zoo(seed: int = 0, patients: list[Patient] | None = None) -> dict[str, dict]:
    """Train every patient once; by name: its label and its ``RunRecord`` as a plain dict.

    A patient with its own ``seed`` is trained with it, and its entry keeps that ``"seed"``.
    """
    recorded = {}
    for p in patients or ZOO:
        if p.seed is None:
            recorded[p.name] = {"cause": p.cause, "record": asdict(p.record(seed))}
        else:
            recorded[p.name] = {"cause": p.cause, "seed": p.seed, "record": asdict(p.record(p.seed))}
    return recorded


def write_zoo(path: Path, seed: int | None, recorded: dict[str, dict]) -> None:
    """Store ``record_zoo``'s result; ``seed`` is the zoo's seed (``None`` when each entry has its own)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Compact, one patient per line: small in git and readable in a diff.
    lines = ",\n".join(
        f"  {json.dumps(name)}: {json.dumps(entry, separators=(',', ':'))}" for name, entry in recorded.items()
    )
    path.write_text(f'{{"seed": {json.dumps(seed)}, "patients": {{\n{lines}\n}}}}\n', encoding="utf-8")


def _read(path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"No stored zoo at {path}: record it with `python -m adamclinic.clinic.zoos --write`.")
    return json.loads(path.read_text(encoding="utf-8"))


def load_zoo(path: Path | None = None) -> tuple[int | None, dict[str, tuple[str, RunRecord]]]:
    """A stored zoo (the tuned one unless ``path`` says another): its seed and, by patient name, (label,
    ``RunRecord``). The held-out file has no zoo-wide seed (``None``): ``load_seeds`` gives each patient's."""
    stored = _read(path or stored_path())
    return stored["seed"], {
        name: (entry["cause"], RunRecord(**entry["record"])) for name, entry in stored["patients"].items()
    }


def load_seeds(path: Path | None = None) -> dict[str, int]:
    """The seed each stored patient was trained with: its own, or the zoo's."""
    stored = _read(path or stored_path())
    return {name: entry.get("seed", stored["seed"]) for name, entry in stored["patients"].items()}


def recorded_from_file(path: Path) -> dict[str, dict]:
    return {
        name: {"cause": entry["cause"], "record": entry["record"]} for name, entry in _read(path)["patients"].items()
    }


def score(recorded: dict[str, dict], title: str) -> dict[str, float]:
    """Diagnose every recorded run, print one line per patient and the set's scorecard; return the scorecard."""
    print(f"== {title}")
    reports = {}
    for name, entry in recorded.items():
        report = diagnose(RunRecord(**entry["record"]))
        reports[name] = (entry["cause"], report)
        mark = "ok " if report.top == entry["cause"] else "XX "
        print(
            f"{mark}{name:48s} label={entry['cause']:24s} tool={report.top:24s} "
            f"{[f'{f.cause}:{f.score:.2f}' for f in report.findings]}"
        )
    card = scorecard(reports)
    print(
        f"{title}: top-1 {card['top1_accuracy']:.1%} of {card['patients']} runs, false alarms "
        f"{card['false_alarms']}/{card['healthy']} healthy ({card['false_alarm_rate']:.0%})"
    )
    return card
