"""``ClinicMonitor``: a Keras callback that fills a ``RunRecord`` while ``model.fit`` trains.

Per epoch it only copies two numbers out of Keras's logs; the probes run when training starts and ends.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from adamclinic.clinic.record import (
    PROBE_ROWS,
    RunRecord,
    _baseline,
    _clean,
    _data_statistics,
    _final_probe,
    _kernel_change,
    _kernel_indices,
    _layer_grads,
    _loss_name,
    _task,
)

# The probes both ways of recording share (private to the clinic).
from adamclinic.engine import TrainConfig, keras_fit

# Path 1: a Keras callback for model.fit ---------------------------------------------------------------


class ClinicMonitor(keras.callbacks.Callback):
    """Watch ``model.fit`` (one or several calls) and keep a ``RunRecord``; then ``diagnose(monitor)``.

    ``x`` and ``y`` are the training inputs and targets (the first ``probe_rows`` rows are probed; the
    data statistics use them all). Pass the same monitor to every ``fit`` of one model.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, probe_rows: int = PROBE_ROWS):
        super().__init__()
        self.x = np.asarray(x, dtype="float32")
        self.y = np.asarray(y, dtype="float32")
        if self.y.ndim == 1:
            self.y = self.y.reshape(-1, 1)
        self.probe_x, self.probe_y = self.x[:probe_rows], self.y[:probe_rows]
        self._start: dict[str, Any] | None = None
        self._start_kernels: list[np.ndarray] = []
        self._loss: list[float] = []
        self._val_loss: list[float | None] = []
        self._fit_starts: list[int] = []
        self._steps = 0
        self._end: dict[str, Any] = {}
        self.seconds = 0.0  # time spent inside the monitor, for measuring what watching costs

    def _loss_fn(self) -> Callable:
        loss = self.model.loss
        return keras.losses.get(loss) if isinstance(loss, str) else loss

    def on_train_begin(self, logs=None):
        started = time.perf_counter()
        self._fit_starts.append(len(self._loss))
        if self._start is None:
            self._probe_start()
        self.seconds += time.perf_counter() - started

    def _probe_start(self) -> None:
        loss_name = _loss_name(self.model.loss)
        task, classes = _task(loss_name, int(self.model.output_shape[-1]))
        optimizer = self.model.optimizer
        initial_loss, grads = _layer_grads(self.model, self._loss_fn(), self.probe_x, self.probe_y)
        baseline, shares = _baseline(task, self._loss_fn(), self.y, classes)
        self._start = {
            "task": task,
            "classes": classes,
            "optimizer": type(optimizer).__name__.lower(),
            "learning_rate": float(optimizer.learning_rate.numpy()),
            "beta_1": float(optimizer.beta_1) if hasattr(optimizer, "beta_1") else None,
            "beta_2": float(optimizer.beta_2) if hasattr(optimizer, "beta_2") else None,
            **_data_statistics(self.x, self.y, task),
            "label_shares": shares,
            "baseline_loss": baseline,
            "initial_loss": initial_loss,
            "initial_layer_grads": grads,
        }
        self._start_kernels = [self.model.trainable_variables[i].numpy() for i in _kernel_indices(self.model)]

    def on_epoch_end(self, epoch, logs=None):
        # Steps are counted from the fit's parameters: a per-batch hook would make Keras wait for every
        # batch's logs, which costs more than all the probes together.
        self._steps += int(self.params.get("steps") or 0)
        logs = logs or {}
        self._loss.append(float(logs.get("loss", math.nan)))
        self._val_loss.append(_clean(logs.get("val_loss")))

    def on_train_end(self, logs=None):
        started = time.perf_counter()
        task = self._start["task"]
        self._end = _final_probe(self.model, self._loss_fn(), self.probe_x, self.probe_y, task)
        kernels = [self.model.trainable_variables[i].numpy() for i in _kernel_indices(self.model)]
        self._end["weight_change"] = _kernel_change(self._start_kernels, kernels)
        self.seconds += time.perf_counter() - started

    @property
    def record(self) -> RunRecord:
        if self._start is None:
            raise ValueError("This monitor has not watched a fit yet: pass it in model.fit(callbacks=[...]).")
        return RunRecord(
            **self._start,
            loss=list(self._loss),
            val_loss=list(self._val_loss),
            fit_starts=list(self._fit_starts),
            steps=self._steps,
            **self._end,
        )


def monitored_fit(config: TrainConfig, recompile_after: int | None = None) -> ClinicMonitor:
    """Train ``config`` with stock compile + fit (``adamclinic.engine.keras_fit``), watched by a ``ClinicMonitor``.

    With ``recompile_after`` the model is compiled again after that many epochs (a fresh Adam, as
    ``model.compile`` makes) and trained for the remaining epochs in a second ``fit``.
    """
    monitor = ClinicMonitor(config.data.x_train, config.data.y_train)
    keras_fit(config, callbacks=[monitor], recompile_after=recompile_after)
    return monitor
