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


@pytest.mark.parametrize("bubblewrap", [pytest.param("1", marks=pytest.mark.needs_system("bubblewrap")), "0"])
def test_only_judges_get_the_compile_cache(tmp_path, monkeypatch, bubblewrap):
    """Judges share XLA's compile cache (executable code); a student's sandbox never has it, even when the
    grader's own environment names one."""
    from adamclinic.grading import sandbox
    from adamclinic.grading.execute import SandboxedExecute

    monkeypatch.setenv("ADAMCLINIC_NO_BUBBLEWRAP", "0" if bubblewrap == "1" else "1")
    monkeypatch.setenv("TF_XLA_FLAGS", sandbox.xla_cache_flag(str(tmp_path / "the grader's own")))
    cache = tmp_path / "judge-cache"
    (tmp_path / "work").mkdir()
    (tmp_path / "io").mkdir()
    command, _, env = SandboxedExecute(judge_compile_cache=str(cache))._judge_command(tmp_path)
    if bubblewrap == "1":
        assert ["--bind", str(cache), sandbox.COMPILE_CACHE_MOUNT] == command[
            command.index(str(cache)) - 1 : command.index(str(cache)) + 2
        ]
        assert sandbox.xla_cache_flag(sandbox.COMPILE_CACHE_MOUNT) in command
    else:
        assert env["TF_XLA_FLAGS"] == sandbox.xla_cache_flag(str(cache))
    student = sandbox.command(tmp_path / "work", tmp_path / "io", ["python"], sandbox.Limits())
    assert str(cache) not in student and sandbox.COMPILE_CACHE_MOUNT not in " ".join(student)
    assert "TF_XLA_FLAGS" not in student and "TF_XLA_FLAGS" not in sandbox.sandbox_environment()
