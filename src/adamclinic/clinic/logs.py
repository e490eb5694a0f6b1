"""A run read from its logs alone: a Keras ``History``, its ``.history`` dict, a ``CSVLogger`` file or a
TensorBoard log directory, turned into a ``RunRecord`` that says what it could not measure.

Most practitioners arrive with curves, not with a ``ClinicMonitor`` attached. A log holds the loss and the
validation loss per epoch, often the learning rate and the accuracy, and (a repeated epoch 0 in a
``CSVLogger(append=True)`` file, a new event file in a TensorBoard directory) where a new ``fit`` began.
It holds no data statistics, no gradients and no probe of the model, so those fields of the record are
left empty and listed in ``RunRecord.unknown``: the rules that need them stay silent, and the report says
which causes it could not check and what to record next time.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras

from adamclinic.clinic.record import RunRecord, _loss_name, _task

# What no log holds: the data, the gradients and the probes of the model at the start and the end.
NOT_IN_LOGS = (
    "rows",
    "nan_rows",
    "feature_scales",
    "target_scale",
    "label_shares",
    "baseline_loss",
    "initial_loss",
    "initial_layer_grads",
    "weight_change",
    "final_train_mode_loss",
    "final_eval_mode_loss",
    "prediction_spread",
    "epoch_layer_grads",
    "improper_outputs",
)
# What a log holds only sometimes: a History knows its model (task, optimizer) and its steps; a CSV file or
# a TensorBoard directory knows the learning rate only if it was logged.
SOMETIMES_IN_LOGS = ("task", "classes", "optimizer", "learning_rate", "beta_1", "beta_2", "steps")

_EMPTY_LISTS = {"feature_scales", "label_shares", "initial_layer_grads", "epoch_layer_grads"}
_LEARNING_RATE_COLUMNS = ("learning_rate", "lr")

HOW_TO_LOG = (
    "Log a run with model.fit(..., callbacks=[keras.callbacks.CSVLogger('run.csv')]) or "
    "keras.callbacks.TensorBoard(log_dir='logs'); better, add ClinicMonitor(x_train, y_train) too."
)


class LogReadError(ValueError):
    """A log the clinic cannot read: the message says what it expected and how to make such a log."""


def record_from_logs(source: Any) -> RunRecord:
    """The ``RunRecord`` of a run known only from its logs; what the logs cannot tell is marked unknown.

    ``source`` is a Keras ``History`` (what ``model.fit`` returns), its ``.history`` dict, the path of a
    ``keras.callbacks.CSVLogger`` file, or a TensorBoard log directory written by ``keras.callbacks.TensorBoard``.
    """
    if isinstance(source, keras.callbacks.History):
        return _from_keras_history(source)
    if isinstance(source, Mapping):
        curves = {str(k): _numbers(str(k), v) for k, v in source.items()}
        return _record(curves, fit_starts=[0], known={}, source="a History dict")
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if not path.exists():
            raise LogReadError(f"No such file or directory: {str(path)!r}. {HOW_TO_LOG}")
        if path.is_dir() or "tfevents" in path.name:
            curves, fit_starts = _read_tensorboard(path)
            return _record(curves, fit_starts, known={}, source=f"TensorBoard log {path}")
        curves, fit_starts = _read_csv(path)
        return _record(curves, fit_starts, known={}, source=f"CSV log {path}")
    raise TypeError(
        "record_from_logs() takes a Keras History, its .history dict, the path of a CSVLogger file or a "
        f"TensorBoard log directory; got {type(source).__name__}."
    )


def curves_only(record: RunRecord) -> RunRecord:
    """The same run as a ``CSVLogger`` file would show it: loss, validation loss, learning rate and fit starts.

    Everything else is marked unknown, so a stored record can be diagnosed "from logs alone".
    """
    kept = {"learning_rate": record.learning_rate}
    return _record(
        {"loss": list(record.loss), "val_loss": list(record.val_loss)},
        list(record.fit_starts),
        known=kept,
        source="curves only",
    )


# Building the record ------------------------------------------------------------------------------------


def _record(
    curves: dict[str, list[float | None]], fit_starts: list[int], known: dict[str, Any], source: str
) -> RunRecord:
    """A record of the curves and of the ``known`` settings; every other field empty and listed as unknown."""
    if "loss" not in curves:
        found = ", ".join(sorted(curves)) or "none"
        raise LogReadError(f"The log of {source} has no 'loss' curve (found: {found}). {HOW_TO_LOG}")
    loss = [math.nan if v is None else v for v in curves["loss"]]
    if not loss:
        raise LogReadError(f"The log of {source} has no epoch in it. {HOW_TO_LOG}")
    val_loss = list(curves.get("val_loss") or [None] * len(loss))
    val_loss = (val_loss + [None] * len(loss))[: len(loss)]
    known = dict(known)
    rates = [v for name in _LEARNING_RATE_COLUMNS for v in curves.get(name, []) if v is not None and math.isfinite(v)]
    if rates and "learning_rate" not in known:
        known["learning_rate"] = max(rates)  # as the engine's record: the largest rate of the schedule
    known = {k: v for k, v in known.items() if v is not None}
    unknown = [*NOT_IN_LOGS, *(name for name in SOMETIMES_IN_LOGS if name not in known)]
    values: dict[str, Any] = {name: ([] if name in _EMPTY_LISTS else None) for name in unknown}
    values["task"] = known.get("task", "unknown")
    extra = {k: v for k, v in curves.items() if k not in ("loss", "val_loss") and k != "epoch"}
    return RunRecord(
        **{**values, **known},
        loss=loss,
        val_loss=val_loss,
        fit_starts=sorted(set(fit_starts)) or [0],
        unknown=unknown,
        curves=extra,
        source=source,
    )


def _from_keras_history(history: keras.callbacks.History) -> RunRecord:
    """A ``model.fit`` History: its curves, its steps, and its model's task and optimizer settings."""
    curves = {str(k): _numbers(str(k), v) for k, v in history.history.items()}
    known: dict[str, Any] = {}
    steps = (getattr(history, "params", None) or {}).get("steps")
    if steps and "loss" in curves:
        known["steps"] = int(steps) * len(curves["loss"])
    model = getattr(history, "model", None)
    optimizer = getattr(model, "optimizer", None) if model is not None else None
    if optimizer is not None:
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # under a loss scale optimizer
        known["optimizer"] = type(optimizer).__name__.lower()
        with contextlib.suppress(Exception):
            rate = optimizer.learning_rate  # a Keras variable (ops.convert_to_numpy would warn about copy=)
            known["learning_rate"] = float(rate.numpy() if hasattr(rate, "numpy") else rate)
        for name in ("beta_1", "beta_2"):
            value = getattr(optimizer, name, None)
            if isinstance(value, (int, float)):
                known[name] = float(value)
        if not hasattr(optimizer, "beta_2"):  # plain SGD or RMSprop: no β to be wrong, as in a monitored record
            known["beta_1"] = known["beta_2"] = None
    if model is not None and getattr(model, "loss", None) is not None:
        with contextlib.suppress(Exception):
            outputs = model.output_shape
            if isinstance(outputs, tuple) and outputs and isinstance(outputs[-1], int):
                known["task"], known["classes"] = _task(_loss_name(model.loss), int(outputs[-1]))
    record = _record(curves, fit_starts=[0], known=known, source="a Keras History")
    # A known "no β" (SGD) is not unknown: keep it out of the list, as the monitor would.
    if optimizer is not None and not hasattr(optimizer, "beta_2"):
        record.unknown = [n for n in record.unknown if n not in ("beta_1", "beta_2")]
    return record


def _numbers(name: str, values: Any) -> list[float | None]:
    try:
        return [None if v is None else float(v) for v in values]
    except (TypeError, ValueError) as error:
        raise LogReadError(f"The curve {name!r} holds a value that is not a number ({error}). {HOW_TO_LOG}") from None


# CSVLogger files ----------------------------------------------------------------------------------------


def _read_csv(path: Path) -> tuple[dict[str, list[float | None]], list[int]]:
    """The columns of a ``CSVLogger`` file and the rows where a new ``fit`` began (its epoch went back)."""
    raw = path.read_bytes()
    where = f"{str(path)!r}"
    expected = (
        "expected a CSV file written by keras.callbacks.CSVLogger (a header 'epoch,loss,...' and one row per epoch)"
    )
    if not raw.strip():
        raise LogReadError(f"{where} is empty: {expected}. {HOW_TO_LOG}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        raise LogReadError(f"{where} is not a text file: {expected}. {HOW_TO_LOG}")
    first = text.lstrip()[:1]
    if first in "{[":
        kind = "a notebook" if '"cells"' in text[:5000] or path.suffix == ".ipynb" else "JSON"
        raise LogReadError(f"{where} looks like {kind}, not a CSV log: {expected}. {HOW_TO_LOG}")
    header_line = text.splitlines()[0]
    delimiter = max(",;\t|", key=header_line.count)  # CSVLogger(separator=...) may be any of these
    rows = [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if row]
    header = [name.strip() for name in rows[0]]
    if "loss" not in header:
        shown = ", ".join(repr(h) for h in header[:8]) + (", ..." if len(header) > 8 else "")
        raise LogReadError(f"{where} has no 'loss' column (its header: {shown}): {expected}. {HOW_TO_LOG}")
    if len(rows) < 2:
        raise LogReadError(f"{where} has a header but no epoch: {expected}. {HOW_TO_LOG}")
    columns: dict[str, list[float | None]] = {name: [] for name in header}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise LogReadError(
                f"{where}, line {line}: {len(row)} values for {len(header)} columns: {expected}. {HOW_TO_LOG}"
            )
        for name, cell in zip(header, row):
            columns[name].append(_cell(cell, name, line, where, expected))
    fit_starts = [0]
    epochs = columns.pop("epoch", None)
    if epochs is not None:
        # CSVLogger(append=True) numbers every fit's epochs from its initial_epoch (usually 0).
        fit_starts += [i for i in range(1, len(epochs)) if _before(epochs[i], epochs[i - 1])]
    if any(v is None for v in columns["loss"]):
        line = columns["loss"].index(None) + 2
        raise LogReadError(f"{where}, line {line}: the loss is missing: {expected}. {HOW_TO_LOG}")
    return columns, fit_starts


def _cell(cell: str, name: str, line: int, where: str, expected: str) -> float | None:
    cell = cell.strip()
    if cell in ("", "NA", "None"):  # CSVLogger writes NA for a value an epoch did not log
        return None
    try:
        return float(cell)
    except ValueError:
        raise LogReadError(
            f"{where}, line {line}: the {name!r} value {cell[:40]!r} is not a number: {expected}. {HOW_TO_LOG}"
        ) from None


def _before(epoch: float | None, previous: float | None) -> bool:
    return epoch is not None and previous is not None and epoch <= previous


# TensorBoard directories --------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """TensorBoard's reader logs and warns about what it skips (graphs, old file versions): not our reader's."""
    logger = logging.getLogger("tensorboard")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _event_files(directory: Path) -> list[Path]:
    return [p for p in directory.glob("*tfevents*") if p.is_file()]


def _read_tensorboard(path: Path) -> tuple[dict[str, list[float | None]], list[int]]:
    """The ``epoch_*`` curves Keras's TensorBoard callback writes (``train/`` and ``validation/``), and the
    epochs where a new ``fit`` began: each ``fit`` opens a new event file, and its steps start again."""
    where = f"{str(path)!r}"
    expected = (
        "expected a log directory written by keras.callbacks.TensorBoard(log_dir=...), with event files "
        "(events.out.tfevents.*) in its train/ and validation/ subdirectories"
    )
    if path.is_file():
        train, validation = [path], []
    else:
        train = _event_files(path / "train") or _event_files(path)
        validation = _event_files(path / "validation")
    if not train:
        found = path.rglob("*tfevents*") if path.is_dir() else []
        runs = sorted({p.parent.parent if p.parent.name in ("train", "validation") else p.parent for p in found})
        if runs:  # the parent of one or several runs' directories: name them
            shown = ", ".join(str(run) for run in runs[:3]) + (", ..." if len(runs) > 3 else "")
            raise LogReadError(f"{where} holds TensorBoard runs in subdirectories: pass one run's directory ({shown}).")
        raise LogReadError(f"{where} holds no TensorBoard event file: {expected}. {HOW_TO_LOG}")
    try:
        with _quiet():
            from tensorboard.backend.event_processing import event_accumulator  # noqa: F401
    except ImportError:
        raise LogReadError(
            f"Reading the TensorBoard log {where} needs the tensorboard package: pip install tensorboard."
        ) from None
    fits = sorted((f for f in (_epoch_scalars(p, where, expected) for p in train) if f), key=lambda f: f[0][0])
    if not any("loss" in values for fit in fits for _, _, values in fit):
        raise LogReadError(f"{where} has no epoch_loss curve in its training events: {expected}. {HOW_TO_LOG}")
    checks = [event for p in validation for fit in [_epoch_scalars(p, where, expected)] for event in fit]
    curves: dict[str, list[float | None]] = {}
    fit_starts: list[int] = []
    epochs: list[tuple[float, int, dict[str, float]]] = []
    for fit in fits:
        fit_starts.append(len(epochs))
        for i, epoch in enumerate(fit):
            if i and epoch[1] <= fit[i - 1][1]:  # steps that start again inside one file: a new fit too
                fit_starts.append(len(epochs))
            epochs.append(epoch)
    names = sorted({name for _, _, values in epochs for name in values})
    val_names = sorted({name for _, _, values in checks for name in values})
    for name in names:
        curves[name] = [values.get(name) for _, _, values in epochs]
    for name in val_names:
        curves[f"val_{name}"] = [_nearest(checks, wall_time, step, name) for wall_time, step, _ in epochs]
    return curves, fit_starts


def _epoch_scalars(path: Path, where: str, expected: str) -> list[tuple[float, int, dict[str, float]]]:
    """One event file's epochs, in step order: (wall time, step, {name without ``epoch_``: value})."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    with _quiet():
        accumulator = event_accumulator.EventAccumulator(
            str(path),
            size_guidance={event_accumulator.TENSORS: 0, event_accumulator.SCALARS: 0},
            purge_orphaned_data=False,
        )
        try:
            accumulator.Reload()
        except Exception as error:  # a truncated or foreign file: TensorBoard's own error is cryptic
            raise LogReadError(f"{where}: cannot read {path.name} ({error}): {expected}. {HOW_TO_LOG}") from None
        tags = accumulator.Tags()
        by_step: dict[int, tuple[float, dict[str, float]]] = {}
        for tag in tags.get("tensors", []):
            if tag.startswith("epoch_"):
                for event in accumulator.Tensors(tag):
                    value = tensor_util.make_ndarray(event.tensor_proto)
                    if value.size == 1:
                        _put(by_step, event.step, event.wall_time, tag[len("epoch_") :], float(value.reshape(())))
        for tag in tags.get("scalars", []):  # older writers (tf.compat.v1) store plain scalars
            if tag.startswith("epoch_"):
                for event in accumulator.Scalars(tag):
                    _put(by_step, event.step, event.wall_time, tag[len("epoch_") :], float(event.value))
    return [(wall_time, step, values) for step, (wall_time, values) in sorted(by_step.items())]


def _put(by_step: dict, step: int, wall_time: float, name: str, value: float) -> None:
    first, values = by_step.setdefault(step, (wall_time, {}))
    values[name] = value
    by_step[step] = (min(first, wall_time), values)


def _nearest(checks: Sequence[tuple[float, int, dict[str, float]]], wall_time: float, step: int, name: str):
    """The validation value of this epoch: same step, written closest in time (several fits reuse steps)."""
    candidates = [(abs(t - wall_time), values[name]) for t, s, values in checks if s == step and name in values]
    return min(candidates)[1] if candidates else None
