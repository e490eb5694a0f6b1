"""Lesson 09b's tools: the checks to run before blaming the optimizer, and minima that generalize worse.

The lesson has two parts. The first, the sanity checks (a fresh classifier's loss is about ln K; a net
that cannot overfit one small batch has a bug; a gradient check against finite differences), lives in
``adamclinic.clinic.checks``, because the clinic runs them as its first step; the lesson teaches them
from there. This module holds the second part: Wilson et al. (2017), "The marginal value of adaptive
gradient methods in machine learning", report that Adam often reaches a training loss as low as (or
lower than) SGD with momentum and still scores worse on new data, and that a tuned schedule or
decoupled weight decay (AdamW, Loshchilov and Hutter) closes part of the gap. Whether that shows on a
data set as small as the course's is a measurement, not a given, and the functions here make it:

- ``digits_split(train_rows)``: the course's digits cut three ways. The first ``train_rows`` training
  digits train, the 357 validation digits tune the learning rate, and training digits 1024-1439 (never
  trained on) are the held-out test set the tuned settings are reported on;
- ``OptimizerSetting``: one optimizer family (Adam, SGD with momentum 0.9, AdamW, and Adam or AdamW with
  a cosine decay to zero) at one learning rate (and weight decay), turned into a fresh Keras optimizer;
- ``plain_keras_run``: one seeded ``model.compile`` + ``model.fit`` with that optimizer, the code a
  student writes. Plain Keras, not the engine: the engine's SGD has no momentum (its ``TrainConfig``
  has no momentum field), and a comparison with SGD without momentum would not be Wilson's;
- ``compare_optimizers``: every setting over every seed, one row per run (a pandas DataFrame);
- ``tuned_settings`` picks, per family, the setting with the best mean validation accuracy, and
  ``summarize`` gives means and spreads over seeds, so a tuned row can be read on the test split.

What it found on 256 digits with a 256x2 net (100 epochs, seeds 0-9; ``tests/test_lesson09b_...`` has the
figures): no accuracy gap. Every tuned optimizer scores the same on the validation and test digits within
the spread over seeds, and a tuned SGD with momentum ends *lower* in training loss than a tuned Adam. What
does show is that the held-out cross-entropy follows how far the training loss went, whichever optimizer
took it there, and that decoupled weight decay or a schedule keeps it down, moving the mean accuracy by about
a point at most.

Lesson 06 (``overfitting_or_optimizer``) is about overfitting as such: validation turning up while
training falls. This part asks something else: at the same (near-zero) training loss, does the
optimizer that got there change how well the minimum does on new data?
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import bqplot as bq
import ipywidgets as w
import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from IPython.display import display

from adamclinic.clinic import run_checks
from adamclinic.clinic.checks import OVERFIT_FRACTION
from adamclinic.data import digits, smooth_regression
from adamclinic.engine import EpochMetrics, call_seeded, seed_everything
from adamclinic.models import digits_relu_net, mlp, small_relu_net
from adamclinic.panels import BackgroundRuns, LossPlot, fit_axis, log_slider, ys

FAMILIES = ("Adam", "SGD + momentum", "AdamW", "Adam + cosine decay", "AdamW + cosine decay")
MOMENTUM = 0.9  # Wilson et al.'s "heavy ball" SGD, and the Keras value most projects use
TEST_ROWS = slice(1024, 1440)  # training digits never used for training when train_rows <= 1024
CHANCE_LOSS = math.log(10.0)  # cross-entropy of guessing 1/10 for each digit: about 2.303


@dataclass(frozen=True, eq=False)
class HeldOutSplit:
    """Training rows, validation rows (to tune on) and test rows (to report on), as float32 arrays.

    ``loss`` is the Keras loss the labels need; ``name`` says which rows these are.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    loss: str = "sparse_categorical_crossentropy"
    name: str = "data"


def digits_split(train_rows: int = 256) -> HeldOutSplit:
    """The first ``train_rows`` training digits to train on, the course's 357 validation digits to tune on,
    and training digits 1024-1439 (416 rows) as a test set that neither training nor tuning sees.

    ``train_rows`` must lie between 32 and 1024, so the test rows are never trained on.
    """
    if not 32 <= train_rows <= TEST_ROWS.start:
        raise ValueError(
            f"train_rows must lie between 32 and {TEST_ROWS.start} (the test set starts at training digit "
            f"{TEST_ROWS.start}); got {train_rows}."
        )
    full = digits()
    return HeldOutSplit(
        x_train=full.x_train[:train_rows],
        y_train=full.y_train[:train_rows, 0],
        x_val=full.x_val,
        y_val=full.y_val[:, 0],
        x_test=full.x_train[TEST_ROWS],
        y_test=full.y_train[TEST_ROWS, 0],
        name=f"{train_rows} digits",
    )


def wide_digits_net(width: int = 256) -> Callable[[], keras.Model]:
    """A builder for 64 → width → width → 10 (ReLU, softmax): over-parameterized for a few hundred digits,
    the regime in which Wilson et al. saw adaptive methods generalize worse."""

    def build() -> keras.Model:
        return mlp(f"digits_{width}x2", 64, (width, width), "relu", outputs=10, output_activation="softmax")

    build.__name__ = build.__qualname__ = f"{width}x2 net"
    return build


@dataclass(frozen=True)
class OptimizerSetting:
    """One optimizer family at one learning rate (the peak, for a schedule) and one weight decay.

    ``weight_decay`` is AdamW's decoupled decay (Keras subtracts ``lr * weight_decay * w`` from every
    weight each step, biases included), so it needs an AdamW family.
    """

    family: str
    learning_rate: float
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"Unknown optimizer family {self.family!r}; choose one of: {', '.join(FAMILIES)}.")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"The learning rate must be a positive number; got {self.learning_rate!r}.")
        if self.weight_decay < 0 or (self.weight_decay and not self.family.startswith("AdamW")):
            raise ValueError("weight_decay must be 0 or positive, and needs an AdamW family (decoupled decay).")

    def label(self) -> str:
        """``AdamW, lr=0.001, wd=0.1``: the words a table or a legend shows."""
        text = f"{self.family}, lr={self.learning_rate:g}"
        return text + (f", wd={self.weight_decay:g}" if self.family.startswith("AdamW") else "")

    def make_optimizer(self, total_steps: int) -> keras.optimizers.Optimizer:
        """A fresh Keras optimizer for a run of ``total_steps`` steps (a schedule decays to 0 over them)."""
        rate: float | keras.optimizers.schedules.LearningRateSchedule = self.learning_rate
        if self.family.endswith("cosine decay"):
            rate = keras.optimizers.schedules.CosineDecay(self.learning_rate, decay_steps=total_steps)
        if self.family == "SGD + momentum":
            return keras.optimizers.SGD(learning_rate=rate, momentum=MOMENTUM)
        if self.family.startswith("AdamW"):
            return keras.optimizers.AdamW(learning_rate=rate, weight_decay=self.weight_decay)
        return keras.optimizers.Adam(learning_rate=rate)


@dataclass(frozen=True)
class RunResult:
    """One seeded run: the curves ``fit`` reported and what the final weights score on each split.

    ``train_loss`` per epoch is Keras's running mean over the epoch's batches; ``final_train_loss`` is
    the loss of the final weights on all training rows, the number to compare between optimizers.
    ``cpu_seconds`` is the process CPU time the run took (all threads), compile and evaluation included.
    """

    setting: OptimizerSetting
    seed: int
    train_loss: np.ndarray
    val_loss: np.ndarray
    val_accuracy: np.ndarray
    final_train_loss: float
    final_train_accuracy: float
    test_loss: float
    test_accuracy: float
    cpu_seconds: float

    def row(self) -> dict[str, Any]:
        """One row of ``compare_optimizers``'s table."""
        best = int(np.nanargmin(self.val_loss)) if np.isfinite(self.val_loss).any() else len(self.val_loss) - 1
        return {
            "optimizer": self.setting.family,
            "learning rate": self.setting.learning_rate,
            "weight decay": self.setting.weight_decay,
            "seed": self.seed,
            "final train loss": self.final_train_loss,
            "final train accuracy": self.final_train_accuracy,
            "best val loss": float(self.val_loss[best]),
            "best val epoch": best + 1,
            "final val loss": float(self.val_loss[-1]),
            "best val accuracy": float(np.nanmax(self.val_accuracy)),
            "final val accuracy": float(self.val_accuracy[-1]),
            "test loss": self.test_loss,
            "test accuracy": self.test_accuracy,
            "cpu seconds": self.cpu_seconds,
        }


def plain_keras_run(
    split: HeldOutSplit,
    build_model: Callable[[], keras.Model],
    setting: OptimizerSetting,
    seed: int = 0,
    epochs: int = 100,
    batch_size: int = 32,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> RunResult:
    """Train ``build_model()`` on ``split``'s training rows with ``setting``, as a student writes it:
    ``seed_everything``, ``model.compile``, ``model.fit`` with the validation rows, then ``model.evaluate``
    on the training and test rows. Same arguments, same numbers (``callbacks`` only read fit's logs)."""
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1; got {epochs}.")
    if not 1 <= batch_size <= len(split.x_train):
        raise ValueError(f"batch_size must be between 1 and the {len(split.x_train)} training rows; got {batch_size}.")
    start = time.process_time()
    seed_everything(seed)
    model = build_model()
    steps_per_epoch = math.ceil(len(split.x_train) / batch_size)
    total_steps = epochs * steps_per_epoch
    # One compiled call per epoch instead of one per batch: fit's per-call overhead dwarfs the arithmetic of a
    # small net, and this changes no number (the same steps, in the same order).
    model.compile(
        optimizer=setting.make_optimizer(total_steps),
        loss=split.loss,
        metrics=["accuracy"],
        steps_per_execution=steps_per_epoch,
    )
    fitted = model.fit(
        split.x_train,
        split.y_train,
        epochs=epochs,
        batch_size=batch_size,
        validation_data=(split.x_val, split.y_val),
        verbose=0,
        callbacks=list(callbacks),
    )
    train = model.evaluate(split.x_train, split.y_train, batch_size=1024, verbose=0, return_dict=True)
    test = model.evaluate(split.x_test, split.y_test, batch_size=1024, verbose=0, return_dict=True)
    return RunResult(
        setting=setting,
        seed=int(seed),
        train_loss=np.asarray(fitted.history["loss"], dtype=float),
        val_loss=np.asarray(fitted.history["val_loss"], dtype=float),
        val_accuracy=np.asarray(fitted.history["val_accuracy"], dtype=float),
        final_train_loss=float(train["loss"]),
        final_train_accuracy=float(train["accuracy"]),
        test_loss=float(test["loss"]),
        test_accuracy=float(test["accuracy"]),
        cpu_seconds=time.process_time() - start,
    )


def setting_grid(
    adam_rates: Sequence[float] = (3e-4, 1e-3, 3e-3, 1e-2),
    sgd_rates: Sequence[float] = (0.01, 0.03, 0.1, 0.3),
    weight_decays: Sequence[float] = (0.1, 1.0),
    families: Iterable[str] = FAMILIES,
) -> list[OptimizerSetting]:
    """The small grid tuned on validation: each Adam family at ``adam_rates`` (AdamW also at each weight
    decay), SGD with momentum at ``sgd_rates``."""
    settings = []
    for family in families:
        if family == "SGD + momentum":
            settings += [OptimizerSetting(family, rate) for rate in sgd_rates]
        elif family.startswith("AdamW"):
            settings += [OptimizerSetting(family, rate, decay) for rate in adam_rates for decay in weight_decays]
        else:
            settings += [OptimizerSetting(family, rate) for rate in adam_rates]
    return settings


def compare_optimizers(
    split: HeldOutSplit,
    build_model: Callable[[], keras.Model],
    settings: Iterable[OptimizerSetting],
    seeds: Iterable[int] = range(10),
    epochs: int = 100,
    batch_size: int = 32,
) -> pd.DataFrame:
    """Every setting on every seed through ``plain_keras_run``: one row per run (see ``RunResult.row``)."""
    rows = [
        plain_keras_run(split, build_model, setting, seed, epochs, batch_size).row()
        for setting in settings
        for seed in seeds
    ]
    return pd.DataFrame(rows)


SETTING_COLUMNS = ["optimizer", "learning rate", "weight decay"]


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per setting, the mean, standard deviation, minimum and maximum over seeds of every measured column."""
    measured = [c for c in table.columns if c not in SETTING_COLUMNS + ["seed"]]
    return table.groupby(SETTING_COLUMNS, sort=False)[measured].agg(["mean", "std", "min", "max"])


def tuned_settings(table: pd.DataFrame, by: str = "final val accuracy") -> pd.DataFrame:
    """Per optimizer family, the rows (every seed) of the setting with the best mean ``by`` over seeds.

    ``by`` is a validation column: the test columns are never looked at to choose. A column named
    ``... loss`` is minimized, any other maximized; ties go to the mean final validation loss.
    """
    if by not in table.columns or "test" in by:
        raise ValueError(f"Tune on a validation column of the table, such as 'final val accuracy'; got {by!r}.")
    sign = 1.0 if by.endswith("loss") else -1.0
    columns = list(dict.fromkeys([by, "final val loss"]))  # once, when tuning on the loss itself
    means = table.groupby(SETTING_COLUMNS, sort=False)[columns].mean().reset_index()
    means["rank"] = sign * means[by]
    best = means.sort_values(["rank", "final val loss"]).groupby("optimizer", sort=False).head(1)
    keys = best[SETTING_COLUMNS].apply(tuple, axis=1)
    chosen = table[table[SETTING_COLUMNS].apply(tuple, axis=1).isin(set(keys))]
    order = {family: i for i, family in enumerate(FAMILIES)}
    return chosen.sort_values(["optimizer", "seed"], key=lambda c: c.map(order) if c.name == "optimizer" else c)


# =====================================================================================================
# The live demos of lesson 09b (added with the notebook): the checks on a menu of models, and the
# optimizers compared on digits. Each panel wraps a pure function that the tests call directly:
# ``checks_for(case, seed) -> CaseChecks`` and ``optimizer_run(setting, seed, epochs) -> RunResult``.
# =====================================================================================================

SHUFFLE_SEED = 123  # the permutation that pairs each digit with another digit's label
OVERFIT_STEPS, OVERFIT_BATCH, OVERFIT_LEARNING_RATE = 300, 32, 3e-3  # run_checks' defaults
PANEL_EPOCHS = 50  # a 100-epoch run takes 12-15 s of wall time on 2 shared cores; 50 show the same turn
TUNED_RATES = {"Adam": 1e-3, "SGD + momentum": 0.1, "AdamW": 1e-3, "Adam + cosine decay": 1e-3}
PANEL_WEIGHT_DECAY = 1.0  # AdamW's decay in the panel: the strongest of the grid, tested in test_lesson09_claims


def digits_net_with_logits() -> keras.Model:
    """The digits net with its softmax left out: its outputs are logits, not probabilities."""
    return mlp("digits_logits", 64, (64,), "relu", outputs=10)


def digits_net_cut_by_stop_gradient() -> keras.Model:
    """64 → 64 (ReLU) → ``tf.stop_gradient`` → 10 (softmax): the hidden layer never gets a gradient."""
    inputs = keras.Input((64,))
    hidden = keras.layers.Dense(64, activation="relu", name="cut_off")(inputs)
    stopped = keras.layers.Lambda(tf.stop_gradient, name="stop_gradient")(hidden)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(stopped), name="digits_stop_gradient")


@tf.custom_gradient
def _square_with_sign_bug(error):
    # The forward value is right; the hand-written gradient has its sign flipped (the true one is 2·error).
    return tf.square(error), lambda upstream: -2.0 * error * upstream


def mse_with_sign_bug(y_true, y_pred):
    """Mean squared error with a hand-written gradient whose sign is wrong: right value, gradient uphill."""
    return tf.reduce_mean(_square_with_sign_bug(y_true - y_pred), axis=-1)


@dataclass(frozen=True)
class CheckCase:
    """One model of the checks menu: how to build it, the data it trains on, its loss, and the bug planted
    (``None`` for a healthy one)."""

    build_model: Callable[[], keras.Model]
    data: str  # "digits" (1440 training digits) or "regression" (lesson 01's smooth regression)
    loss: Any
    bug: str | None = None
    shuffled_labels: bool = False

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The training inputs and targets the checks read (labels shuffled for that case)."""
        data = digits() if self.data == "digits" else smooth_regression()
        y = data.y_train
        if self.shuffled_labels:
            y = np.random.default_rng(SHUFFLE_SEED).permutation(y)
        return data.x_train, y


def _healthy_digits_net() -> keras.Model:
    return digits_relu_net()


def _lesson01_regression_net() -> keras.Model:
    return small_relu_net()


SCE = "sparse_categorical_crossentropy"
CHECK_CASES: dict[str, CheckCase] = {
    "healthy digits net": CheckCase(_healthy_digits_net, "digits", SCE),
    "logits into a probability loss": CheckCase(
        digits_net_with_logits, "digits", SCE, bug="no softmax on the output, loss without from_logits=True"
    ),
    "tf.stop_gradient before the output": CheckCase(
        digits_net_cut_by_stop_gradient, "digits", SCE, bug="a tf.stop_gradient cuts the hidden layer off"
    ),
    "labels shuffled against the images": CheckCase(
        _healthy_digits_net, "digits", SCE, bug="each image has another image's label", shuffled_labels=True
    ),
    "custom loss with a wrong gradient": CheckCase(
        _lesson01_regression_net,
        "regression",
        mse_with_sign_bug,
        bug="a hand-written MSE gradient with its sign flipped",
    ),
}


def check_case(name: str, seed: int = 0) -> tuple[keras.Model, np.ndarray, np.ndarray, Any]:
    """The fresh model of menu entry ``name`` (built under ``seed``), its inputs, targets and loss."""
    if name not in CHECK_CASES:
        raise ValueError(f"Unknown model {name!r}; choose one of: {', '.join(CHECK_CASES)}.")
    case = CHECK_CASES[name]
    seed_everything(seed)
    model = case.build_model()
    x, y = case.arrays()
    return model, x, y, case.loss


def know_nothing_batch_loss(name: str, seed: int = 0, batch_size: int = OVERFIT_BATCH) -> float:
    """What the overfit check measures a batch against: ln K for a classifier, the loss of predicting the
    batch's mean (its variance) for the regression."""
    case = CHECK_CASES[name]
    if case.data == "digits":
        return CHANCE_LOSS
    x, y = case.arrays()
    rows = np.sort(np.random.default_rng(seed).choice(len(x), size=min(batch_size, len(x)), replace=False))
    return float(np.var(np.asarray(y, dtype="float64")[rows]))


@dataclass(frozen=True)
class CaseChecks:
    """``run_checks`` on one menu entry, and the overfit check's loss curve over
    ``reference_loss``, the know-nothing loss of the batch: below ``OVERFIT_FRACTION`` counts as learned."""

    case: str
    report: Any  # adamclinic.clinic.ChecksReport
    curve: np.ndarray
    reference_loss: float

    def result(self, title: str) -> Any:
        """The result of the check named ``title`` ("initial loss", "overfit one batch", ...)."""
        return next(result for result in self.report.results if result.title == title)


def checks_for(name: str, seed: int = 0, on_step: Callable[[int, float], None] | None = None) -> CaseChecks:
    """Menu entry ``name``'s fresh model through ``run_checks`` (one call), the overfit check calling
    ``on_step(step, loss ÷ know-nothing loss)`` every 10 steps while it trains (the panel's live chart)."""
    model, x, y, loss = check_case(name, seed)
    reference = know_nothing_batch_loss(name, seed)

    def every_tenth_step(step: int, batch_loss: float) -> None:
        if on_step is not None and (step % 10 == 0 or step == OVERFIT_STEPS):
            on_step(step, batch_loss / reference)

    report = run_checks(model, x, y, loss, seed=seed, on_overfit_step=every_tenth_step)
    overfit = next(result for result in report.results if result.title == "overfit one batch")
    return CaseChecks(name, report, np.asarray(overfit.loss_curve, dtype=float) / reference, reference)


# A panel around any function (the clinic's checks, a plain model.fit), with TrainingPanel's background runs.


class LivePanel(BackgroundRuns):
    """Controls, a live chart and a status line (the last HTML widget) around ``_run(values, cancel)``.

    ``show_panel(panel)`` displays it and runs once at the defaults in the calling thread; a control moved
    later runs in one background thread, and a newer move cancels a stale run where it can.
    """

    def __init__(self, controls: dict[str, Any], chart: Any):
        self.controls = controls
        self.status = w.HTML(value="Ready.")
        self.clear_button = w.Button(description="Clear runs", icon="trash", layout=w.Layout(width="120px"))
        self.clear_button.on_click(lambda _: self.clear())
        self._start_background_runs()
        self._quiet = False
        self.results: list[Any] = []
        for control in controls.values():
            control.observe(self._on_change, names="value")
        self.widget = w.VBox([w.HBox([w.VBox(list(controls.values())), self.clear_button]), chart, self.status])

    def values(self) -> dict[str, Any]:
        return {name: control.value for name, control in self.controls.items()}

    def clear(self) -> None:
        raise NotImplementedError

    def _run(self, values: dict[str, Any], cancel: Any) -> Any:
        raise NotImplementedError

    def train_now(self, values: dict[str, Any] | None = None, cancel: Any = None) -> Any:
        """Run once in this thread at ``values`` (the controls' values by default), drawing as it goes."""
        result = self._run(values or self.values(), cancel)
        self.results.append(result)
        return result

    def _on_change(self, change: dict) -> None:
        if not self._quiet:
            self.request(self.values())

    def _ipython_display_(self) -> None:
        display(self.widget)


def _report_html(checks: CaseChecks) -> str:
    lines = []
    for result in checks.report.results:
        mark = "pass" if result.passed else "<span style='color:#D55E00'>FAIL</span>"
        lines.append(f"[{mark}] <b>{html.escape(result.title)}</b>: {html.escape(result.message)}")
    closing = str(checks.report).splitlines()[-1]
    return f"<b>{html.escape(checks.case)}</b><br>" + "<br>".join(lines) + f"<br><i>{html.escape(closing)}</i>"


class ChecksPanel(LivePanel):
    """A menu of models; each pick runs the three checks in one call (``checks_for``), drawing the overfit
    check's batch loss (over its know-nothing loss) while it trains, beside the 5% line that counts as learned."""

    def __init__(self, case: str = "healthy digits net", seed: int = 0):
        self.seed = seed
        menu = w.Dropdown(
            options=list(CHECK_CASES),
            value=case,
            description="model",
            style={"description_width": "initial"},
            layout=w.Layout(width="420px"),
        )
        self.plot = LossPlot(
            OVERFIT_STEPS,
            keep=5,
            title="Overfit one batch: 32 rows, 300 Adam steps",
            y_label="batch loss ÷ know-nothing loss",
        )
        self.plot.figure.axes[0].label = "step"
        self.threshold = bq.Lines(
            x=[0, OVERFIT_STEPS],
            y=[OVERFIT_FRACTION, OVERFIT_FRACTION],
            scales={"x": self.plot.x_scale, "y": self.plot.y_scale},
            colors=["#000000"],
            labels=[f"learned: below {OVERFIT_FRACTION:.0%} of the know-nothing loss"],
            line_style="dashed",
            stroke_width=1.5,
        )
        super().__init__({"case": menu}, self.plot.widget)
        self._draw_threshold()

    def _draw_threshold(self) -> None:
        if self.threshold not in self.plot.figure.marks:
            self.plot.figure.marks = [*self.plot.figure.marks, self.threshold]
        self.plot.legend.follow()
        fit_axis(self.plot.y_scale, self.plot.y_axis, ys(self.plot.figure.marks))

    def clear(self) -> None:
        self.plot.clear()
        self._draw_threshold()

    def _run(self, values: dict[str, Any], cancel: Any) -> CaseChecks:
        name = values["case"]
        line = self.plot.new_line(name)
        self._draw_threshold()
        self.status.value = f"Checking <b>{name}</b> …"

        def on_step(step: int, ratio: float) -> None:
            self.plot.extend(line, EpochMetrics(step, ratio, None, OVERFIT_LEARNING_RATE, math.nan, 0.0))
            self.status.value = (
                f"Checking <b>{name}</b>: overfit step {step}/{OVERFIT_STEPS}, batch loss ÷ know-nothing {ratio:.3g}"
            )

        checks = checks_for(name, self.seed, on_step=on_step)
        self.status.value = _report_html(checks)
        return checks


def checks_panel(case: str = "healthy digits net", seed: int = 0) -> ChecksPanel:
    """Lesson 09b, section 3: pick a model, watch the overfit check train, read every check's verdict."""
    return ChecksPanel(case, seed)


# The optimizers, live ---------------------------------------------------------------------------------------


def optimizer_run(
    setting: OptimizerSetting,
    seed: int = 0,
    epochs: int = PANEL_EPOCHS,
    split: HeldOutSplit | None = None,
    build_model: Callable[[], keras.Model] | None = None,
    batch_size: int = 32,
    on_epoch: Callable[[int, float, float, float], None] | None = None,
    cancel: Any = None,
) -> RunResult:
    """``plain_keras_run`` on 256 digits with the 256x2 net (by default), calling ``on_epoch(epoch, loss,
    val_loss, val_accuracy)`` after each epoch while it trains, and stopping early once ``cancel`` is set.

    Same arguments, same numbers as ``plain_keras_run``: a callback reads the logs and changes no step."""
    split = split or digits_split(256)
    build_model = build_model or wide_digits_net(256)

    class Watch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs or {}
            if on_epoch is not None:
                on_epoch(epoch + 1, float(logs["loss"]), float(logs["val_loss"]), float(logs["val_accuracy"]))
            if cancel is not None and cancel.is_set():
                self.model.stop_training = True

    return plain_keras_run(split, build_model, setting, seed, epochs, batch_size, callbacks=[Watch()])


PANEL_FAMILIES = ("Adam", "SGD + momentum", "AdamW", "Adam + cosine decay")


def panel_setting(family: str, learning_rate: float) -> OptimizerSetting:
    """The optimizer panel's setting: AdamW always with weight decay ``PANEL_WEIGHT_DECAY``."""
    return OptimizerSetting(family, float(learning_rate), PANEL_WEIGHT_DECAY if family == "AdamW" else 0.0)


def describe_optimizer_run(result: RunResult, epochs: int) -> str:
    """The status line after a run (plain text): how far training went, where validation bottomed out."""
    label = result.setting.label()
    done = len(result.train_loss)
    if done < epochs:
        return f"{label}: stopped at epoch {done} because the settings changed"
    if not np.isfinite(result.train_loss).all():
        return f"{label}: the loss became NaN or infinite"
    best = int(np.nanargmin(result.val_loss))
    return (
        f"{label}: finished {done} epochs; training loss {result.train_loss[0]:.3g} → "
        f"{result.final_train_loss:.2g}; validation loss best {result.val_loss[best]:.3g} at epoch {best + 1}, "
        f"last {result.val_loss[-1]:.3g}; validation accuracy {result.val_accuracy[-1]:.3f}"
    )


class OptimizerPanel(LivePanel):
    """An optimizer menu and a learning-rate slider: training (solid) and validation (dashed) cross-entropy on
    256 digits, redrawn every epoch. Picking an optimizer moves the slider to its tuned rate (one run)."""

    def __init__(self, family: str = "Adam", learning_rate: float | None = None, epochs: int = PANEL_EPOCHS):
        self.epochs = epochs
        menu = w.Dropdown(
            options=list(PANEL_FAMILIES),
            value=family,
            description="optimizer",
            style={"description_width": "initial"},
            layout=w.Layout(width="420px"),
        )
        rate = TUNED_RATES[family] if learning_rate is None else learning_rate
        slider = log_slider("learning_rate", rate, 1e-4, 1.0, description="learning rate")
        self.plot = LossPlot(
            epochs,
            keep=4,
            title="256 digits: training (solid) and validation (dashed) loss",
            show_validation=True,
        )
        self.plot.set_loss(SCE)
        super().__init__({"family": menu, "learning_rate": slider}, self.plot.widget)
        menu.observe(self._family_changed, names="value")

    def _family_changed(self, change: dict) -> None:
        # Move the slider to the new optimizer's tuned rate without a second run (the menu's own observer runs).
        self._quiet = True
        try:
            self.controls["learning_rate"].value = TUNED_RATES[change["new"]]
        finally:
            self._quiet = False
        self.request(self.values())

    def _on_change(self, change: dict) -> None:
        if change["owner"] is self.controls["family"]:
            return  # _family_changed requests the run once the slider has moved
        super()._on_change(change)

    def clear(self) -> None:
        self.plot.clear()

    def _run(self, values: dict[str, Any], cancel: Any) -> RunResult:
        setting = panel_setting(values["family"], values["learning_rate"])
        line = self.plot.new_line(setting.label())
        self.status.value = f"Training <b>{html.escape(setting.label())}</b> …"

        def on_epoch(epoch: int, loss: float, val_loss: float, val_accuracy: float) -> None:
            self.plot.extend(line, EpochMetrics(epoch, loss, val_loss, setting.learning_rate, math.nan, 0.0))
            self.status.value = (
                f"<b>{html.escape(setting.label())}</b>: epoch {epoch}/{self.epochs}, loss {loss:.3g}, "
                f"validation loss {val_loss:.3g}"
            )

        result = optimizer_run(setting, epochs=self.epochs, on_epoch=on_epoch, cancel=cancel)
        self.status.value = html.escape(describe_optimizer_run(result, self.epochs))
        return result


def optimizer_panel(
    family: str = "Adam", learning_rate: float | None = None, epochs: int = PANEL_EPOCHS
) -> OptimizerPanel:
    """Lesson 09b, section 4: Adam, SGD with momentum, AdamW and a cosine schedule on 256 digits, live."""
    return OptimizerPanel(family, learning_rate, epochs)


# The lesson's figure (python -m adamclinic.figures 09b_checks_and_generalization) ------------------------------

FIGURE = {
    "title": "Tuned Adam and SGD + momentum on 256 digits (seed 0)",
    "y_label": "cross-entropy",
    "log_y": True,
}


def figure_curves() -> dict[str, np.ndarray]:
    """Tuned Adam (lr 1e-3) and SGD with momentum 0.9 (lr 0.1), 100 epochs, seed 0: training and validation
    cross-entropy per epoch. Both end at the same validation accuracy (0.840); each validation loss bottoms out
    early and climbs while its training loss keeps falling."""
    split, build = digits_split(256), wide_digits_net(256)
    curves = {}
    for name, setting in (
        ("Adam", OptimizerSetting("Adam", 1e-3)),
        ("SGD + momentum", OptimizerSetting("SGD + momentum", 0.1)),
    ):
        result = plain_keras_run(split, build, setting, seed=0, epochs=100)
        curves[f"{name}, training"] = result.train_loss
        curves[f"{name}, validation"] = result.val_loss
    return curves


# =====================================================================================================
# Judging an exercise's repairs (ex09_batch_float16_checks, part C)
# The student's overfit-one-batch check is called on patients drawn here, healthy and broken, with
# weights and rows drawn under seeds the student never sees; whether each can learn a batch is known
# by construction (and the clinic's own check_overfits_one_batch agrees: tests/test_assignment_ex09_*).
# =====================================================================================================

OVERFIT_PATIENT_ROWS = 256  # the rows handed to the check (it picks its own batch among them)


def sigmoid_output_net() -> keras.Model:
    """Exercise 09's patient: lesson 01's net with a sigmoid output, on targets that spread over ±2.

    A sigmoid cannot go below 0 or above 1, so no training makes it fit most of the targets."""
    return mlp("sigmoid_output_net", 10, (32, 32), "relu", output_activation="sigmoid")


def _relu_output_net() -> keras.Model:
    return mlp("relu_output_net", 10, (32, 32), "relu", output_activation="relu")


def _digits_net() -> keras.Model:
    return mlp("digits_relu_net", 64, (64,), "relu", outputs=10, output_activation="softmax")


def _twice_softmax_net() -> keras.Model:
    """The digits net with a ``Softmax`` layer after its softmax output: the probabilities it can give lie
    between about 0.09 and 0.23, so its loss cannot fall below ln(e + 9) - 1 = 1.46."""
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
            keras.layers.Softmax(),
        ],
        name="twice_softmax_net",
    )


def _regression_net() -> keras.Model:
    return mlp("small_relu_net", 10, (32, 32), "relu")


# name: (can it learn one batch?, builder, data set, loss)
OVERFIT_PATIENTS: dict[str, tuple[bool, Callable[[], keras.Model], str, Any]] = {
    "digits classifier": (True, _digits_net, "digits", "sparse_categorical_crossentropy"),
    "regression net": (True, _regression_net, "regression", "mean_squared_error"),
    "sigmoid output on targets below 0 and above 1": (False, sigmoid_output_net, "regression", "mean_squared_error"),
    "relu output on targets below 0": (False, _relu_output_net, "regression", "mean_squared_error"),
    "a second softmax after the output": (False, _twice_softmax_net, "digits", "sparse_categorical_crossentropy"),
}


def overfit_patient(name: str, seed: int) -> tuple[keras.Model, np.ndarray, np.ndarray, Any]:
    """``(model, x, y, loss)``: the patient ``name`` with its weights drawn under ``seed``, and
    ``OVERFIT_PATIENT_ROWS`` of its data set's training rows drawn with ``seed``."""
    _, build, dataset, loss = OVERFIT_PATIENTS[name]
    data = digits() if dataset == "digits" else smooth_regression()
    rows = np.sort(np.random.default_rng(seed).choice(len(data.x_train), size=OVERFIT_PATIENT_ROWS, replace=False))
    seed_everything(seed)
    return build(), data.x_train[rows].copy(), data.y_train[rows].copy(), loss


def overfit_check_verdicts(overfits_one_batch: Callable, seeds: Sequence[int] = (0,)) -> pd.DataFrame:
    """Call the student's ``overfits_one_batch(model, x, y, loss) -> bool`` on every patient of
    ``OVERFIT_PATIENTS`` at every seed (after ``seed_everything(seed)``, so the verdicts are the same at
    every call); one row each with the ``expected`` and the ``answer`` (``None`` when it is not a bool:
    the ``problem`` column says what came back)."""
    run_helper = getattr(type(overfits_one_batch), "run_helper", None)
    rows = []
    for seed in seeds:
        for name, (expected, *_) in OVERFIT_PATIENTS.items():
            model, x, y, loss = overfit_patient(name, seed)
            if run_helper is not None:  # the grader's handle to the student's function: it runs in their kernel
                answer = run_helper(overfits_one_batch, call_seeded, seed, model, x, y, loss)
            else:
                answer = call_seeded(overfits_one_batch, seed, model, x, y, loss)
            plain = bool(answer) if isinstance(answer, (bool, np.bool_)) else None
            problem = "" if plain is not None else f"returned {answer!r}, not True or False"
            rows.append({"patient": name, "seed": seed, "expected": expected, "answer": plain, "problem": problem})
    return pd.DataFrame(rows)
