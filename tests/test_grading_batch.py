"""The batch grader's promises: killed mid-batch it resumes without losing or duplicating a grade, a rerun
gives identical scores, it runs on an existing Dask cluster, it writes a PostgreSQL gradebook, it
judges lateness from the recorded submission time, and without bubblewrap it says so and goes on.

All on the sandbox probe assignment (numpy only: a submission grades in seconds).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from glob import glob
from pathlib import Path

import pytest

from grading_probe import CORRECT, PARTS, PROBE, answered, grade_probe, hand_in, make_probe_course, part_scores, report
from nbgrader_course import COURSE_ID, course_env, nbgrader

pytestmark = [pytest.mark.slow, pytest.mark.needs_system("bubblewrap")]
RESUME = pytest.mark.xdist_group("grading_resume")
SERVICES = pytest.mark.xdist_group("grading_services")
FULL = dict(PARTS)
SLOW = "import time\ntime.sleep(2)\n"  # every student takes a few seconds, so a kill lands mid-batch


def with_answers(**changes: str) -> dict[str, str]:
    return {**CORRECT, **changes}


CLASS = {
    "ada": with_answers(),
    "ben": with_answers(learning_rate_answer="LEARNING_RATE = 0.5"),
    "cyd": with_answers(train_answer="def train(rate, steps=10):\n    return [0.0] * steps"),
    "dee": with_answers(),
    "eli": with_answers(column_means_answer="def column_means(table):\n    return np.zeros(3)"),
    "fay": with_answers(),
}
EXPECTED = {
    "ada": FULL,
    "ben": {**FULL, "learning_rate": 0},
    "cyd": {**FULL, "train": 0},
    "dee": FULL,
    "eli": {**FULL, "column_means": 0},
    "fay": FULL,
}
DUE = "2026-11-30 12:00:00 UTC"
LATE_STUDENT = "fay"


def slowed(answers: dict[str, str]) -> dict[str, str]:
    return {**answers, "column_means_answer": SLOW + answers["column_means_answer"]}


def gradebook_counts(course: Path) -> tuple[int, int]:
    with sqlite3.connect(course / "grading" / "gradebook.db") as db:
        submissions = db.execute("SELECT COUNT(*) FROM submitted_assignment").fetchone()[0]
        grades = db.execute("SELECT COUNT(*) FROM grade").fetchone()[0]
    return submissions, grades


def journal_lines(course: Path) -> list[str]:
    path = course / "grading" / "reports" / f"{PROBE}.journal.jsonl"
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    course = make_probe_course(tmp_path_factory.mktemp("resume") / "course")
    nbgrader(course, "db", "assignment", "add", PROBE, f"--duedate={DUE}")
    for student, answers in CLASS.items():
        late = "2026-11-30 13:30:00.000000 UTC" if student == LATE_STUDENT else "2026-11-30 11:00:00.000000 UTC"
        hand_in(course, student, answered(course, slowed(answers)), timestamp=late)

    command = [sys.executable, "-m", "adamclinic.grading", "grade", PROBE, "--root", str(course), "--workers", "1"]
    process = subprocess.Popen(
        command, cwd=course, env=course_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 600
    while len(journal_lines(course)) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the grader, its Dask workers and whatever they were running
    process.wait()
    graded_before_kill = len(journal_lines(course))

    resumed = grade_probe(course, "--workers", "2")
    rerun = grade_probe(course, "--workers", "2")
    return {
        "course": course,
        "before_kill": graded_before_kill,
        "resumed": resumed,
        "rerun": rerun,
        "report_after_resume": report(course),
    }


@RESUME
def test_the_kill_landed_mid_batch(killed_and_resumed):
    assert 2 <= killed_and_resumed["before_kill"] < len(CLASS)


@RESUME
def test_a_rerun_after_kill_9_grades_only_what_is_left_and_completes_the_class(killed_and_resumed):
    resumed = killed_and_resumed["resumed"]
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"({killed_and_resumed['before_kill']} already graded and unchanged)" in resumed.stdout
    course = killed_and_resumed["course"]
    for student, points in EXPECTED.items():
        assert part_scores(course, student) == pytest.approx(points), student
        assert killed_and_resumed["report_after_resume"][student]["status"] == "graded"


@RESUME
def test_no_grade_is_lost_or_duplicated(killed_and_resumed):
    course = killed_and_resumed["course"]
    submissions, grades = gradebook_counts(course)
    assert submissions == len(CLASS)
    assert grades == len(CLASS) * (len(PARTS) + 1)  # three autograded parts and one written answer each
    assert sorted(p.parent.name for p in (course / "grading" / "autograded").glob(f"*/{PROBE}")) == sorted(CLASS)


@RESUME
def test_rerunning_an_unchanged_class_changes_nothing(killed_and_resumed):
    rerun = killed_and_resumed["rerun"]
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Grading 0 submission(s)" in rerun.stdout
    assert report(killed_and_resumed["course"]) == killed_and_resumed["report_after_resume"]


@RESUME
def test_a_full_regrade_on_an_existing_dask_cluster_gives_identical_scores(killed_and_resumed):
    from dask.distributed import LocalCluster

    course = killed_and_resumed["course"]
    before = {s: part_scores(course, s) for s in CLASS}
    environment = dict(os.environ)
    os.environ.update(course_env(), ADAMCLINIC_SKIP_TENSORFLOW="1")
    try:
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            result = grade_probe(course, "--regrade", "--scheduler", cluster.scheduler_address)
    finally:
        os.environ.clear()
        os.environ.update(environment)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"on the Dask cluster at {cluster.scheduler_address}" in result.stdout
    assert f"Grading {len(CLASS)} submission(s)" in result.stdout
    assert {s: part_scores(course, s) for s in CLASS} == before
    assert gradebook_counts(course)[0] == len(CLASS)


@RESUME
def test_lateness_comes_from_the_recorded_submission_time(killed_and_resumed):
    from nbgrader.api import Gradebook

    with Gradebook(
        f"sqlite:///{killed_and_resumed['course'] / 'grading' / 'gradebook.db'}", course_id=COURSE_ID
    ) as gradebook:
        late = gradebook.find_submission(PROBE, LATE_STUDENT).total_seconds_late
        on_time = gradebook.find_submission(PROBE, "ada").total_seconds_late
    assert late == pytest.approx(5400) and on_time == 0


# --------------------------------------------------------------------------------------------------
# a gradebook in a real PostgreSQL server, and grading without bubblewrap


def postgres_binaries() -> Path:
    found = sorted(glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL is not installed: apt-get install postgresql (.ci/run installs it)")
    return Path(found[-1]).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server on loopback; as root it runs as Debian's postgres user."""
    binaries = postgres_binaries()
    folder = Path(tempfile.mkdtemp(prefix="adamclinic-pg-", dir="/tmp"))
    data, port = folder / "data", free_port()
    as_owner: list[str] = []
    if os.geteuid() == 0:
        as_owner = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres")
        folder.chmod(0o755)
    subprocess.run(
        [*as_owner, str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *as_owner,
            str(binaries / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(folder / "log"),
            "-o",
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_owner, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(folder, ignore_errors=True)


@SERVICES
@pytest.mark.needs_system("postgresql")
def test_the_grader_writes_a_postgresql_gradebook(tmp_path, postgres):
    from nbgrader.api import Gradebook

    course = make_probe_course(tmp_path / "course")
    hand_in(course, "ada", answered(course, CLASS["ada"]))
    hand_in(course, "ben", answered(course, CLASS["ben"]))
    result = grade_probe(course, "--workers", "2", "--db", postgres)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert part_scores(course, "ada", db_url=postgres) == pytest.approx(EXPECTED["ada"])
    assert part_scores(course, "ben", db_url=postgres) == pytest.approx(EXPECTED["ben"])
    with Gradebook(postgres, course_id=COURSE_ID) as gradebook:
        assert sorted(s.student.id for s in gradebook.find_assignment(PROBE).submissions) == ["ada", "ben"]
    with sqlite3.connect(course / "grading" / "gradebook.db") as local:  # made by the release, left alone
        assert local.execute("SELECT COUNT(*) FROM submitted_assignment").fetchone()[0] == 0


@SERVICES
def test_without_bubblewrap_the_grader_says_so_once_and_still_grades(tmp_path):
    course = make_probe_course(tmp_path / "course")
    hand_in(course, "ada", answered(course, CLASS["ada"]))
    hand_in(course, "ben", answered(course, CLASS["ben"]))
    result = subprocess.run(
        [sys.executable, "-m", "adamclinic.grading", "grade", PROBE, "--root", str(course), "--workers", "1"],
        cwd=course,
        env=dict(course_env(), ADAMCLINIC_NO_BUBBLEWRAP="1"),
        text=True,
        capture_output=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stderr.count("bubblewrap (bwrap) is not installed") == 1
    assert part_scores(course, "ada") == pytest.approx(EXPECTED["ada"])
    assert part_scores(course, "ben") == pytest.approx(EXPECTED["ben"])


@pytest.mark.xdist_group("grading_new_points")  # a group only so that its 30 s are not sent out last
def test_a_part_whose_points_change_is_regraded_on_the_new_points(tmp_path):
    """The gradebook's copy of the assignment is refreshed when solutions/ changes, not reused."""
    import nbformat

    course = make_probe_course(tmp_path / "course")
    hand_in(course, "ada", answered(course, CLASS["ada"]))
    first = grade_probe(course, "--workers", "1")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    report_of_first = report(course)["ada"]
    source = course / "solutions" / PROBE / f"{PROBE}.ipynb"
    notebook = nbformat.read(source, as_version=4)
    train = next(cell for cell in notebook.cells if cell.metadata.get("nbgrader", {}).get("grade_id") == "train")
    train.metadata.nbgrader.points = 3
    nbformat.write(notebook, source)
    second = grade_probe(course, "--workers", "1")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "Grading 1 submission(s)" in second.stdout
    assert part_scores(course, "ada") == pytest.approx({**FULL, "train": 3})
    before, after = float(report_of_first["max_score"]), float(report(course)["ada"]["max_score"])
    assert after == before + 1
