"""The class hub (hub/, issue 22): one real JupyterHub, two students and an instructor, each a Unix account.

The slow tests share one hub for the module (``class_hub``): real accounts, real homes, nbgrader's exchange
run by each member under their own account (as their servers run it), and every read a student should
not make tried as that student with ``runuser``. The fixture removes the accounts, the processes and the
state folder even when a test fails. Root only (the hub creates accounts); the hub's software must be in
.venv beforehand (``sudo make hub`` installs it), since tests have no network.
"""

from __future__ import annotations

import csv
import http.cookiejar
import json
import os
import pwd
import secrets
import shutil
import sqlite3
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

ASSIGNMENT = "ex00_adam_update"  # the reads and the formgrader's listing: nothing is executed
IN_THE_BROWSER = "ex01_learning_rate"  # the class's first graded assignment, run, validated and graded for real
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


def member_environment(state: Path, settings: dict, name: str) -> dict[str, str]:
    """The environment the hub gives ``name``'s server: their home, their role's Jupyter configuration."""
    role = "instructor" if name in settings["instructors"] else "student"
    return {
        "PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin",
        "HOME": str(state / "home" / name),
        "USER": name,
        "JUPYTER_CONFIG_PATH": str(state / "etc" / role),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }


def member_command(state: Path, settings: dict, name: str, command: list[str]) -> list[str]:
    """``command`` as ``name``, as the hub starts their server (instructors with the instructors' umask)."""
    from classhub.spawner import INSTRUCTOR_UMASK, as_member

    umask = INSTRUCTOR_UMASK if name in settings["instructors"] else None
    return as_member(name, command, str(state / "hub" / "staging"), umask)


class Members:
    """A prepared class's members, each acting under their own account as their server would."""

    def __init__(self, state: Path, settings: dict):
        self.state, self.settings = state, settings

    def home(self, name: str) -> Path:
        return self.state / "home" / name

    def run_as(self, name: str, *command: str) -> subprocess.CompletedProcess:
        """A command as ``name``, with the configuration their server has (as the hub starts it)."""
        return subprocess.run(
            member_command(self.state, self.settings, name, list(command)),
            env=member_environment(self.state, self.settings, name),
            capture_output=True,
            text=True,
            timeout=300,
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


class Hub(Members):
    """A running hub for the class: its address and the test's API token."""

    def __init__(self, state: Path, settings: dict, token: str):
        super().__init__(state, settings)
        self.token = token
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
            setup.stop_process(hub)
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
    submitted = course / "grading" / "submitted" / hub.ada / ASSIGNMENT
    feedback = course / "grading" / "feedback" / hub.ada / ASSIGNMENT
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
    source = next((course / "solutions" / ASSIGNMENT).glob("*.ipynb"))
    secrets_of_ada = [
        ada_home,  # her home: lessons, her answers, her fetched assignment
        ada_home / "lessons" / "01_learning_rate.ipynb",
        ada_feedback[0],
        exchange / "inbound",  # the listing would name her submission
        inbound[0] / f"{ASSIGNMENT}.ipynb",  # her submission, by its exact path
        inbound[0] / "submission_secret.txt",  # the secret that names her feedback file
        exchange / "feedback",  # the listing would name her released feedback
        source,  # the instructor's source notebook: solutions and hidden tests
        course / "grading" / "gradebook.db",
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
    assert hub.read_as(hub.instructor, course / "grading" / "gradebook.db").returncode == 0
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
    # The formgrader panel is an iframe of the instructor's own server: only that server lets itself be framed.
    assert frame_ancestors(hub, instructor) == "frame-ancestors 'self'"
    assert frame_ancestors(hub, student) == "frame-ancestors 'none'"  # JupyterHub's default, kept for students
    for name in (hub.instructor, hub.ben):
        hub.api("DELETE", f"/users/{name}/server")


def frame_ancestors(hub: Hub, server: dict) -> str:
    request = urllib.request.Request(hub.url + server["url"] + "lab", headers={"Authorization": f"token {hub.token}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.headers["Content-Security-Policy"]


# The class in a real browser (issue 22, item 5) ----------------------------------------------------------

SHOTS = ROOT / "test-artifacts" / "hub"
PASSWORDS = {"a": "ada's first password", "b": "ben's first password", "i": "the instructor's password"}


def hostile_answer(hub: Hub) -> str:
    """Code that, graded as the instructor, looks for the class's files, tries to wreck the gradebook, and fails."""
    return (
        "import glob, os\n"
        f"seen = [p for p in glob.glob({str(hub.state)!r} + '/**', recursive=True) if os.path.isfile(p)]\n"
        "print('HOSTILE SAW', len(seen), 'FILES OF THE CLASS')\n"
        f"open({str(hub.state / 'course' / 'grading' / 'gradebook.db')!r}, 'wb').write(b'wrecked')\n"
    )


def reset_class_work(hub: Hub) -> None:
    """Remove what a round trip leaves (fetched copies, caches, submissions, grades, feedback): each test that
    hands in work starts and ends with none, in any order."""
    for name in (hub.ada, hub.ben):
        shutil.rmtree(hub.home(name) / "adam-clinic", ignore_errors=True)
        shutil.rmtree(hub.home(name) / ".local" / "share" / "jupyter" / "nbgrader_cache", ignore_errors=True)
    exchange = hub.state / "exchange" / "adam-clinic"
    for folder in (exchange / "inbound", exchange / "feedback"):
        for entry in folder.glob("*") if folder.is_dir() else []:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    for name in ("submitted", "autograded", "feedback", "reports", "gradebook.db"):
        path = hub.state / "course" / "grading" / name
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def answer_as(hub: Hub, name: str, assignment: str, hostile: bool) -> None:
    """Write the solution's answers (or hostile code) into the student's fetched notebook, as a student would."""
    import nbformat

    solution = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", 4)
    answers = {
        cell.metadata["nbgrader"]["grade_id"]: cell.source
        for cell in solution.cells
        if cell.metadata.get("nbgrader", {}).get("solution")
    }
    path = hub.home(name) / "adam-clinic" / assignment / f"{assignment}.ipynb"
    notebook = nbformat.read(path, 4)
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = hostile_answer(hub) if hostile and cell.cell_type == "code" else answers[grade_id]
    nbformat.write(notebook, path)
    account = pwd.getpwnam(name)
    os.chown(path, account.pw_uid, account.pw_gid)


class Student:
    """One member's browser (a context of its own: their own hub cookie), screenshots numbered by step."""

    def __init__(self, chromium, hub: Hub, name: str):
        self.hub, self.name, self.step = hub, name, 0
        self.context = chromium.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.lab = f"{hub.url}/user/{name}/lab"
        for old in SHOTS.glob(f"{name[-1]}-*.png"):
            old.unlink()

    def shot(self, what: str) -> None:
        self.step += 1
        self.page.screenshot(path=str(SHOTS / f"{self.name[-1]}-{self.step:02d}-{what}.png"))

    def log_in(self) -> None:
        self.page.goto(f"{self.hub.url}/hub/login")
        self.page.fill("input[name=username]", self.name)
        self.page.fill("input[name=password]", PASSWORDS[self.name[-1]])
        self.page.click("#login_submit")
        # The hub starts the member's server on login and sends the browser to their JupyterLab.
        self.page.wait_for_url(f"**/user/{self.name}/lab**", timeout=180_000)
        self.page.wait_for_selector("#jp-MainMenu", timeout=120_000)
        self.shot("logged-in")

    def open_assignments(self) -> None:
        self.page.goto(f"{self.lab}?reset")
        self.page.wait_for_selector("#jp-MainMenu", timeout=120_000)
        self.page.locator("#jp-MainMenu").get_by_text("Nbgrader", exact=True).click()
        self.page.locator('li[data-command="nbgrader:open-assignment-list"]').click()
        self.page.wait_for_selector("#released_assignments_list", timeout=60_000)

    def rows(self, listing: str, count: int):
        rows = self.page.locator(f"#{listing}_assignments_list > .list_item")
        self.page.wait_for_function(
            "([selector, count]) => document.querySelectorAll(selector).length >= count",
            arg=[f"#{listing}_assignments_list > .list_item", count],
            timeout=120_000,
        )
        return rows

    def dialog(self) -> str:
        dialog = self.page.locator(".jp-Dialog-content")
        dialog.wait_for(timeout=300_000)
        text = dialog.inner_text()
        self.page.locator(".jp-Dialog-button").first.click()
        return text


def autograded_points(assignment: str) -> tuple[float, float]:
    """(the points the hidden tests give, the assignment's total) from the instructor's source notebook."""
    import nbformat

    graded = [
        cell.metadata["nbgrader"]
        for cell in nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", 4).cells
        if cell.metadata.get("nbgrader", {}).get("points") is not None
    ]
    tests = sum(meta["points"] for meta in graded if meta.get("grade") and not meta.get("solution"))
    return float(tests), float(sum(meta["points"] for meta in graded))


def grade_from_the_hub(hub: Hub, assignment: str) -> subprocess.CompletedProcess:
    """``sudo make grade A=... HUB=1``: the course's grader on the hub's exchange and course, as the instructor."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "hub"))
    command = [sys.executable, "-m", "classhub", "grade", assignment, "--state", str(hub.state), "--workers", "1"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
@pytest.mark.needs_system("chromium")
def test_two_students_in_a_real_browser_train_live_hand_in_and_get_only_their_own_grade(class_hub):
    """Log in, move lesson 01's slider; fetch, validate, submit ex01 (one hostile); grade; the formgrader; own feedback."""
    from playwright.sync_api import sync_playwright

    import test_browser as lab  # the browser tests' Chromium options and lesson 01's live-demo helpers

    hub = class_hub
    SHOTS.mkdir(parents=True, exist_ok=True)
    reset_class_work(hub)
    hub.nbgrader(hub.instructor, "release_assignment", IN_THE_BROWSER, "--force")
    timings = {}
    started = time.monotonic()
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=lab.CHROMIUM, args=lab.CHROMIUM_ARGS)
            try:
                ada, ben = Student(chromium, hub, hub.ada), Student(chromium, hub, hub.ben)
                for student in (ada, ben):
                    student.log_in()
                timings["logged in, servers up"] = time.monotonic() - started

                # Lesson 01 in Ada's server: the cells its live demo needs, then the slider, as test_browser does.
                server = hub.api("GET", f"/users/{hub.ada}")["servers"][""]
                settings = "lab/api/settings/@jupyterlab/notebook-extension:tracker"
                request = urllib.request.Request(
                    hub.url + server["url"] + settings,
                    data=json.dumps({"raw": json.dumps({"windowingMode": "none"})}).encode(),
                    method="PUT",
                    headers={"Authorization": f"token {hub.token}", "Content-Type": "application/json"},
                )
                urllib.request.urlopen(request, timeout=60).read()
                case = lab.LIVE_CONTROLS["01"]
                panel_cell = lab.cell_index(ROOT / case.notebook, case.panel_cell)
                ada.page.goto(f"{ada.lab}/tree/{case.notebook}?reset")
                ada.page.wait_for_selector(".jp-Notebook-ExecutionIndicator, .jp-Toolbar-kernelStatus", timeout=120_000)
                wait_for(
                    lambda: any(
                        s["path"] == case.notebook and s["kernel"]["execution_state"] == "idle"
                        for s in json.loads(get(hub, server, "api/sessions")[1] or "[]")
                    ),
                    "lesson 01's kernel starting",
                    hub.state.parent / f"{hub.state.name}.log",
                )
                cells = ada.page.locator(".jp-Notebook .jp-Cell")
                cells.nth(panel_cell + 1).locator(".jp-InputPrompt").click()
                ada.page.locator("#jp-MainMenu").get_by_text("Run", exact=True).click()
                ada.page.locator(".lm-Menu-content").get_by_text("Run All Above Selected Cell", exact=True).click()
                panel = cells.nth(panel_cell).locator(".jupyter-widgets", has_text=case.control).first
                panel.wait_for(timeout=300_000)
                panel = panel.locator("xpath=ancestor::div[contains(@class,'jp-OutputArea-output')]").first
                ada.page.wait_for_function(
                    "root => /finished/.test(root.innerText)", arg=panel.element_handle(), timeout=300_000
                )
                ada.shot("lesson01-defaults")
                before, after = lab.move_and_watch(panel, case.control, case.value, case.verdict)
                case.judge(before, after)
                ada.shot("lesson01-lr-1")
                complaints = ada.page.locator(
                    ".jp-Notebook .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
                )
                assert complaints.count() == 0, complaints.first.inner_text()[-1500:]
                timings["lesson 01's slider"] = time.monotonic() - started

                # The Assignments tab: fetch, answer, validate (Ada), submit.
                for student in (ada, ben):
                    student.open_assignments()
                    released = student.rows("released", 1).filter(has_text=IN_THE_BROWSER)
                    released.locator(".item_status button").click()
                    student.rows("fetched", 1)
                    answer_as(hub, student.name, IN_THE_BROWSER, hostile=student is ben)
                    student.shot("fetched")
                ada.page.locator("#fetched_assignments_list a.assignment-notebooks-link").first.click()
                ada.page.locator("#fetched_assignments_list button:text('Validate')").first.click()
                verdict = ada.dialog()
                assert "success" in verdict.lower(), verdict
                timings["validated"] = time.monotonic() - started
                for student in (ada, ben):
                    fetched = student.rows("fetched", 1).filter(has_text=IN_THE_BROWSER)
                    fetched.locator('.item_status button:text("Submit")').click()
                    student.rows("submitted", 1)
                    student.shot("submitted")
                inbound = sorted((hub.state / "exchange" / "adam-clinic" / "inbound").iterdir())
                assert len(inbound) == 2, inbound

                # The instructor grades the hub's class with the course's grader (make grade A=... HUB=1).
                graded = grade_from_the_hub(hub, IN_THE_BROWSER)
                timings["graded"] = time.monotonic() - started
                assert graded.returncode == 0, graded.stdout[-3000:] + graded.stderr[-3000:]
                report = hub.state / "course" / "grading" / "reports" / f"{IN_THE_BROWSER}-report.csv"
                with report.open() as handle:
                    scores = {row["student"]: row for row in csv.DictReader(handle)}
                full, total = autograded_points(IN_THE_BROWSER)  # the rest is graded by hand
                assert float(scores[hub.ada]["score"]) == full, scores
                assert float(scores[hub.ben]["score"]) == 0.0, scores
                with sqlite3.connect(hub.state / "course" / "grading" / "gradebook.db") as gradebook:
                    assert gradebook.execute("PRAGMA integrity_check").fetchone() == ("ok",)  # not wrecked

                # The instructor's JupyterLab: the Formgrader panel renders (JupyterHub's frame-ancestors 'none'
                # left it blank) and lists both submissions; a student's server stays closed to the instructor.
                instructor = Student(chromium, hub, hub.instructor)
                instructor.log_in()
                instructor.page.locator("#jp-MainMenu").get_by_text("Nbgrader", exact=True).click()
                instructor.page.locator('li[data-command="nbgrader:open-formgrader"]').click()
                formgrader = instructor.page.frame_locator("#formgrader iframe")
                row = formgrader.locator("tr", has_text=IN_THE_BROWSER).first
                row.wait_for(timeout=120_000)
                headers = [text.strip() for text in formgrader.locator("thead th").all_inner_texts()]
                column = next(i for i, text in enumerate(headers) if text.endswith("Submissions"))
                assert row.locator("td").nth(column).inner_text().strip() == "2", (headers, row.inner_text())
                instructor.shot("formgrader")
                response = instructor.page.goto(f"{hub.url}/user/{hub.ada}/lab")
                assert response is not None and response.status == 403, response and response.status
                timings["formgrader"] = time.monotonic() - started

                # Each fetches feedback from the tab and reads their own score; Ada's is closed to Ben.
                pages = {}
                for student in (ada, ben):
                    student.page.locator("#refresh_assignments_list").click()
                    submitted = student.rows("submitted", 1)
                    submitted.locator('button:text("Fetch Feedback")').first.click()
                    feedback = wait_for(
                        lambda s=student: sorted(
                            hub.home(s.name).glob(f"adam-clinic/{IN_THE_BROWSER}/feedback/*/{IN_THE_BROWSER}.html")
                        ),
                        f"{student.name}'s feedback arriving",
                        hub.state.parent / f"{hub.state.name}.log",
                    )
                    assert len(feedback) == 1, feedback
                    pages[student.name] = f"{hub.url}/user/{student.name}/files/" + str(
                        feedback[0].relative_to(hub.home(student.name))
                    )
                    student.page.goto(pages[student.name])
                    student.shot("feedback")
                    shown = student.page.locator("body").inner_text()
                    expected = full if student is ada else 0.0
                    assert f"{IN_THE_BROWSER} (Score: {expected} / {total})" in shown, shown[:1000]
                    if student is ben:  # graded as the instructor, in the grader's sandbox: it saw nothing
                        assert "HOSTILE SAW 0 FILES OF THE CLASS" in shown, [
                            line for line in shown.splitlines() if "HOSTILE" in line or "Error" in line
                        ][:20]
                response = ben.page.goto(pages[hub.ada])
                assert f"Score: {full}" not in ben.page.locator("body").inner_text()
                assert response is None or response.status in (403, 404) or "/user/" + hub.ben in ben.page.url, (
                    response.status if response else None,
                    ben.page.url,
                )
                ben.shot("ada-s-feedback-refused")

                # The instructors' role runs the class from the hub's Admin page: it lists everyone, and a server
                # stopped there (through the hub's API, with the page's own XSRF token) stops.
                admin = instructor.page.goto(f"{hub.url}/hub/admin")
                assert admin is not None and admin.status == 200, admin and admin.status
                instructor.page.get_by_text(hub.ben, exact=True).first.wait_for(timeout=60_000)
                instructor.shot("admin")
                stopped = instructor.page.evaluate(
                    """async (name) => (await fetch(`/hub/api/users/${name}/server`,
                        {method: 'DELETE', headers: {'X-XSRFToken': window.jhdata.xsrf_token}})).status""",
                    hub.ben,
                )
                assert stopped in (202, 204), stopped
                wait_for(
                    lambda: not hub.api("GET", f"/users/{hub.ben}")["servers"],
                    "Ben's server stopping",
                    hub.state.parent / f"{hub.state.name}.log",
                )
            finally:
                chromium.close()
    finally:
        print("hub browser timings (s):", {k: round(v) for k, v in timings.items()})
        for name in (hub.ada, hub.ben, hub.instructor):
            try:
                hub.api("DELETE", f"/users/{name}/server")
            except (urllib.error.URLError, ConnectionError):
                pass
        reset_class_work(hub)
