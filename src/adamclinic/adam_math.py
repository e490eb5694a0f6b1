"""Adam's update rule in NumPy (float64), in the two forms the paper gives, checked against Keras.

Why: the Adam paper's Algorithm 1 divides the bias-corrected moments, ``m_hat / (sqrt(v_hat) + ε)``;
Keras 3 folds the bias correction into the step size, ``alpha = lr * sqrt(1 - β2^t) / (1 - β1^t)``, and
divides ``m / (sqrt(v) + ε)`` (the paper's "ε-hat" form, end of its section 2). The two are the same
rule with different ε: Keras's ε acts like Algorithm 1's ε multiplied by ``1 / sqrt(1 - β2^t)``, which
is 31.6 at step 1 with β2 = 0.999 and fades to 1 over a few thousand steps. A student who implements
Adam from the paper and compares with Keras sees the difference; this module measures it.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

FORMS = ("algorithm 1", "epsilon hat")


def adam_updates(gradients: np.ndarray, lr: float = 1e-3, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, form: str = "epsilon hat", bias_correction: bool = True) -> np.ndarray:
    """The update Adam subtracts from the weights at each step, for a given sequence of gradients.

    ``gradients`` has shape ``(steps, ...)``; the result has the same shape (float64). The update does
    not depend on the weights themselves, only on the gradients, so no weights are needed.
    """
    if form not in FORMS:
        raise ValueError(f"Unknown form {form!r}; choose one of: {', '.join(FORMS)}.")
    g = np.asarray(gradients, dtype=np.float64)
    m = np.zeros(g.shape[1:])
    v = np.zeros(g.shape[1:])
    updates = np.empty_like(g)
    for t in range(1, len(g) + 1):
        m = beta_1 * m + (1 - beta_1) * g[t - 1]          # first moment: a running mean of gradients
        v = beta_2 * v + (1 - beta_2) * g[t - 1] ** 2     # second moment: a running mean of squares
        if not bias_correction:
            updates[t - 1] = lr * m / (np.sqrt(v) + epsilon)
        elif form == "algorithm 1":
            m_hat = m / (1 - beta_1 ** t)                 # undo the pull towards the zero start
            v_hat = v / (1 - beta_2 ** t)
            updates[t - 1] = lr * m_hat / (np.sqrt(v_hat) + epsilon)
        else:
            alpha = lr * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
            updates[t - 1] = alpha * m / (np.sqrt(v) + epsilon)
    return updates


def keras_adam_updates(gradients: np.ndarray, lr: float = 1e-3, beta_1: float = 0.9, beta_2: float = 0.999,
                       epsilon: float = 1e-7) -> np.ndarray:
    """What ``keras.optimizers.Adam`` subtracts at each step, for the same gradients (float32).

    The variable is reset to zero before every step, so reading it back gives the update exactly
    (subtracting two large positions would lose float32 digits). One compiled loop per gradient shape;
    lr, β1, β2 and ε are variables, so new values cost no retrace.
    """
    g = np.asarray(gradients, dtype=np.float32)
    if g.shape not in _runners:
        _runners[g.shape] = _KerasAdamRunner(g.shape)
    return _runners[g.shape](g, lr, beta_1, beta_2, epsilon)


class _KerasAdamRunner:
    def __init__(self, shape: tuple[int, ...]):
        steps = shape[0]
        self.w = keras.Variable(np.zeros(shape[1:], dtype=np.float32))
        self.optimizer = keras.optimizers.Adam()
        self.tunable = []
        for name in ("beta_1", "beta_2", "epsilon"):
            variable = keras.Variable(0.0, trainable=False, name=name)
            setattr(self.optimizer, name, variable)
            self.tunable.append(variable)
        self.optimizer.build([self.w])
        state = [v for v in self.optimizer.variables
                 if v is not self.optimizer._learning_rate and not any(v is t for t in self.tunable)]
        w, optimizer = self.w, self.optimizer

        def run(g, settings):
            for variable in state:
                variable.assign(tf.zeros_like(variable))
            optimizer.learning_rate.assign(settings[0])
            for i, variable in enumerate(self.tunable):
                variable.assign(settings[i + 1])

            def one_step(t, out):
                w.assign(tf.zeros_like(w))
                optimizer.apply([g[t]], [w])
                return t + 1, out.write(t, -w.value)

            _, out = tf.while_loop(lambda t, _: t < steps, one_step,
                                   (tf.constant(0), tf.TensorArray(tf.float32, size=steps)))
            return out.stack()

        self.run = tf.function(functools.partial(run), jit_compile=True)  # see adamclinic.surfaces

    def __call__(self, g, lr, beta_1, beta_2, epsilon) -> np.ndarray:
        settings = tf.constant([lr, beta_1, beta_2, epsilon], dtype=tf.float32)
        return self.run(tf.constant(g), settings).numpy().astype(np.float64)


_runners: dict[tuple[int, ...], _KerasAdamRunner] = {}


def noisy_gradients(steps: int = 1000, size: int = 64, scale: float = 1.0, seed: int = 0) -> np.ndarray:
    """A seeded stand-in for a training run's gradients: a steady pull per weight plus noise, times ``scale``."""
    rng = np.random.default_rng(seed)
    return scale * (rng.normal(0.0, 1.0, size) + rng.normal(0.0, 1.0, (steps, size))).astype(np.float32)


def compare_forms(epsilons=(1e-7, 1e-3, 1e-1), steps: int = 1000, lr: float = 1e-3, scale: float = 1.0,
                  seed: int = 0, at_steps=(1, 10, 100, 1000)) -> pd.DataFrame:
    """How far each NumPy form is from Keras, in units of the learning rate, per ε and step.

    One row per (ε, step): the largest ``|update_keras - update_form| / lr`` over the weights at that
    step, for both forms, and ``1 / sqrt(1 - β2^t)``: the factor by which Keras's ε is effectively larger.
    """
    g = noisy_gradients(steps, scale=scale, seed=seed)
    rows = []
    for eps in epsilons:
        keras_u = keras_adam_updates(g, lr=lr, epsilon=eps)
        for form in FORMS:
            gap = np.abs(keras_u - adam_updates(g, lr=lr, epsilon=eps, form=form)).max(axis=1) / lr
            for t in at_steps:
                if t <= steps:
                    rows.append({"ε": eps, "form": form, "step": t, "max |Δ update| / lr": gap[t - 1]})
    table = pd.DataFrame(rows).pivot_table(index=["ε", "step"], columns="form", values="max |Δ update| / lr")
    table.columns.name = None
    table["Keras ε is effectively ×"] = [1 / np.sqrt(1 - 0.999 ** t) for _, t in table.index]
    return table


# Judging a student's one-step Adam (exercise ex00_adam_update) ------------------------------------------


def step_updates(step, gradients: np.ndarray, lr: float = 1e-3, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7) -> np.ndarray:
    """The updates a one-step function makes over a gradient sequence, in the shape of ``adam_updates``.

    ``step(w, g, m, v, t, lr, beta_1, beta_2, epsilon)`` returns the new ``(w, m, v)``; ``t`` counts from 1
    and ``m``, ``v`` start at zero. The weights are zero before every call, so the update is exactly
    ``-w_new`` (no digits lost subtracting two positions, whatever precision the step computes in).
    """
    g = np.asarray(gradients, dtype=np.float64)
    m = np.zeros(g.shape[1:])
    v = np.zeros(g.shape[1:])
    updates = np.empty_like(g)
    for t in range(1, len(g) + 1):
        w_new, m, v = step(np.zeros(g.shape[1:]), g[t - 1].copy(), m, v, t, lr, beta_1, beta_2, epsilon)
        updates[t - 1] = -np.asarray(w_new, dtype=np.float64)
    return updates


def gap_to_keras(step, gradients: np.ndarray, lr: float = 1e-3, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7) -> float:
    """The largest ``|update_step - update_keras| / lr`` over every step and weight (``inf`` if not finite)."""
    with np.errstate(all="ignore"):
        mine = step_updates(step, gradients, lr, beta_1, beta_2, epsilon)
        gap = np.abs(mine - keras_adam_updates(gradients, lr, beta_1, beta_2, epsilon)) / lr
    return float(gap.max()) if np.all(np.isfinite(gap)) else float("inf")


def first_step_form_gap(gradient: float, lr: float = 1e-3, beta_1: float = 0.9, beta_2: float = 0.999,
                        epsilon: float = 1e-7) -> float:
    """``|Keras's first update - Algorithm 1's first update| / lr`` for one weight whose gradient is ``gradient``.

    Keras's update is measured on ``keras.optimizers.Adam`` itself (float32); Algorithm 1's is computed.
    At step 1 both are ``lr·|g| / (|g| + c·ε)``, with ``c = 1`` for Algorithm 1 and ``1 / sqrt(1 - β2)``
    (31.6 at the default β2) for Keras, so the gap peaks near ``|g| ≈ 5.6 ε`` at about 0.7.
    """
    g = np.full((1, 1), float(gradient), dtype=np.float32)
    keras_u = keras_adam_updates(g, lr, beta_1, beta_2, epsilon)[0, 0]
    paper_u = adam_updates(g, lr, beta_1, beta_2, epsilon, form="algorithm 1")[0, 0]
    return float(abs(keras_u - paper_u) / lr)
