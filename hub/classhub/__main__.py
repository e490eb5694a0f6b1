"""``python -m classhub start|clean|grade|sync`` (run from the repository with PYTHONPATH=hub; make hub does)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from classhub import course_files, roster, setup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m classhub", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="create the class (accounts, course, exchange) and run the hub")
    start.add_argument("--state", type=Path, default=setup.REPOSITORY / ".hub")
    start.add_argument("--roster", type=Path, default=None, help="default: hub/roster.toml, else the example")
    start.add_argument("--port", type=int, default=8000)
    start.add_argument(
        "--db",
        help="postgres: a private PostgreSQL server for the class in the state folder (Debian's postgresql); "
        "postgresql+psycopg://user:password@host:port/: an existing server; sqlite (the default). "
        "Remembered by the state folder",
    )
    start.add_argument("--hub-db", help="the hub's database URL (default: SQLite in the state folder)")
    start.add_argument("--gradebook-db", help="the gradebook's URL (default: SQLite in the course folder)")
    start.add_argument("--prepare-only", action="store_true", help="set everything up but do not run the hub")
    clean = commands.add_parser("clean", help="stop the hub, remove its accounts and its state folder")
    clean.add_argument("--state", type=Path, default=setup.REPOSITORY / ".hub")
    grade = commands.add_parser(
        "grade", help="grade the hub's submissions with the course's grader (make grade), as an instructor"
    )
    grade.add_argument("assignment")
    grade.add_argument("--state", type=Path, default=setup.REPOSITORY / ".hub")
    grade.add_argument("--workers", type=int, default=2)
    grade.add_argument("--instructor", help="the instructor account to grade as (default: the roster's first)")
    grade.add_argument(
        "--scheduler",
        help="grade on an existing Dask cluster (tcp://host:port; make grade SCHEDULER=...) whose workers see "
        "the course folder at the same path (default: a local cluster of --workers)",
    )
    sync = commands.add_parser("sync", help="(the hub runs this as the member) copy the course into a home")
    sync.add_argument("home", type=Path)
    sync.add_argument("sources", type=Path, nargs="+")
    args = parser.parse_args(argv)

    if args.command == "sync":
        print(json.dumps({k: len(v) for k, v in course_files.sync(args.home, args.sources).items()}))
        return 0
    if os.geteuid() != 0:
        print(
            f"make hub{'-clean' if args.command == 'clean' else ''} needs root: the hub creates a Unix account "
            "for each member of the class and starts their servers as them. Run it with sudo.",
            file=sys.stderr,
        )
        return 2
    if args.command == "clean":
        done = setup.clean(args.state)
        print("\n".join(done) if done else f"nothing to clean: {args.state} does not exist")
        return 0
    if args.command == "grade":
        try:
            command, env = setup.grade_command(
                args.state, args.assignment, args.workers, args.instructor, args.scheduler
            )
        except setup.SetupError as error:
            print(f"make grade HUB=1: {error}", file=sys.stderr)
            return 2
        return subprocess.run(command, env=env).returncode
    roster_path = args.roster or next(
        p for p in (setup.HUB_FOLDER / "roster.toml", setup.HUB_FOLDER / "roster.example.toml") if p.exists()
    )
    try:
        the_class = roster.load(roster_path)
        settings = setup.prepare(
            args.state, the_class, args.port, hub_db=args.hub_db, gradebook_db=args.gradebook_db, db=args.db
        )
    except (roster.RosterError, setup.SetupError) as error:
        print(f"make hub: {error}", file=sys.stderr)
        return 2
    print(
        f"The class {the_class.course_id} from {roster_path}: {len(the_class.students)} students, "
        f"instructors {', '.join(the_class.instructors)}; databases: {settings['db']}; state in {args.state} "
        "(make hub-clean removes it).\n"
        f"Open http://127.0.0.1:{settings['port']}/ : each member picks a password at first login."
    )
    if args.prepare_only:
        return 0
    command, env = setup.hub_command(args.state)
    sys.stdout.flush()
    os.chdir(args.state / "hub")
    # A make started in the background ignores SIGINT, and the hub's children would inherit that: the hub
    # stops its servers and the culler with SIGINT, so it would wait out each one's timeout.
    for number in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(number, signal.SIG_DFL)
    os.execve(command[0], command, env)


if __name__ == "__main__":
    sys.exit(main())
