"""Adam Clinic: the course's shared code.

Importing this package first keeps TensorFlow's start-up lines off stderr: nbgrader gives zero points
to a test cell that writes anything to stderr, and a student should not have to read C++ log lines.
``TF_CPP_MIN_LOG_LEVEL`` silences TensorFlow's later logging (XLA compilation, devices); the lines
TensorFlow 2.21 prints while it loads ignore that variable, so the import itself runs with the
process's stderr pointed at /dev/null, for the import only.

The grader's own processes (``python -m adamclinic.grading``, its Dask workers, the notebook runner
in the sandbox) and the JupyterLab server never train, so they skip the 4-second import: by their
command line, or by ``ADAMCLINIC_SKIP_TENSORFLOW=1``, which the grader passes on to its children. A
student's kernel never has it. The grader's processes also skip a 1-second grammar (below).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def _import_tensorflow_quietly() -> None:
    if "tensorflow" in sys.modules:
        return
    try:
        saved = os.dup(2)
    except OSError:  # no usable stderr descriptor: nothing to protect
        import tensorflow  # noqa: F401

        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# The grader's command-line tools, and the JupyterLab server; none of them trains (a lab kernel is a
# process of its own and imports TensorFlow as usual).
_GRADER_COMMANDS = ("adamclinic.grading",)  # and every module under it (the sandboxed runner, the bench)
_COMMANDS_WITHOUT_TRAINING = _GRADER_COMMANDS + ("adamclinic.lab",)


def _started_as(commands: tuple[str, ...]) -> bool:
    argv = list(getattr(sys, "orig_argv", []))
    return any(
        a == "-m" and (b in commands or b.startswith(tuple(c + "." for c in commands))) for a, b in zip(argv, argv[1:])
    )


_SKIP = os.environ.get("ADAMCLINIC_SKIP_TENSORFLOW") == "1"  # the grader's Dask workers and children

if not (_SKIP or _started_as(_COMMANDS_WITHOUT_TRAINING)):
    _import_tensorflow_quietly()
if _SKIP or _started_as(_GRADER_COMMANDS):
    # The grader's processes read notebooks with nbformat, whose jsonschema imports rfc3987_syntax,
    # and that builds a grammar on import: about 1 s of every grader process's start-up (the batch,
    # each Dask worker, each sandboxed runner), for URI formats no notebook uses. Without the module
    # jsonschema simply skips that format check.
    sys.modules.setdefault("rfc3987_syntax", None)

__version__ = "0.1.0"
