"""Benchmark of class grading: ``python -m adamclinic.bench grading [--assignment A] [--students N]``.

Builds a throwaway copy of the course with N submissions of assignment A (default: 12 copies of
ex00's reference answers, which train real Keras models in their hidden tests), then times:

- ``plain_nbgrader_s``: plain nbgrader, as nbgrader ships: ``autograde`` (serial, its own Execute, in
  one process), ``generate_feedback`` and ``export``;
- ``sandboxed_1_worker_s`` and ``sandboxed_2_workers_s``: ``python -m adamclinic.grading grade`` with
  one and with two Dask workers (each submission sandboxed, judged, journaled, plus feedback, export
  and the report).

and prints them as JSON with the seconds per submission, the speedup of 2 workers over 1, and the
overhead of the sandboxed grader per submission over plain nbgrader. Figures, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from adamclinic.grading.course import nbgrader_command, nbgrader_environment
from adamclinic.paths import REPOSITORY_ROOT

# nbgrader 0.9's own autograde pipeline, for the "plain" measurement.
PLAIN_CONFIG = """
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput", "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec", "nbgrader.preprocessors.OverwriteCells",
    "nbgrader.preprocessors.CheckCellMetadata"]
c.Autograde.autograde_preprocessors = [
    "nbgrader.preprocessors.Execute", "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor", "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades", "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata"]
c.Execute.timeout = 300
"""


def reference_submission(assignment: str) -> nbformat.NotebookNode:
    """The released exercise with every solution cell replaced by the solution's answer."""
    source = nbformat.read(REPOSITORY_ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    release = nbformat.read(REPOSITORY_ROOT / "exercises" / assignment / f"{assignment}.ipynb", as_version=4)
    answers = {}
    for cell in source.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            answers[meta["grade_id"]] = "\n".join(
                line
                for line in cell.source.splitlines()
                if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line
            )
    for cell in release.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    return release


def make_class(folder: Path, assignment: str, students: int, plain: bool) -> Path:
    folder.mkdir(parents=True)
    shutil.copytree(REPOSITORY_ROOT / "solutions" / assignment, folder / "solutions" / assignment)
    (folder / "grading").mkdir()
    config = (REPOSITORY_ROOT / "grading" / "nbgrader_config.py").read_text()
    (folder / "grading" / "nbgrader_config.py").write_text(config + (PLAIN_CONFIG if plain else ""))
    shutil.copy(REPOSITORY_ROOT / "nbgrader_config.py", folder / "nbgrader_config.py")
    notebook = reference_submission(assignment)
    for index in range(students):
        target = folder / "grading" / "submitted" / f"student{index:02d}" / assignment
        target.mkdir(parents=True)
        nbformat.write(notebook, target / f"{assignment}.ipynb")
        (target / "timestamp.txt").write_text("2026-11-30 09:00:00.000000 UTC")
    subprocess.run(
        nbgrader_command() + ["generate_assignment", assignment, "--force"],
        cwd=folder,
        env=nbgrader_environment(skip_tensorflow=False),
        check=True,
        capture_output=True,
    )
    return folder


def timed(command: list[str], cwd: Path) -> float:
    # Each run starts cold, as a class's first grading does: its course copy has its own (empty) judge
    # compile cache, and no XLA cache of the caller's is passed on.
    env = nbgrader_environment(skip_tensorflow=False)
    env.pop("ADAMCLINIC_JUDGE_COMPILE_CACHE", None)
    env.pop("TF_XLA_FLAGS", None)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m adamclinic.bench grading", description=__doc__.split("\n\n")[0])
    parser.add_argument("--assignment", default="ex00_adam_update")
    parser.add_argument("--students", type=int, default=12)
    args = parser.parse_args(argv)
    assignment, n = args.assignment, args.students
    figures: dict = {
        "assignment": assignment,
        "submissions": n,
        "cores": os.cpu_count(),
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
    }
    with tempfile.TemporaryDirectory(prefix="adamclinic-grading-bench-") as scratch:
        plain = make_class(Path(scratch) / "plain", assignment, n, plain=True)
        figures["plain_nbgrader_s"] = round(
            timed(nbgrader_command() + ["autograde", assignment, "--create", "--force"], plain)
            + timed(nbgrader_command() + ["generate_feedback", assignment, "--force"], plain)
            + timed(nbgrader_command() + ["export", f"--to={plain / 'grades.csv'}"], plain),
            1,
        )
        for workers in (1, 2):
            course = make_class(Path(scratch) / f"sandboxed{workers}", assignment, n, plain=False)
            seconds = timed(
                [
                    sys.executable,
                    "-m",
                    "adamclinic.grading",
                    "grade",
                    assignment,
                    "--root",
                    str(course),
                    "--workers",
                    str(workers),
                ],
                course,
            )
            figures[f"sandboxed_{workers}_worker{'s' if workers > 1 else ''}_s"] = round(seconds, 1)
    per = {
        key.replace("_s", "_per_submission_s"): round(value / n, 2)
        for key, value in figures.items()
        if key.endswith("_s")
    }
    figures.update(per)
    figures["speedup_2_workers_over_1"] = round(figures["sandboxed_1_worker_s"] / figures["sandboxed_2_workers_s"], 2)
    figures["overhead_1_worker_over_plain"] = (
        f"{figures['sandboxed_1_worker_s'] / figures['plain_nbgrader_s'] - 1:+.0%}"
    )
    return figures


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
