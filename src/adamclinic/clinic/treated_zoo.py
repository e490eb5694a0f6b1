"""The clinic's treatment step measured on the zoos: how many broken runs do one and two treatments cure?

``python -m adamclinic.clinic.treated_zoo`` treats every patient of the tuned zoo
(``adamclinic.clinic.patients.ZOO``) and of the held-out zoo (``adamclinic.clinic.held_out``;
``--held-out``: that one only), and prints each patient's path (verdict, treatment, verdict...) and the
share of broken runs brought to "no problem found" by one and by two treatments. ``--write`` stores the
per-patient outcomes in ``tests/data/clinic_treatments.json``, which ``tests/test_clinic_treatment.py``
checks, so the suite does not retrain the zoos; ``--stored --write`` re-scores that file without training.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from adamclinic.clinic.rules import HEALTHY
from adamclinic.clinic.treatment import TreatmentReport, treat
from adamclinic.paths import REPOSITORY_ROOT


def stored_path() -> Path:
    """Where the per-patient outcomes are kept (``tests/data/clinic_treatments.json``), written by ``--write``."""
    return REPOSITORY_ROOT / "tests" / "data" / "clinic_treatments.json"


def outcome(name: str, label: str, result: TreatmentReport) -> dict[str, Any]:
    """One patient's outcome as plain data: label, verdicts before and after each treatment, losses."""

    def loss(value: float | None) -> float | None:
        return None if value is None or not math.isfinite(value) else round(float(value), 6)

    return {
        "label": label,
        "before": result.before.verdict,
        "before_loss": loss(result.before.final_loss),
        "tried": [
            {
                "cause": v.cause,
                "treatment": v.treatment,
                "detail": v.detail,
                "verdict": v.verdict,
                "final_loss": loss(v.final_loss),
            }
            for v in result.tried
        ],
        "after": result.after.verdict,
        "to_healthy": result.treatments_to_healthy,
        "untreatable": bool(result.untreatable),
    }


def shares(outcomes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Of the broken runs (label not healthy): how many one treatment, and one or two, bring to "no problem
    found" (a broken run the clinic already called healthy was not brought there by a treatment: it counts
    as missed); and how many healthy runs were left untouched."""
    broken = [o for o in outcomes.values() if o["label"] != HEALTHY]
    healthy = [o for o in outcomes.values() if o["label"] == HEALTHY]
    one = sum(o["to_healthy"] == 1 for o in broken)
    two = sum(o["to_healthy"] in (1, 2) for o in broken)
    return {
        "broken": len(broken),
        "healthy_after_one": one,
        "healthy_after_two": two,
        "share_after_one": round(one / len(broken), 4) if broken else None,
        "share_after_two": round(two / len(broken), 4) if broken else None,
        "missed": sum(o["before"] == HEALTHY for o in broken),
        "untreatable": sum(o["untreatable"] for o in broken),
        "healthy_runs": len(healthy),
        "healthy_runs_left_alone": sum(not o["tried"] and o["after"] == HEALTHY for o in healthy),
    }


def treat_zoo(patients, seed: int = 0, max_treatments: int = 2, echo: bool = True) -> dict[str, dict[str, Any]]:
    """``treat`` every patient (with ``seed``, or the patient's own); by name, its outcome (``outcome``)."""
    outcomes = {}
    for patient in patients:
        own = getattr(patient, "seed", None)  # a held-out patient keeps its own seed
        result = treat(patient, max_treatments=max_treatments, seed=seed if own is None else own)
        outcomes[patient.name] = outcome(patient.name, patient.cause, result)
        if echo:
            steps = " → ".join([result.before.verdict] + [f"[{v.treatment}] {v.verdict}" for v in result.tried])
            print(f"{patient.name:48s} label={patient.cause:24s} {steps}", flush=True)
    return outcomes


def _zoos(argv: list[str]) -> dict[str, list]:
    from adamclinic.clinic.held_out import HELD_OUT
    from adamclinic.clinic.patients import ZOO

    return {"held_out": HELD_OUT} if "--held-out" in argv else {"tuned": ZOO, "held_out": HELD_OUT}


def write(stored: dict[str, Any]) -> None:
    """Store the outcomes in ``stored_path()``: one patient per line, small in git and readable in a diff."""
    blocks = []
    for name, zoo in stored["zoos"].items():
        lines = ",\n".join(
            f"      {json.dumps(p)}: {json.dumps(o, ensure_ascii=False, separators=(',', ':'))}"
            for p, o in zoo["patients"].items()
        )
        blocks.append(
            f'    {json.dumps(name)}: {{\n      "shares": {json.dumps(zoo["shares"])},\n'
            f'      "patients": {{\n{lines}\n      }}\n    }}'
        )
    head = f'{{"seed": {stored["seed"]}, "max_treatments": {stored["max_treatments"]}, "zoos": {{\n'
    stored_path().write_text(head + ",\n".join(blocks) + "\n}}\n", encoding="utf-8")


def main(argv: list[str]) -> dict[str, dict[str, Any]]:
    """Treat the zoos and print the shares; ``--write`` stores them, ``--stored`` re-scores the stored file."""
    if "--stored" in argv:
        stored = json.loads(stored_path().read_text(encoding="utf-8"))
        for zoo in stored["zoos"].values():
            zoo["shares"] = shares(zoo["patients"])
    else:
        seed = int(argv[argv.index("--seed") + 1]) if "--seed" in argv else 0
        stored = {"seed": seed, "max_treatments": 2, "zoos": {}}
        if "--write" in argv and stored_path().exists():
            stored["zoos"] = json.loads(stored_path().read_text(encoding="utf-8"))["zoos"]
        for name, patients in _zoos(argv).items():
            print(f"--- {name} zoo ({len(patients)} patients)")
            outcomes = treat_zoo(patients, seed=seed)
            stored["zoos"][name] = {"shares": shares(outcomes), "patients": outcomes}
    for name, zoo in stored["zoos"].items():
        print(name, zoo["shares"], flush=True)
    if "--write" in argv:
        write(stored)
    return stored["zoos"]


if __name__ == "__main__":
    main(sys.argv[1:])
