"""The live-training engine: a ``TrainConfig`` in, a ``History`` out, every run of one structure through one
XLA-compiled trainer so that a slider move re-trains in a fraction of a second.

Imports nothing else of the course: lessons, panels and the clinic build on it.
"""

from adamclinic.engine.optimizers import OPTIMIZERS, AdamWithoutBiasCorrection, make_optimizer
from adamclinic.engine.plain_keras import keras_fit
from adamclinic.engine.schedules import SCHEDULE_KINDS, make_schedule
from adamclinic.engine.seeding import call_seeded, seed_everything
from adamclinic.engine.training import (
    Dataset,
    EpochMetrics,
    History,
    LearningRate,
    StepTrace,
    TrainConfig,
    describe_learning_rate,
    learning_rate_table,
    run,
    step_trace,
    train,
)

__all__ = [
    "OPTIMIZERS",
    "SCHEDULE_KINDS",
    "AdamWithoutBiasCorrection",
    "Dataset",
    "EpochMetrics",
    "History",
    "LearningRate",
    "StepTrace",
    "TrainConfig",
    "call_seeded",
    "describe_learning_rate",
    "keras_fit",
    "learning_rate_table",
    "make_optimizer",
    "make_schedule",
    "run",
    "seed_everything",
    "step_trace",
    "train",
]
