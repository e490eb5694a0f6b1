"""The class hub (hub/, issue 22): one real JupyterHub, two students and an instructor, each a Unix account.

The slow tests share one hub for the module (``class_hub``): real accounts, real homes, nbgrader's exchange
run by each member under their own account (as their servers run it), and every read a student should
not make tried as that student with ``runuser``. The fixture removes the accounts, the processes and the
state folder even when a test fails. Root only (the hub creates accounts); the hub's software must be in
.venv beforehand (``sudo make hub`` installs it), since tests have no network.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hub"))

from classhub import course_files, roster, setup  # noqa: E402

ASSIGNMENT = "ex00_adam_update"
# One worker runs the whole file, so the module's one hub serves every test (tests/conftest.py orders groups).
pytestmark = pytest.mark.xdist_group("hub")


# Course files: cheap, no root -------------------------------------------------------------------------


def test_course_files_reach_a_home_without_overwriting_edits(tmp_path):
    """A lesson is copied when missing, updated when untouched, and kept (new version beside it) when edited."""
    course = tmp_path / "repo" / "lessons"
    course.mkdir(parents=True)
    (course / "a.ipynb").write_text("a v1")
    (course / "b.ipynb").write_text("b v1")
    home = tmp_path / "home"
    home.mkdir()

    first = course_files.sync(home, [course])
    assert sorted(first["copied"]) == ["lessons/a.ipynb", "lessons/b.ipynb"]
    (home / "lessons" / "b.ipynb").write_text("b, the student's answer")
    (course / "a.ipynb").write_text("a v2")
    (course / "b.ipynb").write_text("b v2")

    second = course_files.sync(home, [course])
    assert second == {"copied": [], "updated": ["lessons/a.ipynb"], "kept": ["lessons/b.ipynb"]}
    assert (home / "lessons" / "a.ipynb").read_text() == "a v2"
    assert (home / "lessons" / "b.ipynb").read_text() == "b, the student's answer"
    assert (home / "lessons" / "b-updated.ipynb").read_text() == "b v2"
    (home / "lessons" / "a.ipynb").unlink()
    assert course_files.sync(home, [course])["copied"] == ["lessons/a.ipynb"]


def test_roster_refuses_names_that_cannot_be_accounts():
    """A roster with a name useradd would refuse, or a member in both lists, says what to change."""
    good = roster.parse({"instructors": ["ines"], "students": ["ada", "ben"]})
    assert good.everyone == ("ines", "ada", "ben") and good.course_id == "adam-clinic"
    with pytest.raises(roster.RosterError, match="cannot be Unix account names"):
        roster.parse({"instructors": ["ines"], "students": ["Ada Lovelace"]})
    with pytest.raises(roster.RosterError, match="both instructor and student"):
        roster.parse({"instructors": ["ines"], "students": ["ines"]})
    with pytest.raises(roster.RosterError, match="at least one instructor"):
        roster.parse({"students": ["ada"]})


# One real hub ------------------------------------------------------------------------------------------


def why_no_hub() -> str | None:
    if os.geteuid() != 0:
        return "the hub creates Unix accounts: run the hub tests as root (CI does)"
    for tool in ("useradd", "userdel", "runuser", "unshare", "setpriv", "bwrap", "node"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            return f"{tool} is missing (apt-get install passwd util-linux bubblewrap nodejs)"
    if missing := setup.missing_tools():
        return "not installed: " + "; ".join(missing)
    if (closed := setup.closed_ancestor(ROOT)) is not None:
        return f"students' servers cannot reach the course: other users cannot enter {closed} (chmod o+x {closed})"
    return None


class Hub:
    def __init__(self, state: Path, settings: dict, token: str):
        self.state, self.settings, self.token = state, settings, token
        self.url = f"http://127.0.0.1:{settings['port']}"
        self.instructor = settings["instructors"][0]
        self.ada, self.ben = settings["students"]

    def api(self, method: str, path: str) -> dict | None:
        request = urllib.request.Request(
            self.url + "/hub/api" + path, method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            body = response.read()
        return json.loads(body) if body else None

    def home(self, name: str) -> Path:
        return self.state / "home" / name

    def run_as(self, name: str, *command: str) -> subprocess.CompletedProcess:
        """A command as ``name``, with the configuration their server has (as the hub starts it)."""
        from classhub.spawner import as_member

        role = "instructor" if name == self.instructor else "student"
        env = {
            "PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin",
            "HOME": str(self.home(name)),
            "USER": name,
            "JUPYTER_CONFIG_PATH": str(self.state / "etc" / role),
            "TF_CPP_MIN_LOG_LEVEL": "3",
        }
        staging = str(self.state / "hub" / "staging")
        return subprocess.run(
            as_member(name, list(command), staging), env=env, capture_output=True, text=True, timeout=300
        )

    def nbgrader(self, name: str, *arguments: str) -> str:
        result = self.run_as(name, "nbgrader", *arguments)
        assert result.returncode == 0, f"nbgrader {' '.join(arguments)} as {name}:\n{result.stderr[-3000:]}"
        return result.stderr

    def read_as(self, name: str, path: Path) -> subprocess.CompletedProcess:
        """``cat`` or ``ls`` of ``path`` as ``name`` (runuser: the member's own account, nothing else)."""
        tool = "ls" if path.is_dir() else "cat"
        return subprocess.run(
            ["runuser", "-u", name, "--", tool, str(path)], capture_output=True, text=True, errors="replace"
        )


def wait_for(condition, what: str, log: Path, limit: float = 180.0):
    """Poll ``condition`` until it returns something true; a hub that never gets there fails with its log."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.3)
    pytest.fail(f"{what} did not happen; the hub's log ends:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def class_hub():
    if reason := why_no_hub():
        pytest.skip(reason)
    state = Path(tempfile.mkdtemp(prefix="adamclinic-hub-test-"))
    tag = f"{os.getpid() % 100000}"
    the_class = roster.Roster("adam-clinic", (f"ht{tag}i",), (f"ht{tag}a", f"ht{tag}b"))
    token = secrets.token_hex(32)
    hub = None
    log = state.parent / f"{state.name}.log"
    try:
        settings = setup.prepare(state, the_class, port=setup.free_port(), instructors_group=f"ht{tag}-instructors")
        command, env = setup.hub_command(state)
        env["ADAMCLINIC_HUB_API_TOKEN"] = token
        with log.open("w") as sink:
            hub = subprocess.Popen(command, env=env, cwd=state / "hub", stdout=sink, stderr=subprocess.STDOUT)
        the_hub = Hub(state, settings, token)

        def answers():
            try:
                return the_hub.api("GET", "/") is not None
            except (urllib.error.URLError, ConnectionError):
                return False

        wait_for(answers, "the hub answering", log)
        yield the_hub
    finally:
        if hub is not None:
            hub.terminate()
            try:
                hub.wait(timeout=30)
            except subprocess.TimeoutExpired:
                hub.kill()
                hub.wait()
        setup.clean(state)
        log.unlink(missing_ok=True)


def log_in(hub: Hub, name: str, password: str) -> tuple[int, str]:
    """The hub's login form, as a browser posts it: (status, final URL)."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(hub.url + "/hub/login", timeout=60).read()
    xsrf = next(cookie.value for cookie in jar if cookie.name == "_xsrf")
    form = urllib.parse.urlencode({"username": name, "password": password, "_xsrf": xsrf}).encode()
    try:
        response = opener.open(hub.url + "/hub/login?next=%2Fhub%2Fhome", data=form, timeout=60)
        return response.status, response.url
    except urllib.error.HTTPError as error:
        return error.code, error.url


@pytest.mark.slow
def test_a_student_logs_in_and_gets_a_server_with_the_lessons(class_hub):
    """First login sets the password, a wrong one is refused; the server runs as the student, lessons in its home."""
    hub = class_hub
    status, url = log_in(hub, hub.ada, "ada's first password")
    assert status == 200 and url.endswith("/hub/home"), (status, url)
    assert log_in(hub, hub.ada, "someone guessing")[0] == 403

    server = start_server(hub, hub.ada)
    assert get(hub, server, "api/status")[0] == 200
    uid = pwd.getpwnam(hub.ada).pw_uid
    assert setup.processes_of({uid}), "no process runs as ada: the server is not hers"
    lesson = hub.home(hub.ada) / "lessons" / "01_learning_rate.ipynb"
    assert lesson.is_file() and lesson.stat().st_uid == uid
    assert (hub.home(hub.ada) / "datasets" / "digits.csv").is_file()
    hub.api("DELETE", f"/users/{hub.ada}/server")


@pytest.mark.slow
def test_a_student_reads_nothing_of_another_student_or_the_instructor(class_hub):
    """Ada submits and gets feedback; as Ben, every read of her work, the sources and the gradebook fails."""
    hub = class_hub
    course = hub.state / "course"
    hub.nbgrader(hub.instructor, "release_assignment", ASSIGNMENT)
    hub.nbgrader(hub.ada, "fetch_assignment", ASSIGNMENT)
    hub.nbgrader(hub.ada, "submit", ASSIGNMENT)
    hub.nbgrader(hub.instructor, "collect", ASSIGNMENT)

    # Feedback as generate_feedback leaves it (autograding is tests/test_grading_*'s business), released
    # by the instructor through the exchange and fetched by Ada.
    submitted = course / "submitted" / hub.ada / ASSIGNMENT
    feedback = course / "feedback" / hub.ada / ASSIGNMENT
    feedback.mkdir(parents=True)
    for name in ("timestamp.txt", "submission_secret.txt"):
        shutil.copy(submitted / name, feedback / name)
    (feedback / f"{ASSIGNMENT}.html").write_text("<p>Ada's feedback: 4 / 5</p>")
    for path in [feedback, *feedback.rglob("*")]:
        os.chown(path, pwd.getpwnam(hub.instructor).pw_uid, -1)
    hub.nbgrader(hub.instructor, "release_feedback", ASSIGNMENT)
    hub.nbgrader(hub.ada, "fetch_feedback", ASSIGNMENT)

    exchange = hub.state / "exchange" / "adam-clinic"
    inbound = sorted((exchange / "inbound").iterdir())
    assert len(inbound) == 1, inbound
    ada_home = hub.home(hub.ada)
    ada_feedback = sorted(ada_home.glob(f"adam-clinic/{ASSIGNMENT}/feedback/*/{ASSIGNMENT}.html"))
    assert len(ada_feedback) == 1, "Ada did not get her feedback"
    released = sorted((exchange / "feedback").glob("*.html"))
    assert len(released) == 1
    source = next((course / "source" / ASSIGNMENT).glob("*.ipynb"))
    secrets_of_ada = [
        ada_home,  # her home: lessons, her answers, her fetched assignment
        ada_home / "lessons" / "01_learning_rate.ipynb",
        ada_feedback[0],
        exchange / "inbound",  # the listing would name her submission
        inbound[0] / f"{ASSIGNMENT}.ipynb",  # her submission, by its exact path
        inbound[0] / "submission_secret.txt",  # the secret that names her feedback file
        exchange / "feedback",  # the listing would name her released feedback
        source,  # the instructor's source notebook: solutions and hidden tests
        course / "gradebook.db",
        submitted / f"{ASSIGNMENT}.ipynb",
        ROOT / "solutions" / ASSIGNMENT,  # the repository's own sources
        ROOT / "tests",
        ROOT / ".git",
    ]
    readable = []
    for path in secrets_of_ada:
        attempt = hub.read_as(hub.ben, path)
        if attempt.returncode == 0 or "Permission denied" not in attempt.stderr:
            readable.append(f"{path}: {attempt.returncode} {attempt.stderr.strip()[:200]}")
    assert not readable, "Ben could read:\n" + "\n".join(readable)

    # Not vacuous: the same reads succeed for whom they are meant.
    assert hub.read_as(hub.ada, ada_feedback[0]).returncode == 0
    assert hub.read_as(hub.ada, inbound[0] / f"{ASSIGNMENT}.ipynb").returncode == 0
    assert hub.read_as(hub.instructor, course / "gradebook.db").returncode == 0
    assert hub.read_as(hub.ben, ROOT / "lessons" / "01_learning_rate.ipynb").returncode == 0
    # Ben's own fetch of feedback brings him nothing of Ada's.
    hub.nbgrader(hub.ben, "fetch_feedback", ASSIGNMENT)
    assert not list(hub.home(hub.ben).rglob("*.html"))


def start_server(hub: Hub, name: str) -> dict:
    hub.api("POST", f"/users/{name}/server")

    def ready():
        server = hub.api("GET", f"/users/{name}")["servers"].get("", {})
        return server if server.get("ready") else None

    return wait_for(ready, f"{name}'s server starting", hub.state.parent / f"{hub.state.name}.log")


def get(hub: Hub, server: dict, path: str) -> tuple[int, str]:
    request = urllib.request.Request(hub.url + server["url"] + path, headers={"Authorization": f"token {hub.token}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, ""


@pytest.mark.slow
def test_the_instructor_server_serves_the_formgrader_and_a_student_server_does_not(class_hub):
    """The formgrader answers in the instructor's server (not nbgrader's 500 for a course outside the home)."""
    hub = class_hub
    instructor = start_server(hub, hub.instructor)
    status, page = get(hub, instructor, "formgrader/manage_assignments")
    assert status == 200 and "Manage Assignments" in page, (status, page[:500])
    status, listing = get(hub, instructor, "formgrader/api/assignments")
    assert status == 200 and ASSIGNMENT in [entry["name"] for entry in json.loads(listing)]
    student = start_server(hub, hub.ben)
    assert get(hub, student, "formgrader/manage_assignments")[0] == 404
    for name in (hub.instructor, hub.ben):
        hub.api("DELETE", f"/users/{name}/server")
