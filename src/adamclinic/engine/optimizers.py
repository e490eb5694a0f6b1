"""The optimizers the engine can train with: Keras's own, plus one variant Keras does not ship.

Keras 3's Adam computes ``alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)`` and updates
``w -= alpha * m / (sqrt(v) + epsilon)``: ε sits outside the bias-corrected root, the form the Adam
paper calls ε-hat, not the ``m_hat / (sqrt(v_hat) + ε)`` of its Algorithm 1.
"""

from __future__ import annotations

import keras
from keras import ops

OPTIMIZERS = ("adam", "adamw", "adam without bias correction", "sgd")


class AdamWithoutBiasCorrection(keras.optimizers.Adam):
    """Adam with the bias correction removed: ``w -= lr * m / (sqrt(v) + epsilon)``.

    Both moment estimates start at zero, so early on ``m`` and ``sqrt(v)`` are too small by the factors
    ``1 - beta_1**t`` and ``sqrt(1 - beta_2**t)``. With the defaults the first step is
    ``0.1 / sqrt(0.001)`` ≈ 3.2 times the learning rate, not 1. Lesson 04b shows what that does.
    """

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        beta_1 = ops.cast(self.beta_1, variable.dtype)
        beta_2 = ops.cast(self.beta_2, variable.dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - beta_2))
        if self.amsgrad:
            v_hat = self._velocity_hats[self._get_variable_index(variable)]
            self.assign(v_hat, ops.maximum(v_hat, v))
            v = v_hat
        self.assign_sub(variable, ops.divide(ops.multiply(m, lr), ops.add(ops.sqrt(v), self.epsilon)))


def make_optimizer(
    kind: str, amsgrad: bool = False, clipnorm: float | None = None, global_clipnorm: float | None = None
) -> keras.optimizers.Optimizer:
    """A fresh optimizer of the given kind; learning rate, betas, ε and weight decay are set per run."""
    clipping = {"clipnorm": clipnorm, "global_clipnorm": global_clipnorm}
    if kind == "adam":
        return keras.optimizers.Adam(learning_rate=1e-3, amsgrad=amsgrad, **clipping)
    if kind == "adamw":
        return keras.optimizers.AdamW(learning_rate=1e-3, weight_decay=0.0, amsgrad=amsgrad, **clipping)
    if kind == "adam without bias correction":
        return AdamWithoutBiasCorrection(learning_rate=1e-3, amsgrad=amsgrad, **clipping)
    if kind == "sgd":
        return keras.optimizers.SGD(learning_rate=1e-3, momentum=0.0, **clipping)
    raise ValueError(f"Unknown optimizer {kind!r}; choose one of: {', '.join(OPTIMIZERS)}.")
