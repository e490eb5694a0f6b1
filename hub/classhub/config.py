"""The Jupyter configuration of each role's server: ``<state>/etc/student/`` and ``<state>/etc/instructor/``.

The hub puts ``<state>/etc/<role>`` first on the server's ``JUPYTER_CONFIG_PATH`` (then the repository's
``jupyter/``, the course's JupyterLab defaults), so these files are what nbgrader and JupyterLab read in
place of a system-wide ``/etc/jupyter``, and they go when the state folder goes.

* Both roles: nbgrader's course id and exchange root.
* Students: submissions private to the instructors (``classhub.exchange.PrivateSubmit``); the formgrader,
  course list and create-assignment panels turned off (they would show nothing a student may see: what
  keeps the gradebook from a student is its folder's mode, not a hidden panel).
* The course folder (``<state>/course/nbgrader_config.py``): the course's own grading configuration
  (``grading/nbgrader_config.py``: the sandboxed grader, its limits) on that folder, its gradebook and the
  hub's exchange; ``python -m adamclinic.grading grade A --root <state>/course`` reads it (``classhub grade``).
* Instructors: the course folder's configuration, with the course root named ``~/course``; nbgrader's
  server extensions all on (the formgrader among them), shared by the instructors' group; and pages that
  their own server may frame (``INSTRUCTOR_FRAMING``, below).
"""

from __future__ import annotations

import json
from pathlib import Path

from classhub.roster import Roster
from classhub.setup import HUB_FOLDER, REPOSITORY

STUDENT_SERVER_EXTENSIONS = {
    "nbgrader.server_extensions.formgrader": False,
    "nbgrader.server_extensions.course_list": False,
    "nbgrader.server_extensions.assignment_list": True,
    "nbgrader.server_extensions.validate_assignment": True,
}
# JupyterHub's single-user servers send "Content-Security-Policy: frame-ancestors 'none'" on every page, so
# that on the hub's shared origin no page can frame another user's server. nbgrader's Formgrader panel in
# JupyterLab is an iframe of the instructor's own server (/user/<name>/formgrader), which that header blocks:
# Chromium shows "127.0.0.1 refused to connect" in a blank panel. Instructors' servers allow framing by
# their own origin again (Jupyter Server's default without a hub); students' servers keep 'none'. The hub
# gives instructors no access to students' servers (jupyterhub_config.py), so the pages an instructor's
# browser loads on that origin are the hub's and their own (hub/README.md, "Security").
INSTRUCTOR_FRAMING = {
    "ServerApp": {"tornado_settings": {"headers": {"Content-Security-Policy": "frame-ancestors 'self'"}}}
}
STUDENT_HIDDEN_PANELS = {
    "@jupyter/nbgrader:formgrader": True,
    "@jupyter/nbgrader:course-list": True,
    "@jupyter/nbgrader:create-assignment": True,
}


def common_nbgrader(state: Path, roster: Roster) -> str:
    return (
        '"""nbgrader on the class hub (written by classhub.config; make hub-clean removes it)."""\n'
        "import os\n"
        "import sys\n\n"
        "c = get_config()  # noqa: F821\n"
        f"c.CourseDirectory.course_id = {roster.course_id!r}\n"
        f"c.Exchange.root = {str(state / 'exchange')!r}\n"
        "c.Exchange.path_includes_course = True\n"
        "# TensorFlow's start-up lines would cost a validated cell its points.\n"
        'os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")\n'
        f"sys.path.insert(0, {str(HUB_FOLDER)!r})  # classhub.exchange\n"
    )


def gradebook_url(state: Path, gradebook_db: str | None) -> str:
    """The gradebook: ``gradebook_db`` (PostgreSQL, say), else SQLite where the course's grader keeps it."""
    return gradebook_db or f"sqlite:///{state / 'course' / 'grading' / 'gradebook.db'}"


def write_role_configs(state: Path, roster: Roster, gradebook_db: str | None) -> None:
    student = state / "etc" / "student"
    instructor = state / "etc" / "instructor"
    for folder in (student / "labconfig", instructor):
        folder.mkdir(parents=True, exist_ok=True)
    (state / "etc").chmod(0o755)
    common = common_nbgrader(state, roster)
    (student / "nbgrader_config.py").write_text(
        common + 'c.ExchangeFactory.submit = "classhub.exchange.PrivateSubmit"\n'
    )
    (student / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": STUDENT_SERVER_EXTENSIONS}}, indent=1)
    )
    (student / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": STUDENT_HIDDEN_PANELS}, indent=1)
    )
    course = state / "course"
    (course / "nbgrader_config.py").write_text(
        '"""The hub\'s course folder for nbgrader and the course\'s grader (make grade A=... HUB=1; classhub.setup)."""\n'
        f"load_subconfig({str(REPOSITORY / 'grading' / 'nbgrader_config.py')!r})  # noqa: F821\n"
        + common.partition("\n")[2]
        + "# The repository's layout (solutions/, exercises/, grading/...) in the hub's course folder.\n"
        + f"c.CourseDirectory.root = {str(course)!r}\n"
        + f"c.CourseDirectory.db_url = {gradebook_url(state, gradebook_db)!r}\n"
        + "c.CourseDirectory.groupshared = True  # every instructor may grade\n"
        + "c.Exchange.cache = os.path.expanduser('~/.local/share/jupyter/nbgrader_cache')\n"
    )
    (instructor / "jupyter_server_config.json").write_text(json.dumps(INSTRUCTOR_FRAMING, indent=1))
    (instructor / "nbgrader_config.py").write_text(
        f"load_subconfig({str(course / 'nbgrader_config.py')!r})  # noqa: F821\n"
        + common
        + "# ~/course links to the shared course folder (classhub.setup): formgrader needs it under the home.\n"
        + "c.CourseDirectory.root = os.path.expanduser('~/course')\n"
    )
    for folder in (student, instructor):
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
