"""Exercise 04 (β1, β2, ε and bias correction): a real nbgrader round trip, and the calibration of its bars.

Round trip: one temporary course, released once, three students submitted (untouched, two mixed), ONE
``grade`` call. Each autograded part has a plausible wrong answer (no marks for that part only) and a correct answer
different from the reference; mixed_1 is wrong in Parts A and C, mixed_2 in Part B:

* Part A, ``tame_noisy_run`` (3): reference β1 = 0.9, β2 = 0.99; wrong = ε = 1 with β2 = 0.6 (the spikes are gone,
  but Adam crawls as momentum SGD: validation loss 0.57 against a bar of 0.3); other right = β1 = 0.5, β2 = 0.6
  (β2 above β1² = 0.25 with β2 left low).
* Part B, ``uncorrected_step_ratio`` (2): reference = (1 - β1^t) / sqrt(1 - β2^t); wrong = the first-step formula
  (1 - β1) / sqrt(1 - β2), right at t = 1 only (passes the visible check, fails the hidden one); other right = the
  same ratio with NumPy powers.
* Part C, ``reddi_converges`` (3): reference = AMSGrad with the paper's β2 = 0.1; wrong = β2 = 0.3 (still forgets
  the large gradient: ends at +0.995); other right = β2 = 0.9 (ends at -0.995).

Determinism (the same notebook graded three times) is checked on ex01 in tests/test_assignments.py.
The calibration tests run the same judging functions in-process over 5 seeds (Part A) or on every start (Part C,
deterministic), and assert the margins written beside each bar. Measured on Keras 3.15.1 / TensorFlow 2.21 (CPU).
"""

from __future__ import annotations

import math
from dataclasses import replace

import nbformat
import numpy as np
import pytest

from nbgrader_course import (
    ROOT,
    RoundTrip,
    cell_by_id,
    solution_source,
)
from round_trip_tests import graded, test_each_part_is_scored_on_its_own, test_written_answers_wait_for_a_human  # noqa: F401 (the shared round trip)

A = "ex04_betas_epsilon"
SEEDS = (0, 1, 2, 3, 4)


ANSWERS = {
    "tame_noisy_run_answer": {
        "reference": solution_source(A, "tame_noisy_run_answer"),
        "wrong": "BETA_1 = 0.9\nBETA_2 = 0.6\nEPSILON = 1.0  # a big ε hides the spikes",
        "other_right": "BETA_1, BETA_2, EPSILON = 0.5, 0.6, 1e-7  # β1² = 0.25 < β2",
    },
    "uncorrected_step_ratio_answer": {
        "reference": solution_source(A, "uncorrected_step_ratio_answer"),
        "wrong": """
def uncorrected_step_ratio(beta_1, beta_2, t):
    return (1 - beta_1) / math.sqrt(1 - beta_2)  # the first step's ratio, for every step
""",
        "other_right": """
def uncorrected_step_ratio(beta_1, beta_2, t):
    return (1 - np.power(beta_1, t)) / np.sqrt(1 - np.power(beta_2, t))
""",
    },
    "reddi_converges_answer": {
        "reference": solution_source(A, "reddi_converges_answer"),
        "wrong": "REDDI_SETTINGS = dict(beta_1=0.0, beta_2=0.3, epsilon=1e-7, amsgrad=False)",
        "other_right": "REDDI_SETTINGS = {'beta_2': 0.9}",
    },
}
PART_OF = {
    "tame_noisy_run_answer": "tame_noisy_run",
    "uncorrected_step_ratio_answer": "uncorrected_step_ratio",
    "reddi_converges_answer": "reddi_converges",
}
POINTS = {"tame_noisy_run": 3, "uncorrected_step_ratio": 2, "reddi_converges": 3}
WRITTEN = {
    "reddi_explanation": "At β2 = 0.1 v forgets the big gradient within a step, so each small push is nearly "
    "a full step; AMSGrad keeps the largest v, so the small pushes stay small."
}

ROUND_TRIP = RoundTrip(
    A, ANSWERS, PART_OF, POINTS, wrong_in_mixed_1={"tame_noisy_run_answer", "reddi_converges_answer"}, written=WRITTEN
)


# --------------------------------------------------------------------------------------------------
# calibration: the bars as written in the notebook's test cells, checked against reference and wrong setups


def cell_source(grade_id: str) -> str:
    return cell_by_id(nbformat.read(ROOT / "solutions" / A / f"{A}.ipynb", as_version=4), grade_id).source


def bar(grade_id: str, name: str) -> float:
    """A bar constant (``NAME = value  # ...``) read from the solution's test cell, so the two never drift apart."""
    for line in cell_source(grade_id).splitlines():
        if line.startswith(f"{name} = "):
            return float(line.split("=", 1)[1].split("#", 1)[0])
    raise AssertionError(f"{name} not found in {grade_id}")


def run_settings(source: str, name_or_names):
    namespace: dict = {"math": math, "np": np}
    exec(source, namespace)
    if isinstance(name_or_names, str):
        return namespace[name_or_names]
    return tuple(namespace[n] for n in name_or_names)


@pytest.fixture(scope="module")
def noisy_run():
    from adamclinic.engine import TrainConfig
    from adamclinic.lessons.beta1_and_beta2 import noisy_regression
    from adamclinic.models import small_relu_net

    return TrainConfig(noisy_regression(noise=1.0), small_relu_net, learning_rate=1e-3, epochs=10, batch_size=8)


@pytest.mark.slow
def test_part_a_bars_separate_tame_settings_from_spikes_and_from_a_huge_epsilon(noisy_run):
    """STEP_BAR = 5 learning rates (every seed), VAL_BAR = 0.3 (mean final validation loss).

    Measured over seeds 0-4 (largest step / lr; final validation loss):
      pass  β1 0.9, β2 0.99 (reference):   1.26-1.32;  0.168-0.243 (mean 0.222, seeds 0-2 0.234)
            β1 0.9, β2 0.999 (defaults):   2.03-3.02;  0.168-0.240 (mean 0.218)
            β1 0.5, β2 0.6 (other right):  1.03;       0.186-0.241 (mean 0.219)
      fail  β1 0.9, β2 0.6 (as given):     222-21254;  0.186-0.252 (the loss hides the spikes)
            β1 0.9, β2 0.7 (a nudge):      21-76;      0.161-0.246
            ε = 1, β2 0.6 (hides spikes):  0.35-0.71;  0.401-0.732 (mean 0.537, seeds 0-2 0.571)
    Gray, not used: β2 = 0.75 (3.9-8.5 lr, β2 just under β1² = 0.81), ε = 0.1 (mean 0.27).
    """
    from adamclinic.lessons.beta1_and_beta2 import spikes_and_validation_loss

    step_bar, val_bar = bar("tame_noisy_run", "STEP_BAR"), bar("tame_noisy_run", "VAL_BAR")
    assert (step_bar, val_bar) == (5.0, 0.3)
    answers = ANSWERS["tame_noisy_run_answer"]

    def scores(b1, b2, eps):
        measured = spikes_and_validation_loss(replace(noisy_run, beta_1=b1, beta_2=b2, epsilon=eps), SEEDS)
        return measured["largest step / lr"], measured["final validation loss"]

    for name in ("reference", "other_right"):
        steps, vals = scores(*run_settings(answers[name], ("BETA_1", "BETA_2", "EPSILON")))
        assert steps.max() < 0.7 * step_bar, (name, steps)
        assert vals.mean() < 0.8 * val_bar and vals[:3].mean() < 0.8 * val_bar, (name, vals)
    steps, vals = scores(0.9, 0.999, 1e-7)  # the defaults: bias correction's early steps stay below 3.16
    assert steps.max() < 0.7 * step_bar and vals.mean() < 0.8 * val_bar
    for b2, factor in ((0.6, 40), (0.7, 4)):
        steps, _ = scores(0.9, b2, 1e-7)
        assert steps.min() > factor * step_bar, (b2, steps)
    steps, vals = scores(*run_settings(answers["wrong"], ("BETA_1", "BETA_2", "EPSILON")))
    assert steps.max() < step_bar  # the spikes are gone ...
    assert vals.mean() > 1.5 * val_bar and vals[:3].mean() > 1.5 * val_bar, vals  # ... and so is the learning


def test_part_b_hidden_cases_accept_every_form_of_the_ratio_and_reject_near_misses():
    """The notebook's visible and hidden checks, run on answers: exact (NumPy or math) pass; the first-step formula
    (right at t = 1 only), a missing square root, the inverse (Keras's c_t) and an off-by-one step count fail."""
    checks = (
        cell_source("uncorrected_step_ratio").replace("### BEGIN HIDDEN TESTS", "").replace("### END HIDDEN TESTS", "")
    )
    wrongs = {
        "first step only": ANSWERS["uncorrected_step_ratio_answer"]["wrong"],
        "no square root": "def uncorrected_step_ratio(b1, b2, t):\n    return (1 - b1 ** t) / (1 - b2 ** t)",
        "the inverse": "def uncorrected_step_ratio(b1, b2, t):\n    return math.sqrt(1 - b2 ** t) / (1 - b1 ** t)",
        "off by one": "def uncorrected_step_ratio(b1, b2, t):\n    return (1 - b1 ** (t + 1)) / math.sqrt(1 - b2 ** (t + 1))",
    }

    def passes(source: str) -> bool:
        try:
            exec(source + "\n" + checks, {"math": math, "np": np})
        except AssertionError:
            return False
        return True

    for name in ("reference", "other_right"):
        assert passes(ANSWERS["uncorrected_step_ratio_answer"][name]), name
    for name, source in wrongs.items():
        assert not passes(source), name


def test_part_c_bar_separates_remembering_settings_from_forgetting_ones():
    """END_BAR = -0.9 from every start -1, 0, +1 (the runs are deterministic).

    Measured ends: pass  AMSGrad (β2 0.1) -0.997; β2 0.6, 0.9 or 0.999 -0.995; β1 0.9 with β2 0.1 -1.000.
                   fail  the paper's β2 0.1 +0.996; β2 0.3 +0.995; β2 0.4 +0.994; ε 1e-3 +0.996; ε 1 +0.997.
    Gray, not used: β2 = 0.5 (-0.995 from -1, -0.925 from 0, +0.075 from +1).
    """
    from adamclinic.lessons.epsilon_and_bias_correction import reddi_ends

    end_bar = bar("reddi_converges", "END_BAR")
    assert end_bar == -0.9
    answers = ANSWERS["reddi_converges_answer"]
    good = [run_settings(answers[n], "REDDI_SETTINGS") for n in ("reference", "other_right")]
    good += [dict(beta_2=0.6), dict(beta_2=0.999), dict(beta_1=0.9, beta_2=0.1)]
    bad = [
        run_settings(answers["wrong"], "REDDI_SETTINGS"),
        dict(beta_2=0.1),
        dict(beta_2=0.4),
        dict(beta_2=0.1, epsilon=1e-3),
        dict(beta_2=0.1, epsilon=1.0),
    ]
    for settings in good:
        ends = reddi_ends(**{"beta_2": 0.1, **settings})
        assert ends.max() < -0.99, (settings, ends)
    for settings in bad:
        ends = reddi_ends(**{"beta_2": 0.1, **settings})
        assert ends.min() > 0.99, (settings, ends)
