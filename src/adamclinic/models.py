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


def small_tanh_net(inputs: int = 10) -> keras.Model:
    """``small_relu_net`` with tanh hidden units: lesson 05 shows that one NaN input kills it loudly."""
    return keras.Sequential(
        [
            keras.Input((inputs,)),
            keras.layers.Dense(32, activation="tanh"),
            keras.layers.Dense(32, activation="tanh"),
            keras.layers.Dense(1),
        ],
        name="small_tanh_net",
    )


def binary_relu_net(inputs: int = 8) -> keras.Model:
    """Two hidden ReLU layers of 32 units and one sigmoid output (train with binary_crossentropy)."""
    return keras.Sequential(
        [
            keras.Input((inputs,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ],
        name="binary_relu_net",
    )


def digits_relu_net(inputs: int = 64, classes: int = 10) -> keras.Model:
    """One hidden ReLU layer of 64 units and a softmax over the ten digits (sparse_categorical_crossentropy)."""
    return keras.Sequential(
        [
            keras.Input((inputs,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(classes, activation="softmax"),
        ],
        name="digits_relu_net",
    )


def parcel_relu_net() -> keras.Model:
    """``small_relu_net`` for lesson 03's five parcel features (a zero-argument builder, so runs share one trace)."""
    return small_relu_net(inputs=5)


def parcel_tanh_net() -> keras.Model:
    """``small_tanh_net`` for the five parcel features: lesson 03 shows large inputs saturating its units."""
    return small_tanh_net(inputs=5)
