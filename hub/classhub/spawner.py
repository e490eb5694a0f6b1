"""Start a member's processes as their own account, in a mount namespace that hides ``/root``.

JupyterHub's LocalProcessSpawner switches to the member's account and starts the server. On a machine
whose Python lives under ``/root`` (pyenv's default for root, as on the course's reference machine), the
member's account cannot run ``.venv/bin/python`` at all: ``/root`` is 0700. Opening ``/root`` would open
whatever else is in it, so each server starts instead, as root, in a private mount namespace
(``unshare --mount``) where ``/root`` is an empty tmpfs holding only that interpreter, read-only, and only
then becomes the member (``setpriv``). Every step ``exec``s the next, so the hub's pid is the server's and
its signals reach the server itself. Elsewhere (Python outside ``/root``), ``/root`` is simply hidden.

Instructors share one course folder (group: the instructors', set-group-ID): their processes (servers and
``make grade A=... HUB=1``) run with umask 007, so what one instructor's grader or formgrader creates there
(grading/submitted/, autograded/, feedback/, reports/, the gradebook) stays writable by the others: files
0660, folders 2770. SQLite alone ignores part of it (it creates a database 0644 minus the umask), so the
gradebook is made empty and 0660 before an instructor's process first opens it (``share_sqlite``). Students'
servers keep the hub's umask: nbgrader's exchange and ``classhub.exchange.PrivateSubmit`` set the modes of what
a student hands in.
"""

from __future__ import annotations

import os
import pwd
import shlex
import sys

from jupyterhub.spawner import LocalProcessSpawner


def interpreter_home() -> str:
    """The installed Python under the course's .venv (``/root/.pyenv/versions/3.11.7``)."""
    return os.path.realpath(sys.base_prefix)


# Group-writable, nothing for others: the instructors' shared course folder stays theirs to write.
INSTRUCTOR_UMASK = 0o007


def share_sqlite(url: str) -> None:
    """Make the instructors' SQLite database (the gradebook), empty and 0660, if it does not exist yet (run as root).

    SQLite creates a database 0644 minus the umask: the first instructor's grader or formgrader would make it
    0640, and the others could read it but not grade. An empty file is a new database to SQLite, nbgrader and
    the course's grader (they fill it in), and SQLite gives its journal the database's mode. It takes its folder's group (the
    instructors'). Other databases (PostgreSQL) and a missing folder are left alone.
    """
    if not url.startswith("sqlite:///"):
        return
    path = url.removeprefix("sqlite:///")
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o660)
    except (FileExistsError, FileNotFoundError):
        return
    try:
        os.fchown(descriptor, -1, os.stat(os.path.dirname(path)).st_gid)
        os.fchmod(descriptor, 0o660)  # whatever this process's umask
    finally:
        os.close(descriptor)


def as_member(name: str, command: list[str], staging: str, umask: int | None = None) -> list[str]:
    """``command`` run as ``name`` with /root replaced by a tmpfs holding only the interpreter (run as root).

    ``staging`` is an empty folder only root can reach (in the state folder) where the interpreter is
    parked while the tmpfs goes over /root. ``umask`` (``INSTRUCTOR_UMASK`` for instructors), when given,
    is the command's; otherwise it inherits the caller's.
    """
    account = pwd.getpwnam(name)
    python = interpreter_home()
    steps = []
    if python.startswith("/root/"):
        steps += [
            f"mount --bind {shlex.quote(python)} {shlex.quote(staging)}",
            "mount -t tmpfs -o mode=0755,size=1m tmpfs /root",
            f"mkdir -p {shlex.quote(python)}",
            f"mount --move {shlex.quote(staging)} {shlex.quote(python)}",
            f"mount -o remount,bind,ro {shlex.quote(python)}",
        ]
    else:
        steps.append("mount -t tmpfs -o mode=0755,size=1m tmpfs /root")
    if umask is not None:
        steps.append(f"umask {umask:04o}")
    steps.append(
        f"cd {shlex.quote(account.pw_dir)} && exec setpriv --reuid={account.pw_uid} --regid={account.pw_gid} "
        f"--init-groups --inh-caps=-all -- " + " ".join(shlex.quote(part) for part in command)
    )
    return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-ec", "\n".join(steps)]


class CourseSpawner(LocalProcessSpawner):
    """LocalProcessSpawner whose server becomes the member inside its own mount namespace (above)."""

    staging = ""  # set by the hub configuration: <state>/hub/staging
    instructors: frozenset[str] = frozenset()  # set by the hub configuration: the roster's instructors
    gradebook_db = ""  # set by the hub configuration: the gradebook's URL

    def make_preexec_fn(self, name):
        return None  # still root: the command itself drops to the member (as_member)

    async def start(self):
        singleuser = list(self.cmd) + self.get_args()
        saved, saved_args = self.cmd, self.get_args
        umask = None
        if self.user.name in self.instructors:
            umask = INSTRUCTOR_UMASK
            share_sqlite(self.gradebook_db)  # before the formgrader can create it 0640
        self.cmd = as_member(self.user.name, singleuser, self.staging, umask)
        self.get_args = lambda: []
        try:
            return await super().start()
        finally:
            self.cmd, self.get_args = saved, saved_args
