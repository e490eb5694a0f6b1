"""Lesson 08, the clinic: the diagnostic checklist, panels that diagnose every run they train, and the
six mystery patients with a menu of treatments (the menu is the clinic's: ``adamclinic.clinic.treatment``).

Every panel wraps ``diagnosed_run(config) -> History`` (the engine's ``run`` followed by
``adamclinic.clinic.diagnose``); tests call ``treat`` and ``diagnose`` directly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import ipywidgets as w
import numpy as np
import pandas as pd

from adamclinic.clinic import CAUSES, HEALTHY, Report, RunRecord, diagnose
from adamclinic.clinic.patients import ZOO, Patient, regression
from adamclinic.clinic.treatment import TREATMENTS, apply_treatment, relu_he_version  # noqa: F401 (ex08 uses it)
from adamclinic.engine import History, TrainConfig, run
from adamclinic.models import small_relu_net
from adamclinic.panels import TrainingPanel, log_slider

CHECKLIST = pd.DataFrame(
    [
        (
            # Step 0 needs no failing run, only the model, a few rows and the loss: seconds, and it tells a bug
            # from an optimizer problem before any curve is read (lesson 09b; adamclinic.clinic.checks).
            "0. the checks, before blaming the optimizer",
            "run_checks(model, x, y, loss): the fresh model's loss against a know-nothing prediction's "
            "(ln K for K balanced classes); can it learn one batch of 32 rows by heart; "
            "the loss's gradient against finite differences",
            "a bug, not the optimizer: logits into a probability loss or raw inputs (a start far above ln K); "
            "a frozen or cut-off layer, an output that cannot reach the targets (one batch not learned); "
            "a custom loss with a wrong or zero gradient",
        ),
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


# Treatments: the menu and the changes it makes live in the clinic (adamclinic.clinic.treatment), which also
# treats a run by itself (adamclinic.clinic.treat). The lesson's name for applying one menu item is ``treat``.

treat = apply_treatment


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


@functools.cache
def patient_run(letter: str, treatment: str = "no treatment", seed: int = 0) -> tuple[History, Report]:
    """Patient ``letter`` trained with ``treatment`` and diagnosed (trained once per session, then remembered)."""
    return diagnosed_run(treat(mystery(letter, seed), treatment))


def _share_range(shares: list[float]) -> str:
    if len(shares) == 2:
        return f"{max(shares):.0%} / {min(shares):.0%}"
    return f"{len(shares)} classes, {min(shares):.1%} to {max(shares):.1%} each"


def _vitals(history: History, record: RunRecord) -> dict[str, str]:
    """The checklist's measurements of one run, as a bedside chart: numbers only, no cause named."""
    regression = record.task == "regression"
    losses = np.asarray(record.loss, dtype=float)
    finite = losses[np.isfinite(losses)]
    val = np.array([np.nan if v is None else v for v in record.val_loss], dtype=float)
    first_grads = record.epoch_layer_grads[0] if record.epoch_layer_grads else record.initial_layer_grads
    rises = finite[1:] / finite[:-1]
    dash = "–"
    best = int(np.nanargmin(val)) if np.isfinite(val).any() else None
    return {
        "1. input column sizes, smallest to largest": f"{min(record.feature_scales):.2g} to "
        f"{max(record.feature_scales):.2g}",
        "1. target size": f"{record.target_scale:.3g}" if regression else dash,
        "1. label mix": dash if regression else _share_range(record.label_shares),
        "1. rows with NaN inputs": str(record.nan_rows),
        "2. initial loss ÷ loss of guessing": f"{record.initial_loss / record.baseline_loss:.3g}",
        "2. first layer's gradient ÷ last's (epoch 1)": f"{first_grads[0] / first_grads[-1]:.2g}",
        "3. epoch 1's loss ÷ initial loss": f"{losses[0] / record.initial_loss:.3g}",
        "3. weights moved (× their initial size)": f"{record.weight_change:.3g}",
        "4. β1, β2": f"{record.beta_1:g}, {record.beta_2:g}" if record.beta_2 is not None else dash,
        "4. loss NaN from epoch": dash if history.diverged_at is None else str(history.diverged_at),
        "4. largest rise from one epoch to the next": f"× {max(1.0, float(rises.max())):.3g}" if len(rises) else dash,
        "5. final loss ÷ loss of guessing": f"{losses[-1] / record.baseline_loss:.3g}",
        "5. predictions' spread ÷ targets'": f"{record.prediction_spread:.2g}" if regression else dash,
        "5. rows given the most common class": dash if regression else f"{record.prediction_spread:.0%}",
        "6. loss in inference mode ÷ in training mode": f"{record.final_eval_mode_loss / record.final_train_mode_loss:.3g}",
        "7. best validation epoch": dash if best is None else f"{best + 1} of {len(val)}",
        "7. last validation loss ÷ best": dash if best is None else f"{val[-1] / val[best]:.3g}",
    }


def vital_signs(letters: str = "ABCDEF", seed: int = 0) -> pd.DataFrame:
    """Each patient's untreated run measured down the checklist (a column per patient); the cause is not named."""
    columns = {}
    for letter in letters:
        history, report = patient_run(letter, seed=seed)
        columns[f"patient {letter}"] = _vitals(history, report.record)
    return pd.DataFrame(columns).rename_axis("checklist step: measurement")


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


# The lesson's figure (make figures NAME=08_the_clinic) ----------------------------------------------------

FIGURE = {
    "title": "Three runs, one flat start, three causes (seed 0)",
    "y_label": "training loss ÷ loss of guessing",
    "log_y": False,
}


def figure_curves() -> dict[str, np.ndarray]:
    """Patients A and D untreated and section 2's net at lr 1e-5 (seed 0), each loss over its constant prediction's."""
    runs = {
        "patient A": patient_run("A"),
        "patient D": patient_run("D"),
        "section 2's net, lr = 1e-5": diagnosed_run(
            TrainConfig(regression(), small_relu_net, learning_rate=1e-5, epochs=20, seed=0)
        ),
    }
    return {label: history.loss / report.record.baseline_loss for label, (history, report) in runs.items()}
