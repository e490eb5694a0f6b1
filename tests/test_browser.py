"""The course in a real browser: JupyterLab 4 served from the project's environment, driven by Playwright
in Debian's headless Chromium (no browser download).

The server runs on 127.0.0.1 with a throwaway config, token and workspace, on a temporary copy of the
course, so autosave never touches the repository. Screenshots of every step go to
``test-artifacts/browser/`` (git-ignored) for a reviewer to look at.

When the browser cannot start, these tests fail with the reason: they never skip quietly.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from adamclinic.lab import free_port

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = os.environ.get("ADAMCLINIC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]

pytestmark = pytest.mark.xdist_group("browser")  # one server and one browser for the whole module


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A copy of the course for the server to work in."""
    root = tmp_path_factory.mktemp("course")
    for folder in ("lessons", "exercises", "solutions", "grading"):
        shutil.copytree(ROOT / folder, root / folder,
                        ignore=shutil.ignore_patterns("exchange", "gradebook.db", "submitted", "autograded",
                                                      "feedback", "cache", ".ipynb_checkpoints"))
    shutil.copy(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    return root


@pytest.fixture(scope="module")
def server(course, tmp_path_factory):
    home = tmp_path_factory.mktemp("jupyter")
    port, token = free_port(), "browser-test-token"
    env = {k: v for k, v in os.environ.items() if k != "ADAMCLINIC_NO_PACING"}  # a student's pace
    env = dict(env, JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    # Keep JupyterLab from asking about news in a corner of every screenshot.
    settings = home / "config" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    # Render every cell, so outputs far from the viewport are in the page too.
    notebook = home / "config" / "lab" / "user-settings" / "@jupyterlab" / "notebook-extension"
    notebook.mkdir(parents=True)
    (notebook / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    log = (home / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={course}",
         "--allow-root"],
        cwd=course, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=3)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not start; its log:\n{(home / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
    yield {"base": base, "token": token, "root": course}
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"No Chromium at {CHROMIUM}: install Debian's package (apt-get install chromium); "
                    ".ci/run does this when it is missing.")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def kernel_states(server) -> list[str]:
    with urllib.request.urlopen(f"{server['base']}/api/kernels?token={server['token']}", timeout=5) as response:
        return [kernel["execution_state"] for kernel in json.load(response)]


def wait_for_kernels_to_finish(server, timeout_s: float) -> None:
    """Wait until a kernel has been busy and every kernel has then stayed idle for two seconds."""
    deadline = time.monotonic() + timeout_s
    seen_busy, idle_since = False, None
    while time.monotonic() < deadline:
        states = kernel_states(server)
        if any(state != "idle" for state in states):
            seen_busy, idle_since = True, None
        elif seen_busy and states:
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 2:
                return
        time.sleep(0.25)
    raise TimeoutError(f"the kernel was still running cells after {timeout_s} s")


@pytest.fixture(autouse=True)
def shut_down_kernels_after_each_test(server):
    """A lesson's kernel keeps its panels' threads; end it so the next test has the machine."""
    yield
    request = urllib.request.Request(f"{server['base']}/api/kernels?token={server['token']}")
    with urllib.request.urlopen(request, timeout=5) as response:
        kernels = json.load(response)
    for kernel in kernels:
        urllib.request.urlopen(urllib.request.Request(
            f"{server['base']}/api/kernels/{kernel['id']}?token={server['token']}", method="DELETE"), timeout=10)


class Page:
    """One JupyterLab tab, with its console collected and screenshots numbered by step."""

    def __init__(self, browser, server, name: str):
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.server, self.name, self.step = server, name, 0
        self.console_errors: list[str] = []
        self.page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.console_errors.append(f"pageerror: {e}"))
        SHOTS.mkdir(parents=True, exist_ok=True)

    def open(self, path: str) -> None:
        # ?reset: start from an empty workspace, not the tabs an earlier test left open.
        self.page.goto(f"{self.server['base']}/lab/tree/{path}?reset&token={self.server['token']}")
        self.page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=90_000)
        self.page.wait_for_selector(".jp-Notebook-ExecutionIndicator, .jp-Toolbar-kernelStatus", timeout=90_000)

    def shot(self, what: str) -> None:
        self.step += 1
        self.page.screenshot(path=str(SHOTS / f"{self.name}-{self.step:02d}-{what}.png"))

    def menu(self, top: str, item: str) -> None:
        self.page.locator(".lm-MenuBar-itemLabel", has_text=top).first.click()
        self.page.locator(".lm-Menu-itemLabel", has_text=item).first.click()

    def run_all(self, timeout_s: float = 300) -> None:
        """Run every cell and wait until the kernel has finished them (it is then free for widgets)."""
        self.menu("Run", "Run All Cells")
        self.shot("run-all")
        wait_for_kernels_to_finish(self.server, timeout_s)

    def widget_errors(self) -> list[str]:
        words = ("widget", "bqplot", "bqscales", "jupyter-widgets", "adamclinic")
        return [error for error in self.console_errors if any(w in error.lower() for w in words)]


def panel_output(page: Page, control_label: str):
    """The output area of the panel whose control is labelled ``control_label``."""
    control = page.page.locator(".jupyter-widgets", has_text=control_label).first
    control.wait_for(timeout=180_000)
    return control.locator("xpath=ancestor::div[contains(@class,'jp-OutputArea-output')]").first


SAMPLE_DRAWING = """
async ([root, ms]) => {
  // Every 25 ms: the path of the newest line in the panel's plot, and the status line.
  const seen = [];
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const lines = root.querySelectorAll('.bqplot .curve path.line');
    const html = root.querySelectorAll('.widget-html-content');
    seen.push({
      path: lines.length ? lines[lines.length - 1].getAttribute('d') : '',
      status: html.length ? html[html.length - 1].innerText : '',
    });
    await new Promise(r => setTimeout(r, 25));
  }
  return seen;
}
"""


def drag_log_slider_to(panel, value: str) -> None:
    """Type a value into the slider's readout, as a keyboard user would, and press Enter."""
    readout = panel.locator(".widget-readout").first
    readout.click()
    readout.press("Control+a")
    readout.type(value)
    readout.press("Enter")


def test_lesson_01_slider_redraws_while_training_and_reports_the_blow_up(browser, server):
    page = Page(browser, server, "lesson01")
    page.open("lessons/01_learning_rate.ipynb")
    page.shot("opened")
    page.run_all()
    panel = panel_output(page, "learning rate")
    panel.scroll_into_view_if_needed()
    page.shot("healthy-run")
    drag_log_slider_to(panel, "1")
    samples = panel.evaluate(f"(root) => ({SAMPLE_DRAWING})([root, 6000])")
    during = [s["path"] for s in samples if "epoch" in s["status"] and "finished" not in s["status"]]
    assert len(set(during)) >= 3, "the curve did not redraw while the run was training"
    page.page.wait_for_function(
        "root => [...root.querySelectorAll('.widget-html-content')].some(e => e.innerText.includes('lr=1:') "
        "&& e.innerText.includes('blew up'))", arg=panel.element_handle(), timeout=60_000,
    )
    page.shot("diverging-run")
    assert page.widget_errors() == []


def validate_verdict(page: Page) -> str:
    toolbar = page.page.locator(".jp-NotebookPanel-toolbar >> visible=true")
    page.page.keyboard.press("Escape")  # close a leftover dialog or toast that could cover the toolbar
    toolbar.get_by_text("Validate", exact=True).first.click(force=True)
    dialog = page.page.locator(".jp-Dialog-content")
    dialog.wait_for(timeout=180_000)
    text = dialog.inner_text()
    page.shot("validate")
    page.page.locator(".jp-Dialog-button").first.click()
    return text


def test_validate_button_fails_an_untouched_exercise_and_passes_the_solution(browser, server):
    path = "exercises/ex01_learning_rate/ex01_learning_rate.ipynb"
    page = Page(browser, server, "validate")
    page.open(path)
    page.shot("exercise")
    verdict = validate_verdict(page)
    assert "failed" in verdict.lower() or "error" in verdict.lower(), verdict

    # Write the solution into the answer cells, as a student who solved it would.
    solution = nbformat.read(ROOT / "solutions" / "ex01_learning_rate" / "ex01_learning_rate.ipynb", 4)
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in solution.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    exercise_file = server["root"] / path
    exercise = nbformat.read(exercise_file, 4)
    for cell in exercise.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    nbformat.write(exercise, exercise_file)
    page.page.reload()
    page.page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=90_000)
    verdict = validate_verdict(page)
    assert "success" in verdict.lower() and "passes" in verdict.lower(), verdict
    assert page.widget_errors() == []
