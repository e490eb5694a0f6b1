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
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Panels pause ~20 ms per epoch so a student can watch a curve form; headless runs have no one to
# watch. The browser tests put the pause back for their JupyterLab server (tests/test_browser.py).
os.environ["ADAMCLINIC_NO_PACING"] = "1"

# XLA's persistent compilation cache, one folder per test run, shared by every process the run starts
# without a sandbox (both workers, the browser tests' kernels, nbgrader validate's kernels): a trainer
# another process has compiled loads in about a second instead of compiling again for two to four. The
# grader's sandboxes clear their environment, so student kernels never see it. The controller makes the
# folder before the workers start, and they inherit it; the controller removes it at the end.
# ADAMCLINIC_TEST_XLA_CACHE=off runs without it (to measure what it saves).
# The flag is spelled here rather than taken from adamclinic.grading.sandbox.xla_cache_flag: importing the
# course package would import TensorFlow in the controller, which never trains.
XLA_CACHE_FLAG = "--tf_xla_persistent_cache_directory="
if XLA_CACHE_FLAG not in os.environ.get("TF_XLA_FLAGS", "") and os.environ.get("ADAMCLINIC_TEST_XLA_CACHE") != "off":
    os.environ["ADAMCLINIC_TEST_XLA_CACHE"] = tempfile.mkdtemp(prefix="adamclinic-test-xla-")
    # The grader's judges (trusted: they never run student code) share it too; student sandboxes never do.
    os.environ["ADAMCLINIC_JUDGE_COMPILE_CACHE"] = os.environ["ADAMCLINIC_TEST_XLA_CACHE"]
    os.environ["TF_XLA_FLAGS"] = " ".join(
        filter(None, [os.environ.get("TF_XLA_FLAGS", ""), XLA_CACHE_FLAG + os.environ["ADAMCLINIC_TEST_XLA_CACHE"]])
    )


def pytest_unconfigure(config):
    if not hasattr(config, "workerinput") and os.environ.get("ADAMCLINIC_TEST_XLA_CACHE", "off") != "off":
        shutil.rmtree(os.environ.pop("ADAMCLINIC_TEST_XLA_CACHE"), ignore_errors=True)


# Seconds each group took on the 2-core reference machine with the full suite running (pytest
# --durations=0 on a fresh clone, 2026-12-06, summed per group). Groups that are not listed count as
# DEFAULT_SECONDS. Only the order matters: refresh them when a group grows by a lot.
GROUP_SECONDS = {
    "browser": 700,
    "lesson02": 206,
    "grading_hostile": 170,
    "lesson06": 153,
    "lesson07": 137,
    "lesson05": 140,
    "ex08_mystery_runs": 118,
    "ex02_gradients": 117,
    "ex01_round_trip": 96,
    "lesson08": 86,
    "lesson09": 320,
    "ex09_batch_float16_checks": 70,
    "validate[ex09_batch_float16_checks]": 60,
    "clinic_checks": 35,
    "hub": 210,
    "grading_resume": 82,
    "validate[ex02_gradients]": 71,
    "ex06_wrong_objective": 70,
    "lesson04": 64,
    "ex07_not_adam": 62,
    "lesson01": 62,
    "validate[ex08_mystery_runs]": 56,
    "ex05_data_problems": 55,
    "lesson03": 54,
    "grading_services": 50,
    "ex04_betas_epsilon": 50,
    "ex03_scaling": 44,
    "validate[ex06_wrong_objective]": 44,
    "ex00_adam_update": 38,
    "validate[ex05_data_problems]": 36,
    "validate[ex07_not_adam]": 35,
    "grading_new_points": 34,
    "validate[ex04_betas_epsilon]": 29,
    "validate[ex03_scaling]": 25,
    "validate[ex00_adam_update]": 23,
    "lesson00": 11,
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
            item.stash[MISSING_MESSAGE] = message


MISSING_MESSAGE = pytest.StashKey[str]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # A hook, not an inserted fixture: the parameters of one test function share their fixture list, so a
    # fixture added for the one that needs the program would fail its siblings too.
    if MISSING_MESSAGE in item.stash:
        pytest.fail(item.stash[MISSING_MESSAGE], pytrace=False)


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
