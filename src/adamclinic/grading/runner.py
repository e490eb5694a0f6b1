"""Run one student notebook inside the grading sandbox and report what happened, cell by cell.

    python -m adamclinic.grading.runner IN.ipynb OUT.ipynb REPORT.json --cell-timeout S --deadline S

This is what ``adamclinic.grading.execute`` starts inside bubblewrap in place of nbgrader's own
Execute step. It executes every code cell in order, as nbgrader would, and adds what nbgrader lacks:

* a wall-clock limit for the whole notebook (``--deadline``) on top of the per-cell limit: past it,
  the kernel is stopped and every cell not yet run is marked "not run";
* a kernel that dies (``os._exit``, a crash, a resource limit) stops the run; the rest is "not run";
* before each hidden test cell, ``adamclinic.grading.integrity.inspect_kernel`` is evaluated as a user
  expression and its findings are reported as tampering;
* each hidden test cell is sent with one extra last line that stores a fresh random token in the
  kernel; a test cell whose reply says "ok" but that never stored its token did not run its own code
  (an input transformer replaced it) and is reported;
* outputs are capped (a 10^6-line print flood becomes its first lines and a note).

The report and the executed notebook are read by the trusted grader, which decides the points.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import os
import secrets
import signal
import sys
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

MAX_STREAM_LINES = 2000
MAX_OUTPUT_CHARS = 2_000_000
EVIDENCE_NAME = "_adamclinic_test_cell_finished"
INTEGRITY_MODULE = "_adamclinic_integrity"


def install_integrity_expression() -> str:
    """A user expression that loads adamclinic.grading.integrity into the kernel as a bare module and records
    the kernel's baseline. Loading the file's source (rather than importing the package) keeps
    TensorFlow out of kernels that never asked for it."""
    import adamclinic.grading.integrity

    with open(adamclinic.grading.integrity.__file__, encoding="utf-8") as handle:
        source = handle.read()
    return (
        f"(lambda module: (exec(compile({source!r}, 'adamclinic-integrity', 'exec'), module.__dict__), "
        f"__import__('sys').modules.setdefault({INTEGRITY_MODULE!r}, module))[1].record_baseline())"
        f"(__import__('types').ModuleType({INTEGRITY_MODULE!r}))"
    )


def is_hidden_test(cell) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def cap_outputs(cell) -> bool:
    """Trim a flood of output to its first lines; True when something was cut."""
    cut = False
    kept, lines_seen, chars_seen = [], {}, 0
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            lines = output.get("text", "").splitlines(keepends=True)
            room = MAX_STREAM_LINES - lines_seen.get(output.get("name"), 0)
            if room <= 0:
                cut = True
                continue
            if len(lines) > room:
                lines, cut = lines[:room], True
                output["text"] = "".join(lines)
            lines_seen[output.get("name")] = lines_seen.get(output.get("name"), 0) + len(lines)
        size = len(json.dumps(output))
        if chars_seen + size > MAX_OUTPUT_CHARS:
            cut = True
            continue
        chars_seen += size
        kept.append(output)
    if cut:
        kept.append(
            nbformat.v4.new_output("stream", name="stdout", text="\n[output cut by the grader: too many lines]\n")
        )
    cell["outputs"] = kept
    return cut


def not_run_error(reason: str):
    return nbformat.v4.new_output("error", ename="NotRun", evalue=reason, traceback=[f"Not run: {reason}"])


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "the kernel stopped answering"
    if returncode < 0:
        number = -returncode
        meaning = {
            signal.SIGXCPU: "the CPU-time limit",
            signal.SIGKILL: "a kill (often the memory or CPU limit)",
            signal.SIGSEGV: "a crash (segmentation fault)",
            signal.SIGXFSZ: "the file-size limit",
            signal.SIGABRT: "an abort",
        }.get(number, f"signal {number}")
        return f"the kernel was stopped by {meaning}"
    return f"the kernel exited with status {returncode} (os._exit or a crash)"


class KernelBusy(Exception):
    """The kernel did not answer in time: a cell is still running and ignores interrupts."""


class GradingRunner(NotebookClient):
    """nbclient's executor with a whole-notebook deadline, kernel checks around test cells and caps."""

    def __init__(self, nb, cell_timeout: float, deadline: float, **kwargs):
        super().__init__(
            nb,
            timeout=int(cell_timeout),
            allow_errors=True,
            interrupt_on_timeout=True,
            error_on_timeout={
                "ename": "CellTimeoutError",
                "evalue": f"the cell ran longer than {int(cell_timeout)} s",
                "traceback": [f"CellTimeoutError: interrupted after {int(cell_timeout)} s"],
            },
            shutdown_kernel="immediate",
            raise_on_iopub_timeout=False,
            record_timing=False,
            kernel_name="python3",
            extra_arguments=["--HistoryManager.hist_file=:memory:"],
            **kwargs,
        )
        self.cell_timeout = cell_timeout
        self.deadline = deadline
        self.report: dict = {"cells": {}, "stopped": None}
        self._last_reply: dict | None = None
        self.current_index = 0
        self.on_cell_executed = self._remember_reply

    def _remember_reply(self, cell, cell_index, execute_reply):
        self._last_reply = execute_reply

    async def _user_expression(self, expression: str):
        """Evaluate ``expression`` in the kernel without running a cell (no input transformer sees it)."""
        self.timeout = max(1, int(min(30, self.deadline - time.monotonic())))
        msg_id = self.kc.execute("", silent=True, store_history=False, user_expressions={"value": expression})
        reply = await self.async_wait_for_reply(msg_id)
        if reply is None:  # no answer in time (nbclient has already interrupted the kernel)
            raise KernelBusy()
        result = (reply or {}).get("content", {}).get("user_expressions", {}).get("value", {})
        if result.get("status") != "ok":
            return None
        try:
            return ast.literal_eval(result["data"]["text/plain"])
        except (KeyError, ValueError, SyntaxError):
            return None

    async def _inspect(self, source: str) -> list[str]:
        answer = await self._user_expression(f"__import__({INTEGRITY_MODULE!r}).inspect_kernel({source!r})")
        try:
            found = json.loads(answer) if isinstance(answer, str) else None
        except ValueError:
            found = None
        if not isinstance(found, list):
            return ["the grader could not inspect the kernel before this test (its machinery was changed)"]
        return [str(item) for item in found]

    def _mark_rest(self, start: int, reason: str) -> None:
        for cell in self.nb.cells[start:]:
            if cell.cell_type == "code":
                cell.outputs = [not_run_error(reason)]

    async def run(self) -> None:
        async with self.async_setup_kernel(env=kernel_environment()):
            ready = await self._user_expression(install_integrity_expression())
            if ready != "ready":
                raise RuntimeError("the kernel did not start cleanly")
            for index, cell in enumerate(self.nb.cells):
                if cell.cell_type != "code":
                    continue
                self.current_index = index
                remaining = self.deadline - time.monotonic()
                if remaining <= 1:
                    self._stop(index, "timeout", "the notebook ran past its time limit")
                    return
                test = is_hidden_test(cell)
                entry: dict = {}
                try:
                    if test:
                        entry["tampering"] = await self._inspect(cell.source)
                    token = secrets.token_hex(8)
                    original = cell.source
                    if test:
                        cell.source = f"{original}\n{EVIDENCE_NAME} = {token!r}\n"
                    self.timeout = max(1, int(min(self.cell_timeout, self.deadline - time.monotonic())))
                    self._last_reply = None
                    try:
                        await self.async_execute_cell(cell, index, store_history=True)
                    finally:
                        cell.source = original
                    status = (self._last_reply or {}).get("content", {}).get("status", "unknown")
                    entry["status"] = status
                    if test and status == "ok":
                        entry["finished"] = (await self._user_expression(EVIDENCE_NAME)) == token
                except DeadKernelError:
                    process = getattr(getattr(self.km, "provisioner", None), "process", None)
                    code = process.poll() if process is not None else None
                    self.report["cells"][str(index)] = entry
                    self._stop(index, "kernel_died", describe_exit(code))
                    return
                except (TimeoutError, KernelBusy):
                    self._stop(
                        index, "timeout", "the kernel stopped answering: a cell ignores interrupts past its time limit"
                    )
                    return
                if cap_outputs(cell):
                    entry["output_cut"] = True
                if any(o.get("ename") == "CellTimeoutError" for o in cell.outputs if o.get("output_type") == "error"):
                    entry["cell_timeout"] = True
                self.report["cells"][str(index)] = entry

    def _stop(self, index: int, kind: str, reason: str) -> None:
        self.report["stopped"] = {"kind": kind, "reason": reason, "cell": index}
        self._mark_rest(index, reason)


def kernel_environment() -> dict[str, str]:
    """The student's kernel gets the course's normal environment, without the grader's own switches."""
    env = {k: v for k, v in os.environ.items() if k != "ADAMCLINIC_SKIP_TENSORFLOW"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["NBGRADER_EXECUTION"] = "autograde"
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("report")
    parser.add_argument("--cell-timeout", type=float, default=300)
    parser.add_argument("--deadline", type=float, default=900, help="seconds for the whole notebook")
    args = parser.parse_args(argv)
    nb = nbformat.read(args.input, as_version=4)
    runner = GradingRunner(
        nb, args.cell_timeout, time.monotonic() + args.deadline, resources={"metadata": {"path": os.getcwd()}}
    )
    try:
        # nbclient waits for a reply after interrupting a stuck cell; the deadline must not.
        asyncio.run(asyncio.wait_for(runner.run(), args.deadline + 10))
    except TimeoutError:
        runner._stop(runner.current_index, "timeout", "the notebook ran past its time limit")
    except Exception as error:  # the kernel could not start, or nbclient failed: say so, keep what ran
        runner.report["stopped"] = runner.report["stopped"] or {
            "kind": "kernel_died",
            "reason": f"the notebook could not be run ({type(error).__name__}: {error})",
            "cell": None,
        }
    nbformat.write(nb, args.output)
    with open(args.report, "w", encoding="utf-8") as handle:
        json.dump(runner.report, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
