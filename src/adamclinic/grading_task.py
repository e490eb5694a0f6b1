"""One Dask task: autograde one student's submission, in a process of its own, into a private staging folder.

The task runs ``nbgrader autograde A --student S`` as a child process, against a private copy of the
assignment's template gradebook (the assignment's cells and hidden tests, no student) and a private
autograded folder. nbgrader's Execute step is the course's ``SandboxedExecute``, so the student's
code runs in bubblewrap, never in this worker or in nbgrader's process. The task writes nothing the
class shares: the batch grader (``adamclinic.class_grading``) alone copies the result into the real
gradebook and the real ``grading/autograded/`` folder, once the task has returned.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path


def nbgrader_environment() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""), TF_CPP_MIN_LOG_LEVEL="3",
                ADAMCLINIC_SKIP_TENSORFLOW="1")


# What nbgrader says when it cannot read a submission, and what the student should do about it.
KNOWN_FAILURES = [
    (r"NotJSONError|not valid JSON|JSONDecodeError|Expecting value|Unterminated string",
     "the notebook file is damaged (not valid JSON): download the assignment again, copy the answers in, resubmit"),
    (r"[Uu]nsupported nbformat|schema_version|nbformat version|NotebookValidationError|ValidationError|old version",
     "the notebook's format is not one nbgrader reads (its metadata was edited): resubmit a copy of the released notebook"),
    (r"No notebooks found|No submitted file",
     "the submission holds none of the assignment's notebooks: submit the released notebook under its own name"),
    (r"cell .* has been deleted|[Mm]issing (grade|test|solution) cell|MissingEntry",
     "a graded cell was deleted: resubmit a copy of the released notebook with the answers filled in"),
]


def explain_failure(log: str) -> str:
    for pattern, advice in KNOWN_FAILURES:
        if re.search(pattern, log):
            return advice
    errors = [line.strip() for line in log.splitlines() if "ERROR" in line or "Error" in line]
    return "nbgrader could not grade it: " + (errors[-1][:300] if errors else "see the grader's log")


def autograde_one(spec: dict) -> dict:
    """Grade ``spec['student']``'s ``spec['assignment']``; return where the result is and how it went."""
    root, assignment, student = Path(spec["root"]), spec["assignment"], spec["student"]
    staging = Path(spec["staging"])
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    database = staging / "gradebook.db"
    shutil.copy(spec["template_db"], database)
    judgement = staging / "judgement.json"
    command = [str(Path(sys.executable).with_name("nbgrader")), "autograde", assignment,
               f"--CourseDirectory.student_id={student}", "--create", "--force",
               f"--CourseDirectory.db_url=sqlite:///{database}",
               f"--CourseDirectory.autograded_directory={staging / 'autograded'}",
               f"--SandboxedExecute.judgement_path={judgement}",
               *[f"--SandboxedExecute.{key}={value}" for key, value in spec.get("limits", {}).items()]]
    notebooks = max(1, int(spec.get("notebooks", 1)))
    budget = notebooks * (int(spec.get("limits", {}).get("submission_timeout", 900)) + 90) + 60
    try:
        result = subprocess.run(command, cwd=root, env=nbgrader_environment(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=budget)
        returncode, log = result.returncode, result.stdout
    except subprocess.TimeoutExpired as expired:
        returncode, log = None, (expired.stdout or b"").decode(errors="replace") if isinstance(expired.stdout, bytes) \
            else (expired.stdout or "")
    (staging / "nbgrader.log").write_text(log or "")
    autograded = staging / "autograded" / student / assignment
    outcome = {"student": student, "staging": str(staging), "returncode": returncode,
               "autograded": str(autograded) if any(autograded.glob("*.ipynb")) else None,
               "judgement": json.loads(judgement.read_text()) if judgement.exists() else None}
    if returncode is None:
        outcome["failure"] = "the grader's own time budget ran out"
    elif returncode != 0 or outcome["autograded"] is None:
        outcome["failure"] = explain_failure(log or "")
    return outcome
