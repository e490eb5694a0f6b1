"""Lesson 07b's bugs in the training loop that look like an optimizer failure, each with a switch.

The sections are about what stock Keras ``compile``/``fit`` does (``validation_split``, BatchNorm's two
modes, ``trainable`` after a fit, the optimizer's state across ``compile`` calls), which the engine cannot
show because it does none of that. They run the real ``model.compile`` + ``model.fit``, on small data and
few epochs so a demo stays live, and relay each epoch to the panel through a callback. Every run is a
pure function of its config: ``config -> History``, seeded with ``seed_everything``. Lesson 07a
(``adamclinic.lessons.bugs_in_the_model_and_loss``) has the bugs in the model and the loss.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import ipywidgets as w
import keras
import numpy as np

from adamclinic.data import digits, smooth_regression
from adamclinic.engine import Dataset, EpochMetrics, History, TrainConfig, run, seed_everything
from adamclinic.models import digits_relu_net, mlp, small_relu_net
from adamclinic.panels import ScoreBoard, TrainingPanel, log_slider

# Stock Keras compile + fit, relayed epoch by epoch ----------------------------------------------------


class _EpochRelay(keras.callbacks.Callback):
    """Turns ``fit``'s epoch logs into ``EpochMetrics`` on a ``History``; stops ``fit`` when cancelled.

    ``first_epoch`` numbers the epochs of a later ``fit`` call after the earlier ones.
    """

    def __init__(
        self,
        history: History,
        learning_rate: float,
        cancel: threading.Event | None,
        on_epoch: Callable[[EpochMetrics], None] | None,
        first_epoch: int = 1,
    ):
        super().__init__()
        self.history, self.learning_rate, self.cancel, self.on_epoch = history, learning_rate, cancel, on_epoch
        self.first_epoch = first_epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        value = lambda key: None if key not in logs else float(logs[key])  # noqa: E731
        metrics = EpochMetrics(
            epoch=self.first_epoch + epoch,
            loss=float(logs["loss"]),
            val_loss=value("val_loss"),
            learning_rate=self.learning_rate,
            grad_norm=math.nan,
            seconds=0.0,
            accuracy=value("accuracy"),
            val_accuracy=value("val_accuracy"),
        )
        self.history.epochs.append(metrics)
        if metrics.diverged and self.history.diverged_at is None:
            self.history.diverged_at = metrics.epoch
        if self.on_epoch is not None:
            self.on_epoch(metrics)
        if self.cancel is not None and self.cancel.is_set():
            self.model.stop_training = True


def _finish(history: History, model: keras.Model, cancel: threading.Event | None) -> History:
    history.final_weights = model.get_weights()
    history.cancelled = cancel is not None and cancel.is_set() and len(history.epochs) < history.config.epochs
    return history


def _adam(config: TrainConfig) -> keras.optimizers.Adam:
    return keras.optimizers.Adam(
        float(config.learning_rate), beta_1=config.beta_1, beta_2=config.beta_2, epsilon=config.epsilon
    )


# Section 1: validation_split on rows sorted by label ---------------------------------------------------


@dataclass(frozen=True)
class SplitConfig(TrainConfig):
    """A stock ``fit(validation_split=...)`` run; ``sorted_rows`` sorts the rows by label first, as a
    file exported class by class would be."""

    sorted_rows: bool = True
    validation_split: float = 0.2

    def label(self) -> str:
        return (
            "rows sorted by label" if self.sorted_rows else "rows shuffled before fit"
        ) + f", validation_split={self.validation_split:g}"


def rows_sorted_by_label(data: Dataset) -> Dataset:
    """The training rows in label order (a stable sort: ties keep their order)."""
    order = np.argsort(data.y_train[:, 0], kind="stable")
    return replace(data, x_train=data.x_train[order], y_train=data.y_train[order])


def split_config(base: TrainConfig, sorted_rows: bool = True) -> SplitConfig:
    """A ``SplitConfig`` on ``base``'s data and model, with the rows sorted by label or shuffled."""
    fields = {name: getattr(base, name) for name in TrainConfig.__dataclass_fields__}
    return SplitConfig(**{**fields, "sorted_rows": sorted_rows})


def fit_with_validation_split(
    config: SplitConfig, cancel: threading.Event | None = None, on_epoch: Callable[[EpochMetrics], None] | None = None
) -> History:
    """``compile`` + ``fit(validation_split=...)`` as a student writes it. ``fit`` takes the validation
    rows from the end of the arrays *before* it shuffles anything; ``shuffle=True`` only shuffles the
    remaining training rows, every epoch."""
    seed_everything(config.seed)
    data = config.data
    if config.sorted_rows:
        data = rows_sorted_by_label(data)
    else:
        order = np.random.default_rng(config.seed).permutation(len(data.x_train))
        data = replace(data, x_train=data.x_train[order], y_train=data.y_train[order])
    model = config.build_model()
    model.compile(optimizer=_adam(config), loss=config.loss, metrics=["accuracy"])
    history = History(config)
    model.fit(
        data.x_train,
        data.y_train,
        validation_split=config.validation_split,
        epochs=config.epochs,
        batch_size=config.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=[_EpochRelay(history, float(config.learning_rate), cancel, on_epoch)],
    )
    return _finish(history, model, cancel)


def validation_classes(config: SplitConfig) -> list[int]:
    """The labels ``fit`` puts in its validation rows for ``config`` (the last ``validation_split``)."""
    data = rows_sorted_by_label(config.data) if config.sorted_rows else config.data
    if not config.sorted_rows:
        order = np.random.default_rng(config.seed).permutation(len(data.x_train))
        data = replace(data, y_train=data.y_train[order])
    first = int(len(data.y_train) * (1 - config.validation_split))
    return sorted(int(c) for c in np.unique(data.y_train[first:, 0]))


def split_panel(base: TrainConfig, sorted_rows: bool = True, **options: Any) -> TrainingPanel:
    """A toggle between rows sorted by label and rows shuffled before ``fit``; validation dashed."""
    board = ScoreBoard(
        lambda h: {
            "last validation accuracy": float(h.val_accuracy[-1]),
            "last training accuracy": float(h.epochs[-1].accuracy),
        }
    )
    controls = {
        "sorted_rows": w.ToggleButtons(
            options=[("sorted by label", True), ("shuffled before fit", False)], value=sorted_rows, description="rows"
        )
    }
    return TrainingPanel(
        split_config(base, sorted_rows),
        controls,
        train_fn=board.wrap(fit_with_validation_split),
        views=[board],
        show_validation=True,
        **options,
    )


# Section 2: BatchNorm in training mode and in inference mode ----------------------------------------------


@dataclass(frozen=True)
class BatchNormConfig(TrainConfig):
    """A stock ``fit`` of a network whose first layer is ``BatchNormalization(momentum=momentum)``, used
    in place of scaling the inputs; the validation rows are the *training* rows, evaluated in inference
    mode, so the dashed line shows what ``evaluate`` and ``predict`` see on the same data."""

    momentum: float = 0.99

    def label(self) -> str:
        return f"BatchNorm momentum {self.momentum:g}, {self.epochs} epochs"


def batchnorm_net(momentum: float, inputs: int = 5) -> keras.Model:
    """BatchNormalization on the raw inputs, then lesson 03's 32-32 ReLU net with a linear output."""
    return keras.Sequential(
        [
            keras.Input((inputs,)),
            keras.layers.BatchNormalization(momentum=momentum),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(1),
        ],
        name="batchnorm_net",
    )


def batchnorm_config(base: TrainConfig, momentum: float = 0.99, epochs: int = 3) -> BatchNormConfig:
    fields = {name: getattr(base, name) for name in TrainConfig.__dataclass_fields__}
    return BatchNormConfig(**{**fields, "momentum": float(momentum), "epochs": int(epochs)})


def fit_batchnorm(
    config: BatchNormConfig,
    cancel: threading.Event | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> History:
    """``compile`` + ``fit`` of ``batchnorm_net``; ``val_loss`` is the loss on the training rows in
    inference mode (the moving averages), as ``model.evaluate(x_train, y_train)`` reports it."""
    seed_everything(config.seed)
    data = config.data
    model = batchnorm_net(config.momentum, inputs=data.x_train.shape[1])
    model.compile(optimizer=_adam(config), loss=config.loss)
    history = History(config)
    model.fit(
        data.x_train,
        data.y_train,
        validation_data=(data.x_train, data.y_train),
        epochs=config.epochs,
        batch_size=config.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=[_EpochRelay(history, float(config.learning_rate), cancel, on_epoch)],
    )
    history.moving_mean_share = float(np.mean(model.layers[0].moving_mean.numpy() / data.x_train.mean(axis=0)))
    return _finish(history, model, cancel)


def batchnorm_panel(base: TrainConfig, momentum: float = 0.99, epochs: int = 3, **options: Any) -> TrainingPanel:
    """A choice of BatchNorm momentum and a slider for the number of epochs."""
    board = ScoreBoard(
        lambda h: {
            "fit's last loss": h.final_loss,
            "same rows, inference mode": float(h.val_loss[-1]),
            "moving mean / true mean": h.moving_mean_share,
        }
    )
    controls = {
        "momentum": w.ToggleButtons(options=[0.99, 0.9], value=momentum, description="momentum"),
        "epochs": w.IntSlider(value=epochs, min=1, max=20, description="epochs", continuous_update=False),
    }
    return TrainingPanel(
        batchnorm_config(base, momentum, epochs),
        controls,
        make_config=lambda b, v: batchnorm_config(b, **v),
        train_fn=board.wrap(fit_batchnorm),
        views=[board],
        show_validation=True,
        **options,
    )


def frozen_batchnorm_uses_moving_statistics() -> bool:
    """Whether a BatchNormalization layer with ``trainable = False`` normalizes with its moving
    averages even when called with ``training=True`` (Keras's fine-tuning behaviour)."""
    layer = keras.layers.BatchNormalization()
    x = np.random.default_rng(0).normal(5.0, 3.0, size=(64, 4)).astype("float32")
    layer.build(x.shape)
    layer.trainable = False
    out = np.asarray(layer(x, training=True))
    return bool(np.allclose(out, x / np.sqrt(1.0 + layer.epsilon), atol=1e-4))


# Section 3: trainable changed after fit, without compiling again ----------------------------------------------


@dataclass(frozen=True)
class UnfreezeConfig(TrainConfig):
    """Fine-tuning in two ``fit`` calls: the hidden layers frozen for ``frozen_epochs``, then set
    ``trainable = True`` and trained for the rest of ``epochs``, with or without a new ``compile``."""

    frozen_epochs: int = 5
    recompile: bool = False

    def label(self) -> str:
        return "unfrozen, then compile again" if self.recompile else "unfrozen, no new compile"


def unfreeze_config(base: TrainConfig, recompile: bool = False) -> UnfreezeConfig:
    fields = {name: getattr(base, name) for name in TrainConfig.__dataclass_fields__}
    return UnfreezeConfig(**{**fields, "recompile": bool(recompile)})


def fit_unfreezing(
    config: UnfreezeConfig,
    cancel: threading.Event | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> History:
    """Train only the output layer, unfreeze the hidden layers, train again (see ``UnfreezeConfig``)."""
    seed_everything(config.seed)
    data = config.data
    model = config.build_model()
    hidden = model.layers[:-1]
    for layer in hidden:
        layer.trainable = False
    model.compile(optimizer=_adam(config), loss=config.loss)
    history = History(config)
    fit = dict(batch_size=config.batch_size, shuffle=True, verbose=0)
    model.fit(
        data.x_train,
        data.y_train,
        epochs=config.frozen_epochs,
        callbacks=[_EpochRelay(history, float(config.learning_rate), cancel, on_epoch)],
        **fit,
    )
    before = [layer.get_weights() for layer in hidden]
    for layer in hidden:
        layer.trainable = True
    if config.recompile:
        model.compile(optimizer=_adam(config), loss=config.loss)
    if not (cancel is not None and cancel.is_set()):
        model.fit(
            data.x_train,
            data.y_train,
            epochs=config.epochs - config.frozen_epochs,
            callbacks=[
                _EpochRelay(
                    history, float(config.learning_rate), cancel, on_epoch, first_epoch=config.frozen_epochs + 1
                )
            ],
            **fit,
        )
    history.hidden_weight_change = float(
        max(
            np.abs(after - old).max()
            for layer, weights in zip(hidden, before)
            for after, old in zip(layer.get_weights(), weights)
        )
    )
    return _finish(history, model, cancel)


def freezing_without_compile_moves(recompile: bool, seed: int = 0) -> float:
    """The other direction: fit one epoch, set the first layer's ``trainable = False``, fit another.
    Returns how far the frozen layer's weights moved in that second fit (0 when the freeze worked)."""
    seed_everything(seed)
    data = smooth_regression()
    model = mlp("freeze_probe", 10, (32, 32), "relu")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mean_squared_error")
    model.fit(data.x_train, data.y_train, epochs=1, batch_size=32, verbose=0)
    first = model.layers[0]
    before = first.kernel.numpy().copy()
    first.trainable = False
    if recompile:
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mean_squared_error")
    model.fit(data.x_train, data.y_train, epochs=1, batch_size=32, verbose=0)
    return float(np.abs(first.kernel.numpy() - before).max())


def unfreeze_panel(base: TrainConfig, recompile: bool = False, **options: Any) -> TrainingPanel:
    """A choice: compile again after unfreezing, or not (a drop-down menu, which a keyboard or a browser
    test can set by the option's text)."""
    board = ScoreBoard(
        lambda h: {
            "loss when unfrozen": float(h.loss[h.config.frozen_epochs - 1]),
            "final loss": h.final_loss,
            "hidden weights moved by": h.hidden_weight_change,
        }
    )
    controls = {
        "recompile": w.Dropdown(
            options=[("no new compile", False), ("compile again", True)],
            value=recompile,
            description="after unfreezing",
            style={"description_width": "initial"},
        )
    }
    return TrainingPanel(
        unfreeze_config(base, recompile), controls, train_fn=board.wrap(fit_unfreezing), views=[board], **options
    )


# Section 4: the optimizer's state, lost between fit calls ------------------------------------------------------

BETWEEN_FITS = ("keep the model", "compile a new Adam", "reload the weights", "save and load .keras")


@dataclass(frozen=True)
class ChunkedConfig(TrainConfig):
    """``epochs`` trained in ``fit_calls`` equal ``fit`` calls, doing ``between`` before each later call:
    nothing, ``compile`` with a new Adam, rebuilding the model from ``save_weights``/``load_weights`` (and
    compiling it), or ``model.save`` + ``keras.models.load_model`` (which keeps the optimizer)."""

    fit_calls: int = 4
    between: str = "keep the model"

    def label(self) -> str:
        return f"{self.between}, lr={float(self.learning_rate):.3g}"


def chunked_config(
    base: TrainConfig, between: str = "compile a new Adam", learning_rate: float | None = None, fit_calls: int = 4
) -> ChunkedConfig:
    if between not in BETWEEN_FITS:
        raise ValueError(f"Unknown choice {between!r}; choose one of: {', '.join(BETWEEN_FITS)}.")
    fields = {name: getattr(base, name) for name in TrainConfig.__dataclass_fields__}
    rate = base.learning_rate if learning_rate is None else float(learning_rate)
    return ChunkedConfig(**{**fields, "between": between, "learning_rate": rate, "fit_calls": int(fit_calls)})


def fit_in_chunks(
    config: ChunkedConfig, cancel: threading.Event | None = None, on_epoch: Callable[[EpochMetrics], None] | None = None
) -> History:
    """Train ``config`` as its ``fit_calls`` separate ``fit`` calls (see ``ChunkedConfig``)."""
    if config.epochs % config.fit_calls:
        raise ValueError(f"epochs ({config.epochs}) must be a multiple of fit_calls ({config.fit_calls}).")
    per_call = config.epochs // config.fit_calls
    seed_everything(config.seed)
    data = config.data
    model = config.build_model()
    model.compile(optimizer=_adam(config), loss=config.loss)
    history = History(config)
    with tempfile.TemporaryDirectory() as folder:
        for call in range(config.fit_calls):
            if cancel is not None and cancel.is_set():
                break
            if call and config.between == "compile a new Adam":
                model.compile(optimizer=_adam(config), loss=config.loss)
            elif call and config.between == "reload the weights":
                path = os.path.join(folder, "checkpoint.weights.h5")
                model.save_weights(path)
                model = config.build_model()
                model.load_weights(path)
                model.compile(optimizer=_adam(config), loss=config.loss)
            elif call and config.between == "save and load .keras":
                path = os.path.join(folder, "model.keras")
                model.save(path)
                model = keras.models.load_model(path)
            model.fit(
                data.x_train,
                data.y_train,
                epochs=per_call,
                batch_size=config.batch_size,
                shuffle=True,
                verbose=0,
                callbacks=[
                    _EpochRelay(history, float(config.learning_rate), cancel, on_epoch, first_epoch=call * per_call + 1)
                ],
            )
        history.optimizer_steps = int(model.optimizer.iterations.numpy())
    return _finish(history, model, cancel)


def fit_call_jumps(history: History) -> np.ndarray:
    """For every ``fit`` call after the first: its first epoch's loss divided by the previous epoch's."""
    config = history.config
    per_call = config.epochs // config.fit_calls
    loss = history.loss
    starts = [call * per_call for call in range(1, config.fit_calls) if call * per_call < len(loss)]
    return np.array([loss[start] / loss[start - 1] for start in starts])


def chunked_panel(
    base: TrainConfig, between: str = "compile a new Adam", learning_rate: float = 1e-2, **options: Any
) -> TrainingPanel:
    """A choice of what happens between ``fit`` calls and a learning-rate slider."""
    board = ScoreBoard(
        lambda h: {
            "largest jump at a fit call": float(fit_call_jumps(h).max()),
            "final loss": h.final_loss,
            "Adam's step count at the end": h.optimizer_steps,
        }
    )
    controls = {
        "between": w.Dropdown(
            options=list(BETWEEN_FITS),
            value=between,
            description="between fits",
            style={"description_width": "initial"},
        ),
        "learning_rate": log_slider("learning_rate", learning_rate, 1e-4, 1e-1, description="learning rate"),
    }
    return TrainingPanel(
        chunked_config(base, between, learning_rate),
        controls,
        make_config=lambda b, v: chunked_config(b, **v),
        train_fn=board.wrap(fit_in_chunks),
        views=[board],
        **options,
    )


# Judging an exercise's repairs (ex07_not_adam, parts C and D) -------------------------------------------
# Each retrains the student's repair with fixed seeds and measures it on rows and with code the student
# does not control: the digits' own validation rows, a model built here.


def sorted_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits (training and validation rows together), sorted by label: a file exported class by class."""
    full = digits()
    x = np.concatenate([full.x_train, full.x_val])
    y = np.concatenate([full.y_train, full.y_val])[:, 0]
    order = np.argsort(y, kind="stable")
    return x[order], y[order]


def _row_set(x: np.ndarray, y: np.ndarray) -> list[bytes]:
    """Every (inputs, label) row as bytes, sorted: equal lists mean the same rows, each as often."""
    return sorted(row.tobytes() for row in np.hstack([x, y.reshape(-1, 1)]).astype("float32"))


def split_problems(split, validation_fraction: float = 0.2, seed: int = 0) -> list[str]:
    """What is wrong with ``split(x, y, validation_fraction, seed) -> (x_train, y_train, x_val, y_val)`` on
    ``sorted_digits``: an empty list when every row lands in exactly one part with its own label, the
    validation part has the asked size (±1 row) and holds every class in about its share (within 5 points)."""
    x, y = sorted_digits()
    result = split(x.copy(), y.copy(), validation_fraction, seed)
    try:
        x_train, y_train, x_val, y_val = (np.asarray(part, dtype="float32") for part in result)
    except (TypeError, ValueError):
        return ["it must return four arrays: x_train, y_train, x_val, y_val"]
    problems = []
    y_train, y_val = y_train.reshape(-1), y_val.reshape(-1)
    if len(x_train) != len(y_train) or len(x_val) != len(y_val):
        return ["inputs and labels have different numbers of rows"]
    if abs(len(x_val) - validation_fraction * len(x)) > 1:
        problems.append(
            f"the validation part has {len(x_val)} rows; {validation_fraction:g} of {len(x)} is "
            f"{validation_fraction * len(x):.0f}"
        )
    if _row_set(np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val])) != _row_set(x, y):
        problems.append("the two parts together are not the original rows, each once, with its own label")
    shares = np.array([(y_val == c).mean() for c in range(10)]) if len(y_val) else np.zeros(10)
    overall = np.array([(y == c).mean() for c in range(10)])
    if np.any(np.abs(shares - overall) > 0.05):
        worst = int(np.argmax(np.abs(shares - overall)))
        problems.append(
            f"the validation part is not like the data: digit {worst} makes {shares[worst]:.0%} of it "
            f"but {overall[worst]:.0%} of all rows"
        )
    return problems


def split_validation_accuracy(split, seed: int = 0, epochs: int = 10) -> float:
    """Validation accuracy after training lesson 07a's softmax classifier (``digits_relu_net``, the same
    64-64-10 network as ``digit_classifier(10)`` there) on the student's training part
    (trimmed to whole batches) and scoring on their validation part, as ``fit`` would report it."""
    x, y = sorted_digits()
    x_train, y_train, x_val, y_val = (
        np.asarray(part, dtype="float32") for part in split(x.copy(), y.copy(), 0.2, seed)
    )
    rows = len(x_train) // 32 * 32
    data = Dataset(x_train[:rows], y_train.reshape(-1)[:rows], x_val, y_val.reshape(-1), name="student split")
    history = run(TrainConfig(data, digits_relu_net, loss="sparse_categorical_crossentropy", epochs=epochs, seed=seed))
    if history.diverged:
        return 0.0
    return float((history.predict(data.x_val).argmax(axis=1) == data.y_val[:, 0].astype(int)).mean())


def chunked_training_steps(
    train_in_chunks, fit_calls: int = 3, epochs_per_call: int = 2, learning_rate: float = 1e-2, seed: int = 0
) -> dict[str, float]:
    """Run the student's ``train_in_chunks(model, x, y, fit_calls, epochs_per_call, learning_rate)`` on a
    model built and seeded here (lesson 01's net on ``smooth_regression``). Reports the steps the model's
    optimizer has counted at the end (all ``fit_calls * epochs_per_call * 32`` when its state survived
    every call), the steps expected, and the final training MSE measured here."""
    seed_everything(seed)
    data = smooth_regression()
    model = mlp("chunked_patient", 10, (32, 32), "relu")
    returned = train_in_chunks(
        model, data.x_train.copy(), data.y_train.copy(), fit_calls, epochs_per_call, learning_rate
    )
    trained = returned if isinstance(returned, keras.Model) else model
    optimizer = getattr(trained, "optimizer", None)
    steps = int(optimizer.iterations.numpy()) if optimizer is not None and hasattr(optimizer, "iterations") else 0
    mse = float(np.mean((np.asarray(trained(data.x_train, training=False)) - data.y_train) ** 2))
    return {
        "optimizer steps": steps,
        "expected steps": fit_calls * epochs_per_call * (len(data.x_train) // 32),
        "training MSE": mse,
    }


# ---------------------------------------------------------------------------------------------
# The lesson's opening figure (adamclinic.figures; make figures): section 4's fit calls.
# ---------------------------------------------------------------------------------------------

FIGURE = {"title": "12 epochs in 4 fit calls, Adam at lr 1e-2"}


def figure_curves() -> dict[str, np.ndarray]:
    """Section 4's run (seed 0): lesson 01's network trained in four ``fit`` calls of three epochs at
    lr 1e-2, with one Adam kept throughout and with a new Adam compiled before every call."""
    base = TrainConfig(smooth_regression(), small_relu_net, epochs=12)
    return {
        "one Adam, kept": fit_in_chunks(chunked_config(base, "keep the model", 1e-2)).loss,
        "a new Adam per fit call": fit_in_chunks(chunked_config(base, "compile a new Adam", 1e-2)).loss,
    }
