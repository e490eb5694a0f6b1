"""The two ways to install the course (make and conda) agree, and nothing generated gets committed."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pins(text: str) -> dict[str, str]:
    return dict(re.findall(r"^\s*-?\s*([A-Za-z0-9_.\-]+(?:\[[^\]]*\])?)==([^\s#]+)", text, flags=re.MULTILINE))


def test_environment_yml_lists_the_same_pins_as_requirements():
    required = pins((ROOT / "requirements.txt").read_text())
    conda = pins((ROOT / "environment.yml").read_text())
    assert required, "requirements.txt pins nothing"
    assert conda == required


def test_every_requirement_is_pinned_exactly():
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    loose = [line for line in lines if line and "==" not in line]
    assert not loose, f"unpinned requirements: {loose}"


def test_gitignore_keeps_grading_state_and_the_venv_out_of_git():
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", ".venv/x", "grading/gradebook.db", "grading/submitted/a/b.ipynb",
         "grading/autograded/a", "grading/feedback/a", "grading/exchange/x", "grading/.staging/x"],
        cwd=ROOT, capture_output=True, text=True,
    ).stdout.split()
    assert len(ignored) == 7, ignored


def test_importing_the_course_prints_nothing_on_stderr():
    """TensorFlow's start-up lines would cost a student the points of a graded cell."""
    import sys

    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, "-c", "import adamclinic.training, adamclinic.widgets, keras; keras.ops.ones(3) + 1"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
