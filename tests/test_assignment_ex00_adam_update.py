"""Exercise ex00_adam_update: a real nbgrader round trip, and the calibration of its bars.

The round trip (one module-scoped course) releases the exercise, submits three students and autogrades them in
one ``grade`` call: ``reference`` (the solution's answers), ``untouched`` (the release as is), and two mixed
students, so that every part meets one plausible wrong answer (no points for that part only) and one correct
answer unlike the reference (full points); mixed_1 is wrong in A only, mixed_2 in B and C:

    part                 wrong answer                               different correct answer
    adam_step       A    the paper's Algorithm 1 (ε after m̂/√v̂)     Algorithm 1 with ε / √(1 − β2ᵗ)
    which_bug       B    looks the function's name up                compares with Keras at three settings
    disagreement    C    GRADIENT_SIZE = 1e-9 ("tiny, surely")      GRADIENT_SIZE = 1e-6

Determinism (the same notebook graded three times) is checked on ex01 in tests/test_assignments.py.
The calibration tests measure every bar against the reference and the known-wrong answers; the numbers in
their docstrings were measured on the course's 2-core machine (TensorFlow 2.21 CPU).
"""

from __future__ import annotations

import ast
import re

import numpy as np
import pytest

from nbgrader_course import (
    RoundTrip,
    cell_by_id,
    solution_source,
)
from round_trip_tests import graded, test_each_part_is_scored_on_its_own, test_written_answers_wait_for_a_human  # noqa: F401 (the shared round trip)

A = "ex00_adam_update"
POINTS = {"adam_step": 3, "which_bug": 3, "disagreement": 2}

ANSWERS = {
    "adam_step_answer": {
        "reference": solution_source(A, "adam_step_answer"),
        "wrong": """
def adam_step(w, g, m, v, t, lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    # the paper's Algorithm 1, literally: ε added to the corrected root
    m = beta_1 * m + (1 - beta_1) * g
    v = beta_2 * v + (1 - beta_2) * g**2
    m_hat = m / (1 - beta_1**t)
    v_hat = v / (1 - beta_2**t)
    return w - lr * m_hat / (np.sqrt(v_hat) + epsilon), m, v
""",
        "other_right": """
def adam_step(w, g, m, v, t, lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    # Algorithm 1 with Keras's ε: ε-hat = ε / sqrt(1 - β2^t) moved inside the correction
    m_new = beta_1 * m + (1 - beta_1) * g
    v_new = beta_2 * v + (1 - beta_2) * g * g
    m_hat = m_new / (1 - beta_1**t)
    v_hat = v_new / (1 - beta_2**t)
    eps_hat = epsilon / np.sqrt(1 - beta_2**t)
    return w - lr * m_hat / (np.sqrt(v_hat) + eps_hat), m_new, v_new
""",
    },
    "which_bug_answer": {
        "reference": solution_source(A, "which_bug_answer"),
        "wrong": """
def which_bug(step):
    # read off the code once, then look the answer up by name
    return {"adam_step_a": EPSILON_INSIDE_ROOT, "adam_step_b": NO_BIAS_CORRECTION,
            "adam_step_c": EPSILON_ON_PARAMETER}.get(step.__name__, NO_BUG)
""",
        "other_right": """
def which_bug(step):
    g = noisy_gradients(steps=20, size=8, seed=3).astype(float)

    def gap(epsilon, lr=1e-3):
        mine = step_updates(step, g, lr=lr, epsilon=epsilon)
        return np.abs(mine - keras_adam_updates(g, lr=lr, epsilon=epsilon)).max() / lr

    if gap(1e-7) > 1.0:            # steps of 3-5 lr: the moments were never corrected
        return NO_BIAS_CORRECTION
    if gap(1e-7, lr=1e-9) > 1.0:   # an offset of ε that does not shrink with lr: ε lands on w
        return EPSILON_ON_PARAMETER
    if gap(0.1) > 0.01:            # right at small ε, wrong at large ε: ε under the root
        return EPSILON_INSIDE_ROOT
    return NO_BUG
""",
    },
    "disagreement_answer": {
        "reference": solution_source(A, "disagreement_answer"),
        "wrong": "GRADIENT_SIZE = 1e-9  # tiny next to ε: surely the forms disagree most here",
        "other_right": "GRADIENT_SIZE = 1e-6",
    },
}
PART_OF = {"adam_step_answer": "adam_step", "which_bug_answer": "which_bug", "disagreement_answer": "disagreement"}
WRITTEN = {
    "epsilon_hat_explanation": "It depends on ε compared with the gradients' size and on the step: Keras's ε "
    "is ε/sqrt(1-β2^t), 31.6 times larger at step 1, so large ε or tiny gradients early in training change "
    "the steps."
}

ROUND_TRIP = RoundTrip(
    A,
    ANSWERS,
    PART_OF,
    POINTS,
    wrong_in_mixed_1={"adam_step_answer"},
    written=WRITTEN,
    written_points={"epsilon_hat_explanation": 2.0},
)


# --------------------------------------------------------------------------------------------------
# calibration

from adamclinic.lessons.adam_from_the_inside import first_step_form_gap, gap_to_keras, noisy_gradients  # noqa: E402

SEEDS = (100, 101, 102, 103, 104)


def solution_test_cell(grade_id: str) -> str:
    import nbformat

    from nbgrader_course import ROOT

    nb = nbformat.read(ROOT / "solutions" / A / f"{A}.ipynb", as_version=4)
    return cell_by_id(nb, grade_id).source


def constant(grade_id: str, name: str) -> float:
    return float(re.search(rf"^{name} = ([0-9.e-]+)", solution_test_cell(grade_id), re.M).group(1))


def hidden_settings() -> list[tuple]:
    source = solution_test_cell("adam_step")
    listing = re.search(r"HIDDEN_SETTINGS = (\[.*?\n\])", source, re.S).group(1)
    return ast.literal_eval(listing)


def step_from(source: str):
    namespace = {"np": np}
    exec(source, namespace)
    return namespace["adam_step"]


def wrong_steps():
    """The known slips, as students write them (the first is the wrong answer of the round trip)."""
    base = """
def adam_step(w, g, m, v, t, lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    m = beta_1 * m + (1 - beta_1) * g
    v = beta_2 * v + (1 - beta_2) * g**2
    alpha = lr * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
    return {}, m, v
"""
    return {
        "algorithm 1": step_from(ANSWERS["adam_step_answer"]["wrong"]),
        "ε inside the root": step_from(base.format("w - alpha * m / np.sqrt(v + epsilon)")),
        "ε added to w": step_from(base.format("w - alpha * m / np.sqrt(v) + epsilon")),
        "no bias correction": step_from(base.format("w - lr * m / (np.sqrt(v) + epsilon)")),
    }


@pytest.mark.slow
def test_adam_step_tolerance_separates_keras_form_from_every_slip():
    """TOLERANCE = 1e-3 (largest |update - Keras's| / lr), on the 2 visible and 5 hidden settings, 5 seeds each.

    Measured (300 steps, 16 weights, seeds 100-104): the reference ε-hat form and the round trip's other
    correct answer at most 2.5e-5 (at β2 = 0.9999, ε = 0.1, from Keras's float32 1 − β2ᵗ), a float32
    student the same: 40x under the bar. The slips, on their worst hidden setting: Algorithm 1 0.82
    (β2 0.9999, ε 0.1), ε inside the root 1.06-1.12 (gradients of 1e-6), ε added to w 334, no bias
    correction 7.1-7.6: at least 800x the bar. At the default ε with gradients of 1, Algorithm 1 is only
    2e-5 to 2e-4 off and ε added to w 1.1e-4: that setting alone would not separate them.
    """
    tolerance = constant("adam_step", "TOLERANCE")
    assert tolerance == 1e-3
    settings = [(1e-3, 0.9, 0.999, 1e-7, 1.0, None), (1e-3, 0.9, 0.999, 0.1, 1.0, None)] + hidden_settings()
    assert len(settings) == 7
    right = {
        "reference": step_from(solution_source(A, "adam_step_answer")),
        "other right": step_from(ANSWERS["adam_step_answer"]["other_right"]),
    }
    wrong = wrong_steps()
    worst_wrong = {name: [] for name in wrong}
    for seed in SEEDS:
        per_setting = {name: [] for name in wrong}
        for lr, beta_1, beta_2, epsilon, scale, _ in settings:
            g = noisy_gradients(steps=300, size=16, scale=scale, seed=seed)
            kw = dict(lr=lr, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon)
            for name, step in right.items():
                assert gap_to_keras(step, g, **kw) < tolerance / 20, (name, seed, kw)
            for name, step in wrong.items():
                per_setting[name].append(gap_to_keras(step, g, **kw))
        for name, gaps in per_setting.items():
            worst_wrong[name].append(max(gaps))
    for name, worst in worst_wrong.items():
        assert min(worst) > 100 * tolerance, (name, worst)


@pytest.mark.slow
def test_disagreement_bar_separates_gradients_near_epsilon_from_the_rest():
    """GAP_BAR = 0.5 lr on the first-step gap between Keras and Algorithm 1 (defaults, ε = 1e-7).

    The measurement is deterministic (a constant gradient; no seeds involved). Measured: 5e-7 (reference)
    0.697, 1e-6 (other correct) 0.669, 2e-7 0.607, 2e-6 0.565 (pass, at least 1.1x the bar); 1e-9 (the round
    trip's wrong answer) 0.0096, 1e-7 0.469, 1e-5 0.230, 1.0 3e-6 (fail). The gap peaks at 0.70 near 5.6 ε.
    """
    bar = constant("disagreement", "GAP_BAR")
    assert bar == 0.5
    for size in (5e-7, 1e-6, 2e-7, 2e-6):
        assert first_step_form_gap(size) > 1.1 * bar, size
    for size in (1e-9, 1e-5, 1.0):
        assert first_step_form_gap(size) < 0.5 * bar, size
    assert first_step_form_gap(1e-7) < 0.95 * bar  # the nearest miss: 0.469
    assert 0.69 < first_step_form_gap(5.6e-7) < 0.71


@pytest.mark.slow
def test_which_bug_answers_classify_the_disguised_steps():
    """Part B has no numeric bar: the reference and the other correct which_bug classify the given and the
    hidden steps (run in-process here, through the solution's own test cell); the name lookup does not."""
    from adamclinic.lessons.adam_from_the_inside import keras_adam_updates, step_updates

    setup = solution_test_cell("setup")
    broken = solution_test_cell("broken_steps")
    test = solution_test_cell("which_bug")
    test = test.replace("### BEGIN HIDDEN TESTS\n", "").replace("### END HIDDEN TESTS", "")
    for choice, passes in (("reference", True), ("other_right", True), ("wrong", False)):
        namespace = {}
        exec(setup, namespace)
        exec(broken, namespace)
        exec(ANSWERS["which_bug_answer"][choice], namespace)
        assert namespace["step_updates"] is step_updates and namespace["keras_adam_updates"] is keras_adam_updates
        if passes:
            exec(test, namespace)
        else:
            with pytest.raises(Exception):  # noqa: B017 (a hidden test fails by its assert or by an error)
                exec(test, namespace)
