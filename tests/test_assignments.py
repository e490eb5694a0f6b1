"""Every graded assignment: exercises/ is exactly what nbgrader generates from solutions/, each solution passes
``nbgrader validate`` and each untouched exercise fails it.

The release check runs nbgrader's own GenerateAssignment in-process, for all ten assignments in about
a quarter of a second (``make check`` runs it). Validation runs the real ``nbgrader validate`` command
in a temporary copy of the course, one assignment per test. ex01 is not validated here a second time:
the browser test presses JupyterLab's Validate button on its untouched and its solved exercise (the
same nbgrader validator; one fails, the other passes), and its round trip grades the reference answers
with the hidden tests, three times (tests/test_browser.py, tests/test_assignment_ex01_learning_rate.py).

Each assignment's round trip and calibration: tests/test_assignment_exNN_*.py.
"""

from __future__ import annotations

import re

import nbformat
import pytest

from nbgrader_course import ROOT, generate_exercises, make_course, nbgrader, notebooks

ASSIGNMENTS = sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir())
VALIDATED_IN_THE_BROWSER = {"ex01_learning_rate"}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """nbgrader's student version of every assignment, generated from solutions/ into a temporary folder."""
    return generate_exercises(tmp_path_factory.mktemp("release"), ASSIGNMENTS)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_exercises_are_what_nbgrader_generates_from_solutions(assignment, generated):
    """exercises/A is nbgrader's own output for solutions/A, cell by cell, and neither carries outputs."""
    fresh = notebooks(generated / assignment)
    committed = notebooks(ROOT / "exercises" / assignment)
    assert fresh, f"nbgrader generated no notebook for {assignment}"
    assert sorted(committed) == sorted(fresh), f"exercises/{assignment} is out of date: run make release A={assignment}"
    for name, expected in fresh.items():
        actual = committed[name]
        assert len(actual.cells) == len(expected.cells), f"{name}: run make release A={assignment}"
        for index, (mine, theirs) in enumerate(zip(actual.cells, expected.cells)):
            where = f"{assignment}/{name} cell {index}"
            assert mine.cell_type == theirs.cell_type, where
            assert mine.source == theirs.source, f"{where} differs: run make release A={assignment}"
            assert mine.metadata.get("nbgrader") == theirs.metadata.get("nbgrader"), where
            if mine.cell_type == "code":
                assert mine.outputs == [] and mine.execution_count is None, f"{where} has outputs"
        assert "widgets" not in actual.metadata, f"{name} carries widget state"
        source = nbformat.read(ROOT / "solutions" / assignment / name, as_version=4)
        for cell in source.cells:
            assert cell.get("outputs", []) == [] and cell.get("execution_count") is None, (
                f"solutions/{assignment}/{name} has outputs: clear them before committing"
            )
        nbformat.validate(source)


def defined_names(source: str) -> set[str]:
    """Names a cell binds (the judge's own rule, ``adamclinic.judging.judge.bound_names``)."""
    import ast

    from adamclinic.judging.judge import bound_names

    return bound_names(ast.parse(source))


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_hidden_tests_ask_the_kernel_for_answers_only(assignment):
    """The judge runs the locked setup cells and the tests; every other name a test reads is fetched from the
    student's kernel, so it must be an answer (a name a solution cell defines): a helper from an ordinary
    cell would be the student's to redefine (tests/README.md, grading/README.md)."""
    from adamclinic.grading.runner import is_hidden_test
    from adamclinic.judging.judge import names_to_fetch

    nb = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    judge_knows: dict[str, None] = {}
    answers: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            answers |= defined_names(cell.source)
        elif is_hidden_test(cell):
            fetched = set(names_to_fetch(cell.source, judge_knows))
            assert fetched <= answers, (
                f"{assignment} test {meta['grade_id']} reads {sorted(fetched - answers)} from the student's kernel: "
                "define them in a locked setup cell or in the test itself"
            )
            judge_knows.update(dict.fromkeys(defined_names(cell.source)))
        elif meta.get("locked"):
            judge_knows.update(dict.fromkeys(defined_names(cell.source)))


@pytest.mark.slow
@pytest.mark.parametrize(
    "assignment",
    [
        pytest.param(a, marks=pytest.mark.xdist_group(f"validate[{a}]"))
        for a in ASSIGNMENTS
        if a not in VALIDATED_IN_THE_BROWSER
    ],
)
def test_solutions_pass_and_untouched_exercises_fail_validate(assignment, tmp_path):
    """nbgrader validate: the instructor's version passes every test, the student's version as released does not.

    One ``nbgrader validate`` command takes both notebooks, solution first, and reports on each in that order."""
    course = make_course(tmp_path / "course")
    for name in notebooks(course / "solutions" / assignment):
        both = nbgrader(
            course,
            "validate",
            str(course / "solutions" / assignment / name),
            str(course / "exercises" / assignment / name),
        ).stdout
        verdicts = re.findall(r"Success! Your notebook passes all the tests\.|VALIDATION FAILED|ERROR", both)
        assert verdicts[:1] == ["Success! Your notebook passes all the tests."], both[:3000]  # the solution's report
        assert len(verdicts) > 1 and "Success!" not in "".join(verdicts[1:]), both[-3000:]  # the exercise
