"""What every part of the grader shares: its error, the nbgrader it runs, the environment nbgrader runs in,
the course's nbgrader configuration and a new gradebook.

Standard library and nbgrader only: no process of the grader imports TensorFlow or Keras.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

COURSE_ID = "adam-clinic"


class GradingError(RuntimeError):
    """An nbgrader step failed or the course folder is not as expected; the message says what to do."""


def nbgrader_command() -> list[str]:
    """The nbgrader of this Python environment (the script beside ``sys.executable``)."""
    script = Path(sys.executable).with_name("nbgrader")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "nbgrader"]


def nbgrader_environment(skip_tensorflow: bool = True) -> dict[str, str]:
    """The environment for nbgrader and the grader's own processes: this Python's bin folder first on PATH
    (once), TensorFlow's logging off, and ``ADAMCLINIC_SKIP_TENSORFLOW=1`` so that ``import adamclinic`` in
    a grader process does not load TensorFlow (the sandboxed runner drops it again for the student's kernel).

    nbgrader 0.9 runs ``alembic`` (a script of the same environment) by name from PATH whenever it
    opens the gradebook; without the virtual environment activated it would not find it.
    ``skip_tensorflow=False`` is for an nbgrader command that starts kernels with nbgrader's own,
    unsandboxed executor (the grading benchmark's baseline): the kernel must import TensorFlow quietly.
    """
    bin_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if bin_dir not in path.split(os.pathsep):
        path = bin_dir + (os.pathsep + path if path else "")
    env = dict(os.environ, PATH=path, TF_CPP_MIN_LOG_LEVEL="3")
    if skip_tensorflow:
        env["ADAMCLINIC_SKIP_TENSORFLOW"] = "1"
    else:
        env.pop("ADAMCLINIC_SKIP_TENSORFLOW", None)
    return env


def course_config(root: Path, overrides: dict[str, dict[str, object]]):
    """The course's nbgrader configuration (``<root>/nbgrader_config.py``) with ``overrides`` on top."""
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    for section, values in overrides.items():
        for key, value in values.items():
            config[section][key] = value
    return config


def stamp_new_gradebook(path: Path) -> None:
    """Start an SQLite gradebook stamped with nbgrader's schema revision, as nbgrader would.

    nbgrader stamps a new gradebook by running the ``alembic heads`` command, a process that imports
    nbgrader again: 2.6 s, the longest step before the first submission could start. The same
    revision, read here from nbgrader's migration scripts, takes milliseconds.
    """
    import sqlite3
    from contextlib import closing

    from alembic.script import ScriptDirectory
    from nbgrader.dbutil import ALEMBIC_DIR

    revision = ScriptDirectory(ALEMBIC_DIR).get_current_head()
    with closing(sqlite3.connect(path)) as database, database:
        database.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        database.execute("INSERT INTO alembic_version (version_num) VALUES (?)", (revision,))
