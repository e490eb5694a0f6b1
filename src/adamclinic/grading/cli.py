"""Release, submit, grade: the course's nbgrader workflow in four commands.

    python -m adamclinic.grading release  <assignment>            (make release A=...)
    python -m adamclinic.grading submit   <assignment> [--student NAME]   (make submit A=...)
    python -m adamclinic.grading grade    <assignment>            (make grade A=...)
    python -m adamclinic.grading feedback <assignment> [--student NAME]

Each is a thin wrapper over nbgrader's own commands, run from the course folder so nbgrader reads
``nbgrader_config.py`` there (which loads ``grading/nbgrader_config.py``):

release   ``generate_assignment A --force`` rebuilds ``exercises/A`` from ``solutions/A`` (and records
          the assignment, with its hidden tests, in the gradebook); ``release_assignment A --force``
          puts it in the local exchange, where JupyterLab's Assignments panel and ``fetch`` find it.
submit    hands in the student's work in ``exercises/A`` (``nbgrader submit`` with the exchange's
          ``assignment_dir`` pointed at ``exercises/``), after making sure the assignment is in the
          gradebook and the exchange. The student is the login name unless ``--student`` says otherwise.
grade     ``collect --update``, then ``adamclinic.grading.batch``: every submission autograded by
          nbgrader in its own process with the student's code in a sandbox, in parallel on Dask,
          results written to the gradebook by this process alone; feedback, ``export`` to
          ``grading/reports/grades.csv`` and a per-student report with each status and reason.
          See grading/README.md for what it promises.
feedback  ``fetch_feedback``: the graded HTML lands in ``exercises/A/feedback/<timestamp>/``.

Whenever the gradebook must know the assignment without the student's ``exercises/A`` being
rewritten, ``generate_assignment`` writes its release into a temporary folder instead.

A broken or hostile notebook costs only its own student: it gets a status (error, timeout or
flagged) and a reason in the report, and ``grade`` exits non-zero only when the grader itself failed.
"""

from __future__ import annotations

import argparse
import csv
import getpass
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from adamclinic.grading.course import (
    COURSE_ID,
    GradingError,
    course_config,
    nbgrader_command,
    nbgrader_environment,
    stamp_new_gradebook,
)
from adamclinic.paths import REPOSITORY_ROOT


def run_nbgrader(root: Path, *args: str, verbose: bool = False, check: bool = True) -> subprocess.CompletedProcess:
    """Run one ``nbgrader`` command from the course folder; raise ``GradingError`` when it fails."""
    env = nbgrader_environment()
    command = nbgrader_command() + list(args)
    try:
        result = subprocess.run(
            command,
            cwd=root,
            env=env,
            text=True,
            stdout=None if verbose else subprocess.PIPE,
            stderr=subprocess.STDOUT if not verbose else None,
        )
    except FileNotFoundError as error:
        raise GradingError(
            f"nbgrader is not installed next to {sys.executable}. Build the course's environment first: make lab"
        ) from error
    if check and result.returncode != 0:
        log = (result.stdout or "").strip().splitlines()
        tail = "\n".join("    " + line for line in log[-30:])
        raise GradingError(
            f"'nbgrader {' '.join(args)}' failed (exit status {result.returncode}).\n"
            + (f"Its last lines:\n{tail}\n" if tail else "")
            + "Run it yourself from the course folder to see everything: "
            f"cd {root} && {' '.join(command)}"
        )
    return result


def _check_assignment(root: Path, assignment: str, folder: str) -> Path:
    path = root / folder / assignment
    if not path.is_dir():
        known = sorted(p.name for p in (root / folder).glob("*") if p.is_dir()) if (root / folder).is_dir() else []
        raise GradingError(
            f"There is no assignment {assignment!r} in {root / folder}. "
            + (f"Known assignments: {', '.join(known)}." if known else f"{folder}/ holds no assignment yet.")
        )
    return path


def course_api(root: Path, **coursedir: str):
    """nbgrader's Python API on the course at ``root``: its commands in this process, nbgrader imported once.

    Release and collect run nbgrader's own converters and exchange steps this way, as ``nbgrader
    generate_assignment``, ``release_assignment`` and ``collect`` would, without starting nbgrader once per
    step (about 2.5 s each); a new SQLite gradebook is stamped in-process instead of by nbgrader's
    ``alembic`` subprocess (2.6 s)."""
    from nbgrader.apps.api import NbGraderAPI

    os.environ["PATH"] = nbgrader_environment()["PATH"]  # a gradebook nbgrader opens may run alembic by name
    api = NbGraderAPI(config=course_config(root, {"ExchangeReleaseAssignment": {"force": True}}))
    api.coursedir.root = str(root)
    for key, value in coursedir.items():
        setattr(api.coursedir, key, value)
    gradebook = Path(str(api.coursedir.db_url).removeprefix("sqlite:///"))
    # An empty file is a new gradebook too: the class hub creates one, group-writable, for its instructors.
    new = not gradebook.exists() or gradebook.stat().st_size == 0
    if str(api.coursedir.db_url).startswith("sqlite:///") and new:
        gradebook.parent.mkdir(parents=True, exist_ok=True)
        stamp_new_gradebook(gradebook)
    return api


def run_step(root: Path, step: str, outcome: dict, verbose: bool = False) -> None:
    """Show what nbgrader said when asked (``verbose``); raise ``GradingError`` with its last lines when it failed."""
    log = ((outcome.get("log") or "") + (outcome.get("error") or "")).strip()
    if verbose and log:
        print(log)
    if not outcome.get("success"):
        tail = "\n".join("    " + line for line in log.splitlines()[-30:])
        raise GradingError(
            f"nbgrader's {step} failed.\n"
            + (f"Its last lines:\n{tail}\n" if tail else "")
            + f"Run it yourself from the course folder to see everything: cd {root} && nbgrader {step} --help"
        )


def ensure_released(root: Path, assignment: str, verbose: bool = False) -> None:
    """Make sure the gradebook knows the assignment and the exchange offers it, leaving ``exercises/`` alone."""
    _check_assignment(root, assignment, "solutions")
    with tempfile.TemporaryDirectory(prefix="adamclinic-release-") as scratch:
        api = course_api(root, release_directory=scratch)
        run_step(root, "generate_assignment", api.generate_assignment(assignment, force=True, create=True), verbose)
        if not (exchange_root(root) / COURSE_ID / "outbound" / assignment).is_dir():
            run_step(root, "release_assignment", api.release_assignment(assignment), verbose)


def exchange_root(root: Path) -> Path:
    """The exchange the course's nbgrader configuration names (a class hub's shared one), else ``grading/exchange``."""
    configured = course_config(root, {}).Exchange.get("root")
    return Path(configured) if configured else root / "grading" / "exchange"


def release(root: Path, assignment: str, verbose: bool = False) -> None:
    _check_assignment(root, assignment, "solutions")
    api = course_api(root)
    run_step(root, "generate_assignment", api.generate_assignment(assignment, force=True, create=True), verbose)
    run_step(root, "release_assignment", api.release_assignment(assignment), verbose)
    print(
        f"Released {assignment}: exercises/{assignment}/ was regenerated from solutions/{assignment}/ "
        f"and is in the exchange ({exchange_root(root) / COURSE_ID / 'outbound' / assignment})."
    )
    print(f"Students work in exercises/{assignment}/ and hand in with: make submit A={assignment}")


def _student_option(student: str | None) -> list[str]:
    return [f"--CourseDirectory.student_id={student}"] if student else []


def _in_exercises() -> list[str]:
    # Submit and fetch feedback in exercises/<assignment>, not in <cwd>/<course>/<assignment>.
    return ["--Exchange.path_includes_course=False"]


def submit(root: Path, assignment: str, student: str | None = None, verbose: bool = False) -> None:
    work = _check_assignment(root, assignment, "exercises")
    if not any(work.glob("*.ipynb")):
        raise GradingError(f"{work} holds no notebook to hand in. Restore it with: make release A={assignment}")
    ensure_released(root, assignment, verbose=verbose)
    run_nbgrader(
        root,
        "submit",
        assignment,
        f"--Exchange.assignment_dir={root / 'exercises'}",
        *_in_exercises(),
        *_student_option(student),
        verbose=verbose,
    )
    who = student or getpass.getuser()
    print(f"Submitted exercises/{assignment}/ as student {who!r} (into {exchange_root(root) / COURSE_ID / 'inbound'}).")
    print(f"Next: grade it with   make grade A={assignment}")
    print(
        f"then read the feedback: python -m adamclinic.grading feedback {assignment}"
        + (f" --student {student}" if student else "")
    )


def _read_scores(root: Path, assignment: str, db_url: str | None = None) -> list[dict]:
    """Per student: total autograded score, manual points still to grade, and each part's score."""
    from nbgrader.api import Gradebook, MissingEntry

    os.environ["PATH"] = nbgrader_environment()["PATH"]  # Gradebook runs alembic from PATH
    rows = []
    url = db_url or f"sqlite:///{root / 'grading' / 'gradebook.db'}"
    with Gradebook(url, course_id=COURSE_ID) as gradebook:
        try:
            record = gradebook.find_assignment(assignment)
        except MissingEntry:
            return rows
        for submission in sorted(record.submissions, key=lambda s: s.student.id):
            parts = {}
            for notebook in submission.notebooks:
                for grade in sorted(notebook.grades, key=lambda g: g.name):
                    parts[grade.name] = (grade.score, grade.max_score, grade.needs_manual_grade)
            rows.append(
                {
                    "student": submission.student.id,
                    "score": submission.score,
                    "max_score": submission.max_score,
                    "parts": parts,
                }
            )
    return rows


def grade(
    root: Path,
    assignment: str,
    verbose: bool = False,
    workers: int = 2,
    scheduler: str | None = None,
    db_url: str | None = None,
    limits: dict | None = None,
    regrade: bool = False,
) -> int:
    """Collect, autograde the class in parallel sandboxes (adamclinic.grading.batch), feedback, reports."""
    from adamclinic.grading.batch import ClassGrading, read_report

    _check_assignment(root, assignment, "solutions")
    inbound = exchange_root(root) / COURSE_ID / "inbound"
    if any(inbound.glob(f"*+{assignment}+*")):
        run_step(root, "collect", course_api(root).collect(assignment, update=True), verbose)
    batch = ClassGrading(
        root,
        assignment,
        workers=workers,
        scheduler=scheduler,
        db_url=db_url,
        limits=limits or {},
        regrade=regrade,
        progress=sys.stderr.isatty(),
    )
    if not batch.submitted():
        raise GradingError(
            f"Nobody has submitted {assignment} yet. A student hands in with: make submit A={assignment}"
        )
    status = batch.run()
    report = read_report(batch.report_path)
    for row in _read_scores(root, assignment, db_url):
        entry = report.get(row["student"])
        if entry is None:
            continue
        manual = [name for name, (_, _, needs) in row["parts"].items() if needs]
        print(
            f"\n{row['student']}: {row['score']:g} / {row['max_score']:g} points, {entry['status']}"
            + (f" ({len(manual)} part(s) still to grade by hand)" if manual else "")
            + (f": {entry['reason']}" if entry["status"] != "graded" and entry["reason"] else "")
        )
        for name, (score, max_score, needs) in row["parts"].items():
            shown = "to grade by hand" if needs else f"{score:g} / {max_score:g}"
            print(f"    {name:32s} {shown}")
        for html in sorted((root / "grading" / "feedback" / row["student"] / assignment).glob("*.html")):
            print(f"    feedback: {html}")
    print(f"\nPer-student report (score, status, reason): {batch.report_path}")
    print(f"All grades (every assignment): {batch.reports / 'grades.csv'}")
    print("Parts graded by hand: open the Formgrader (JupyterLab: Nbgrader → Formgrader) to score them.")
    print(f"A student gets the feedback with: python -m adamclinic.grading feedback {assignment} [--student NAME]")
    problems = sorted(s for s, e in report.items() if e["status"] != "graded")
    if problems:
        listed = ", ".join(f"{student} ({report[student]['status']})" for student in problems)
        print(f"\nNeeds a look: {listed}. Everyone else was graded normally; the report says why.")
    return status


def feedback(root: Path, assignment: str, student: str | None = None, verbose: bool = False) -> None:
    _check_assignment(root, assignment, "exercises")
    run_nbgrader(
        root,
        "fetch_feedback",
        assignment,
        f"--Exchange.assignment_dir={root / 'exercises'}",
        *_in_exercises(),
        *_student_option(student),
        verbose=verbose,
    )
    files = sorted((root / "exercises" / assignment / "feedback").glob("*/*.html"))
    if not files:
        raise GradingError(f"No feedback for {assignment} yet. The instructor (or you) runs: make grade A={assignment}")
    print("Feedback (open it in a browser or in JupyterLab):")
    for html in files:
        print(f"    {html}")


def read_grades_csv(path: Path) -> list[dict]:
    """The rows of ``nbgrader export``'s CSV (helper for scripts and tests)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adamclinic.grading", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["release", "submit", "grade", "feedback"])
    parser.add_argument("assignment", help="e.g. ex01_learning_rate (a folder of solutions/)")
    parser.add_argument("--student", help="student name for submit and feedback (default: your login name)")
    parser.add_argument(
        "--root", type=Path, default=REPOSITORY_ROOT, help="the course folder (default: this repository)"
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="show nbgrader's own output")
    grading = parser.add_argument_group("grade")
    grading.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="Dask workers of the local cluster, one submission each at a time (default: cores, at most 4)",
    )
    grading.add_argument(
        "--scheduler",
        help="grade on an existing Dask cluster (tcp://host:port) instead; its "
        "workers must see the course folder at the same path",
    )
    grading.add_argument("--db", dest="db_url", help="gradebook database URL (default: the course's SQLite file)")
    grading.add_argument("--cell-timeout", type=int, help="seconds one cell may run (default 300)")
    grading.add_argument("--timeout", type=int, help="seconds one whole notebook may run (default 900)")
    grading.add_argument("--cpu-seconds", type=int, help="CPU seconds per notebook (default 1800)")
    grading.add_argument("--memory-gb", type=float, help="memory per process in the sandbox, GiB (default 4)")
    grading.add_argument("--regrade", action="store_true", help="grade every submission again, changed or not")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    assignment = args.assignment.strip("/").split("/")[-1]
    if shutil.which("nbgrader") is None and not Path(sys.executable).with_name("nbgrader").exists():
        print(
            "nbgrader is not installed in this Python environment. Build the course's environment: make lab",
            file=sys.stderr,
        )
        return 2
    try:
        if args.action == "release":
            release(root, assignment, args.verbose)
        elif args.action == "submit":
            submit(root, assignment, args.student, args.verbose)
        elif args.action == "grade":
            limits = {
                key: value
                for key, value in (
                    ("cell_timeout", args.cell_timeout),
                    ("submission_timeout", args.timeout),
                    ("cpu_seconds", args.cpu_seconds),
                    ("memory_bytes", int(args.memory_gb * 2**30) if args.memory_gb else None),
                )
                if value is not None
            }
            return grade(
                root,
                assignment,
                args.verbose,
                workers=args.workers,
                scheduler=args.scheduler,
                db_url=args.db_url,
                limits=limits,
                regrade=args.regrade,
            )
        else:
            feedback(root, assignment, args.student, args.verbose)
    except GradingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
