"""nbgrader's Execute step, moved into a sandbox, and the judgement of its hidden test cells.

The course's nbgrader configuration puts ``SandboxedExecute`` where nbgrader's ``Execute`` was in
``Autograde.autograde_preprocessors``. nbgrader's own process (trusted: it holds the gradebook and the
hidden tests) never runs student code; it hands the sanitized notebook (test cells already restored
from the gradebook) to ``adamclinic.grading.runner`` inside ``adamclinic.grading.sandbox``, takes back only
the outputs, and decides which hidden test cells earn their points:

* a test cell earns its points only if the runner saw it reply "ok", saw it finish its own code, and
  found no tampering before it; a cell that was not run (kernel died, time limit) gets an error;
* tampering zeroes that test and is reported as ``flagged`` with the reason, for the instructor;
* stderr in a test cell that passed (a TensorFlow or Keras warning) becomes ordinary output, since
  nbgrader would otherwise give such a cell zero;
* the returned notebook must have exactly the cells that were sent, with the same sources.

The judgement (status and reasons) is written as JSON to ``judgement_path`` for the batch grader.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbconvert.exporters.exporter import ResourcesDict
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Bool, Integer, Unicode

from adamclinic.grading import sandbox
from adamclinic.grading.runner import is_hidden_test, not_run_error

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

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict):
        folder = Path(resources.get("metadata", {}).get("path") or ".")
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="adamclinic-sandbox-") as scratch:
            work, io = Path(scratch) / "work", Path(scratch) / "io"
            shutil.copytree(folder, work, ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints"))
            io.mkdir()
            nbformat.write(nb, io / "in.ipynb")
            outcome = self._run(work, io)
            executed, report = self._read(io, nb, outcome)
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

    def _run(self, work: Path, io: Path) -> dict:
        limits = sandbox.Limits(cpu_seconds=self.cpu_seconds, memory_bytes=self.memory_bytes)
        in_box = sandbox.bubblewrap() is not None
        if not in_box and self.require_bubblewrap:
            raise RuntimeError("bubblewrap (bwrap) is not installed: apt-get install bubblewrap")
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
                preexec_fn=sandbox.set_limits(limits),
            )
            try:
                process.wait(timeout=self.submission_timeout + 60)
                killed = False
            except subprocess.TimeoutExpired:
                _kill_group(process)
                killed = True
        return {"sandboxed": in_box, "returncode": process.returncode, "killed": killed}

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
            cell.outputs = ran.get("outputs", [])
            cell.execution_count = ran.get("execution_count")
            entry = cells.get(str(index), {}) if isinstance(cells, dict) else {}
            name = cell.metadata.get("nbgrader", {}).get("grade_id", f"cell {index}")
            if entry.get("cell_timeout"):
                notes.append(f"{name}: interrupted after {self.cell_timeout} s")
            if entry.get("output_cut"):
                notes.append(f"{name}: output cut (too many lines)")
            if not is_hidden_test(cell):
                continue
            tampering = [str(t) for t in entry.get("tampering", [])][:5]
            if entry.get("status") == "ok" and not entry.get("finished"):
                tampering.append("the test cell replied 'ok' without running its own code to the end")
            if tampering:
                flagged.append(f"{name}: {'; '.join(tampering)}")
                cell.outputs = [
                    error_output("Flagged", "zero points, for the instructor to review: " + "; ".join(tampering))
                ]
            elif entry.get("status") == "ok" and entry.get("finished"):
                for output in cell.outputs:  # a passing test's warnings are not failures
                    if output.get("output_type") == "stream" and output.get("name") == "stderr":
                        output["name"] = "stdout"
            elif not any(o.get("output_type") == "error" for o in cell.outputs):
                cell.outputs.append(error_output("NotJudged", "this test did not run to a verdict"))
        if flagged:
            status = "flagged"
        elif stopped:
            status = "timeout" if stopped.get("kind") == "timeout" else "error"
        else:
            status = "graded"
        where = f"at cell {stopped.get('cell')}" if stopped and stopped.get("cell") is not None else "before any cell"
        reasons = flagged + ([f"stopped {where}: {stopped.get('reason')}"] if stopped else []) + notes
        return {"status": status, "reasons": reasons, "flagged": flagged, "sandboxed": outcome["sandboxed"]}


def _kill_group(process: subprocess.Popen) -> None:
    import os
    import signal

    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
