"""Exercise ex02_gradients: a full nbgrader round trip with sample students, and the calibration of every bar.

The round trip releases the assignment in a temporary copy of the course, submits six notebooks and grades them in
one ``nbgrader autograde`` call; each part must be scored on its own (a wrong fix loses that part's points only, a
correct fix unlike the reference earns them). The calibration tests train the reference fix and the known-wrong
setups in-process over seeds 0-4 and assert the margins written in the notebook's test cells.

Numbers in the docstrings were measured with Keras 3.15.1 / TensorFlow 2.21 (CPU).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

import nbgrader_course
from nbgrader_course import fill_answers, grade, make_course, part_scores, release, released_exercise, submit

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
        "reference": nbgrader_course.solution_source(A, "diagnose_gradients_answer"),
        # Reads the size of the first layer's gradient instead of the ratio, and lets NaN through as "healthy".
        "wrong": '''
def diagnose(norms):
    norms = np.asarray(norms, dtype=float)
    if norms.max() > 1e3:
        return "exploding"
    if norms[0] < 1e-3:  # the first layer's gradient is tiny
        return "vanishing"
    return "healthy"
''',
        "other_right": '''
def diagnose(norms):
    g = [float(v) for v in norms]
    if any(not math.isfinite(v) or v > 1000 for v in g):
        return "exploding"
    return "vanishing" if g[0] / g[-1] < 0.001 else "healthy"
''',
    },
    "fix_vanishing_answer": {
        "reference": nbgrader_course.solution_source(A, "fix_vanishing_answer"),
        "wrong": 'FIXED_NET = deep_net(10, "sigmoid", "he_normal")  # only the initializer: still vanishes',
        "other_right": 'FIXED_NET = deep_net(10, "sigmoid", batch_norm=True)',
    },
    "clip_exploding_sgd_answer": {
        "reference": nbgrader_course.solution_source(A, "clip_exploding_sgd_answer"),
        "wrong": 'CLIPPING = {"clipnorm": 1e6}  # the size of the gradients: too loose, seeds 0 and 2 still NaN',
        "other_right": 'CLIPPING = {"global_clipnorm": 10.0}',
    },
}
PARTS = {"diagnose_gradients": 3, "fix_vanishing": 3, "clip_exploding_sgd": 2}
PART_OF = {"diagnose_gradients_answer": "diagnose_gradients", "fix_vanishing_answer": "fix_vanishing",
           "clip_exploding_sgd_answer": "clip_exploding_sgd"}


def choices(diagnose, fix, clip):
    return {"diagnose_gradients_answer": diagnose, "fix_vanishing_answer": fix, "clip_exploding_sgd_answer": clip}


STUDENTS = {
    "reference": choices("reference", "reference", "reference"),
    "reference_again": choices("reference", "reference", "reference"),
    "reference_third": choices("reference", "reference", "reference"),
    "untouched": {},
    "mixed_1": choices("wrong", "other_right", "wrong"),
    "mixed_2": choices("other_right", "wrong", "other_right"),
}


def expected_scores(student):
    chosen = STUDENTS[student]
    return {PART_OF[cell]: (PARTS[PART_OF[cell]] if chosen.get(cell, "untouched") in ("reference", "other_right")
                            else 0) for cell in PART_OF}


ROUND_TRIP = pytest.mark.xdist_group(A)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """One course: release, submit the six students, grade them all in one call."""
    course = make_course(tmp_path_factory.mktemp("ex02") / "course")
    release(course, A)
    exercise = released_exercise(A)
    for student, chosen in STUDENTS.items():
        answers = {cell: ANSWERS[cell][choice] for cell, choice in chosen.items()}
        if chosen:
            answers["article_net_explanation"] = "Only three layers, and ReLU passes gradients back unchanged."
        submit(course, A, student, fill_answers(exercise, answers))
    result = grade(course, A)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return course, result


@ROUND_TRIP
@pytest.mark.slow
@pytest.mark.parametrize("student", ["reference", "untouched", "mixed_1", "mixed_2"])
def test_each_part_is_scored_on_its_own(graded, student):
    """Reference: full marks; untouched: zero; each mixed student loses exactly the parts with a wrong fix."""
    course, _ = graded
    scores = {name: score for name, score in part_scores(course, A, student).items() if name in PARTS}
    assert scores == pytest.approx(expected_scores(student)), (student, scores)


@ROUND_TRIP
@pytest.mark.slow
def test_every_part_has_a_wrong_and_a_different_right_answer_in_the_round_trip():
    for cell in PART_OF:
        used = {STUDENTS[s].get(cell) for s in ("mixed_1", "mixed_2")}
        assert used == {"wrong", "other_right"}, cell


@ROUND_TRIP
@pytest.mark.slow
def test_the_same_notebook_gets_the_same_score_three_times(graded):
    course, result = graded
    scores = [part_scores(course, A, s) for s in ("reference", "reference_again", "reference_third")]
    assert scores[0] == scores[1] == scores[2]
    assert "reference: 8 / 10 points (1 part(s) still to grade by hand)" in result.stdout, result.stdout


# --------------------------------------------------------------------------------------------------
# calibration (in-process, seeds 0-4)


@pytest.fixture(scope="module")
def base():
    from adamclinic.data import digits
    from adamclinic.gradients import lesson_config

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
    from adamclinic.gradients import gradient_config, seeded_runs

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
    from adamclinic.gradients import final_val_accuracy, gradient_config, seeded_runs

    def measure(config):
        histories = seeded_runs(config, SEEDS)
        norms = np.array([h.layer_grad_norms[0] for h in histories], dtype=float)
        accuracy = np.array([final_val_accuracy(h) for h in histories])
        healthy = bool(np.all(np.isfinite(norms)) and norms.max() <= EXPLODING_NORM
                       and np.all((norms[:, 0] / norms[:, -1] >= RATIO_RANGE[0])
                                  & (norms[:, 0] / norms[:, -1] <= RATIO_RANGE[1])))
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
    from adamclinic.gradients import gradient_config, peak_loss, seeded_runs

    exploding_sgd = gradient_config(base, activation="relu", initializer="normal(1)", optimizer="sgd",
                                    learning_rate=0.01)
    for clip in ({"clipnorm": 1.0}, {"global_clipnorm": 10.0}):
        peaks = [peak_loss(h) for h in seeded_runs(replace(exploding_sgd, **clip), SEEDS)]
        assert max(peaks) < LOSS_CEILING / 20, (clip, peaks)
    for clip in ({}, {"clipnorm": 1e6}, {"clipnorm": 1e4}):
        histories = seeded_runs(replace(exploding_sgd, **clip), GRADED_SEEDS)
        peaks = [peak_loss(h) for h in histories]
        assert max(peaks) > 1000 * LOSS_CEILING, (clip, peaks)
    assert all(h.diverged for h in seeded_runs(exploding_sgd, GRADED_SEEDS))
    assert seeded_runs(replace(exploding_sgd, clipnorm=1e6), (0,))[0].diverged
