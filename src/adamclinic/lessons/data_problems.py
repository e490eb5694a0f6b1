"""Break a data set on purpose, fix it, and measure the damage: lesson 05's data problems.

Every corruption is a seeded, pure function ``Dataset -> Dataset`` that touches the *training* rows
only and keeps their number fixed, so a slider move changes the data but not the shapes: the engine
reuses its compiled epoch, and the held-out rows stay clean to judge the model by. The fixes
(Huber loss, target clipping, robust scaling, class weights, imputation, dropping rows) and the
metrics that see through a flattering loss (balanced accuracy, minority recall, clean MSE) live here
too, next to the panel factories that wrap them.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import ipywidgets as w
import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import RobustScaler, StandardScaler

from adamclinic.data import balanced_class_weight, imbalanced, with_missing
from adamclinic.engine import Dataset, History, TrainConfig, run
from adamclinic.panels import ScoreBoard, TrainingPanel, tagged

# Outliers -----------------------------------------------------------------------------------------


def _chosen_rows(n: int, fraction: float, seed: int) -> np.ndarray:
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must lie between 0 and 1; got {fraction}.")
    count = int(round(fraction * n))
    return np.random.default_rng(seed).choice(n, size=count, replace=False)


def with_outliers(data: Dataset, fraction: float, size: float, where: str = "targets", seed: int = 0) -> Dataset:
    """Push ``fraction`` of the training rows ``size`` standard deviations away, at random signs.

    ``where="targets"`` corrupts the target (a mistyped label, a broken meter); ``where="inputs"``
    adds the offset to every input of the row (a sensor glitch). The validation rows stay clean.
    """
    rows = _chosen_rows(len(data.x_train), fraction, seed)
    rng = np.random.default_rng(seed + 1)
    x, y = data.x_train.copy(), data.y_train.copy()
    if where == "targets":
        y[rows] += size * rng.choice([-1.0, 1.0], size=(len(rows), y.shape[1])) * y.std()
    elif where == "inputs":
        x[rows] += size * rng.choice([-1.0, 1.0], size=(len(rows), x.shape[1])) * x.std(axis=0)
    else:
        raise ValueError(f"where must be 'targets' or 'inputs'; got {where!r}.")
    return replace(data, x_train=x, y_train=y, name=f"{data.name} with outliers")


def clip_targets(data: Dataset, robust_sds: float = 3.0) -> Dataset:
    """Clip training targets to the median ± ``robust_sds`` robust standard deviations (IQR / 1.349).

    Median and IQR barely move when a few targets are wild, so the clip range is set by the clean rows.
    """
    y = data.y_train
    median = np.median(y, axis=0)
    q1, q3 = np.percentile(y, [25, 75], axis=0)
    spread = robust_sds * (q3 - q1) / 1.349
    return replace(data, y_train=np.clip(y, median - spread, median + spread), name=f"{data.name}, targets clipped")


def rescaled(data: Dataset, scaler: str = "robust", clip: float | None = None) -> Dataset:
    """Refit an input scaler on the training rows ("standard" or "robust") and apply it to both splits;
    with ``clip``, also clip the scaled inputs to ``[-clip, clip]``.

    StandardScaler divides by the standard deviation, which a few huge rows inflate, squashing every
    clean row towards 0; RobustScaler uses the median and the interquartile range, which they do not
    move. Neither changes the fact that the outlying rows still lie far out: clipping does.
    """
    fitted = {"standard": StandardScaler, "robust": RobustScaler}[scaler]().fit(data.x_train)
    transform = fitted.transform if clip is None else (lambda x: np.clip(fitted.transform(x), -clip, clip))
    x_val = None if data.x_val is None else transform(data.x_val)
    suffix = f"{scaler} scaler" + ("" if clip is None else f", inputs clipped at ±{clip:g}")
    return replace(data, x_train=transform(data.x_train), x_val=x_val, name=f"{data.name}, {suffix}")


def outlier_rows(data: Dataset, fraction: float, seed: int = 0) -> np.ndarray:
    """The training rows ``with_outliers(data, fraction, ..., seed=seed)`` corrupts."""
    return _chosen_rows(len(data.x_train), fraction, seed)


def loss_share(history: History, rows: np.ndarray) -> float:
    """The share of the final training MSE (summed squared error) that comes from ``rows``."""
    data = history.config.data
    errors = ((history.predict(data.x_train) - data.y_train) ** 2).sum(axis=1)
    return float(errors[rows].sum() / errors.sum())


def clean_mse(history: History, data: Dataset) -> float:
    """Mean squared error of the trained model on ``data``'s (clean) validation rows."""
    return float(np.mean((history.predict(data.x_val) - data.y_val) ** 2))


OUTLIER_FIXES = (
    "none",
    "Huber loss",
    "clip targets",
    "standard scaler",
    "robust scaler",
    "robust scaler + clip inputs",
)


def outlier_config(
    base: TrainConfig, fraction: float, size: float, where: str = "targets", fix: str = "none"
) -> TrainConfig:
    """The run the outlier panel trains: ``base`` with outliers injected, then one fix applied."""
    data = with_outliers(base.data, fraction, size, where=where, seed=base.seed)
    loss = base.loss
    if fix == "Huber loss":
        loss = "huber"
    elif fix == "clip targets":
        data = clip_targets(data)
    elif fix in ("standard scaler", "robust scaler"):
        data = rescaled(data, fix.split()[0])
    elif fix == "robust scaler + clip inputs":
        data = rescaled(data, "robust", clip=3.0)
    elif fix != "none":
        raise ValueError(f"Unknown fix {fix!r}; choose one of {', '.join(OUTLIER_FIXES)}.")
    return tagged(
        replace(base, data=data, loss=loss),
        f"{fraction:.1%} {where} ±{size:g}σ" + ("" if fix == "none" else f", {fix}"),
    )


# Class imbalance ---------------------------------------------------------------------------------


def binary_scores(history: History, data: Dataset, minority: int = 1) -> dict[str, float]:
    """Scores on the held-out rows, which are about half minority.

    ``accuracy at the training mix`` is the accuracy a test set drawn like the training set would
    show (the class recalls weighted by the training shares): that is what a student usually sees,
    and it hides a model that rarely predicts the minority. Balanced accuracy (the mean recall over
    the classes) and the minority recall do not depend on the mix, so they show it.
    """
    predicted = (history.predict(data.x_val)[:, 0] > 0.5).astype(int)
    truth = data.y_val[:, 0].astype(int)
    recalls = [float((predicted[truth == c] == c).mean()) for c in (0, 1)]
    share = float((data.y_train[:, 0].astype(int) == minority).mean())
    return {
        "accuracy at the training mix": share * recalls[minority] + (1 - share) * recalls[1 - minority],
        "balanced accuracy": float(np.mean(recalls)),
        "minority recall": recalls[minority],
        "predicted minority share": float((predicted == minority).mean()),
    }


def majority_baseline(data: Dataset) -> float:
    """The accuracy, at the training mix, of always predicting the training set's majority class."""
    labels = data.y_train[:, 0].astype(int)
    return float(np.bincount(labels).max() / len(labels))


def imbalance_config(
    base: TrainConfig, pool: pd.DataFrame, held_out: pd.DataFrame, minority_share: float, weighted: bool = False
) -> TrainConfig:
    """The run the imbalance panel trains: a training set at ``minority_share``, optionally class-weighted."""
    data = imbalanced(pool, held_out, minority_share, rows=len(base.data.x_train), seed=base.seed)
    config = replace(base, data=data, class_weight=balanced_class_weight(data) if weighted else None)
    return tagged(config, f"{minority_share:.0%} minority" + (", class weights" if weighted else ""))


# Label noise --------------------------------------------------------------------------------------


def with_label_noise(data: Dataset, fraction: float, classes: int = 10, seed: int = 0) -> Dataset:
    """Give ``fraction`` of the training rows a wrong label, uniformly among the other classes."""
    rows = _chosen_rows(len(data.y_train), fraction, seed)
    rng = np.random.default_rng(seed + 1)
    y = data.y_train.copy()
    y[rows, 0] = (y[rows, 0] + rng.integers(1, classes, size=len(rows))) % classes
    return replace(data, y_train=y, name=f"{data.name}, {fraction:.0%} labels wrong")


def label_noise_config(base: TrainConfig, fraction: float) -> TrainConfig:
    """The run the label-noise panel trains: ``base`` with ``fraction`` of its training labels wrong."""
    return tagged(
        replace(base, data=with_label_noise(base.data, fraction, seed=base.seed)), f"{fraction:.0%} labels wrong"
    )


def noise_floor(fraction: float, classes: int = 10) -> float:
    """The lowest mean cross-entropy a model can reach on the noisy labels without memorizing them.

    A model that knows the true class should give it probability ``1 - fraction`` and each other
    class ``fraction / (classes - 1)``; its loss is then the entropy of that distribution (in nats).
    """
    if fraction <= 0:
        return 0.0
    return float(-(1 - fraction) * np.log(1 - fraction) - fraction * np.log(fraction / (classes - 1)))


def sample_noise_floor(noisy: Dataset, clean: Dataset) -> float:
    """The floor of *this* training set's wrong labels: the lowest mean cross-entropy a model can reach
    when it knows each image's true class and nothing about which image carries which wrong label.

    That model gives each true class the mix of labels its images actually carry, and its loss is the
    conditional entropy of the given labels given the true ones. ``noise_floor`` assumes the wrong
    labels are spread perfectly evenly; in a finite sample they are not quite, and this floor lies a
    little lower (0.02 to 0.04 for the 1440 digits).
    """
    given = np.asarray(noisy.y_train[:, 0], dtype=int)
    true = np.asarray(clean.y_train[:, 0], dtype=int)
    entropy = 0.0
    for c in np.unique(true):
        labels = given[true == c]
        shares = np.bincount(labels) / len(labels)
        shares = shares[shares > 0]
        entropy += len(labels) / len(true) * float(-(shares * np.log(shares)).sum())
    return entropy


def floor_crossing(history: History, floor: float) -> int | None:
    """The first epoch whose training loss is below ``floor`` (``None`` when it never is)."""
    below = np.flatnonzero(history.loss < floor)
    return int(below[0]) + 1 if below.size else None


def memorization_ratio(history: History, clean: Dataset) -> float:
    """How much the trained model has memorized the wrong labels of its training images.

    For each mislabelled training image (true class c, wrong label j) compare the probability the model
    gives j on that image with the mean probability it gives j on the other mislabelled images of class
    c whose label is not j. The wrong label was drawn at random, whatever the image looks like, so a
    model that learned only the images gives both the same on average: a ratio of 1. Above 1, it has
    started to remember which image carries which wrong label. Returns mean(own) / mean(others).
    """
    given = np.asarray(history.config.data.y_train[:, 0], dtype=int)
    true = np.asarray(clean.y_train[:, 0], dtype=int)
    probabilities = history.predict(history.config.data.x_train)
    wrong = given != true
    if not wrong.any():
        raise ValueError("No training label differs from the clean one: there is nothing to memorize.")
    own, others = [], []
    for i in np.flatnonzero(wrong):
        c, j = true[i], given[i]
        rest = wrong & (true == c) & (given != j)
        if rest.any():
            own.append(probabilities[i, j])
            others.append(probabilities[rest, j].mean())
    return float(np.mean(own) / np.mean(others))


# Missing values ------------------------------------------------------------------------------------


def with_one_nan(data: Dataset, row: int = 0, column: int = 0) -> Dataset:
    """The training inputs with exactly one NaN, at (``row``, ``column``)."""
    x = data.x_train.copy()
    x[row, column] = np.nan
    return replace(data, x_train=x, name=f"{data.name} with one NaN")


def imputed(data: Dataset, strategy: str = "median") -> Dataset:
    """Fill NaN with a SimpleImputer fitted on the training rows only, applied to both splits (fitting
    on validation rows too would leak them into training)."""
    imputer = SimpleImputer(strategy=strategy).fit(data.x_train)
    x_val = None if data.x_val is None else imputer.transform(data.x_val)
    return replace(data, x_train=imputer.transform(data.x_train), x_val=x_val, name=f"{data.name}, imputed")


def dropped_rows(data: Dataset, batch_size: int | None = None) -> Dataset:
    """Drop every training row with a NaN. With ``batch_size``, also trim to a multiple of it, as the
    engine would drop the last partial batch anyway (this changes the shapes: one new trace)."""
    keep = ~np.isnan(data.x_train).any(axis=1)
    x, y = data.x_train[keep], data.y_train[keep]
    if batch_size:
        usable = len(x) // batch_size * batch_size
        x, y = x[:usable], y[:usable]
    return replace(data, x_train=x, y_train=y, name=f"{data.name}, {int((~keep).sum())} rows dropped")


def nan_report(x: np.ndarray, columns: list[str] | None = None) -> pd.Series:
    """NaN count per column, as ``pd.DataFrame(x).isna().sum()``, keeping only columns that have any."""
    counts = pd.DataFrame(x, columns=columns).isna().sum()
    return counts[counts > 0]


def nan_autopsy(history: History) -> dict[str, Any]:
    """What a run that saw NaN inputs ended with: NaN rows in the first weight matrix, NaN weights
    anywhere, and whether the model predicts one constant for the (clean) validation inputs."""
    weights = history.final_weights or []
    first_kernel = next((w for w in weights if w.ndim == 2), None)
    nan_rows = [] if first_kernel is None else [int(i) for i in np.flatnonzero(np.isnan(first_kernel).any(axis=1))]
    x = (
        history.config.data.x_val
        if history.config.data.x_val is not None
        else np.nan_to_num(history.config.data.x_train)
    )
    # model.predict, as a student would call it: a graph, like fit's (see keras_fit on why that matters).
    predictions = history.trained_model().predict(x, verbose=0)
    return {
        "final loss": history.final_loss,
        "diverged at epoch": history.diverged_at,
        "first-layer rows with NaN": nan_rows,
        "NaN weights": int(sum(np.isnan(w).sum() for w in weights)),
        "weights": int(sum(w.size for w in weights)),
        "prediction spread": float(np.std(predictions)),
        "NaN predictions": int(np.isnan(predictions).sum()),
    }


MISSING_HANDLING = ("let NaN through", "impute (median)", "drop rows")


def missing_config(base: TrainConfig, fraction: float, handling: str = "let NaN through") -> TrainConfig:
    """The run the missing-values panel trains."""
    data = with_missing(base.data, fraction, seed=base.seed)
    missing = int(np.isnan(data.x_train).sum())
    tag = f"{missing} NaN, {handling}"
    if handling == "let NaN through":
        return tagged(replace(base, data=data, check_inputs=False), tag)
    if handling == "impute (median)":
        return tagged(replace(base, data=imputed(data)), tag)
    if handling == "drop rows":
        return tagged(replace(base, data=dropped_rows(data, base.batch_size)), tag)
    raise ValueError(f"Unknown handling {handling!r}; choose one of {', '.join(MISSING_HANDLING)}.")


# Panels --------------------------------------------------------------------------------------------


def _slider(description: str, value: float, low: float, high: float, step: float, fmt: str = ".2f") -> w.FloatSlider:
    return w.FloatSlider(
        value=value,
        min=low,
        max=high,
        step=step,
        description=description,
        readout_format=fmt,
        continuous_update=False,
        style={"description_width": "initial"},
        layout=w.Layout(width="420px"),
    )


def outlier_panel(
    base: TrainConfig,
    fraction: float = 0.02,
    size: float = 30.0,
    where: str = "targets",
    fix: str = "none",
    **options: Any,
) -> TrainingPanel:
    """Sliders for the share and size of outliers, a choice of where they go and of the fix; the
    score board shows the MSE on the clean held-out rows."""
    board = ScoreBoard(lambda h: {"clean held-out MSE": clean_mse(h, h.config.data)})
    controls = {
        "fraction": _slider("share of rows", fraction, 0.0, 0.2, 0.005, ".3f"),
        "size": _slider("size (standard deviations)", size, 1.0, 100.0, 1.0, ".0f"),
        "where": w.ToggleButtons(options=["targets", "inputs"], value=where, description="outliers in"),
        "fix": w.Dropdown(options=list(OUTLIER_FIXES), value=fix, description="fix"),
    }
    return TrainingPanel(
        base, controls, make_config=lambda b, v: outlier_config(b, **v), train_fn=board.wrap(), views=[board], **options
    )


def imbalance_panel(
    base: TrainConfig,
    pool: pd.DataFrame,
    held_out: pd.DataFrame,
    minority_share: float = 0.05,
    weighted: bool = False,
    **options: Any,
) -> TrainingPanel:
    """A slider for the minority class's share of the training set and a class-weights toggle; the
    score board shows accuracy next to balanced accuracy and minority recall."""
    board = ScoreBoard(
        lambda h: {**binary_scores(h, h.config.data), "always-majority accuracy": majority_baseline(h.config.data)}
    )
    controls = {
        "minority_share": _slider("minority share", minority_share, 0.01, 0.5, 0.01),
        "weighted": w.ToggleButtons(options=[("no class weights", False), ("class weights", True)], value=weighted),
    }
    return TrainingPanel(
        base,
        controls,
        make_config=lambda b, v: imbalance_config(b, pool, held_out, **v),
        train_fn=board.wrap(),
        views=[board],
        **options,
    )


def label_noise_panel(base: TrainConfig, fraction: float = 0.3, **options: Any) -> TrainingPanel:
    """A slider for the share of wrong training labels; validation is on clean labels."""
    board = ScoreBoard(
        lambda h: {"final training loss": h.final_loss, "clean held-out accuracy": float(h.val_accuracy[-1])}
    )
    controls = {"fraction": _slider("share of wrong labels", fraction, 0.0, 0.8, 0.05)}
    return TrainingPanel(
        base,
        controls,
        make_config=lambda b, v: label_noise_config(b, **v),
        train_fn=board.wrap(),
        views=[board],
        show_validation=True,
        **options,
    )


def missing_panel(
    base: TrainConfig, fraction: float = 0.0001, handling: str = "let NaN through", **options: Any
) -> TrainingPanel:
    """A slider for the share of missing input cells and a choice of how to handle them."""

    def score(history: History) -> dict[str, float]:
        autopsy = nan_autopsy(history)
        return {
            "clean held-out MSE": clean_mse(history, history.config.data),
            "prediction spread": autopsy["prediction spread"],
            "NaN weights": autopsy["NaN weights"],
        }

    board = ScoreBoard(score)
    controls = {
        "fraction": _slider("share of missing cells", fraction, 0.0, 0.2, 0.0001, ".4f"),
        "handling": w.Dropdown(options=list(MISSING_HANDLING), value=handling, description="handling"),
    }
    return TrainingPanel(
        base, controls, make_config=lambda b, v: missing_config(b, **v), train_fn=board.wrap(), views=[board], **options
    )


# Judging an exercise's fixes (ex05_data_problems) ---------------------------------------------------
# Each retrains the student's fix from scratch with fixed seeds and scores it on the original clean
# held-out rows, never on numbers the student computed or on held-out rows the fix returned.

EXERCISE_SEEDS = (0, 1, 2)


def _fixed_config(fix, config: TrainConfig, what: str) -> TrainConfig:
    fixed = fix(config)
    if not isinstance(fixed, TrainConfig):
        raise TypeError(
            f"{what} must return a TrainConfig (for example dataclasses.replace(config, ...)); "
            f"it returned {type(fixed).__name__}."
        )
    if fixed.epochs > 60:
        raise ValueError(f"{what} asks for {fixed.epochs} epochs; keep it to 60 at most (the fix is not more epochs).")
    return replace(fixed, seed=config.seed)  # the grader's seed, whatever the fix set


def outlier_fix_mse(fix, seeds=EXERCISE_SEEDS, fraction: float = 0.02, size: float = 30.0) -> np.ndarray:
    """Clean held-out MSE per seed after ``fix(config) -> TrainConfig`` is applied to lesson 05's run
    with ``fraction`` of its training targets ``size`` standard deviations off (the corruption is
    seeded like the run). A run that diverged scores ``inf``."""
    from adamclinic.data import smooth_regression
    from adamclinic.models import small_relu_net

    clean = smooth_regression()
    scores = []
    for seed in seeds:
        broken = outlier_config(TrainConfig(clean, small_relu_net, epochs=30, seed=seed), fraction, size)
        history = run(_fixed_config(fix, replace(broken, note=""), "fix_outliers"))
        scores.append(math.inf if history.diverged else clean_mse(history, clean))
    return np.asarray(scores, dtype=float)


def imbalance_fix_scores(fix, seeds=EXERCISE_SEEDS, minority_share: float = 0.05) -> dict[str, np.ndarray]:
    """Balanced accuracy and minority recall per seed on the (original) held-out rows after
    ``fix(config) -> TrainConfig`` is applied to lesson 05's imbalanced run at ``minority_share``."""
    from adamclinic.data import overlapping_classes
    from adamclinic.models import binary_relu_net

    pool, held_out = overlapping_classes()
    found: dict[str, list[float]] = {"balanced accuracy": [], "minority recall": []}
    for seed in seeds:
        data = imbalanced(pool, held_out, minority_share, seed=seed)
        config = TrainConfig(data, binary_relu_net, loss="binary_crossentropy", epochs=30, seed=seed)
        history = run(_fixed_config(fix, config, "fix_imbalance"))
        if history.diverged:
            scores = {name: 0.0 for name in found}
        else:
            scores = binary_scores(history, data)
        for name in found:
            found[name].append(scores[name])
    return {name: np.asarray(values, dtype=float) for name, values in found.items()}


def cleaning_problems(clean, data: Dataset) -> list[str]:
    """What is wrong with ``clean(data) -> Dataset`` on ``data`` (NaN in its training inputs only):
    an empty list when the result has finite training inputs, rows that still match their targets
    (the same rows, or a subset of the complete ones), untouched held-out rows, and filled cells whose
    values lie within the range of the column's observed training values."""
    result = clean(
        replace(
            data,
            x_train=data.x_train.copy(),
            y_train=data.y_train.copy(),
            x_val=None if data.x_val is None else data.x_val.copy(),
            y_val=None if data.y_val is None else data.y_val.copy(),
        )
    )  # a copy: edits in place show
    if not isinstance(result, Dataset):
        return [f"it returned {type(result).__name__}, not a Dataset (use dataclasses.replace(data, ...))"]
    problems = []
    x, y = result.x_train, result.y_train
    if not np.all(np.isfinite(x)):
        problems.append(f"{int((~np.isfinite(x)).sum())} training input(s) are still NaN or infinite")
    if len(x) == 0:
        problems.append("no training rows are left")
    if data.x_val is not None and (
        result.x_val is None
        or not np.array_equal(result.x_val, data.x_val)
        or not np.array_equal(result.y_val, data.y_val)
    ):
        problems.append("the held-out rows changed: they had no NaN, leave them as they are")
    holes = np.isnan(data.x_train)
    if len(x) == len(data.x_train):
        if not np.array_equal(y, data.y_train):
            problems.append("the training targets changed, or no longer line up with their rows")
        elif not np.array_equal(x[~holes], data.x_train[~holes]):
            problems.append("values that were not missing changed")
        else:
            low, high = np.nanmin(data.x_train, axis=0), np.nanmax(data.x_train, axis=0)
            rows, columns = np.nonzero(holes)
            filled = x[rows, columns]
            if not np.all((filled >= low[columns] - 1e-6) & (filled <= high[columns] + 1e-6)):
                problems.append(
                    "a filled value lies outside the range of its column's training values: "
                    "fill with a statistic of the training rows (median, mean)"
                )
    else:
        complete = ~holes.any(axis=1)
        known = {row.tobytes() for row in np.hstack([data.x_train[complete], data.y_train[complete]])}
        kept = np.hstack([x, y]) if len(x) else np.zeros((0, x.shape[1] + y.shape[1]), dtype="float32")
        if not all(row.tobytes() in known for row in kept):
            problems.append("some training rows are not complete rows of the data, or no longer match their targets")
    return problems


def imputation_leak_probe() -> Dataset:
    """A small table whose held-out rows lie far from its training rows, to catch a fill fitted on them.

    40 training rows (column 0 from 1 to 3, column 1 from 5 to 8) with four NaN cells, and 64 held-out
    rows that are all 100. A median or mean of the training rows lies inside the training range; one
    computed with the held-out rows too (which outnumber them) does not, nor does a constant like 0.
    """
    x = np.column_stack([np.linspace(1.0, 3.0, 40), np.linspace(5.0, 8.0, 40)])
    x[3, 0] = x[10, 1] = x[20, 0] = x[20, 1] = np.nan
    return Dataset(x, np.arange(40.0), np.full((64, 2), 100.0), np.zeros(64), name="leak probe")


def cleaned_run_mse(clean, seeds=EXERCISE_SEEDS, fraction: float = 0.05) -> np.ndarray:
    """Clean held-out MSE per seed of lesson 05's regression run trained on ``clean(data)``, where
    ``data`` has ``fraction`` of its training input cells missing (seeded). ``inf`` for a run that
    diverged, could not train or returned no Dataset."""
    from adamclinic.data import smooth_regression
    from adamclinic.models import small_relu_net

    original = smooth_regression()
    scores = []
    for seed in seeds:
        result = clean(with_missing(original, fraction, seed=seed))
        if not isinstance(result, Dataset) or len(result.x_train) < 32 or not np.all(np.isfinite(result.x_train)):
            scores.append(math.inf)
            continue
        history = run(TrainConfig(result, small_relu_net, epochs=30, seed=seed))
        scores.append(math.inf if history.diverged else clean_mse(history, original))
    return np.asarray(scores, dtype=float)


# The figure that opens the lesson -----------------------------------------------------------------

NOISE_LEVELS = (0.0, 0.2, 0.4, 0.6)

FIGURE = {
    "title": "Wrong labels put a floor under the loss (seed 0)",
    "y_label": "training loss (cross-entropy)",
    "log_y": False,
}


def figure_curves() -> dict[str, np.ndarray]:
    """Section 3's runs: the training loss per epoch of the digits network with 0, 20, 40 and 60% of its
    training labels wrong (seed 0, 30 epochs), the configs the lesson and its claim tests train."""
    from adamclinic.data import digits
    from adamclinic.models import digits_relu_net

    base = TrainConfig(digits(), digits_relu_net, loss="sparse_categorical_crossentropy", epochs=30, seed=0)
    curves = {}
    for p in NOISE_LEVELS:
        label = "clean labels" if p == 0 else f"{p:.0%} wrong, floor {noise_floor(p):.2f}"
        curves[label] = run(label_noise_config(base, p)).loss
    return curves
