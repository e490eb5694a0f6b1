"""The clinic's treatment step (``adamclinic.clinic.treat``): its plan per cause, a few patients treated for
real (seed 0), and the stored outcomes of the whole zoo (``tests/data/clinic_treatments.json``, written by
``python -m adamclinic.clinic.treated_zoo --write``), so the suite does not retrain the zoo.
"""

import json

import pytest

from adamclinic.clinic import CAUSES, HEALTHY, PLAN, treat
from adamclinic.clinic.patients import ZOO
from adamclinic.clinic.treated_zoo import outcome, shares, stored_path
from adamclinic.clinic.treatment import UNTREATABLE, apply_treatment

PATIENTS = {p.name: p for p in ZOO}

# The figures the report quotes for the tuned zoo (seed 0, at most two treatments).
TUNED_BROKEN = 30
TUNED_HEALTHY_AFTER_ONE = 21  # 70%
TUNED_HEALTHY_AFTER_TWO = 28  # 93%: all but the two chance plateaus, which get no treatment
# The held-out zoo (adamclinic.clinic.held_out, each patient with its own seed): 35 broken runs.
HELD_OUT_BROKEN, HELD_OUT_AFTER_ONE, HELD_OUT_AFTER_TWO = 35, 23, 30  # 66%, 86%


@pytest.fixture(scope="module")
def stored():
    return json.loads(stored_path().read_text(encoding="utf-8"))


def test_every_cause_has_a_plan_and_only_the_chance_plateau_has_none():
    """PLAN lists treatments for every cause the clinic names; a chance plateau gets a plain message instead."""
    assert set(PLAN) == set(CAUSES)
    assert [cause for cause, treatments in PLAN.items() if not treatments] == ["chance_plateau"]
    assert "labels" in UNTREATABLE["chance_plateau"] and "No automatic treatment" in UNTREATABLE["chance_plateau"]
    assert PLAN["learning_rate_too_high"][0].name == PLAN["learning_rate_too_low"][0].name
    assert "range test" in PLAN["learning_rate_too_high"][0].name


def test_bad_input_gets_a_clear_message():
    """A value treat cannot train, a negative cap, or an unknown menu item: an error that says what to give."""
    with pytest.raises(TypeError, match="TrainConfig or History, or a clinic Patient"):
        treat("run.csv")
    with pytest.raises(ValueError, match="max_treatments must be 0 or more"):
        treat(PATIENTS["regression, defaults"], max_treatments=-1)
    with pytest.raises(ValueError, match="choose one of"):
        apply_treatment(PATIENTS["regression, defaults"].config(), "more epochs")


def test_the_stored_outcomes_cover_the_zoo_and_give_the_reported_shares(stored):
    """The stored outcomes name every zoo patient with its label, and their shares are the ones reported."""
    tuned = stored["zoos"]["tuned"]
    assert stored["seed"] == 0 and stored["max_treatments"] == 2
    assert {name: o["label"] for name, o in tuned["patients"].items()} == {p.name: p.cause for p in ZOO}
    assert shares(tuned["patients"]) == tuned["shares"]
    assert tuned["shares"]["broken"] == TUNED_BROKEN
    assert tuned["shares"]["healthy_after_one"] == TUNED_HEALTHY_AFTER_ONE
    assert tuned["shares"]["healthy_after_two"] == TUNED_HEALTHY_AFTER_TWO
    # Every healthy run was left alone: no treatment tried, still healthy.
    assert tuned["shares"]["healthy_runs_left_alone"] == tuned["shares"]["healthy_runs"] == 6
    for name, o in tuned["patients"].items():
        assert len(o["tried"]) <= 2, name
        if o["label"] == "chance_plateau" and o["before"] == "chance_plateau":
            assert o["untreatable"] and not o["tried"], name


def test_the_stored_held_out_outcomes_cover_the_held_out_zoo(stored):
    """The held-out zoo's stored outcomes name each of its patients with its label and give the reported shares."""
    from adamclinic.clinic.held_out import HELD_OUT

    held_out = stored["zoos"]["held_out"]
    assert {name: o["label"] for name, o in held_out["patients"].items()} == {p.name: p.cause for p in HELD_OUT}
    assert shares(held_out["patients"]) == held_out["shares"]
    counts = held_out["shares"]
    assert (counts["broken"], counts["healthy_after_one"], counts["healthy_after_two"]) == (
        HELD_OUT_BROKEN,
        HELD_OUT_AFTER_ONE,
        HELD_OUT_AFTER_TWO,
    )
    # No false treatment: every healthy run was left as it came.
    assert counts["healthy_runs_left_alone"] == counts["healthy_runs"] == 15


def _matches_stored(stored, name, result):
    expected = stored["zoos"]["tuned"]["patients"][name]
    measured = outcome(name, PATIENTS[name].cause, result)
    for key in ("before", "after", "to_healthy", "untreatable"):
        assert measured[key] == expected[key], (name, key)
    assert [(t["treatment"], t["verdict"]) for t in measured["tried"]] == [
        (t["treatment"], t["verdict"]) for t in expected["tried"]
    ]
    for got, want in zip(measured["tried"], expected["tried"]):
        if want["final_loss"] is not None:
            assert got["final_loss"] == pytest.approx(want["final_loss"], rel=0.05), name


@pytest.mark.slow
def test_an_engine_run_with_a_rate_too_high_is_cured_by_the_range_test(stored):
    """Lesson 01's net at lr 1.0: the range test's rate brings it to "no problem found" in one treatment."""
    name = "regression, lr 1.0"
    result = treat(PATIENTS[name])
    assert result.before.verdict == "learning_rate_too_high" and result.cured
    assert result.treatments_to_healthy == 1 and "range test" in result.tried[0].treatment
    assert result.config.learning_rate < 0.1 and result.config.data is result.before.case.config.data
    text = str(result)
    assert text.startswith("as it came: learning rate too high") and "Healthy after 1 treatment" in text
    assert "<table>" in result._repr_html_()
    _matches_stored(stored, name, result)


@pytest.mark.slow
def test_a_model_fit_run_gets_class_weights_in_its_own_fit(stored):
    """A model.fit patient predicting only the majority class: class weights reach its fit and cure it."""
    name = "two classes (fit), tanh net, 5% minority"
    result = treat(PATIENTS[name])
    assert result.before.verdict == "majority_class"
    assert result.tried[0].treatment == "class weights" and result.config.class_weight
    assert result.cured and result.after.report.record.fit_starts == [0]
    _matches_stored(stored, name, result)


@pytest.mark.slow
def test_labels_that_do_not_match_the_inputs_are_not_treated():
    """A chance plateau gets no treatment: the report says so plainly and says what to check."""
    result = treat(PATIENTS["digits, labels misaligned"])
    assert result.before.verdict == "chance_plateau" and not result.tried and not result.cured
    assert result.treatments_to_healthy is None
    assert "No automatic treatment" in str(result) and "label" in result.conclusion()


@pytest.mark.slow
def test_a_healthy_run_is_left_alone():
    """Treating a run the clinic finds healthy retrains nothing and says so."""
    result = treat(PATIENTS["regression, defaults"])
    assert result.before.verdict == HEALTHY and not result.tried and result.treatments_to_healthy == 0
    assert result.after is result.before and "no treatment" in result.conclusion()
