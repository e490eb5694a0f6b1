"""The clinic from logs alone (issue 21, item 3): a Keras ``History``, its dict, a ``CSVLogger`` file and a
TensorBoard directory become a ``RunRecord`` that marks what logs cannot hold, ``diagnose`` reads them,
the rules that need data or gradients stay silent, and ``python -m adamclinic.clinic diagnose`` prints the
report or one clear line for a log it cannot read.

The real logs come from two tiny ``model.fit`` runs (one module fixture, a few seconds of CPU); the
logs-only scorecard reads the stored zoos (``tests/data/clinic_zoo.json``, the tuned one, and
``tests/data/clinic_zoo_held_out.json``) through ``curves_only``. Measured on Keras 3.15.1 / TensorFlow 2.21 /
TensorBoard 2.21 (CPU): from the curves alone, top-1 10 of 36 on the tuned zoo and 18 of 50 on the held-out
one, no false alarm on either; every other cause needs the data or the gradients and is reported as not
checked.
"""

import json
import math
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

from adamclinic.clinic import HEALTHY, LogReadError, RunRecord, curves_only, diagnose, record_from_logs
from adamclinic.clinic.__main__ import main
from adamclinic.clinic.logs import NOT_IN_LOGS
from adamclinic.clinic.patients import held_out_path, load_zoo, scorecard, stored_path

EPOCHS, MORE_EPOCHS = 8, 6


def _tiny_model(learning_rate: float) -> keras.Model:
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1, activation="sigmoid")]
    )
    model.compile(keras.optimizers.Adam(learning_rate), "binary_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A tiny binary classifier trained twice (recompiled in between), logged by CSVLogger(append=True) and
    TensorBoard; returns the directory, the first fit's History and its model."""
    directory = tmp_path_factory.mktemp("logs")
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(96, 4)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("float32")
    model = _tiny_model(0.01)

    def callbacks():
        return [
            keras.callbacks.CSVLogger(str(directory / "run.csv"), append=True),
            keras.callbacks.TensorBoard(str(directory / "tb"), write_graph=False),
        ]

    with warnings.catch_warnings():
        # Keras 3.15's TensorBoard callback reads the learning rate through a NumPy call that warns about copy=.
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        history = model.fit(x, y, epochs=EPOCHS, batch_size=32, validation_split=0.25, verbose=0, callbacks=callbacks())
        # A recompile makes a fresh Adam; a large rate makes the restart show as a jump in the loss.
        model.compile(keras.optimizers.Adam(0.5), "binary_crossentropy", metrics=["accuracy"])
        model.fit(x, y, epochs=MORE_EPOCHS, batch_size=32, validation_split=0.25, verbose=0, callbacks=callbacks())
    return directory, history


def _write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


# Reading real logs --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_csvlogger_file_gives_the_curves_and_the_new_fit(logged):
    """CSVLogger(append=True) numbers each fit's epochs from 0: the second fit is found as a new start."""
    directory, history = logged
    record = record_from_logs(directory / "run.csv")
    assert len(record.loss) == EPOCHS + MORE_EPOCHS and record.fit_starts == [0, EPOCHS]
    assert record.loss[:EPOCHS] == pytest.approx(history.history["loss"], rel=1e-6)
    assert record.val_loss[:EPOCHS] == pytest.approx(history.history["val_loss"], rel=1e-6)
    assert set(record.curves) == {"accuracy", "val_accuracy"}  # CSVLogger does not log the learning rate
    assert not record.knows("learning_rate") and record.learning_rate is None
    assert set(NOT_IN_LOGS) <= set(record.unknown)
    assert record.baseline_loss is None and record.feature_scales == [] and record.initial_layer_grads == []


@pytest.mark.slow
def test_a_tensorboard_directory_reads_like_the_csv_file_and_adds_the_learning_rate(logged):
    """Keras 3 writes epoch_loss, epoch_accuracy and epoch_learning_rate in train/, epoch_loss in validation/;
    each fit opens new event files, so the second fit is a new start."""
    directory, _ = logged
    from_csv = record_from_logs(directory / "run.csv")
    from_tensorboard = record_from_logs(directory / "tb")
    assert from_tensorboard.fit_starts == [0, EPOCHS]
    assert from_tensorboard.loss == pytest.approx(from_csv.loss, rel=1e-6)
    assert from_tensorboard.val_loss == pytest.approx(from_csv.val_loss, rel=1e-6)
    assert from_tensorboard.curves["accuracy"] == pytest.approx(from_csv.curves["accuracy"], rel=1e-6)
    assert from_tensorboard.curves["learning_rate"] == pytest.approx([0.01] * EPOCHS + [0.5] * MORE_EPOCHS)
    assert from_tensorboard.knows("learning_rate") and from_tensorboard.learning_rate == pytest.approx(0.5)


@pytest.mark.slow
def test_a_keras_history_also_gives_the_steps_and_the_optimizer(logged):
    """A History knows its fit's steps and its model: the task, the learning rate and Adam's betas."""
    _, history = logged
    record = record_from_logs(history)
    assert record.steps == EPOCHS * 3 and record.fit_starts == [0]
    assert (record.task, record.classes, record.optimizer) == ("binary", 2, "adam")
    # The model was recompiled after this fit: its optimizer now is the second one (rate 0.5).
    assert record.learning_rate == pytest.approx(0.5) and (record.beta_1, record.beta_2) == (0.9, 0.999)
    assert record.knows("beta_2", "steps", "task") and not record.knows("baseline_loss", "weight_change")
    from_dict = record_from_logs(history.history)
    assert from_dict.loss == record.loss and not from_dict.knows("learning_rate", "beta_2", "steps")


@pytest.mark.slow
def test_diagnose_reads_every_kind_of_log_and_says_what_it_could_not_check(logged):
    """diagnose() takes a History, a dict, a CSV path or a TensorBoard directory; each report lists the causes
    it could not check and says to add ClinicMonitor next time, as text and as HTML."""
    directory, history = logged
    for source in (history, history.history, directory / "run.csv", str(directory / "tb")):
        report = diagnose(source)
        assert "nan_inputs" in report.not_checked and "unscaled_inputs" in report.not_checked
        assert "overfitting" not in report.not_checked and "recompile_reset" not in report.not_checked
        for text in (str(report), report._repr_html_()):
            assert "Could not check" in text and "NaN in the inputs" in text
            assert "ClinicMonitor(x_train, y_train)" in text
    # The recompile at a 50x larger rate shows as a jump where the second fit starts.
    assert diagnose(directory / "run.csv").top == "recompile_reset"
    assert diagnose(directory / "tb").top == "recompile_reset"


@pytest.mark.slow
def test_the_command_line_prints_the_report_of_a_real_csv_log(logged):
    """python -m adamclinic.clinic diagnose run.csv prints the report with exit 0 and nothing on stderr;
    a missing file exits 2 with one line on stderr."""
    directory, _ = logged
    done = subprocess.run(
        [sys.executable, "-m", "adamclinic.clinic", "diagnose", str(directory / "run.csv")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "optimizer state lost on recompile" in done.stdout and "Could not check" in done.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "adamclinic.clinic", "diagnose", str(directory / "no_such.csv")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode == 2 and missing.stdout == ""
    assert len(missing.stderr.strip().splitlines()) == 1 and "No such file" in missing.stderr


@pytest.mark.slow
def test_the_command_line_reads_a_tensorboard_directory(logged, capsys):
    """The command line takes a TensorBoard log directory as well (run in process: the same main())."""
    directory, _ = logged
    assert main(["diagnose", str(directory / "tb")]) == 0
    out, err = capsys.readouterr()
    assert "optimizer state lost on recompile" in out and err == ""


# Logs that are not logs ---------------------------------------------------------------------------------

BAD_LOGS = {
    "empty.csv": ("", "is empty"),
    "no_loss.csv": ("epoch,accuracy\n0,0.5\n", "no 'loss' column"),
    "words.csv": ("epoch,loss\n0,0.7\n1,lots\n", "'lots' is not a number"),
    "header_only.csv": ("epoch,loss,val_loss\n", "no epoch"),
    "ragged.csv": ("epoch,loss,val_loss\n0,0.7\n", "2 values for 3 columns"),
    "lesson.ipynb": (json.dumps({"cells": [], "metadata": {}, "nbformat": 4}), "looks like a notebook"),
}


@pytest.mark.parametrize("name", sorted(BAD_LOGS))
def test_a_log_it_cannot_read_gets_a_clear_error_and_exit_code_2(tmp_path, capsys, name):
    """Each unreadable log raises a LogReadError (a ValueError) saying what was expected and how to make a
    log; the command line prints it as one line on stderr and exits 2."""
    text, expected = BAD_LOGS[name]
    path = _write(tmp_path / name, text)
    with pytest.raises(LogReadError, match=expected) as raised:
        record_from_logs(path)
    assert isinstance(raised.value, ValueError) and "CSVLogger" in str(raised.value)
    assert main(["diagnose", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and expected in err


def test_binary_files_missing_paths_and_empty_directories_are_refused_clearly(tmp_path, capsys):
    """A binary file, a path that does not exist and a directory without event files each get one clear line."""
    binary = tmp_path / "weights.h5"
    binary.write_bytes(bytes(range(256)) * 4)
    empty = tmp_path / "logs"
    (empty / "train").mkdir(parents=True)
    for path, expected in (
        (binary, "not a text file"),
        (tmp_path / "missing.csv", "No such file"),
        (empty, "no TensorBoard event file"),
    ):
        with pytest.raises(LogReadError, match=expected):
            record_from_logs(path)
        assert main(["diagnose", str(path)]) == 2
        out, err = capsys.readouterr()
        assert len(err.strip().splitlines()) == 1 and expected in err
    with pytest.raises(TypeError, match="CSVLogger file or a TensorBoard log directory"):
        record_from_logs(42)


def test_the_command_line_explains_itself(capsys):
    """--help names the command and how to make a log; a missing argument is an argparse error (exit 2)."""
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0 and "diagnose" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        main(["diagnose", "--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and "CSVLogger" in out and "TensorBoard" in out
    with pytest.raises(SystemExit) as done:
        main([])
    assert done.value.code == 2


# Rules on curves only -----------------------------------------------------------------------------------


def test_a_csv_with_nan_and_a_logged_high_rate_is_named_a_learning_rate_too_high(tmp_path):
    """The curves alone can still show a rate too high: spikes, then NaN, at a logged rate of 0.5."""
    losses = ["2.0", "1.2", "2.5", "1.0", "2.2", "0.9", "3.0", "nan"]
    rows = "".join(f"{i},{loss},0.5\n" for i, loss in enumerate(losses))
    report = diagnose(_write(tmp_path / "run.csv", "epoch,loss,learning_rate\n" + rows))
    assert report.top == "learning_rate_too_high"
    assert "learning rate 0.5" in report.findings[0].evidence
    assert "NaN in the inputs" in str(report)  # a NaN loss may come from the data: that was not checked


def test_a_nan_loss_with_no_cause_found_is_not_called_healthy():
    """Without a logged rate a NaN loss names no cause, and the report says so instead of "no problem"."""
    report = diagnose({"loss": [1.0, 0.9, math.nan], "val_loss": [1.1, 1.0, math.nan]})
    assert report.findings == [] and str(report).startswith("No cause named from the curves alone")
    assert "NaN or infinite at epoch 3" in str(report) and "No problem" not in report._repr_html_()


def test_a_directory_of_several_runs_is_refused_with_the_runs_named(tmp_path):
    """The parent of several TensorBoard runs is not one run: the error names the runs to pick from."""
    for run in ("adam", "sgd"):
        (tmp_path / run / "train").mkdir(parents=True)
        (tmp_path / run / "train" / "events.out.tfevents.1.host.0.v2").write_bytes(b"")
    with pytest.raises(LogReadError, match="pass one run's directory") as raised:
        record_from_logs(tmp_path)
    assert str(tmp_path / "adam") in str(raised.value) and str(tmp_path / "sgd") in str(raised.value)


def test_a_log_is_never_judged_on_numbers_it_does_not_hold():
    """A record from logs holds None or empty lists where nothing was measured, survives JSON, and every
    rule that needs such a field is listed as not checked rather than run."""
    record = record_from_logs(
        {"loss": [1.0, 0.8, 0.7, 0.65, 0.6, 0.58], "val_loss": [1.0, 0.9, 0.85, 0.84, 0.83, 0.83]}
    )
    assert RunRecord.from_json(record.to_json()) == record
    assert all(getattr(record, name) in (None, []) for name in NOT_IN_LOGS)
    report = diagnose(record)
    assert report.top == HEALTHY and str(report).startswith("No problem found in the curves")
    assert set(report.not_checked) >= {"nan_inputs", "vanishing_gradients", "chance_plateau", "learning_rate_too_low"}
    assert "learning_rate_too_high" in report.partly_checked and "overfitting" in report.partly_checked


# Measured top-1 from the curves alone (CSVLogger's view: loss, validation loss, learning rate, fit starts).
# Tuned zoo: 10 of 36 (recompile 2, overfitting 2, healthy 6). Held-out zoo: 18 of 50 (overfitting 3,
# healthy 15; its two recompiled runs: one also overfits and ranks overfitting first, the other shows no
# jump even on its full record). No false alarm on either.
LOGS_ONLY_TOP1 = {"tuned": 10 / 36, "held-out": 18 / 50}


@pytest.fixture(scope="module")
def zoos():
    return {"tuned": load_zoo(stored_path())[1], "held-out": load_zoo(held_out_path())[1]}


@pytest.mark.parametrize("zoo", sorted(LOGS_ONLY_TOP1))
def test_from_logs_alone_the_zoos_raise_no_false_alarm(zoos, zoo, record_property):
    """Scored on its curves only, each stored zoo gets no false alarm and at least the measured top-1, runs
    no rule that needs what logs lack, quotes no unknown value and raises no warning."""
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        reports = {name: (cause, diagnose(curves_only(record))) for name, (cause, record) in zoos[zoo].items()}
    card = scorecard(reports)
    record_property(f"clinic_{zoo}_zoo_logs_only_scorecard", card)
    print(f"\nclinic {zoo} zoo from logs alone: {card}")
    assert card["false_alarms"] == 0
    assert card["top1_accuracy"] >= LOGS_ONLY_TOP1[zoo] - 1e-9
    for name, (_, report) in reports.items():
        assert not set(report.causes) & set(report.not_checked), name
        for finding in report.findings:
            assert "None" not in finding.evidence and "nan" not in finding.evidence.replace("NaN", ""), finding


@pytest.mark.parametrize("zoo", sorted(LOGS_ONLY_TOP1))
def test_from_logs_alone_no_cause_is_named_that_the_full_record_does_not_show(zoos, zoo):
    """Curves alone can miss a cause, never add one: every finding from logs is also a finding on the full record."""
    for name, (_, record) in zoos[zoo].items():
        assert set(diagnose(curves_only(record)).causes) <= set(diagnose(record).causes), name
