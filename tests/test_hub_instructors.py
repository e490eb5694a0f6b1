"""The class hub's instructors share one course folder, and its grader takes the Dask cluster it is given.

Two instructors and a student, real accounts, no hub running: the student hands in through nbgrader's
exchange under their own account, the first instructor grades with ``python -m classhub grade`` (what
``sudo make grade A=... HUB=1 SCHEDULER=...`` runs) on a Dask cluster of their own, and the second instructor
then runs the grader again and writes the gradebook. What the first one's grader created must be writable
by the second (umask 007 for instructors: files 0660, folders 2770) and closed to the student. Root only
(the class creates accounts); setup.clean removes the accounts and the state folder.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hub"))

from classhub import roster, setup  # noqa: E402

from test_hub import Members, member_command, member_environment, why_no_hub  # noqa: E402

ASSIGNMENT = "ex00_adam_update"
pytestmark = pytest.mark.xdist_group("hub")


def test_the_hub_grader_carries_the_scheduler_it_is_given(tmp_path):
    """classhub grade --scheduler ADDR runs adamclinic.grading grade ... --scheduler ADDR, as the instructor."""
    pytest.importorskip("jupyterhub", reason="the hub's software is not installed (sudo make hub installs it)")
    (tmp_path / "hub").mkdir()
    (tmp_path / "class.json").write_text(
        json.dumps({"instructors": ["root"], "gradebook_db": f"sqlite:///{tmp_path / 'gradebook.db'}"})
    )
    address = "tcp://10.0.0.7:8786"
    command, _ = setup.grade_command(tmp_path, ASSIGNMENT, workers=1, scheduler=address)
    script = command[-1]
    assert f"-m adamclinic.grading grade {ASSIGNMENT} " in script
    assert f"--scheduler {address}" in script
    assert "umask 0007" in script.splitlines()
    local, _ = setup.grade_command(tmp_path, ASSIGNMENT, workers=1)
    assert "--scheduler" not in local[-1]


# Two instructors and a student -------------------------------------------------------------------------


class Class(Members):
    def __init__(self, state: Path, settings: dict):
        super().__init__(state, settings)
        self.first, self.second = settings["instructors"]
        (self.student,) = settings["students"]
        self.grading = state / "course" / "grading"
        self.gradebook = self.grading / "gradebook.db"

    def environment(self, name: str) -> dict[str, str]:
        return member_environment(self.state, self.settings, name)

    def member_command(self, name: str, command: list[str]) -> list[str]:
        return member_command(self.state, self.settings, name, command)

    def grade(self, *options: str) -> subprocess.CompletedProcess:
        """``sudo make grade A=... HUB=1 [SCHEDULER=...]``: the course's grader, run by root as an instructor."""
        env = dict(os.environ, PYTHONPATH=str(ROOT / "hub"))
        command = [sys.executable, "-m", "classhub", "grade", ASSIGNMENT, "--state", str(self.state), *options]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result

    def dask_cluster(self, name: str) -> tuple[subprocess.Popen, str]:
        """A Dask cluster of one worker run by ``name`` (as an instructor would start one), and its address."""
        script = (
            "import sys\n"
            "from dask.distributed import LocalCluster\n"
            "with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as c:\n"
            "    print(c.scheduler_address, flush=True)\n"
            "    sys.stdin.read()  # until the test closes it\n"
        )
        cluster = subprocess.Popen(
            self.member_command(name, [sys.executable, "-c", script]),
            env=dict(self.environment(name), ADAMCLINIC_SKIP_TENSORFLOW="1"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        return cluster, cluster.stdout.readline().strip()


@pytest.fixture(scope="module")
def graded_class():
    """A class whose student handed in ex00 and whose first instructor graded it on their Dask cluster."""
    if reason := why_no_hub():
        pytest.skip(reason)
    state = Path(tempfile.mkdtemp(prefix="adamclinic-hub-instructors-"))
    tag = f"hi{os.getpid() % 100000}"
    the_class = roster.Roster("adam-clinic", (f"{tag}x", f"{tag}y"), (f"{tag}s",))
    try:
        settings = setup.prepare(state, the_class, port=setup.free_port(), instructors_group=f"{tag}-instructors")
        (state / "hub" / "staging").mkdir(exist_ok=True)
        course = Class(state, settings)
        course.nbgrader(course.first, "release_assignment", ASSIGNMENT)
        course.nbgrader(course.student, "fetch_assignment", ASSIGNMENT)
        course.nbgrader(course.student, "submit", ASSIGNMENT)
        cluster, course.scheduler = course.dask_cluster(course.first)
        try:
            assert course.scheduler.startswith("tcp://"), f"no Dask cluster ({course.scheduler!r})"
            course.first_grading = course.grade("--scheduler", course.scheduler)
        finally:
            cluster.stdin.close()
            setup.stop_process(cluster)
        yield course
    finally:
        setup.clean(state)


def modes_under(top: Path) -> dict[str, int]:
    return {str(path.relative_to(top)): path.lstat().st_mode for path in [top, *top.rglob("*")]}


@pytest.mark.slow
def test_what_the_first_instructor_graded_is_writable_by_the_others_and_closed_to_everyone_else(graded_class):
    """Graded on the given Dask cluster; the gradebook, submitted/, autograded/, ... are 0660 files, 2770 folders."""
    course = graded_class
    graded_on = f"Grading 1 submission(s) of {ASSIGNMENT} on the Dask cluster at {course.scheduler}"
    assert graded_on in course.first_grading.stdout, course.first_grading.stdout[-2000:]
    for folder in ("submitted", "autograded", "feedback", "reports"):
        assert (course.grading / folder).is_dir(), f"the grader made no grading/{folder}"
    assert stat.S_IMODE(course.gradebook.stat().st_mode) == 0o660
    group = course.gradebook.parent.stat().st_gid
    closed = []
    for name, mode in modes_under(course.grading).items():
        path = course.grading / name
        if stat.S_ISDIR(mode):
            if mode & 0o2070 != 0o2070 or path.stat().st_gid != group:
                closed.append(f"{name}/ {stat.filemode(mode)} group {path.stat().st_gid}")
        elif mode & 0o060 != 0o060 or path.stat().st_gid != group:
            closed.append(f"{name} {stat.filemode(mode)} group {path.stat().st_gid}")
    assert not closed, "the other instructors could not write:\n" + "\n".join(closed)

    # SQLite's rollback journal, made by an instructor's process while it writes the gradebook.
    probe = (
        "import os, sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "db.execute('BEGIN IMMEDIATE')\n"
        "db.execute('PRAGMA user_version = 7')\n"
        "print(oct(os.stat(sys.argv[1] + '-journal').st_mode))\n"
        "db.execute('ROLLBACK')\n"
    )
    journal = course.run_as(course.first, sys.executable, "-c", probe, str(course.gradebook))
    assert journal.returncode == 0, journal.stderr[-2000:]
    assert int(journal.stdout.strip(), 8) & 0o777 == 0o660, journal.stdout
    assert sqlite3.connect(course.gradebook).execute("PRAGMA user_version").fetchone() == (0,)


@pytest.mark.slow
def test_a_second_instructor_runs_the_grader_again_and_writes_the_gradebook(graded_class):
    """The second instructor's grader rewrites the first one's reports and feedback; their nbgrader adds a student."""
    course = graded_class
    again = course.grade("--instructor", course.second, "--workers", "1")
    assert "(1 already graded and unchanged)" in again.stdout, again.stdout[-2000:]
    course.nbgrader(course.second, "db", "student", "add", "latecomer", "--first-name", "Late")
    with sqlite3.connect(course.gradebook) as gradebook:
        students = {row[0] for row in gradebook.execute("SELECT id FROM student")}
    assert students == {course.student, "latecomer"}, students


@pytest.mark.slow
def test_the_student_cannot_read_the_gradebook(graded_class):
    """The student's own account is refused the gradebook; an instructor's is not."""
    course = graded_class
    attempt = course.read_as(course.student, course.gradebook)
    assert attempt.returncode != 0 and "Permission denied" in attempt.stderr, attempt.stderr
    assert course.read_as(course.second, course.gradebook).returncode == 0
    assert not course.gradebook.stat().st_mode & 0o007, "the gradebook is open to accounts outside the course"
