"""Start a member's processes as their own account, in a mount namespace that hides ``/root``.

JupyterHub's LocalProcessSpawner switches to the member's account and starts the server. On a machine
whose Python lives under ``/root`` (pyenv's default for root, as on the course's reference machine), the
member's account cannot run ``.venv/bin/python`` at all: ``/root`` is 0700. Opening ``/root`` would open
whatever else is in it, so each server starts instead, as root, in a private mount namespace
(``unshare --mount``) where ``/root`` is an empty tmpfs holding only that interpreter, read-only, and only
then becomes the member (``setpriv``). Every step ``exec``s the next, so the hub's pid is the server's and
its signals reach the server itself. Elsewhere (Python outside ``/root``), ``/root`` is simply hidden.
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


def as_member(name: str, command: list[str], staging: str) -> list[str]:
    """``command`` run as ``name`` with /root replaced by a tmpfs holding only the interpreter (run as root).

    ``staging`` is an empty folder only root can reach (in the state folder) where the interpreter is
    parked while the tmpfs goes over /root.
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
    steps.append(
        f"cd {shlex.quote(account.pw_dir)} && exec setpriv --reuid={account.pw_uid} --regid={account.pw_gid} "
        f"--init-groups --inh-caps=-all -- " + " ".join(shlex.quote(part) for part in command)
    )
    return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-ec", "\n".join(steps)]


class CourseSpawner(LocalProcessSpawner):
    """LocalProcessSpawner whose server becomes the member inside its own mount namespace (above)."""

    staging = ""  # set by the hub configuration: <state>/hub/staging

    def make_preexec_fn(self, name):
        return None  # still root: the command itself drops to the member (as_member)

    async def start(self):
        singleuser = list(self.cmd) + self.get_args()
        saved, saved_args = self.cmd, self.get_args
        self.cmd = as_member(self.user.name, singleuser, self.staging)
        self.get_args = lambda: []
        try:
            return await super().start()
        finally:
            self.cmd, self.get_args = saved, saved_args
