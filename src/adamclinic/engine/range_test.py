"""The learning-rate range test (Smith, 2017): sweep the rate up exponentially during a short ``model.fit``
and watch the loss; ``suggest_learning_rate`` turns the sweep into a rate.

Lesson 01 teaches it (``adamclinic.lessons.learning_rate`` re-exports these names) and the clinic's
treatment for a learning rate that is too high or too low runs it (``adamclinic.clinic.treatment``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np

from adamclinic.engine.seeding import seed_everything
from adamclinic.engine.training import TrainConfig

# ---------------------------------------------------------------------------------------------
# The learning-rate range test (Smith, 2017): sweep the rate up exponentially, watch the loss.
#
# ``LRRangeTest`` is a Keras callback for any ``model.fit``: at every batch it sets the optimizer's
# learning rate a fixed factor higher, records that batch's loss, stops training once the smoothed loss
# blows up, and at the end puts back the weights and optimizer state the model had before the sweep,
# so the sweep costs nothing but time. ``lr_range_test`` runs one on a fresh model from a
# ``TrainConfig``; ``suggest_learning_rate`` turns the sweep into a rate.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sweep:
    """The rates tried, the raw loss of the batch at each, and its smoothed (bias-corrected EMA) value."""

    learning_rates: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    stopped_early: bool


def smooth(losses: np.ndarray, beta: float = 0.9) -> np.ndarray:
    """Exponential moving average with Adam-style bias correction, so the first values are not pulled to 0."""
    out = np.empty(len(losses))
    average = 0.0
    for i, value in enumerate(losses, start=1):
        average = beta * average + (1 - beta) * value
        out[i - 1] = average / (1 - beta**i)
    return out


class LRRangeTest(keras.callbacks.Callback):
    """Raise the learning rate from ``min_lr`` to ``max_lr`` over ``num_steps`` batches, geometrically.

    Training stops when the smoothed loss exceeds ``blowup`` times its lowest value (or is not
    finite). Keras 3 passes ``on_train_batch_end`` the running mean of the epoch's losses, not the
    batch's own loss; with equal batches the batch's loss is recovered exactly from two
    consecutive means: ``k * mean_k - (k - 1) * mean_(k-1)``.
    """

    def __init__(
        self, min_lr: float = 1e-6, max_lr: float = 10.0, num_steps: int = 100, blowup: float = 4.0, beta: float = 0.9
    ):
        super().__init__()
        if not 0 < min_lr < max_lr:
            raise ValueError(f"Need 0 < min_lr < max_lr; got {min_lr} and {max_lr}.")
        if num_steps < 2:
            raise ValueError("num_steps must be at least 2.")
        self.min_lr, self.max_lr, self.num_steps = min_lr, max_lr, num_steps
        self.blowup, self.beta = blowup, beta

    def rate_at(self, step: int) -> float:
        return self.min_lr * (self.max_lr / self.min_lr) ** (step / (self.num_steps - 1))

    def on_train_begin(self, logs=None):
        self.learning_rates: list[float] = []
        self.losses: list[float] = []
        self.stopped_early = False
        self._step = 0
        self._average = 0.0
        self._best = math.inf
        self._saved_weights = self.model.get_weights()
        optimizer = self.model.optimizer
        if not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        self._saved_optimizer = [v.numpy() for v in optimizer.variables]

    def on_epoch_begin(self, epoch, logs=None):
        self._batches_this_epoch = 0
        self._previous_mean = 0.0

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate = self.rate_at(self._step)

    def on_train_batch_end(self, batch, logs=None):
        running_mean = float(logs["loss"])
        k = self._batches_this_epoch + 1
        loss = k * running_mean - (k - 1) * self._previous_mean
        self._batches_this_epoch, self._previous_mean = k, running_mean
        self.learning_rates.append(self.rate_at(self._step))
        self.losses.append(loss)
        self._step += 1
        self._average = self.beta * self._average + (1 - self.beta) * loss
        smoothed = self._average / (1 - self.beta**self._step)
        self._best = min(self._best, smoothed)
        if not math.isfinite(smoothed) or smoothed > self.blowup * self._best:
            self.stopped_early = True
            self.model.stop_training = True
        elif self._step >= self.num_steps:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.model.set_weights(self._saved_weights)
        for variable, value in zip(self.model.optimizer.variables, self._saved_optimizer):
            variable.assign(value)

    def sweep(self) -> Sweep:
        losses = np.array(self.losses)
        return Sweep(np.array(self.learning_rates), losses, smooth(losses, self.beta), self.stopped_early)


def lr_range_test(config: TrainConfig, min_lr: float = 1e-6, max_lr: float = 10.0, num_steps: int = 100) -> Sweep:
    """Run a range test on a fresh model built from ``config`` (its data, model, betas, batch size, seed), with
    Adam, or plain SGD when ``config.optimizer`` is ``"sgd"``."""
    seed_everything(config.seed)
    model = config.build_model()
    # The best rate depends on the optimizer: plain SGD's is often a hundred times Adam's.
    optimizer = (
        keras.optimizers.SGD(min_lr)
        if config.optimizer == "sgd"
        else keras.optimizers.Adam(min_lr, beta_1=config.beta_1, beta_2=config.beta_2, epsilon=config.epsilon)
    )
    model.compile(optimizer=optimizer, loss=config.loss)
    finder = LRRangeTest(min_lr, max_lr, num_steps)
    steps_per_epoch = len(config.data.x_train) // config.batch_size
    model.fit(
        config.data.x_train,
        config.data.y_train,
        batch_size=config.batch_size,
        epochs=math.ceil(num_steps / steps_per_epoch),
        shuffle=True,
        callbacks=[finder],
        verbose=0,
    )
    return finder.sweep()


def suggest_learning_rate(sweep: Sweep) -> float:
    """A safe pick: ten times below the rate where the smoothed loss was lowest.

    At the minimum the loss is about to blow up, so the rate there is already too high for a whole
    run; a decade lower keeps most of the speed with a margin.
    """
    if len(sweep.smoothed) == 0:
        raise ValueError("The sweep is empty: run the range test first.")
    return float(sweep.learning_rates[int(np.nanargmin(sweep.smoothed))] / 10)
