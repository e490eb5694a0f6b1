"""A throwaway course holding only the sandbox probe assignment (tests/fixtures/sandbox_probe), for the
grader's own tests: numpy only, so a submission grades in seconds, with three autograded parts
(``column_means``, ``learning_rate``, ``train``: 2 points each) and one written answer.

Submissions are written straight into ``grading/submitted/<student>/sandbox_probe/`` with a
``timestamp.txt``, as ``nbgrader collect`` leaves them, so that damaged notebooks (not JSON, a bad
schema version) reach the grader exactly as a student's upload would.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from nbgrader_course import COURSE_ID, ROOT, course_env, fill_answers, nbgrader

PROBE = "sandbox_probe"
PARTS = {"column_means": 2, "learning_rate": 2, "train": 2}
FIXTURE = Path(__file__).resolve().parent / "fixtures" / PROBE
ON_TIME = "2026-11-30 09:00:00.000000 UTC"

CORRECT = {
    "column_means_answer": "def column_means(table):\n    return np.mean(np.asarray(table, dtype=float), axis=0)",
    "learning_rate_answer": "LEARNING_RATE = 0.1",
    "train_answer": "def train(rate, steps=10):\n    w, losses = 1.0, []\n    for _ in range(steps):\n"
    "        w = w - rate * 10 * w\n        losses.append(5 * w * w)\n    return losses",
    "why_answer": "The step multiplies w by 1 - 10 lr, which is larger than 1 in size above 0.2.",
}


def make_probe_course(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "solutions").mkdir()
    shutil.copytree(FIXTURE, folder / "solutions" / PROBE)
    (folder / "grading").mkdir()
    shutil.copy(ROOT / "grading" / "nbgrader_config.py", folder / "grading" / "nbgrader_config.py")
    shutil.copy(ROOT / "nbgrader_config.py", folder / "nbgrader_config.py")
    nbgrader(folder, "generate_assignment", PROBE, "--force")
    return folder


def released(course: Path) -> nbformat.NotebookNode:
    return nbformat.read(course / "exercises" / PROBE / f"{PROBE}.ipynb", as_version=4)


def answered(course: Path, answers: dict[str, str]) -> nbformat.NotebookNode:
    return fill_answers(released(course), answers)


def hand_in(
    course: Path,
    student: str,
    notebook=None,
    *,
    raw: str | None = None,
    name: str = PROBE,
    timestamp: str = ON_TIME,
    extra: dict[str, str] | None = None,
) -> Path:
    """Put a submission where ``nbgrader collect`` would: a notebook object, or ``raw`` file text."""
    folder = course / "grading" / "submitted" / student / PROBE
    folder.mkdir(parents=True, exist_ok=True)
    if raw is not None:
        (folder / f"{name}.ipynb").write_text(raw)
    elif notebook is not None:
        (folder / f"{name}.ipynb").write_text(json.dumps(notebook, indent=1))
    for filename, text in (extra or {}).items():
        (folder / filename).write_text(text)
    (folder / "timestamp.txt").write_text(timestamp)
    return folder


def grade_probe(course: Path, *options: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "adamclinic.grading", "grade", PROBE, "--root", str(course), *options],
        cwd=course,
        env=course_env(),
        text=True,
        capture_output=True,
        timeout=timeout,
    )


def report(course: Path) -> dict[str, dict]:
    from adamclinic.grading.batch import read_report

    return read_report(course / "grading" / "reports" / f"{PROBE}-report.csv")


def part_scores(course: Path, student: str, db_url: str | None = None) -> dict[str, float]:
    from nbgrader.api import Gradebook

    url = db_url or f"sqlite:///{course / 'grading' / 'gradebook.db'}"
    with Gradebook(url, course_id=COURSE_ID) as gradebook:
        notebook = gradebook.find_submission_notebook(PROBE, PROBE, student)
        return {grade.name: grade.score for grade in notebook.grades if grade.name in PARTS}
