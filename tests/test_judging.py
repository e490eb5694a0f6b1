"""The hand-in's requests from the judge, in-process (no kernel, no sandbox): what it agrees to run."""

from __future__ import annotations

import pytest

from adamclinic.judging.handin import _course_helper


def test_a_helper_request_runs_only_a_course_function():
    """The judge may ask the kernel to run a course helper over a student's function (one request for a loop
    of thousands of calls); a request naming anything outside the course is refused."""
    from adamclinic.lessons.adam_from_the_inside import step_updates

    assert _course_helper("adamclinic.lessons.adam_from_the_inside:step_updates") is step_updates
    for name in ("os:system", "builtins:eval", "adamclinic_evil:run", "adamclinic.lessons:__import__('os')", None):
        with pytest.raises(ValueError, match="not a course helper"):
            _course_helper(name)
