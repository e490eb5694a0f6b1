"""The course's files in a student's home: copied before each start of their server, never over their edits.

Runs as the student (the hub's pre-spawn hook starts ``python -m classhub sync HOME SOURCE...`` with the
student's uid), so a symlink a student plants in their home leads only where they could write anyway.

For each file of each source folder (``lessons/``, ``datasets/``), ``~/<folder>/<file>`` is:

* copied when it is missing (deleting a lesson is how a student gets a fresh copy);
* replaced by the course's new version when the student never changed the copy they were given;
* left alone when the student edited it; the course's new version goes beside it as ``<name>-updated<ext>``.

``~/.adamclinic-course.json`` remembers the checksum of each file as it was handed out, which is how an
edit is told from an old version. An instructor updates the class mid-term by updating the repository
(``git pull``): each student gets the new files the next time their server starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

MANIFEST = ".adamclinic-course.json"
SKIPPED = {".ipynb_checkpoints", "__pycache__"}


def checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def course_files(source: Path) -> list[Path]:
    """Every file under ``source``, relative to its parent (``lessons/01_learning_rate.ipynb``)."""
    found = []
    for folder, subfolders, files in os.walk(source):
        subfolders[:] = sorted(d for d in subfolders if d not in SKIPPED)
        found += [(Path(folder) / f).relative_to(source.parent) for f in sorted(files)]
    return found


def place(source: Path, target: Path) -> None:
    """Write ``target`` as a copy of ``source`` in one step (a server never sees half a notebook)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(handle)
    shutil.copyfile(source, temporary)
    os.chmod(temporary, 0o644)
    os.replace(temporary, target)


def updated_name(target: Path) -> Path:
    return target.with_name(f"{target.stem}-updated{target.suffix}")


def sync(home: Path, sources: list[Path]) -> dict[str, list[str]]:
    """Bring the course's files into ``home``; returns what it did, by kind, for the hub's log."""
    manifest_path = home / MANIFEST
    try:
        handed_out = json.loads(manifest_path.read_text())
    except (FileNotFoundError, ValueError):
        handed_out = {}
    report: dict[str, list[str]] = {"copied": [], "updated": [], "kept": []}
    for source in sources:
        for relative in course_files(source):
            new = source.parent / relative
            target = home / relative
            key = relative.as_posix()
            new_sum = checksum(new)
            if not target.exists():
                place(new, target)
                report["copied"].append(key)
            elif (current := checksum(target)) == new_sum:
                pass
            elif handed_out.get(key) == current:
                place(new, target)
                report["updated"].append(key)
            else:
                if not updated_name(target).exists() or checksum(updated_name(target)) != new_sum:
                    place(new, updated_name(target))
                report["kept"].append(key)
                continue  # the student's edit stays the base: their copy is not the one handed out
            handed_out[key] = new_sum
    handle, temporary = tempfile.mkstemp(dir=home, prefix=f"{MANIFEST}.")
    with os.fdopen(handle, "w") as stream:
        json.dump(handed_out, stream, indent=1, sort_keys=True)
    os.replace(temporary, manifest_path)
    return report
