"""Run one student notebook inside the grading sandbox and report what happened, cell by cell.

    python -m adamclinic.grading.runner IN.ipynb OUT.ipynb REPORT.json --cell-timeout S --deadline S \
        --protocol-in FD --protocol-out FD

This is what ``adamclinic.grading.execute`` starts inside bubblewrap in place of nbgrader's own
Execute step. It executes every code cell but the hidden tests in order, as nbgrader would, and adds
what nbgrader lacks:

* a wall-clock limit for the whole notebook (``--deadline``) on top of the per-cell limit: past it,
  the kernel is stopped and every cell not yet run is marked "not run";
* a kernel that dies (``os._exit``, a crash, a resource limit) stops the run; the rest is "not run";
* outputs are capped (a 10^6-line print flood becomes its first lines and a note).

Hidden test cells never reach this sandbox: the notebook arrives with their sources blanked, and the
tests run in the judge (``adamclinic.judging.judge``), a separate process outside it. At a test cell
the runner says so on ``--protocol-out`` and then serves the judge's requests, relayed by the grader on
``--protocol-in``. One silent execution of ``adamclinic.judging.handin.serve`` in the kernel answers
all of that test's requests over two FIFOs (about 0.8 ms a request, where one execution per request
cost about 5 ms), handing the student's answers out as plain data, until the grader says ``next``.
Nothing this process or the kernel writes is a verdict.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import json
import os
import secrets
import select
import signal
import sys
import tempfile
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from nbclient.util import ensure_async

MAX_STREAM_LINES = 2000
MAX_OUTPUT_CHARS = 2_000_000
MAX_ANSWER_BYTES = 64 * 2**20
HIDDEN_TEST_PLACEHOLDER = "# A hidden test: it runs in the grader's judge, outside this kernel.\n"
ANSWER_FOLDER = tempfile.gettempdir()  # the sandbox's private /tmp, shared by this process and the kernel


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


class Protocol:
    """Line-delimited JSON with the grader, on two inherited file descriptors the kernel never gets."""

    def __init__(self, read_fd: int | None, write_fd: int | None):
        self.reader = os.fdopen(read_fd, "r", encoding="utf-8") if read_fd is not None else None
        self.writer = os.fdopen(write_fd, "w", encoding="utf-8") if write_fd is not None else None

    def send(self, message: dict) -> None:
        if self.writer is None:
            raise RuntimeError("no grader to report to: hidden tests need --protocol-in and --protocol-out")
        self.writer.write(json.dumps(message) + "\n")
        self.writer.flush()

    def receive(self) -> dict | None:
        line = self.reader.readline() if self.reader is not None else ""
        if not line:
            return None
        try:
            message = json.loads(line)
        except ValueError:
            return None
        return message if isinstance(message, dict) else None


class HandinSession:
    """The runner's end of one test's FIFOs to ``handin.serve`` in the kernel: JSON lines each way."""

    def __init__(self, to_kernel: int, from_kernel: int, paths: list[str]):
        self.to_kernel, self.from_kernel, self.paths = to_kernel, from_kernel, paths
        self.buffer = b""
        self.broken = ""
        self.msg_id = ""

    def send(self, message: dict) -> None:
        data = json.dumps(message).encode() + b"\n"
        while data:
            data = data[os.write(self.to_kernel, data) :]

    def receive(self, deadline: float) -> dict | None:
        """The kernel's next line, ``{"op": "too-large"}`` past the size limit, or None at the deadline."""
        while b"\n" not in self.buffer:
            if len(self.buffer) > MAX_ANSWER_BYTES:
                return {"op": "too-large"}
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([self.from_kernel], [], [], wait)[0]:
                return None
            self.buffer += os.read(self.from_kernel, 1 << 20)
        line, _, self.buffer = self.buffer.partition(b"\n")
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):  # not JSON, or nested too deep for Python's parser
            return {"op": "not-json"}
        return message if isinstance(message, dict) else {"op": "not-json"}

    def close(self) -> None:
        for fd in (self.to_kernel, self.from_kernel):
            os.close(fd)
        for path in self.paths:
            with contextlib.suppress(OSError):
                os.unlink(path)


class GradingRunner(NotebookClient):
    """nbclient's executor with a whole-notebook deadline, output caps, and the judge's requests served."""

    def __init__(self, nb, cell_timeout: float, deadline: float, protocol: Protocol | None = None, **kwargs):
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
        self.protocol = protocol or Protocol(None, None)
        self.on_cell_executed = self._remember_reply
        self._answer_timed_out = False

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

    def _mark_rest(self, start: int, reason: str) -> None:
        for cell in self.nb.cells[start:]:
            if cell.cell_type == "code":
                cell.outputs = [not_run_error(reason)]

    async def run(self) -> None:
        async with self.async_setup_kernel(env=kernel_environment()):
            if await self._user_expression("'ready'") != "ready":
                raise RuntimeError("the kernel did not start cleanly")
            for index, cell in enumerate(self.nb.cells):
                if cell.cell_type != "code":
                    continue
                self.current_index = index
                if self.deadline - time.monotonic() <= 1:
                    self._stop(index, "timeout", "the notebook ran past its time limit")
                    return
                entry: dict = {}
                try:
                    if is_hidden_test(cell):
                        cell.outputs = []
                        self._answer_timed_out = False
                        entry["judged"] = await self._serve_the_judge(index)
                        if self._answer_timed_out:
                            entry["cell_timeout"] = True
                            self.report["cells"][str(index)] = entry
                            # Interrupted and back, the notebook goes on; still busy, it is stopped here.
                            if await self._user_expression("'ready'") != "ready":
                                raise KernelBusy()
                    else:
                        self.timeout = max(1, int(min(self.cell_timeout, self.deadline - time.monotonic())))
                        self._last_reply = None
                        await self.async_execute_cell(cell, index, store_history=True)
                        entry["status"] = (self._last_reply or {}).get("content", {}).get("status", "unknown")
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

    async def _serve_the_judge(self, index: int) -> int:
        """Tell the grader the notebook has reached test ``index``; answer the judge's requests from the
        kernel until the grader says ``next``. Returns how many requests were served."""
        self.protocol.send({"op": "test", "index": index})
        loop = asyncio.get_running_loop()
        served, session = 0, None
        try:
            while True:
                message = await loop.run_in_executor(None, self.protocol.receive)
                if message is None or message.get("op") == "next":
                    return served
                if message.get("op") != "ask":
                    continue
                served += 1
                if session is None:
                    session = self._open_session()
                if session.broken:
                    body = {"error": f"the kernel stopped answering earlier in this test ({session.broken})"}
                else:
                    body = await self._answer(session, message.get("request", {}))
                self.protocol.send({"op": "answer", "body": body})
        finally:
            if session is not None:
                await self._close_session(session)

    def _open_session(self) -> HandinSession:
        """Start ``handin.serve`` silently in the kernel (no input transformer sees it), on two new FIFOs."""
        token = secrets.token_hex(6)
        requests = os.path.join(ANSWER_FOLDER, f"requests-{token}")
        answers = os.path.join(ANSWER_FOLDER, f"answers-{token}")
        os.mkfifo(requests, 0o600)
        os.mkfifo(answers, 0o600)
        # Opened read-write, neither end waits for the kernel to open its own (Linux).
        session = HandinSession(os.open(requests, os.O_RDWR), os.open(answers, os.O_RDWR), [requests, answers])
        session.msg_id = self.kc.execute(handin_code(requests, answers), silent=True, store_history=False)
        return session

    async def _answer(self, session: HandinSession, request: dict) -> dict:
        """The kernel's answer to one request, relaying the calls the student's code makes meanwhile to
        functions the test handed it."""
        loop = asyncio.get_running_loop()
        limit = max(1, int(min(self.cell_timeout, self.deadline - time.monotonic())))
        deadline = time.monotonic() + limit
        session.send({"op": "ask", "request": request})
        while True:
            message = await loop.run_in_executor(None, session.receive, deadline)
            if message is None or message.get("op") == "too-large":
                session.broken = "no answer in time" if message is None else "an answer too large"
                self._answer_timed_out = message is None
                await ensure_async(self.km.interrupt_kernel())
                if message is None:
                    return {"error": f"the kernel did not answer within {limit} s (a function that does not return?)"}
                return {"error": f"the answer is larger than {MAX_ANSWER_BYTES // 2**20} MB"}
            if message.get("op") == "over":
                session.broken = f"its hand-in ended without answering ({message.get('why')})"
                return {"error": f"the kernel's hand-in ended without answering ({message.get('why')})"}
            if message.get("op") == "callback":
                self.protocol.send({"op": "callback", **{k: message.get(k) for k in ("handle", "args", "kwargs")}})
                result = await loop.run_in_executor(None, self.protocol.receive)
                body = (result or {}).get("body") if (result or {}).get("op") == "callback-result" else None
                session.send(
                    {"op": "callback-result", "body": body if isinstance(body, dict) else {"error": "no answer"}}
                )
                continue
            if message.get("op") == "not-json":
                return {"error": "the kernel's answer is not JSON that Python can read (or is nested too deep)"}
            body = message.get("body") if message.get("op") == "answer" else None
            return body if isinstance(body, dict) else {"error": "the kernel's answer is not a JSON object"}

    async def _close_session(self, session: HandinSession) -> None:
        """Tell ``serve`` the test is over and wait for the kernel to be idle again (or give up on it)."""
        if not session.broken:
            session.send({"op": "end"})
        self.timeout = max(1, int(min(self.cell_timeout, self.deadline - time.monotonic())))
        await self.async_wait_for_reply(session.msg_id)  # nbclient interrupts a kernel that does not return
        session.close()

    def _stop(self, index: int, kind: str, reason: str) -> None:
        self.report["stopped"] = {"kind": kind, "reason": reason, "cell": index}
        self._mark_rest(index, reason)


def handin_code(requests: str, answers: str) -> str:
    """What the runner executes, silently, in the student's kernel to answer one test's requests.

    When ``serve`` ends, however it ends, a last ``over`` line says so: a hand-in that stops before it
    answers (the student replaced ``serve``, or broke what it needs) costs that test at once, not a
    wait until the time limit.

    It runs in a namespace of its own, so the student's names stay as they were. A kernel that never
    loaded the course holds no Keras object, so handing in its answers needs no TensorFlow; loading it
    there would cost seconds, and more memory than a tight limit allows.
    """
    body = (
        "import json, os, sys\n"
        "ended = {'op': 'over', 'why': 'it returned'}\n"
        "try:\n"
        "    if 'adamclinic' not in sys.modules:\n"
        "        os.environ['ADAMCLINIC_SKIP_TENSORFLOW'] = '1'\n"
        "        try:\n"
        "            import adamclinic\n"
        "        finally:\n"
        "            del os.environ['ADAMCLINIC_SKIP_TENSORFLOW']\n"
        "    from adamclinic.judging.handin import serve\n"
        f"    serve({requests!r}, {answers!r})\n"
        "except BaseException as error:\n"
        "    ended['why'] = (type(error).__name__ + ': ' + str(error))[:300]\n"
        "    raise\n"
        "finally:\n"
        f"    fd = os.open({answers!r}, os.O_WRONLY | os.O_NONBLOCK)\n"
        "    try:\n"
        "        os.write(fd, json.dumps(ended).encode() + b'\\n')\n"
        "    except OSError:\n"
        "        pass\n"
        "    os.close(fd)\n"
    )
    return f"exec(compile({body!r}, '<handin>', 'exec'), {{'__name__': '__handin__'}})"


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
    parser.add_argument("--protocol-in", type=int, default=None, help="file descriptor the grader writes to")
    parser.add_argument("--protocol-out", type=int, default=None, help="file descriptor the grader reads")
    args = parser.parse_args(argv)
    nb = nbformat.read(args.input, as_version=4)
    runner = GradingRunner(
        nb,
        args.cell_timeout,
        time.monotonic() + args.deadline,
        protocol=Protocol(args.protocol_in, args.protocol_out),
        resources={"metadata": {"path": os.getcwd()}},
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
