"""The hub's database and the gradebook in PostgreSQL (``make hub DB=postgres``; SQLite without it).

``DB=postgres`` runs a private PostgreSQL server for the class from Debian's binaries
(``/usr/lib/postgresql/<version>/bin``), as Debian's ``postgres`` account, inside the state folder:

    postgres/           owned by postgres, group <instructors>, 0710
        data/           the cluster (0700, postgres only)
        socket/         its Unix socket, the only way in (postgres, group <instructors>, 0710)
        server.log      the server's log

It listens on no TCP address at all (``listen_addresses = ''``): any local account could reach loopback,
and the socket's folder is what keeps students out, since a student cannot enter it. Inside, two databases:
``jupyterhub`` (the hub's, reached as ``postgres`` by root only: peer authentication mapped from root) and
``gradebook`` (nbgrader's, owned by the ``gradebook`` role, reached by root and the roster's instructors,
peer authentication again, so an account the socket's folder lets in by mistake still gets nothing).

``DB=postgresql+psycopg://user:password@host:port/`` (an existing server) uses or creates the same two
databases there; who may connect to that server is its administrator's business.

The choice is remembered in ``class.json``: a later ``make hub`` without ``DB=`` keeps it (``DB=sqlite``
goes back). ``start`` starts a stopped cluster; ``clean`` stops it before deleting the state folder. A hub
stopped with Ctrl-C leaves the server running until ``make hub-clean`` (or the next ``make hub``).
"""

from __future__ import annotations

import glob
import grp
import json
import os
import pwd
import shutil
import subprocess
import urllib.parse
from pathlib import Path

from classhub.setup import SetupError, stop_pid

SQLITE = "sqlite"
PRIVATE = "postgres"
HUB_DATABASE = "jupyterhub"
GRADEBOOK_DATABASE = "gradebook"
GRADEBOOK_ROLE = "gradebook"
SERVER_ACCOUNT = "postgres"  # Debian's account for PostgreSQL servers
BINARIES = os.environ.get("ADAMCLINIC_POSTGRESQL_ROOT", "/usr/lib/postgresql")
INSTALL = "apt-get install postgresql"


def choose(state: Path, db: str | None) -> str:
    """``db`` as given, else what the state folder's class used last (``class.json``), else SQLite."""
    if db:
        return normalized(db)
    try:
        return json.loads((state / "class.json").read_text()).get("db", SQLITE)
    except FileNotFoundError:
        return SQLITE


def normalized(db: str) -> str:
    if db.lower() in ("sqlite", "postgres", "postgresql"):
        return SQLITE if db.lower() == SQLITE else PRIVATE
    if db.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
        return db
    raise SetupError(
        f"DB={db!r}: give DB=postgres (a private PostgreSQL server for the class), "
        "DB=postgresql+psycopg://user:password@host:port/ (an existing server) or DB=sqlite (the default)"
    )


def prepare(state: Path, db: str, instructors: list[str], instructors_group: str) -> tuple[str, str] | None:
    """The hub's and the gradebook's SQLAlchemy URLs for ``db`` (None for SQLite), creating what is missing."""
    if db == SQLITE:
        return None
    if db == PRIVATE:
        return private_server(state, instructors, instructors_group)
    return existing_server(db)


# A private server in the state folder -----------------------------------------------------------------


def folders(state: Path) -> tuple[Path, Path, Path]:
    top = state / "postgres"
    return top, top / "data", top / "socket"


def binaries(data: Path) -> Path:
    """Debian's PostgreSQL binaries: the cluster's own version when it exists, else the newest installed."""
    if (data / "PG_VERSION").exists():
        version = (data / "PG_VERSION").read_text().strip()
        folder = Path(BINARIES, version, "bin")
        if not (folder / "pg_ctl").exists():
            raise SetupError(
                f"the class's PostgreSQL cluster ({data}) is version {version}, whose binaries are gone: "
                f"apt-get install postgresql-{version}, or make hub-clean (it deletes the class's databases)"
            )
        return folder
    found = sorted(glob.glob(f"{BINARIES}/*/bin/initdb"), key=lambda path: int(Path(path).parts[-3]))
    if not found:
        raise SetupError(f"DB=postgres runs Debian's PostgreSQL, which is not installed: {INSTALL}")
    return Path(found[-1]).parent


def as_server(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    """``command`` as Debian's postgres account (PostgreSQL refuses to run as root)."""
    return subprocess.run(
        ["runuser", "-u", SERVER_ACCOUNT, "--", *map(str, command)], cwd=cwd, capture_output=True, text=True
    )


def running(state: Path) -> bool:
    top, data, _ = folders(state)
    if not (data / "PG_VERSION").exists():
        return False
    # pg_ctl status: 0 running, 3 not running, 4 no cluster there.
    return as_server(binaries(data) / "pg_ctl", "status", "-D", data, cwd=top).returncode == 0


def postmaster_pid(state: Path) -> int | None:
    """The server's pid from its lock file, if that process is alive."""
    try:
        pid = int((folders(state)[1] / "postmaster.pid").read_text().split()[0])
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, IndexError, ProcessLookupError):
        return None


def private_server(state: Path, instructors: list[str], instructors_group: str) -> tuple[str, str]:
    try:
        server = pwd.getpwnam(SERVER_ACCOUNT)
    except KeyError:
        raise SetupError(f"DB=postgres needs Debian's {SERVER_ACCOUNT} account: {INSTALL}") from None
    top, data, socket = folders(state)
    if len(str(socket / ".s.PGSQL.5432").encode()) > 107:  # a Unix socket's path holds at most 107 bytes
        raise SetupError(f"the state folder's path is too long for PostgreSQL's socket in {socket}: pick a shorter one")
    tools = binaries(data)
    group = grp.getgrnam(instructors_group).gr_gid
    for folder, mode in ((top, 0o710), (socket, 0o710)):
        folder.mkdir(exist_ok=True)
        os.chown(folder, server.pw_uid, group)
        os.chmod(folder, mode)  # root and the instructors' group may enter; a student may not
    if not (data / "PG_VERSION").exists():
        shutil.rmtree(data, ignore_errors=True)  # a half-made cluster from an interrupted start
        created = as_server(
            tools / "initdb",
            "-D",
            data,
            "-U",
            SERVER_ACCOUNT,
            "--encoding=UTF8",
            "--locale=C",
            "--auth-local=peer",
            "--auth-host=reject",
            cwd=top,
        )
        if created.returncode != 0:
            raise SetupError(f"initdb for the class's PostgreSQL failed: {created.stderr.strip()[-2000:]}")
        with (data / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude_if_exists = 'classhub.conf'  # written by classhub.database at each start\n")
    write_server_config(data, socket, instructors)
    if running(state):
        as_server(tools / "pg_ctl", "reload", "-D", data, cwd=top)  # the roster's instructors may have changed
    else:
        started = as_server(tools / "pg_ctl", "start", "-D", data, "-w", "-t", "60", "-l", top / "server.log", cwd=top)
        if started.returncode != 0:
            log = (top / "server.log").read_text()[-2000:] if (top / "server.log").exists() else ""
            raise SetupError(
                f"the class's PostgreSQL server did not start ({started.stderr.strip()}); its log ends:\n{log}\n"
                "fix what it says, or make hub-clean and start again (that deletes the class's databases)"
            )
    create_databases(socket)
    return url(SERVER_ACCOUNT, HUB_DATABASE, socket), url(GRADEBOOK_ROLE, GRADEBOOK_DATABASE, socket)


def quoted(text: str | Path) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def write_server_config(data: Path, socket: Path, instructors: list[str]) -> None:
    """The server's connections: its socket only, and who may use which database (rewritten at each start)."""
    files = {
        "classhub.conf": (
            "# The class hub's settings (classhub.database): no TCP at all, one socket in a folder students cannot enter.\n"
            "listen_addresses = ''\n"
            f"unix_socket_directories = {quoted(socket)}\n"
        ),
        # Peer authentication: the connecting account, as the kernel reports it, must be mapped to the role.
        "pg_hba.conf": (
            "# TYPE  DATABASE  USER  METHOD  (classhub.database)\n"
            f"local  all  {SERVER_ACCOUNT}  peer  map=hub\n"
            f"local  {GRADEBOOK_DATABASE}  {GRADEBOOK_ROLE}  peer  map=graders\n"
        ),
        "pg_ident.conf": "# MAP  ACCOUNT  ROLE  (classhub.database)\n"
        + "".join(f"hub  {name}  {SERVER_ACCOUNT}\n" for name in ("root", SERVER_ACCOUNT))
        + "".join(f"graders  {name}  {GRADEBOOK_ROLE}\n" for name in ("root", SERVER_ACCOUNT, *instructors)),
    }
    server = pwd.getpwnam(SERVER_ACCOUNT)
    for name, text in files.items():
        path = data / name
        path.write_text(text)
        os.chown(path, server.pw_uid, server.pw_gid)
        os.chmod(path, 0o600)


def url(role: str, database: str, socket: Path) -> str:
    return f"postgresql+psycopg://{role}@/{database}?host={urllib.parse.quote(str(socket), safe='/')}"


def create_databases(socket: Path) -> None:
    import psycopg  # noqa: PLC0415  (only DB=postgres needs it)

    with psycopg.connect(host=str(socket), user=SERVER_ACCOUNT, dbname="postgres", autocommit=True) as connection:
        if connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [GRADEBOOK_ROLE]).fetchone() is None:
            connection.execute(f"CREATE ROLE {GRADEBOOK_ROLE} LOGIN")
        for database, owner in ((HUB_DATABASE, SERVER_ACCOUNT), (GRADEBOOK_DATABASE, GRADEBOOK_ROLE)):
            if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone() is None:
                connection.execute(f"CREATE DATABASE {database} OWNER {owner}")


def stop(state: Path) -> str | None:
    """Stop the class's private server, if it runs (before its state folder is deleted)."""
    top, data, _ = folders(state)
    if postmaster_pid(state) is None:
        return None
    try:
        tools = binaries(data)
    except SetupError:
        tools = None
    if tools is not None:
        for mode in ("fast", "immediate"):
            if as_server(tools / "pg_ctl", "stop", "-D", data, "-m", mode, "-w", "-t", "30", cwd=top).returncode == 0:
                return f"stopped the class's PostgreSQL server ({mode})"
    if (pid := postmaster_pid(state)) is not None:
        stop_pid(pid, wait=30)
    return "stopped the class's PostgreSQL server (signal)"


# An existing server ----------------------------------------------------------------------------------


def existing_server(base: str) -> tuple[str, str]:
    """The two databases on an existing server (``base`` names the server; its database, if any, is where to
    connect to create them)."""
    try:
        import psycopg  # noqa: PLC0415
        from sqlalchemy.engine import make_url  # noqa: PLC0415
    except ImportError:
        raise SetupError("PostgreSQL needs psycopg: .venv/bin/python -m pip install 'psycopg[binary]'") from None
    server = make_url(base.replace("postgres://", "postgresql://", 1)).set(drivername="postgresql+psycopg")
    libpq = server.set(drivername="postgresql", database=server.database or "postgres")
    try:
        with psycopg.connect(libpq.render_as_string(hide_password=False), autocommit=True) as connection:
            for database in (HUB_DATABASE, GRADEBOOK_DATABASE):
                if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone() is None:
                    connection.execute(f"CREATE DATABASE {database}")
    except psycopg.Error as error:
        raise SetupError(
            f"the PostgreSQL server at {server.render_as_string()} refused: {str(error).strip()}. "
            f"Check the URL, or have its administrator create the databases {HUB_DATABASE} and "
            f"{GRADEBOOK_DATABASE} for that user"
        ) from None
    return tuple(
        server.set(database=name).render_as_string(hide_password=False) for name in (HUB_DATABASE, GRADEBOOK_DATABASE)
    )
