"""The clinic judged on runs it was never tuned on: the held-out zoo (issue 21, item 1).

``adamclinic.clinic.held_out.HELD_OUT`` is built from other data (scikit-learn's bundled breast-cancer,
wine and diabetes sets, its Friedman and ``make_classification``/``make_regression`` generators, two
synthetic sequence tasks; the course's digits only as images for a CNN), other architectures (CNN, GRU,
LSTM, embedding, ELU/SELU/GELU/swish/softplus nets) and other seeds (1-3). Each label is planted by
construction and checked against the run's healthy twin by ``check_label``, never by ``diagnose``.
Training it costs a few minutes of CPU, so its runs are stored in ``tests/data/clinic_zoo_held_out.json``
(written once, before the tool was run on it); this file scores the stored records and re-trains three
cheap patients (engine and ``model.fit``) to check the stored records are still what the code makes.
"""

import math
import socket
from collections import Counter

import numpy as np
import pytest

from adamclinic.clinic import CAUSES, HEALTHY, diagnose
from adamclinic.clinic import held_out as held_out_module
from adamclinic.clinic.held_out import HELD_OUT, TWINS, check_label
from adamclinic.clinic.patients import ZOO, held_out_path, load_seeds, load_zoo, scorecard
from adamclinic.clinic.zoos import main

pytestmark = pytest.mark.slow  # re-trains patients (make check leaves it out)

PATIENTS = {p.name: p for p in HELD_OUT}

# Measured once on the stored records (Keras 3.15.1 / TensorFlow 2.21, CPU), with the rules as they were
# when the held-out zoo was fixed; nobody tuned on it. The goal is >= 0.9 and no false alarm.
# Measured: 47 of 50 (0.94), 0 false alarms in 15 healthy runs. The three misses: "digits CNN (fit), β2 0.3,
# batch 8" (called learning rate too high: it blew up to a chance-level loss), "friedman1 (fit), recompiled
# at epoch 10" (no problem found: the loss rose only 1.14-fold after the recompile and the run ended well)
# and "digits CNN (fit), recompiled at epoch 6" (overfitting first, the recompile second: it overfits too).
MEASURED_TOP1 = 0.94
MEASURED_FALSE_ALARMS = 0


@pytest.fixture(scope="module")
def stored():
    seed, records = load_zoo(held_out_path())
    assert seed is None  # each held-out patient carries its own seed
    return records


@pytest.fixture(scope="module")
def reports(stored):
    return {name: (cause, diagnose(record)) for name, (cause, record) in stored.items()}


def test_the_held_out_zoo_has_40_runs_10_healthy_and_every_cause_twice():
    """At least 40 runs, at least 10 healthy, every cause planted in at least 2 runs, names unique."""
    counts = Counter(p.cause for p in HELD_OUT)
    assert len(HELD_OUT) >= 40 and counts[HEALTHY] >= 10
    assert set(counts) == set(CAUSES) | {HEALTHY}
    assert all(counts[cause] >= 2 for cause in CAUSES), counts
    assert len(PATIENTS) == len(HELD_OUT)


def test_the_held_out_zoo_uses_other_data_architectures_and_seeds_than_the_tuned_zoo():
    """No data-set name, builder or model name is shared with ZOO; seeds are 1-3, never 0; the new kinds of
    layer (conv, GRU, LSTM, embedding) are there. The course's digits appear only as 8x8x1 images for a CNN."""
    tuned = [p.make() for p in ZOO]
    held = [p.make() for p in HELD_OUT]
    assert not {c.data.name for c in tuned} & {c.data.name for c in held}
    assert not {c.build_model for c in tuned} & {c.build_model for c in held}
    models = {c.build_model: c.build_model() for c in held}
    tuned_names = {c.build_model().name for c in {c.build_model: c for c in tuned}.values()}
    assert not tuned_names & {m.name for m in models.values()}
    layers = {type(layer).__name__ for m in models.values() for layer in m.layers}
    assert {"Conv2D", "GRU", "LSTM", "Embedding"} <= layers
    # The one course data set in the held-out zoo: the digits, and only for the CNN (an architecture ZOO lacks).
    digits_users = {c.build_model.__name__ for c in held if "digits" in c.data.name}
    assert digits_users <= {"digits_cnn", "digits_cnn_linear_output"}, digits_users
    seeds = Counter(p.seed for p in HELD_OUT)
    assert set(seeds) == {1, 2, 3}, seeds


def test_the_bundled_data_sets_load_without_the_network(monkeypatch):
    """scikit-learn's breast-cancer, wine and diabetes files ship inside the package: no socket is opened."""

    def refuse(*args, **kwargs):
        raise AssertionError("a data set tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for build in (held_out_module.breast_cancer, held_out_module.wine, held_out_module.diabetes):
        data = build.__wrapped__()  # bypass the cache: really read the file
        assert np.isfinite(data.x_train).all() and len(data.x_val) > 0


def test_the_stored_held_out_zoo_is_the_current_one(stored):
    """Every held-out patient has a stored record with its current label and its own seed."""
    assert {name: cause for name, (cause, _) in stored.items()} == {p.name: p.cause for p in HELD_OUT}
    assert load_seeds(held_out_path()) == {p.name: p.seed for p in HELD_OUT}


def test_every_stored_label_holds_by_its_own_measure(stored):
    """Each planted breakage shows in numbers (worse than its healthy twin, and what its cause means), and
    every healthy run learns without its validation loss rising: checked without the tool."""
    failures = {}
    for name, (cause, record) in stored.items():
        twin = stored[TWINS[name]][1] if name in TWINS else None
        holds, facts = check_label(cause, record, twin)
        if not holds:
            failures[name] = facts
    assert not failures, failures


def test_the_held_out_scorecard(reports, record_property):
    """Top-1 accuracy and false alarms on runs the rules never saw (reported; the floor is what was measured)."""
    card = scorecard(reports)
    misses = {name: (cause, report.top) for name, (cause, report) in reports.items() if report.top != cause}
    record_property("clinic_held_out_scorecard", card)
    record_property("clinic_held_out_misses", misses)
    print(f"\nclinic held-out zoo: {card}\nmisses: {misses}")
    assert card["top1_accuracy"] >= MEASURED_TOP1, misses
    assert card["false_alarms"] <= MEASURED_FALSE_ALARMS, misses


def test_the_command_line_scores_both_stored_sets(capsys):
    """`python -m adamclinic.clinic.zoos --stored` prints each set's top-1 and false-alarm rate, no training."""
    cards = main(["--stored"])
    out = capsys.readouterr().out
    assert set(cards) == {"tuned", "held_out"}
    assert "tuned zoo: top-1" in out and "held-out zoo: top-1" in out and "false alarms" in out
    assert cards["held_out"]["patients"] == len(HELD_OUT)


@pytest.mark.parametrize(
    "name",
    ["diabetes, lr 1e-6", "breast cancer, raw units", "friedman1 (fit), batch norm momentum 0.999"],
)
def test_a_retrained_held_out_patient_matches_its_stored_record(stored, name):
    """Re-training with the patient's own seed reproduces the stored curves and verdict (engine and model.fit)."""
    cause, record = stored[name]
    patient = PATIENTS[name]
    fresh = patient.record(patient.seed)
    np.testing.assert_allclose(fresh.loss, record.loss, rtol=1e-4)
    assert fresh.fit_starts == record.fit_starts and fresh.steps == record.steps
    assert math.isclose(fresh.weight_change, record.weight_change, rel_tol=1e-3)
    assert diagnose(fresh).top == diagnose(record).top
