"""Learning-rate schedules the lessons compare, built from ``keras.optimizers.schedules``."""

from __future__ import annotations

import keras

SCHEDULE_KINDS = ("constant", "cosine decay", "warmup + cosine decay")


def make_schedule(kind: str, peak: float, total_steps: int, warmup_steps: int = 64):
    """A constant rate, or a Keras schedule that peaks at ``peak`` and decays to 0 by ``total_steps``."""
    if kind == "constant":
        return float(peak)
    if kind == "cosine decay":
        return keras.optimizers.schedules.CosineDecay(peak, decay_steps=total_steps)
    if kind == "warmup + cosine decay":
        if not 0 < warmup_steps < total_steps:
            raise ValueError(f"warmup_steps must lie between 0 and {total_steps}; got {warmup_steps}.")
        return keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=total_steps - warmup_steps, warmup_target=peak, warmup_steps=warmup_steps
        )
    raise ValueError(f"Unknown schedule {kind!r}; choose one of {', '.join(SCHEDULE_KINDS)}.")
