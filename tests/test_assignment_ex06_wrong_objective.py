"""ex06_wrong_objective: a real nbgrader round trip, and the calibration of the diagnosis and the two bars.

The round trip releases the assignment in a temporary course copy, submits three students and grades them
in one ``grade`` call: the reference answers (full marks), the untouched exercise (zero), and two mixed
students who split the parts between them: each part is wrong (in a plausible way) in one and solved
differently from the solution in the other. Determinism (the same notebook graded three times) is checked
on ex01 in tests/test_assignments.py.

The calibration tests train the reference fixes, other correct fixes and the known-wrong ones on seeds 0-4
with the judging helpers the hidden tests use (``adamclinic.lessons.overfitting_or_optimizer``); the numbers in their
docstrings and comments were measured on Keras 3.15.1 / TensorFlow 2.21 on a 2-core CPU.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from adamclinic.lessons.overfitting_or_optimizer import (
    CHANCE_LOSS,
    RegularizedConfig,
    classifier,
    digits_subset,
    dropout_config,
    early_stopping_config,
    final_train_losses,
    final_val_losses,
    fixed_setting_changes,
    run_regularized,
    validation_rise,
    weight_decay_config,
)
from nbgrader_course import (
    RoundTrip,
    solution_source,
)
from round_trip_tests import graded, test_each_part_is_scored_on_its_own, test_written_answers_wait_for_a_human  # noqa: F401 (the shared round trip)

A = "ex06_wrong_objective"
SEEDS = (0, 1, 2, 3, 4)
GRADED = (0, 1, 2)
TRAIN_BAR = 0.5  # Part B: mean final training loss over the graded seeds
VAL_BAR = 0.635  # Part C: mean last validation loss over the graded seeds
POINTS = {"diagnose_runs": 3, "minimizing_fix": 2, "generalizing_fix": 3}

# The two given runs, as the notebook's setup cell makes them.
OVERFITTING = RegularizedConfig(
    data=digits_subset(256),
    build_model=classifier(128),
    loss="sparse_categorical_crossentropy",
    learning_rate=1e-3,
    epochs=100,
    batch_size=32,
)
FAILING = weight_decay_config(replace(OVERFITTING, epochs=30), "L2 in Adam (coupled)", 1.0)


# Answers a student could write; each replaces the whole solution cell of its part. -------------------

ANSWERS = {
    "diagnose_answer": {
        "reference": solution_source(A, "diagnose_answer"),
        # looks at the validation curve first: a stuck run whose validation loss climbs reads as "overfits"
        "wrong": """
def diagnose(train_loss, val_loss):
    train = np.asarray(train_loss, dtype=float)
    val = np.asarray(val_loss, dtype=float)
    if val[-1] > 1.1 * np.nanmin(val):
        return "overfits"
    if not np.all(np.isfinite(train)) or train[-1] > CHANCE_LOSS / 2:
        return "fails to minimize"
    return "healthy"
""",
        # plain Python, no NumPy
        "other_right": """
def diagnose(train_loss, val_loss):
    train = [float(x) for x in train_loss]
    val = [float(x) for x in val_loss if not math.isnan(float(x))]
    if any(math.isnan(x) or math.isinf(x) for x in train) or train[-1] >= math.log(10) / 2:
        return "fails to minimize"
    return "overfits" if float(list(val_loss)[-1]) > 1.1 * min(val) else "healthy"
""",
    },
    "minimizing_config_answer": {
        "reference": solution_source(A, "minimizing_config_answer"),
        # blames the optimizer: a lower rate with the same λ = 1.0 still guesses (2.29)
        "wrong": "MINIMIZING = replace(FAILING, learning_rate=1e-4)",
        # no L2 at all: 0.019
        "other_right": 'MINIMIZING = weight_decay_config(FAILING, "none", 0.0)',
    },
    "generalizing_config_answer": {
        "reference": solution_source(A, "generalizing_config_answer"),
        # AdamW at coupled L2's number: 1e-3 changes nothing (0.727, as without it)
        "wrong": 'GENERALIZING = weight_decay_config(OVERFITTING, "AdamW (decoupled)", 1e-3)',
        # coupled L2 at 1e-3: 0.608
        "other_right": 'GENERALIZING = weight_decay_config(OVERFITTING, "L2 in Adam (coupled)", 1e-3)',
    },
}
PART_OF = {
    "diagnose_answer": "diagnose_runs",
    "minimizing_config_answer": "minimizing_fix",
    "generalizing_config_answer": "generalizing_fix",
}

WRITTEN = {"wrong_objective_explanation": "Adam minimizes the training loss; this overfits."}

ROUND_TRIP = RoundTrip(
    A, ANSWERS, PART_OF, POINTS, wrong_in_mixed_1={"diagnose_answer", "generalizing_config_answer"}, written=WRITTEN
)


# Calibration ------------------------------------------------------------------------------------------


def student_function(source: str, name: str):
    namespace = {"np": np, "math": math, "CHANCE_LOSS": CHANCE_LOSS}
    exec(source, namespace)
    return namespace[name]


@pytest.mark.slow
def test_the_real_runs_of_the_hidden_diagnosis_test_are_far_from_the_thresholds():
    """The diagnosis rule's thresholds (training loss CHANCE_LOSS/2 = 1.15; validation 10% above its best).

    Measured on seeds 0-4 (the hidden test uses one seed of each), Intel AVX-512 and AMD AVX2 alike unless both given:
    lr 0.3, 30 epochs: last training loss 2.32, 1.55 / 1.155, 2.31, 2.07, 2.32; validation rise 14.5%, 82% / 45%,
        0.1%, 3.4%, 1.4%: seed 0 is the hidden one, where a rule that looks at validation first says "overfits".
        Seed 1 partly learns at lr 0.3 (its best epoch 1.105 on AMD) and ends near the threshold 1.15 on AMD (1.1553):
        a knife edge, which is why the hidden test uses seed 0; it is asserted only not to be healthy.
    FAILING (coupled L2 1.0): 2.3026 on every seed;
    OVERFITTING, 100 epochs: training 0.0010-0.0016, validation rise 24-27%;
    OVERFITTING stopped at 20 epochs: training 0.042-0.050, rise 6.1%, 4.8%, 0%, 0%, 0.2% (seed 3 is the hidden one).
    """
    reference = student_function(ANSWERS["diagnose_answer"]["reference"], "diagnose")
    wrong = student_function(ANSWERS["diagnose_answer"]["wrong"], "diagnose")
    knife_edge = 1  # lr 0.3, seed 1: Intel 1.55, AMD 1.1553 against the threshold 1.1513
    for seed in SEEDS:
        stuck = run_regularized(replace(FAILING, l2=0.0, learning_rate=0.3, seed=seed))
        if seed == knife_edge:
            assert stuck.final_loss > 0.9 * CHANCE_LOSS / 2 and reference(stuck.loss, stuck.val_loss) != "healthy"
        else:
            assert stuck.final_loss > 1.2 * CHANCE_LOSS / 2
            assert reference(stuck.loss, stuck.val_loss) == "fails to minimize"
        killed = run_regularized(replace(FAILING, seed=seed))
        assert (
            abs(killed.final_loss - CHANCE_LOSS) < 1e-3
            and reference(killed.loss, killed.val_loss) == "fails to minimize"
        )
        overfit = run_regularized(replace(OVERFITTING, seed=seed))
        assert overfit.final_loss < 0.01 and validation_rise(overfit.val_loss) > 0.2
        assert reference(overfit.loss, overfit.val_loss) == "overfits"
        short = run_regularized(replace(OVERFITTING, epochs=20, seed=seed))
        assert short.final_loss < 0.1 and validation_rise(short.val_loss) < 0.07
        assert reference(short.loss, short.val_loss) == "healthy"
    hidden_stuck = run_regularized(replace(FAILING, l2=0.0, learning_rate=0.3))
    assert (
        validation_rise(hidden_stuck.val_loss) > 0.12 and wrong(hidden_stuck.loss, hidden_stuck.val_loss) == "overfits"
    )
    hidden_short = run_regularized(replace(OVERFITTING, epochs=20, seed=3))
    assert validation_rise(hidden_short.val_loss) < 0.01


@pytest.mark.slow
def test_train_bar_separates_a_smaller_penalty_from_optimizer_tweaks():
    """TRAIN_BAR = 0.5 on the mean final training loss (30 epochs).

    Measured means over seeds 0-4: L2 1e-3 (reference) 0.024, no L2 0.019, L2 1e-2 0.088 (pass, at most 0.18x
    the bar); FAILING (L2 1.0) 2.303, lr 1e-4 with L2 1.0 2.286, lr 1e-2 with L2 1.0 2.303, early stopping
    (patience 5) 2.288 (fail, over 4.5x the bar); L2 0.1, still too strong, 1.034 [graded seeds 0-2: 1.053].
    """
    for config in (replace(FAILING, l2=1e-3), weight_decay_config(FAILING, "none", 0.0), replace(FAILING, l2=1e-2)):
        losses = final_train_losses(config, SEEDS)
        assert losses.mean() < 0.2 * TRAIN_BAR and losses[list(GRADED)].mean() < 0.2 * TRAIN_BAR, config.label()
        assert not fixed_setting_changes(config, FAILING)
    for config in (
        FAILING,
        replace(FAILING, learning_rate=1e-4),
        replace(FAILING, learning_rate=1e-2),
        replace(FAILING, patience=5),
        replace(FAILING, l2=0.1),
    ):
        losses = final_train_losses(config, SEEDS)
        assert losses.mean() > 1.8 * TRAIN_BAR and losses[list(GRADED)].mean() > 1.8 * TRAIN_BAR, config.label()


@pytest.mark.slow
def test_val_bar_separates_remedies_that_work_from_ones_that_do_not():
    """VAL_BAR = 0.635 on the mean last validation loss (100 epochs).

    Measured means over seeds 0-4 [graded seeds 0-2]: early stopping, patience 5 (reference) 0.582 [0.604];
    patience 10 0.587 [0.605]; coupled L2 1e-3 0.599 [0.608]; AdamW 1.0 0.587 [0.590]; 1024 training rows
    0.551 [0.565] (not retrained here: 4x the cost). All pass by at least 0.027 on the graded seeds.
    No remedy 0.707 [0.727] and AdamW 1e-3 0.707 [0.727] fail by over 0.07; dropout 0.2 0.685 [0.714] by 0.05.
    Dropout 0.5, which lesson 06 shows barely helps, is the borderline case: 0.642 [0.657], per seed 0.607
    to 0.697. It fails on the graded seeds by 0.022, and only by 0.007 over five: the notebook warns that not
    every remedy clears the bar, and the grade is deterministic (fixed seeds).
    """
    passing = (
        early_stopping_config(OVERFITTING, 5),
        weight_decay_config(OVERFITTING, "L2 in Adam (coupled)", 1e-3),
        weight_decay_config(OVERFITTING, "AdamW (decoupled)", 1.0),
    )
    for config in passing:
        assert not fixed_setting_changes(config, OVERFITTING, keep_rows=False, keep_learning_rate=True)
        losses = final_val_losses(config, SEEDS)
        assert losses.mean() < VAL_BAR - 0.025 and losses[list(GRADED)].mean() < VAL_BAR - 0.025, config.label()
    for config, margin in (
        (OVERFITTING, 0.06),
        (weight_decay_config(OVERFITTING, "AdamW (decoupled)", 1e-3), 0.06),
        (dropout_config(OVERFITTING, 0.2), 0.04),
    ):
        losses = final_val_losses(config, SEEDS)
        assert losses.mean() > VAL_BAR + margin and losses[list(GRADED)].mean() > VAL_BAR + margin, config.label()
    half = final_val_losses(dropout_config(OVERFITTING, 0.5), SEEDS)
    assert half.mean() > VAL_BAR and half[list(GRADED)].mean() > VAL_BAR + 0.015  # 0.642 and 0.657


def test_fixed_settings_are_checked():
    """The visible checks of Parts B and C name what a student changed that must stay."""
    assert fixed_setting_changes(replace(FAILING, l2=1e-3), FAILING) == []
    assert any("epochs" in c for c in fixed_setting_changes(replace(FAILING, epochs=60), FAILING))
    assert any("training rows" in c for c in fixed_setting_changes(replace(FAILING, data=digits_subset(512)), FAILING))
    assert fixed_setting_changes(replace(OVERFITTING, data=digits_subset(1024)), OVERFITTING, keep_rows=False) == []
    assert any(
        "network" in c for c in fixed_setting_changes(replace(OVERFITTING, build_model=classifier(32)), OVERFITTING)
    )
    assert any(
        "learning rate" in c
        for c in fixed_setting_changes(replace(OVERFITTING, learning_rate=1e-4), OVERFITTING, keep_learning_rate=True)
    )
    assert fixed_setting_changes(0.5, OVERFITTING)[0].startswith("expected a training configuration")
    assert validation_rise([1.0, 0.5, np.nan, 0.6]) == pytest.approx(0.2)
