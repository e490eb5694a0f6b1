"""The box a student's notebook runs in while it is graded: bubblewrap where it is installed.

Inside the box the notebook sees its own private copy of the submission (read-write), this Python
and the course package and datasets (read-only), a private /tmp of limited size, and nothing else:
no network (a private network namespace with only loopback), no ``solutions/``, no gradebook, no
other student's folder, no /etc beyond the few files a Python process needs. Resource limits
(CPU seconds, address space, file size) are set on the process before it starts and
are inherited by the kernel.

Without bubblewrap the notebook still runs in its own process, with the same limits, in a private
folder, but it could read any file the grader can: the grader says so once per batch.
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from adamclinic.paths import REPOSITORY_ROOT

# The few files of /etc a Python process and a Jupyter kernel read; /etc as a whole stays out.
ETC_FILES = ("ld.so.cache", "localtime", "nsswitch.conf", "passwd", "group", "hosts", "mime.types")
WORK_MOUNT = "/work/submission"
IO_MOUNT = "/work/io"
COMPILE_CACHE_MOUNT = "/work/compile-cache"  # judges only (adamclinic.grading.execute)


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int = 1800
    memory_bytes: int = 4 * 2**30
    file_bytes: int = 256 * 2**20
    tmp_bytes: int = 512 * 2**20


def bubblewrap() -> str | None:
    """The bwrap program, or None when it is missing or ADAMCLINIC_NO_BUBBLEWRAP=1 turns it off."""
    if os.environ.get("ADAMCLINIC_NO_BUBBLEWRAP") == "1":
        return None
    return shutil.which("bwrap")


def _python_roots() -> list[Path]:
    """Folders this Python and its virtual environment live in (all read-only inside the box)."""
    roots = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), Path(sys.executable).resolve().parent.parent}
    return sorted(root for root in roots if not str(root).startswith("/usr"))


def _read_only_course_parts() -> list[Path]:
    # The editable install points at src/; the course's CSVs are read through adamclinic.data.
    return [p for p in (REPOSITORY_ROOT / "src", REPOSITORY_ROOT / "datasets") if p.is_dir()]


def thread_environment(threads: int) -> dict[str, str]:
    """Environment variables that keep TensorFlow and BLAS to ``threads`` threads (none for 0)."""
    if threads <= 0:
        return {}
    value = str(threads)
    return {
        "TF_NUM_INTRAOP_THREADS": value,
        "TF_NUM_INTEROP_THREADS": value,
        "OMP_NUM_THREADS": value,
        "OPENBLAS_NUM_THREADS": value,
        "MKL_NUM_THREADS": value,
    }


def xla_cache_flag(folder: str) -> str:
    """``TF_XLA_FLAGS`` for XLA's persistent compilation cache in ``folder``."""
    return f"--tf_xla_persistent_cache_directory={folder}"


def command(
    work: Path,
    io: Path,
    inner: list[str],
    limits: Limits,
    extra_env: dict[str, str] | None = None,
    extra_binds: list[tuple[Path, str]] | None = None,
) -> list[str]:
    """The bubblewrap command line that runs ``inner`` with ``work`` and ``io`` (and ``extra_binds``, host
    folder and mount point) as its only writable folders."""
    # /tmp first: a bind made before it (a course cloned under /tmp) would be hidden by the tmpfs.
    args = [
        bubblewrap() or "bwrap",
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--size",
        str(limits.tmp_bytes),
        "--tmpfs",
        "/tmp",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    for link in ("lib", "lib64", "bin", "sbin"):
        target = Path("/") / link
        if target.is_symlink():
            args += ["--symlink", os.readlink(target), str(target)]
        elif target.exists():
            args += ["--ro-bind", str(target), str(target)]
    for name in ETC_FILES:
        if (Path("/etc") / name).exists():
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    for root in _python_roots() + _read_only_course_parts():
        args += ["--ro-bind", str(root), str(root)]
    args += ["--bind", str(work), WORK_MOUNT, "--bind", str(io), IO_MOUNT]
    for folder, mount in extra_binds or []:
        args += ["--bind", str(folder), mount]
    args += ["--chdir", WORK_MOUNT, "--clearenv"]
    for key, value in {**sandbox_environment(), **(extra_env or {})}.items():
        args += ["--setenv", key, value]
    return args + ["--"] + inner


def sandbox_environment(home: str = "/tmp") -> dict[str, str]:
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": home,
        "LANG": "C.UTF-8",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "KERAS_BACKEND": "tensorflow",
        "MPLBACKEND": "agg",
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "ADAMCLINIC_SKIP_TENSORFLOW": "1",
    }  # for the runner itself; the kernel's environment drops it
    if os.environ.get("ADAMCLINIC_NO_PACING"):
        env["ADAMCLINIC_NO_PACING"] = os.environ["ADAMCLINIC_NO_PACING"]
    return env


def set_limits(limits: Limits):
    """A ``preexec_fn`` that puts ``limits`` on the child before it starts (inherited by the kernel)."""

    def apply() -> None:
        os.setsid()
        # No RLIMIT_NPROC: it counts every thread of the user on the whole machine (root's, here), and
        # TensorFlow starts many; a cap low enough to stop a fork bomb would break honest training.
        for which, value in (
            (resource.RLIMIT_CPU, limits.cpu_seconds),
            (resource.RLIMIT_AS, limits.memory_bytes),
            (resource.RLIMIT_FSIZE, limits.file_bytes),
        ):
            try:
                resource.setrlimit(which, (value, value))
            except (ValueError, OSError):
                pass
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply
