"""Small measurements the lessons show and the tests assert: what one Adam step does, which units died."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from adamclinic.seeding import seed_everything
from adamclinic.training import Dataset, History


def first_step_sizes(build_model: Callable[[], keras.Model], data: Dataset, loss_scales: Sequence[float],
                     learning_rate: float = 1e-3, seed: int = 0, batch_size: int = 32) -> pd.DataFrame:
    """How far one optimizer step moves the weights when the loss is multiplied by each scale.

    Multiplying the loss by ``s`` multiplies every gradient by ``s``. Plain SGD's step grows with it;
    Adam's first step is ``lr * m_hat / (sqrt(v_hat) + eps)`` = ``lr * g / |g|`` (up to ε), so it
    moves each weight by about ``lr`` whatever ``s`` is. Returns the median and largest absolute
    weight change per optimizer and scale.
    """
    xb = tf.constant(data.x_train[:batch_size])
    yb = tf.constant(data.y_train[:batch_size])
    seed_everything(seed)
    model = build_model()
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.mean_squared_error(yb, model(xb, training=True)))
    grads = tape.gradient(loss, model.trainable_variables)
    rows = []
    for name, make_optimizer in (("Adam", keras.optimizers.Adam), ("SGD", keras.optimizers.SGD)):
        for scale in loss_scales:
            # The step is applied to variables that start at zero, so the new values are the update
            # itself: subtracting two float32 weights of size 0.1 cannot resolve a step below 1e-8.
            steps = [keras.Variable(np.zeros(v.shape, dtype="float32")) for v in model.trainable_variables]
            make_optimizer(learning_rate=learning_rate).apply([scale * g for g in grads], steps)
            moves = np.concatenate([np.abs(v.numpy()).ravel() for v in steps])
            moved = moves[moves > 0]
            rows.append({"optimizer": name, "loss scale": scale,
                         "median |Δw|": float(np.median(moved)), "largest |Δw|": float(moves.max())})
    return pd.DataFrame(rows)


def dead_relu_fraction(history: History, x: np.ndarray) -> float:
    """The fraction of hidden ReLU units that output zero for every row of ``x`` after training.

    A dead unit passes no gradient, so nothing can bring it back: a network whose units are all dead
    predicts one constant, and its loss stops at the loss of predicting that constant.
    """
    if history.final_weights is None:
        raise ValueError("This history has no final weights; train it with adamclinic.training.run.")
    model = history.config.build_model()
    model.set_weights(history.final_weights)
    dead, total = 0, 0
    activations = np.asarray(x, dtype="float32")
    for layer in model.layers:
        activations = np.asarray(layer(activations))
        if getattr(layer, "activation", None) is keras.activations.relu:
            alive = (activations > 0).any(axis=0)
            dead += int((~alive).sum())
            total += alive.size
    if total == 0:
        raise ValueError("The model has no ReLU layers.")
    return dead / total


def prediction_spread(history: History, x: np.ndarray) -> float:
    """The standard deviation of the trained model's predictions over ``x`` (0 for a constant prediction)."""
    model = history.config.build_model()
    model.set_weights(history.final_weights)
    return float(np.std(np.asarray(model(np.asarray(x, dtype="float32")))))
