"""The grader against broken and hostile submissions: one class of 40, graded in ONE batch.

Every case below is one student of the sandbox probe assignment (tests/grading_probe.py), graded by
``python -m adamclinic.grading grade`` with 2 Dask workers, bubblewrap, a 10 s cell limit, a 40 s
notebook limit and 2 GiB of memory. Each case asserts its status and its points per part: correct
work keeps its points, an attack earns nothing for the parts it touched, nobody else is affected, and
the batch finishes. grading/README.md documents the same table for instructors.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
from pathlib import Path

import pytest

from grading_probe import (
    CORRECT,
    PARTS,
    answered,
    grade_probe,
    hand_in,
    make_probe_course,
    part_scores,
    released,
    report,
)

pytestmark = [pytest.mark.xdist_group("grading_hostile"), pytest.mark.slow, pytest.mark.needs_system("bubblewrap")]

FULL = dict(PARTS)
NONE = {part: 0 for part in PARTS}
TARGETED: dict[str, str] = {}  # attack -> the honest student whose score it must equal


def with_answers(**changes: str) -> dict[str, str]:
    return {**CORRECT, **changes}


def first_answer(prelude: str, **changes: str) -> dict[str, str]:
    """Correct answers, with ``prelude`` run at the top of the first answer cell."""
    answers = with_answers(**changes)
    answers["column_means_answer"] = prelude + "\n" + answers["column_means_answer"]
    return answers


WRONG = {
    "column_means_answer": "def column_means(table):\n    return np.zeros(np.shape(table)[1])",
    "learning_rate_answer": "LEARNING_RATE = 0.5",
    "train_answer": "def train(rate, steps=10):\n    return [0.0] * steps",
}


class Listener:
    """A TCP server on the host's loopback that counts connections: a sandboxed student must reach none."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            connection.close()


def build_class(course: Path, listener: Listener) -> dict[str, tuple[str, dict]]:
    """Hand in every case; return student -> (expected status, expected points per part)."""
    gradebook = course / "grading" / "gradebook.db"
    solutions = course / "solutions"
    cases: dict[str, tuple[str, dict]] = {}

    def case(student, status, points, notebook=None, **kwargs):
        hand_in(course, student, notebook, **kwargs)
        cases[student] = (status, points)

    def attack(student, answers, same_as="wrong", status="graded"):
        """A targeted attack: it must score exactly what the honest student ``same_as`` scores."""
        hand_in(course, student, answered(course, answers))
        cases[student] = (status, None)
        TARGETED[student] = same_as

    case("correct", "graded", FULL, answered(course, CORRECT))
    case("wrong", "graded", NONE, answered(course, with_answers(**WRONG)))
    case("untouched", "graded", NONE, released(course))

    edited = answered(course, with_answers(column_means_answer=WRONG["column_means_answer"]))
    for cell in edited.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "column_means":
            cell.source = '"""column_means returns the mean of every column."""\nassert True'
    case("locked_test_edited", "graded", {**FULL, "column_means": 0}, edited)

    deleted = answered(course, with_answers(learning_rate_answer=WRONG["learning_rate_answer"]))
    deleted.cells = [c for c in deleted.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "learning_rate"]
    case("test_cell_deleted", "graded", {**FULL, "learning_rate": 0}, deleted)

    duplicated = answered(course, with_answers(column_means_answer=WRONG["column_means_answer"]))
    test = next(c for c in duplicated.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "column_means")
    copy = json.loads(json.dumps(test))
    copy["source"], copy["id"] = "pass", "pasted-copy"  # JupyterLab gives a pasted cell a new id
    duplicated.cells.insert(duplicated.cells.index(test), type(test)(copy))
    case("duplicate_grade_id", "graded", {**FULL, "column_means": 0}, duplicated)

    case(
        "extra_notebook", "graded", FULL, answered(course, CORRECT), extra={"notes.ipynb": json.dumps(released(course))}
    )
    case("missing_notebook", "error", NONE, None, extra={"my_answers.txt": "LEARNING_RATE = 0.1"})
    case("invalid_json", "error", NONE, raw='{"cells": [ this is not json')
    schema = answered(course, CORRECT)
    for cell in schema.cells:
        if "nbgrader" in cell.metadata:
            cell.metadata["nbgrader"]["schema_version"] = 99
    case("schema_version_99", "error", NONE, schema)

    case(
        "infinite_loop",
        "graded",
        {**FULL, "learning_rate": 0},
        answered(course, with_answers(learning_rate_answer="while True:\n    pass\nLEARNING_RATE = 0.1")),
    )
    case(
        "sleeps_past_timeout",
        "timeout",
        {**FULL, "train": 0},
        answered(
            course,
            with_answers(
                train_answer="import time\nwhile True:\n    try:\n        time.sleep(100)\n    except KeyboardInterrupt:\n"
                "        pass"
            ),
        ),
    )
    case(
        "os_exit", "error", {**FULL, "train": 0}, answered(course, with_answers(train_answer="import os\nos._exit(0)"))
    )
    case(
        "sys_exit",
        "graded",
        {**FULL, "train": 0},
        answered(course, with_answers(train_answer="import sys\nsys.exit()")),
    )
    case("output_flood", "graded", FULL, answered(course, first_answer("print('\\n'.join(map(str, range(10**6))))")))
    case(
        "memory_bomb",
        "graded",
        {**FULL, "learning_rate": 0},
        answered(
            course,
            with_answers(learning_rate_answer="hoard = [bytearray(2**28) for _ in range(64)]\nLEARNING_RATE = 0.1"),
        ),
    )

    case(
        "showtraceback_patch",
        "graded",
        NONE,
        answered(course, first_answer("get_ipython().showtraceback = lambda *args, **kwargs: None", **WRONG)),
    )
    case(
        "input_transformer_noop",
        "graded",
        NONE,
        answered(
            course, first_answer("get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])", **WRONG)
        ),
    )
    case(
        "patched_comparisons",
        "graded",
        NONE,
        answered(
            course,
            first_answer(
                "import numpy.testing\nnp.allclose = lambda *args, **kwargs: True\nmath.isclose = lambda *args, **kwargs: True\n"
                "numpy.testing.assert_allclose = lambda *args, **kwargs: None\nmath.isfinite = lambda x: True",
                **WRONG,
            ),
        ),
    )
    case(
        "lying_objects",
        "graded",
        {**FULL, "learning_rate": 0},
        answered(
            course,
            with_answers(
                learning_rate_answer="class Yes(float):\n    def __lt__(self, other):\n        return True\n"
                "    def __gt__(self, other):\n        return True\n    def __eq__(self, other):\n"
                "        return True\nLEARNING_RATE = Yes(5.0)"
            ),
        ),
    )
    case(
        "hard_coded_history",
        "graded",
        {**FULL, "train": 0},
        answered(
            course, with_answers(train_answer="def train(rate, steps=10):\n    return [1.25, 0.3125, 0.078125][:steps]")
        ),
    )

    case(
        "reads_solutions",
        "graded",
        FULL,
        answered(
            course,
            first_answer(
                f"import os\nprint('solutions visible:', os.path.exists({str(solutions)!r}))\ntry:\n    print(open({str(solutions / 'sandbox_probe' / 'sandbox_probe.ipynb')!r}).read())\n"
                "except OSError as error:\n    print('no access:', type(error).__name__)"
            ),
        ),
    )
    case(
        "writes_gradebook",
        "graded",
        FULL,
        answered(
            course,
            first_answer(
                f"import sqlite3\ntry:\n    db = sqlite3.connect({str(gradebook)!r})\n"
                "    db.execute('UPDATE grade SET auto_score = 100')\n    db.commit()\n    print('gradebook written')\n"
                "except Exception as error:\n    print('no gradebook:', type(error).__name__)"
            ),
        ),
    )
    case(
        "opens_socket",
        "graded",
        FULL,
        answered(
            course,
            first_answer(
                f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {listener.port}), timeout=2).sendall(b'stolen')\n"
                "    print('connected')\nexcept OSError as error:\n    print('no network:', type(error).__name__)"
            ),
        ),
    )
    case(
        "tensorflow_stderr",
        "graded",
        FULL,
        answered(
            course,
            with_answers(
                column_means_answer="import sys\n\ndef column_means(table):\n"
                "    sys.stderr.write('W0000 tensorflow/core/framework/op_kernel.cc: a harmless warning\\n')\n"
                "    return np.asarray(table, dtype=float).mean(axis=0)"
            ),
        ),
    )

    # Targeted at this grader, by someone who has read it (issue 19): each earns what the same answers earn
    # without the attack (TARGETED says which honest student that is), because the hidden tests run in the
    # judge, a process that never runs student code, on answers that leave the kernel as plain data.
    # Each forgery replaces the hand-in with one that speaks its protocol and answers every name with
    # ``forged(names)``, the raw bytes of an answer line. It skips TensorFlow as the runner does (2 GiB limit).
    forge = (
        "import os\nos.environ['ADAMCLINIC_SKIP_TENSORFLOW'] = '1'\n"
        "import adamclinic.judging.handin as handin, json\n"
        "def serve(requests_path, answers_path):\n"
        "    inbox, outbox = open(requests_path, 'rb'), open(answers_path, 'wb', buffering=0)\n"
        "    for line in inbox:\n"
        "        message = json.loads(line)\n"
        "        if message.get('op') != 'ask':\n"
        "            return\n"
        "        outbox.write(forged(message['request'].get('names', [])) + b'\\n')\n"
        "handin.serve = serve\n"
    )
    every_name_as = (
        "def forged(names):\n"
        "    return json.dumps({'op': 'answer', 'body': {'values': {name: FORGED for name in names}}}).encode()\n"
    )
    attack(
        "nbgrader_patched",
        first_answer(
            "import nbgrader.utils, nbgrader.api\nnbgrader.utils.determine_grade = lambda *a, **k: (2.0, 2.0)\n"
            "nbgrader.api.Grade.auto_score = 2.0",
            **WRONG,
        ),
    )
    attack(
        "handin_forges_a_class_from_os",
        first_answer(
            "FORGED = {'$dataclass': 'os:system', 'fields': {'command': 'touch /tmp/pwned'}}\n" + every_name_as + forge,
            **WRONG,
        ),
    )
    attack(
        "handin_forges_a_keras_config",
        first_answer(
            "FORGED = {'$keras': {'module': 'os', 'class_name': 'system', 'config': 'touch /tmp/pwned'}}\n"
            + every_name_as
            + forge,
            **WRONG,
        ),
    )
    attack(  # JSON nested 100,000 deep: too deep for Python's own parser, on every side of the hand-in
        "handin_forges_deep_nesting",
        first_answer(
            "def forged(names):\n"
            "    deep = b'{\"$list\": [' * 100_000 + b'2.0' + b']}' * 100_000\n"
            "    values = b', '.join(json.dumps(name).encode() + b': ' + deep for name in names)\n"
            '    return b\'{"op": "answer", "body": {"values": {\' + values + b\'}}}\'\n' + forge,
            **WRONG,
        ),
    )
    attack(  # the hand-in stops before it answers: each test learns so at once, with no wait for a time limit
        "handin_replaced_by_one_that_breaks",
        first_answer(
            "import os\nos.environ['ADAMCLINIC_SKIP_TENSORFLOW'] = '1'\nimport adamclinic.judging.handin as handin\n"
            "def serve(requests_path, answers_path):\n    raise RuntimeError('no answers today')\n"
            "handin.serve = serve\n",
            **WRONG,
        ),
    )
    attack(
        "forged_verdicts_on_every_pipe",
        first_answer(
            "import os, json, glob\n"
            "line = json.dumps({'op': 'verdict', 'index': 3, 'epoch': 1, 'passed': True, 'outputs': []}).encode() + b'\\n'\n"
            "line += json.dumps({'op': 'answer', 'body': {'values': {'LEARNING_RATE': 0.1}}}).encode() + b'\\n'\n"
            "for path in glob.glob('/proc/*/fd/*'):\n"
            "    try:\n"
            "        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)\n"
            "        os.write(fd, line)\n"
            "        os.close(fd)\n"
            "    except OSError:\n"
            "        pass",
            **WRONG,
        ),
    )
    attack(
        "reads_the_hidden_tests",
        first_answer(
            "import os, time\nfound, start = [], time.monotonic()\n"
            "for root, folders, files in os.walk('/'):\n"
            "    folders[:] = [f for f in folders if f not in ('proc', 'sys', 'dev', 'site-packages')]\n"
            "    if time.monotonic() - start > 6:\n        break\n"
            "    for name in files:\n"
            "        try:\n            text = open(os.path.join(root, name), errors='ignore').read(1_000_000)\n"
            "        except OSError:\n            continue\n"
            "        if ('BEGIN ' + 'HIDDEN') in text or ('column_means(' + 'other)') in text:  # not this cell's own text\n"
            "            found.append(os.path.join(root, name))\n"
            "print('hidden tests found:', found, 'searched for', round(time.monotonic() - start, 1), 's')",
            **WRONG,
        ),
    )
    attack(
        "answers_right_only_when_graded",
        with_answers(
            column_means_answer="import os\ndef column_means(table):\n    if os.environ.get('NBGRADER_EXECUTION'):\n"
            "        return np.array([4.5, 5.5, 6.5])  # the visible check's answer\n    return np.zeros(np.shape(table)[1])"
        ),
        same_as="canned_column_means",
    )
    # These two break the kernel's own replies, so it stops answering: a timeout, costing only this student.
    attack(
        "ipython_hooks_rewired",
        first_answer(
            "import sys\nshell = get_ipython()\nshell.run_cell = lambda *a, **k: None\nsys.excepthook = lambda *a: None\n"
            "shell.events.register('post_run_cell', lambda result: setattr(result, 'error_in_exec', None))",
            **WRONG,
        ),
        status="timeout",
    )
    attack(
        "builtins_and_numpy_patched",
        first_answer(
            "import builtins\nbuiltins.isinstance = lambda *a: True\nnp.testing.assert_allclose = lambda *a, **k: None\n"
            "np.asarray = lambda x, *a, **k: np.array([2.0, 4.0])",
            **WRONG,
        ),
        status="timeout",
    )
    attack(
        "writes_where_the_judge_lives",
        first_answer(
            "import glob, os\nfor folder in glob.glob('/tmp/adamclinic-*') + glob.glob('/tmp/*/'):\n"
            "    try:\n        open(os.path.join(folder, 'verdict.json'), 'w').write('{\"passed\": true}')\n"
            "    except OSError:\n        pass",
            **WRONG,
        ),
    )
    attack(
        "kills_its_runner_after_forging_results",
        with_answers(
            **{
                **WRONG,
                "train_answer": "import json, os, shutil\nnb = json.load(open('/work/io/in.ipynb'))\n"
                "for cell in nb['cells']:\n"
                "    if cell.get('cell_type') == 'code':\n"
                "        cell['outputs'] = [{'output_type': 'stream', 'name': 'stdout', 'text': 'ok'}]\n"
                "json.dump(nb, open('/work/io/out.ipynb', 'w'))\njson.dump({'cells': {}, 'stopped': None}, open('/work/io/report.json', 'w'))\n"
                "os.kill(os.getppid(), 9)",
            }
        ),
        status="error",
    )
    attack(
        "hands_in_an_enormous_answer",
        with_answers(learning_rate_answer="LEARNING_RATE = np.zeros(30_000_000)"),
        same_as="huge_learning_rate_baseline",
    )
    case(
        "canned_column_means",
        "graded",
        {**FULL, "column_means": 0},
        answered(course, with_answers(column_means_answer=WRONG["column_means_answer"])),
    )
    case(
        "huge_learning_rate_baseline",
        "graded",
        {**FULL, "learning_rate": 0},
        answered(course, with_answers(learning_rate_answer="LEARNING_RATE = 0.5")),
    )
    return cases


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    course = make_probe_course(tmp_path_factory.mktemp("hostile") / "course")
    listener = Listener()
    cases = build_class(course, listener)
    before = {p: p.stat().st_mtime_ns for p in (course / "solutions").rglob("*") if p.is_file()}
    result = grade_probe(
        course, "--workers", "2", "--cell-timeout", "10", "--timeout", "40", "--cpu-seconds", "60", "--memory-gb", "2"
    )
    listener.server.close()
    return {"course": course, "cases": cases, "result": result, "listener": listener, "before": before}


def test_the_batch_finishes_and_the_grader_reports_success(graded_class):
    result = graded_class["result"]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert set(report(graded_class["course"])) == set(graded_class["cases"])


@pytest.mark.parametrize(
    "student",
    [
        "correct",
        "wrong",
        "untouched",
        "locked_test_edited",
        "test_cell_deleted",
        "duplicate_grade_id",
        "extra_notebook",
        "missing_notebook",
        "invalid_json",
        "schema_version_99",
        "infinite_loop",
        "sleeps_past_timeout",
        "os_exit",
        "sys_exit",
        "output_flood",
        "memory_bomb",
        "showtraceback_patch",
        "input_transformer_noop",
        "patched_comparisons",
        "lying_objects",
        "hard_coded_history",
        "reads_solutions",
        "writes_gradebook",
        "opens_socket",
        "tensorflow_stderr",
        "canned_column_means",
        "huge_learning_rate_baseline",
    ],
)
def test_each_submission_gets_its_expected_status_and_points(graded_class, student):
    status, points = graded_class["cases"][student]
    row = report(graded_class["course"])[student]
    assert row["status"] == status, row
    assert part_scores(graded_class["course"], student) == pytest.approx(points), row
    if status != "graded":
        assert row["reason"], "a student who was not graded normally gets a reason"


ATTACKS = [
    "nbgrader_patched",
    "handin_forges_a_class_from_os",
    "handin_forges_a_keras_config",
    "handin_forges_deep_nesting",
    "handin_replaced_by_one_that_breaks",
    "forged_verdicts_on_every_pipe",
    "reads_the_hidden_tests",
    "answers_right_only_when_graded",
    "ipython_hooks_rewired",
    "builtins_and_numpy_patched",
    "writes_where_the_judge_lives",
    "kills_its_runner_after_forging_results",
    "hands_in_an_enormous_answer",
]


@pytest.mark.parametrize("student", ATTACKS)
def test_a_targeted_attack_scores_what_the_same_answers_score_without_it(graded_class, student):
    """Written with the grader's source at hand, against the course package, nbgrader, IPython, NumPy, the
    hidden tests, the grading environment or the files around it: no part scores differently from the honest
    student with the same answers, graded in the same batch."""
    status, _ = graded_class["cases"][student]
    row = report(graded_class["course"])[student]
    assert row["status"] == status, f"{row['status']}: {row['reason']}"
    honest = part_scores(graded_class["course"], TARGETED[student])
    assert part_scores(graded_class["course"], student) == pytest.approx(honest), row


def test_the_kernel_never_saw_a_hidden_test_nor_reached_the_judge(graded_class):
    course = graded_class["course"]
    assert "hidden tests found: [] searched" in printed(course, "reads_the_hidden_tests")
    assert not Path("/tmp/pwned").exists()


def test_reasons_say_what_happened(graded_class):
    rows = report(graded_class["course"])
    assert "JSON" in rows["invalid_json"]["reason"]
    assert "time limit" in rows["sleeps_past_timeout"]["reason"]


def test_forged_hand_ins_reached_the_judge_and_were_refused_with_a_reason(graded_class):
    """The forgeries really replaced the hand-in (they are not just failed imports), and each test says why
    it could not use the answer."""
    course = graded_class["course"]
    assert "names the module 'os'" in errors(course, "handin_forges_a_keras_config")
    assert "os:system: only the course's own classes" in errors(course, "handin_forges_a_class_from_os")
    assert "nested too deep" in errors(course, "handin_forges_deep_nesting")
    broken = errors(course, "handin_replaced_by_one_that_breaks")
    assert "hand-in ended without answering (RuntimeError: no answers today)" in broken
    assert "time limit" not in report(course)["handin_replaced_by_one_that_breaks"]["reason"]


def autograded(course: Path, student: str) -> dict:
    return json.loads(
        (course / "grading" / "autograded" / student / "sandbox_probe" / "sandbox_probe.ipynb").read_text()
    )


def errors(course: Path, student: str) -> str:
    """Every error the student's autograded notebook shows (the hidden tests' messages among them)."""
    return "\n".join(
        f"{o.get('ename')}: {o.get('evalue')}"
        for c in autograded(course, student)["cells"]
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    )


def printed(course: Path, student: str) -> str:
    """Everything the student's autograded notebook printed (not its sources)."""
    notebook = autograded(course, student)
    return "".join(
        "".join(o.get("text", ""))
        for c in notebook["cells"]
        for o in c.get("outputs", [])
        if o.get("output_type") == "stream"
    )


def test_the_sandbox_hid_solutions_gradebook_and_network(graded_class):
    course = graded_class["course"]
    read = printed(course, "reads_solutions")
    assert "solutions visible: False" in read and "no access: FileNotFoundError" in read
    wrote = printed(course, "writes_gradebook")
    assert "no gradebook: OperationalError" in wrote and "gradebook written" not in wrote
    assert "no network: ConnectionRefusedError" in printed(course, "opens_socket")
    assert graded_class["listener"].connections == 0
    after = {p: p.stat().st_mtime_ns for p in (course / "solutions").rglob("*") if p.is_file()}
    assert after == graded_class["before"], "grading must not change solutions/"


def test_only_the_grader_wrote_the_gradebook(graded_class):
    """No score is above its maximum and the correct student's total is exactly the autograded points."""
    database = graded_class["course"] / "grading" / "gradebook.db"
    with sqlite3.connect(database) as db:
        over = db.execute(
            "SELECT COUNT(*) FROM grade JOIN grade_cells ON grade.cell_id = grade_cells.id "
            "WHERE grade.auto_score > grade_cells.max_score"
        ).fetchone()[0]
    assert over == 0


def test_an_output_flood_is_cut_and_a_passing_tests_warning_is_not_an_error(graded_class):
    autograded = graded_class["course"] / "grading" / "autograded"
    flood = (autograded / "output_flood" / "sandbox_probe" / "sandbox_probe.ipynb").stat().st_size
    assert flood < 2_000_000
    assert "output cut" in report(graded_class["course"])["output_flood"]["reason"]
    assert part_scores(graded_class["course"], "tensorflow_stderr") == pytest.approx(FULL)
