"""The same run written as a student writes it: ``model.compile`` + ``model.fit``, no engine.

Lessons show it beside the engine, tests check that the two agree, and the clinic watches it with a
callback. One place where the two can differ: NaN inputs. On a CPU, ``fit`` runs a TensorFlow graph in
which the graph optimizer fuses each Dense layer's matmul, bias and ReLU into one kernel; when TensorFlow
uses oneDNN (on by default on Linux only for CPUs with AVX-512 VNNI or AMX, or with
``TF_ENABLE_ONEDNN_OPTS=1``), that kernel maps NaN to 0. Without oneDNN, eager execution
(``run_eagerly=True``) and XLA (the engine) keep the NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras

from adamclinic.engine.seeding import seed_everything
from adamclinic.engine.training import EpochMetrics, History, TrainConfig


def keras_fit(
    config: TrainConfig,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    run_eagerly: bool = False,
    recompile_after: int | None = None,
) -> History:
    """Train ``config`` with a stock Adam (AdamW for ``optimizer="adamw"``), ``model.compile`` and
    ``model.fit``, and return a ``History``.

    No NaN check: a plain ``fit`` as a student would write it, with the config's clipping and class
    weights passed as a student would pass them (``Adam(clipnorm=...)``, ``fit(class_weight=...)``). With
    ``recompile_after`` the model is compiled again after that many epochs (a fresh Adam, as a second
    ``model.compile`` makes) and trained for the remaining epochs in a second ``fit``; ``callbacks``
    watch both calls.
    """
    if config.optimizer not in ("adam", "adamw"):
        raise ValueError(f"keras_fit trains with Adam or AdamW; this config asks for {config.optimizer!r}.")
    seed_everything(config.seed)
    model = config.build_model()
    data = config.data
    validation = None if data.x_val is None else (data.x_val, data.y_val)
    losses: list[float] = []
    val_losses: list[float | None] = []

    def compile_and_fit(epochs: int) -> None:
        settings = {
            "learning_rate": config.learning_rate,
            "beta_1": config.beta_1,
            "beta_2": config.beta_2,
            "epsilon": config.epsilon,
            "clipnorm": config.clipnorm,
            "global_clipnorm": config.global_clipnorm,
        }
        optimizer = (
            keras.optimizers.AdamW(weight_decay=config.weight_decay, **settings)
            if config.optimizer == "adamw"
            else keras.optimizers.Adam(**settings)
        )
        model.compile(
            optimizer=optimizer,
            loss=config.loss,
            run_eagerly=run_eagerly,
        )
        fitted = model.fit(
            data.x_train,
            data.y_train,
            epochs=epochs,
            batch_size=config.batch_size,
            shuffle=config.shuffle,
            validation_data=validation,
            class_weight=config.class_weight,
            callbacks=list(callbacks),
            verbose=0,
        )
        losses.extend(float(v) for v in fitted.history["loss"])
        val_losses.extend(fitted.history.get("val_loss", [None] * epochs))

    first = recompile_after or config.epochs
    compile_and_fit(first)
    if recompile_after:
        compile_and_fit(config.epochs - first)
    history = History(config)
    for epoch, (loss, val) in enumerate(zip(losses, val_losses), start=1):
        history.epochs.append(
            EpochMetrics(
                epoch=epoch,
                loss=loss,
                val_loss=None if val is None else float(val),
                learning_rate=float(config.learning_rate),
                grad_norm=math.nan,
                seconds=0.0,
            )
        )
        if history.diverged_at is None and not math.isfinite(loss):
            history.diverged_at = epoch
    history.final_weights = model.get_weights()
    return history
