"""The round trip every assignment shares: one temporary course, the assignment released, three students
handed in (untouched, mixed_1, mixed_2), ONE ``grade`` call through the course's parallel, sandboxed grader.

A test file declares ``ROUND_TRIP = RoundTrip(...)`` (tests/nbgrader_course.py) and imports these tests;
``conftest.py`` puts them in the assignment's own group, so one worker builds its graded course once.
The file keeps only what is particular to its assignment: the sample answers and the calibration of its bars.
"""

from __future__ import annotations

import pytest

from nbgrader_course import autograded_points, expected_points, graded_course, hand_graded_parts, part_scores

STUDENTS = ("untouched", "mixed_1", "mixed_2")


def trip_of(request):
    return request.module.ROUND_TRIP


@pytest.fixture(scope="module")
def graded(request, tmp_path_factory):
    """The graded course: released, three submissions, one ``grade`` for all of them."""
    trip = trip_of(request)
    return graded_course(tmp_path_factory.mktemp(trip.assignment) / "course", trip.assignment, trip.submissions())


@pytest.mark.slow
@pytest.mark.needs_system("bubblewrap")
@pytest.mark.parametrize("student", STUDENTS)
def test_each_part_is_scored_on_its_own(request, graded, student):
    """A wrong answer loses exactly its part's points; a correct one unlike the reference earns them; an
    untouched notebook earns nothing, its unchanged written answers included."""
    trip = trip_of(request)
    expected = expected_points(trip.choices[student], trip.part_of, trip.points)
    assert autograded_points(graded, trip.assignment, student, trip.points) == pytest.approx(expected)
    if student == "untouched":
        scores = part_scores(graded, trip.assignment, student)
        assert all(scores.get(cell, 0) == 0 for cell in trip.written), scores


@pytest.mark.slow
@pytest.mark.needs_system("bubblewrap")
def test_written_answers_wait_for_a_human(request, graded):
    """Every hand-graded cell still needs a manual grade after autograding (with its points, where pinned)."""
    trip = trip_of(request)
    parts = hand_graded_parts(graded, trip.assignment, "mixed_1")
    assert {cell: needs for cell, (_, needs) in parts.items()} == {cell: True for cell in trip.written}
    for cell, points in trip.written_points.items():
        assert parts[cell][0] == points, (cell, parts[cell])
