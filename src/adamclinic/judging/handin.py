"""The student's side of judging: hand answers out of the kernel as plain data, nothing more.

The grading runner calls ``serve`` in the student's kernel (one silent execution per hidden test, after
the student's cells up to it have run); it answers the judge's requests, read one JSON line at a time
from a FIFO, until the runner says ``end``:

* ``{"what": "names", "names": [...]}``: the current values of those names, each as plain data
  (``adamclinic.judging.plain``), or a *handle* when the value is not plain data (a function);
* ``{"what": "call", "handle": h, "args": ..., "kwargs": ...}``: call what handle ``h`` stands for
  with those plain arguments, and hand back its result (or the exception it raised, as text);
* ``{"what": "helper", "helper": "adamclinic.module:name", "handle": h, ...}``: the same, through a course
  helper that takes the function first (one request for a loop of thousands of calls).

A test may pass one of its own functions to a student's function (``which_bug(step)``). The test's
function stays in the judge: here it is a ``JudgeFunction``, and calling it writes a callback line that
the runner relays to the judge, and reads the judge's plain answer back.

This module runs beside the student's code and can be replaced by it; that is fine. Nothing it
writes is believed: it only carries the student's own answers, which the judge checks by
retraining and recomputing in a process of its own (``adamclinic.judging.judge``).
"""

from __future__ import annotations

import functools
import importlib
import json
import secrets
import traceback
from typing import Any

from adamclinic.judging.plain import PlainDataError, decode, encode

_HANDLES: dict[str, Any] = {}


def _keep(value: Any) -> str:
    handle = secrets.token_hex(6)
    _HANDLES[handle] = value
    return handle


def _user_namespace() -> dict:
    from IPython import get_ipython

    shell = get_ipython()
    return shell.user_ns if shell is not None else {}


class Channel:
    """JSON lines with the runner over two FIFOs: requests in, answers (and callbacks) out."""

    def __init__(self, requests_path: str, answers_path: str):
        self.inbox = open(requests_path, "rb")  # noqa: SIM115 (closed by close())
        self.outbox = open(answers_path, "wb", buffering=0)  # noqa: SIM115

    def read(self) -> dict:
        line = self.inbox.readline(MAX_LINE_BYTES)
        message = json.loads(line) if line else {"op": "end"}
        return message if isinstance(message, dict) else {"op": "end"}

    def write(self, message: dict) -> None:
        self.outbox.write(json.dumps(message).encode() + b"\n")

    def close(self) -> None:
        self.inbox.close()
        self.outbox.close()


MAX_LINE_BYTES = 64 * 2**20


class JudgeFunction:
    """One of the test's own functions, kept in the judge; a call crosses as plain data both ways."""

    def __init__(self, handle: str, channel: Channel, kind: str):
        self._handle, self._channel, self._kind = handle, channel, kind

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._channel.write(
            {
                "op": "callback",
                "handle": self._handle,
                "args": encode(list(args), handles=_keep),
                "kwargs": encode(kwargs, handles=_keep),
            }
        )
        reply = self._channel.read()
        body = reply.get("body") if reply.get("op") == "callback-result" else None
        if not isinstance(body, dict) or "value" not in body:
            reason = (body or {}).get("raised") or (body or {}).get("error") or "no answer"
            raise RuntimeError(f"the grader's {self._kind} refused the call: {reason}")
        return decode(body["value"], remote=lambda handle, kind: JudgeFunction(handle, self._channel, kind))

    def __repr__(self) -> str:
        return f"<the grader's {self._kind}>"


def serve(requests_path: str, answers_path: str) -> None:
    """Answer the judge's requests for one hidden test, until the runner says ``end``.

    One silent execution in the kernel serves every request of the test: a test that calls the student's
    function two thousand times pays the kernel's execution overhead once, not two thousand times."""
    channel = Channel(requests_path, answers_path)
    try:
        while True:
            message = channel.read()
            if message.get("op") != "ask":
                return
            channel.write({"op": "answer", "body": _answer(message.get("request"), channel)})
    finally:
        channel.close()


def _answer(request: Any, channel: Channel) -> dict:
    try:
        request = request if isinstance(request, dict) else {}
        if request.get("what") == "names":
            return _names(request.get("names", []))
        if request.get("what") == "call":
            return _call(request, channel)
        if request.get("what") == "helper":
            return _call(request, channel, helper=_course_helper(request.get("helper")))
        return {"error": f"unknown request {request.get('what')!r}"}
    except Exception as error:  # the request itself could not be served
        return {"error": f"{type(error).__name__}: {error}"}


def _names(names: list[str]) -> dict:
    namespace = _user_namespace()
    values, errors = {}, {}
    for name in names:
        if not isinstance(name, str) or name not in namespace:
            continue
        try:
            values[name] = encode(namespace[name], handles=_keep)
        except Exception as error:
            errors[name] = _explain(name, error)
    return {"values": values, "errors": errors}


def _course_helper(name: Any):
    """The course function ``module:qualname`` names (the judge's request; nothing outside the course)."""
    module, _, qualname = str(name).partition(":")
    if not module.startswith("adamclinic.") or not qualname.isidentifier():
        raise ValueError(f"not a course helper: {name!r}")
    return getattr(importlib.import_module(module), qualname)


def _call(request: dict, channel: Channel, helper=None) -> dict:
    """Call the function a handle stands for, or ``helper(that function, ...)``, on plain arguments."""
    target = _HANDLES.get(request.get("handle"))
    if target is None:
        return {"error": "no such handle"}
    if helper is not None:
        target = functools.partial(helper, target)

    def remote(handle: str, kind: str) -> JudgeFunction:
        return JudgeFunction(handle, channel, kind)

    args = decode(request.get("args", {"$list": []}), remote=remote)
    kwargs = decode(request.get("kwargs", {"$dict": []}), remote=remote)
    try:
        result = target(*args, **kwargs)
    except KeyboardInterrupt:  # the runner's interrupt at the time limit: this test's serving ends
        raise
    except BaseException as error:  # the student's function raised (or exited): that is its answer
        lines = traceback.format_exception_only(type(error), error)
        return {"raised": "".join(lines).strip()[-3000:]}
    try:
        return {"value": encode(result, handles=_keep)}
    except Exception as error:
        return {"error": _explain("the result", error)}


def _explain(what: str, error: Exception) -> str:
    reason = str(error) if isinstance(error, PlainDataError) else f"{type(error).__name__}: {error}"
    return (
        f"{what} could not be handed to the grader ({reason}). Hand in numbers, strings, lists, dicts, "
        "NumPy arrays, the course's TrainConfig/Dataset, Keras's built-in layers, losses and schedules, "
        "or functions that take and return those."
    )
