"""Settings for the whole test run: the system programs the selected tests drive, and how the tests are
shared between the parallel workers (tests/README.md says which file proves what, and how long it takes).

System programs: a test that drives one for real says so with ``@pytest.mark.needs_system("chromium")``
(or ``"bubblewrap"``, ``"postgresql"``). When any selected test needs a program that is missing, the
run stops right after collection with the command that installs it, instead of failing twenty
minutes later (``make test`` installs them first where it can: tools/system_packages.py).

Sharing the work (``make test`` runs ``pytest -n auto --dist loadgroup --no-loadscope-reorder``):

* a lesson's claims and its assignment's calibration run in one group, ``lessonNN``, on one worker:
  they train the same architectures, and a compiled trainer (1 to 3 s of tracing and XLA
  compilation each) is then made once instead of once per worker;
* groups go out longest first (``GROUP_SECONDS``, measured), so the workers finish together instead of
  one waiting for the other at the end. The figures only order the work: a stale one costs balance,
  never a result.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Panels pause ~20 ms per epoch so a student can watch a curve form; headless runs have no one to
# watch. The browser tests put the pause back for their JupyterLab server (tests/test_browser.py).
os.environ["ADAMCLINIC_NO_PACING"] = "1"

# Seconds each group took on the 2-core reference machine with the full suite running (pytest
# --durations, 2026-12-05, plus the estimated cost of the tests added since). Groups that are not listed count as DEFAULT_SECONDS.
GROUP_SECONDS = {
    "browser": 560,
    "lesson02": 195,
    "lesson06": 155,
    "lesson07": 120,
    "ex01_round_trip": 82,
    "grading_hostile": 160,
    "lesson04": 70,
    "lesson08": 62,
    "ex08_mystery_runs": 59,
    "ex05_data_problems": 59,
    "ex02_gradients": 58,
    "grading_resume": 56,
    "lesson05": 53,
    "validate[ex02_gradients]": 51,
    "ex03_scaling": 51,
    "validate[ex08_mystery_runs]": 49,
    "lesson01": 45,
    "ex04_betas_epsilon": 45,
    "validate[ex07_not_adam]": 44,
    "ex07_not_adam": 44,
    "ex06_wrong_objective": 44,
    "grading_services": 42,
    "lesson03": 40,
    "validate[ex05_data_problems]": 39,
    "validate[ex06_wrong_objective]": 31,
    "ex00_adam_update": 23,
    "validate[ex04_betas_epsilon]": 22,
    "validate[ex03_scaling]": 22,
    "validate[ex00_adam_update]": 17,
    "lesson00": 10,
}
DEFAULT_SECONDS = 1.0


def lesson_group(item: pytest.Item) -> str | None:
    """``lessonNN`` for lesson NN's claims and assignment exNN's calibration (its round trip has a group)."""
    match = re.match(r"test_(?:lesson(\d\d)_claims|assignment_ex(\d\d)_\w+)$", item.module.__name__)
    return f"lesson{match.group(1) or match.group(2)}" if match else None


def round_trip_group(item: pytest.Item) -> str | None:
    """The assignment's name for the shared round-trip tests (tests/round_trip_tests.py) a file imports."""
    trip = getattr(item.module, "ROUND_TRIP", None)
    function = getattr(item, "function", None)
    return trip.assignment if trip is not None and getattr(function, "__module__", "") == "round_trip_tests" else None


def group_of(item: pytest.Item) -> str | None:
    names = [mark.args[0] for mark in item.iter_markers("xdist_group") if mark.args]
    return names[0] if names else None


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(session, config, items):
    for item in items:
        if group_of(item) is None and (group := round_trip_group(item) or lesson_group(item)) is not None:
            item.add_marker(pytest.mark.xdist_group(group))
    # Longest groups first (a group is one unit of work; a test without a group is a unit of its own).
    # The sort is stable, so a group keeps its tests' order, and every worker computes the same order.
    items.sort(key=lambda item: -GROUP_SECONDS.get(group_of(item) or "", DEFAULT_SECONDS))
    check_system_programs(config, items)


def check_system_programs(config, items) -> None:
    needed = sorted({piece for item in items for mark in item.iter_markers("needs_system") for piece in mark.args})
    if not needed:
        return
    check = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "system_packages.py"), *needed], capture_output=True, text=True
    )
    if check.returncode == 0:
        return
    message = f"the selected tests cannot run on this machine.\n{check.stderr.strip()}"
    if not hasattr(config, "workerinput"):
        pytest.exit(message, returncode=3)
    # A pytest-xdist worker cannot stop the whole run (make test checks before it starts): each test that
    # needs a missing program fails at once, with the message, before any of its fixtures is built.
    missing = {line.split()[0] for line in check.stderr.splitlines()[1:] if line.startswith("  ")}
    for item in items:
        if any(piece in missing for mark in item.iter_markers("needs_system") for piece in mark.args):
            item.fixturenames.insert(0, "missing_system_program")
            item.stash[MISSING_MESSAGE] = message


MISSING_MESSAGE = pytest.StashKey[str]()


@pytest.fixture
def missing_system_program(request):
    pytest.fail(request.node.stash[MISSING_MESSAGE], pytrace=False)


@pytest.fixture(autouse=True)
def fast_tests_train_nothing(request, monkeypatch):
    """Under ``make check`` (ADAMCLINIC_FAST_ONLY=1) a test that trains a model fails and says so: it belongs
    with the slow tests, which make check leaves out."""
    if os.environ.get("ADAMCLINIC_FAST_ONLY") != "1" or request.node.get_closest_marker("slow"):
        return

    def refuse(*args, **kwargs):
        raise AssertionError(f"{request.node.nodeid} trains a model: mark it @pytest.mark.slow")

    import keras

    import adamclinic.engine.training

    monkeypatch.setattr(adamclinic.engine.training, "train", refuse)
    monkeypatch.setattr(keras.Model, "fit", refuse)
