"""The clinic's two zoos scored side by side: ``python -m adamclinic.clinic.zoos``.

The tuned zoo (``adamclinic.clinic.patients.ZOO``) is what the rules' thresholds were set on; the held-out
zoo (``adamclinic.clinic.held_out.HELD_OUT``: other data, architectures and seeds) is what the clinic is
judged on. Each is trained afresh (``--seed N`` for the tuned zoo; the held-out patients keep their own
seeds) or read from its stored file (``--stored``, no training); ``--write`` stores both sets' records
(``tests/data/clinic_zoo.json`` and ``tests/data/clinic_zoo_held_out.json``). It prints one line per
patient, then each set's top-1 accuracy and false-alarm rate.
"""

from __future__ import annotations

import sys

from adamclinic.clinic.held_out import HELD_OUT
from adamclinic.clinic.patients import held_out_path, record_zoo, recorded_from_file, score, stored_path, write_zoo


def main(argv: list[str]) -> dict[str, dict[str, float]]:
    """Score the tuned zoo and the held-out zoo: trained afresh (``--seed N`` for the tuned zoo's seed;
    the held-out patients keep their own), or read from the stored files (``--stored``). ``--write``
    stores both sets' fresh records."""
    if "--stored" in argv and ("--write" in argv or "--seed" in argv):
        raise SystemExit("--stored scores the stored files as they are: drop --write and --seed.")
    seed = int(argv[argv.index("--seed") + 1]) if "--seed" in argv else 0
    if "--stored" in argv:
        tuned, held_out = recorded_from_file(stored_path()), recorded_from_file(held_out_path())
    else:
        tuned, held_out = record_zoo(seed), record_zoo(seed, HELD_OUT)
    if "--write" in argv:
        write_zoo(stored_path(), seed, tuned)
        write_zoo(held_out_path(), None, held_out)
    cards = {"tuned": score(tuned, "tuned zoo"), "held_out": score(held_out, "held-out zoo")}
    print(cards)
    return cards


if __name__ == "__main__":
    main(sys.argv[1:])
