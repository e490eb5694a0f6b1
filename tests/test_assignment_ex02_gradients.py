"""Exercise ex02_gradients: a full nbgrader round trip with sample students, and the calibration of every bar.

The round trip releases the assignment in a temporary copy of the course, submits three notebooks
(untouched, two mixed) and grades them in one ``grade`` call; each part must be scored on its own (a wrong fix loses
that part's points only, a correct fix unlike the reference earns them); mixed_1 is wrong in Parts A and C, mixed_2
in Part B. Determinism (the same notebook graded three times) is checked on ex01 in tests/test_assignments.py.
The calibration tests train the reference fix and the known-wrong setups in-process over seeds 0-4 and assert the
margins written in the notebook's test cells.

Numbers in the docstrings were measured with Keras 3.15.1 / TensorFlow 2.21 (CPU).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from nbgrader_course import (
    RoundTrip,
    solution_source,
)
from round_trip_tests import graded, test_each_part_is_scored_on_its_own, test_written_answers_wait_for_a_human  # noqa: F401 (the shared round trip)

A = "ex02_gradients"
SEEDS = (0, 1, 2, 3, 4)
GRADED_SEEDS = (0, 1, 2)

# The bars, as written in the notebook's test cells.
VANISHING_RATIO = 1e-3
EXPLODING_NORM = 1e3
RATIO_RANGE = (1e-3, 1e3)
ACCURACY_BAR = 0.75
LOSS_CEILING = 1e8

ANSWERS = {
    "diagnose_gradients_answer": {
        "reference": solution_source(A, "diagnose_gradients_answer"),
        # Reads the size of the first layer's gradient instead of the ratio, and lets NaN through as "healthy".
        "wrong": """
def diagnose(norms):
    norms = np.asarray(norms, dtype=float)
    if norms.max() > 1e3:
        return "exploding"
    if norms[0] < 1e-3:  # the first layer's gradient is tiny
        return "vanishing"
    return "healthy"
""",
        "other_right": """
def diagnose(norms):
    g = [float(v) for v in norms]
    if any(not math.isfinite(v) or v > 1000 for v in g):
        return "exploding"
    return "vanishing" if g[0] / g[-1] < 0.001 else "healthy"
""",
    },
    "fix_vanishing_answer": {
        "reference": solution_source(A, "fix_vanishing_answer"),
        "wrong": 'FIXED_NET = deep_net(10, "sigmoid", "he_normal")  # only the initializer: still vanishes',
        "other_right": 'FIXED_NET = deep_net(10, "sigmoid", batch_norm=True)',
    },
    "clip_exploding_sgd_answer": {
        "reference": solution_source(A, "clip_exploding_sgd_answer"),
        "wrong": 'CLIPPING = {"clipnorm": 1e6}  # the size of the gradients: too loose, seeds 0 and 2 still NaN',
        "other_right": 'CLIPPING = {"global_clipnorm": 10.0}',
    },
}
PARTS = {"diagnose_gradients": 3, "fix_vanishing": 3, "clip_exploding_sgd": 2}
PART_OF = {
    "diagnose_gradients_answer": "diagnose_gradients",
    "fix_vanishing_answer": "fix_vanishing",
    "clip_exploding_sgd_answer": "clip_exploding_sgd",
}

WRITTEN = {"article_net_explanation": "Only three layers, and ReLU passes gradients back unchanged."}

ROUND_TRIP = RoundTrip(
    A,
    ANSWERS,
    PART_OF,
    PARTS,
    wrong_in_mixed_1={"diagnose_gradients_answer", "clip_exploding_sgd_answer"},
    written=WRITTEN,
    written_points={"article_net_explanation": 2.0},
)


# --------------------------------------------------------------------------------------------------
# calibration (in-process, seeds 0-4)


@pytest.fixture(scope="module")
def base():
    from adamclinic.data import digits
    from adamclinic.lessons.vanishing_exploding_gradients import lesson_config

    return lesson_config(digits())


def reference_diagnose(norms):
    norms = np.asarray(norms, dtype=float)
    if not np.all(np.isfinite(norms)) or norms.max() > EXPLODING_NORM:
        return "exploding"
    if norms[0] < VANISHING_RATIO * norms[-1]:
        return "vanishing"
    return "healthy"


@pytest.mark.slow
def test_diagnose_bars_have_margins_on_real_first_epochs(base):
    """Epoch-1 norms over seeds 0-4, measured: sigmoid x10 ratio 8.8e-7..1.3e-6 (vanishing, 750x under the
    1e-3 bar); relu normal(1) largest norm 4.4e5..1.3e6 (exploding, 440x over 1e3); relu + He ratio 1.75..3.2
    and largest norm 0.44..0.92; sigmoid + residual ratio 0.040..0.043 (40x over the bar) and largest norm 8..11
    (healthy, 90x under 1e3). The hidden test retrains the first three on seed 1."""
    from adamclinic.lessons.vanishing_exploding_gradients import gradient_config, seeded_runs

    cases = {
        "sigmoid": (base, "vanishing"),
        "exploding": (gradient_config(base, activation="relu", initializer="normal(1)"), "exploding"),
        "relu he": (gradient_config(base, activation="relu", initializer="he_normal"), "healthy"),
        "residual": (gradient_config(base, residual=True), "healthy"),
    }
    for name, (config, expected) in cases.items():
        for history in seeded_runs(replace(config, epochs=1), SEEDS):
            norms = np.asarray(history.layer_grad_norms[0], dtype=float)
            assert reference_diagnose(norms) == expected, (name, norms)
            ratio, largest = norms[0] / norms[-1], norms.max()
            if expected == "vanishing":
                assert ratio < VANISHING_RATIO / 100, (name, ratio)
            elif expected == "exploding":
                assert largest > 100 * EXPLODING_NORM, (name, largest)
            else:
                assert ratio > 10 * VANISHING_RATIO and largest < EXPLODING_NORM / 50, (name, ratio, largest)


def test_diagnose_hidden_charts_reject_the_size_shortcut():
    """The absolute-size rule (first norm < 1e-3) passes the visible charts and fails the hidden ones."""
    namespace = {"np": np, "math": math}
    exec(ANSWERS["diagnose_gradients_answer"]["wrong"], namespace)
    wrong = namespace["diagnose"]
    exec(ANSWERS["diagnose_gradients_answer"]["other_right"], namespace)
    other = namespace["diagnose"]
    flat_small = [1e-5, 1e-5, 1.2e-5, 0.9e-5, 1e-5]
    overflowed = [np.nan, np.nan, 5.0, 1.0]
    assert wrong(flat_small) == "vanishing" and wrong(overflowed) == "healthy"
    for rule in (reference_diagnose, other):
        assert rule(flat_small) == "healthy" and rule(overflowed) == "exploding"
        assert rule([5e-4, 0.1, 1.0]) == "vanishing" and rule([2e-3, 0.1, 1.0]) == "healthy"


@pytest.mark.slow
def test_fix_vanishing_bars_separate_fixes_from_patients(base):
    """ACCURACY_BAR = 0.75 (mean over seeds 0-2) and the epoch-1 ratio range [1e-3, 1e3] on every seed.

    Measured over seeds 0-4 (val accuracy; ratio): relu + He 0.871..0.924, mean of 0-2 0.894, ratio 1.75..3.2;
    sigmoid + batch norm 0.902..0.938 (0.907), ratio 0.58..0.74; sigmoid + residual 0.863..0.877 (0.867), ratio
    0.040..0.043 (all pass, accuracy at least 0.11 over the bar). Wrong: sigmoid + He 0.18..0.28 (0.228),
    ratio 1.1e-5..1.5e-5; sigmoid (the patient) 0.10..0.19, ratio about 1e-6; relu + normal(1) 0.24..0.52,
    largest norm about 1e6 (all fail, accuracy at least 0.2 under the bar).
    """
    from adamclinic.lessons.vanishing_exploding_gradients import final_val_accuracy, gradient_config, seeded_runs

    def measure(config):
        histories = seeded_runs(config, SEEDS)
        norms = np.array([h.layer_grad_norms[0] for h in histories], dtype=float)
        accuracy = np.array([final_val_accuracy(h) for h in histories])
        healthy = bool(
            np.all(np.isfinite(norms))
            and norms.max() <= EXPLODING_NORM
            and np.all((norms[:, 0] / norms[:, -1] >= RATIO_RANGE[0]) & (norms[:, 0] / norms[:, -1] <= RATIO_RANGE[1]))
        )
        return healthy, accuracy

    for fix in ({"activation": "relu", "initializer": "he_normal"}, {"batch_norm": True}, {"residual": True}):
        healthy, accuracy = measure(gradient_config(base, **fix))
        assert healthy, fix
        assert accuracy.min() > ACCURACY_BAR + 0.08 and accuracy[:3].mean() > ACCURACY_BAR + 0.1, (fix, accuracy)
    for patient in ({"initializer": "he_normal"}, {}, {"activation": "relu", "initializer": "normal(1)"}):
        healthy, accuracy = measure(gradient_config(base, **patient))
        assert not healthy, patient
        assert accuracy.max() < ACCURACY_BAR - 0.2 and accuracy[:3].mean() < ACCURACY_BAR - 0.2, (patient, accuracy)


@pytest.mark.slow
def test_clipping_bar_separates_a_working_clip_from_a_loose_one(base):
    """LOSS_CEILING = 1e8 on the largest epoch loss, and no NaN, over seeds 0-2 (SGD, lr 0.01, relu normal(1)).

    Measured over seeds 0-4, largest epoch loss: clipnorm=1 8e5..2.6e6, global_clipnorm=10 5e5..1.2e6 (pass, at
    least 38x under the ceiling; neither trains: final accuracy 10-53%). No clipping: NaN in epoch 1 on every seed;
    clipnorm=1e6: NaN on seeds 0 and 2, 4e33..7e34 elsewhere; clipnorm=1e4: no NaN but 1e12..8e13 (fail, at least
    10^4 over the ceiling).
    """
    from adamclinic.lessons.vanishing_exploding_gradients import gradient_config, peak_loss, seeded_runs

    exploding_sgd = gradient_config(
        base, activation="relu", initializer="normal(1)", optimizer="sgd", learning_rate=0.01
    )
    for clip in ({"clipnorm": 1.0}, {"global_clipnorm": 10.0}):
        peaks = [peak_loss(h) for h in seeded_runs(replace(exploding_sgd, **clip), SEEDS)]
        assert max(peaks) < LOSS_CEILING / 20, (clip, peaks)
    for clip in ({}, {"clipnorm": 1e6}, {"clipnorm": 1e4}):
        histories = seeded_runs(replace(exploding_sgd, **clip), GRADED_SEEDS)
        peaks = [peak_loss(h) for h in histories]
        assert max(peaks) > 1000 * LOSS_CEILING, (clip, peaks)
    assert all(h.diverged for h in seeded_runs(exploding_sgd, GRADED_SEEDS))
    assert seeded_runs(replace(exploding_sgd, clipnorm=1e6), (0,))[0].diverged
