"""ex08_mystery_runs: a real nbgrader round trip, and the calibration of the bars.

The round trip releases the assignment in a temporary course copy, submits three students and grades them
in one ``grade`` call: the reference answers (full marks), the untouched exercise (zero), and two mixed
students who split the parts between them: each part is wrong (in a plausible way) in one and solved
differently from the solution in the other.

The calibration tests retrain the reference fixes, other correct fixes and the known-wrong ones on seeds 0-2
with the judging helpers the hidden tests use (``adamclinic.lessons.the_clinic.judge_fix``: the engine's run, then the
clinic's diagnosis); the numbers in their docstrings were measured on Keras 3.15.1 / TensorFlow 2.21 on a
2-core CPU.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from adamclinic.lessons.the_clinic import (
    EXERCISE_PATIENTS,
    cleaned_config,
    exercise_patient,
    judge_fix,
    relu_he_version,
    setup_changes,
)
from adamclinic.models import mlp
from nbgrader_course import (
    RoundTrip,
    solution_source,
)
from round_trip_tests import graded, test_each_part_is_scored_on_its_own, test_written_answers_wait_for_a_human  # noqa: F401 (the shared round trip)

A = "ex08_mystery_runs"
SEEDS = (0, 1, 2)
GRADED = (0, 1)
BARS = {"P1": 0.8, "P2": 1.0, "P3": 0.4, "P4": 0.5}  # mean last validation loss over the graded seeds
POINTS = {"diagnoses": 3, "learning_rate_fix": 2, "clean_fix": 2, "exploding_fix": 2}


# Answers a student could write; each replaces the whole solution cell of its part. -------------------

ANSWERS = {
    "diagnoses_answer": {
        "reference": solution_source(A, "diagnoses_answer"),
        # "the loss blew up, so the gradients exploded": P1 read at the wrong checklist step
        "wrong": """
DIAGNOSES = {"P1": "exploding_gradients", "P2": "learning_rate_too_low", "P3": "nan_inputs",
             "P4": "exploding_gradients"}
""",
        "other_right": """
DIAGNOSES = dict(P1="learning_rate_too_high", P2="learning_rate_too_low")
DIAGNOSES.update(P3="nan_inputs", P4="exploding_gradients")
""",
    },
    "learning_rate_answer": {
        "reference": solution_source(A, "learning_rate_answer"),
        # ten times down from 1.0 is not enough for P1; P2 raised only tenfold still crawls
        "wrong": """
FIXED_P1 = replace(P1, learning_rate=0.1)
FIXED_P2 = replace(P2, learning_rate=3e-5)
""",
        "other_right": """
FIXED_P1 = replace(P1, learning_rate=1e-2)
FIXED_P2 = replace(P2, learning_rate=1e-3)
""",
    },
    "clean_answer": {
        "reference": solution_source(A, "clean_answer"),
        # a sentinel far outside the data: finite, but a column now looks unscaled
        "wrong": """
def clean(x):
    return np.nan_to_num(x, nan=1000.0)
""",
        "other_right": """
def clean(x):
    filled = x.copy()
    for column in range(x.shape[1]):
        missing = np.isnan(filled[:, column])
        filled[missing, column] = np.nanmean(x[:, column])
    return filled
""",
    },
    "exploding_answer": {
        "reference": solution_source(A, "exploding_answer"),
        # a smaller learning rate only slows the walk away from a start ~1e10 too big
        "wrong": "FIXED_P4 = replace(P4, learning_rate=1e-4)",
        # the same widths with Keras's default (Glorot) initialisation
        "other_right": """
from adamclinic.models import mlp


def glorot_relu_net():
    return mlp("p4_glorot", 10, (64,) * 8, "relu")


FIXED_P4 = replace(P4, build_model=glorot_relu_net)
""",
    },
}
PART_OF = {
    "diagnoses_answer": "diagnoses",
    "learning_rate_answer": "learning_rate_fix",
    "clean_answer": "clean_fix",
    "exploding_answer": "exploding_fix",
}
WRITTEN = {"checklist_explanation": "P3 at the data step: NaN inputs. P4 at the start: a huge initial loss."}

ROUND_TRIP = RoundTrip(
    A,
    ANSWERS,
    PART_OF,
    POINTS,
    wrong_in_mixed_1={"diagnoses_answer", "clean_answer"},
    written=WRITTEN,
    written_points={"checklist_explanation": 2.0},
)


# Calibration --------------------------------------------------------------------------------------


def answer(cell: str, choice: str, names: tuple[str, ...]):
    """What an answer cell defines, run in the notebook's setup namespace."""
    namespace = {
        "replace": replace,
        "np": np,
        **{p: exercise_patient(p) for p in EXERCISE_PATIENTS},
        "relu_he_version": relu_he_version,
    }
    exec(ANSWERS[cell][choice], namespace)
    return [namespace[name] for name in names]


def val_losses(config, seeds=SEEDS) -> tuple[list[str], np.ndarray]:
    judged = judge_fix(config, seeds)
    return judged["verdicts"], np.array(judged["val_losses"], dtype=float)


@pytest.mark.slow
def test_the_diagnoses_are_the_clinics_own_on_every_seed():
    """Part A's labels are what the clinic names first for the untreated patients, on seeds 0-2."""
    for name, patient in EXERCISE_PATIENTS.items():
        assert judge_fix(exercise_patient(name), SEEDS)["verdicts"] == [patient.cause] * 3
    (reference,) = answer("diagnoses_answer", "reference", ("DIAGNOSES",))
    (other,) = answer("diagnoses_answer", "other_right", ("DIAGNOSES",))
    assert reference == other == {name: p.cause for name, p in EXERCISE_PATIENTS.items()}


@pytest.mark.slow
def test_learning_rate_bars_separate_fixes_from_half_measures():
    """BARS P1 0.8, P2 1.0 (mean last validation loss over seeds 0, 1) and the cause must be gone.

    Measured last validation losses, seeds 0-2: P1 untreated 1.54, 1.97, 2.26; lr 1e-3 (reference) 0.55, 0.49,
    0.50; lr 1e-2 0.45, 0.44, 0.48 (the clinic finds overfitting on seeds 1-2, not the learning rate: it passes);
    lr 0.1 1.44, 1.10, 0.86 and named too high on seed 1 (fails). That is Intel AVX-512; on AMD AVX2 lr 0.1 gives
    1.29, 1.27, 0.86 and the clinic calls seeds 0-1 overfitting (seeds 3-5: too high, overfitting, too high):
    which cause it names is a knife edge, so the bar alone fails it, on both CPUs (mean 1.27, 1.28: 1.6x the bar).
    P2 untreated 2.45, 2.46, 2.42; lr 3e-3 (reference) 0.42, 0.37, 0.45; lr 1e-3 0.56, 0.55, 0.57; lr 3e-5 2.30 on
    every seed, still too low (fails).
    """
    for choice in ("reference", "other_right"):
        for name, fixed in zip(("P1", "P2"), answer("learning_rate_answer", choice, ("FIXED_P1", "FIXED_P2"))):
            assert not setup_changes(fixed, exercise_patient(name), ("learning_rate",))
            verdicts, val = val_losses(fixed)
            assert EXERCISE_PATIENTS[name].cause not in verdicts, (choice, name, verdicts)
            assert val[list(GRADED)].mean() < 0.75 * BARS[name] and val.max() < BARS[name], (choice, name, val)
    wrong_p1, wrong_p2 = answer("learning_rate_answer", "wrong", ("FIXED_P1", "FIXED_P2"))
    verdicts, val = val_losses(wrong_p1)
    assert val[list(GRADED)].mean() > 1.4 * BARS["P1"]  # Intel AVX-512 1.27, AMD AVX2 1.28
    verdicts, val = val_losses(wrong_p2)
    assert verdicts == ["learning_rate_too_low"] * 3 and val.min() > 2 * BARS["P2"]


@pytest.mark.slow
def test_clean_bar_separates_imputation_from_a_sentinel():
    """BARS P3 0.4, and the clinic must find nothing.

    Measured last validation losses, seeds 0-2: median fill (reference) 0.194, 0.187, 0.161; mean fill 0.193,
    0.187, 0.161; zero fill 0.194, 0.187, 0.160 (all healthy); a 1000 sentinel 1.17, 1.08, 0.89, named unscaled
    inputs (fails).
    """
    for choice in ("reference", "other_right"):
        (clean,) = answer("clean_answer", choice, ("clean",))
        verdicts, val = val_losses(cleaned_config(clean))
        assert verdicts == ["healthy"] * 3 and val.max() < 0.6 * BARS["P3"], (choice, val)
    (sentinel,) = answer("clean_answer", "wrong", ("clean",))
    verdicts, val = val_losses(cleaned_config(sentinel))
    assert verdicts == ["unscaled_inputs"] * 3 and val.min() > 2 * BARS["P3"]
    with pytest.raises(ValueError, match="shape"):
        cleaned_config(lambda x: x[~np.isnan(x).any(axis=1)])


@pytest.mark.slow
def test_exploding_bar_separates_a_new_start_from_a_smaller_step():
    """BARS P4 0.5, and exploding gradients must be gone.

    Measured last validation losses, seeds 0-2: ReLU + He (reference) 0.228, 0.200, 0.166; Glorot initialisation
    0.079, 0.079, 0.088 (healthy); lr 1e-4 about 3e11, clipnorm 1 about 1e10, plain SGD NaN: still exploding.
    """
    for choice in ("reference", "other_right"):
        (fixed,) = answer("exploding_answer", choice, ("FIXED_P4",))
        assert not setup_changes(fixed, exercise_patient("P4"), ("build_model", "learning_rate", "optimizer", "beta_2"))
        verdicts, val = val_losses(fixed)
        assert verdicts == ["healthy"] * 3 and val.max() < 0.6 * BARS["P4"], (choice, val)
    p4 = exercise_patient("P4")
    for wrong in (answer("exploding_answer", "wrong", ("FIXED_P4",))[0], replace(p4, clipnorm=1.0)):
        verdicts, val = val_losses(wrong)
        assert verdicts == ["exploding_gradients"] * 3 and val.min() > 1e6


def test_setup_changes_names_what_must_stay():
    """The visible checks name the field a student changed that must stay."""
    p1 = exercise_patient("P1")
    assert setup_changes(replace(p1, learning_rate=1e-3), p1, ("learning_rate",)) == []
    assert setup_changes(replace(p1, epochs=40), p1, ("learning_rate",)) == ["the number of epochs (epochs)"]
    assert setup_changes(0.001, p1, ("learning_rate",))[0].startswith("expected a training configuration")
    assert setup_changes(replace(p1, build_model=mlp), p1, ("learning_rate",)) == ["the network (build_model)"]
