"""The code keeps one style: ruff's lint rules and its formatter, as configured in pyproject.toml.

Fix what this reports with ``.venv/bin/ruff check --fix`` and ``.venv/bin/ruff format``.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUFF = [sys.executable, "-m", "ruff"]


def test_ruff_finds_nothing_to_lint():
    result = subprocess.run(
        [*RUFF, "check", "--output-format", "concise", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_the_code_is_formatted():
    result = subprocess.run([*RUFF, "format", "--check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, "run .venv/bin/ruff format:\n" + result.stdout[-4000:] + result.stderr[-2000:]
