"""``make lab``'s launcher starts a real JupyterLab on 127.0.0.1 that serves lesson 01, and stops cleanly."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from adamclinic.lab import free_port

ROOT = Path(__file__).resolve().parents[1]


def test_lab_serves_lesson_01_through_the_rest_api(tmp_path):
    port, token = free_port(), "test-token-123"
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_DATA_DIR=str(tmp_path / "data"))
    log = tmp_path / "lab.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "adamclinic.lab", "--port", str(port), "--token", token, "--no-browser"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
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
    finally:
        # Ctrl-C, and Ctrl-C again if it is still up: Jupyter may ask "Shutdown this Jupyter server?"
        # after the first one, and a second Ctrl-C stops it without asking.
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGINT)
            try:
                server.wait(timeout=90)  # a liveness bound: shutdown is slow on a loaded machine
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                raise AssertionError("the server did not stop on Ctrl-C twice within 100 s")
