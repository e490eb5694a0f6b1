"""The class hub with ``DB=postgres`` (hub/classhub/database.py): the hub's database and the gradebook in a
private PostgreSQL server inside the state folder, reached through a Unix socket students cannot enter.

Root only (the hub creates accounts, PostgreSQL runs as Debian's postgres account); the hub's software
must be in .venv beforehand (``sudo make hub`` installs it), since tests have no network.
"""

from __future__ import annotations

import grp
import http.cookiejar
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from glob import glob
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hub"))

from classhub import database, roster, setup  # noqa: E402

from test_hub import why_no_hub  # noqa: E402  (root, the accounts' tools, the hub's software)

pytestmark = pytest.mark.xdist_group("hub")  # one hub at a time, on the worker that runs tests/test_hub.py


def postmasters_of(data: Path) -> list[int]:
    """Processes whose command line names the cluster's data folder (the server and its children)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(data) in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                found.append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass
    return found


def rows(socket: Path, user: str, dbname: str, query: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(host=str(socket), user=user, dbname=dbname) as connection:
        return connection.execute(query).fetchall()


def log_in(url: str, name: str, password: str) -> tuple[int, str]:
    """The hub's login form, as a browser posts it: (status, final URL)."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(url + "/hub/login", timeout=60).read()
    xsrf = next(cookie.value for cookie in jar if cookie.name == "_xsrf")
    form = urllib.parse.urlencode({"username": name, "password": password, "_xsrf": xsrf}).encode()
    try:
        response = opener.open(url + "/hub/login?next=%2Fhub%2Fhome", data=form, timeout=60)
        return response.status, response.url
    except urllib.error.HTTPError as error:
        return error.code, error.url


def hub_answers(url: str, token: str) -> bool:
    request = urllib.request.Request(url + "/hub/api/", headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError):
        return False


@pytest.mark.slow
@pytest.mark.needs_system("postgresql")
def test_db_postgres_keeps_the_hub_and_the_gradebook_in_a_private_server_students_cannot_reach():
    """DB=postgres: the hub's users and the gradebook's rows land in its own server; a student cannot connect."""
    if reason := why_no_hub():
        pytest.skip(reason)
    state = Path(tempfile.mkdtemp(prefix="adamclinic-pg-hub-"))
    tag = f"{os.getpid() % 100000}"
    instructor, student = f"hp{tag}i", f"hp{tag}a"
    the_class = roster.Roster("adam-clinic", (instructor,), (student,))
    group = f"hp{tag}-instructors"
    top, data, socket = database.folders(state.resolve())
    token = secrets.token_hex(32)
    log = state.parent / f"{state.name}.log"
    hub = None
    try:
        settings = setup.prepare(state, the_class, port=setup.free_port(), instructors_group=group, db="postgres")
        assert settings["db"] == "postgres"
        assert settings["hub_db"].startswith("postgresql+psycopg://postgres@/jupyterhub?host=")
        assert settings["gradebook_db"].startswith("postgresql+psycopg://gradebook@/gradebook?host=")
        assert rows(socket, "postgres", "postgres", "SHOW listen_addresses") == [("",)]  # no TCP at all
        for folder in (top, socket):
            assert folder.stat().st_mode & 0o777 == 0o710 and folder.stat().st_gid == grp.getgrnam(group).gr_gid
        course_config = (state / "course" / "nbgrader_config.py").read_text()
        assert repr(settings["gradebook_db"]) in course_config

        # A second start on the same state, without the flag, keeps PostgreSQL and starts a stopped server.
        assert database.stop(state.resolve()) and not postmasters_of(data)
        again = setup.prepare(state, the_class, port=settings["port"], instructors_group=group)
        assert (again["hub_db"], again["gradebook_db"]) == (settings["hub_db"], settings["gradebook_db"])
        assert database.postmaster_pid(state.resolve()) is not None

        command, env = setup.hub_command(state)
        env["ADAMCLINIC_HUB_API_TOKEN"] = token
        with log.open("w") as sink:
            hub = subprocess.Popen(command, env=env, cwd=state / "hub", stdout=sink, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{settings['port']}"
        deadline = time.monotonic() + 120
        while not hub_answers(url, token):
            assert hub.poll() is None and time.monotonic() < deadline, f"the hub did not answer:\n{log.read_text()}"
            time.sleep(0.3)

        status, landed = log_in(url, student, "a first password")
        assert status == 200 and landed.endswith("/hub/home"), (status, landed, log.read_text()[-3000:])
        assert (student,) in rows(socket, "postgres", "jupyterhub", "SELECT name FROM users")
        assert not (state / "hub" / "jupyterhub.sqlite").exists()

        # The instructor writes the gradebook as their server would (their account, their configuration).
        from classhub.spawner import as_member

        instructor_env = {
            "PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin",
            "HOME": str(state / "home" / instructor),
            "USER": instructor,
            "JUPYTER_CONFIG_PATH": str(state / "etc" / "instructor"),
        }
        added = subprocess.run(
            as_member(instructor, ["nbgrader", "db", "student", "add", student], str(state / "hub" / "staging")),
            env=instructor_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert added.returncode == 0, added.stderr[-3000:]
        assert (student,) in rows(socket, "gradebook", "gradebook", "SELECT id FROM student")
        assert not (state / "course" / "grading" / "gradebook.db").exists()

        # The student cannot even reach the socket, whichever role they ask for; the instructor reaches it but
        # not the hub's database.
        psql = sorted(glob("/usr/lib/postgresql/*/bin/psql"))[-1]
        for account, role, dbname, refusal in (
            (student, "gradebook", "gradebook", "Permission denied"),
            (student, "postgres", "jupyterhub", "Permission denied"),
            (instructor, "postgres", "jupyterhub", "Peer authentication failed"),
        ):
            attempt = subprocess.run(
                ["runuser", "-u", account, "--", psql, "-h", str(socket), "-U", role, "-c", "SELECT 1", dbname],
                capture_output=True,
                text=True,
                cwd="/",
            )
            assert attempt.returncode != 0 and refusal in attempt.stderr, (account, role, attempt.stderr)
    finally:
        if hub is not None:
            setup.stop_process(hub)
        done = setup.clean(state)
        log.unlink(missing_ok=True)
    assert any("PostgreSQL" in line for line in done), done
    assert not postmasters_of(data), "a PostgreSQL server of the class survived make hub-clean"
    assert not state.exists()
