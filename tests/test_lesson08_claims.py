"""Every claim lesson 08 makes about a training run, asserted on exactly that run.

Section 2: lesson 01's 10-32-32-1 ReLU net on the smooth regression, 20 epochs of 32 steps, at three
learning rates, and the same net trained with stock ``model.fit`` and recompiled after 10 epochs.
Sections 3-4: the six mystery patients (``adamclinic.lessons.the_clinic.LESSON_PATIENTS``), untreated and cured,
and the clinic's own treatment loop (``adamclinic.clinic.treat``) on patients E and D (seed 0).
Seeds 0 to 2 (the recompile: 0 and 1). Measured on Keras 3.15.1 / TensorFlow 2.21 (CPU); measured
values in comments. The last test runs the lesson's plain-Keras cells (``ClinicMonitor`` on a student's own
``model.fit``) and holds them to the same numbers as the engine.
"""

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from adamclinic.clinic import CAUSES, HEALTHY, diagnose, monitored_fit
from adamclinic.clinic import treat as clinic_treat
from adamclinic.clinic.patients import regression
from adamclinic.engine import TrainConfig
from adamclinic.lessons.the_clinic import (
    CHECKLIST,
    CURES,
    LESSON_PATIENTS,
    TREATMENTS,
    cause_names,
    diagnosed_run,
    mystery,
    patient_run,
    treat,
    vital_signs,
)
from adamclinic.models import small_relu_net
from lesson_cells import plain_keras_cells

pytestmark = pytest.mark.slow  # every test here trains real models (make check leaves them out)

SEEDS = range(3)
ZOO_CURED_BY_ONE, ZOO_CURED_BY_TWO = 21, 28  # of the tuned zoo's 30 broken runs (tests/data/clinic_treatments.json)


@pytest.fixture(scope="module")
def base():
    return TrainConfig(regression(), small_relu_net, epochs=20)


@pytest.fixture(scope="module")
def runs(base):
    """(history, report) by (what, seed), trained once per module (the patients once per session: the
    lesson's ``patient_run`` remembers them, and its bedside chart and figure read the same runs)."""
    cache = {}

    def get(what, seed):
        if isinstance(what, tuple):
            letter, treatment = what
            return patient_run(letter, treatment, seed)
        if (what, seed) not in cache:
            cache[what, seed] = diagnosed_run(replace(base, learning_rate=what, seed=seed))
        return cache[what, seed]

    return get


def test_the_checklist_covers_every_cause_the_instrument_names():
    """Section 1: the checks first (step 0, lesson 09b), then seven steps down a run, data first and validation last."""
    assert len(CHECKLIST) == 8
    assert CHECKLIST.index[0].startswith("0. the checks") and "run_checks(" in CHECKLIST.iloc[0]["look at"]
    assert CHECKLIST.index[1].startswith("1. the data") and CHECKLIST.index[-1].startswith("7. validation")
    assert len(CAUSES) == 14


@pytest.mark.parametrize("seed", SEEDS)
def test_lr_1_is_named_too_high_with_its_evidence(runs, seed):
    """Section 2: at lr 1.0 the first epoch explodes, the weights fly, the loss ends at the mean's."""
    history, report = runs(1.0, seed)
    assert report.top == "learning_rate_too_high"
    assert 1.1e4 < history.loss[0] < 2e4  # 1.21e4, 1.89e4, 1.30e4
    assert 24 < report.record.weight_change < 28  # 25.5, 27.2, 24.6
    assert 0.95 < history.final_loss < 1.04 and abs(report.record.baseline_loss - 0.957) < 0.001  # 0.957..1.032


@pytest.mark.parametrize("seed", SEEDS)
def test_lr_1e5_is_named_too_low(runs, seed):
    """Section 2: at lr 1e-5 the weights move under 2% in 640 steps and the loss still creeps down."""
    history, report = runs(1e-5, seed)
    assert report.top == "learning_rate_too_low" and report.record.steps == 640
    assert 0.016 < report.record.weight_change < 0.018  # 1.64%, 1.69%, 1.78%
    assert np.all(np.diff(history.loss) < 0)
    assert 0.86 < history.final_loss < 1.09  # 1.080, 1.003, 0.866: around the mean's 0.957


@pytest.mark.parametrize("seed", SEEDS)
def test_lr_1e3_gets_no_problem_found(runs, seed):
    """Section 2: lr 1e-3 is healthy: no finding, final loss 0.055 to 0.074."""
    history, report = runs(1e-3, seed)
    assert report.top == HEALTHY and str(report).startswith("No problem found")
    assert 0.05 < history.final_loss < 0.075  # 0.0625, 0.0739, 0.0552


@pytest.mark.parametrize("seed, before, after", [(0, 0.0426, 0.0566), (1, 0.0332, 0.0603)])
def test_a_recompile_is_caught_in_a_stock_fit(base, seed, before, after):
    """Section 2: compile + fit 10 epochs at lr 1e-2, compile again, fit 10 more: the loss jumps at epoch 11."""
    monitor = monitored_fit(replace(base, learning_rate=1e-2, seed=seed), recompile_after=10)
    record = monitor.record
    assert record.fit_starts == [0, 10] and len(record.loss) == 20
    assert record.loss[9] == pytest.approx(before, abs=5e-4) and record.loss[10] == pytest.approx(after, abs=5e-4)
    assert record.loss[10] / record.loss[9] == pytest.approx(after / before, abs=0.02)  # 1.33, 1.82
    assert diagnose(monitor).top == "recompile_reset"


EXPECTED = {
    "A": "vanishing_gradients",
    "B": "unscaled_inputs",
    "C": "unscaled_targets",
    "D": "chance_plateau",
    "E": "majority_class",
    "F": "beta_2_too_low",
}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("letter", "ABCDEF")
def test_each_patient_is_named_first_and_its_cure_works(runs, letter, seed):
    """Sections 3-4: the clinic names each cause first; each cure ends in "no problem found" (E: in overfitting)."""
    assert CURES[letter] in TREATMENTS and LESSON_PATIENTS[letter].cause == EXPECTED[letter]
    sick, sick_report = runs((letter, "no treatment"), seed)
    cured, cured_report = runs((letter, CURES[letter]), seed)
    assert sick_report.top == EXPECTED[letter]
    assert cured_report.top == ("overfitting" if letter == "E" else HEALTHY)
    assert math.isfinite(cured.final_loss)


@pytest.mark.parametrize("seed", SEEDS)
def test_case_notes_numbers(runs, seed):
    """Section 4's table: the evidence and the cured losses, per patient."""
    a, a_report = runs(("A", "no treatment"), seed)
    grads = a_report.record.epoch_layer_grads[0]
    assert 4.7 < math.log10(grads[-1] / grads[0]) < 5.1  # 4.8, 4.8, 5.0 orders of magnitude
    assert 0.46 < a.final_loss < 0.5  # 0.474, 0.466, 0.498
    if seed == 0:  # the figure: ten epochs at the loss of guessing, then the drop
        assert np.all(np.abs(a.loss[:10] / a_report.record.baseline_loss - 1) < 0.03)  # 0.994 .. 1.027
    assert 0.06 < runs(("A", CURES["A"]), seed)[0].final_loss < 0.07  # 0.0605, 0.0670, 0.0698

    b, b_report = runs(("B", "no treatment"), seed)
    assert 4e5 < max(b_report.record.feature_scales) < 5e5 and min(b_report.record.feature_scales) < 0.006
    assert 250 < b.final_loss < 12000  # 267, 1629, 11684
    assert 0.03 < runs(("B", CURES["B"]), seed)[0].final_loss < 0.033  # 0.0311, 0.0317, 0.0306

    c, c_report = runs(("C", "no treatment"), seed)
    assert 1900 < c_report.record.target_scale < 2100  # 2030
    assert 0.82 < 1 - c.final_loss / c_report.record.initial_loss < 0.9  # 89%, 83%, 85%
    assert 4.5e5 < c.final_loss < 7.3e5  # 4.60e5, 7.23e5, 6.12e5
    assert 0.055 < runs(("C", CURES["C"]), seed)[0].final_loss < 0.08  # 0.0654, 0.0771, 0.0583

    d, d_report = runs(("D", "no treatment"), seed)
    assert 2.15 < d.final_loss < 2.19 and abs(d.final_loss / math.log(10) - 1) < 0.063  # 2.180, 2.159, 2.165
    assert np.nanmin(d.val_loss) > 2.25  # 2.256, 2.262, 2.270
    assert 0.2 < runs(("D", CURES["D"]), seed)[0].final_loss < 0.24  # 0.234, 0.209, 0.213

    e, e_report = runs(("E", "no treatment"), seed)
    assert max(e_report.record.label_shares) == pytest.approx(0.97, abs=0.001)
    assert e_report.record.prediction_spread == 1.0  # class 0 for every probed row
    assert (
        0.45 < e.final_loss / e_report.record.baseline_loss < 0.6
    )  # about half the loss of guessing: 0.50, 0.55, 0.51
    assert np.nanargmin(e.val_loss) == 0  # validation is lowest in epoch 1 on every seed
    weights = TREATMENTS["class weights"](mystery("E", seed)).class_weight
    assert int(round(0.03 * 1024)) == 31 and weights[1] / weights[0] == pytest.approx(32.0, abs=0.1)

    f, f_report = runs(("F", "no treatment"), seed)
    if seed < 2:
        assert f.diverged_at == 2  # NaN in epoch 2 (Intel AVX-512 and AMD AVX2)
        assert f_report.causes[1] == "learning_rate_too_high"  # the blow-up in epoch 1 is its evidence
    else:  # a knife edge: Intel AVX-512 ends at 3.07e8 (lr too high second); AMD AVX2: 0.70, then 2.4e14, NaN in epoch 3
        assert np.nanmax(f.loss) > 1e8 and (f.diverged_at == 3 or 1e8 < f.final_loss < 1e9)
        assert f_report.causes[0] == "beta_2_too_low"
    assert f_report.record.beta_2 < f_report.record.beta_1**2 and 0.9 / math.sqrt(0.3) == pytest.approx(1.64, abs=0.005)
    assert 0.018 < runs(("F", CURES["F"]), seed)[0].final_loss < 0.026  # 0.0185, 0.0186, 0.0248


def test_a_patient_panel_treats_in_the_background_and_hides_the_diagnosis_until_asked():
    """Section 3: the panel trains untreated, hides the report; a new treatment retrains and the report follows."""
    from adamclinic.lessons.the_clinic import patient_panel

    panel = patient_panel("F")
    first = panel.train_now()
    box = panel.diagnosis
    assert first.diverged and "hidden" in box.widget.value and box.reports[-1].top == "beta_2_too_low"
    panel.controls["treatment"].value = "β2 = 0.999"
    panel.wait()
    box.reveal.value = True
    assert box.reports[-1].top == HEALTHY and "No problem found" in box.widget.value


LOWER, HIGHER = "learning rate ÷ 10", "learning rate × 10"


@pytest.mark.parametrize("seed", SEEDS)
def test_no_learning_rate_on_the_menu_cures_patients_a_to_d(runs, seed):
    """Section 4's learning-rate table: ÷ 10 and × 10 leave A-D's causes in place; E and F as the table says."""
    for letter in "ABC":
        for treatment in (LOWER, HIGHER):
            assert runs((letter, treatment), seed)[1].top == EXPECTED[letter], (letter, treatment)
    assert runs(("A", LOWER), seed)[0].final_loss == pytest.approx(0.958, abs=0.001)
    assert 0.3 < runs(("A", HIGHER), seed)[0].final_loss < 0.51  # 0.323, 0.306, 0.500
    assert 3e4 < runs(("B", LOWER), seed)[0].final_loss < 1.6e5  # 1.05e5, 1.59e5, 3.12e4
    assert 150 < runs(("B", HIGHER), seed)[0].final_loss < 4500  # Intel AVX-512 171, 3189, 342; AMD AVX2 171, 3821, 342
    assert 4.05e6 < runs(("C", LOWER), seed)[0].final_loss < 4.15e6  # 4.08e6..4.09e6
    assert 2.9e4 < runs(("C", HIGHER), seed)[0].final_loss < 3.2e4  # 2.96e4, 3.14e4, 3.14e4

    assert runs(("D", LOWER), seed)[1].top in ("learning_rate_too_low", "chance_plateau")
    memorized, report = runs(("D", HIGHER), seed)
    assert report.top == "chance_plateau"
    assert 1.76 < memorized.final_loss < 1.94 and np.nanmin(memorized.val_loss) > 2.24  # 1.93, 1.77, 1.83; 2.24..2.28

    assert runs(("E", LOWER), seed)[1].top == "majority_class"
    assert runs(("E", HIGHER), seed)[1].top == ("healthy" if seed == 1 else "overfitting")
    assert runs(("F", LOWER), seed)[1].top == ("beta_2_too_low" if seed == 1 else "healthy")
    too_high, report = runs(("F", HIGHER), seed)
    assert too_high.diverged and report.top == "learning_rate_too_high"
    # the NaN needs β2 = 0.3 as well: with β2 back at 0.999 the same tenfold rate trains, no problem found
    both = treat(treat(mystery("F", seed), "β2 = 0.999"), HIGHER)
    history, report = diagnosed_run(both)
    assert both.learning_rate == pytest.approx(0.03) and both.beta_2 == 0.999
    assert not history.diverged and report.top == HEALTHY
    assert 0.035 < history.final_loss < 0.12  # measured 0.0418, 0.109, 0.0394


def test_the_bedside_chart_measures_down_the_checklist_and_names_no_cause(runs):
    """Section 3's chart: a column per patient, rows for checklist steps 1 to 7, no cause in it; the values the answers cite."""
    chart = vital_signs()
    assert list(chart.columns) == [f"patient {letter}" for letter in "ABCDEF"]
    assert {row.split(".")[0] for row in chart.index} == {str(step) for step in range(1, 8)}
    text = chart.to_string().lower()
    for key, name in cause_names().items():
        assert key not in text and name.lower() not in text, name
    assert chart.loc["1. input column sizes, smallest to largest", "patient B"] == "0.005 to 4.6e+05"
    assert chart.loc["1. label mix", "patient E"] == "97% / 3%"
    assert chart.loc["5. rows given the most common class", "patient E"] == "100%"
    assert chart.loc["4. β1, β2", "patient F"] == "0.9, 0.3" and chart.loc["4. loss NaN from epoch", "patient F"] == "2"


def test_the_plain_keras_cells_name_the_same_causes_as_the_engine():
    """Section 2's plain-Keras cells: ClinicMonitor on a student's own model.fit names lr 1.0 too high, as the engine
    does, with the same evidence; and it catches the written-out recompile with the lesson's numbers."""
    cells = plain_keras_cells("08_the_clinic")
    fit, engine = np.array(cells["fit"].history["loss"]), cells["engine_history"].loss
    for losses, report in ((fit, cells["keras_report"]), (engine, cells["engine_report"])):
        assert report.top == "learning_rate_too_high"
        assert (
            2e3 < losses[0] / report.record.initial_loss < 2e4
        )  # thousands of times the start: fit 3.0e3, engine 1.2e4
        assert 24 < report.record.weight_change < 28  # fit 27.8, engine 25.5 (the lesson's range over seeds)
        assert 0.95 < losses[-1] < 1.04  # the mean's loss, 0.957: fit 0.960, engine 0.957
    record = cells["monitor"].record
    assert cells["recompile_report"].top == "recompile_reset" and record.fit_starts == [0, 10]
    assert record.loss[9] == pytest.approx(0.0426, abs=5e-4) and record.loss[10] == pytest.approx(0.0566, abs=5e-4)


@pytest.fixture(scope="module")
def clinic_treats_e():
    """Section 4's "The clinic treats, too": the clinic's own treatment loop on patient E (seed 0)."""
    return clinic_treat(mystery("E"))


def test_the_clinic_treats_e_with_class_weights_then_stops_at_the_best_epoch(clinic_treats_e):
    """Section 4: class weights first (they uncover overfitting), then the best validation epoch, 10 of 20: healthy."""
    result = clinic_treats_e
    assert result.before.verdict == "majority_class" and [v.treatment for v in result.tried] == [
        "class weights",
        "stop at the best validation epoch",
    ]
    assert result.tried[0].verdict == "overfitting" and result.tried[0].cleared
    assert mystery("E").epochs == 20 and result.config.epochs == 10 and result.config.class_weight
    assert result.cured and result.treatments_to_healthy == 2


def test_the_clinic_does_not_treat_d():
    """Section 4: for patient D (labels misaligned) treat trains nothing new and says what to check."""
    result = clinic_treat(mystery("D"))
    assert not result.tried and result.before.verdict == "chance_plateau"
    assert "check" in result.conclusion().lower() and "label" in result.conclusion()


def test_the_zoo_figures_the_lesson_quotes():
    """Section 4: of the zoo's 30 broken runs, one treatment cures 20 and two cure 28 (stored outcomes)."""
    from adamclinic.clinic.treated_zoo import stored_path

    shares = json.loads(stored_path().read_text(encoding="utf-8"))["zoos"]["tuned"]["shares"]
    assert shares["broken"] == 30
    assert (shares["healthy_after_one"], shares["healthy_after_two"]) == (ZOO_CURED_BY_ONE, ZOO_CURED_BY_TWO)
