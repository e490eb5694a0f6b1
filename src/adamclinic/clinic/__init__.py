"""The clinic's instrument: watch a Keras run and name why it fails, with the evidence and the fix.

Two ways in, one report:

- with stock Keras, add ``ClinicMonitor(x_train, y_train)`` to ``model.fit(callbacks=[...])`` and call
  ``diagnose(monitor)``. The monitor keeps the same monitor across several ``fit`` calls, so a
  recompile between them shows up as a new start;
- with the course's engine, call ``diagnose(history)`` on the ``History`` that ``adamclinic.engine.training.run``
  returns. The engine already records every epoch's loss, validation loss and per-layer gradient norms
  in its compiled loop; the rest is measured after the run from the seed's initial weights and the final
  weights, so watching costs the engine nothing while it trains;
- from logs alone (``adamclinic.clinic.logs``): ``diagnose`` also takes the Keras ``History`` that
  ``model.fit`` returns, its ``.history`` dict, a ``CSVLogger`` file or a TensorBoard log directory, and
  ``python -m adamclinic.clinic diagnose run.csv`` prints the report. A log holds curves, not data or
  gradients: the rules that need those stay silent and the report lists what it could not check.

Both paths fill one ``RunRecord`` (plain numbers, JSON-friendly), and ``diagnose`` reads only that: the
rules below never see the model or the code, just what a practitioner could measure. Each rule returns
a ``Finding`` with a score in [0, 1]; the report ranks them, and a run with no finding scoring at least
``THRESHOLD`` gets "no problem found".

Why a callback that does almost nothing per epoch: the probes run once when training starts (the loss
and each layer's gradient) and once when it ends (the loss in training and in inference mode, the
predictions), on at most ``probe_rows`` rows. Per epoch the monitor only copies two numbers out of
Keras's logs. ``monitor.seconds`` is the time spent inside it.

After the diagnosis, ``treat(run)`` (``adamclinic.clinic.treatment``) applies the fix the top finding
names to the same model and data, retrains with the same seed and reports before and after.
"""

from adamclinic.clinic.checks import (
    ChecksReport,
    GradientCheck,
    InitialLossCheck,
    OverfitCheck,
    check_gradients,
    check_initial_loss,
    check_loss_gradient,
    check_model_gradient,
    check_overfits_one_batch,
    run_checks,
)
from adamclinic.clinic.logs import LogReadError, curves_only, record_from_logs
from adamclinic.clinic.monitor import ClinicMonitor, monitored_fit
from adamclinic.clinic.record import PROBE_ROWS, RunRecord, record_from_history
from adamclinic.clinic.rules import CAUSES, HEALTHY, RULES, THRESHOLD, Finding, Report, diagnose
from adamclinic.clinic.treatment import PLAN, TreatmentReport, treat

__all__ = [
    "CAUSES",
    "HEALTHY",
    "PROBE_ROWS",
    "RULES",
    "THRESHOLD",
    "ChecksReport",
    "ClinicMonitor",
    "Finding",
    "GradientCheck",
    "InitialLossCheck",
    "LogReadError",
    "OverfitCheck",
    "PLAN",
    "Report",
    "RunRecord",
    "TreatmentReport",
    "check_gradients",
    "check_initial_loss",
    "check_loss_gradient",
    "check_model_gradient",
    "check_overfits_one_batch",
    "curves_only",
    "diagnose",
    "monitored_fit",
    "record_from_history",
    "record_from_logs",
    "run_checks",
    "treat",
]
