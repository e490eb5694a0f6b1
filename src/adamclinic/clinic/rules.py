"""The rules: each reads a ``RunRecord`` and returns a ``Finding`` (a cause, a score in [0, 1], the
evidence, the fix); ``diagnose`` ranks those scoring at least ``THRESHOLD``.

A record read from logs alone lacks the data, the gradients and the probes (``RunRecord.unknown``).
``READS`` declares what each rule needs beyond the curves: a rule whose needs were not measured stays
silent and the report lists its cause as not checked; a rule that can also work from the curves alone
(spikes and NaN, the validation loss turning, a jump at a new fit) still runs.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from adamclinic.clinic.logs import record_from_logs
from adamclinic.clinic.monitor import ClinicMonitor
from adamclinic.clinic.record import RunRecord, record_from_history
from adamclinic.engine import History

THRESHOLD = 0.5  # a finding below this score is not reported as a problem
UNSCALED_INPUT = 30.0  # a column whose root mean square is this large is in raw units

CAUSES = {
    "nan_inputs": "NaN in the inputs",
    "unscaled_inputs": "unscaled input features",
    "unscaled_targets": "unscaled regression targets",
    "exploding_gradients": "exploding gradients",
    "vanishing_gradients": "vanishing gradients",
    "learning_rate_too_high": "learning rate too high",
    "learning_rate_too_low": "learning rate too low",
    "beta_2_too_low": "β2 too low for noisy gradients",
    "chance_plateau": "stuck at the loss of guessing",
    "output_loss_mismatch": "the output layer does not match the loss",
    "majority_class": "constant prediction of the majority class",
    "recompile_reset": "optimizer state lost on recompile",
    "train_eval_mismatch": "training and inference modes disagree",
    "overfitting": "overfitting: Adam is fine, the objective is wrong",
}
HEALTHY = "healthy"


# The rules --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One likely cause: its key in ``CAUSES``, how strongly the run shows it, the numbers, the fix."""

    cause: str
    score: float
    evidence: str
    fix: str

    @property
    def title(self) -> str:
        return CAUSES.get(self.cause, self.cause)


@dataclass
class Report:
    """The ranked findings of one run (strongest first) and the record they were read from.

    For a record read from logs, ``not_checked`` lists the causes that could not be checked (their rules
    need what the logs do not hold) and ``partly_checked`` those checked from the curves only.
    """

    findings: list[Finding]
    record: RunRecord
    not_checked: list[str] = field(default_factory=list)
    partly_checked: list[str] = field(default_factory=list)

    @property
    def top(self) -> str:
        """The most likely cause's key, or ``"healthy"`` when nothing scored above the threshold."""
        return self.findings[0].cause if self.findings else HEALTHY

    @property
    def causes(self) -> list[str]:
        return [f.cause for f in self.findings]

    def limits(self) -> list[str]:
        """What the report could not see (a record read from logs), and what to record next time."""
        if not (self.not_checked or self.partly_checked):
            return []
        source = f" ({self.record.source})" if self.record.source else ""
        lines = [f"Read from the logs alone{source}: without the data and the gradients some causes cannot be seen."]
        if self.partly_checked:
            lines.append("Checked from the curves only: " + "; ".join(CAUSES[c] for c in self.partly_checked) + ".")
        if self.not_checked:
            lines.append("Could not check: " + "; ".join(CAUSES[c] for c in self.not_checked) + ".")
        lines.append(NEXT_TIME)
        return lines

    def _headline(self) -> tuple[str, str, str]:
        """For a report without findings: its headline, what the loss did, and the headline's colour."""
        nan_at = next((i + 1 for i, v in enumerate(self.record.loss) if not math.isfinite(v)), None)
        if self.not_checked and nan_at is not None:
            # A NaN loss is a problem even when the curves cannot say which one.
            return (
                "No cause named from the curves alone",
                f"the loss became NaN or infinite at epoch {nan_at}; NaN in the inputs, exploding gradients, "
                "β2 too low and a learning rate too high can each do that, and telling them apart needs the "
                "data or the gradients.",
                "#D55E00",
            )
        headline = "No problem found in the curves" if self.not_checked else "No problem found"
        return headline, _healthy_summary(self.record), "#009E73"

    def __str__(self) -> str:
        if not self.findings:
            headline, summary, _ = self._headline()
            lines = [f"{headline}: {summary}"]
        else:
            lines = []
            for rank, f in enumerate(self.findings, start=1):
                lines += [f"{rank}. {f.title} (score {f.score:.2f})", f"   evidence: {f.evidence}", f"   fix: {f.fix}"]
        limits = self.limits()
        return "\n".join(lines + ([""] + limits if limits else []))

    def _repr_html_(self) -> str:
        limits = "".join(f"<br><small>{html.escape(line)}</small>" for line in self.limits())
        limits = f"<p>{limits[4:]}</p>" if limits else ""
        if not self.findings:
            headline, summary, colour = self._headline()
            return f"<p><b style='color:{colour}'>{html.escape(headline)}.</b> {html.escape(summary)}</p>{limits}"
        items = "".join(
            f"<li><b>{html.escape(f.title)}</b> <small>(score {f.score:.2f})</small><br>"
            f"<i>evidence:</i> {html.escape(f.evidence)}<br><i>fix:</i> {html.escape(f.fix)}</li>"
            for f in self.findings
        )
        return f"<ol>{items}</ol>{limits}"


NEXT_TIME = (
    "Next time, record the rest: add ClinicMonitor(x_train, y_train) to model.fit(callbacks=[...]) "
    "and call diagnose(monitor)."
)


def _healthy_summary(record: RunRecord) -> str:
    finite = [v for v in record.loss if math.isfinite(v)]
    if not finite:
        return ""
    if not record.knows("initial_loss", "baseline_loss"):
        val = _finite(record.val_loss)
        held_out = f"; the validation loss ends at {val[-1]:.3g} (best {np.min(val):.3g})" if val.size else ""
        return f"the loss went from {finite[0]:.3g} in the first epoch to {finite[-1]:.3g} in the last{held_out}."
    return (
        f"the loss fell from {record.initial_loss:.3g} to {finite[-1]:.3g} "
        f"(the best constant prediction scores {record.baseline_loss:.3g})."
    )


def _finite(values: Sequence[float | None]) -> np.ndarray:
    return np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)


def _clip01(value: float) -> float:
    return float(min(max(value, 0.0), 1.0))


def _nan_inputs(r: RunRecord) -> Finding | None:
    if r.nan_rows == 0:
        return None
    when = next((i + 1 for i, v in enumerate(r.loss) if not math.isfinite(v)), None)
    outcome = (
        f"the loss became NaN at epoch {when}" if when else "the loss stayed finite (the NaN were silently zeroed)"
    )
    return Finding(
        "nan_inputs",
        1.0,
        f"{r.nan_rows} of {r.rows} training rows contain NaN or infinite inputs; {outcome}.",
        "Impute or drop the missing values before training (fit the imputer on the training rows only).",
    )


def _input_spread(r: RunRecord) -> tuple[float, float]:
    scales = np.array([s for s in r.feature_scales if s > 0])
    if scales.size == 0:
        return 1.0, 0.0
    return float(scales.max() / scales.min()), float(scales.max())


def _unscaled_inputs(r: RunRecord) -> Finding | None:
    spread, largest = _input_spread(r)
    # Standardized columns have a size near 1 and [0, 1] pixels below it; a column hundreds of times
    # larger is in raw units. (Tiny columns alone are harmless: they barely move the first layer.)
    if largest < UNSCALED_INPUT:
        return None
    decades = math.log10(largest)
    return Finding(
        "unscaled_inputs",
        _clip01(0.3 + 0.15 * decades),
        f"input columns range in size from {min(s for s in r.feature_scales if s > 0):.3g} to {largest:.3g} "
        f"(a factor of {spread:.2g}); the first layer's initial gradient is "
        f"{r.initial_layer_grads[0]:.3g} against {r.initial_layer_grads[-1]:.3g} at the output.",
        "Standardize every input column (StandardScaler fitted on the training rows).",
    )


def _unscaled_targets(r: RunRecord) -> Finding | None:
    if r.task != "regression" or r.target_scale < 30:
        return None
    losses = _finite(r.loss)
    if losses.size < 3:
        return None
    fallen = 1 - losses[-1] / max(r.initial_loss, 1e-12)
    # A crawl in a straight line: the loss falls by about the same amount every epoch.
    drops = -np.diff(losses)
    straight = float(np.std(drops) / max(abs(np.mean(drops)), 1e-12)) < 0.3
    shape = ", by about the same amount every epoch" if straight else ""
    return Finding(
        "unscaled_targets",
        _clip01(0.5 + 0.1 * math.log10(r.target_scale)),
        f"the targets have a typical size of {r.target_scale:.3g}; after {len(losses)} epochs the loss fell "
        f"only {fallen:.0%} (from {r.initial_loss:.3g} to {losses[-1]:.3g}){shape}: Adam moves each weight "
        f"by about the learning rate per step, and the output must travel thousands of those steps.",
        "Standardize the targets (subtract the mean, divide by the standard deviation) and undo it on the predictions.",
    )


def _gradient_ratio(grads: Sequence[float]) -> float:
    if len(grads) < 2 or not grads[-1] > 0:
        return 1.0
    return float(grads[0] / grads[-1])


def _exploding(r: RunRecord) -> Finding | None:
    _, largest = _input_spread(r)
    if largest >= UNSCALED_INPUT:
        return None  # big inputs make big first-layer gradients: that is the scaling finding
    ratio = _gradient_ratio(r.initial_layer_grads)
    blown_start = r.initial_loss / max(r.baseline_loss, 1e-12)
    nan_at = next((i + 1 for i, v in enumerate(r.loss) if not math.isfinite(v)), None)
    evidence = []
    score = 0.0
    if ratio > 30:
        score += 0.35 + 0.1 * math.log10(ratio)
        evidence.append(f"at initialisation the first layer's gradient is {ratio:.3g} times the last layer's")
    if blown_start > 100:
        score += 0.3 + 0.1 * math.log10(blown_start / 100)
        evidence.append(f"the initial loss is {blown_start:.3g} times the loss of a constant prediction")
    if nan_at is not None and r.learning_rate <= 0.02:
        score += 0.5
        evidence.append(f"the loss became NaN at epoch {nan_at} at a learning rate of only {r.learning_rate:g}")
    if score == 0:
        return None
    return Finding(
        "exploding_gradients",
        _clip01(score),
        "; ".join(evidence) + ".",
        "Fix the initialisation: a variance-preserving one (He for ReLU, Glorot for tanh), or add batch "
        "normalization. Clipping (clipnorm=1) only keeps plain SGD from turning NaN; under Adam it barely helps.",
    )


def _vanishing(r: RunRecord) -> Finding | None:
    grads = r.epoch_layer_grads[0] if r.epoch_layer_grads and r.epoch_layer_grads[0] else r.initial_layer_grads
    ratio = _gradient_ratio(grads)
    if not ratio < 1e-2 or len(grads) < 3:
        return None
    decades = -math.log10(max(ratio, 1e-30))
    losses = _finite(r.loss)
    learned = 1 - losses[-1] / max(r.baseline_loss, 1e-12) if losses.size else 0.0
    return Finding(
        "vanishing_gradients",
        _clip01(0.3 + 0.12 * decades - 0.3 * max(learned, 0)),
        f"in the first epoch the first layer's gradient norm is {grads[0]:.2g}, "
        f"{decades:.1f} orders of magnitude below the last layer's ({grads[-1]:.2g}), across "
        f"{len(grads)} weight matrices; the loss ends at {losses[-1] if losses.size else math.nan:.3g} "
        f"against {r.baseline_loss:.3g} for a constant prediction.",
        "Use ReLU with He initialisation, batch normalization or residual connections, or a shallower net.",
    )


def _spikes(losses: np.ndarray, factor: float = 1.3) -> int:
    return int(np.sum(losses[1:] > factor * losses[:-1]))


def _learning_rate_too_high(r: RunRecord) -> Finding | None:
    losses = _finite(r.loss)
    # From logs alone the weights' drift, the initial loss and the baseline are unknown: those checks are
    # skipped, and the spikes and the NaN in the curve remain.
    moved, rate = r.knows("weight_change"), r.learning_rate if r.knows("learning_rate") else None
    evidence, score = [], 0.0
    if moved and r.weight_change > 2:
        score += 0.3
        evidence.append(f"the weights moved {r.weight_change:.3g} times their initial size")
    if r.knows("initial_loss") and losses.size and losses[0] > 3 * r.initial_loss:
        score += 0.35
        evidence.append(
            f"the first epoch's loss ({losses[0]:.3g}) is {losses[0] / r.initial_loss:.3g} times the "
            f"initial loss ({r.initial_loss:.3g})"
        )
    spikes = _spikes(losses)
    if spikes >= 3:
        score += 0.1 * min(spikes, 4)
        evidence.append(f"the loss jumped up by over 30% in {spikes} of {losses.size} epochs")
    if (
        moved
        and r.knows("baseline_loss")
        and losses.size
        and losses[-1] > 0.8 * r.baseline_loss
        and r.weight_change > 1
    ):
        score += 0.2
        evidence.append(f"it ends at {losses[-1]:.3g}, no better than a constant prediction ({r.baseline_loss:.3g})")
    if len(losses) < len(r.loss) and rate is not None and rate > 0.02:
        score += 0.4
        # Under Adam a rate alone rarely makes NaN (lesson 07b's symptom index): say where else to look.
        elsewhere = " (a rate alone rarely does that to Adam: check the inputs and β2 too)" if r.beta_2 else ""
        evidence.append(f"the loss became NaN at a learning rate of {r.learning_rate:g}{elsewhere}")
    if score < 0.3:
        return None
    # With Adam a rate of 3e-3 or less is rarely too high by itself: something else made the steps big.
    if r.beta_2 is not None and rate is not None:
        score += 0.15 if rate >= 0.1 else (-0.2 if rate <= 5e-3 else 0.0)
    setting = f"learning rate {rate:g}" if rate is not None else "the learning rate was not logged"
    if moved and r.knows("steps"):
        setting += f"; a net drift of {r.weight_change / max(r.steps, 1):.2g} of the weights' size per step"
    return Finding(
        "learning_rate_too_high",
        _clip01(score),
        "; ".join(evidence) + f" ({setting}).",
        "Lower the learning rate by about 10x (a range test finds a good one). Warmup does not rescue a rate "
        "that is far too high: it only delays the damage.",
    )


def _learning_rate_too_low(r: RunRecord) -> Finding | None:
    losses = _finite(r.loss)
    if losses.size < 5 or r.weight_change > 0.05:
        return None
    tail = losses[-5:]
    falling = bool(np.all(np.diff(tail) < 0))
    learned = 1 - losses[-1] / max(r.baseline_loss, 1e-12)
    if not falling or learned > 0.5 or r.initial_loss > 100 * r.baseline_loss:
        return None
    score = 0.55 + 0.15 * -math.log10(max(r.weight_change, 1e-9)) - 0.3 * max(learned, 0)
    return Finding(
        "learning_rate_too_low",
        _clip01(score),
        f"in {r.steps} steps the weights moved only {r.weight_change:.2%} of their size; the loss is still "
        f"falling ({tail[0]:.3g} to {tail[-1]:.3g} over the last 5 epochs) but is only "
        f"{max(learned, 0):.0%} below a constant prediction's ({r.baseline_loss:.3g}); learning rate "
        f"{r.learning_rate:g}.",
        "Raise the learning rate (try 10x, or run a range test).",
    )


def _beta_2_too_low(r: RunRecord) -> Finding | None:
    # Lesson 04a: the step m/√v can only run away when β2 < β1² (it grows by β1/√β2 per quiet step).
    if r.beta_2 is None or r.beta_1 is None or r.beta_2 >= r.beta_1**2:
        return None
    losses = _finite(r.loss)
    if losses.size == 0:
        return None
    spikes = _spikes(losses, 1.3)
    best = float(np.min(losses))
    ends_above = losses[-1] > 1.5 * best or losses.size < len(r.loss)
    if spikes == 0 and not ends_above:
        return None
    start = r.initial_loss if r.knows("initial_loss") else losses[0]  # from logs: the first epoch's loss
    blew_up = losses.size < len(r.loss) or float(np.max(losses)) > 10 * start
    score = 0.55 + 0.05 * min(spikes, 5) + (0.15 if ends_above else 0.0) + (0.2 if blew_up else 0.0)
    nan_at = next((i + 1 for i, v in enumerate(r.loss) if not math.isfinite(v)), None)
    if nan_at is not None:
        course = f"the loss reached {float(np.max(losses)):.3g} and became NaN at epoch {nan_at}"
    else:
        course = (
            f"the loss jumped by over 30% in {spikes} of {losses.size} epochs and ends at {losses[-1]:.3g}, "
            f"against its best {best:.3g}"
        )
    return Finding(
        "beta_2_too_low",
        _clip01(score),
        f"β2 = {r.beta_2:g} is below β1² = {r.beta_1**2:.3g}, so a step can grow by β1/√β2 = "
        f"{r.beta_1 / math.sqrt(r.beta_2):.2f} per quiet step; {course}.",
        "Keep β2 at 0.999 (the default); at least keep β2 above β1².",
    )


def _chance_plateau(r: RunRecord) -> Finding | None:
    if r.task == "regression" or max(r.label_shares, default=1) >= 0.8:
        return None
    losses = _finite(r.loss)
    if losses.size == 0:
        return None
    last = losses[-min(5, losses.size) :]
    gap = float(np.max(np.abs(last - r.baseline_loss)) / max(r.baseline_loss, 1e-12))  # 0: one class only
    # A net can memorize labels that do not follow from the inputs, so its training loss falls; what it
    # learned never reaches rows it has not seen: the validation loss stays at the loss of guessing.
    val = _finite(r.val_loss)
    val_gap = float(abs(np.min(val) - r.baseline_loss) / max(r.baseline_loss, 1e-12)) if val.size else math.inf
    memorizing = bool(val.size) and np.min(val) >= 0.96 * r.baseline_loss and last[-1] < 0.9 * r.baseline_loss
    if gap > 0.06 and not (val_gap < 0.04 and gap < 0.15) and not memorizing:
        return None
    # Weights that barely moved while the loss still falls: a crawl (learning rate), not a plateau.
    crawling = r.weight_change < 0.05 and bool(np.all(np.diff(last) < 0))
    score = (
        (0.8 if memorizing else 0.95 - 5 * min(gap, val_gap))
        - (0.3 if r.weight_change > 2 else 0)
        - (0.3 if crawling else 0)
    )
    held_out = f"; the validation loss never got below {np.min(val):.4g}" if val.size else ""
    where = (
        f"the training loss fell to {last[-1]:.4g}, below"
        if memorizing
        else f"the training loss ends at {last[-1]:.4g}, within {gap:.1%} of"
    )
    return Finding(
        "chance_plateau",
        _clip01(score),
        f"{where} the loss of guessing the label mix ({r.baseline_loss:.4g}; ln {r.classes} = "
        f"{math.log(r.classes):.4g} for balanced classes){held_out}: the net learned nothing from the "
        f"inputs that carries over to rows it has not seen"
        # A few hundred rows or fewer can be memorized before anything general is learned: the same curves.
        + (
            f" (with only {r.rows} training rows it may also have memorized them at once: overfitting)."
            if memorizing and r.rows < 200
            else "."
        ),
        "Check that the labels line up with the inputs (same shuffle, same order), that the output layer "
        "matches the loss (softmax with K units for sparse_categorical_crossentropy, one sigmoid unit for "
        "binary_crossentropy), and that the labels are in the form the loss expects.",
    )


def _output_loss_mismatch(r: RunRecord) -> Finding | None:
    if r.improper_outputs < 0.05:
        return None
    losses = _finite(r.loss)
    ends = (
        f"; the training loss ends at {losses[-1]:.4g} against {r.baseline_loss:.4g} for guessing"
        if losses.size
        else ""
    )
    return Finding(
        "output_loss_mismatch",
        _clip01(0.8 + 0.2 * r.improper_outputs),
        f"the loss expects probabilities, but for {r.improper_outputs:.0%} of the probed rows the outputs "
        f"are not (a value outside [0, 1], or several classes not summing to 1){ends}.",
        "Give the output layer the activation the loss expects (softmax with K units for "
        "sparse_categorical_crossentropy, one sigmoid unit for binary_crossentropy), or keep a linear "
        "output and pass from_logits=True to the loss.",
    )


def _majority_class(r: RunRecord) -> Finding | None:
    if r.task == "regression":
        return None
    majority = max(r.label_shares, default=0)
    # More one-sided than the labels themselves: halfway or more from the label mix to "always the majority".
    if majority < 0.8 or r.prediction_spread < majority + 0.5 * (1 - majority):
        return None
    return Finding(
        "majority_class",
        _clip01(0.6 + 2 * (majority - 0.8)),
        f"{majority:.1%} of the training labels are one class and the net predicts that class for "
        f"{r.prediction_spread:.1%} of the rows: accuracy {majority:.1%} by guessing, minority recall 0.",
        "Weight the classes (class_weight='balanced' shares), resample, and judge by balanced accuracy "
        "or minority recall, not accuracy.",
    )


def _recompile_reset(r: RunRecord) -> Finding | None:
    jumps = [
        (start, r.loss[start] / r.loss[start - 1])
        for start in r.fit_starts[1:]
        if 0 < start < len(r.loss) and math.isfinite(r.loss[start]) and r.loss[start - 1] > 0
    ]
    if not jumps:
        return None
    start, factor = max(jumps, key=lambda j: j[1])
    if factor < 1.25:
        return None
    return Finding(
        "recompile_reset",
        _clip01(0.5 + 0.2 * math.log10(factor) + 0.2),
        f"training restarted at epoch {start + 1} (a new fit, {len(r.fit_starts)} in all) and the loss "
        f"jumped {factor:.3g}-fold, from {r.loss[start - 1]:.3g} to {r.loss[start]:.3g}.",
        "Do not recompile a model mid-training (compile() makes a fresh optimizer with empty moments); "
        "continue with fit(), or if you must recompile, lower the learning rate or warm it up.",
    )


def _train_eval_mismatch(r: RunRecord) -> Finding | None:
    train, evaluation = r.final_train_mode_loss, r.final_eval_mode_loss
    if not (math.isfinite(train) and math.isfinite(evaluation)):
        return None
    if evaluation < 2 * train + 0.1 * r.baseline_loss:
        return None
    factor = evaluation / max(train, 1e-12)
    return Finding(
        "train_eval_mismatch",
        _clip01(0.5 + 0.15 * math.log10(factor)),
        f"on the same training rows the loss in training mode is {train:.3g} but in inference mode "
        f"{evaluation:.3g} ({factor:.3g} times higher): a layer behaves differently when predicting.",
        "Check batch normalization (its moving statistics need enough steps to catch up: a smaller "
        "momentum, 0.9 or 0.99, or more steps) and dropout; evaluate with model.evaluate on the training "
        "data to confirm.",
    )


def _overfitting(r: RunRecord) -> Finding | None:
    # The epochs with a validation loss, each beside its training loss (validation may skip epochs).
    epochs = [i for i, v in enumerate(r.val_loss) if v is not None and i < len(r.loss)]
    if len(epochs) < 5:
        return None
    val, train = np.array([r.val_loss[i] for i in epochs]), np.array([r.loss[i] for i in epochs])
    if not (np.all(np.isfinite(val)) and np.all(np.isfinite(train))):
        return None
    best = int(np.argmin(val))
    # A validation loss can reach 0 (a run that fits its validation rows exactly): measure the rise from there.
    rise = float(val[-1] / max(val[best], 1e-12) - 1)
    if best >= len(val) - 2 or not (train[-1] < val[best] and train[-1] < train[best]):
        return None  # the validation loss has not turned, or the training loss did not keep falling
    # Overfitting comes after learning: the validation loss first falls. One that rises from the first
    # epoch means the validation rows are unlike the training rows (a mix or a split problem).
    if val[best] > 0.95 * val[0]:
        return None
    # Two ways to show it. A validation loss that climbs well back up (10% and more) from its minimum, after
    # a few epochs of learning; or, on a small data set, a training loss driven to near zero while the
    # validation loss stays a hundred times higher or more and has turned (up 2%, or no better for the last
    # fifth of the epochs): its rise can be small, as the net has nothing left to learn from the training
    # rows but their noise. (At 20 times, a well-trained digits net of 1024 rows was called overfit.) From
    # logs alone the loss of a constant prediction is unknown: those comparisons are skipped.
    baseline = r.baseline_loss if r.knows("baseline_loss") else None
    gap = float(val[-1] / max(train[-1], 1e-12))
    near_zero = baseline is None or train[-1] < 0.05 * baseline
    climbed = best >= 2 and rise >= 0.1 and (baseline is None or val[-1] - val[best] >= 0.02 * baseline)
    stalled = rise >= 0.02 or (rise > 0 and best <= 0.8 * (len(val) - 1))  # no better for the last fifth
    memorized = near_zero and gap >= 100 and stalled
    if not (climbed or memorized):
        return None
    # The stronger of the two signs; a gap alone tops out below a cause planted on top of it (a recompile).
    score = 0.45 + max(rise, min(0.1 * math.log10(gap), 0.3) if memorized else 0.0)
    rows = f"its {r.rows} training rows" if r.knows("rows") else "its training rows"
    return Finding(
        "overfitting",
        _clip01(score),
        f"the training loss keeps falling (to {train[-1]:.3g}) while the validation loss bottomed out at "
        f"{val[best]:.3g} in epoch {epochs[best] + 1} and rose {rise:.0%} to {val[-1]:.3g}"
        + (f", {gap:.3g} times the training loss: the net has memorized {rows}." if memorized else "."),
        "Adam is fine, you are minimizing the wrong thing: stop early at the best validation epoch, add "
        "data, weight decay or dropout, or use a smaller net.",
    )


RULES = (
    _nan_inputs,
    _unscaled_inputs,
    _unscaled_targets,
    _exploding,
    _vanishing,
    _learning_rate_too_high,
    _learning_rate_too_low,
    _beta_2_too_low,
    _chance_plateau,
    _output_loss_mismatch,
    _majority_class,
    _recompile_reset,
    _train_eval_mismatch,
    _overfitting,
)


# What each rule reads beyond the curves (loss, validation loss, fit starts), as RunRecord fields: its
# cause, what it needs (without it the rule stays silent: the cause is not checked), and what it uses when
# it was measured (without it the rule reads the curves only). A rule missing here needs everything.
READS: dict[Callable[[RunRecord], Finding | None], tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    _nan_inputs: ("nan_inputs", ("nan_rows", "rows"), ()),
    _unscaled_inputs: ("unscaled_inputs", ("feature_scales", "initial_layer_grads"), ()),
    _unscaled_targets: ("unscaled_targets", ("task", "target_scale", "initial_loss"), ()),
    _exploding: (
        "exploding_gradients",
        ("feature_scales", "initial_layer_grads", "initial_loss", "baseline_loss", "learning_rate"),
        (),
    ),
    _vanishing: ("vanishing_gradients", ("initial_layer_grads", "baseline_loss"), ()),
    _learning_rate_too_high: (
        "learning_rate_too_high",
        (),
        ("weight_change", "initial_loss", "baseline_loss", "learning_rate", "steps"),
    ),
    _learning_rate_too_low: (
        "learning_rate_too_low",
        ("weight_change", "initial_loss", "baseline_loss", "learning_rate", "steps"),
        (),
    ),
    _beta_2_too_low: ("beta_2_too_low", ("beta_1", "beta_2"), ("initial_loss",)),
    _chance_plateau: ("chance_plateau", ("task", "classes", "label_shares", "baseline_loss", "weight_change"), ()),
    _output_loss_mismatch: ("output_loss_mismatch", ("improper_outputs", "baseline_loss"), ()),
    _majority_class: ("majority_class", ("task", "label_shares", "prediction_spread"), ()),
    _recompile_reset: ("recompile_reset", (), ()),
    _train_eval_mismatch: (
        "train_eval_mismatch",
        ("final_train_mode_loss", "final_eval_mode_loss", "baseline_loss"),
        (),
    ),
    _overfitting: ("overfitting", (), ("baseline_loss",)),
}


def _run_rules(record: RunRecord) -> tuple[list[Finding], list[str], list[str]]:
    """The findings scoring at least ``THRESHOLD``, the causes not checked and those checked from curves only."""
    findings, not_checked, partly = [], [], []
    for rule in RULES:
        cause, needs, uses = READS.get(rule, (rule.__name__.strip("_"), tuple(record.unknown), ()))
        if not record.knows(*needs):
            not_checked.append(cause)
            continue
        if not record.knows(*uses):
            partly.append(cause)
        finding = rule(record)
        if finding is not None and finding.score >= THRESHOLD:
            findings.append(finding)
    return findings, not_checked, partly


def diagnose(run: History | ClinicMonitor | RunRecord | keras.callbacks.History | Mapping | str | Path) -> Report:
    """The likely causes of a failing run, strongest first, each with its evidence and fix.

    Give it an engine ``History``, a ``ClinicMonitor`` that watched ``model.fit``, or a ``RunRecord``; or a
    run's logs alone: a Keras ``History`` (what ``model.fit`` returns), its ``.history`` dict, the path of a
    ``CSVLogger`` file or a TensorBoard log directory. An empty ``findings`` list means no problem found;
    from logs, ``not_checked`` lists the causes that need what a log does not hold.
    """
    if isinstance(run, ClinicMonitor):
        record = run.record
    elif isinstance(run, History):
        record = record_from_history(run)
    elif isinstance(run, RunRecord):
        record = run
    elif isinstance(run, (keras.callbacks.History, Mapping, str, Path)):
        record = record_from_logs(run)
    else:
        raise TypeError(
            "diagnose() takes an engine History, a ClinicMonitor or a RunRecord, or a run's logs (a Keras "
            f"History, its .history dict, a CSVLogger file or a TensorBoard log directory); got {type(run).__name__}."
        )
    findings, not_checked, partly = _run_rules(record)
    return Report(sorted(findings, key=lambda f: -f.score), record, not_checked, partly)
