"""Autograde a whole class in parallel with Dask, each submission in its own sandboxed process.

    python -m adamclinic.grading grade A [--workers N] [--scheduler tcp://host:port] [--db URL] ...
    make grade A=ex01_learning_rate [WORKERS=2] [SCHEDULER=tcp://host:port]

What happens, in order:

1. ``nbgrader collect --update`` brings the exchange's submissions into ``grading/submitted/``.
2. A *template* gradebook (this assignment's cells and hidden tests, no student) is made with
   ``generate_assignment`` into a scratch release, while the Dask cluster starts and its workers
   import nbgrader. The real gradebook is told about the assignment (the same ``generate_assignment``,
   skipped when it already holds the assignment unchanged) while the first tasks run.
3. One Dask task per submission (``adamclinic.grading.task.autograde_one``) runs nbgrader in a child
   process on a private copy of the template, with the student's code in bubblewrap. By default the
   tasks go to a ``LocalCluster`` of ``--workers`` single-threaded workers; ``--scheduler`` sends them
   to an existing Dask cluster whose workers see the course folder at the same path.
4. As each task returns, this process alone (trusted) copies its grades into the real gradebook (SQLite
   or any database URL nbgrader accepts) in one transaction, moves its autograded notebook into
   ``grading/autograded/``, and appends one line to ``grading/reports/<A>.journal.jsonl``.
5. Feedback (made by each task for its student) is released, grades exported, and
   ``grading/reports/<A>-report.csv`` written:
   student, score, max_score, status (graded / error / timeout / flagged) and the reason.

Killed at any moment, a rerun picks up where the journal ends: a submission whose files, hidden tests
and limits are unchanged since its journal line is not graded again, and copying a result is an
update, so a result copied twice is still one grade. The command exits non-zero only when the grader
itself failed; a student's broken or hostile notebook is that student's status, not a failure.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from adamclinic.grading.course import (
    COURSE_ID,
    GradingError,
    course_config,
    nbgrader_environment,
    stamp_new_gradebook,
)
from adamclinic.grading.task import autograde_one, warm_up

STATUSES = ("graded", "error", "timeout", "flagged")


@dataclass
class ClassGrading:
    root: Path
    assignment: str
    workers: int = 2
    scheduler: str | None = None
    db_url: str | None = None
    limits: dict = field(default_factory=dict)  # SandboxedExecute traits: cell_timeout, submission_timeout, ...
    regrade: bool = False
    progress: bool = True
    _closing: list = field(default_factory=list, init=False, repr=False)  # threads stopping the Dask cluster

    @property
    def gradebook_url(self) -> str:
        return self.db_url or f"sqlite:///{self.root / 'grading' / 'gradebook.db'}"

    @property
    def reports(self) -> Path:
        return self.root / "grading" / "reports"

    @property
    def judge_compile_cache(self) -> Path:
        """Where judges keep compiled training steps between grading runs (ADAMCLINIC_JUDGE_COMPILE_CACHE,
        or ``grading/judge-cache``): a regrade, or a judge started later in a batch, skips compiling."""
        return Path(os.environ.get("ADAMCLINIC_JUDGE_COMPILE_CACHE") or self.root / "grading" / "judge-cache")

    @property
    def journal_path(self) -> Path:
        return self.reports / f"{self.assignment}.journal.jsonl"

    @property
    def report_path(self) -> Path:
        return self.reports / f"{self.assignment}-report.csv"

    def submitted(self) -> list[str]:
        return sorted(
            p.parent.name for p in (self.root / "grading" / "submitted").glob(f"*/{self.assignment}") if p.is_dir()
        )

    # ------------------------------------------------------------------ fingerprints and the journal

    def fingerprint(self, student: str) -> str:
        """Changes when the submission, the hidden tests or the grader's limits change."""
        digest = hashlib.sha256(json.dumps(sorted(self.limits.items())).encode())
        for folder in (
            self.root / "grading" / "submitted" / student / self.assignment,
            self.root / "solutions" / self.assignment,
        ):
            for path in sorted(p for p in folder.rglob("*") if p.is_file() and ".ipynb_checkpoints" not in p.parts):
                digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()

    def journal(self) -> dict[str, dict]:
        """The last complete line per student (a line cut by a kill is ignored)."""
        entries: dict[str, dict] = {}
        if self.journal_path.exists():
            for line in self.journal_path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                entries[entry["student"]] = entry
        return entries

    def _append_journal(self, entry: dict) -> None:
        self.reports.mkdir(parents=True, exist_ok=True)
        with open(self.journal_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    # ------------------------------------------------------------------ the gradebook

    def _api(self, db_url: str | None = None, **directories: str):
        """nbgrader's Python API on this course (one import of nbgrader for the whole batch)."""
        from nbgrader.apps.api import NbGraderAPI

        api = NbGraderAPI(config=course_config(self.root, {}))
        api.coursedir.root = str(self.root)
        api.coursedir.db_url = db_url or self.gradebook_url
        for key, value in directories.items():
            setattr(api.coursedir, key, value)
        return api

    def _call(self, what: str, outcome: dict) -> None:
        if not outcome.get("success"):
            log = ((outcome.get("log") or "") + (outcome.get("error") or "")).strip().splitlines()
            raise GradingError(f"nbgrader's {what} failed for {self.assignment}:\n    " + "\n    ".join(log[-20:]))

    def make_template(self, staging: Path) -> Path:
        """A gradebook with this assignment's cells and hidden tests, and no student (each task copies it)."""
        from nbgrader.api import Gradebook

        template = staging / "template.db"
        stamp_new_gradebook(template)
        self._generate_assignment(f"sqlite:///{template}")
        duedate = self._assignment_in(self.gradebook_url, lambda record: record.duedate)
        if duedate is not None:  # late penalties are computed in the task, from the real gradebook's due date
            with Gradebook(f"sqlite:///{template}", course_id=COURSE_ID) as copy:
                copy.update_or_create_assignment(self.assignment, duedate=duedate)
        return template

    def record_assignment(self, template: Path) -> None:
        """Make sure the real gradebook holds the assignment exactly as the template does.

        ``generate_assignment`` on the real gradebook is skipped when it already holds the same
        notebooks, graded cells and source checksums (the usual case: the assignment was released
        from this source), which keeps it out of the batch's serial part.
        """
        if self._assignment_in(self.gradebook_url, _layout) != self._assignment_in(f"sqlite:///{template}", _layout):
            self._generate_assignment(self.gradebook_url)

    def _generate_assignment(self, url: str) -> None:
        with tempfile.TemporaryDirectory(prefix="adamclinic-release-") as scratch, warnings.catch_warnings():
            warnings.simplefilter("ignore", category=Warning)
            api = self._api(url, release_directory=scratch)
            self._call("generate_assignment", api.generate_assignment(self.assignment, force=True, create=True))

    def _assignment_in(self, url: str, read):
        """``read(assignment record)`` from the gradebook at ``url``, or None when it lacks the assignment."""
        from nbgrader.api import Gradebook, MissingEntry

        with Gradebook(url, course_id=COURSE_ID) as gradebook:
            try:
                return read(gradebook.find_assignment(self.assignment))
            except MissingEntry:
                return None

    def commit(self, outcome: dict, status: str, reasons: list[str]) -> tuple[float, float]:
        """Copy one task's grades into the real gradebook (one transaction) and its notebook into place."""
        from nbgrader.api import Gradebook

        student = outcome["student"]
        staging = Path(outcome["staging"])
        target = self.root / "grading" / "autograded" / student / self.assignment
        private_url = f"sqlite:///{staging / 'gradebook.db'}"
        timestamp = self._timestamp(student)
        with warnings.catch_warnings(), Gradebook(self.gradebook_url, course_id=COURSE_ID) as real:
            # nbgrader's own update_or_create_submission trips SQLAlchemy's autoflush warning; it is harmless.
            warnings.simplefilter("ignore", category=Warning)
            real.update_or_create_student(student)
            submission = real.update_or_create_submission(self.assignment, student, timestamp=timestamp)
            if outcome.get("autograded"):
                with Gradebook(private_url, course_id=COURSE_ID) as private:
                    graded = private.find_submission(self.assignment, student)
                    for notebook in graded.notebooks:
                        into = real.find_submission_notebook(notebook.name, self.assignment, student)
                        into.late_submission_penalty = notebook.late_submission_penalty
                        into.flagged = status == "flagged"
                        for grade in notebook.grades:
                            copy = real.find_grade(grade.name, notebook.name, self.assignment, student)
                            copy.auto_score, copy.needs_manual_grade = grade.auto_score, grade.needs_manual_grade
                        for comment in notebook.comments:
                            real.find_comment(
                                comment.name, notebook.name, self.assignment, student
                            ).auto_comment = comment.auto_comment
            else:  # nothing could be run: every autograded part scores zero, written answers too
                for notebook in submission.notebooks:
                    notebook.flagged = status == "flagged"
                    for grade in notebook.grades:
                        grade.auto_score, grade.needs_manual_grade = 0.0, False
            real.db.commit()
            submission = real.find_submission(self.assignment, student)
            score, max_score = submission.score, submission.max_score
        for made, folder in (
            (outcome.get("autograded"), target),
            (outcome.get("feedback"), self.root / "grading" / "feedback" / student / self.assignment),
        ):
            if folder.exists():
                shutil.rmtree(folder)
            if made:
                folder.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(made, folder)
        return score, max_score

    def _timestamp(self, student: str):
        """The submission time nbgrader recorded (written by ``nbgrader submit``, copied by collect)."""
        from nbgrader.utils import parse_utc

        path = self.root / "grading" / "submitted" / student / self.assignment / "timestamp.txt"
        try:
            return parse_utc(path.read_text().strip()) if path.exists() else None
        except ValueError:  # an unreadable timestamp: graded as on time, and the report shows no late penalty
            return None

    # ------------------------------------------------------------------ the batch

    def run(self) -> int:
        os.environ.update(nbgrader_environment())  # Dask workers inherit it: no TensorFlow in the grader
        students = self.submitted()
        if not students:
            print(f"No submission of {self.assignment} in {self.root / 'grading' / 'submitted'}.")
            return 0
        from adamclinic.grading import sandbox

        if sandbox.bubblewrap() is None:
            print(
                "warning: bubblewrap (bwrap) is not installed, so submissions run in separate processes with "
                "resource limits but can read any file the grader can. Install it: apt-get install bubblewrap",
                file=sys.stderr,
            )
        staging = self.root / "grading" / ".staging" / self.assignment
        shutil.rmtree(staging, ignore_errors=True)  # left by a killed run; nothing there is a result
        staging.mkdir(parents=True)
        done = {} if self.regrade else self.journal()
        fingerprints = {s: self.fingerprint(s) for s in students}
        todo = [s for s in students if done.get(s, {}).get("fingerprint") != fingerprints[s]]
        skipped = len(students) - len(todo)
        print(
            f"Grading {len(todo)} submission(s) of {self.assignment}"
            + (f" ({skipped} already graded and unchanged)" if skipped else "")
            + (f" on the Dask cluster at {self.scheduler}" if self.scheduler else f" with {self.workers} worker(s)")
            + ".",
            flush=True,
        )
        grader_failed = False
        if todo:
            grader_failed = self._grade_on_cluster(todo, staging, fingerprints)
        else:
            self.record_assignment(self.make_template(staging))
        shutil.rmtree(staging, ignore_errors=True)
        self._finish(students)
        for closing in self._closing:
            closing.join()
        return 1 if grader_failed else 0

    def _grade_on_cluster(self, students, staging, fingerprints) -> bool:
        client = cluster = None
        try:
            # The cluster starts, and its workers import nbgrader, while this process builds the
            # template; in sequence they were the batch's longest stretch with one core idle.
            with ThreadPoolExecutor(max_workers=1) as pool:
                starting = pool.submit(self._connect)
                try:
                    template = self.make_template(staging)
                finally:
                    client, cluster = starting.result()
            return self._grade(client, students, template, staging, fingerprints)
        finally:  # stopping the workers takes half a second; the batch writes its report meanwhile
            if client is not None:
                closing = threading.Thread(target=self._disconnect, args=(client, cluster), name="dask-close")
                closing.start()
                self._closing.append(closing)

    @staticmethod
    def _disconnect(client, cluster) -> None:
        client.close()
        if cluster is not None:
            cluster.close()

    def _connect(self):
        """A client of the Dask cluster (a new local one unless ``scheduler``), its workers warmed up."""
        import dask
        from dask.distributed import Client, LocalCluster

        cluster = None
        if self.scheduler:
            client = Client(self.scheduler, timeout="30s")
        else:
            # Dask's statistical profiler samples each task's stack every 10 ms; with two workers on
            # two cores it cost a tenth of the batch (python -m adamclinic.bench grading), and a grader
            # has no use for it.
            with dask.config.set({"distributed.worker.profile.enabled": False}):
                cluster = LocalCluster(
                    n_workers=self.workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=":0",
                    silence_logs=logging.ERROR,
                    memory_limit=0,
                )
            client = Client(cluster)
        client.run(warm_up, on_error="ignore")  # only a head start: a task imports what it needs
        return client, cluster

    def _specs(self, students, template, staging) -> list[dict]:
        notebooks = len(list((self.root / "solutions" / self.assignment).glob("*.ipynb")))
        # Each local worker's kernel gets its share of the cores, so two TensorFlow runs do not fight
        # over both (see the grading benchmark in the README); a remote cluster sets its own.
        threads = 0 if self.scheduler else max(1, (os.cpu_count() or 1) // self.workers)
        return [
            {
                "root": str(self.root),
                "assignment": self.assignment,
                "student": s,
                "template_db": str(template),
                "staging": str(staging / f"{s}-{uuid.uuid4().hex[:8]}"),
                "limits": self.limits,
                "threads": threads,
                "judge_compile_cache": str(self.judge_compile_cache),
                "notebooks": notebooks,
            }
            for s in students
        ]

    def _grade(self, client, students, template, staging, fingerprints) -> bool:
        from dask.distributed import as_completed
        from tqdm import tqdm

        failed = False
        futures = [
            client.submit(
                autograde_one,
                spec,
                key=f"autograde-{self.assignment}-{spec['student']}-{uuid.uuid4().hex[:6]}",
                pure=False,
                retries=1,
            )
            for spec in self._specs(students, template, staging)
        ]
        self.record_assignment(template)  # while the first submissions are graded
        bar = tqdm(
            total=len(futures), unit="submission", disable=not self.progress, file=sys.stderr, dynamic_ncols=True
        )
        for count, future in enumerate(as_completed(futures), start=1):
            try:
                outcome = future.result()
            except Exception as error:  # the grader's own failure (worker lost twice, a bug)
                failed = True
                print(f"grader failure on a task: {type(error).__name__}: {error}", file=sys.stderr)
                bar.update(1)
                continue
            status, reasons = self._status(outcome)
            score, max_score = self.commit(outcome, status, reasons)
            student = outcome["student"]
            self._append_journal(
                {
                    "student": student,
                    "fingerprint": fingerprints[student],
                    "status": status,
                    "reason": "; ".join(reasons),
                    "score": score,
                    "max_score": max_score,
                    "graded_at": datetime.datetime.now(datetime.UTC).isoformat(),
                }
            )
            bar.update(1)
            tqdm.write(
                f"[{count}/{len(futures)}] {student}: {score:g} / {max_score:g} ({status})"
                + (f": {reasons[0]}" if reasons and status != "graded" else ""),
                file=sys.stdout,
            )
        bar.close()
        return failed

    @staticmethod
    def _status(outcome: dict) -> tuple[str, list[str]]:
        if outcome.get("failure"):
            return "error", [outcome["failure"]]
        notebooks = (outcome.get("judgement") or {}).get("notebooks", {})
        statuses = [n.get("status", "error") for n in notebooks.values()]
        reasons = [r for n in notebooks.values() for r in n.get("reasons", [])]
        for status in ("flagged", "timeout", "error"):
            if status in statuses:
                return status, reasons
        return "graded", reasons

    # ------------------------------------------------------------------ after the batch

    def _finish(self, students: list[str]) -> None:
        from nbgrader.api import Gradebook
        from nbgrader.plugins import CsvExportPlugin

        journal = self.journal()
        graded = [s for s in students if (self.root / "grading" / "autograded" / s / self.assignment).is_dir()]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=Warning)
            if graded:  # each task made its student's feedback page; the exchange gets them all
                self._api().release_feedback(self.assignment)
            self.reports.mkdir(parents=True, exist_ok=True)
            with Gradebook(self.gradebook_url, course_id=COURSE_ID) as gradebook:
                CsvExportPlugin(to=str(self.reports / "grades.csv")).export(gradebook)
        with open(self.report_path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["student", "score", "max_score", "status", "reason"])
            for student in students:
                entry = journal.get(student, {})
                writer.writerow(
                    [
                        student,
                        entry.get("score", ""),
                        entry.get("max_score", ""),
                        entry.get("status", "error"),
                        entry.get("reason", "not graded"),
                    ]
                )
        counts = {s: sum(1 for st in students if journal.get(st, {}).get("status") == s) for s in STATUSES}
        print(
            f"\n{self.assignment}: "
            + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
            + f". Report: {self.report_path}"
        )


def _layout(record) -> dict:
    """What ``generate_assignment`` records of an assignment: notebooks, graded cells, source checksums."""
    return {
        notebook.name: sorted((cell.name, cell.cell_type, cell.locked, cell.checksum) for cell in notebook.source_cells)
        + sorted((cell.name, cell.max_score) for cell in notebook.grade_cells)
        + sorted(cell.name for cell in notebook.solution_cells)
        + sorted(cell.name for cell in notebook.task_cells)
        for notebook in record.notebooks
    }


def read_report(path: Path) -> dict[str, dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["student"]: row for row in csv.DictReader(handle)}
