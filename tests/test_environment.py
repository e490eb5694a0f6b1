"""The two ways to install the course (make and conda) agree, and nothing generated gets committed."""

import os
import re
import subprocess
import sys
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
        [
            "git",
            "check-ignore",
            "--no-index",
            ".venv/x",
            "grading/gradebook.db",
            "grading/submitted/a/b.ipynb",
            "grading/autograded/a",
            "grading/feedback/a",
            "grading/exchange/x",
            "grading/.staging/x",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert len(ignored) == 7, ignored


def test_importing_the_course_prints_nothing_on_stderr():
    """TensorFlow's start-up lines would cost a student the points of a graded cell."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, "-c", "import adamclinic.engine.training, adamclinic.panels, keras; keras.ops.ones(3) + 1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_a_missing_system_program_stops_make_test_in_seconds_with_the_command_to_run(tmp_path):
    """tools/system_packages.py, as ``make test`` calls it on a machine without Chromium where nothing may be
    installed: exit status 3, what each missing package is for, and the exact apt-get command."""
    present = tmp_path / "bin"
    present.mkdir()
    (present / "bwrap").write_text("#!/bin/sh\n")
    (present / "bwrap").chmod(0o755)
    env = dict(
        os.environ,
        ADAMCLINIC_CHROMIUM=str(tmp_path / "no-chromium"),
        ADAMCLINIC_NO_SYSTEM_INSTALL="1",
        ADAMCLINIC_POSTGRESQL_ROOT=str(tmp_path),
        ADAMCLINIC_SYSTEM_PATH=str(present),
    )
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "system_packages.py"), "--install"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 3, result
    assert "chromium    a real browser" in result.stderr and "postgresql  a PostgreSQL server" in result.stderr
    assert "sudo apt-get install chromium" in result.stderr and "postgresql" in result.stderr.splitlines()[-1]
    assert "bubblewrap" not in result.stderr  # present: only what is missing is named
    assert result.stdout == ""  # nothing was installed


def test_make_test_and_ci_check_the_system_programs_before_anything_slow():
    """``make test`` runs the system check before the environment build and pytest; CI calls make test only."""
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: system-test \$\(READY\)", makefile, re.MULTILINE)
    assert "tools/system_packages.py --install" in makefile
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "apt-get" not in ci
