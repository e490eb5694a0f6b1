"""Exercise 03 (feature scaling without the leak): a real nbgrader round trip, and the calibration of its bars.

Round trip: one temporary course, released once, three students submitted (untouched, two mixed), ONE
``grade`` call. Each autograded part has a plausible wrong answer (no marks for that part only) and a correct answer
different from the reference (full marks); mixed_1 is wrong in Part A only, mixed_2 in Parts B and C:

* Part A, ``leak_free_prepare`` (4): wrong = the source article's recipe, the scaler fitted on training and test rows
  together; other right = a ``Pipeline`` with ``RobustScaler`` fitted on the training rows.
* Part B, ``choose_scaler`` (2): wrong = ``MinMaxScaler`` (mean 0.045 over seeds 0-2, bar 0.035); other right =
  ``RobustScaler`` (0.027).
* Part C, ``adam_does_not_fix`` (2): wrong = "Adam normalizes, so the output step does not grow" (1.0) and "no unit
  saturates" (0.2); other right = the theory's 100 and a rounded 0.8.

Determinism (the same notebook graded three times) is checked on ex01 in tests/test_assignments.py.
The calibration tests run the same checks in-process on the same answers (and a few more wrong ones) over 5 seeds,
and assert the margins written beside each bar in the notebook. Measured on Keras 3.15.1 / TensorFlow 2.21 (CPU).
"""

from __future__ import annotations

import numpy as np
import pytest

from nbgrader_course import (
    RoundTrip,
    solution_source,
)
from round_trip_tests import graded, test_each_part_is_scored_on_its_own, test_written_answers_wait_for_a_human  # noqa: F401 (the shared round trip)

A = "ex03_scaling"
SEEDS = range(5)


ANSWERS = {
    "leak_free_prepare_answer": {
        "reference": solution_source(A, "leak_free_prepare_answer"),
        # The article's recipe: fit_transform on every row, split afterwards (here: fit on both tables).
        "wrong": """
def prepare(train_frame, test_frame):
    columns = list(FEATURES)
    scaler = StandardScaler().fit(pd.concat([train_frame, test_frame])[columns])
    return Dataset(scaler.transform(train_frame[columns]), train_frame["cost"].to_numpy(),
                   scaler.transform(test_frame[columns]), test_frame["cost"].to_numpy())
""",
        "other_right": """
def prepare(train_frame, test_frame):
    columns = list(FEATURES)
    pipeline = make_pipeline(RobustScaler()).fit(train_frame[columns])
    return Dataset(pipeline.transform(train_frame[columns]), train_frame["cost"],
                   pipeline.transform(test_frame[columns]), test_frame["cost"])
""",
    },
    "choose_scaler_answer": {
        "reference": solution_source(A, "choose_scaler_answer"),
        "wrong": 'SCALER = "MinMaxScaler"',
        "other_right": 'SCALER = "RobustScaler"',
    },
    "adam_does_not_fix_answer": {
        "reference": solution_source(A, "adam_does_not_fix_answer"),
        "wrong": "ADAM_OUTPUT_GROWTH = 1.0  # Adam normalizes every step\nSATURATED_FRACTION_K2 = 0.2",
        "other_right": "ADAM_OUTPUT_GROWTH = 100  # the output step is lr * |x|\nSATURATED_FRACTION_K2 = 0.8",
    },
}
PART_OF = {
    "leak_free_prepare_answer": "leak_free_prepare",
    "choose_scaler_answer": "choose_scaler",
    "adam_does_not_fix_answer": "adam_does_not_fix",
}
POINTS = {"leak_free_prepare": 4, "choose_scaler": 2, "adam_does_not_fix": 2}

WRITTEN = {
    "leak_when_it_matters": "A scaler learns only input statistics; a shifted test set moves them, so report "
    "the leak-free score."
}

ROUND_TRIP = RoundTrip(A, ANSWERS, PART_OF, POINTS, wrong_in_mixed_1={"leak_free_prepare_answer"}, written=WRITTEN)


# --------------------------------------------------------------------------------------------------
# calibration: the same checks as the hidden tests, in-process, over 5 seeds


def student_prepare(source: str):
    """The ``prepare`` a student's cell defines, run after the notebook's own imports."""
    namespace: dict = {}
    exec(
        "import numpy as np\nimport pandas as pd\n"
        "from sklearn.pipeline import Pipeline, make_pipeline\n"
        "from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler\n"
        "from adamclinic.lessons.feature_scaling import FEATURES\nfrom adamclinic.engine import Dataset\n" + source,
        namespace,
    )
    return namespace["prepare"]


PREPARE = {
    **{
        f"round trip {name}": ANSWERS["leak_free_prepare_answer"][name]
        for name in ("reference", "wrong", "other_right")
    },
    "a second scaler fitted on the test rows": """
def prepare(train_frame, test_frame):
    c = list(FEATURES)
    return Dataset(StandardScaler().fit_transform(train_frame[c]), train_frame["cost"],
                   StandardScaler().fit_transform(test_frame[c]), test_frame["cost"])
""",
    "a scaler fitted once on the whole CSV": """
from adamclinic.data import load_csv
SCALER_ALL = StandardScaler().fit(load_csv("parcels")[list(FEATURES)])
def prepare(train_frame, test_frame):
    c = list(FEATURES)
    return Dataset(SCALER_ALL.transform(train_frame[c]), train_frame["cost"],
                   SCALER_ALL.transform(test_frame[c]), test_frame["cost"])
""",
    "MinMaxScaler on the training rows": """
def prepare(train_frame, test_frame):
    c = list(FEATURES)
    scaler = MinMaxScaler().fit(train_frame[c])
    return Dataset(scaler.transform(train_frame[c]), train_frame["cost"], scaler.transform(test_frame[c]), test_frame["cost"])
""",
    "own statistics from the training rows": """
def prepare(train_frame, test_frame):
    c = list(FEATURES)
    mean, std = train_frame[c].mean(), train_frame[c].std()
    return Dataset(((train_frame[c] - mean) / std).to_numpy(), train_frame["cost"],
                   ((test_frame[c] - mean) / std).to_numpy(), test_frame["cost"])
""",
    "no scaler": """
def prepare(train_frame, test_frame):
    c = list(FEATURES)
    return Dataset(train_frame[c].to_numpy(), train_frame["cost"], test_frame[c].to_numpy(), test_frame["cost"])
""",
}
LEAK_FREE = (
    "round trip reference",
    "round trip other_right",
    "MinMaxScaler on the training rows",
    "own statistics from the training rows",
)
LEAK_TOLERANCE, SPREAD_RANGE, VAL_BAR = 1e-3, (0.05, 20.0), 0.1  # as in the notebook's test cell


def leak_measures(prepare) -> dict[str, float]:
    """The hidden tests' three leak measurements, worst over splits 0-4 (the notebook uses splits 0 and 1)."""
    from adamclinic.lessons.feature_scaling import (
        copied_rows_mismatch,
        shifted_frames,
        train_inputs_change_with_test_rows,
        unit_change_effect,
    )

    worst = {"moved": 0.0, "mismatch": 0.0, "unit": 0.0}
    for split in SEEDS:
        short, other_short, long = shifted_frames(split)
        worst["moved"] = max(worst["moved"], train_inputs_change_with_test_rows(prepare, short, other_short, long))
        worst["mismatch"] = max(worst["mismatch"], copied_rows_mismatch(prepare, short))
        worst["unit"] = max(worst["unit"], unit_change_effect(prepare, short, other_short))
    return worst


@pytest.mark.parametrize("name", list(PREPARE))
def test_part_a_leak_checks_pass_every_leak_free_preparation_and_catch_each_leak(name):
    """Measured: every leak-free preparation 0 (at most 2.4e-7 with float32 arithmetic) on all three checks; fitting on
    both tables moves the training inputs by 1.18-1.25; a second scaler on the test rows maps copies 0.25-2.67 away;
    a scaler fitted once on the CSV, or none, changes the inputs by 2e3-8e8 when distance is given in millimetres."""
    worst = leak_measures(student_prepare(PREPARE[name]))
    if name in LEAK_FREE:
        assert max(worst.values()) < LEAK_TOLERANCE / 100
    elif name == "round trip wrong":
        assert worst["moved"] > 100 * LEAK_TOLERANCE
    elif name == "a second scaler fitted on the test rows":
        assert worst["mismatch"] > 100 * LEAK_TOLERANCE
    else:
        assert worst["unit"] > 1000


@pytest.mark.slow
def test_part_a_spread_and_training_bar():
    """Final validation loss, seeds 0-4: reference 0.027-0.031, RobustScaler 0.029-0.036, MinMaxScaler 0.041-0.060,
    all far below the bar 0.1; no scaler 370-5200 (and column spreads from 0.002 to 2.3e5, outside the range)."""
    from adamclinic.lessons.feature_scaling import input_spreads, parcel_frames, prepared_val_losses

    frames = parcel_frames()
    for name in ("round trip reference", "round trip other_right", "MinMaxScaler on the training rows"):
        data = student_prepare(PREPARE[name])(*frames)
        spreads = input_spreads(data)
        assert np.all((spreads > 1.4 * SPREAD_RANGE[0]) & (spreads < SPREAD_RANGE[1] / 10)), (name, spreads)
        losses = prepared_val_losses(data, seeds=SEEDS)
        assert losses.max() < 0.65 * VAL_BAR, (name, losses)
    raw = student_prepare(PREPARE["no scaler"])(*frames)
    assert input_spreads(raw).min() < SPREAD_RANGE[0] and input_spreads(raw).max() > SPREAD_RANGE[1]
    assert prepared_val_losses(raw, seeds=(0, 1, 2)).mean() > 1000 * VAL_BAR


@pytest.mark.slow
def test_part_b_scaler_bar():
    """Final training loss, seeds 0-4: StandardScaler 0.021-0.023, RobustScaler 0.024-0.031 (mean of 0-2: 0.027),
    MinMaxScaler 0.038-0.057 (mean of 0-2: 0.045), none 237-4490; the bar is a mean below 0.035 over seeds 0-2."""
    from adamclinic.lessons.feature_scaling import scaler_final_losses

    bar = 0.035
    final = {
        name: scaler_final_losses(name, seeds=SEEDS)
        for name in ("StandardScaler", "RobustScaler", "MinMaxScaler", "none")
    }
    assert final["StandardScaler"].max() < 0.75 * bar
    assert final["RobustScaler"].max() < 0.95 * bar and final["RobustScaler"][:3].mean() < 0.85 * bar
    assert final["MinMaxScaler"].min() > 1.05 * bar and final["MinMaxScaler"][:3].mean() > 1.2 * bar
    assert final["none"].min() > 100


def test_part_c_windows():
    """One Adam step's output change grows 55 (seed 0), 70, 93, 80, 77 times from k=0 to k=2: the window
    [55/3, 55*3] holds every seed and the theory's 100, but not 1 (no growth) or 1e4 (SGD's |x|^2).
    Saturated fraction at k=2: 0.818 (seed 0), 0.779, 0.828, 0.881, 0.879, all within 0.1 of seed 0's; 0.2 is not."""
    from adamclinic.lessons.feature_scaling import adam_output_step_growth, first_layer_at_init, spread_parcels
    from adamclinic.models import parcel_relu_net

    growth = np.array([adam_output_step_growth(2, seed=s) for s in SEEDS])
    low, high = growth[0] / 3, growth[0] * 3
    assert np.all((growth > 1.1 * low) & (growth < high / 1.1)) and low < 100 < high
    assert not low <= 1.0 <= high and not low <= 1e4 <= high
    fraction = np.array(
        [first_layer_at_init(parcel_relu_net, spread_parcels(2), seed=s)["saturated fraction"] for s in SEEDS]
    )
    assert (
        np.all(np.abs(fraction - fraction[0]) < 0.08) and abs(0.8 - fraction[0]) < 0.05 and abs(0.2 - fraction[0]) > 0.5
    )
