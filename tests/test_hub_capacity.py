"""hub/capacity.py, the class hub's load script (issue 22, item 6): its bounds and its report, no hub.

The script itself starts a real hub and real kernels and prints figures; these checks only keep its
arguments bounded and its report readable, with made-up numbers. Nothing here trains or times anything.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("hub_capacity", ROOT / "hub" / "capacity.py")
capacity = importlib.util.module_from_spec(_spec)
sys.modules["hub_capacity"] = capacity  # dataclasses look their module up there
_spec.loader.exec_module(capacity)


def fake_step(servers: int, moving: int, retrain: float, panel: float, started: bool = True) -> capacity.Step:
    start = (8.0 + servers, 10.0 + servers) if started else (None, None)
    return capacity.Step(servers, moving, *start, 1010.0, 700.0, 20.0 - servers, retrain, panel, 1.5)


# The ramp: 1, 2, 4 sliders at once stay within 2x; 8 do not, and 6 of the 8 (narrowed) do not either.
FAKE_RUN = [
    fake_step(1, 1, 0.15, 0.80),
    fake_step(2, 2, 0.18, 0.80),
    fake_step(4, 4, 0.29, 0.95),
    fake_step(8, 8, 0.61, 1.75),
    fake_step(8, 6, 0.45, 1.30, started=False),
]


def test_the_load_is_bounded_in_count_and_time():
    """Students, minutes and moves outside their bounds are refused with what is allowed; defaults are small."""
    args = capacity.parse_arguments([])
    assert 1 <= args.max_students <= capacity.MAX_STUDENTS and 0 < args.minutes <= capacity.MAX_MINUTES
    for wrong in (
        ["--max-students", "0"],
        ["--max-students", str(capacity.MAX_STUDENTS + 1)],
        ["--minutes", "0"],
        ["--minutes", str(capacity.MAX_MINUTES + 1)],
        ["--moves", "1"],
    ):
        with pytest.raises(SystemExit):
            capacity.parse_arguments(wrong)
    assert capacity.parse_arguments(["--max-students", "12", "--minutes", "7.5"]).max_students == 12


def test_the_ramp_doubles_and_ends_at_the_largest_class():
    """N = 1, 2, 4, ... and the largest class asked for, even when it is not a power of two."""
    assert capacity.ramp(1) == [1]
    assert capacity.ramp(6) == [1, 2, 4, 6]
    assert capacity.ramp(16) == [1, 2, 4, 8, 16]


def test_the_two_x_point_is_read_from_the_steps():
    """The most sliders moving within 2x of one alone, and the fewest at 2x or more, for each measure."""
    assert capacity.two_x_point(FAKE_RUN, "retrain") == (4, 6)
    assert capacity.two_x_point(FAKE_RUN, "panel") == (6, 8)
    assert capacity.two_x_point(FAKE_RUN[:3], "panel") == (4, None)


def test_the_report_prints_a_table_and_the_capacity():
    """One row per step with start time, memory, both move times and slowdowns; the figures in sentences."""
    table = capacity.format_table(FAKE_RUN)
    lines = table.splitlines()
    assert len(lines) == 2 + len(FAKE_RUN) and lines[0].startswith("| servers | moving")
    assert "0.61 (4.1x)" in table and "1.75 (2.2x)" in table and "9.0 / 11.0" in table
    narrowed = [line.split("|") for line in lines if line.split("|")[2].strip() == "6"]
    assert narrowed[0][3].strip() == "-"  # the narrowed step started no server
    summary = capacity.capacity(FAKE_RUN, 23.5, "a slider move slowed")
    assert "up to 4 students moving at once; 6 at once" in summary
    assert "up to 6 students moving at once; 8 at once" in summary
    assert "0.68 GiB PSS" in summary and "about 31 servers" in summary
    assert "fell 7.0 GiB from 1 to 8 servers, 1.00 GiB per added student" in summary
    assert capacity.format_table([]) == "(no step completed)"
    assert "No step completed (interrupted)" in capacity.capacity([], 23.5, "interrupted")


def test_the_script_runs_lesson_01s_own_cells_and_refuses_without_root(monkeypatch, capsys):
    """The kernel code is lesson 01's cells up to its panel plus timed moves, and it compiles; non-root stops."""
    setup_code = capacity.lesson_setup_code()
    assert capacity.PANEL_CELL in setup_code and "base = TrainConfig(" in setup_code
    compile(setup_code, "lesson 01", "exec")
    compile(capacity.moves_code(capacity.RATES[:3]), "moves", "exec")
    monkeypatch.setattr(capacity.os, "geteuid", lambda: 1000)
    assert capacity.main(["--max-students", "2"]) == 2
    assert "needs root" in capsys.readouterr().err
