"""Helpers for testing graded assignments with the real nbgrader CLI, in a temporary copy of the course.

Each test course has its own gradebook and exchange (the course's config puts both inside the copy),
so tests run in parallel and never touch the repository's grading/ folder.

A typical round trip for assignment A (see tests/test_assignments.py and tests/test_assignment_ex*.py):

    course = make_course(tmp / "course")
    release(course, A)
    for student, answers in samples.items():
        submit(course, A, student, fill_answers(released_exercise(course, A), answers))
    grade(course, A)
    assert part_scores(course, A, "student") == {...}
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from adamclinic.grading.course import nbgrader_environment

ROOT = Path(__file__).resolve().parents[1]
COURSE_ID = "adam-clinic"


def course_env() -> dict[str, str]:
    """The course's environment for nbgrader commands, as ``make`` gives them; kernels that nbgrader itself
    starts (``validate``) import TensorFlow as a student's kernel does."""
    return nbgrader_environment(skip_tensorflow=False)


def nbgrader(course: Path, *args: str, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).with_name("nbgrader")), *args]
    result = subprocess.run(
        command, cwd=cwd or course, env=course_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    if check:
        assert result.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{result.stdout[-4000:]}"
    return result


def grading_cli(course: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m adamclinic.grading ...`` (what make submit / make grade run) on the test course."""
    return subprocess.run(
        [sys.executable, "-m", "adamclinic.grading", *args, "--root", str(course)],
        cwd=course,
        env=course_env(),
        text=True,
        capture_output=True,
    )


def make_course(folder: Path, with_exercises: bool = True) -> Path:
    """A temporary copy of the course: its config puts the gradebook and exchange inside ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "solutions", folder / "solutions")
    if with_exercises:
        shutil.copytree(ROOT / "exercises", folder / "exercises")
    (folder / "grading").mkdir()
    shutil.copy(ROOT / "grading" / "nbgrader_config.py", folder / "grading" / "nbgrader_config.py")
    shutil.copy(ROOT / "nbgrader_config.py", folder / "nbgrader_config.py")
    return folder


def generate_exercises(folder: Path, assignments: list[str]) -> Path:
    """nbgrader's student version of each assignment, generated from solutions/ into ``folder``.

    nbgrader's own GenerateAssignment converter with the course's configuration (the stubs it writes
    come from there), run in this process without a gradebook: ``nbgrader generate_assignment --no-db``
    for every assignment at the cost of one nbgrader import."""
    from nbgrader.converters import GenerateAssignment
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT / "grading")).load_config()
    config.CourseDirectory.root = str(ROOT)
    config.CourseDirectory.release_directory = str(folder)
    config.GenerateAssignment.no_database = True
    config.SaveCells.enabled = False
    for assignment in assignments:
        coursedir = CourseDirectory(config=config)
        coursedir.assignment_id = assignment
        converter = GenerateAssignment(coursedir=coursedir, config=config)
        converter.force = True
        converter.start()
    return folder


def notebooks(folder: Path) -> dict[str, nbformat.NotebookNode]:
    return {p.name: nbformat.read(p, as_version=4) for p in sorted(folder.glob("*.ipynb"))}


def cell_by_id(nb: nbformat.NotebookNode, grade_id: str) -> nbformat.NotebookNode:
    matches = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id]
    assert len(matches) == 1, f"expected one cell with grade_id {grade_id!r}, found {len(matches)}"
    return matches[0]


def solution_source(assignment: str, grade_id: str) -> str:
    """The reference answer of a solution cell in solutions/, without nbgrader's delimiters."""
    nb = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    lines = cell_by_id(nb, grade_id).source.splitlines()
    return "\n".join(line for line in lines if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line)


def released_exercise(assignment: str) -> nbformat.NotebookNode:
    """The student version, as committed in exercises/."""
    return nbformat.read(ROOT / "exercises" / assignment / f"{assignment}.ipynb", as_version=4)


def fill_answers(exercise: nbformat.NotebookNode, answers: dict[str, str]) -> nbformat.NotebookNode:
    """A copy of the exercise with the cells named by grade_id replaced by ``answers``' sources."""
    nb = nbformat.from_dict(json.loads(json.dumps(exercise)))
    for grade_id, source in answers.items():
        cell_by_id(nb, grade_id).source = source.strip("\n")
    return nb


def submit(course: Path, assignment: str, student: str, notebook: nbformat.NotebookNode) -> None:
    """Hand ``notebook`` in as ``student`` through the course's exchange (release first).

    nbgrader's own submit step (``ExchangeSubmit``, what ``nbgrader submit`` runs) with the test course's
    configuration, in this process: the same files in the exchange, without starting nbgrader (about 2.5 s
    of imports) once per student. ex01's round trip also submits through the course's command and
    nbgrader's own command line."""
    from nbgrader.auth import Authenticator
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.exchange.default.submit import ExchangeSubmit
    from traitlets.config.loader import PyFileConfigLoader

    work = course / "exercises" / assignment / f"{assignment}.ipynb"
    nbformat.write(notebook, work)
    config = PyFileConfigLoader("nbgrader_config.py", path=str(course / "grading")).load_config()
    config.Exchange.assignment_dir = str(course / "exercises")
    config.Exchange.path_includes_course = False
    coursedir = CourseDirectory(config=config)
    coursedir.assignment_id, coursedir.student_id = assignment, student
    ExchangeSubmit(coursedir=coursedir, authenticator=Authenticator(config=config), config=config).start()


def release(course: Path, assignment: str) -> None:
    result = grading_cli(course, "release", assignment)
    assert result.returncode == 0, result.stdout + result.stderr


def grade(course: Path, assignment: str) -> subprocess.CompletedProcess:
    """Collect, autograde, generate feedback and export, as ``make grade A=...`` does."""
    return grading_cli(course, "grade", assignment)


def part_scores(course: Path, assignment: str, student: str) -> dict[str, float]:
    """Autograded points per test cell (by grade_id) from the course's gradebook."""
    from nbgrader.api import Gradebook

    os.environ["PATH"] = course_env()["PATH"]
    with Gradebook(f"sqlite:///{course / 'grading' / 'gradebook.db'}", course_id=COURSE_ID) as gradebook:
        notebook = gradebook.find_submission_notebook(assignment, assignment, student)
        return {
            grade.name: grade.score
            for grade in notebook.grades
            if grade.auto_score is not None or grade.cell.cell_type == "code"
        }


def graded_course(folder: Path, assignment: str, submissions: dict[str, dict[str, str]]) -> Path:
    """One whole round trip: a fresh course in ``folder``, ``assignment`` released, each student's answers
    (sources by grade_id, filled into the released exercise; ``{}`` hands it in untouched) submitted, and
    everything graded with ONE ``grade`` call, as ``make grade A=...`` does. Returns the course folder."""
    course = make_course(folder)
    release(course, assignment)
    exercise = released_exercise(assignment)
    for student, answers in submissions.items():
        submit(course, assignment, student, fill_answers(exercise, answers))
    result = grade(course, assignment)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return course


# The three students of an assignment's round trip. ``answers`` maps each solution cell's grade_id to sample
# sources: "reference" (the solution's), "wrong" (a plausible mistake) and "other_right" (correct, unlike the
# reference). The two mixed students split every part between them, so each part is seen scored on its own.

RIGHT = ("reference", "other_right")


def round_trip_choices(answers: dict[str, dict[str, str]], wrong_in_mixed_1: set[str]) -> dict[str, dict[str, str]]:
    """Which sample answer each student hands in per solution cell: ``untouched`` none, ``mixed_1`` the wrong one
    in the cells named and the other right one elsewhere, ``mixed_2`` the reverse.

    No student hands in the reference answers: ``nbgrader validate`` runs the same hidden tests on the solution
    (tests/test_assignments.py), and ex01's round trip grades the reference through the whole pipeline, three
    times. Between them the two mixed students earn and lose every part."""
    assert wrong_in_mixed_1 and wrong_in_mixed_1 < set(answers), "each mixed student needs a wrong and a right part"
    return {
        "untouched": {},
        "mixed_1": {cell: "wrong" if cell in wrong_in_mixed_1 else "other_right" for cell in answers},
        "mixed_2": {cell: "other_right" if cell in wrong_in_mixed_1 else "wrong" for cell in answers},
    }


def round_trip_submissions(
    answers: dict[str, dict[str, str]], choices: dict[str, dict[str, str]], written: dict[str, str]
) -> dict[str, dict[str, str]]:
    """The sources each student hands in, for ``graded_course``: the chosen answers and, from every student who
    worked on the notebook, the ``written`` answers to the hand-graded cells (by grade_id)."""
    return {
        student: {**{cell: answers[cell][pick] for cell, pick in picked.items()}, **written} if picked else {}
        for student, picked in choices.items()
    }


def expected_points(picked: dict[str, str], part_of: dict[str, str], points: dict[str, float]) -> dict[str, float]:
    """A part's full points for a right answer (the reference or another), none for a wrong or missing one."""
    return {part_of[cell]: points[part_of[cell]] if picked.get(cell) in RIGHT else 0 for cell in part_of}


def autograded_points(course: Path, assignment: str, student: str, points: dict[str, float]) -> dict[str, float]:
    """The student's score on each autograded part named in ``points`` (the hand-graded cells left out)."""
    return {part: score for part, score in part_scores(course, assignment, student).items() if part in points}


def hand_graded_parts(course: Path, assignment: str, student: str) -> dict[str, tuple[float, bool]]:
    """(max points, still needs a manual grade) of each written answer (a markdown grade cell), after grading."""
    from nbgrader.api import Gradebook

    os.environ["PATH"] = course_env()["PATH"]
    with Gradebook(f"sqlite:///{course / 'grading' / 'gradebook.db'}", course_id=COURSE_ID) as gradebook:
        notebook = gradebook.find_submission_notebook(assignment, assignment, student)
        return {
            grade.name: (grade.max_score, grade.needs_manual_grade)
            for grade in notebook.grades
            if grade.cell.cell_type == "markdown"
        }


@dataclass(frozen=True)
class RoundTrip:
    """What one assignment's round trip hands in and expects; ``tests/round_trip_tests.py`` holds the tests.

    ``answers[cell]`` gives each autograded solution cell's sample answers (``reference``, ``wrong``,
    ``other_right``), ``part_of[cell]`` the graded part it feeds and ``points[part]`` that part's points;
    ``wrong_in_mixed_1`` the cells mixed_1 gets wrong (mixed_2 gets the others wrong); ``written`` the text
    handed in for each hand-graded cell, and ``written_points`` its points where the test pins them.
    """

    assignment: str
    answers: dict[str, dict[str, str]]
    part_of: dict[str, str]
    points: dict[str, float]
    wrong_in_mixed_1: frozenset[str] | set[str]
    written: dict[str, str] = field(default_factory=dict)
    written_points: dict[str, float] = field(default_factory=dict)

    @property
    def choices(self) -> dict[str, dict[str, str]]:
        return round_trip_choices(self.answers, set(self.wrong_in_mixed_1))

    def submissions(self) -> dict[str, dict[str, str]]:
        return round_trip_submissions(self.answers, self.choices, self.written)

    def reference(self, grade_id: str) -> str:
        return solution_source(self.assignment, grade_id)


def round_trip(group: str):
    """The marks of a round trip's tests that are not the shared ones (ex01's whole class workflow): one worker
    builds the graded course (``group``), it is slow, and it grades in the course's bubblewrap sandbox."""
    import pytest

    def mark(test):
        for each in (pytest.mark.xdist_group(group), pytest.mark.slow, pytest.mark.needs_system("bubblewrap")):
            test = each(test)
        return test

    return mark
