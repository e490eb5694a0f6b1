"""The student's side of judging: hand answers out of the kernel as plain data, nothing more.

The grading runner calls ``serve`` in the student's kernel (a silent execution, after the student's
cells up to a hidden test have run) when the judge asks for something:

* ``{"what": "names", "names": [...]}``: the current values of those names, each as plain data
  (``adamclinic.judging.plain``), or a *handle* when the value is not plain data (a function);
* ``{"what": "call", "handle": h, "args": ..., "kwargs": ...}``: call what handle ``h`` stands for
  with those plain arguments, and hand back its result (or the exception it raised, as text).

A test may pass one of its own functions to a student's function (``which_bug(step)``). The test's
function stays in the judge: here it is a ``JudgeFunction``, and calling it writes a request file into
the folder the runner watches, which relays it to the judge and writes the judge's plain answer back.

This module runs beside the student's code and can be replaced by it; that is fine. Nothing it
writes is believed: it only carries the student's own answers, which the judge checks by
retraining and recomputing in a process of its own (``adamclinic.judging.judge``).
"""

from __future__ import annotations

import json
import os
import secrets
import time
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


class JudgeFunction:
    """One of the test's own functions, kept in the judge; a call crosses as plain data both ways."""

    def __init__(self, handle: str, folder: str, kind: str):
        self._handle, self._folder, self._kind = handle, folder, kind

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        name = secrets.token_hex(6)
        request = {
            "handle": self._handle,
            "args": encode(list(args), handles=_keep),
            "kwargs": encode(kwargs, handles=_keep),
        }
        path = os.path.join(self._folder, f"cb-{name}")
        with open(path + ".part", "w", encoding="utf-8") as handle:
            json.dump(request, handle)
        os.rename(path + ".part", path + ".json")
        reply_path, pause, waited = path + ".reply", 0.0005, 0.0
        while not os.path.exists(reply_path):
            time.sleep(pause)
            waited += pause
            pause = min(pause * 2, 0.01)
            if waited > 600:
                raise TimeoutError("the grader's function did not answer")
        with open(reply_path, encoding="utf-8") as handle:
            reply = json.load(handle)
        os.unlink(reply_path)
        if "value" not in reply:
            raise RuntimeError(
                f"the grader's {self._kind} refused the call: {reply.get('raised') or reply.get('error')}"
            )
        return decode(reply["value"], remote=self._remote)

    def _remote(self, handle: str, kind: str) -> JudgeFunction:
        return JudgeFunction(handle, self._folder, kind)

    def __repr__(self) -> str:
        return f"<the grader's {self._kind}>"


def serve(request_text: str, answer_path: str) -> None:
    """Answer one judge request; the answer (JSON) goes to ``answer_path`` for the runner to pass on."""
    try:
        request = json.loads(request_text)
        if request.get("what") == "names":
            answer = _names(request.get("names", []))
        elif request.get("what") == "call":
            answer = _call(request, str(request.get("callbacks", "")))
        else:
            answer = {"error": f"unknown request {request.get('what')!r}"}
    except Exception as error:  # the request itself could not be served
        answer = {"error": f"{type(error).__name__}: {error}"}
    with open(answer_path, "w", encoding="utf-8") as handle:
        json.dump(answer, handle)


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


def _call(request: dict, callbacks: str) -> dict:
    target = _HANDLES.get(request.get("handle"))
    if target is None:
        return {"error": "no such handle"}

    def remote(handle: str, kind: str) -> JudgeFunction:
        return JudgeFunction(handle, callbacks, kind)

    args = decode(request.get("args", {"$list": []}), remote=remote)
    kwargs = decode(request.get("kwargs", {"$dict": []}), remote=remote)
    try:
        result = target(*args, **kwargs)
    except BaseException as error:  # the student's function raised: that is its answer
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
