"""``make lab``'s launcher starts a real JupyterLab on 127.0.0.1 that serves lesson 01 with the course's settings
(no news prompt), and one Ctrl-C stops it, even when it was started with SIGINT ignored."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from adamclinic.lab import free_port

pytestmark = pytest.mark.slow  # starts a JupyterLab server (make check leaves it out)

ROOT = Path(__file__).resolve().parents[1]


def test_lab_serves_lesson_01_through_the_rest_api(tmp_path):
    port, token = free_port(), "test-token-123"
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_DATA_DIR=str(tmp_path / "data"))
    log = tmp_path / "lab.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "adamclinic.lab", "--port", str(port), "--token", token, "--no-browser"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # Started with SIGINT ignored, as nohup (and, at times, this test's own worker) would leave it:
        # Ctrl-C must stop the server all the same.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        url = f"http://127.0.0.1:{port}/api/contents/lessons/01_learning_rate.ipynb?token={token}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    model = json.load(response)
                break
            except OSError:
                assert server.poll() is None, "the server exited early"
                assert time.monotonic() < deadline, "the server did not answer within 60 s"
                time.sleep(0.5)
        assert f"http://127.0.0.1:{port}/lab/tree/lessons/01_learning_rate.ipynb?token={token}" in log.read_text()
        assert model["type"] == "notebook"
        assert model["content"]["cells"][0]["source"].startswith("# Lesson 01")
        # A newcomer sees no "official Jupyter news?" prompt: the course's defaults (jupyter/) are served.
        settings_url = (
            f"http://127.0.0.1:{port}/lab/api/settings/@jupyterlab/apputils-extension:notification?token={token}"
        )
        with urllib.request.urlopen(settings_url, timeout=10) as response:
            defaults = {name: spec.get("default") for name, spec in json.load(response)["schema"]["properties"].items()}
        assert defaults["fetchNews"] == "false" and defaults["checkForUpdates"] is False, defaults
    finally:
        # One Ctrl-C stops it: without a terminal Jupyter asks no "Shutdown this server?" question.
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=60)  # a liveness bound; it takes under a second on an idle machine
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            raise AssertionError("the server did not stop within 60 s of Ctrl-C") from None
    assert server.returncode == 0
