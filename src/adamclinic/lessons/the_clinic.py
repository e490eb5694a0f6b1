"""Lesson 08, the clinic: the diagnostic checklist, panels that diagnose every run they train, and the
six mystery patients with a menu of treatments.

Every panel wraps ``diagnosed_run(config) -> History`` (the engine's ``run`` followed by
``adamclinic.clinic.diagnose``); tests call ``treat`` and ``diagnose`` directly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import ipywidgets as w
import keras
import numpy as np
import pandas as pd

from adamclinic.clinic import CAUSES, HEALTHY, Report, diagnose
from adamclinic.clinic.patients import ZOO, Patient, digit_images
from adamclinic.data import balanced_class_weight
from adamclinic.engine import Dataset, History, TrainConfig, run
from adamclinic.panels import TrainingPanel, log_slider

CHECKLIST = pd.DataFrame(
    [
        (
            "1. the data, before training",
            "NaN or infinite inputs; each input column's size; the targets' size; the label mix",
            "NaN inputs; unscaled inputs; unscaled targets; an imbalanced label mix",
        ),
        (
            "2. the start",
            "the initial loss against the loss of a constant prediction (ln K for K balanced classes); "
            "each layer's gradient norm",
            "exploding gradients (huge loss, first layer's gradient far above the last); "
            "vanishing gradients (first layer's orders of magnitude below)",
        ),
        (
            "3. the first epochs",
            "does the loss jump up? how far do the weights move?",
            "learning rate too high "
            "(loss jumps, weights move many times their size); too low (weights move a few percent, loss creeps)",
        ),
        ("4. the spikes", "sudden jumps later in training, with β2 below β1²", "β2 too low"),
        (
            "5. the end",
            "a training loss stuck at the loss of guessing; one class predicted for every row",
            "labels not matching inputs or output layer (stuck at ln K); majority-class prediction",
        ),
        (
            "6. restarts and modes",
            "a jump where a new fit began; the loss in inference mode on training rows",
            "optimizer state lost on recompile; batch-norm statistics (train and inference disagree)",
        ),
        (
            "7. validation",
            "training loss falling while validation bottoms out and rises",
            "overfitting: Adam is fine, the objective is wrong",
        ),
    ],
    columns=["step", "look at", "what it tells you"],
).set_index("step")


def diagnosed_run(config: TrainConfig, **run_options: Any) -> tuple[History, Report]:
    """Train ``config`` on the engine and diagnose the run."""
    history = run(config, **run_options)
    return history, diagnose(history)


# Treatments --------------------------------------------------------------------------------------------


def _standardized_inputs(data: Dataset) -> Dataset:
    mean, sd = data.x_train.mean(axis=0), data.x_train.std(axis=0) + 1e-12
    return replace(
        data,
        x_train=(data.x_train - mean) / sd,
        x_val=None if data.x_val is None else (data.x_val - mean) / sd,
        name=data.name + ", standardized",
    )


def _standardized_targets(data: Dataset) -> Dataset:
    mean, sd = data.y_train.mean(), data.y_train.std()
    return replace(
        data,
        y_train=(data.y_train - mean) / sd,
        y_val=None if data.y_val is None else (data.y_val - mean) / sd,
        name=data.name + ", y standardized",
    )


@functools.cache
def relu_he_version(build_model: Callable[[], keras.Model]) -> Callable[[], keras.Model]:
    """The same layer widths and output, with ReLU hidden units and He initialisation."""
    template = build_model()
    dense = [layer for layer in template.layers if isinstance(layer, keras.layers.Dense)]
    inputs = int(template.input_shape[-1])
    widths = [layer.units for layer in dense[:-1]]
    output = dense[-1]

    def build() -> keras.Model:
        layers = [keras.Input((inputs,))]
        layers += [keras.layers.Dense(units, activation="relu", kernel_initializer="he_normal") for units in widths]
        layers.append(keras.layers.Dense(output.units, activation=output.activation))
        return keras.Sequential(layers, name=f"{template.name}_relu_he")

    build.__name__ = f"{template.name} as ReLU + He"
    return build


def _original_labels(data: Dataset) -> Dataset:
    from adamclinic.clinic.patients import two_classes

    # The misaligned patients are made from these tables (adamclinic.clinic.patients.misaligned keeps the name).
    sources = {"digits[:512], labels misaligned": digit_images, "overlapping_classes, labels misaligned": two_classes}
    if data.name not in sources:
        raise ValueError("These labels are not a misaligned patient's; there is nothing to re-pair.")
    return sources[data.name]()


TREATMENTS: dict[str, Callable[[TrainConfig], TrainConfig]] = {
    "no treatment": lambda c: c,
    "learning rate ÷ 10": lambda c: replace(c, learning_rate=c.learning_rate / 10),
    "learning rate × 10": lambda c: replace(c, learning_rate=c.learning_rate * 10),
    "standardize the inputs": lambda c: replace(c, data=_standardized_inputs(c.data)),
    "standardize the targets": lambda c: replace(c, data=_standardized_targets(c.data)),
    "ReLU + He initialisation": lambda c: replace(c, build_model=relu_he_version(c.build_model)),
    "β2 = 0.999": lambda c: replace(c, beta_2=0.999),
    "class weights": lambda c: replace(c, class_weight=balanced_class_weight(c.data)),
    "re-pair labels with their inputs": lambda c: replace(c, data=_original_labels(c.data)),
}


def treat(config: TrainConfig, treatment: str) -> TrainConfig:
    """``config`` with one treatment from ``TREATMENTS`` applied."""
    if treatment not in TREATMENTS:
        raise ValueError(f"Unknown treatment {treatment!r}; choose one of: {', '.join(TREATMENTS)}.")
    return TREATMENTS[treatment](config)


# The six patients of the lesson ----------------------------------------------------------------------

_ZOO = {p.name: p for p in ZOO}
LESSON_PATIENTS: dict[str, Patient] = {
    "A": _ZOO["regression, 8 sigmoid layers"],
    "B": _ZOO["parcels, raw units"],
    "C": _ZOO["regression, targets in dollars"],
    "D": _ZOO["digits, labels misaligned"],
    "E": _ZOO["two classes, 3% minority"],
    "F": _ZOO["regression, β2 0.3, batch 8"],
}
CURES = {
    "A": "ReLU + He initialisation",
    "B": "standardize the inputs",
    "C": "standardize the targets",
    "D": "re-pair labels with their inputs",
    "E": "class weights",
    "F": "β2 = 0.999",
}
STORIES = {
    "A": "a regression net, eight hidden layers deep: 'deeper must be better'.",
    "B": "parcel costs from size, weight and price, fed in as measured.",
    "C": "the regression targets, reported in dollars.",
    "D": "digits; the images and the labels were loaded from two files.",
    "E": "two overlapping classes; the second is rare in the training rows.",
    "F": "a regression with small batches and a tweaked optimizer.",
}


def mystery(letter: str, seed: int = 0) -> TrainConfig:
    """Patient ``letter``'s setup, as the panel trains it."""
    return replace(LESSON_PATIENTS[letter].make(), seed=seed, note=f"patient {letter}")


# Panels ------------------------------------------------------------------------------------------------


class DiagnosisBox:
    """An HTML box under a panel that shows the diagnosis of the last run."""

    def __init__(self, hidden: bool = False):
        self.widget = w.HTML(value="")
        self.reports: list[Report] = []
        self.hidden = hidden
        self.reveal = w.Checkbox(value=not hidden, description="show the clinic's diagnosis", indent=False)
        self.reveal.observe(lambda _: self._draw(), names="value")

    def train(self, config: TrainConfig, **run_options: Any) -> History:
        history, report = diagnosed_run(config, **run_options)
        self.reports.append(report)
        self._draw()
        return history

    def _draw(self) -> None:
        if not self.reports:
            return
        if not self.reveal.value:
            self.widget.value = "<i>Diagnosis hidden: make your own first, then tick the box.</i>"
            return
        self.widget.value = f"<b>Clinic:</b> {self.reports[-1]._repr_html_()}"


def _with_box(panel: TrainingPanel, box: DiagnosisBox) -> TrainingPanel:
    panel.widget = w.VBox([panel.widget, box.reveal, box.widget])
    panel.diagnosis = box
    return panel


def learning_rate_clinic_panel(base: TrainConfig, value: float = 1.0) -> TrainingPanel:
    """A learning-rate slider; the clinic diagnoses every run."""
    box = DiagnosisBox()
    slider = log_slider("learning_rate", value, 1e-6, 3.0, description="learning rate")
    return _with_box(TrainingPanel(base, {"learning_rate": slider}, train_fn=box.train, show_validation=True), box)


def patient_panel(letter: str, treatment: str = "no treatment") -> TrainingPanel:
    """A mystery patient: a treatment menu, the live curves, and the diagnosis behind a checkbox."""
    box = DiagnosisBox(hidden=True)
    menu = w.Dropdown(
        options=list(TREATMENTS), value=treatment, description="treatment", style={"description_width": "initial"}
    )

    def make_config(base: TrainConfig, values: dict[str, Any]) -> TrainConfig:
        return replace(treat(base, values["treatment"]), note=f"patient {letter}, {values['treatment']}")

    panel = TrainingPanel(
        mystery(letter),
        {"treatment": menu},
        make_config=make_config,
        train_fn=box.train,
        show_validation=True,
        title=f"Patient {letter}",
    )
    return _with_box(panel, box)


def cause_names() -> pd.Series:
    """The causes the clinic can name, by key."""
    return pd.Series({**CAUSES, HEALTHY: "no problem found"}, name="cause")


# Exercise 08: four new patients, and the helpers its hidden tests judge with ----------------------------

EXERCISE_PATIENTS: dict[str, Patient] = {
    "P1": _ZOO["digits, lr 0.3"],
    "P2": _ZOO["digits, tanh net, lr 3e-6"],
    "P3": _ZOO["regression, 1% missing inputs"],
    "P4": _ZOO["regression, 8 ReLU layers at N(0, 1)"],
}
EXERCISE_SEEDS = (0, 1)


def exercise_patient(name: str, seed: int = 0) -> TrainConfig:
    """Exercise patient ``name``'s setup (``"P1"`` .. ``"P4"``)."""
    return replace(EXERCISE_PATIENTS[name].make(), seed=seed, note=name)


def setup_changes(fixed: Any, original: TrainConfig, may_change: tuple[str, ...]) -> list[str]:
    """What ``fixed`` changed in ``original`` beyond the fields in ``may_change`` (an empty list: nothing)."""
    if not isinstance(fixed, TrainConfig):
        return [f"expected a training configuration (TrainConfig), got {type(fixed).__name__}"]
    watched = {
        "data": "the data",
        "build_model": "the network",
        "learning_rate": "the learning rate",
        "epochs": "the number of epochs",
        "batch_size": "the batch size",
        "loss": "the loss",
        "optimizer": "the optimizer",
        "beta_2": "β2",
    }
    return [
        f"{label} ({name})"
        for name, label in watched.items()
        if name not in may_change
        and getattr(fixed, name) is not getattr(original, name)
        and getattr(fixed, name) != getattr(original, name)
    ]


def judge_fix(config: TrainConfig, seeds=EXERCISE_SEEDS) -> dict[str, list]:
    """Retrain ``config`` on each seed and diagnose it: the clinic's verdicts, final and last validation losses."""
    verdicts, finals, vals = [], [], []
    for seed in seeds:
        history, report = diagnosed_run(replace(config, seed=int(seed)))
        verdicts.append(report.top)
        finals.append(float(history.final_loss) if not history.diverged else float("inf"))
        vals.append(float(history.val_loss[-1]) if not history.diverged else float("inf"))
    return {"verdicts": verdicts, "final_losses": finals, "val_losses": vals}


def cleaned_config(clean: Callable[[np.ndarray], np.ndarray], seed: int = 0) -> TrainConfig:
    """Patient P3 trained on ``clean(x_train)`` (validation rows as they are; they have no NaN).

    Raises ``ValueError`` with the reason when ``clean`` changes the number of rows or columns or leaves a NaN.
    """
    config = exercise_patient("P3", seed)
    x = np.asarray(config.data.x_train, dtype="float32").copy()
    cleaned = np.asarray(clean(x.copy()), dtype="float32")
    if cleaned.shape != x.shape:
        raise ValueError(f"clean must return an array of shape {x.shape} (one row per target); got {cleaned.shape}.")
    if not np.all(np.isfinite(cleaned)):
        raise ValueError(f"clean left {int((~np.isfinite(cleaned)).sum())} NaN or infinite values.")
    return replace(config, data=replace(config.data, x_train=cleaned, name="P3 cleaned"), check_inputs=True)
