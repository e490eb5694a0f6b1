"""JupyterHub for the class (make hub; hub/README.md). Reads the state folder that ``classhub.setup`` prepared.

The hub runs as root on loopback; each member's server runs as their own Unix account (JupyterHub's
LocalProcessSpawner) with their private home as its folder; the course's files are copied in before each
start (``classhub.course_files``), and each role's Jupyter configuration comes from ``<state>/etc/<role>``.
"""

import asyncio
import json
import os
import pwd
import sys
from pathlib import Path

from classhub.spawner import CourseSpawner, as_member

c = get_config()  # noqa: F821  (traitlets defines get_config in config files)

STATE = Path(os.environ["ADAMCLINIC_HUB_STATE"])
CLASS = json.loads((STATE / "class.json").read_text())
REPOSITORY = Path(CLASS["repository"])
VENV = REPOSITORY / ".venv"
HUB = STATE / "hub"

# Loopback only: put a TLS-terminating reverse proxy in front to open it to a class (hub/README.md).
c.JupyterHub.bind_url = f"http://127.0.0.1:{CLASS['port']}"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{CLASS['hub_port']}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{CLASS['proxy_api_port']}"
c.ConfigurableHTTPProxy.command = [str(VENV / "node_modules" / ".bin" / "configurable-http-proxy")]
c.ConfigurableHTTPProxy.pid_file = str(HUB / "proxy.pid")
c.JupyterHub.pid_file = str(HUB / "jupyterhub.pid")
c.JupyterHub.db_url = CLASS["hub_db"]
c.JupyterHub.cookie_secret_file = str(HUB / "jupyterhub_cookie_secret")

# Logins: the roster says who may log in; each picks a password at first login (FirstUseAuthenticator,
# stored hashed in the state folder). Swap in NativeAuthenticator (sign-up, then instructor approval) or
# ltiauthenticator (the learning management system logs them in) here; the roster stays the allow list.
c.JupyterHub.authenticator_class = "firstuseauthenticator.FirstUseAuthenticator"
c.FirstUseAuthenticator.dbm_path = str(HUB / "passwords.dbm")
c.FirstUseAuthenticator.create_users = False
c.FirstUseAuthenticator.min_password_length = 8
c.Authenticator.allowed_users = set(CLASS["students"]) | set(CLASS["instructors"])

# JupyterHub's LocalProcessSpawner, each server started as its member in a namespace that hides /root.
c.JupyterHub.spawner_class = CourseSpawner
(HUB / "staging").mkdir(exist_ok=True)
CourseSpawner.staging = str(HUB / "staging")
CourseSpawner.instructors = frozenset(CLASS["instructors"])  # their servers write the shared course: umask 007
CourseSpawner.gradebook_db = CLASS["gradebook_db"]  # made group-writable before an instructor's server starts
c.Spawner.cmd = [str(VENV / "bin" / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"
c.Spawner.http_timeout = 120  # a first start on a busy 2-core machine imports JupyterLab and nbgrader
c.Spawner.start_timeout = 120


async def bring_the_course(spawner):
    """Copy the lessons in (as the member, never over their edits) and give the server its role's config."""
    name = spawner.user.name
    role = "instructor" if name in CLASS["instructors"] else "student"
    account = pwd.getpwnam(name)
    sync_command = [sys.executable, "-m", "classhub", "sync", account.pw_dir]
    sync = await asyncio.create_subprocess_exec(
        *as_member(
            name, sync_command + [str(REPOSITORY / "lessons"), str(REPOSITORY / "datasets")], str(HUB / "staging")
        ),
        env={"PYTHONPATH": str(REPOSITORY / "hub"), "HOME": account.pw_dir, "PATH": "/usr/sbin:/usr/bin:/bin"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await sync.communicate()
    if sync.returncode != 0:
        raise RuntimeError(f"copying the course into {name}'s home failed: {output.decode()[-2000:]}")
    spawner.log.info("course files for %s: %s", name, output.decode().strip())
    spawner.environment.update(
        {
            "JUPYTER_CONFIG_PATH": f"{STATE / 'etc' / role}:{REPOSITORY / 'jupyter'}",
            "PATH": f"{VENV / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "TF_CPP_MIN_LOG_LEVEL": "3",
        }
    )


c.Spawner.pre_spawn_hook = bring_the_course

# Idle servers are stopped after an hour (a lesson's kernel holds 0.9 to 1.5 GiB).
c.JupyterHub.services = [
    {
        "name": "idle-culler",
        "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={CLASS['cull_seconds']}"],
    }
]
# Instructors see everyone in the hub's Admin page and start or stop any server, but do not open students'
# servers (no access:servers, which JupyterHub's admin role has): on the hub's one origin a page from a
# student's server would run in the instructor's browser beside their own server, which lets itself be framed
# for the Formgrader panel (classhub.config.INSTRUCTOR_FRAMING).
c.JupyterHub.load_roles = [
    {
        "name": "instructor",
        "description": "Runs the class: the Admin page, any server started or stopped, no student's server opened",
        "scopes": ["self", "admin-ui", "list:users", "read:users", "servers"],
        "users": sorted(CLASS["instructors"]),
    },
    {
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    },
]
# A token for scripts (the tests, a load script): ADAMCLINIC_HUB_API_TOKEN, never written to disk.
if token := os.environ.get("ADAMCLINIC_HUB_API_TOKEN"):
    c.JupyterHub.services.append({"name": "course-admin", "api_token": token})
    c.JupyterHub.load_roles.append(
        {
            "name": "course-admin",
            "scopes": ["admin:users", "admin:servers", "access:servers", "list:users", "read:users"],
            "services": ["course-admin"],
        }
    )
