"""How many students fit on this machine's class hub (issue 22, item 6): a load script, figures not a test.

    sudo .venv/bin/python hub/capacity.py --max-students 16 --minutes 12

It starts a hub of its own on loopback (a temporary state folder, a free port, accounts named
``lc<pid>s01``, ``lc<pid>s02``, ... and an instructor ``lc<pid>i``), then ramps the class: N = 1, 2, 4, ...
students. For each step it starts the new students' servers through the hub's REST API (as the hub's
"Start My Server" does), starts a kernel in each through the server's REST API and runs lesson 01's live demo
in it over the kernel's websocket (the notebook's code cells up to and with the learning-rate panel, then one
slider move to trace the trainer), and then has all N kernels move the slider at once, ``--moves`` times each
to new learning rates. A move is timed twice, inside the kernel: the engine's retrain alone
(``adamclinic.engine.run`` on lesson 01's 30-epoch config, what a slider release computes) and the panel's
move (``panel.train_now``: the same retrain with the curve drawn epoch by epoch, what the student waits for).

Per step it prints: the servers' start time, the memory each student's processes hold (RSS of the server and
its kernel, from /proc; PSS too, which splits shared library pages fairly), the memory left, and the median
retrain and panel move while the N move at once, with their slowdown against N = 1. It stops at the first N
whose panel move takes 2x the N = 1 move, when the next step would not fit in memory, at --max-students, or
when --minutes runs out; then it narrows each 2x point by moving the sliders of only some of the running
kernels (an idle kernel costs memory, not CPU).

Everything it creates (accounts, processes, the state folder, its log) is removed in a ``finally``, also on
Ctrl-C. The machine is shared: the load average is printed with each step; read the figures with it.
Run it while no other class hub runs from the same clone (a test's, make hub's): each hub closes and later
reopens the repository's top level and remembers the modes it found, so two at once can leave it closed;
a second clone (``git clone``, with ``.venv`` linked to this one's) keeps them apart.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

HUB_FOLDER = Path(__file__).resolve().parent
LESSON = HUB_FOLDER.parent / "lessons" / "01_learning_rate.ipynb"
PANEL_CELL = "learning_rate_panel("  # the live demo's cell: the setup cells before it, and it, run in each kernel
MAX_STUDENTS = 24  # a lesson's kernel holds about a GiB: more cannot fit in this machine's 24 GiB anyway
MAX_MINUTES = 30
SLOWDOWN_LIMIT = 2.0
MEMORY_RESERVE_GIB = 2.0  # left for the hub, the proxy and the rest of the machine
# Learning rates a student drags through (the same spread as adamclinic.bench's).
RATES = (3e-3, 1e-2, 3e-4, 2e-3, 5e-4, 1e-3, 3e-2, 1e-4, 5e-3, 2e-4)
GIB = 1024**3


class CapacityError(RuntimeError):
    """The load could not be run as asked; the message says what to do."""


# Arguments ------------------------------------------------------------------------------------------


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="hub/capacity.py", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--max-students", type=int, default=8, help=f"the largest class to try, 1 to {MAX_STUDENTS} (default 8)"
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=10.0,
        help=f"time for the measurements, at most {MAX_MINUTES}; clean-up adds about a minute (default 10)",
    )
    parser.add_argument("--moves", type=int, default=4, help="timed slider moves per kernel and step, 2 to 10")
    args = parser.parse_args(argv)
    if not 1 <= args.max_students <= MAX_STUDENTS:
        parser.error(f"--max-students must be between 1 and {MAX_STUDENTS} (got {args.max_students})")
    if not 0 < args.minutes <= MAX_MINUTES:
        parser.error(f"--minutes must be more than 0 and at most {MAX_MINUTES} (got {args.minutes:g})")
    if not 2 <= args.moves <= len(RATES):
        parser.error(f"--moves must be between 2 and {len(RATES)} (got {args.moves})")
    return args


def ramp(max_students: int) -> list[int]:
    """1, 2, 4, ... up to ``max_students``, which ends the ramp even when it is not a power of two."""
    steps = [1]
    while steps[-1] * 2 <= max_students:
        steps.append(steps[-1] * 2)
    if steps[-1] != max_students:
        steps.append(max_students)
    return steps


# The report -----------------------------------------------------------------------------------------


@dataclass
class Step:
    servers: int  # students' servers running, each with lesson 01's kernel
    moving: int  # of them, how many move their slider at once
    start_s: float | None  # median seconds from the REST call to a ready server (None: no new server)
    start_max_s: float | None
    rss_mib: float  # median per student: RSS of their server and kernel
    pss_mib: float
    available_gib: float  # the machine's MemAvailable after the step
    retrain_s: float  # median seconds of the engine's 30-epoch retrain while ``moving`` move at once
    panel_s: float  # median seconds of the panel's move: the same retrain, drawn epoch by epoch
    load: float  # one-minute load average when the moves began


MEASURES = {
    "retrain": ("retrain_s", "the engine's retrain of a slider move"),
    "panel": ("panel_s", "a slider move as the student sees it (retrain + drawing)"),
}


def slowdown(step: Step, first: Step, measure: str) -> float:
    field = MEASURES[measure][0]
    return getattr(step, field) / getattr(first, field)


def two_x_point(steps: list[Step], measure: str) -> tuple[int, int | None]:
    """The most sliders moving at once within 2x of one alone, and the fewest at 2x or more (None: not reached)."""
    beyond = [s.moving for s in steps if slowdown(s, steps[0], measure) >= SLOWDOWN_LIMIT]
    first_beyond = min(beyond) if beyond else None
    within = [
        s.moving
        for s in steps
        if slowdown(s, steps[0], measure) < SLOWDOWN_LIMIT and (first_beyond is None or s.moving < first_beyond)
    ]
    return max(within, default=0), first_beyond


HEADER = (
    "servers",
    "moving",
    "start s (median/max)",
    "RSS MiB/student",
    "PSS MiB/student",
    "free GiB",
    "retrain s",
    "panel move s",
    "load",
)


def format_table(steps: list[Step]) -> str:
    """The figures as a Markdown table (the README can take it as it is); slowdowns against the first row."""
    if not steps:
        return "(no step completed)"
    rows = []
    for step in sorted(steps, key=lambda s: (s.servers, s.moving)):
        start = "-" if step.start_s is None else f"{step.start_s:.1f} / {step.start_max_s:.1f}"
        rows.append(
            (
                str(step.servers),
                str(step.moving),
                start,
                f"{step.rss_mib:.0f}",
                f"{step.pss_mib:.0f}",
                f"{step.available_gib:.1f}",
                f"{step.retrain_s:.2f} ({slowdown(step, steps[0], 'retrain'):.1f}x)",
                f"{step.panel_s:.2f} ({slowdown(step, steps[0], 'panel'):.1f}x)",
                f"{step.load:.1f}",
            )
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADER)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    return "\n".join(lines)


def capacity(steps: list[Step], total_gib: float, stopped_by: str) -> str:
    """The figures in sentences: how many move sliders at once within 2x, how many servers fit in memory."""
    if not steps:
        return f"No step completed ({stopped_by})."
    sentences = []
    for measure, (field, what) in MEASURES.items():
        within, beyond = two_x_point(steps, measure)
        alone = getattr(steps[0], field)
        if beyond is None:
            sentences.append(
                f"{what.capitalize()} ({alone:.2f} s alone) stayed within {SLOWDOWN_LIMIT:g}x with all "
                f"{within} tried moving at once."
            )
        else:
            sentences.append(
                f"{what.capitalize()} ({alone:.2f} s alone) stays within {SLOWDOWN_LIMIT:g}x with up to {within} "
                f"students moving at once; {beyond} at once take {SLOWDOWN_LIMIT:g}x or more."
            )
    # PSS of the fullest step: the libraries' pages shared among the most kernels, as in a full class.
    fullest = max(steps, key=lambda s: s.servers)
    per_student = fullest.pss_mib / 1024
    fit = int((total_gib - MEMORY_RESERVE_GIB) // per_student) if per_student > 0 else 0
    memory = (
        f"Memory: with {fullest.servers} running, each student's server and lesson 01's kernel hold "
        f"{fullest.rss_mib / 1024:.2f} GiB RSS, {per_student:.2f} GiB PSS, so about {fit} servers with a kernel fit "
        f"in {total_gib:.0f} GiB (keeping {MEMORY_RESERVE_GIB:g} GiB for the rest)"
    )
    if fullest.servers > steps[0].servers:
        fell = steps[0].available_gib - fullest.available_gib
        memory += (
            f"; the machine's available memory fell {fell:.1f} GiB from {steps[0].servers} to {fullest.servers} "
            f"servers, {fell / (fullest.servers - steps[0].servers):.2f} GiB per added student"
        )
    sentences.append(memory + ".")
    sentences.append(f"Stopped by: {stopped_by}.")
    return "Capacity: " + " ".join(sentences)


# The machine ----------------------------------------------------------------------------------------


def memory_of(pids: list[int]) -> tuple[float, float]:
    """RSS and PSS of ``pids`` in MiB (from /proc; a process that ended counts nothing)."""
    rss = pss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                key, _, value = line.partition(":")
                if key == "Rss":
                    rss += int(value.split()[0])
                elif key == "Pss":
                    pss += int(value.split()[0])
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass
    return rss / 1024, pss / 1024


def meminfo(key: str) -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024 / GIB
    raise CapacityError(f"/proc/meminfo has no {key}")


# The hub and the kernels ----------------------------------------------------------------------------


class NotTheApi(ConnectionError):
    """An answer that is not the API's JSON (caught and retried where a route may still be on its way)."""


class Hub:
    def __init__(self, url: str, token: str, log: Path):
        self.url, self.token, self.log = url, token, log

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 60) -> dict | None:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer, final_url = response.read(), response.url
        try:
            return json.loads(answer) if answer else None
        except json.JSONDecodeError:
            # Not the API: a page of the hub's (a server whose route the proxy does not have yet).
            raise NotTheApi(f"{method} {path} answered a page from {final_url}: {answer[:120]!r}") from None

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except FileNotFoundError:
            return "(no log)"

    def wait(self, condition, what: str, deadline: float):
        while time.monotonic() < deadline:
            try:
                if result := condition():
                    return result
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        raise CapacityError(f"{what} did not happen in time; the hub's log ends:\n{self.log_tail()}")

    def start_server(self, name: str, deadline: float) -> tuple[str, float]:
        """Start ``name``'s server as the hub's Start button does; its URL path and the seconds it took."""
        began = time.monotonic()
        self.request("POST", f"/hub/api/users/{name}/server")

        def ready():
            server = self.request("GET", f"/hub/api/users/{name}")["servers"].get("", {})
            return server["url"] if server.get("ready") else None

        url = self.wait(ready, f"{name}'s server starting", deadline)
        return url, time.monotonic() - began


class KernelError(RuntimeError):
    pass


class Kernel:
    """A kernel in a student's server, driven over its websocket as JupyterLab drives it."""

    def __init__(self, hub: Hub, server_url: str):
        self.session = uuid.uuid4().hex
        # The hub calls a server ready before the proxy may route to it on a loaded machine: retry a while.
        kernel = hub.wait(
            lambda: hub.request("POST", server_url + "api/kernels", {"name": "python3"}),
            f"a kernel starting in {server_url}",
            time.monotonic() + 120,
        )
        self.id = kernel["id"]
        address = hub.url.replace("http://", "ws://") + server_url + f"api/kernels/{self.id}/channels"
        self.address, self.header = address + f"?session_id={self.session}", [f"Authorization: token {hub.token}"]

    def execute(self, code: str, deadline: float) -> str:
        """Run ``code``; what it printed. A cell that raises raises here, with the kernel's traceback.

        A connection per cell: the server closes a websocket that answered none of its pings for a while,
        and a kernel waits idle (nobody reading) while the next students' servers start.
        """
        import websocket

        self.socket = websocket.create_connection(self.address, header=self.header, timeout=30)
        try:
            return self._execute(code, deadline)
        finally:
            self.socket.close()

    def _execute(self, code: str, deadline: float) -> str:
        import websocket

        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "session": self.session,
            "username": "capacity",
            "version": "5.3",
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        content = {"code": code, "silent": False, "store_history": False, "user_expressions": {}}
        content |= {"allow_stdin": False, "stop_on_error": True}
        message = {"header": header, "parent_header": {}, "metadata": {}, "content": content, "channel": "shell"}
        self.socket.send(json.dumps(message))
        printed, error, replied, idle = [], None, False, False
        while not (replied and idle):
            self.socket.settimeout(max(1.0, deadline - time.monotonic()))
            try:
                frame = self.socket.recv()
            except websocket.WebSocketTimeoutException:
                raise CapacityError("a kernel did not finish its cell before the time ran out") from None
            if not frame:
                raise CapacityError("the kernel's websocket closed before its cell finished")
            if isinstance(frame, bytes):
                continue  # a message with binary buffers: the panel's widgets talking to a frontend, not ours
            answer = json.loads(frame)
            if answer.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = answer["header"]["msg_type"]
            if kind == "stream" and answer["content"]["name"] == "stdout":
                printed.append(answer["content"]["text"])
            elif kind == "error":
                error = "\n".join(answer["content"]["traceback"])
            elif kind == "execute_reply":
                replied = True
            elif kind == "status" and answer["content"]["execution_state"] == "idle":
                idle = True
        if error is not None:
            raise KernelError(error)
        return "".join(printed)


def lesson_setup_code() -> str:
    """Lesson 01's code cells up to its learning-rate panel (imports, data, the base run, the panel)."""
    cells = json.loads(LESSON.read_text())["cells"]
    code = []
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        code.append(source)
        if PANEL_CELL in source:
            return "\n\n".join(code)
    raise CapacityError(f"{LESSON} has no cell with {PANEL_CELL!r}: update PANEL_CELL in hub/capacity.py")


def moves_code(rates: tuple[float, ...]) -> str:
    """Slider moves, timed inside the kernel: for each rate, the engine's retrain alone (``run``, what the
    slider's release computes), then the panel's move (``panel.train_now``: the same retrain, each epoch drawn
    on the chart, no faster than the panel's 20 ms per epoch so the eye can follow the curve)."""
    return (
        "import json as _json, time as _time\n"
        "from dataclasses import replace as _replace\n"
        "_seconds = []\n"
        f"for _rate in {list(rates)!r}:\n"
        "    _config = _replace(base, learning_rate=_rate)\n"
        "    _began = _time.perf_counter()\n"
        "    run(_config)\n"
        "    _retrain = _time.perf_counter() - _began\n"
        "    _began = _time.perf_counter()\n"
        "    panel.train_now(_config)\n"
        "    _seconds.append([_retrain, _time.perf_counter() - _began])\n"
        "print(_json.dumps(_seconds))\n"
    )


# The load -------------------------------------------------------------------------------------------


def in_parallel(function, items: list) -> list:
    """``[function(item) for item in items]``, each in a thread of its own, all at once; the first error raises.

    Daemon threads, joined in short waits: Ctrl-C reaches the main thread at once, and a thread still
    blocked on a kernel ends when the clean-up stops the servers (or with the process).
    """
    results, errors = [None] * len(items), []

    def one(index: int) -> None:
        try:
            results[index] = function(items[index])
        except BaseException as error:  # handed to the main thread, raised there
            errors.append(error)

    threads = [threading.Thread(target=one, args=(index,), daemon=True) for index in range(len(items))]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)
            if errors:
                raise errors[0]
    if errors:
        raise errors[0]
    return results


class Load:
    def __init__(self, hub: Hub, students: list[str], moves: int, deadline: float):
        self.hub, self.students, self.moves, self.deadline = hub, students, moves, deadline
        self.kernels: list[Kernel] = []
        self.uids: list[int] = []
        self.setup_code = lesson_setup_code()

    def add_students(self, count: int) -> list[float]:
        """Start ``count`` more servers at once, each with lesson 01's kernel warmed up; their start times."""
        import pwd

        names = self.students[len(self.kernels) : len(self.kernels) + count]

        def one(name: str) -> tuple[Kernel, float]:
            url, seconds = self.hub.start_server(name, self.deadline)
            kernel = Kernel(self.hub, url)
            kernel.execute(self.setup_code, self.deadline)
            kernel.execute(moves_code(RATES[:1]), self.deadline)  # the first move traces the trainer
            return kernel, seconds

        started = in_parallel(one, names)
        self.kernels += [kernel for kernel, _ in started]
        self.uids += [pwd.getpwnam(name).pw_uid for name in names]
        return [seconds for _, seconds in started]

    def memory(self) -> tuple[float, float]:
        """Median RSS and PSS (MiB) of one student's processes: their server and its kernel."""
        from classhub.setup import processes_of

        per_student = [memory_of(processes_of({uid})) for uid in self.uids]
        return statistics.median(r for r, _ in per_student), statistics.median(p for _, p in per_student)

    def move_sliders(self, moving: int) -> tuple[float, float]:
        """The first ``moving`` kernels each move their slider ``moves`` times, all at once; the median
        retrain and the median panel move."""
        barrier = threading.Barrier(moving)

        def one(index: int) -> list[list[float]]:
            kernel = self.kernels[index]
            rates = tuple(RATES[(index + k) % len(RATES)] for k in range(self.moves))
            barrier.wait(timeout=60)
            printed = kernel.execute(moves_code(rates), self.deadline)
            return json.loads(next(line for line in reversed(printed.splitlines()) if line.startswith("[[")))

        moves = [move for kernel_moves in in_parallel(one, list(range(moving))) for move in kernel_moves]
        return statistics.median(r for r, _ in moves), statistics.median(p for _, p in moves)

    def step(self, moving: int, start_times: list[float]) -> Step:
        rss, pss = self.memory()
        load_average = os.getloadavg()[0]
        retrain, panel = self.move_sliders(moving)
        start = (statistics.median(start_times), max(start_times)) if start_times else (None, None)
        return Step(len(self.kernels), moving, *start, rss, pss, meminfo("MemAvailable"), retrain, panel, load_average)


def measure(load: Load, args: argparse.Namespace, started: float, report, steps: list[Step]) -> str:
    """Ramp the class up, then narrow each 2x point among the servers already running; appends to ``steps``
    (so that what was measured before an error or Ctrl-C is still reported) and says what stopped it."""
    step_seconds = 0.0
    stopped_by = f"--max-students {args.max_students} reached"

    def show(step: Step) -> None:
        report(
            f"[{time.monotonic() - started:5.0f} s] {step.moving} of {step.servers} students moving: retrain "
            f"{step.retrain_s:.2f} s, panel move {step.panel_s:.2f} s; RSS {step.rss_mib:.0f} MiB each, "
            f"load {step.load:.1f}"
        )

    for size in ramp(args.max_students):
        if steps and load.deadline - time.monotonic() < 2.5 * step_seconds:
            stopped_by = f"--minutes {args.minutes:g} would run out in the next step"
            break
        new = size - len(load.kernels)
        available = meminfo("MemAvailable")
        if steps and new * steps[-1].rss_mib / 1024 > available - MEMORY_RESERVE_GIB:
            stopped_by = f"memory: {new} more servers would not fit in the {available:.1f} GiB left"
            break
        began = time.monotonic()
        steps.append(load.step(size, load.add_students(new)))
        step_seconds = time.monotonic() - began
        show(steps[-1])
        if slowdown(steps[-1], steps[0], "panel") >= SLOWDOWN_LIMIT:
            stopped_by = f"a slider move as the student sees it slowed to 2x or more at {size} students"
            break
    # Idle kernels cost memory, not CPU: fewer sliders moving among the same servers narrow each 2x point.
    for measure_name in MEASURES:
        while steps and load.deadline - time.monotonic() > 30:
            within, beyond = two_x_point(steps, measure_name)
            if beyond is None or beyond - within <= 1 or within == 0:
                break
            steps.append(load.step((within + beyond) // 2, []))
            show(steps[-1])
    return stopped_by


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    if os.geteuid() != 0:
        print(
            "hub/capacity.py needs root, as make hub does: it creates a Unix account per student. "
            "Run: sudo .venv/bin/python hub/capacity.py",
            file=sys.stderr,
        )
        return 2
    sys.path.insert(0, str(HUB_FOLDER))
    from classhub import roster, setup

    if missing := setup.missing_tools():
        print("hub/capacity.py needs: " + "; ".join(missing), file=sys.stderr)
        return 2
    started = time.monotonic()
    tag = f"{os.getpid() % 100000}"
    students = [f"lc{tag}s{index:02d}" for index in range(1, args.max_students + 1)]
    the_class = roster.Roster("adam-clinic", (f"lc{tag}i",), tuple(students))
    state = Path(tempfile.mkdtemp(prefix="adamclinic-capacity-"))
    log = state.parent / f"{state.name}.log"
    hub_process = None
    steps: list[Step] = []
    stopped_by = "not started"

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)

    def report(line: str) -> None:
        print(line, flush=True)

    try:
        report(
            f"hub/capacity.py: up to {args.max_students} students, {args.minutes:g} minutes; "
            f"{os.cpu_count()} cores, {meminfo('MemTotal'):.1f} GiB, load average {os.getloadavg()[0]:.2f}"
        )
        token = secrets.token_hex(32)
        settings = setup.prepare(state, the_class, port=setup.free_port(), instructors_group=f"lc{tag}-instructors")
        command, env = setup.hub_command(state)
        env["ADAMCLINIC_HUB_API_TOKEN"] = token
        with log.open("w") as sink:
            hub_process = subprocess.Popen(command, env=env, cwd=state / "hub", stdout=sink, stderr=subprocess.STDOUT)
        hub = Hub(f"http://127.0.0.1:{settings['port']}", token, log)
        deadline = started + args.minutes * 60
        hub.wait(lambda: hub.request("GET", "/hub/api/") is not None, "the hub answering", deadline)
        report(f"[{time.monotonic() - started:5.0f} s] hub up at {hub.url} (state {state})")
        stopped_by = measure(Load(hub, students, args.moves, deadline), args, started, report, steps)
    except KeyboardInterrupt:
        stopped_by = "interrupted"
    except Exception as error:  # reported, then everything is cleaned up
        stopped_by = f"error: {(str(error) or type(error).__name__).splitlines()[0]}"
        print(f"hub/capacity.py: {traceback.format_exc()}", file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave accounts behind
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if hub_process is not None:
            setup.stop_process(hub_process, wait=60)
        for line in setup.clean(state):
            report(f"clean-up: {line}")
        log.unlink(missing_ok=True)
    print()
    print(format_table(steps))
    print()
    print(capacity(steps, meminfo("MemTotal"), stopped_by))
    return 0 if steps else 1


if __name__ == "__main__":
    sys.exit(main())
