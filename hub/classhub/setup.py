"""The hub's state folder, the class's accounts and the course's folders; and undoing all of it.

Everything the hub writes lives under one state folder (``.hub/`` for ``make hub``):

    home/<name>/        each member's home, mode 0700, owned by their own account
    course/             the instructors' nbgrader course, laid out as the repository is so that the course's
                        grader (``make grade``) runs on it unchanged: solutions/, exercises/ (the release),
                        grading/ (the gradebook, submitted/, autograded/, feedback/, reports/) and an
                        nbgrader_config.py naming the hub's exchange; group <instructors>, mode 2770
    exchange/           nbgrader's exchange (mode 1777, as nbgrader asks); exchange/<course_id>/ belongs to
                        the first instructor and the instructors' group, set-group-ID, so every submission
                        is created in that group (classhub.exchange makes it 0640)
    etc/student/, etc/instructor/   the Jupyter configuration each role's server reads (JUPYTER_CONFIG_PATH)
    hub/                the hub's database, cookie secret and logs (root only, 0700)
    postgres/           with DB=postgres: the class's PostgreSQL server (data/, socket/, server.log; classhub.database)
    class.json          the roster and ports the hub configuration reads
    undo.json           what ``clean`` must undo: the accounts and groups this created, the repository modes

Students' servers run the course from this repository's ``.venv`` and ``src/``, so the repository must be
open to them; everything at its top level that a student has no business reading (``solutions/``,
``tests/``, ``grading/``, ``.git/``, ...) is closed to others (its group becomes the instructors') while the
class exists, and ``clean`` puts the modes back.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

from classhub.roster import Roster

REPOSITORY = Path(__file__).resolve().parents[2]
HUB_FOLDER = REPOSITORY / "hub"
VENV = REPOSITORY / ".venv"
PROXY = VENV / "node_modules" / ".bin" / "configurable-http-proxy"
# The repository's top level that students' servers need (the course runs from .venv and src/); the rest
# is closed to them while the class exists.
OPEN_TO_STUDENTS = {
    ".venv",
    "src",
    "datasets",
    "lessons",
    "exercises",
    "jupyter",
    "hub",
    "docs",
    "README.md",
    "LICENSE",
    "pyproject.toml",
    "requirements.txt",
    "environment.yml",
}
INSTALL_COMMAND = (
    ".venv/bin/python -m pip install -r hub/requirements.txt && "
    "npm install --prefix .venv configurable-http-proxy@5 (or: sudo make hub, which runs both)"
)


class SetupError(RuntimeError):
    """The machine cannot hold the class as asked; the message says what to do."""


def missing_tools() -> list[str]:
    """What the hub needs and this machine lacks, each with how to get it."""
    missing = []
    for tool, package in (("useradd", "passwd"), ("node", "nodejs"), ("runuser", "util-linux")):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            missing.append(f"{tool} (apt-get install {package})")
    if not (VENV / "bin" / "jupyterhub").exists() or not PROXY.exists():
        missing.append(f"JupyterHub and configurable-http-proxy in .venv ({INSTALL_COMMAND})")
    return missing


def closed_ancestor(path: Path) -> Path | None:
    """The first folder above ``path`` (or itself) that other users cannot enter, if any."""
    for folder in [path, *path.parents]:
        if not os.stat(folder).st_mode & stat.S_IXOTH:
            return folder
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SetupError(f"{' '.join(command)} failed: {result.stderr.strip() or result.stdout.strip()}")


def account_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def load_undo(state: Path) -> dict:
    try:
        return json.loads((state / "undo.json").read_text())
    except FileNotFoundError:
        return {"users": [], "groups": [], "modes": {}}


def save_undo(state: Path, undo: dict) -> None:
    (state / "undo.json").write_text(json.dumps(undo, indent=1))


def chown_tree(top: Path, uid: int, gid: int, file_mode: int, folder_mode: int) -> None:
    for folder, _, files in os.walk(top):
        os.chown(folder, uid, gid)
        os.chmod(folder, folder_mode)
        for name in files:
            os.chown(Path(folder, name), uid, gid)
            os.chmod(Path(folder, name), file_mode)


def _closed_by_another_hub(instructors_group: str) -> Path | None:
    """A top-level entry of the repository that another hub's ``prepare`` closed (its instructors' group)."""
    for entry in sorted(REPOSITORY.iterdir()):
        info = entry.lstat()
        if stat.S_ISLNK(info.st_mode) or info.st_mode & 0o007 or info.st_gid == 0:
            continue
        try:
            group = grp.getgrgid(info.st_gid).gr_name
        except KeyError:
            continue
        if group != instructors_group and group.endswith("instructors"):
            return entry
    return None


def prepare(
    state: Path,
    roster: Roster,
    port: int = 8000,
    instructors_group: str = "adamclinic-instructors",
    hub_db: str | None = None,
    gradebook_db: str | None = None,
    cull_seconds: int = 3600,
    db: str | None = None,
) -> dict:
    """Create (or bring up to date) the state folder, accounts and course folders for ``roster``.

    ``db``: ``"postgres"`` (a private PostgreSQL server in the state folder), a PostgreSQL URL (an existing
    server) or ``"sqlite"``; None keeps the state folder's last choice (``classhub.database``). ``hub_db`` and
    ``gradebook_db``, when given, override it.
    """
    if os.geteuid() != 0:
        raise SetupError("the hub needs root: it creates a Unix account per student and starts their servers as them")
    if missing := missing_tools():
        raise SetupError("the hub needs: " + "; ".join(missing))
    if (closed := closed_ancestor(REPOSITORY)) is not None:
        raise SetupError(
            f"students' servers run the course from {REPOSITORY}, but other users cannot enter {closed}: "
            f"chmod o+x {closed}, or clone the course somewhere open (e.g. /srv/adam-clinic)"
        )
    if (other := _closed_by_another_hub(instructors_group)) is not None:
        # Its clean would record our closed modes as the originals and leave the repository closed.
        raise SetupError(
            f"{other} is closed by another class hub running from this clone (group "
            f"{grp.getgrgid(other.lstat().st_gid).gr_name}): stop that one first (make hub-clean), or run "
            "this hub from another clone"
        )
    state = state.resolve()
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o711)
    if (closed := closed_ancestor(state)) is not None:
        raise SetupError(f"students must reach their homes under {state}, but cannot enter {closed}: pick another")
    undo = load_undo(state)

    if not group_exists(instructors_group):
        run("groupadd", instructors_group)
        undo["groups"].append(instructors_group)
    save_undo(state, undo)
    (state / "home").mkdir(exist_ok=True)
    os.chmod(state / "home", 0o711)
    for name in roster.everyone:
        home = state / "home" / name
        if not account_exists(name):
            run("useradd", "--home-dir", str(home), "--no-create-home", "--shell", "/bin/bash", "--user-group", name)
            undo["users"].append(name)
            save_undo(state, undo)
        elif name not in undo["users"]:
            raise SetupError(
                f"{name!r} already has an account on this machine that the hub did not create: "
                "rename them in the roster (the hub gives each member an account of its own)"
            )
        user = pwd.getpwnam(name)
        home.mkdir(exist_ok=True)
        os.chown(home, user.pw_uid, user.pw_gid)
        os.chmod(home, 0o700)
        if name in roster.instructors:
            run("usermod", "--append", "--groups", instructors_group, name)
            # nbgrader's formgrader refuses (HTTP 500, "the course directory root is not a subdirectory of
            # the notebook server root") a course outside the server's folder, which is the home: the
            # shared course folder appears in each instructor's home as ~/course.
            link = home / "course"
            if not link.is_symlink():
                link.symlink_to(state / "course")
                os.lchown(link, user.pw_uid, user.pw_gid)
    group_id = grp.getgrnam(instructors_group).gr_gid

    # The repository: closed to others at its top level, except what the course runs from.
    for entry in sorted(REPOSITORY.iterdir()):
        if entry.name in OPEN_TO_STUDENTS or entry == state or entry.name in undo["modes"]:
            continue
        info = entry.lstat()
        if stat.S_ISLNK(info.st_mode):
            continue
        undo["modes"][entry.name] = [stat.S_IMODE(info.st_mode), info.st_gid]
        save_undo(state, undo)
        os.chown(entry, -1, group_id)
        extra = stat.S_IRGRP | (stat.S_IXGRP if entry.is_dir() else 0)
        os.chmod(entry, (stat.S_IMODE(info.st_mode) | extra) & ~0o007)

    # The instructors' course folder: a copy of the repository's sources and releases, in the repository's
    # own layout (the grader's paths), its nbgrader_config.py written with the roles' configuration below.
    course = state / "course"
    new_course = not course.exists()
    if new_course:
        course.mkdir()
        shutil.copytree(REPOSITORY / "solutions", course / "solutions")
        shutil.copytree(REPOSITORY / "exercises", course / "exercises")
        (course / "grading").mkdir()

    # nbgrader's exchange.
    exchange = state / "exchange"
    exchange.mkdir(exist_ok=True)
    os.chmod(exchange, 0o1777)
    course_exchange = exchange / roster.course_id
    course_exchange.mkdir(exist_ok=True)
    os.chown(course_exchange, pwd.getpwnam(roster.instructors[0]).pw_uid, group_id)
    os.chmod(course_exchange, 0o2775)

    # The databases: SQLite in the state folder unless the class asked for PostgreSQL.
    from classhub import config, database  # noqa: PLC0415  (both need the paths above)

    db = database.choose(state, db)
    if (urls := database.prepare(state, db, list(roster.instructors), instructors_group)) is not None:
        hub_db, gradebook_db = hub_db or urls[0], gradebook_db or urls[1]

    # Each role's Jupyter configuration (classhub.config writes the files).
    config.write_role_configs(state, roster, gradebook_db)
    if new_course:
        chown_tree(course, 0, group_id, 0o660, 0o2770)
    os.chown(course / "nbgrader_config.py", 0, group_id)
    os.chmod(course / "nbgrader_config.py", 0o640)  # rewritten by each start; the instructors read it

    hub = state / "hub"
    hub.mkdir(exist_ok=True)
    os.chmod(hub, 0o700)
    settings = {
        "course_id": roster.course_id,
        "instructors": list(roster.instructors),
        "students": list(roster.students),
        "instructors_group": instructors_group,
        "port": port,
        "hub_port": free_port(),
        "proxy_api_port": free_port(),
        "hub_db": hub_db or f"sqlite:///{hub / 'jupyterhub.sqlite'}",
        "gradebook_db": config.gradebook_url(state, gradebook_db),
        "db": db,
        "cull_seconds": cull_seconds,
        "repository": str(REPOSITORY),
        "state": str(state),
    }
    (state / "class.json").write_text(json.dumps(settings, indent=1))
    os.chmod(state / "class.json", 0o600)  # a database URL may hold a password; only root reads it
    return settings


def hub_command(state: Path) -> tuple[list[str], dict[str, str]]:
    """The command that starts the hub on a prepared state folder, and its environment."""
    env = dict(os.environ)
    env["ADAMCLINIC_HUB_STATE"] = str(state.resolve())
    env["PATH"] = f"{VENV / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    env.setdefault("CONFIGPROXY_AUTH_TOKEN", secrets.token_hex(32))
    env["PYTHONPATH"] = str(HUB_FOLDER)
    command = [str(VENV / "bin" / "jupyterhub"), "-f", str(HUB_FOLDER / "jupyterhub_config.py")]
    return command, env


def grade_command(
    state: Path, assignment: str, workers: int = 2, instructor: str | None = None, scheduler: str | None = None
) -> tuple[list[str], dict[str, str]]:
    """The course's grader (``make grade``) on the hub's course folder and exchange, run as an instructor.

    Run as root (``sudo make grade A=... HUB=1``), it becomes the instructor, as their server would: the
    grader collects from the exchange, writes the gradebook and releases the feedback as a member of the
    instructors' group (umask 007, so the other instructors can write what it creates), and the students'
    notebooks run in its sandbox under that account, never as root. ``scheduler`` (``SCHEDULER=tcp://...``)
    sends the grading to an existing Dask cluster whose workers see the course folder at the same path.
    An instructor runs the same from a terminal of their server without sudo:
    ``.venv/bin/python -m adamclinic.grading grade A --root ~/course``.
    """
    from classhub.spawner import INSTRUCTOR_UMASK, as_member, share_sqlite  # noqa: PLC0415  (imports JupyterHub)

    state = state.resolve()
    try:
        settings = json.loads((state / "class.json").read_text())
    except FileNotFoundError:
        raise SetupError(f"there is no class hub in {state}: start one with sudo make hub") from None
    name = instructor or settings["instructors"][0]
    if name not in settings["instructors"]:
        raise SetupError(f"{name!r} is not an instructor of the class ({', '.join(settings['instructors'])})")
    home = state / "home" / name
    (state / "hub" / "staging").mkdir(exist_ok=True)  # as_member parks the interpreter there
    share_sqlite(settings["gradebook_db"])  # SQLite would create it 0640: the other instructors could not grade
    grader = [str(VENV / "bin" / "python"), "-m", "adamclinic.grading", "grade", assignment]
    grader += ["--root", str(state / "course"), "--workers", str(workers), "--db", settings["gradebook_db"]]
    if scheduler:
        grader += ["--scheduler", scheduler]
    env = {
        "PATH": f"{VENV / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "USER": name,
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    return as_member(name, grader, str(state / "hub" / "staging"), INSTRUCTOR_UMASK), env


def processes_of(uids: set[int]) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid in uids:
                    found.append(int(entry.name))
            except FileNotFoundError:
                pass
    return found


def stop_process(process: subprocess.Popen, wait: float = 30.0) -> None:
    """Stop a hub this process started (SIGTERM, then SIGKILL after ``wait`` seconds) and reap it."""
    process.terminate()
    try:
        process.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def stop_pid(pid: int, wait: float = 10.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def clean(state: Path) -> list[str]:
    """Stop the hub, remove the accounts and groups it created, restore the repository, delete the state."""
    state = state.resolve()
    done = []
    if not state.exists():
        return done
    # The hub stops its members' servers, the culler and the proxy when it stops (give it time); the
    # proxy's own pid file catches a proxy left by a hub that was killed.
    for name, wait in (("jupyterhub.pid", 45.0), ("proxy.pid", 5.0)):
        pid_file = state / "hub" / name
        if pid_file.exists() and (pid := pid_file.read_text().strip()).isdigit():
            stop_pid(int(pid), wait=wait)
            done.append(f"stopped {name.removesuffix('.pid')} ({pid})")
    from classhub import database  # noqa: PLC0415  (it imports this module)

    if stopped := database.stop(state):  # a PostgreSQL server left running would hold the folder's files
        done.append(stopped)
    undo = load_undo(state)
    uids = set()
    for name in undo["users"]:
        try:
            uids.add(pwd.getpwnam(name).pw_uid)
        except KeyError:
            pass
    # The hub stops its servers when it stops; a server left over from a crash is ended here, by its
    # account's id (only accounts this hub created).
    for _ in range(2):
        for pid in processes_of(uids):
            stop_pid(pid, wait=3)
    for name in undo["users"]:
        if account_exists(name):
            run("userdel", name)
            done.append(f"removed account {name}")
    for name in undo["groups"]:
        if group_exists(name):
            run("groupdel", name)
            done.append(f"removed group {name}")
    for name, (mode, gid) in undo["modes"].items():
        entry = REPOSITORY / name
        if entry.exists():
            os.chown(entry, -1, gid)
            os.chmod(entry, mode)
    if undo["modes"]:
        done.append(f"reopened {', '.join(sorted(undo['modes']))}")
    shutil.rmtree(state)
    done.append(f"deleted {state}")
    return done
