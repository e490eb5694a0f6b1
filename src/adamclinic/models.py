"""Small Keras models the lessons train. Module-level builders, so the engine can reuse their traces."""

from __future__ import annotations

import keras


def small_relu_net(inputs: int = 10) -> keras.Model:
    """Two hidden ReLU layers of 32 units and one linear output: lesson 01's regression net."""
    return keras.Sequential(
        [
            keras.Input((inputs,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(1),
        ],
        name="small_relu_net",
    )


def article_relu_net(inputs: int = 10) -> keras.Model:
    """The source article's first example: one hidden ReLU layer of 10 units, one linear output."""
    return keras.Sequential(
        [keras.Input((inputs,)), keras.layers.Dense(10, activation="relu"), keras.layers.Dense(1)],
        name="article_relu_net",
    )
