"""The judge: runs an assignment's hidden tests in a process that never runs student code.

    python -m adamclinic.judging.judge        (started by adamclinic.grading.execute, in its own sandbox)

It reads JSON lines on stdin and writes JSON lines on the file descriptor stdout had when it started
(stdout itself is then pointed at stderr, so a library that prints cannot break a message):

* ``{"op": "cell", "index": i, "source": ..., "test": false}``: a locked setup cell of the assignment
  (trusted source from the gradebook): run it here, answer ``{"op": "setup", "index": i, "error": ...}``;
* ``{"op": "cell", "index": i, "source": ..., "test": true}``: a hidden test cell: run it and answer
  ``{"op": "verdict", "index": i, "outputs": [...], "passed": bool}``, the outputs in nbformat's shape.

A test reads the student's answers by name. A name the test reads that neither the setup cells nor an
earlier test defined is asked of the student's kernel (``{"op": "ask", "what": "names", ...}``) and
arrives as plain data (``adamclinic.judging.plain``): numbers, arrays, the course's configs, Keras
architectures. A student's function arrives as a ``RemoteFunction``: calling it sends plain arguments to
the kernel (``{"op": "ask", "what": "call", ...}``) and brings a plain result back; a course helper that
calls it thousands of times runs whole in the kernel instead (``{"what": "helper", ...}``, see
``RemoteFunction.run_helper``). Whatever the kernel
does, all this process ever receives is data, and the verdict is computed here, by the test's own code
and the course's engine, retraining the student's fix from scratch.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import io
import json
import os
import sys
import traceback
from typing import Any

from adamclinic.judging.plain import PlainDataError, decode, encode


class StudentCodeError(Exception):
    """The student's function raised, or its answer could not be handed over; the message says which."""


class Channel:
    """The judge's line-delimited JSON link to the grader (the only way anything reaches the kernel)."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    def send(self, message: dict) -> None:
        self.writer.write(json.dumps(message) + "\n")
        self.writer.flush()

    def receive(self) -> dict:
        line = self.reader.readline()
        if not line:
            raise EOFError("the grader closed the judge's input")
        return json.loads(line)

    def ask(self, request: dict, callback=None) -> dict:
        """Send a request to the kernel and wait for its answer, running the test's own functions that the
        student's code calls meanwhile (``callback(message) -> body``)."""
        self.send({"op": "ask", **request})
        while True:
            answer = self.receive()
            if answer.get("op") == "callback" and callback is not None:
                self.send({"op": "callback-result", "body": callback(answer)})
                continue
            if answer.get("op") != "answer" or not isinstance(answer.get("body"), dict):
                return {"error": "the student's kernel gave no answer"}
            return answer["body"]


class RemoteFunction:
    """A student's function, still in the student's kernel: called with plain data, answering plain data."""

    def __init__(self, judge: Judge, handle: str, name: str):
        self._judge, self._handle, self._name = judge, handle, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._ask({"what": "call"}, args, kwargs, f"the result of {self._name}")

    def run_helper(self, helper, *args: Any, **kwargs: Any) -> Any:
        """``helper(this function, *args, **kwargs)``, run whole in the student's kernel: one request for a
        course helper that calls the function thousands of times (``step_updates`` iterating an optimizer
        step), instead of one request per call. The helper is the course's own, named by module; what comes
        back is the student's answer, plain data, checked here like any other."""
        request = {"what": "helper", "helper": f"{helper.__module__}:{helper.__qualname__}"}
        return self._ask(request, args, kwargs, f"what {helper.__name__} made of {self._name}")

    def _ask(self, request: dict, args: tuple, kwargs: dict, what: str) -> Any:
        keep = self._judge.keep
        try:
            request = {
                **request,
                "handle": self._handle,
                "args": encode(list(args), handles=keep),
                "kwargs": encode(kwargs, handles=keep),
            }
        except PlainDataError as error:
            raise StudentCodeError(f"the grader could not pass arguments to {self._name}: {error}") from None
        body = self._judge.channel.ask(request, callback=self._judge.run_callback)
        if "raised" in body:
            raise StudentCodeError(f"{self._name} raised {body['raised']}")
        if "error" in body or "value" not in body:
            raise StudentCodeError(f"{self._name}: {body.get('error', 'no result came back')}")
        return self._judge.decode(body["value"], what)

    def __getattr__(self, attribute: str):
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        raise StudentCodeError(
            f"{self._name} stays in your kernel (it is not plain data): the grader can call it but not read .{attribute}"
        )

    def __repr__(self) -> str:
        return f"<your {self._name}>"


class Judge:
    def __init__(self, channel: Channel):
        self.channel = channel
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        self.local: dict[str, Any] = {}  # the test's own functions handed to the student's code

    def intern(self, value: Any) -> Any:
        """A data set (a course dataclass of arrays) equal to one the setup cells made here becomes that very
        object, so a test's ``FIXED.data is P1.data`` holds for a student who kept the data, and the engine
        reuses its tensors."""
        mine = _fingerprint(value)
        if mine is None:
            return value
        for held in list(self.namespace.values()):
            if isinstance(held, (RemoteFunction, Unreadable)):  # the student's: never a candidate, never read
                continue
            try:
                inner = getattr(held, "data", None)
            except Exception:  # an object of the setup cells whose .data is a computation that fails
                inner = None
            for candidate in (held, inner):
                if type(candidate) is type(value) and _fingerprint(candidate) == mine:
                    return candidate
        return value

    def keep(self, value: Any) -> str:
        if not callable(value):
            raise PlainDataError(f"a {type(value).__name__} is not plain data")
        handle = f"judge-{len(self.local)}"
        self.local[handle] = value
        return handle

    def run_callback(self, message: dict) -> dict:
        """The student's code called one of the test's functions: run it here on the plain arguments."""
        function = self.local.get(message.get("handle"))
        if function is None:
            return {"error": "no such function"}
        try:
            args = decode(message.get("args", {"$list": []}))
            kwargs = decode(message.get("kwargs", {"$dict": []}))
            return {"value": encode(function(*args, **kwargs), handles=self.keep)}
        except Exception as error:
            return {"raised": f"{type(error).__name__}: {error}"[:2000]}

    # ------------------------------------------------------------------ answers from the kernel

    def decode(self, tree: Any, what: str) -> Any:
        try:
            return decode(tree, remote=lambda handle, kind: RemoteFunction(self, handle, what), intern=self.intern)
        except PlainDataError as error:
            raise StudentCodeError(f"{what} could not be read as plain data: {error}") from None

    def fetch(self, names: list[str]) -> None:
        """Put the student's current values of ``names`` into the namespace (those the kernel has)."""
        if not names:
            return
        body = self.channel.ask({"what": "names", "names": names})
        values = body.get("values", {}) if isinstance(body.get("values"), dict) else {}
        errors = body.get("errors", {}) if isinstance(body.get("errors"), dict) else {}
        if "error" in body:  # the kernel handed over nothing: every name the test reads says why
            reason = f"the student's kernel could not hand over {', '.join(names)}: {str(body['error'])[:2000]}"
            errors = {name: reason for name in names}
        for name in names:
            if name in values:
                try:
                    self.namespace[name] = self.decode(values[name], name)
                except StudentCodeError as error:
                    self.namespace[name] = Unreadable(name, str(error))
            elif name in errors:
                self.namespace[name] = Unreadable(name, str(errors[name])[:2000])

    # ------------------------------------------------------------------ cells

    def run_cell(self, index: int, source: str, test: bool) -> dict:
        if test:
            self.fetch(names_to_fetch(source, self.namespace))
        stdout, stderr = io.StringIO(), io.StringIO()
        error = None
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                exec(compile(source, f"<cell {index}>", "exec"), self.namespace)  # trusted source only
            except BaseException as raised:  # a failing test, or a student's error surfacing in it
                error = raised
        outputs = []
        if stdout.getvalue():
            outputs.append({"output_type": "stream", "name": "stdout", "text": stdout.getvalue()[-200_000:]})
        if stderr.getvalue():
            # A passing test's warnings are not failures (nbgrader zeroes a cell with stderr).
            name = "stderr" if error is not None else "stdout"
            outputs.append({"output_type": "stream", "name": name, "text": stderr.getvalue()[-200_000:]})
        if error is not None:
            outputs.append(error_output(error, index))
        return {"outputs": outputs, "passed": error is None}


class Unreadable:
    """Stands in for an answer that could not be handed over; any use says why."""

    def __init__(self, name: str, reason: str):
        self._name, self._reason = name, reason

    def _fail(self, *args, **kwargs):
        raise StudentCodeError(self._reason)

    __call__ = __float__ = __int__ = __index__ = __round__ = __bool__ = __iter__ = __len__ = _fail
    __getitem__ = __contains__ = __array__ = __neg__ = __pos__ = __abs__ = _fail
    __lt__ = __le__ = __gt__ = __ge__ = _fail  # ``0 < answer`` says why, not "'<' not supported"
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _fail
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = __pow__ = __rpow__ = _fail
    __matmul__ = __rmatmul__ = _fail

    def __getattr__(self, attribute: str):
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        raise StudentCodeError(self._reason)

    def __repr__(self) -> str:
        return f"<{self._name}: not handed in as plain data>"


def _fingerprint(value: Any) -> str | None:
    """A digest of a dataclass made of arrays and strings only (a data set), else None."""
    import dataclasses
    import hashlib

    import numpy as np

    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return None
    digest = hashlib.sha256(type(value).__qualname__.encode())
    for field in dataclasses.fields(value):
        item = getattr(value, field.name)
        if isinstance(item, np.ndarray):
            digest.update(f"{field.name}{item.shape}{item.dtype}".encode() + np.ascontiguousarray(item).tobytes())
        elif item is None or isinstance(item, str):
            digest.update(f"{field.name}={item!r}".encode())
        else:
            return None
    return digest.hexdigest()


def bound_names(tree: ast.AST) -> set[str]:
    """Every name a cell binds, at any depth: assignments, loop and ``with`` targets, imports, defs, arguments."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return bound


def names_to_fetch(source: str, namespace: dict) -> list[str]:
    """The names a test reads that nothing here defines and the test never binds itself: the student's
    answers (a name the kernel does not have stays undefined, and the test fails as in the notebook)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    bound = bound_names(tree)
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            name = node.id
            if name not in names and name not in namespace and name not in bound and not hasattr(builtins, name):
                names.append(name)
    return names


def error_output(error: BaseException, index: int) -> dict:
    """The error as Jupyter shows it: the frames of the test cell and below, then the message."""
    frames = traceback.extract_tb(error.__traceback__)
    start = next((i for i, f in enumerate(frames) if f.filename == f"<cell {index}>"), 0)
    lines = traceback.format_list(frames[start:]) + traceback.format_exception_only(type(error), error)
    return {
        "output_type": "error",
        "ename": type(error).__name__,
        "evalue": str(error)[:5000],
        "traceback": ["Traceback (most recent call last):"] + [line.rstrip("\n") for line in lines],
    }


def main() -> int:
    protocol_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # anything printed by a library goes to the log, not into a message
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", buffering=0), encoding="utf-8", write_through=True)
    import adamclinic  # noqa: F401  (TensorFlow loads now, while the student's kernel starts)

    channel, epoch = Channel(sys.stdin, protocol_out), 0
    judge = Judge(channel)
    while True:
        try:
            message = channel.receive()
        except EOFError:
            return 0
        op = message.get("op")
        if op == "quit":
            return 0
        if op == "reset":  # the next notebook: nothing of the last one's answers stays
            judge, epoch = Judge(channel), message.get("epoch", 0)
            continue
        if op != "cell":
            continue
        index, source, test = int(message["index"]), str(message["source"]), bool(message.get("test"))
        result = judge.run_cell(index, source, test)
        if test:
            channel.send({"op": "verdict", "index": index, "epoch": epoch, **result})
        else:
            failed = result["outputs"][-1] if not result["passed"] else None
            channel.send({"op": "setup", "index": index, "epoch": epoch, "error": failed})


if __name__ == "__main__":
    sys.exit(main())
