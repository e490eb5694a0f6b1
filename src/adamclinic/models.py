"""Small Keras models the lessons train. Module-level builders, so the engine can reuse their traces."""

from __future__ import annotations

import keras


def mlp(name: str, inputs: int, hidden: tuple[int, ...], activation: str, outputs: int = 1,
        output_activation: str | None = None) -> keras.Model:
    """A plain dense network: ``inputs`` → ``hidden`` layers of ``activation`` units → ``outputs``."""
    layers = [keras.Input((inputs,))]
    layers += [keras.layers.Dense(units, activation=activation) for units in hidden]
    layers.append(keras.layers.Dense(outputs, activation=output_activation))
    return keras.Sequential(layers, name=name)


def small_relu_net(inputs: int = 10) -> keras.Model:
    """Two hidden ReLU layers of 32 units and one linear output: lesson 01's regression net."""
    return mlp("small_relu_net", inputs, (32, 32), "relu")


def article_relu_net(inputs: int = 10) -> keras.Model:
    """The source article's first example: one hidden ReLU layer of 10 units, one linear output."""
    return mlp("article_relu_net", inputs, (10,), "relu")


def small_tanh_net(inputs: int = 10) -> keras.Model:
    """``small_relu_net`` with tanh hidden units: lesson 05 shows that one NaN input kills it loudly."""
    return mlp("small_tanh_net", inputs, (32, 32), "tanh")


def binary_relu_net(inputs: int = 8) -> keras.Model:
    """Two hidden ReLU layers of 32 units and one sigmoid output (train with binary_crossentropy)."""
    return mlp("binary_relu_net", inputs, (32, 32), "relu", output_activation="sigmoid")


def digits_relu_net(inputs: int = 64, classes: int = 10) -> keras.Model:
    """One hidden ReLU layer of 64 units and a softmax over the ten digits (sparse_categorical_crossentropy)."""
    return mlp("digits_relu_net", inputs, (64,), "relu", outputs=classes, output_activation="softmax")


def parcel_relu_net() -> keras.Model:
    """``small_relu_net`` for lesson 03's five parcel features (a zero-argument builder, so runs share one trace)."""
    return small_relu_net(inputs=5)


def parcel_tanh_net() -> keras.Model:
    """``small_tanh_net`` for the five parcel features: lesson 03 shows large inputs saturating its units."""
    return small_tanh_net(inputs=5)
