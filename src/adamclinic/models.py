"""Small Keras models the lessons train. Module-level builders, so the engine can reuse their traces."""

from __future__ import annotations

import functools
from collections.abc import Callable

import keras


def mlp(
    name: str,
    inputs: int,
    hidden: tuple[int, ...],
    activation: str,
    outputs: int = 1,
    output_activation: str | None = None,
) -> keras.Model:
    """A plain dense network: ``inputs`` → ``hidden`` layers of ``activation`` units → ``outputs``."""
    layers = [keras.Input((inputs,))]
    layers += [keras.layers.Dense(units, activation=activation) for units in hidden]
    layers.append(keras.layers.Dense(outputs, activation=output_activation))
    return keras.Sequential(layers, name=name)


def small_relu_net(inputs: int = 10) -> keras.Model:
    """Two hidden ReLU layers of 32 units and one linear output: lesson 01's regression net."""
    return mlp("small_relu_net", inputs, (32, 32), "relu")


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


ACTIVATIONS = ("sigmoid", "tanh", "relu", "linear")


# Initializers by the name a dropdown shows. A fresh instance per layer (Keras warns when one
# unseeded initializer object is reused, and reuse would not be what a student expects).
INITIALIZERS: dict[str, Callable[[], keras.initializers.Initializer]] = {
    "glorot_uniform": keras.initializers.GlorotUniform,
    "he_normal": keras.initializers.HeNormal,
    "normal(0.05)": lambda: keras.initializers.RandomNormal(stddev=0.05),
    "normal(1)": lambda: keras.initializers.RandomNormal(stddev=1.0),
    "normal(2)": lambda: keras.initializers.RandomNormal(stddev=2.0),
}


def deep_net(
    depth: int = 10,
    activation: str = "sigmoid",
    initializer: str = "glorot_uniform",
    batch_norm: bool = False,
    residual: bool = False,
    width: int = 32,
    inputs: int = 64,
    classes: int = 10,
) -> Callable[[], keras.Model]:
    """The builder of a ``depth``-hidden-layer dense classifier (cached: same settings, same builder,
    however the arguments are spelled).

    Each hidden layer is ``Dense(width)`` → (``BatchNormalization``) → activation. With ``residual``
    every hidden layer after the first adds its input to its output (``x + layer(x)``), the skip
    path that lets a gradient reach the first layers without passing through every activation.
    The output is a ``classes``-unit softmax, initialised like the hidden layers.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}; got {activation!r}.")
    if initializer not in INITIALIZERS:
        raise ValueError(f"initializer must be one of {tuple(INITIALIZERS)}; got {initializer!r}.")
    if depth < 1:
        raise ValueError(f"depth must be at least 1; got {depth}.")
    return _deep_net(
        int(depth), activation, initializer, bool(batch_norm), bool(residual), int(width), int(inputs), int(classes)
    )


@functools.cache
def _deep_net(
    depth: int,
    activation: str,
    initializer: str,
    batch_norm: bool,
    residual: bool,
    width: int,
    inputs: int,
    classes: int,
) -> Callable[[], keras.Model]:
    # Positional and normalised, so deep_net(10) and deep_net(depth=10, activation="sigmoid") share one entry.
    def build() -> keras.Model:
        x = inp = keras.Input((inputs,))
        for index in range(depth):
            h = keras.layers.Dense(width, kernel_initializer=INITIALIZERS[initializer](), use_bias=not batch_norm)(x)
            if batch_norm:
                h = keras.layers.BatchNormalization()(h)
            h = keras.layers.Activation(activation)(h)
            x = keras.layers.Add()([x, h]) if residual and index > 0 else h
        out = keras.layers.Dense(classes, activation="softmax", kernel_initializer=INITIALIZERS[initializer]())(x)
        return keras.Model(inp, out, name=f"deep_{activation}_net")

    build.description = describe(depth, activation, initializer, batch_norm, residual)
    build.settings = {
        "depth": depth,
        "activation": activation,
        "initializer": initializer,
        "batch_norm": batch_norm,
        "residual": residual,
    }
    build.__name__ = build.__qualname__ = f"deep_net({build.description})"
    return build


def describe(depth: int, activation: str, initializer: str, batch_norm: bool = False, residual: bool = False) -> str:
    """A short name for an architecture: ``sigmoid x10, glorot_uniform, batch norm``."""
    parts = [f"{activation} x{depth}", initializer]
    if batch_norm:
        parts.append("batch norm")
    if residual:
        parts.append("residual")
    return ", ".join(parts)


def article_relu_net(inputs: int = 64) -> keras.Model:
    """The source article's "vanishing gradients" example: three hidden ReLU layers of 128, softmax.

    (The article feeds it 784 MNIST pixels; on the course's digits it gets 64.)
    """
    return keras.Sequential(
        [
            keras.Input((inputs,)),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="article_relu_net",
    )
