"""Load the course's data sets from ``datasets/``: shipped CSVs, checked against their data cards.

Every CSV has a data card ``<name>.md`` beside it whose ``sha256:`` line is the one source of its
checksum. A missing, truncated or edited file stops with a message naming the file and the fix.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from adamclinic.engine import Dataset
from adamclinic.paths import REPOSITORY_ROOT


class DatasetError(RuntimeError):
    """A shipped data set is missing or damaged; the message says how to get it back."""


def datasets_dir() -> Path:
    """The ``datasets/`` folder of the course (``ADAMCLINIC_DATASETS`` overrides it)."""
    override = os.environ.get("ADAMCLINIC_DATASETS")
    if override:
        return Path(override)
    return REPOSITORY_ROOT / "datasets"


def _expected_checksum(card: Path) -> str:
    if not card.exists():
        raise DatasetError(f"The data card {card} is missing. Restore it with: git checkout -- {card.name}")
    match = re.search(r"^sha256:\s*([0-9a-f]{64})\s*$", card.read_text(encoding="utf-8"), re.MULTILINE)
    if match is None:
        raise DatasetError(f"The data card {card} has no 'sha256: <64 hex digits>' line.")
    return match.group(1)


def load_csv(name: str) -> pd.DataFrame:
    """Read ``datasets/<name>.csv`` after checking it against its data card's checksum."""
    folder = datasets_dir()
    path = folder / f"{name}.csv"
    restore = (
        f"Restore it from the repository (git checkout -- datasets/{name}.csv) "
        "or regenerate it with: python datasets/make_datasets.py"
    )
    if not path.exists():
        raise DatasetError(f"The data file {path} is missing. {restore}")
    expected = _expected_checksum(folder / f"{name}.md")
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if actual != expected:
        raise DatasetError(
            f"The data file {path} is damaged or was edited: its sha256 is {actual[:12]}…, "
            f"its data card says {expected[:12]}…. {restore}"
        )
    return pd.read_csv(path)


def smooth_regression(train_rows: int = 1024) -> Dataset:
    """Lesson 01's regression data: the first ``train_rows`` rows train, the rest validate."""
    frame = load_csv("smooth_regression")
    x = frame.drop(columns="y").to_numpy(dtype=np.float32)
    y = frame["y"].to_numpy(dtype=np.float32)
    return Dataset(x[:train_rows], y[:train_rows], x[train_rows:], y[train_rows:], name="smooth_regression")


def digits(train_rows: int = 1440) -> Dataset:
    """8x8 handwritten digits: 64 pixel inputs scaled to [0, 1], integer labels 0-9.

    The first ``train_rows`` rows train, the rest validate. Train with
    ``loss="sparse_categorical_crossentropy"`` and a 10-unit softmax output.
    """
    frame = load_csv("digits")
    x = frame.drop(columns="label").to_numpy(dtype=np.float32) / 16.0
    y = frame["label"].to_numpy(dtype=np.float32)
    return Dataset(x[:train_rows], y[:train_rows], x[train_rows:], y[train_rows:], name="digits")


def overlapping_classes() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Lesson 05's two overlapping classes: a pool of 3072 rows to draw training sets from, and a
    balanced-enough held-out set of the last 1024 rows (features ``x0``..``x7``, ``label`` 0 or 1)."""
    frame = load_csv("overlapping_classes")
    return frame.iloc[:3072].reset_index(drop=True), frame.iloc[3072:].reset_index(drop=True)


def parcels() -> Dataset:
    """Lesson 03's parcels, unscaled: five inputs in metres, grams and dollars (sizes 1e-3 to 1e5), a
    standardized cost. The first 1024 rows train, the next 256 validate; the last 256 are held out for
    the leak experiment (``adamclinic.lessons.feature_scaling``) and are not in this Dataset."""
    frame = load_csv("parcels")
    x = frame.drop(columns="cost").to_numpy(dtype=np.float32)
    y = frame["cost"].to_numpy(dtype=np.float32)
    return Dataset(x[:1024], y[:1024], x[1024:1280], y[1024:1280], name="parcels")


def imbalanced(
    pool: pd.DataFrame,
    held_out: pd.DataFrame,
    minority_share: float,
    rows: int = 1024,
    minority: int = 1,
    seed: int = 0,
) -> Dataset:
    """A training set of ``rows`` rows of which ``minority_share`` belong to class ``minority``.

    Drawn from ``pool`` without replacement (same size whatever the share, so no retrace); the
    held-out rows are kept as they are, so every share is judged on the same data.
    """
    if not 0 < minority_share <= 0.5:
        raise ValueError(f"minority_share must lie in (0, 0.5]; got {minority_share}.")
    rng = np.random.default_rng(seed)
    count = max(1, int(round(minority_share * rows)))
    labels = pool["label"].to_numpy()
    picked = np.concatenate(
        [
            rng.choice(np.flatnonzero(labels == minority), size=count, replace=False),
            rng.choice(np.flatnonzero(labels != minority), size=rows - count, replace=False),
        ]
    )
    picked = rng.permutation(picked)
    features = [c for c in pool.columns if c != "label"]
    return Dataset(
        pool[features].to_numpy()[picked],
        labels[picked],
        held_out[features].to_numpy(),
        held_out["label"].to_numpy(),
        name=f"{minority_share:.0%} minority",
    )


def balanced_class_weight(data: Dataset) -> dict[int, float]:
    """``n / (classes * n_c)`` per class, as scikit-learn's ``class_weight="balanced"``: each class then
    carries the same total weight in the loss."""
    labels, counts = np.unique(data.y_train.astype(int), return_counts=True)
    return {int(label): float(len(data.y_train) / (len(labels) * count)) for label, count in zip(labels, counts)}


def with_missing(data: Dataset, fraction: float, seed: int = 0) -> Dataset:
    """Blank out ``fraction`` of the training input cells (NaN), at random; ``fraction`` may be so small
    that only one cell goes (at least one does whenever ``fraction > 0``)."""
    x = data.x_train.copy()
    count = int(round(fraction * x.size)) if fraction > 0 else 0
    cells = np.random.default_rng(seed).choice(x.size, size=max(count, 1 if fraction > 0 else 0), replace=False)
    x.reshape(-1)[cells] = np.nan
    return replace(data, x_train=x, name=f"{data.name} with {len(cells)} NaN")
