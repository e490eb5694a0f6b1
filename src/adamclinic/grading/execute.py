"""nbgrader's Execute step, split in two: the student's notebook in one sandbox, the hidden tests in another.

The course's nbgrader configuration puts ``SandboxedExecute`` where nbgrader's ``Execute`` was in
``Autograde.autograde_preprocessors``. nbgrader's own process (trusted: it holds the gradebook and the
hidden tests) never runs student code, and neither does the process that decides a score:

* the student's notebook, with every hidden test cell blanked, runs in ``adamclinic.grading.runner``
  inside ``adamclinic.grading.sandbox`` (the student's kernel never sees a hidden test);
* the hidden tests, with the assignment's locked setup cells, run in ``adamclinic.judging.judge``, a
  fresh process in a sandbox of its own that never runs a line of student code;
* this process relays between the two: when the notebook reaches a hidden test, the judge runs it,
  and the student's answers it asks for come out of the kernel as plain data
  (``adamclinic.judging.plain``); a student's function is called in the kernel with plain arguments.
  The verdict (passed, and the test's own output and message) is the judge's alone, and becomes that
  test cell's output, which nbgrader scores as usual;
* stderr in a test that passed (a TensorFlow or Keras warning) is ordinary output, since nbgrader
  would otherwise give such a cell zero; a test the notebook never reached (kernel died, time limit)
  gets an error;
* the returned notebook must have exactly the cells that were sent, with the same sources.

The judgement (status and reasons) is written as JSON to ``judgement_path`` for the batch grader.
"""

from __future__ import annotations

import copy
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat
from nbconvert.exporters.exporter import ResourcesDict
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Bool, Integer, Unicode

from adamclinic.grading import sandbox
from adamclinic.grading.runner import HIDDEN_TEST_PLACEHOLDER, is_hidden_test, not_run_error

MAX_RESULT_BYTES = 64 * 2**20


def error_output(ename: str, message: str) -> NotebookNode:
    return nbformat.v4.new_output("error", ename=ename, evalue=message, traceback=[f"{ename}: {message}"])


class DropDuplicateIds(NbGraderPreprocessor):
    """nbgrader's DeduplicateIds, without its failure: a student who pasted a copy of a graded cell.

    nbgrader 0.9 empties the nbgrader metadata of every earlier copy of a ``grade_id``, and its own
    metadata check then rejects that empty metadata as "an old version", so one pasted cell costs the
    whole notebook. Here the earlier copies simply stop being graded cells (the last one, restored
    from the gradebook by OverwriteCells, is graded), and the student keeps the points of the rest.
    """

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict):
        seen: set[str] = set()
        for cell in reversed(nb.cells):
            grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if grade_id is None:
                continue
            if grade_id in seen:
                self.log.warning("Cell with id '%s' exists multiple times: the last one is graded", grade_id)
                del cell.metadata["nbgrader"]
            else:
                seen.add(grade_id)
        return nb, resources


class SandboxedExecute(NbGraderPreprocessor):
    cell_timeout = Integer(300, help="seconds one cell may run before it is interrupted").tag(config=True)
    submission_timeout = Integer(900, help="seconds the whole notebook may run").tag(config=True)
    cpu_seconds = Integer(1800, help="CPU seconds for the whole notebook (kernel included)").tag(config=True)
    memory_bytes = Integer(4 * 2**30, help="address space of each process in the sandbox").tag(config=True)
    require_bubblewrap = Bool(False, help="fail rather than run without bubblewrap").tag(config=True)
    threads = Integer(0, help="CPU threads for TensorFlow and BLAS in the kernel (0: as many as it likes)").tag(
        config=True
    )
    judgement_path = Unicode("", help="where to write the judgement JSON (empty: nowhere)").tag(config=True)
    judge_compile_cache = Unicode(
        "", help="a folder where judges keep XLA's compiled training steps between processes (empty: none)"
    ).tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict):
        folder = Path(resources.get("metadata", {}).get("path") or ".")
        started = time.monotonic()
        tests = [i for i, cell in enumerate(nb.cells) if is_hidden_test(cell)]
        sent = copy.deepcopy(nb)
        for index in tests:
            sent.cells[index].source = HIDDEN_TEST_PLACEHOLDER
        with tempfile.TemporaryDirectory(prefix="adamclinic-sandbox-") as scratch:
            work, io = Path(scratch) / "work", Path(scratch) / "io"
            shutil.copytree(folder, work, ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints"))
            io.mkdir()
            nbformat.write(sent, io / "in.ipynb")
            judge = self._judge_for_this_notebook()
            outcome = {}
            try:
                outcome = self._run(work, io, nb, tests, judge, started)
            finally:
                outcome["judge_log"] = judge.log_tail()
                if self.judge_failure is None and outcome.get("returncode") is not None:
                    JUDGES.put_back(judge)
                else:
                    judge.stop()
            executed, report = self._read(io, sent, outcome)
            log = (
                (io / "runner.log").read_bytes()[-2000:].decode(errors="replace")
                if (io / "runner.log").exists()
                else ""
            )
            outcome["log"] = [line for line in log.splitlines() if line.strip()][-3:]
        judgement = self._judge(nb, executed, report, outcome)
        judgement["seconds"] = round(time.monotonic() - started, 2)
        if self.judgement_path:
            path = Path(self.judgement_path)
            previous = json.loads(path.read_text()) if path.exists() else {"notebooks": {}}
            previous["notebooks"][resources.get("unique_key", "notebook")] = judgement
            path.write_text(json.dumps(previous, indent=1))
        return nb, resources

    # ------------------------------------------------------------------ running

    def _limits(self) -> sandbox.Limits:
        return sandbox.Limits(cpu_seconds=self.cpu_seconds, memory_bytes=self.memory_bytes)

    def _judge_for_this_notebook(self) -> Link:
        """An idle judge of this process with the same settings, told to forget the last notebook, or a new one."""
        self.judge_failure = None
        key = (
            self.threads,
            self.cpu_seconds,
            self.memory_bytes,
            sandbox.bubblewrap() is not None,
            self.judge_compile_cache,
        )
        judge = JUDGES.take(key)
        if judge is None:
            home = Path(tempfile.mkdtemp(prefix="adamclinic-judge-"))
            (home / "work").mkdir()
            (home / "io").mkdir()
            judge = Link.start(self._judge_command(home), home / "judge.log", self._limits())
            judge.key, judge.home = key, home
        judge.epoch += 1
        judge.send({"op": "reset", "epoch": judge.epoch})
        return judge

    def _judge_command(self, home: Path) -> tuple[list[str], Path | None, dict | None]:
        """The judge: this Python, the course read-only, an empty folder, no student file, no network.

        With ``judge_compile_cache``, also that folder (read-write), as XLA's persistent compilation
        cache: a judge then loads a training step that another judge compiled in about a second instead
        of compiling it again. Only judges ever mount it: an entry holds executable code, which a
        student's sandbox must never be able to write (nor read: it holds the reference's models)."""
        inner = [sys.executable, "-m", "adamclinic.judging.judge"]
        extra = {**sandbox.thread_environment(self.threads), "ADAMCLINIC_SKIP_TENSORFLOW": "0"}
        cache = Path(self.judge_compile_cache) if self.judge_compile_cache else None
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
        if sandbox.bubblewrap() is not None:
            binds = []
            if cache is not None:
                binds = [(cache, sandbox.COMPILE_CACHE_MOUNT)]
                extra["TF_XLA_FLAGS"] = sandbox.xla_cache_flag(sandbox.COMPILE_CACHE_MOUNT)
            return sandbox.command(home / "work", home / "io", inner, self._limits(), extra, binds), None, None
        if cache is not None:
            extra["TF_XLA_FLAGS"] = sandbox.xla_cache_flag(str(cache))
        return inner, home / "work", {**sandbox.sandbox_environment(home=str(home / "work")), **extra}

    def _run(self, work: Path, io: Path, nb: NotebookNode, tests: list[int], judge: Link, started: float) -> dict:
        limits = self._limits()
        in_box = sandbox.bubblewrap() is not None
        if not in_box and self.require_bubblewrap:
            raise RuntimeError("bubblewrap (bwrap) is not installed: apt-get install bubblewrap")
        to_runner_read, to_runner_write = os.pipe()
        from_runner_read, from_runner_write = os.pipe()
        io_path = sandbox.IO_MOUNT if in_box else str(io)
        inner = [
            sys.executable,
            "-m",
            "adamclinic.grading.runner",
            f"{io_path}/in.ipynb",
            f"{io_path}/out.ipynb",
            f"{io_path}/report.json",
            "--cell-timeout",
            str(self.cell_timeout),
            "--deadline",
            str(self.submission_timeout),
            "--protocol-in",
            str(to_runner_read),
            "--protocol-out",
            str(from_runner_write),
        ]
        extra = sandbox.thread_environment(self.threads)
        if in_box:
            cmd, cwd, env = sandbox.command(work, io, inner, limits, extra), None, None
        else:
            cmd, cwd, env = inner, work, {**sandbox.sandbox_environment(home=str(work)), **extra}
        log = io / "runner.log"
        with open(log, "wb") as sink:
            process = subprocess.Popen(
                cmd,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=sink,
                pass_fds=(to_runner_read, from_runner_write),
                preexec_fn=sandbox.set_limits(limits),
            )
        os.close(to_runner_read)
        os.close(from_runner_write)
        runner = Link(process, from_runner_read, to_runner_write)
        deadline = started + self.submission_timeout + 60
        self.verdicts, self.judge_failure, self.setup_errors = {}, None, []
        try:
            self._relay(nb, tests, runner, judge, deadline)
            process.wait(timeout=max(1, deadline - time.monotonic()))
            killed = False
        except subprocess.TimeoutExpired:
            _kill_group(process)
            killed = True
        finally:
            runner.close()
        return {"sandboxed": in_box, "returncode": process.returncode, "killed": killed}

    def _relay(self, nb: NotebookNode, tests: list[int], runner: Link, judge: Link, deadline: float) -> None:
        """Pass the judge's requests to the kernel and the kernel's plain answers back, test by test.

        Only this process sends the judge a cell, and only with the trusted source nbgrader restored; the
        runner can only say which test the notebook has reached (in order) and carry answers."""
        setup = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and _locked(c) and i not in tests]
        sent_setup = 0

        def send_setup_before(index: int) -> None:
            nonlocal sent_setup
            while sent_setup < len(setup) and setup[sent_setup] < index:
                cell = setup[sent_setup]
                judge.send({"op": "cell", "index": cell, "source": nb.cells[cell].source, "test": False})
                sent_setup += 1

        send_setup_before(tests[0] if tests else len(nb.cells))  # the judge sets up while the kernel starts
        last = -1
        while True:
            message = runner.receive(deadline)
            if message is None:
                return
            index = message.get("index")
            if message.get("op") != "test" or index not in tests or index <= last:
                runner.send({"op": "next"})
                continue
            last = index
            if self.judge_failure is None:
                send_setup_before(index)
                judge.send({"op": "cell", "index": index, "source": nb.cells[index].source, "test": True})
                self._judge_one(index, runner, judge, deadline)
            runner.send({"op": "next"})

    def _judge_one(self, index: int, runner: Link, judge: Link, deadline: float) -> None:
        while True:
            message = judge.receive(deadline)
            if message is None:
                self.judge_failure = "the judge stopped (" + describe_judge_exit(judge) + ")"
                return
            op = message.get("op")
            if op in ("setup", "verdict") and message.get("epoch") != judge.epoch:
                continue  # about an earlier notebook this judge served
            if op == "setup" and message.get("error"):
                error = message["error"]
                self.setup_errors.append(
                    f"setup cell {message.get('index')}: {error.get('ename')}: {error.get('evalue')}"
                )
            elif op == "ask":
                request = {k: v for k, v in message.items() if k != "op"}
                runner.send({"op": "ask", "request": request})
                judge.send({"op": "answer", "body": self._kernel_answer(runner, judge, deadline)})
            elif op == "verdict" and message.get("index") == index:
                self.verdicts[index] = message
                return

    @staticmethod
    def _kernel_answer(runner: Link, judge: Link, deadline: float) -> dict:
        """The kernel's answer to one request; the test's own functions it calls meanwhile run in the judge."""
        while True:
            message = runner.receive(deadline)
            if message is None:
                return {"error": "the kernel stopped"}
            if message.get("op") == "callback":
                judge.send({"op": "callback", **{k: message.get(k) for k in ("handle", "args", "kwargs")}})
                result = judge.receive(deadline)
                body = (result or {}).get("body") if (result or {}).get("op") == "callback-result" else None
                runner.send({"op": "callback-result", "body": body if isinstance(body, dict) else {"error": "none"}})
                continue
            body = message.get("body") if message.get("op") == "answer" else None
            return body if isinstance(body, dict) else {"error": "the kernel gave no answer"}

    def _read(self, io: Path, sent: NotebookNode, outcome: dict):
        out, report_file = io / "out.ipynb", io / "report.json"
        if outcome["killed"] or not out.exists() or out.stat().st_size > MAX_RESULT_BYTES:
            return None, None
        try:
            executed = nbformat.read(out, as_version=4)
            report = json.loads(report_file.read_text())
        except Exception:
            return None, None
        same_cells = len(executed.cells) == len(sent.cells) and all(
            a.cell_type == b.cell_type and a.source == b.source for a, b in zip(executed.cells, sent.cells)
        )
        if not same_cells or not isinstance(report, dict):
            return None, {"changed": True}
        return executed, report

    # ------------------------------------------------------------------ judging

    def _judge(self, nb: NotebookNode, executed, report, outcome: dict) -> dict:
        flagged, notes = [], []
        stopped = (report or {}).get("stopped") if isinstance(report, dict) else None
        if executed is None:
            if outcome["killed"]:
                status, reason = "timeout", f"the notebook ran past the {self.submission_timeout} s limit"
            elif report and report.get("changed"):
                status, reason = "flagged", "the notebook's cells changed while it ran"
                flagged.append(reason)
            else:
                status, reason = (
                    "error",
                    (
                        "the sandbox returned no result (the notebook could not be run): "
                        + " | ".join(outcome.get("log", []))
                    ),
                )
            for cell in nb.cells:
                if cell.cell_type == "code":
                    cell.outputs = [not_run_error(reason)]
            return {"status": status, "reasons": [reason], "flagged": flagged, "sandboxed": outcome["sandboxed"]}

        cells = report.get("cells", {})
        for index, (cell, ran) in enumerate(zip(nb.cells, executed.cells)):
            if cell.cell_type != "code":
                continue
            entry = cells.get(str(index), {}) if isinstance(cells, dict) else {}
            name = cell.metadata.get("nbgrader", {}).get("grade_id", f"cell {index}")
            if not is_hidden_test(cell):
                cell.outputs = ran.get("outputs", [])
                cell.execution_count = ran.get("execution_count")
                if entry.get("cell_timeout"):
                    notes.append(f"{name}: interrupted after {self.cell_timeout} s")
                if entry.get("output_cut"):
                    notes.append(f"{name}: output cut (too many lines)")
                continue
            if entry.get("cell_timeout"):
                notes.append(f"{name}: the student's code it calls ran past the {self.cell_timeout} s time limit")
            verdict = self.verdicts.get(index)
            if verdict is None:
                reason = self.judge_failure or (stopped or {}).get("reason") or "the notebook did not reach this test"
                cell.outputs = [not_run_error(reason)]
                continue
            cell.outputs = [nbformat.from_dict(o) for o in verdict.get("outputs", []) if isinstance(o, dict)]
            if not verdict.get("passed") and not any(o.get("output_type") == "error" for o in cell.outputs):
                cell.outputs.append(error_output("NotJudged", "this test did not pass"))
        runner_died = outcome.get("returncode") not in (0, None)
        if runner_died:
            # The runner always exits 0, after a stopped notebook too; anything else means something in the
            # sandbox killed it. The verdicts stand: the judge computed them, not the runner.
            notes.insert(
                0, f"the sandboxed runner was stopped (exit status {outcome['returncode']}): the notebook's own code?"
            )
        if self.judge_failure or runner_died:
            status = "error"
        elif stopped:
            status = "timeout" if stopped.get("kind") == "timeout" else "error"
        else:
            status = "graded"
        where = f"at cell {stopped.get('cell')}" if stopped and stopped.get("cell") is not None else "before any cell"
        reasons = (
            ([self.judge_failure + ": " + outcome.get("judge_log", "")[-300:]] if self.judge_failure else [])
            + ([f"stopped {where}: {stopped.get('reason')}"] if stopped else [])
            + notes
            + [f"the judge's {e}" for e in self.setup_errors]
        )
        return {"status": status, "reasons": reasons, "flagged": flagged, "sandboxed": outcome["sandboxed"]}


def _locked(cell) -> bool:
    return bool(cell.get("metadata", {}).get("nbgrader", {}).get("locked"))


class Link:
    """A child process spoken to in JSON lines over two pipes, read with a deadline."""

    def __init__(self, process: subprocess.Popen, read_fd: int, write_fd: int):
        self.process, self.read_fd, self.write_fd = process, read_fd, write_fd
        self.buffer = b""
        self.closed = False
        self.key: tuple | None = None
        self.home: Path | None = None
        self.uses = 0
        self.epoch = 0  # which notebook: messages about an earlier one are skipped

    def log_tail(self) -> str:
        log = self.home / "judge.log" if self.home else None
        return log.read_bytes()[-1500:].decode(errors="replace") if log and log.exists() else ""

    @classmethod
    def start(cls, command: tuple[list[str], Path | None, dict | None], log: Path, limits) -> Link:
        cmd, cwd, env = command
        with open(log, "wb") as sink:
            process = subprocess.Popen(
                cmd,
                cwd=cwd,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=sink,
                preexec_fn=sandbox.set_limits(limits),
            )
        return cls(process, process.stdout.fileno(), process.stdin.fileno())

    def send(self, message: dict) -> None:
        if self.closed:
            return
        data = (json.dumps(message) + "\n").encode()
        try:
            while data:
                written = os.write(self.write_fd, data)
                data = data[written:]
        except OSError:  # the other end has gone; what it would have answered is missing
            self.closed = True

    def receive(self, deadline: float) -> dict | None:
        """The next message, or None at end of file, past the deadline, or for a line too long to be one."""
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or len(self.buffer) > MAX_RESULT_BYTES:
                return None
            ready, _, _ = select.select([self.read_fd], [], [], min(remaining, 5))
            if not ready:
                continue
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):  # not JSON, or nested too deep for Python's parser
            return None
        return message if isinstance(message, dict) else None

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    def stop(self) -> None:
        self.send({"op": "quit"})
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _kill_group(self.process)
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        if self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)


class JudgePool:
    """Idle judges of this process (a Dask worker grades one notebook at a time), kept between notebooks.

    A judge never runs student code, so one that finished a notebook cleanly can judge the next: it
    starts each notebook from an empty namespace (``reset``), and keeps only what is the same for every
    student, TensorFlow loaded and the course's compiled training steps (about 5 s and 1 to 3 s per
    architecture). A judge that failed, timed out or served ``MAX_USES`` notebooks is stopped."""

    MAX_USES = 40

    def __init__(self):
        self.idle: list[Link] = []
        self.lock = threading.Lock()

    def take(self, key: tuple) -> Link | None:
        with self.lock:
            for judge in self.idle:
                if judge.key == key:
                    self.idle.remove(judge)
                    if judge.process.poll() is None:
                        return judge
                    judge.stop()
        return None

    def put_back(self, judge: Link) -> None:
        judge.uses += 1
        if judge.process.poll() is not None or judge.uses >= self.MAX_USES:
            judge.stop()
            return
        with self.lock:
            self.idle.append(judge)


JUDGES = JudgePool()


def describe_judge_exit(judge: Link) -> str:
    code = judge.process.poll()
    return "still running past the time limit" if code is None else f"exit status {code}"


def _kill_group(process: subprocess.Popen) -> None:
    import os
    import signal

    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
