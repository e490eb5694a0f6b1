"""Make the course's synthetic data sets, reproducibly. Run: python datasets/make_datasets.py

Each CSV is written next to this script; update the sha256 line of its data card afterwards
(the script prints it). Nothing here downloads anything.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent


def smooth_regression(rows: int = 1280, features: int = 10, noise: float = 0.05, seed: int = 2026) -> pd.DataFrame:
    """Ten standard-normal inputs and a smooth nonlinear target, standardized, with a little noise.

    A small ReLU network can fit it to a loss far below the variance of the target (1.0), so a
    healthy run, a crawl and a dead network are easy to tell apart on a loss curve.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, features))
    signal = (
        np.sin(x[:, 0])
        + 0.5 * x[:, 1] * x[:, 2]
        + np.tanh(x[:, 3])
        - 0.3 * x[:, 4] ** 2
        + 0.4 * x[:, 5]
        - 0.2 * x[:, 6]
        + 0.3 * np.abs(x[:, 7])
    )
    y = signal + noise * rng.standard_normal(rows)
    y = (y - y.mean()) / y.std()
    frame = pd.DataFrame(x.round(5), columns=[f"x{i}" for i in range(features)])
    frame["y"] = y.round(5)
    return frame


def digits() -> pd.DataFrame:
    """scikit-learn's bundled 8x8 handwritten digits (no download): 64 pixel columns (0-16) and a label."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    frame = pd.DataFrame(bunch.data.astype(int), columns=[f"p{i:02d}" for i in range(64)])
    frame["label"] = bunch.target.astype(int)
    return frame


def overlapping_classes(rows: int = 4096, seed: int = 5) -> pd.DataFrame:
    """Two balanced classes that overlap (no model gets them all right), from make_classification.

    Lesson 05 draws imbalanced training sets from it: with overlapping classes a network can reach a
    high accuracy by predicting the majority class, which is the failure that lesson measures.
    """
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=rows,
        n_features=8,
        n_informative=4,
        n_redundant=0,
        n_clusters_per_class=2,
        class_sep=0.8,
        flip_y=0.0,
        random_state=seed,
    )
    frame = pd.DataFrame(x.round(5), columns=[f"x{i}" for i in range(x.shape[1])])
    frame["label"] = y.astype(int)
    return frame


def parcels(rows: int = 1536, seed: int = 2027) -> pd.DataFrame:
    """Parcels described in five natural units whose sizes span 1e-3 to 1e5, and a standardized shipping cost.

    Lesson 03's data: a wall thickness in metres (about 0.005), a length in metres (about 1), a mass in
    grams (about 1e4), a declared value in dollars (heavy-tailed, a few hundred to over 1e4) and a distance
    in metres (about 4e5). Every column matters to the cost, including the tiny one, so a network that
    cannot see a feature because of its units cannot reach a low loss.
    """
    rng = np.random.default_rng(seed)
    wall_m = rng.uniform(0.001, 0.008, rows)
    length_m = rng.uniform(0.1, 1.5, rows)
    mass_g = rng.uniform(100, 20000, rows)
    value_usd = np.exp(rng.normal(np.log(300), 1.2, rows))
    distance_m = rng.uniform(2e3, 8e5, rows)
    z = lambda v: (v - v.mean()) / v.std()  # noqa: E731
    a, b, c, d, e = z(wall_m), z(length_m), z(mass_g), z(np.log(value_usd)), z(distance_m)
    signal = 0.9 * c + 0.8 * e + 0.5 * c * e + 0.6 * np.tanh(2 * b) - 0.6 * a + 0.4 * d + 0.4 * np.sin(2 * a)
    y = signal + 0.1 * rng.standard_normal(rows)
    y = (y - y.mean()) / y.std()
    return pd.DataFrame(
        {
            "wall_m": wall_m.round(6),
            "length_m": length_m.round(4),
            "mass_g": mass_g.round(1),
            "value_usd": value_usd.round(2),
            "distance_m": distance_m.round(0),
            "cost": y.round(5),
        }
    )


def write(frame: pd.DataFrame, name: str) -> None:
    path = HERE / name
    frame.to_csv(path, index=False, lineterminator="\n")
    print(f"{name}: {len(frame)} rows, sha256 {hashlib.sha256(path.read_bytes()).hexdigest()}")


# Every shipped CSV and the function that makes it (tests/test_data.py regenerates each one).
DATASETS = {
    "smooth_regression.csv": smooth_regression,
    "digits.csv": digits,
    "overlapping_classes.csv": overlapping_classes,
    "parcels.csv": parcels,
}

if __name__ == "__main__":
    for name, make in DATASETS.items():
        write(make(), name)
