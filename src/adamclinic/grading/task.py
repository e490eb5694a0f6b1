"""One Dask task: autograde one student's submission, in a process of its own, into a private staging folder.

The task runs nbgrader's ``Autograde`` converter for student S (what ``nbgrader autograde A --student S``
runs, through nbgrader's own ``capture_log``, as its Python API does) against a private copy of the
assignment's template gradebook (the assignment's cells and hidden tests, no student) and a private
autograded folder. It runs in the Dask worker's process, which stays alive between tasks, so nbgrader
is imported once per worker (8 s on a busy machine) rather than once per submission. nbgrader's
Execute step is the course's ``SandboxedExecute``, so the student's code runs in bubblewrap, in a
process of its own, never in this worker. The task writes nothing the
class shares: the batch grader (``adamclinic.grading.batch``) alone copies the result into the real
gradebook and the real ``grading/autograded/`` folder, once the task has returned.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path

from adamclinic.grading.course import course_config, nbgrader_environment

# What nbgrader says when it cannot read a submission, and what the student should do about it.
KNOWN_FAILURES = [
    (
        r"NotJSONError|not valid JSON|JSONDecodeError|Expecting value|Unterminated string",
        "the notebook file is damaged (not valid JSON): download the assignment again, copy the answers in, resubmit",
    ),
    (
        r"[Uu]nsupported nbformat|schema_version|nbformat version|NotebookValidationError|ValidationError|old version",
        "the notebook's format is not one nbgrader reads (its metadata was edited): resubmit a copy of the released notebook",
    ),
    (
        r"No notebooks found|No submitted file",
        "the submission holds none of the assignment's notebooks: submit the released notebook under its own name",
    ),
    (
        r"cell .* has been deleted|[Mm]issing (grade|test|solution) cell|MissingEntry",
        "a graded cell was deleted: resubmit a copy of the released notebook with the answers filled in",
    ),
]


def explain_failure(log: str) -> str:
    for pattern, advice in KNOWN_FAILURES:
        if re.search(pattern, log):
            return advice
    errors = [line.strip() for line in log.splitlines() if "ERROR" in line or "Error" in line]
    return "nbgrader could not grade it: " + (errors[-1][:300] if errors else "see the grader's log")


def warm_up() -> None:
    """Import what a task needs (about 2 s), so a worker does it while the batch is still being set up."""
    os.environ.update(nbgrader_environment())
    import nbgrader.converters  # noqa: F401
    import nbgrader.coursedir  # noqa: F401


def run_converter(kind: str, root: Path, assignment: str, student: str, overrides: dict) -> tuple[bool, str]:
    """nbgrader's Autograde or GenerateFeedback for one student, in this process; (success, its log)."""
    os.environ.update(nbgrader_environment())
    from nbgrader.converters import Autograde, GenerateFeedback
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.utils import capture_log

    config = course_config(root, overrides)
    coursedir = CourseDirectory(config=config)
    coursedir.root, coursedir.assignment_id, coursedir.student_id = str(root), assignment, student
    for key, value in overrides.get("CourseDirectory", {}).items():
        setattr(coursedir, key, value)
    converter = {"autograde": Autograde, "feedback": GenerateFeedback}[kind](coursedir=coursedir, config=config)
    converter.force = True
    if kind == "autograde":
        converter.create_student = True
    with warnings.catch_warnings():
        # nbgrader's update_or_create_submission trips SQLAlchemy's autoflush warning; it is harmless.
        warnings.simplefilter("ignore", category=Warning)
        outcome = capture_log(converter)
    return bool(outcome.get("success")), (outcome.get("log") or "") + (outcome.get("error") or "")


def autograde_one(spec: dict) -> dict:
    """Grade ``spec['student']``'s ``spec['assignment']``; return where the result is and how it went."""
    root, assignment, student = Path(spec["root"]), spec["assignment"], spec["student"]
    staging = Path(spec["staging"])
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    database = staging / "gradebook.db"
    shutil.copy(spec["template_db"], database)
    judgement = staging / "judgement.json"
    overrides = {
        "CourseDirectory": {
            "db_url": f"sqlite:///{database}",
            "autograded_directory": str(staging / "autograded"),
            "feedback_directory": str(staging / "feedback"),
        },
        "SandboxedExecute": {
            "judgement_path": str(judgement),
            "threads": int(spec.get("threads", 0)),
            "judge_compile_cache": spec.get("judge_compile_cache", ""),
            **spec.get("limits", {}),
        },
    }
    try:
        success, log = run_converter("autograde", root, assignment, student, overrides)
        if success:  # the feedback page too, here in parallel rather than for the whole class at the end
            made, feedback_log = run_converter("feedback", root, assignment, student, overrides)
            log += feedback_log if not made else ""
    except Exception as error:  # nbgrader raised past its own log capture
        success, log = False, f"{type(error).__name__}: {error}"
    (staging / "nbgrader.log").write_text(log)
    autograded = staging / "autograded" / student / assignment
    feedback = staging / "feedback" / student / assignment
    outcome = {
        "student": student,
        "staging": str(staging),
        "returncode": 0 if success else 1,
        "autograded": str(autograded) if any(autograded.glob("*.ipynb")) else None,
        "feedback": str(feedback) if any(feedback.glob("*.html")) else None,
        "judgement": json.loads(judgement.read_text()) if judgement.exists() else None,
    }
    if not success or outcome["autograded"] is None:
        outcome["failure"] = explain_failure(log)
    return outcome
