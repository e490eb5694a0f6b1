"""``python -m adamclinic.clinic diagnose LOG``: the clinic's report on a run known only from its logs.

``LOG`` is a ``keras.callbacks.CSVLogger`` file or a ``keras.callbacks.TensorBoard`` log directory. The
report names the likely causes with their evidence and fixes, and the causes a log cannot show. Exit
status: 0 with a report, 2 (and one line on stderr) for a log it cannot read.
"""

from __future__ import annotations

import argparse
import sys

from adamclinic.clinic.logs import HOW_TO_LOG, record_from_logs
from adamclinic.clinic.rules import diagnose


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m adamclinic.clinic",
        description="Name why a Keras run failed, from its logs alone.",
        epilog=HOW_TO_LOG,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="diagnose")
    diagnose_command = commands.add_parser(
        "diagnose",
        help="print the clinic's report on a CSVLogger file or a TensorBoard log directory",
        description="Print the clinic's report on a run's log: the likely causes, their evidence and fixes, "
        "and what the log cannot show.",
        epilog=HOW_TO_LOG,
    )
    diagnose_command.add_argument("log", help="a keras.callbacks.CSVLogger file or a TensorBoard log directory")
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    try:
        record = record_from_logs(arguments.log)
    except (ValueError, OSError) as error:  # LogReadError is a ValueError; OSError: unreadable file
        message = " ".join(str(error).split())
        print(f"python -m adamclinic.clinic diagnose: {message}", file=sys.stderr)
        return 2
    print(diagnose(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
