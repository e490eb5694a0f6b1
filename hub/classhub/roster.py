"""The class list: ``course_id``, ``instructors`` and ``students`` in a TOML file (hub/roster.example.toml)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

# What useradd accepts on Debian with its defaults, and what JupyterHub keeps unchanged (it lower-cases).
UNIX_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class RosterError(ValueError):
    """A roster that cannot make a class; the message says what to change."""


@dataclass(frozen=True)
class Roster:
    course_id: str
    instructors: tuple[str, ...]
    students: tuple[str, ...]

    @property
    def everyone(self) -> tuple[str, ...]:
        return self.instructors + self.students

    def role(self, name: str) -> str:
        if name in self.instructors:
            return "instructor"
        if name in self.students:
            return "student"
        raise RosterError(f"{name!r} is not on the roster")


def load(path: Path) -> Roster:
    """Read and check a roster file."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise RosterError(f"no roster at {path}: copy hub/roster.example.toml to it and list your class") from None
    except tomllib.TOMLDecodeError as error:
        raise RosterError(f"{path} is not valid TOML: {error}") from None
    return parse(data, source=str(path))


def parse(data: dict, source: str = "the roster") -> Roster:
    unknown = set(data) - {"course_id", "instructors", "students"}
    if unknown:
        raise RosterError(f"{source}: unknown keys {sorted(unknown)}; use course_id, instructors and students")
    course_id = data.get("course_id", "adam-clinic")
    if not isinstance(course_id, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", course_id):
        raise RosterError(f"{source}: course_id must be letters, digits, '-' or '_' (got {course_id!r})")
    lists = {}
    for key in ("instructors", "students"):
        names = data.get(key, [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise RosterError(f'{source}: {key} must be a list of names, like {key} = ["ada", "ben"]')
        bad = [n for n in names if not UNIX_NAME.match(n)]
        if bad:
            raise RosterError(
                f"{source}: {bad} cannot be Unix account names: use lower-case letters, digits, '-' and '_', "
                "starting with a letter, at most 32 characters"
            )
        lists[key] = tuple(dict.fromkeys(names))
    if not lists["instructors"]:
        raise RosterError(f"{source}: name at least one instructor (they grade and administer the hub)")
    both = sorted(set(lists["instructors"]) & set(lists["students"]))
    if both:
        raise RosterError(f"{source}: {both} are listed as both instructor and student; keep each in one list")
    return Roster(course_id, lists["instructors"], lists["students"])
