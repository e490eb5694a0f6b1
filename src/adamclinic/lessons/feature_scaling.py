"""Lesson 03's feature scaling: unit changes, scikit-learn scalers fitted with and without the leak,
the measurements at initialization that show what Adam's per-weight rescaling cannot fix, and the panels.

Why a module of its own: every transform here returns a ``Dataset`` for the engine, so a panel, the
lesson and the claims tests train on exactly the same arrays. The scaler is always fitted in one place
(``fit_scaler``), which makes the only difference between the leaky and the leak-free procedures the
rows the scaler is allowed to see.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache
from typing import Any

import ipywidgets as w
import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

from adamclinic.data import load_csv, parcels
from adamclinic.engine import Dataset, TrainConfig, run, seed_everything
from adamclinic.models import parcel_relu_net
from adamclinic.panels import TrainingPanel

FEATURES = ("wall_m", "length_m", "mass_g", "value_usd", "distance_m")
DISTANCE = FEATURES.index("distance_m")
SCALERS = ("none", "StandardScaler", "MinMaxScaler", "RobustScaler")
# A learning rate at which each optimizer trains the standardized parcels well (SGD needs a larger one).
GOOD_RATE = {"adam": 1e-3, "sgd": 1e-2}


def make_scaler(name: str):
    """A fresh scikit-learn scaler by name; ``"none"`` gives ``None`` (the raw numbers go in)."""
    makers = {"StandardScaler": StandardScaler, "MinMaxScaler": MinMaxScaler, "RobustScaler": RobustScaler}
    if name == "none":
        return None
    if name not in makers:
        raise ValueError(f"Unknown scaler {name!r}; choose one of: {', '.join(SCALERS)}.")
    return makers[name]()


def change_unit(data: Dataset, column: int, k: float) -> Dataset:
    """Multiply one input column by 10**k in every split: the same quantity in another unit (km → m is k=3)."""

    def scaled(x):
        if x is None:
            return None
        x = np.array(x, dtype="float64")
        x[:, column] *= 10.0**k
        return x

    return replace(
        data, x_train=scaled(data.x_train), x_val=scaled(data.x_val), name=f"{data.name}, column {column} x 1e{k:g}"
    )


def fit_scaler(data: Dataset, scaler: str, on: str = "train") -> tuple[Dataset, Callable[[np.ndarray], np.ndarray]]:
    """Fit ``scaler`` on the training rows (``on="train"``) or on training and validation rows together
    (``on="everything"``, the leak), transform both splits, and return the new Dataset with the fitted
    transform (to apply to any later rows, as a deployed model would)."""
    fitted = make_scaler(scaler)
    if fitted is None:
        return data, lambda x: np.asarray(x, dtype="float32")
    if on == "train":
        fitted.fit(np.asarray(data.x_train, dtype="float64"))
    elif on == "everything":
        if data.x_val is None:
            raise ValueError("There are no validation rows to leak; 'everything' is the training rows.")
        fitted.fit(np.concatenate([data.x_train, data.x_val]).astype("float64"))
    else:
        raise ValueError(f"on must be 'train' or 'everything'; got {on!r}.")
    transform = lambda x: fitted.transform(np.asarray(x, dtype="float64")).astype("float32")  # noqa: E731
    scaled = replace(
        data,
        x_train=transform(data.x_train),
        x_val=None if data.x_val is None else transform(data.x_val),
        name=f"{data.name}, {scaler} fitted on {on}",
    )
    return scaled, transform


def fit_scaler_on_train(data: Dataset, scaler: str = "StandardScaler") -> Dataset:
    """The leak-free way: the scaler learns its statistics from the training rows only, as a scikit-learn
    ``Pipeline`` does inside ``fit``, and applies them unchanged to the validation rows."""
    return fit_scaler(data, scaler, on="train")[0]


def fit_scaler_on_everything(data: Dataset, scaler: str = "StandardScaler") -> Dataset:
    """The leak, for comparison: ``scaler.fit_transform(X)`` on all rows before splitting."""
    return fit_scaler(data, scaler, on="everything")[0]


@lru_cache(maxsize=64)
def scaled_parcels(k: int = 0, scaler: str = "none") -> Dataset:
    """The panel's data: the parcels with ``distance_m`` in another unit (×10**k), then ``scaler`` fitted
    on the training rows. Cached, so moving a slider back costs no preprocessing."""
    return fit_scaler_on_train(change_unit(parcels(), DISTANCE, k), scaler)


@lru_cache(maxsize=64)
def spread_parcels(k: float = 0, column: int = DISTANCE) -> Dataset:
    """The controlled experiment: every column standardized, then one column multiplied by 10**k.

    Only one thing differs between two values of ``k``: the size of one feature.
    """
    return change_unit(fit_scaler_on_train(parcels(), "StandardScaler"), column, k)


def scaled_config(base: TrainConfig, k: int = 0, scaler: str = "none") -> TrainConfig:
    """``base`` on the parcels with ``distance_m`` in units of 10**k metres and ``scaler`` fitted on the training rows."""
    return replace(base, data=scaled_parcels(k, scaler), note=f"{scaler}, distance ×1e{k}")


def scaler_panel(base: TrainConfig, k: int = 0, scaler: str = "none", **panel_options: Any) -> TrainingPanel:
    """Section 2's panel: the unit of ``distance_m`` (10**k metres) and the scaler fitted on the training rows."""
    controls = {
        "k": w.IntSlider(
            value=k,
            min=-6,
            max=3,
            description="distance unit: 10^k ×",
            continuous_update=False,
            style={"description_width": "initial"},
            layout=w.Layout(width="420px"),
        ),
        "scaler": w.ToggleButtons(options=list(SCALERS), value=scaler, description="scaler"),
    }

    def make_config(base: TrainConfig, values: dict[str, Any]) -> TrainConfig:
        return scaled_config(base, int(values["k"]), values["scaler"])

    return TrainingPanel(base, controls, make_config=make_config, show_validation=True, **panel_options)


def spread_config(
    base: TrainConfig, k: float, optimizer: str = "adam", build_model: Callable[[], keras.Model] | None = None
) -> TrainConfig:
    """``base`` on the standardized parcels with ``distance_m`` multiplied by 10**k, trained by
    ``optimizer`` at its ``GOOD_RATE`` (and by another network, if ``build_model`` is given)."""
    return replace(
        base,
        data=spread_parcels(k),
        optimizer=optimizer,
        learning_rate=GOOD_RATE[optimizer],
        build_model=build_model or base.build_model,
        note=f"distance_m ×1e{k}",
    )


def spread_panel(base: TrainConfig, k: int = 0, optimizer: str = "adam", **panel_options: Any) -> TrainingPanel:
    """Section 3's panel: the size of one standardized feature (10**k) and the optimizer (Adam or SGD)."""
    controls = {
        "k": w.IntSlider(
            value=k,
            min=-4,
            max=5,
            description="distance_m × 10^k",
            continuous_update=False,
            style={"description_width": "initial"},
            layout=w.Layout(width="420px"),
        ),
        "optimizer": w.ToggleButtons(options=["adam", "sgd"], value=optimizer, description="optimizer"),
    }

    def make_config(base: TrainConfig, values: dict[str, Any]) -> TrainConfig:
        return spread_config(base, int(values["k"]), values["optimizer"])

    return TrainingPanel(base, controls, make_config=make_config, **panel_options)


# What the network sees at initialization ----------------------------------------------------------


def _fresh_model(build_model: Callable[[], keras.Model], seed: int) -> keras.Model:
    seed_everything(seed)
    return build_model()


def first_layer_at_init(
    build_model: Callable[[], keras.Model], data: Dataset, column: int = DISTANCE, seed: int = 0
) -> dict[str, float]:
    """What the first layer's pre-activations ``z = x W + b`` look like before any training.

    Glorot initialization sizes ``W`` for inputs of size about 1, so ``z`` has a spread of about 1 when
    the inputs do. Returns the typical size of ``z`` (its standard deviation), the share of its variance
    that comes from ``column`` (the features are independent here, so the shares add up), and the
    fraction of (row, unit) pairs with ``|z| > 2``, where tanh's slope has fallen below 0.08 (saturated).
    """
    model = _fresh_model(build_model, seed)
    kernel, bias = model.layers[0].get_weights()
    x = np.asarray(data.x_train, dtype="float64")
    z = x @ kernel + bias
    contributions = x.var(axis=0)[:, None] * kernel.astype("float64") ** 2
    return {
        "pre-activation std": float(z.std()),
        "share from the column": float(contributions[column].sum() / contributions.sum()),
        "saturated fraction": float(np.mean(np.abs(z) > 2.0)),
    }


def _first_batch_gradients(model: keras.Model, data: Dataset, batch_size: int) -> tuple[list, np.ndarray]:
    # The mean-squared-error gradient on the first ``batch_size`` training rows, and those rows.
    xb = np.asarray(data.x_train[:batch_size], dtype="float32")
    yb = np.asarray(data.y_train[:batch_size], dtype="float32")
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.mean_squared_error(yb, model(xb, training=True)))
    return tape.gradient(loss, model.trainable_variables), xb


def first_layer_gradient(
    build_model: Callable[[], keras.Model], data: Dataset, seed: int = 0, batch_size: int = 32
) -> np.ndarray:
    """The first layer's kernel gradient at initialization (one row per input column, one column per
    unit), on the batch that ``first_step_output_change`` steps with.

    Adam adds its ε (1e-7) to each weight's own running gradient size, so these per-weight values, not a
    layer's norm, say whether Adam can rescale a gradient: far above ε it can; near or below ε it cannot,
    and a gradient of exactly 0 (behind a saturated tanh unit) gives a step of exactly 0.
    """
    grads, _ = _first_batch_gradients(_fresh_model(build_model, seed), data, batch_size)
    return np.asarray(grads[0])


def first_step_output_change(
    build_model: Callable[[], keras.Model],
    data: Dataset,
    optimizer: str = "adam",
    learning_rate: float | None = None,
    seed: int = 0,
    batch_size: int = 32,
) -> float:
    """How far one optimizer step from initialization moves the network's outputs (median |Δf| over a batch).

    Adam moves each weight by at most about the learning rate (every gradient here is far above its ε),
    so a first-layer weight attached to an input of size ``|x|`` changes the output by about ``lr * |x|``:
    per-weight rescaling fixes the step in weight space, not in function space. SGD's weight step itself
    grows with ``|x|``, so its output change grows like ``|x|**2``.
    """
    learning_rate = GOOD_RATE[optimizer] if learning_rate is None else learning_rate
    model = _fresh_model(build_model, seed)
    grads, xb = _first_batch_gradients(model, data, batch_size)
    before = np.asarray(model(xb))
    maker = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}[optimizer]
    maker(learning_rate=learning_rate).apply(grads, model.trainable_variables)
    return float(np.median(np.abs(np.asarray(model(xb)) - before)))


def first_layer_table(build_model: Callable[[], keras.Model], ks=(0, 2, 4), seed: int = 0) -> pd.DataFrame:
    """``first_layer_at_init`` and ``first_step_output_change`` (Adam and SGD) for each size 10**k of distance_m."""
    rows = []
    for k in ks:
        data = spread_parcels(k)
        rows.append(
            {
                "k": k,
                **first_layer_at_init(build_model, data, seed=seed),
                "one Adam step moves outputs by": first_step_output_change(build_model, data, "adam", seed=seed),
                "one SGD step moves outputs by": first_step_output_change(build_model, data, "sgd", seed=seed),
            }
        )
    return pd.DataFrame(rows).set_index("k")


# The leak, measured ------------------------------------------------------------------------------

LEAK_SETTINGS = {
    # name: (training rows, test rows, epochs, batch size)
    "same distribution, small data": (64, 32, 150, 16),
    "shifted test period": (256, 128, 60, 32),
}


def leak_splits(setting: str, split: int) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """One random train/test split of the parcels for ``setting``, and a truly held-out set.

    ``"same distribution, small data"``: 64 training and 32 test rows drawn from the first 1280; the
    held-out rows are the last 256, which nothing ever fits on. ``"shifted test period"``: the training
    rows are 256 parcels that travelled under 500 km, the test rows 128 that travelled 500 km or more,
    and the held-out rows 256 other long-distance parcels (a market that moved on after training).
    """
    frame = load_csv("parcels")
    x = frame[list(FEATURES)].to_numpy("float64")
    y = frame["cost"].to_numpy("float64")
    rng = np.random.default_rng(100 + split)
    if setting == "same distribution, small data":
        rows = rng.permutation(1280)[:96]
        train, test, held = rows[:64], rows[64:], np.arange(1280, 1536)
    elif setting == "shifted test period":
        near = np.flatnonzero(x[:, DISTANCE] < 5e5)
        far = rng.permutation(np.flatnonzero(x[:, DISTANCE] >= 5e5))
        train, test, held = rng.choice(near, 256, replace=False), far[:128], far[128:384]
    else:
        raise ValueError(f"Unknown setting {setting!r}; choose one of: {', '.join(LEAK_SETTINGS)}.")
    data = Dataset(x[train], y[train], x[test], y[test], name=f"parcels, {setting}, split {split}")
    return data, x[held], y[held]


def leak_experiment(setting: str, scaler: str = "StandardScaler", splits: int = 10) -> pd.DataFrame:
    """Train each split twice, with the scaler fitted on everything (the leak) and on the training rows
    only, and score each model on its own test rows (what you would report) and on the held-out rows.

    One row per split and procedure. Each split's two runs share the network's initial seed, so the
    rows the scaler saw are the only difference between them.
    """
    train_rows, _, epochs, batch_size = LEAK_SETTINGS[setting]
    records = []
    for split in range(splits):
        data, x_held, y_held = leak_splits(setting, split)
        for procedure, on in (("fit on everything (leak)", "everything"), ("fit on training rows", "train")):
            scaled, transform = fit_scaler(data, scaler, on=on)
            history = run(
                TrainConfig(
                    scaled, parcel_relu_net, learning_rate=1e-3, epochs=epochs, batch_size=batch_size, seed=split
                )
            )
            held_pred = history.predict(transform(x_held)).ravel()
            records.append(
                {
                    "split": split,
                    "procedure": procedure,
                    "reported test MSE": history.val_loss[-1],
                    "held-out MSE": float(np.mean((held_pred - y_held) ** 2)),
                }
            )
    return pd.DataFrame(records)


def leak_effect(table: pd.DataFrame, column: str = "reported test MSE") -> pd.Series:
    """Per split: the leaky procedure's score minus the leak-free one's (negative: the leak looks better)."""
    wide = table.pivot(index="split", columns="procedure", values=column)
    return wide["fit on everything (leak)"] - wide["fit on training rows"]


def leak_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean scores per procedure over the splits, and the difference between the two procedures."""
    means = table.groupby("procedure")[["reported test MSE", "held-out MSE"]].mean()
    means.loc["leak minus leak-free"] = means.loc["fit on everything (leak)"] - means.loc["fit on training rows"]
    return means.round(4)


# Judging a student's preparation (exercise 03) ------------------------------------------------------


def parcel_frames(train_rows: int = 1024, test_rows: int = 256) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The parcels as two tables (training rows first, then test rows), columns ``FEATURES`` and ``cost``,
    in the same rows as ``parcels()``."""
    frame = load_csv("parcels")
    return (
        frame.iloc[:train_rows].reset_index(drop=True),
        frame.iloc[train_rows : train_rows + test_rows].reset_index(drop=True),
    )


def shifted_frames(
    split: int = 0, train_rows: int = 256, test_rows: int = 128
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Tables for catching a scaler that sees test rows: training rows that travelled under 500 km, and two
    test sets of the same size, one of other short trips and one of trips of 500 km or more (a shifted
    distribution). A leak-free preparation gives the same training inputs with either test set."""
    frame = load_csv("parcels").iloc[:1280]
    rng = np.random.default_rng(300 + split)
    near = rng.permutation(np.flatnonzero(frame["distance_m"].to_numpy() < 5e5))
    far = rng.permutation(np.flatnonzero(frame["distance_m"].to_numpy() >= 5e5))
    pick = lambda rows: frame.iloc[rows].reset_index(drop=True)  # noqa: E731
    return pick(near[:train_rows]), pick(near[train_rows : train_rows + test_rows]), pick(far[:test_rows])


def _inputs(data: Any, split: str) -> np.ndarray:
    return np.asarray(getattr(data, f"x_{split}"), dtype="float64")


def train_inputs_change_with_test_rows(
    prepare: Callable[[pd.DataFrame, pd.DataFrame], Dataset], train_frame: pd.DataFrame, *test_frames: pd.DataFrame
) -> float:
    """The largest change in the prepared training inputs when only the test rows change (0 when the
    scaler learns from the training rows alone; a scaler fitted on training and test rows moves them)."""
    prepared = [_inputs(prepare(train_frame.copy(), test.copy()), "train") for test in test_frames]
    return float(max(np.max(np.abs(x - prepared[0])) for x in prepared[1:]))


def copied_rows_mismatch(
    prepare: Callable[[pd.DataFrame, pd.DataFrame], Dataset], train_frame: pd.DataFrame, rows: int = 40
) -> float:
    """Give ``prepare`` test rows that are copies of the first ``rows`` training rows: the largest difference
    between a copy's prepared inputs and its original's (0 when both splits go through one fitted scaler;
    a second scaler fitted on the test rows maps them elsewhere)."""
    data = prepare(train_frame.copy(), train_frame.iloc[:rows].reset_index(drop=True))
    return float(np.max(np.abs(_inputs(data, "val") - _inputs(data, "train")[:rows])))


def unit_change_effect(
    prepare: Callable[[pd.DataFrame, pd.DataFrame], Dataset],
    train_frame: pd.DataFrame,
    test_frame: pd.DataFrame,
    column: str = "distance_m",
    factor: float = 1000.0,
) -> float:
    """The largest change in the prepared inputs (both splits) when ``column`` is given in another unit in
    both tables (metres to millimetres). A scaler fitted on the training rows divides the unit out (0);
    raw inputs, or statistics fixed in advance or learned from other rows, do not."""

    def in_other_unit(frame):
        frame = frame.copy()
        frame[column] = frame[column] * factor
        return frame

    before = prepare(train_frame.copy(), test_frame.copy())
    after = prepare(in_other_unit(train_frame), in_other_unit(test_frame))
    return float(max(np.max(np.abs(_inputs(after, split) - _inputs(before, split))) for split in ("train", "val")))


def input_spreads(data: Any) -> np.ndarray:
    """The standard deviation of each prepared training column (about 1 for standardized inputs)."""
    return _inputs(data, "train").std(axis=0)


def prepared_val_losses(data: Any, seeds=(0, 1, 2), epochs: int = 30) -> np.ndarray:
    """Train ``parcel_relu_net`` with Adam at 1e-3 on a prepared Dataset, once per seed: the final validation
    losses (``inf`` for a run that diverged)."""
    data = Dataset(data.x_train, data.y_train, data.x_val, data.y_val, name="prepared parcels")
    losses = []
    for seed in seeds:
        history = run(TrainConfig(data, parcel_relu_net, learning_rate=1e-3, epochs=epochs, batch_size=32, seed=seed))
        losses.append(history.val_loss[-1] if not history.diverged else float("inf"))
    return np.nan_to_num(np.asarray(losses, dtype=float), nan=np.inf)


def scaler_final_losses(scaler: str, k: int = 0, seeds=(0, 1, 2), epochs: int = 30) -> np.ndarray:
    """Lesson 03's run (``parcel_relu_net``, Adam 1e-3, 30 epochs of 32 batches) on the parcels with
    ``distance_m`` in units of 10**k metres and ``scaler`` fitted on the training rows: final training
    losses per seed (``inf`` for a run that diverged)."""
    base = TrainConfig(parcels(), parcel_relu_net, learning_rate=1e-3, epochs=epochs, batch_size=32)
    losses = [run(replace(scaled_config(base, k, scaler), seed=seed)).final_loss for seed in seeds]
    return np.nan_to_num(np.asarray(losses, dtype=float), nan=np.inf)


def adam_output_step_growth(k: float = 2, seed: int = 0) -> float:
    """How many times farther one Adam step moves ``parcel_relu_net``'s outputs when the standardized
    ``distance_m`` is multiplied by 10**k (about 10**k: the output step is ``lr * |x|``)."""
    return first_step_output_change(parcel_relu_net, spread_parcels(k), "adam", seed=seed) / first_step_output_change(
        parcel_relu_net, spread_parcels(0), "adam", seed=seed
    )


# The lesson's opening figure (adamclinic.figures; make figures): the same net on raw and scaled parcels.

# The validation loss: raw units start near 1e8 in the first epoch's training loss, which with the scalers' 0.02
# spans more decades than a readable log axis labels; the validation loss tells the same story within seven.
FIGURE = {"title": "Parcels in raw units, and scaled (seed 0)", "y_label": "validation loss (MSE)"}
FIGURE_RUNS = {  # legend label: (distance_m in units of 10**k metres, scaler fitted on the training rows)
    "raw units": (0, "none"),
    "raw, distance in 100 km": (-5, "none"),
    "StandardScaler": (0, "StandardScaler"),
    "MinMaxScaler": (0, "MinMaxScaler"),
}


def figure_curves() -> dict[str, np.ndarray]:
    """The validation loss per epoch of section 2's runs (seed 0): raw units, one column in sensible units, two scalers."""
    base = TrainConfig(parcels(), parcel_relu_net, learning_rate=1e-3, epochs=30, batch_size=32, seed=0)
    return {
        label: np.asarray(run(scaled_config(base, k, scaler)).val_loss, dtype=float)
        for label, (k, scaler) in FIGURE_RUNS.items()
    }
