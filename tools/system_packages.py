#!/usr/bin/env python3
"""The system programs the course drives for real, checked in seconds before anything slow starts.

    python3 tools/system_packages.py [--install] [piece ...]

Beyond Python, the tests need three Debian packages:

    chromium     a real browser: the UI tests open JupyterLab in headless Chromium (Playwright's own
                 browser download does not work on these machines)
    bubblewrap   the grading sandbox: each student's notebook runs in a bwrap box
    postgresql   a gradebook in a PostgreSQL server: the tests start a throwaway server on loopback

With ``--install`` the missing ones are installed when that is possible without asking anyone (root,
with apt-get: CI and these machines), in one line of output. Otherwise, or when installing fails, it
exits with status 3 and prints the exact command to run. Standard library only: it runs before the
virtual environment exists (the Makefile calls it with the system's python3).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys


def chromium_found() -> bool:
    path = os.environ.get("ADAMCLINIC_CHROMIUM", "/usr/bin/chromium")
    return os.access(path, os.X_OK)


def bubblewrap_found() -> bool:
    # The grader turns bubblewrap off with this variable; a contributor testing that path still needs it.
    return shutil.which("bwrap", path=os.environ.get("ADAMCLINIC_SYSTEM_PATH")) is not None


def postgresql_found() -> bool:
    pattern = os.path.join(os.environ.get("ADAMCLINIC_POSTGRESQL_ROOT", "/usr/lib/postgresql"), "*", "bin", "initdb")
    return bool(glob.glob(pattern))


# piece -> (Debian package, what it is for, how to tell it is there)
PIECES = {
    "chromium": ("chromium", "a real browser for the JupyterLab UI tests", chromium_found),
    "bubblewrap": ("bubblewrap", "the sandbox each graded notebook runs in", bubblewrap_found),
    "postgresql": ("postgresql", "a PostgreSQL server for the gradebook tests", postgresql_found),
}
# What each make target needs. `make lab` and `make submit` need nothing beyond Python; `make grade`
# uses bubblewrap where it is installed and says once per batch when it is not (grading/README.md).
NEEDS = {"test": ("chromium", "bubblewrap", "postgresql")}
EXIT_MISSING = 3


def missing(pieces) -> list[str]:
    return [piece for piece in pieces if not PIECES[piece][2]()]


def can_install() -> bool:
    """Root with apt-get: install without a prompt (CI, and the course's own machines)."""
    if os.environ.get("ADAMCLINIC_NO_SYSTEM_INSTALL") == "1":
        return False
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get") is not None


def install(packages: list[str]) -> bool:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True, "env": env}
    update = subprocess.run(["apt-get", "update", "-qq"], **quiet)
    result = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], **quiet)
    if result.returncode != 0:
        print(result.stderr.strip()[-2000:] or update.stderr.strip()[-2000:], file=sys.stderr)
    return result.returncode == 0


def explain(absent: list[str]) -> str:
    packages = " ".join(PIECES[piece][0] for piece in absent)
    lines = ["Missing system packages the tests drive for real:"]
    lines += [f"  {PIECES[piece][0]:<11} {PIECES[piece][1]}" for piece in absent]
    if shutil.which("apt-get"):
        lines.append(f"Install them, then run the same make command again:\n  sudo apt-get install {packages}")
    else:
        lines.append(f"Install the packages that provide them ({packages} on Debian or Ubuntu), then run again.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pieces", nargs="*", help=f"what to check, of {', '.join(PIECES)} (default: --for test)")
    parser.add_argument("--for", dest="target", choices=sorted(NEEDS), default="test")
    parser.add_argument("--install", action="store_true", help="install what is missing when root with apt-get")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.pieces) - set(PIECES))
    if unknown:
        parser.error(f"unknown piece(s) {', '.join(unknown)}; known: {', '.join(PIECES)}")
    absent = missing(args.pieces or NEEDS[args.target])
    if not absent:
        return 0
    if args.install and can_install():
        packages = [PIECES[piece][0] for piece in absent]
        print(f"Installing the system packages the tests need: apt-get install {' '.join(packages)}", flush=True)
        if install(packages) and not missing(absent):
            return 0
        print("Installing them failed.", file=sys.stderr)
    print(explain(missing(absent)), file=sys.stderr)
    return EXIT_MISSING


if __name__ == "__main__":
    sys.exit(main())
