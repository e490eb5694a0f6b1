"""The clinic's treatment step: apply the fix a diagnosis names, retrain the same run, diagnose again.

``treat(run)`` takes a run the clinic can diagnose (an engine ``TrainConfig`` or ``History``, or a
``Patient`` of ``adamclinic.clinic.patients``, whose ``fit`` patients train with ``model.compile`` +
``model.fit``). It trains and diagnoses the run, applies the first treatment ``PLAN`` lists for the top
finding to the same model and data, retrains with the same seed and diagnoses again. When the treated
cause is still found it says so plainly, goes back to the run before that treatment and tries the next
treatment for that cause, or else the next finding's; when a treatment clears its cause but uncovers
another problem, it keeps the treatment and treats the new one. At most ``max_treatments`` runs are
retrained. A healthy run is left alone, and a run stuck at the loss of guessing (labels that do not match
the inputs) gets no treatment: no setting repairs data, and the report says what to check.

``TREATMENTS`` is the menu lesson 08 hands its students (a name and a change of a ``TrainConfig``);
``apply_treatment(config, name)`` applies one of them.

``python -m adamclinic.clinic.treated_zoo`` measures it on the zoos (``adamclinic.clinic.treated_zoo``).
"""

from __future__ import annotations

import functools
import html
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import keras
import numpy as np

from adamclinic.clinic.monitor import ClinicMonitor, monitored_fit
from adamclinic.clinic.record import RunRecord, record_from_history
from adamclinic.clinic.rules import CAUSES, HEALTHY, Report, diagnose
from adamclinic.data import balanced_class_weight
from adamclinic.engine import Dataset, History, TrainConfig, run
from adamclinic.engine.range_test import lr_range_test, suggest_learning_rate

# Changes to the data ------------------------------------------------------------------------------------


def standardized_inputs(data: Dataset) -> Dataset:
    """Each input column minus its training mean, over its training standard deviation (train and validation)."""
    mean, sd = data.x_train.mean(axis=0), data.x_train.std(axis=0) + 1e-12
    return replace(
        data,
        x_train=(data.x_train - mean) / sd,
        x_val=None if data.x_val is None else (data.x_val - mean) / sd,
        name=data.name + ", standardized",
    )


def standardized_targets(data: Dataset) -> Dataset:
    """The targets minus their training mean, over their training standard deviation (undo it on predictions)."""
    mean, sd = data.y_train.mean(), data.y_train.std()
    return replace(
        data,
        y_train=(data.y_train - mean) / sd,
        y_val=None if data.y_val is None else (data.y_val - mean) / sd,
        name=data.name + ", y standardized",
    )


def imputed_inputs(data: Dataset) -> Dataset:
    """Every NaN or infinite input replaced by its column's mean over the training rows' finite values."""
    finite = np.where(np.isfinite(data.x_train), data.x_train, np.nan)
    with np.errstate(all="ignore"):
        means = np.nan_to_num(np.nanmean(finite, axis=0), nan=0.0).astype("float32")

    def fill(x: np.ndarray | None) -> np.ndarray | None:
        return None if x is None else np.where(np.isfinite(x), x, np.broadcast_to(means, x.shape))

    return replace(data, x_train=fill(data.x_train), x_val=fill(data.x_val), name=data.name + ", imputed")


def _original_labels(data: Dataset) -> Dataset:
    from adamclinic.clinic.patients import digit_images, two_classes

    # The misaligned patients are made from these tables (adamclinic.clinic.patients.misaligned keeps the name).
    sources = {"digits[:512], labels misaligned": digit_images, "overlapping_classes, labels misaligned": two_classes}
    if data.name not in sources:
        raise ValueError("These labels are not a misaligned patient's; there is nothing to re-pair.")
    return sources[data.name]()


# Changes to the network -----------------------------------------------------------------------------------


class NotApplicable(ValueError):
    """A treatment that does not fit this run (say, a batch-norm change for a net without batch norm)."""


_PLAIN_LAYERS = (keras.layers.InputLayer, keras.layers.Dense, keras.layers.Activation)


@functools.cache
def relu_he_version(build_model: Callable[[], keras.Model]) -> Callable[[], keras.Model]:
    """The same layer widths and output, with ReLU hidden units and He initialisation.

    A dense net is rebuilt as a plain stack of ``Dense`` layers; any other net (convolutions, recurrent
    layers, batch norm) keeps its layers, with sigmoid and tanh hidden units turned into ReLU.
    """
    template = build_model()
    if not all(isinstance(layer, _PLAIN_LAYERS) for layer in template.layers):
        return _rebuilt(build_model, "relu_he", hidden_activation="relu", initializer="he_normal")
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


def _output_layers(model: keras.Model) -> set[str]:
    return {tensor._keras_history[0].name for tensor in model.outputs}


@functools.cache
def _rebuilt(
    build_model: Callable[[], keras.Model],
    what: str,
    hidden_activation: str | None = None,
    initializer: str | None = None,
    momentum: float | None = None,
    output_activation: str | None = None,
) -> Callable[[], keras.Model]:
    """``build_model``'s net, layer for layer, with some settings changed (cached: one builder, one trace).

    ``hidden_activation`` replaces sigmoid and tanh in the hidden layers; ``initializer`` is every kernel's
    (``"variance-preserving"``: He for ReLU layers, Glorot for the others); ``momentum`` is every batch-norm
    layer's; ``output_activation`` the output layer's.
    """
    template = build_model()
    outputs = _output_layers(template)

    def changed(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = layer.get_config()
        is_output = layer.name in outputs
        activation = config.get("activation")
        if hidden_activation and not is_output and activation in ("sigmoid", "tanh"):
            config["activation"] = activation = hidden_activation
        if output_activation and is_output and "activation" in config:
            config["activation"] = output_activation
        if initializer and "kernel_initializer" in config:
            kind = initializer
            if initializer == "variance-preserving":
                kind = "he_normal" if activation == "relu" and not is_output else "glorot_uniform"
            config["kernel_initializer"] = keras.initializers.serialize(keras.initializers.get(kind))
        if momentum is not None and isinstance(layer, keras.layers.BatchNormalization):
            config["momentum"] = momentum
        return layer.__class__.from_config(config)

    def build() -> keras.Model:
        model = keras.models.clone_model(build_model(), clone_function=changed)
        model.name = f"{template.name}_{re.sub(r'[^A-Za-z0-9_]+', '_', what)}"  # a valid TensorFlow scope
        return model

    build.__name__ = f"{template.name}, {what}"
    return build


def _has_layer(build_model: Callable[[], keras.Model], kind: type) -> bool:
    return any(isinstance(layer, kind) for layer in build_model().layers)


# Changes to the loss -----------------------------------------------------------------------------------

# One loss object per kind, so the engine and the probes trace each architecture once with it.
_FROM_LOGITS = {
    "sparse_categorical_crossentropy": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    "binary_crossentropy": keras.losses.BinaryCrossentropy(from_logits=True),
    "categorical_crossentropy": keras.losses.CategoricalCrossentropy(from_logits=True),
}
_OUTPUT_ACTIVATION = {
    "sparse_categorical_crossentropy": "softmax",
    "binary_crossentropy": "sigmoid",
    "categorical_crossentropy": "softmax",
}


def _loss_key(loss: Any) -> str:
    name = loss if isinstance(loss, str) else getattr(loss, "name", "")
    if name not in _FROM_LOGITS:
        raise NotApplicable(f"the loss {name!r} takes no logits: only the cross-entropies do")
    return name


# The menu lesson 08 hands out -------------------------------------------------------------------------

TREATMENTS: dict[str, Callable[[TrainConfig], TrainConfig]] = {
    "no treatment": lambda c: c,
    "learning rate ÷ 10": lambda c: replace(c, learning_rate=c.learning_rate / 10),
    "learning rate × 10": lambda c: replace(c, learning_rate=c.learning_rate * 10),
    "standardize the inputs": lambda c: replace(c, data=standardized_inputs(c.data)),
    "standardize the targets": lambda c: replace(c, data=standardized_targets(c.data)),
    "ReLU + He initialisation": lambda c: replace(c, build_model=relu_he_version(c.build_model)),
    "β2 = 0.999": lambda c: replace(c, beta_2=0.999),
    "class weights": lambda c: replace(c, class_weight=balanced_class_weight(c.data)),
    "re-pair labels with their inputs": lambda c: replace(c, data=_original_labels(c.data)),
}


def apply_treatment(config: TrainConfig, treatment: str) -> TrainConfig:
    """``config`` with one treatment from the menu ``TREATMENTS`` applied."""
    if treatment not in TREATMENTS:
        raise ValueError(f"Unknown treatment {treatment!r}; choose one of: {', '.join(TREATMENTS)}.")
    return TREATMENTS[treatment](config)


# Training a case: the engine, or a watched model.fit ----------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A run the clinic can retrain: its settings, and ``fit`` (``None``: the engine; else a function that
    trains the settings with ``model.fit`` and returns the watching ``ClinicMonitor``)."""

    config: TrainConfig
    fit: Callable[[TrainConfig], ClinicMonitor] | None = None

    def record(self) -> RunRecord:
        if self.fit is not None:
            return self.fit(self.config).record
        return record_from_history(run(self.config))


def _recompiles(fit: Callable | None) -> bool:
    return isinstance(fit, functools.partial) and bool(fit.keywords.get("recompile_after"))


# The treatments per cause -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Treatment:
    """One fix: its name, and the change it makes to a case (given the report that named the cause).

    ``change`` returns the new case and a few words on what it set; it raises ``NotApplicable`` when the
    fix does not fit the run.
    """

    name: str
    change: Callable[[Case, Report], tuple[Case, str]]


def _settings(change: Callable[[TrainConfig, Report], tuple[TrainConfig, str]]):
    def on_case(case: Case, report: Report) -> tuple[Case, str]:
        config, detail = change(case.config, report)
        return replace(case, config=config), detail

    return on_case


def _range_test_rate(config: TrainConfig, report: Report, direction: int) -> tuple[TrainConfig, str]:
    current = report.record.learning_rate
    suggested = suggest_learning_rate(lr_range_test(config))
    # A range test on a broken run can point the wrong way; the finding says which way to go.
    rate = suggested if (suggested - current) * direction > 0 else current * 10.0**direction
    note = "" if rate == suggested else f" (the range test suggested {suggested:.2g}, the wrong way: 10x instead)"
    return replace(config, learning_rate=rate), f"learning rate {current:.3g} → {rate:.3g}{note}"


def _scaled_rate(factor: float):
    def change(config: TrainConfig, report: Report) -> tuple[TrainConfig, str]:
        current = report.record.learning_rate
        return replace(config, learning_rate=current * factor), f"learning rate {current:.3g} → {current * factor:.3g}"

    return change


def _data_change(function: Callable[[Dataset], Dataset], what: str):
    return lambda config, report: (replace(config, data=function(config.data), check_inputs=True), what)


def _network(what: str, **changes: Any):
    def change(config: TrainConfig, report: Report) -> tuple[TrainConfig, str]:
        if "momentum" in changes and not _has_layer(config.build_model, keras.layers.BatchNormalization):
            raise NotApplicable("the net has no batch normalization (check its dropout instead)")
        return replace(config, build_model=_rebuilt(config.build_model, what, **changes)), what

    return change


def _relu_he(config: TrainConfig, report: Report) -> tuple[TrainConfig, str]:
    return replace(config, build_model=relu_he_version(config.build_model)), "ReLU hidden units, He initialisation"


def _from_logits(config: TrainConfig, report: Report) -> tuple[TrainConfig, str]:
    key = _loss_key(config.loss)
    return replace(config, loss=_FROM_LOGITS[key]), f"{key}(from_logits=True)"


def _output_activation(config: TrainConfig, report: Report) -> tuple[TrainConfig, str]:
    activation = _OUTPUT_ACTIVATION[_loss_key(config.loss)]
    return _network(f"{activation} output", output_activation=activation)(config, report)


def _best_epoch(config: TrainConfig, report: Report) -> tuple[TrainConfig, str]:
    val = np.array([math.inf if v is None else v for v in report.record.val_loss], dtype=float)
    if not np.isfinite(val).any():
        raise NotApplicable("the run has no validation loss to stop at")
    best = int(np.argmin(val)) + 1
    return replace(config, epochs=best), f"{best} epochs instead of {len(val)}"


def _class_weights(config: TrainConfig, report: Report) -> tuple[TrainConfig, str]:
    weights = balanced_class_weight(config.data)
    shown = ", ".join(f"class {label}: {weight:.3g}" for label, weight in weights.items())
    return replace(config, class_weight=weights), f"balanced: {shown}"


def _weight_decay(config: TrainConfig, report: Report) -> tuple[TrainConfig, str]:
    return replace(config, optimizer="adamw", weight_decay=WEIGHT_DECAY), f"AdamW, weight_decay={WEIGHT_DECAY:g}"


def _without_recompile(case: Case, report: Report) -> tuple[Case, str]:
    if not _recompiles(case.fit):
        raise NotApplicable("this run is not recompiled by a fit the clinic knows")
    return replace(case, fit=monitored_fit), f"one fit of {case.config.epochs} epochs, one compile"


WEIGHT_DECAY = 0.1  # Keras's AdamW shrinks every weight by lr × decay per step: at lr 1e-3, 10% per 1,000 steps

RANGE_TEST = "a learning rate from a range test"
PLAN: dict[str, tuple[Treatment, ...]] = {
    "learning_rate_too_high": (
        Treatment(RANGE_TEST, _settings(functools.partial(_range_test_rate, direction=-1))),
        Treatment("learning rate ÷ 10", _settings(_scaled_rate(0.1))),
    ),
    "learning_rate_too_low": (
        Treatment(RANGE_TEST, _settings(functools.partial(_range_test_rate, direction=1))),
        Treatment("learning rate × 10", _settings(_scaled_rate(10.0))),
    ),
    "unscaled_inputs": (
        Treatment(
            "standardize the inputs",
            _settings(_data_change(standardized_inputs, "inputs standardized with the training rows' statistics")),
        ),
    ),
    "unscaled_targets": (
        Treatment(
            "standardize the targets",
            _settings(_data_change(standardized_targets, "targets standardized with the training rows' statistics")),
        ),
    ),
    "vanishing_gradients": (Treatment("ReLU + He initialisation", _settings(_relu_he)),),
    "exploding_gradients": (
        Treatment(
            "a variance-preserving initializer",
            _settings(_network("He or Glorot initialisation", initializer="variance-preserving")),
        ),
        Treatment("gradient clipping", _settings(lambda c, r: (replace(c, clipnorm=1.0), "clipnorm=1"))),
    ),
    "beta_2_too_low": (
        Treatment("β2 = 0.999", _settings(lambda c, r: (replace(c, beta_2=0.999), f"β2 {c.beta_2:g} → 0.999"))),
    ),
    "nan_inputs": (
        Treatment(
            "impute the missing inputs",
            _settings(_data_change(imputed_inputs, "each NaN replaced by its column's training mean")),
        ),
    ),
    "majority_class": (
        Treatment(
            "class weights",
            _settings(_class_weights),
        ),
    ),
    "output_loss_mismatch": (
        Treatment("a loss that takes logits", _settings(_from_logits)),
        Treatment("the output activation the loss expects", _settings(_output_activation)),
    ),
    "recompile_reset": (Treatment("train without recompiling", _without_recompile),),
    "train_eval_mismatch": (
        Treatment("batch-norm momentum 0.9", _settings(_network("batch-norm momentum 0.9", momentum=0.9))),
        Treatment("batch-norm momentum 0.99", _settings(_network("batch-norm momentum 0.99", momentum=0.99))),
    ),
    "overfitting": (
        Treatment("stop at the best validation epoch", _settings(_best_epoch)),
        Treatment("weight decay (AdamW)", _settings(_weight_decay)),
    ),
    # No setting repairs labels that do not follow from the inputs: the clinic says what to check.
    "chance_plateau": (),
}
UNTREATABLE = {
    "chance_plateau": (
        "No automatic treatment: the net learned nothing from the inputs that carries over to new rows, and no "
        "learning rate, scaler or initializer changes that. Check that each label belongs to its input (load "
        "and shuffle them together), that the output layer matches the loss, and that the labels are in the "
        "form the loss expects."
    ),
}


# The result --------------------------------------------------------------------------------------------


def _final(values) -> float | None:
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    return finite[-1] if finite else None


def _diverged(record: RunRecord) -> bool:
    return any(not math.isfinite(v) for v in record.loss)


@dataclass
class Visit:
    """One trained run: the treatment that led to it (``None``: the run as it came), its settings, its report."""

    treatment: str | None
    cause: str | None  # the finding the treatment was for
    detail: str
    case: Case
    report: Report

    @property
    def verdict(self) -> str:
        return self.report.top

    @property
    def final_loss(self) -> float:
        return math.nan if _diverged(self.report.record) else float(self.report.record.loss[-1])

    @property
    def final_val_loss(self) -> float | None:
        return _final(self.report.record.val_loss)

    @property
    def cleared(self) -> bool:
        """The finding this treatment was for is no longer found."""
        return self.cause is not None and self.cause not in self.report.causes

    def outcome(self) -> str:
        if self.verdict == HEALTHY:
            return "no problem found"
        name = CAUSES.get(self.verdict, self.verdict)
        if not self.cleared:
            return f"did not work: still {name}"
        return f"cleared {CAUSES.get(self.cause, self.cause)}, uncovered {name}"

    def losses(self) -> str:
        if _diverged(self.report.record):
            return "the loss became NaN"
        val = self.final_val_loss
        return f"final loss {self.final_loss:.3g}" + ("" if val is None else f", validation {val:.3g}")


@dataclass
class TreatmentReport:
    """What ``treat`` did: the run as it came (``before``), each treatment tried (``tried``), and where it
    ended (``after``: the last run whose treatment was kept). ``untreatable`` explains a cause with no
    treatment; ``skipped`` lists treatments that did not fit the run, with the reason."""

    before: Visit
    tried: list[Visit] = field(default_factory=list)
    untreatable: str = ""
    skipped: list[str] = field(default_factory=list)
    kept: int | None = None  # index in ``tried`` of the run ``after`` is, or None: no treatment kept

    @property
    def after(self) -> Visit:
        return self.before if self.kept is None else self.tried[self.kept]

    @property
    def cured(self) -> bool:
        return self.after.verdict == HEALTHY

    @property
    def treatments_to_healthy(self) -> int | None:
        """How many retrained runs it took to reach "no problem found" (0: healthy as it came; None: never)."""
        if self.before.verdict == HEALTHY:
            return 0
        return next((i + 1 for i, visit in enumerate(self.tried) if visit.verdict == HEALTHY), None)

    @property
    def config(self) -> TrainConfig:
        """The settings of the run ``after`` is: the untreated ones plus every treatment kept."""
        return self.after.case.config

    def _lines(self) -> list[tuple[str, str, str]]:
        rows = [("as it came", CAUSES.get(self.before.verdict, "no problem found"), self.before.losses())]
        for number, visit in enumerate(self.tried, start=1):
            rows.append((f"{number}. {visit.treatment} ({visit.detail})", visit.outcome(), visit.losses()))
        return rows

    def conclusion(self) -> str:
        if self.before.verdict == HEALTHY:
            return "No problem found, so no treatment: the run is left as it came."
        if self.untreatable:
            return self.untreatable
        count = len(self.tried)
        if self.cured:
            kept = [v.treatment for v in self.tried[: self.kept + 1] if v.cleared]
            runs = self.kept + 1
            return f"Healthy after {runs} treatment{'s' if runs > 1 else ''}: " + ", then ".join(kept) + "."
        plural = "s" if count != 1 else ""
        note = f" ({'; '.join(self.skipped)})" if self.skipped else ""
        return (
            f"Not cured after {count} treatment{plural}{note}: the clinic still finds "
            f"{CAUSES.get(self.after.verdict, self.after.verdict)}. Read the report below and treat by hand."
        )

    def __str__(self) -> str:
        lines = [f"{step}: {verdict}; {losses}" for step, verdict, losses in self._lines()]
        return "\n".join([*lines, self.conclusion()])

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td style='text-align:left'>{html.escape(step)}</td><td style='text-align:left'>"
            f"{html.escape(verdict)}</td><td style='text-align:left'>{html.escape(losses)}</td></tr>"
            for step, verdict, losses in self._lines()
        )
        return (
            "<table><tr><th>run</th><th>the clinic's verdict</th><th>losses</th></tr>"
            f"{rows}</table><p>{html.escape(self.conclusion())}</p>"
        )


# treat ------------------------------------------------------------------------------------------------


def _case_of(patient: Any, seed: int | None) -> tuple[Case, History | None]:
    from adamclinic.clinic.patients import Patient

    if isinstance(patient, Patient):
        own = getattr(patient, "seed", None)  # a held-out patient has its own seed
        seed = seed if seed is not None else (own if own is not None else 0)
        return Case(patient.config(seed), patient.fit), None
    if isinstance(patient, History):
        if seed is not None and seed != patient.config.seed:
            return Case(replace(patient.config, seed=seed)), None
        return Case(patient.config), patient
    if isinstance(patient, TrainConfig):
        return Case(patient if seed is None else replace(patient, seed=seed)), None
    raise TypeError(
        f"treat() takes an engine TrainConfig or History, or a clinic Patient; got {type(patient).__name__}. "
        "For your own model.fit, write it as a TrainConfig (data, build_model, learning rate, loss, epochs)."
    )


def treat(patient: TrainConfig | History | Any, max_treatments: int = 2, seed: int | None = None) -> TreatmentReport:
    """Diagnose a run, apply the fix its top finding names, retrain with the same seed, diagnose again.

    ``patient`` is an engine ``TrainConfig`` or ``History`` (its run is reused as the "before"), or a
    ``Patient`` from ``adamclinic.clinic.patients`` (trained as it is trained in the zoo: the engine or
    ``model.fit``). ``seed`` overrides the run's seed (a ``Patient``'s is its own, or 0). ``max_treatments`` caps the
    retrained runs.
    """
    if max_treatments < 0:
        raise ValueError(f"max_treatments must be 0 or more; got {max_treatments}.")
    case, history = _case_of(patient, seed)
    record = record_from_history(history) if history is not None else case.record()
    result = TreatmentReport(Visit(None, None, "", case, diagnose(record)))
    current = result.before  # the run the next treatment starts from
    tried: set[tuple[str, str]] = set()
    while len(result.tried) < max_treatments and current.verdict != HEALTHY:
        if current.verdict in UNTREATABLE:
            result.untreatable = UNTREATABLE[current.verdict]
            break
        options = _next_option(current, tried)
        if options is None:
            break
        cause, treatment = options
        tried.add((cause, treatment.name))
        try:
            treated, detail = treatment.change(current.case, current.report)
        except NotApplicable as reason:
            result.skipped.append(f"{treatment.name} does not fit: {reason}")
            continue
        visit = Visit(treatment.name, cause, detail, treated, diagnose(treated.record()))
        result.tried.append(visit)
        if visit.cleared:
            current, result.kept = visit, len(result.tried) - 1
    return result


def _next_option(current: Visit, tried: set[tuple[str, str]]) -> tuple[str, Treatment] | None:
    """The next (cause, treatment) to try from ``current``: the top finding's first untried treatment, then
    the other findings' in their order; ``None`` when nothing is left."""
    for cause in current.report.causes:
        for treatment in PLAN.get(cause, ()):
            if (cause, treatment.name) not in tried:
                return cause, treatment
    return None
