"""Start JupyterLab on the course (what ``make lab`` runs).

Listens on 127.0.0.1 only, on a free port, with a fresh token, and opens lesson 01. Prints the full
URL (token included) before the server starts, so it can be pasted into any browser.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import sys
import traceback
from pathlib import Path

from adamclinic.paths import REPOSITORY_ROOT

FIRST_LESSON = "lessons/01_learning_rate.ipynb"
# The course's JupyterLab defaults (no news prompt, no update check): jupyter/README.md.
COURSE_JUPYTER_CONFIG = REPOSITORY_ROOT / "jupyter"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def course_jupyter_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with the course's JupyterLab settings on ``JUPYTER_CONFIG_PATH``."""
    env = dict(os.environ if env is None else env)
    paths = [str(COURSE_JUPYTER_CONFIG)] + [p for p in env.get("JUPYTER_CONFIG_PATH", "").split(os.pathsep) if p]
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def lab_arguments(port: int, token: str, open_browser: bool) -> list[str]:
    args = [
        FIRST_LESSON,
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={REPOSITORY_ROOT}",
        f"--ServerApp.open_browser={open_browser}",
        # The server asks no one on the internet about updates or news (the course runs offline too).
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--allow-root")  # Jupyter refuses to run as root without it
    return args


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    parser.add_argument("--token", default="", help="access token (default: a fresh random one)")
    parser.add_argument("--no-browser", action="store_true", help="do not try to open a browser")
    options = parser.parse_args(argv)
    port = options.port or free_port()
    token = options.token or secrets.token_hex(16)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    url = f"http://127.0.0.1:{port}/lab/tree/{FIRST_LESSON}?token={token}"
    print(
        f"\n  Adam Clinic is starting. Open this address in your browser:\n\n    {url}\n\n"
        "  Stop the server with Ctrl-C.\n",
        flush=True,
    )
    # nbgrader's gradebook runs `alembic` by name, so the environment's bin folder must be on PATH
    # even when the virtual environment was not activated.
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    os.environ.update(course_jupyter_environment())
    os.chdir(REPOSITORY_ROOT)
    # Ctrl-C must stop the server even when whatever started us ignores or blocks SIGINT (nohup, some
    # IDEs and test runners do, and a child inherits that): restore Python's own handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    from jupyterlab.labapp import LabApp

    status = 0
    try:
        LabApp.launch_instance(argv=lab_arguments(port, token, not options.no_browser))
    except SystemExit as stop:  # Jupyter's own way out: a bad option, a port in use (it said why)
        status = stop.code if isinstance(stop.code, int) else 1
    except BaseException:
        traceback.print_exc()
        status = 1
    # JupyterLab has stopped and shut its kernels down by now. Its idle AnyIO worker threads (left by
    # file operations) are not daemons, so Python would wait for them forever: the terminal would
    # hang after Ctrl-C until a second one. Nothing is left to clean up, so leave at once.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    main()
