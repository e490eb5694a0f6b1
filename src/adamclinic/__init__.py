"""Adam Clinic: the course's shared code.

Importing this package first keeps TensorFlow's start-up lines off stderr: nbgrader gives zero points
to a test cell that writes anything to stderr, and a student should not have to read C++ log lines.
``TF_CPP_MIN_LOG_LEVEL`` silences TensorFlow's later logging (XLA compilation, devices); the lines
TensorFlow 2.21 prints while it loads ignore that variable, so the import itself runs with the
process's stderr pointed at /dev/null, for the import only.

The grader's own processes (the batch grader, its Dask workers and nbgrader's autograde, which only
start sandboxed kernels) never train, so they set ``ADAMCLINIC_SKIP_TENSORFLOW=1`` and skip the 4-second
import. A student's kernel never has it set.
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


if os.environ.get("ADAMCLINIC_SKIP_TENSORFLOW") != "1":
    _import_tensorflow_quietly()

__version__ = "0.1.0"
