"""Every claim lesson 00 makes about an Adam update or an optimizer path, asserted on exactly that computation.

The paths are deterministic (no data, no random initialisation): where the lesson generalises, the
test checks five different starting points instead of five seeds. Measured on Keras 3.15.1 /
TensorFlow 2.21 (CPU); the measured values are in comments.
"""

import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from adamclinic.lessons.adam_from_the_inside import (
    FORMS,
    KINDS,
    QUADRATIC,
    ROSENBROCK,
    SurfacePanel,
    adam_updates,
    compare_forms,
    distance_to_minimum,
    keras_adam_updates,
    noisy_gradients,
    race,
    step_lengths,
    trajectory,
)
from lesson_cells import plain_keras_cells

pytestmark = pytest.mark.slow  # every test here trains real models (make check leaves them out)

STARTS = [(-4.5, 1.2), (4.0, -1.0), (-3.0, -0.5), (2.0, 1.4), (-1.0, 1.0)]


# Section 1 and 2: the update rule and where Keras puts ε ----------------------------------------------


def test_first_update_is_the_learning_rate_times_the_sign():
    """Section 1: the first update is ±lr for every weight, whatever the gradient's size."""
    g = noisy_gradients(steps=1000, size=64, seed=0)
    u = adam_updates(g, lr=1e-3, form="algorithm 1")
    assert np.ptp(np.abs(g[0])) > 1.0  # gradients of very different sizes
    # up to ε: the smallest gradient here (0.0018) loses 6e-5 of its step to ε = 1e-7
    np.testing.assert_allclose(u[0] / 1e-3, np.sign(g[0]), atol=1e-4)


@pytest.mark.parametrize("beta_1, beta_2", [(0.9, 0.999), (0.9, 0.5), (0.0, 0.9), (0.99, 0.9999)])
@pytest.mark.parametrize("form", FORMS)
def test_first_update_is_the_learning_rate_for_any_betas(beta_1, beta_2, form):
    """Section 1: with bias correction the first update is lr·g/|g| for any β1 and β2, in either form, for
    every gradient well above ε (here 1e-3 to 1e3)."""
    g = np.random.default_rng(1).choice([-1.0, 1.0], size=(2, 64)) * np.logspace(-3, 3, 64)
    u = adam_updates(g, lr=1e-3, beta_1=beta_1, beta_2=beta_2, form=form)
    # ε's share: at most 1e-7 / 1e-3 in Algorithm 1, 1e-7 / sqrt(1 - β2) / 1e-3 in Keras's form (1% at 0.9999)
    np.testing.assert_allclose(u[0] / 1e-3, np.sign(g[0]), atol=0.011)  # measured at most 0.0099
    np.testing.assert_allclose(u[0, 32:] / 1e-3, np.sign(g[0, 32:]), atol=1e-5)  # |g| > 1: measured below 9e-6


@pytest.fixture(scope="module")
def forms():
    return compare_forms(epsilons=(1e-7, 1e-3, 1e-1), steps=1000, at_steps=(1, 10, 100, 1000))


def test_epsilon_hat_form_matches_keras_to_float_precision(forms):
    """Section 2: the ε-hat NumPy form matches keras.optimizers.Adam below 1e-5 lr at every step, every ε."""
    g = noisy_gradients(steps=1000, size=64, seed=0)
    for eps in (1e-7, 1e-3, 1e-1, 1.0):
        gap = np.abs(keras_adam_updates(g, epsilon=eps) - adam_updates(g, epsilon=eps, form="epsilon hat"))
        assert gap.max() / 1e-3 < 1e-5  # measured below 2e-6 lr
    assert forms["epsilon hat"].max() < 1e-5


def test_algorithm_1_differs_from_keras_when_epsilon_is_large_and_early(forms):
    """Section 2: Algorithm 1 vs Keras, in units of lr: tiny at the default ε, large at ε = 1e-3 and 0.1."""
    alg1 = forms["algorithm 1"]
    assert 1e-3 < alg1[(1e-7, 1)] < 3e-3  # measured 0.0017
    assert alg1[(1e-7, 10)] < 1e-5 and alg1[(1e-7, 1000)] < 1e-5
    assert alg1[(1e-3, 1)] > 0.5  # measured 0.587: more than half the learning rate
    assert 0.005 < alg1[(1e-3, 10)] < 0.02  # measured 0.0104: about 1%
    assert 0.08 < alg1[(1e-1, 100)] < 0.15  # measured 0.113
    assert 0.01 < alg1[(1e-1, 1000)] < 0.03  # measured 0.0168
    assert 0.6 < alg1.max() < 0.75  # measured 0.698: "up to 0.7 lr"
    # the gap only shrinks with time, for every ε
    for eps in (1e-3, 1e-1):
        values = [alg1[(eps, t)] for t in (1, 10, 100, 1000)]
        assert values == sorted(values, reverse=True)


def test_keras_first_step_is_a_quarter_of_lr_at_epsilon_0_1():
    """Section 2: at ε = 0.1 Keras's first step is about 0.25 lr (median), Algorithm 1's about 0.9 lr."""
    g = noisy_gradients(steps=10, size=64, seed=0)
    assert 0.2 < np.median(np.abs(keras_adam_updates(g, epsilon=0.1)[0])) / 1e-3 < 0.3  # measured 0.247
    assert 0.85 < np.median(np.abs(adam_updates(g, epsilon=0.1, form="algorithm 1")[0])) / 1e-3 < 0.95  # 0.912


def test_what_matters_is_epsilon_relative_to_the_gradient():
    """Section 2: gradients of size 1e-6 with the default ε behave like size 1 with ε = 0.1."""
    small = compare_forms(epsilons=(1e-7,), scale=1e-6, at_steps=(1, 10, 100, 1000))["algorithm 1"]
    unit = compare_forms(epsilons=(1e-1,), scale=1.0, at_steps=(1, 10, 100, 1000))["algorithm 1"]
    np.testing.assert_allclose(small.to_numpy(), unit.to_numpy(), rtol=1e-3)


def test_keras_epsilon_factor_is_one_over_root_of_one_minus_beta2_power(forms):
    """Section 2: Keras's ε acts like 31.6 x ε at step 1, 10 x at 10, 3.2 x at 100, 1.26 x at 1000."""
    factor = forms["Keras ε is effectively ×"].xs(1e-7, level="ε")
    np.testing.assert_allclose(factor.to_numpy(), [31.6, 10.0, 3.24, 1.26], rtol=0.01)
    # and it is the exact algebra: Algorithm 1 with ε / sqrt(1 - β2^t) is Keras's form
    g = noisy_gradients(steps=50, size=8, seed=3)
    keras_form = adam_updates(g, epsilon=0.1, form="epsilon hat")
    for t in (1, 7, 50):
        one = adam_updates(g[:t], epsilon=0.1 / np.sqrt(1 - 0.999**t), form="algorithm 1")[-1]
        np.testing.assert_allclose(one, keras_form[t - 1], rtol=1e-10)


# The paths are real Keras steps ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_compiled_path_is_real_keras_optimizer_steps(kind):
    """Section 3: each path is the stock Keras optimizer stepping two keras.Variables (eager reference)."""
    lr = 0.15 if kind in ("sgd", "momentum") else 0.1
    path = trajectory(QUADRATIC, kind, lr, steps=50)
    make = {
        "adam": lambda: keras.optimizers.Adam(lr),
        "sgd": lambda: keras.optimizers.SGD(lr),
        "momentum": lambda: keras.optimizers.SGD(lr, momentum=0.9),
        "rmsprop": lambda: keras.optimizers.RMSprop(lr),
    }
    x, y = keras.Variable(QUADRATIC.start[0]), keras.Variable(QUADRATIC.start[1])
    optimizer = make[kind]()
    reference = [QUADRATIC.start]
    for _ in range(50):
        with tf.GradientTape() as tape:
            loss = QUADRATIC.f(x.value, y.value)
        optimizer.apply(tape.gradient(loss, [x.value, y.value]), [x, y])
        reference.append((float(x.numpy()), float(y.numpy())))
    np.testing.assert_allclose(path, np.array(reference), atol=1e-4)  # XLA vs eager float32 rounding


def test_trajectory_is_pure():
    """Section 3: the same settings give the same path, whatever ran before."""
    first = trajectory(QUADRATIC, "adam", 0.1, steps=200)
    trajectory(QUADRATIC, "adam", 0.7, beta_1=0.5, beta_2=0.9, epsilon=1e-2, steps=200)
    np.testing.assert_array_equal(first, trajectory(QUADRATIC, "adam", 0.1, steps=200))
    assert first.shape == (201, 2) and tuple(first[0]) == QUADRATIC.start


# Section 3: the narrow valley -------------------------------------------------------------------------


def test_adam_moves_both_coordinates_by_the_learning_rate():
    """Section 3: Adam's first step is 0.1 in x and y (length lr·√2); the first ten are 0.084-0.1 per coordinate."""
    path = trajectory(QUADRATIC, "adam", 0.1, steps=200)
    steps = step_lengths(path)
    np.testing.assert_allclose(steps[0], [0.1, 0.1], rtol=1e-5)
    assert abs(np.hypot(*steps[0]) - 0.1 * np.sqrt(2)) < 1e-5
    assert 0.08 < steps[:10].min() and steps[:10].max() < 0.1 + 1e-6  # measured 0.084 .. 0.1
    gx, gy = 0.1 * QUADRATIC.start[0], 10 * QUADRATIC.start[1]
    assert 25 < abs(gy / gx) < 28  # "about 27 times larger in y"


def test_sgd_jumps_across_then_crawls_along():
    """Section 3: SGD at lr 0.15 steps 1.8 in y and 0.07 in x, y goes 1.2, -0.6, 0.3, -0.15; 0.22 away after 200."""
    path = trajectory(QUADRATIC, "sgd", 0.15, steps=200)
    steps = step_lengths(path)
    np.testing.assert_allclose(steps[0], [0.0675, 1.8], rtol=1e-5)
    np.testing.assert_allclose(path[:4, 1], [1.2, -0.6, 0.3, -0.15], atol=1e-5)
    np.testing.assert_allclose(path[1:, 0] / path[:-1, 0], 0.985, rtol=1e-4)  # x shrinks 1.5% per step
    assert 0.2 < distance_to_minimum(QUADRATIC, path)[-1] < 0.24  # measured 0.219
    assert distance_to_minimum(QUADRATIC, trajectory(QUADRATIC, "adam", 0.1, steps=200))[-1] < 3e-4  # 2.3e-4


@pytest.mark.parametrize("start", STARTS)
def test_from_five_starts_sgd_is_still_far_and_adam_is_close(start):
    """Section 3: from five starts, after 200 steps SGD (0.15) ends 0.05-0.22 away, Adam (0.1) within 0.001."""
    sgd = distance_to_minimum(QUADRATIC, trajectory(QUADRATIC, "sgd", 0.15, steps=200, start=start))[-1]
    adam = distance_to_minimum(QUADRATIC, trajectory(QUADRATIC, "adam", 0.1, steps=200, start=start))[-1]
    assert 0.045 < sgd < 0.225  # measured 0.049 .. 0.219
    assert adam < 1e-3  # measured 1e-5 .. 2.3e-4


def test_sgd_rate_is_capped_by_the_steep_direction_and_adams_is_not():
    """Section 3: SGD at 0.2 flips y between ±1.2 forever, at 0.21 explodes; Adam at lr 1 and 2 ends within 2e-4."""
    at_limit = trajectory(QUADRATIC, "sgd", 0.2, steps=200)
    np.testing.assert_allclose(np.abs(at_limit[:, 1]), 1.2, rtol=1e-5)
    beyond = trajectory(QUADRATIC, "sgd", 0.21, steps=200)
    assert distance_to_minimum(QUADRATIC, beyond)[-1] > 1e7  # measured 2.3e8
    for lr in (1.0, 2.0):
        assert distance_to_minimum(QUADRATIC, trajectory(QUADRATIC, "adam", lr, steps=200))[-1] < 2e-4  # 1.1e-4, 7.9e-5


def test_momentum_overshoots_then_ends_closest():
    """Section 3: SGD + momentum at 0.15 overshoots to x ≈ 1.06, crosses x = 0 seven times, ends closest (~1e-4)."""
    path = trajectory(QUADRATIC, "momentum", 0.15, steps=200)
    assert 1.0 < path[:, 0].max() < 1.1  # measured 1.059
    assert (np.diff(np.sign(path[:, 0])) != 0).sum() == 7
    table = race(
        QUADRATIC,
        {
            "adam": dict(optimizer="adam", lr=0.1),
            "sgd": dict(optimizer="sgd", lr=0.15),
            "momentum": dict(optimizer="momentum", lr=0.15),
            "rmsprop": dict(optimizer="rmsprop", lr=0.1),
        },
    )
    assert table["step 200"].idxmin() == "momentum"
    assert 5e-5 < table.loc["momentum", "step 200"] < 2e-4  # measured 1.16e-4
    assert 0.06 < table.loc["rmsprop", "step 200"] < 0.08  # measured 0.074: "about 0.07"


# Section 4: bias correction ---------------------------------------------------------------------------


def test_without_bias_correction_the_first_steps_are_3_16_lr_and_growing():
    """Section 4: uncorrected first step 0.316 per coordinate, growing to 0.565 at step 6; lowest y -0.79 vs -0.28."""
    plain = trajectory(QUADRATIC, "adam", 0.1, bias_correction=False, steps=200)
    corrected = trajectory(QUADRATIC, "adam", 0.1, steps=200)
    np.testing.assert_allclose(step_lengths(plain)[0], [0.1 * 0.1 / np.sqrt(0.001)] * 2, rtol=1e-4)
    x_steps = step_lengths(plain)[:50, 0]
    assert x_steps.argmax() == 5 and 0.56 < x_steps.max() < 0.57  # measured 0.565 at step 6
    assert -0.80 < plain[:, 1].min() < -0.78 and -0.29 < corrected[:, 1].min() < -0.27
    # "it is even a little closer after 200 steps"
    assert distance_to_minimum(QUADRATIC, plain)[-1] < distance_to_minimum(QUADRATIC, corrected)[-1]


@pytest.mark.parametrize("beta_2, factor", [(0.9999, 10.0), (0.99, 1.0)])
def test_the_uncorrected_first_step_factor_depends_on_the_betas(beta_2, factor):
    """Section 4: without correction the first step is (1 - β1) / √(1 - β2) x lr: 10 x at β2 0.9999, 1 x at 0.99."""
    path = trajectory(QUADRATIC, "adam", 0.1, beta_2=beta_2, bias_correction=False, steps=10)
    np.testing.assert_allclose(step_lengths(path)[0], [0.1 * factor] * 2, rtol=1e-3)


# Section 5: convergence at a fixed learning rate ---------------------------------------------------------


def test_adam_with_default_beta2_converges_on_the_quadratic():
    """Section 5: with β2 = 0.999 Adam (lr 0.1) is closer than 1e-9 by step 500 and keeps falling."""
    d = distance_to_minimum(QUADRATIC, trajectory(QUADRATIC, "adam", 0.1, steps=3000))
    assert d[500] < 1e-9  # measured 3.5e-11
    assert d[1000] < 1e-20 and d[3000] <= d[1000]


@pytest.mark.parametrize("lr, low, high", [(0.1, 0.003, 0.006), (0.01, 0.0003, 0.0006)])
def test_adam_with_short_beta2_hovers_at_a_distance_proportional_to_lr(lr, low, high):
    """Section 5: with β2 = 0.9 the median distance over steps 1000-3000 is 0.004 (lr 0.1) and 0.0004 (lr 0.01)."""
    d = distance_to_minimum(QUADRATIC, trajectory(QUADRATIC, "adam", lr, beta_2=0.9, steps=3000))[1000:]
    assert low < np.median(d) < high  # measured 0.0042 and 0.00043: about lr / 25
    assert d.min() > lr / 1e4  # it never settles: measured min 8.8e-4 and 1.6e-5
    assert d.max() < lr / 10  # measured 0.006 and 0.0006


@pytest.mark.parametrize("lr, distance", [(0.1, 0.0706), (0.01, 0.00632)])
def test_rmsprop_parks_at_about_0_7_lr(lr, distance):
    """Section 5: RMSprop (ρ 0.9) stays 0.071 away at lr 0.1 and 0.0063 at lr 0.01, steps 1000-3000."""
    d = distance_to_minimum(QUADRATIC, trajectory(QUADRATIC, "rmsprop", lr, steps=3000))[1000:]
    np.testing.assert_allclose(d, distance, rtol=0.02)
    assert 0.6 < distance / lr < 0.75


# Section 6: Rosenbrock ---------------------------------------------------------------------------------


def test_rosenbrock_race_after_500_steps():
    """Section 6: after 500 steps Adam 0.1 ends 0.86 away, SGD 0.002 1.06, momentum ~0.01, RMSprop 1.2, Adam 0.5 0.05."""
    table = race(
        ROSENBROCK,
        {
            "adam": dict(optimizer="adam", lr=0.1),
            "adam 0.5": dict(optimizer="adam", lr=0.5),
            "sgd": dict(optimizer="sgd", lr=2e-3),
            "momentum": dict(optimizer="momentum", lr=2e-3),
            "rmsprop": dict(optimizer="rmsprop", lr=0.1),
        },
        steps=500,
        checkpoints=(500,),
    )["step 500"]
    assert abs(distance_to_minimum(ROSENBROCK, np.array([ROSENBROCK.start]))[0] - 2.55) < 0.01
    assert 0.8 < table["adam"] < 0.9  # measured 0.856
    assert 1.0 < table["sgd"] < 1.1  # measured 1.058
    assert 0.005 < table["momentum"] < 0.02  # measured 0.0128
    assert 1.15 < table["rmsprop"] < 1.25  # measured 1.209
    assert 0.04 < table["adam 0.5"] < 0.06  # measured 0.0507
    assert table.idxmin() == "momentum"


def test_sgd_leaves_the_rosenbrock_map_at_0_005():
    """Section 6: plain SGD at lr 0.005 on Rosenbrock ends in NaN."""
    path = trajectory(ROSENBROCK, "sgd", 5e-3, steps=500)
    assert not np.all(np.isfinite(path[-1]))


# The panels --------------------------------------------------------------------------------------------


def test_panel_draws_the_paths_it_is_asked_for():
    """Sections 3 and 6: the panel wraps trajectory(); its drawn lines are the pure function's paths."""
    panel = SurfacePanel(QUADRATIC, lr=0.1, sgd_lr=0.15, compare=("sgd",), steps=200, seconds_per_frame=0.0)
    paths = panel.draw()
    assert set(paths) == {"adam", "sgd"}
    np.testing.assert_array_equal(paths["adam"], trajectory(QUADRATIC, "adam", 0.1, steps=200))
    np.testing.assert_array_equal(paths["sgd"], trajectory(QUADRATIC, "sgd", 0.15, steps=200))
    assert len(panel.paths["adam"].x) == 201 and len(panel.paths["rmsprop"].x) == 0
    panel.controls["bias_correction"].value = False  # a control change redraws in the background
    panel.compare["rmsprop"].value = True
    for _ in range(200):
        if "RMSprop" in panel.status.value:
            break
        time.sleep(0.02)
    assert "RMSprop" in panel.status.value
    np.testing.assert_allclose(
        np.c_[panel.paths["adam"].x, panel.paths["adam"].y],
        trajectory(QUADRATIC, "adam", 0.1, bias_correction=False, steps=200),
    )


def test_panel_survives_a_path_that_leaves_the_map():
    """Section 6: SGD at 0.005 on Rosenbrock goes to NaN; the panel draws what is finite and says so."""
    panel = SurfacePanel(ROSENBROCK, sgd_lr=5e-3, compare=("sgd",), steps=500, chunk=50, seconds_per_frame=0.0)
    panel.draw()
    assert "left the map" in panel.status.value
    assert np.all(np.isfinite(panel.paths["sgd"].x))


def test_forms_are_named():
    assert FORMS == ("algorithm 1", "epsilon hat")


def test_the_plain_keras_cell_walks_the_engines_paths():
    """Section 3's plain-Keras cell: model.fit on two badly scaled features walks the valley as the engine does.

    Adam (lr 0.1) steps 0.1 in x and y, then ends within 3e-4 of the minimum; SGD (lr 0.15) steps 0.0675 and
    1.8, and is still 0.2-0.24 away after 200 steps, in model.fit and in the engine alike.
    """
    cells = plain_keras_cells("00_adam_from_the_inside")
    for paths in (cells["keras_paths"], cells["engine_paths"]):
        adam, sgd = paths["Adam, lr 0.1"], paths["SGD, lr 0.15"]
        assert adam.shape == sgd.shape == (201, 2)
        # float32 positions near 4.5 are 5e-7 apart, so a step read off two of them is good to about 1e-5
        np.testing.assert_allclose(step_lengths(adam)[0], [0.1, 0.1], rtol=1e-4)
        assert distance_to_minimum(QUADRATIC, adam)[-1] < 3e-4  # measured 2.3e-4 in both
        np.testing.assert_allclose(step_lengths(sgd)[0], [0.0675, 1.8], rtol=1e-4)
        assert 0.2 < distance_to_minimum(QUADRATIC, sgd)[-1] < 0.24  # measured 0.219 in both
    # the same steps, not only the same story: float32 rounding apart, the paths coincide
    for name in ("Adam, lr 0.1", "SGD, lr 0.15"):
        np.testing.assert_allclose(cells["keras_paths"][name], cells["engine_paths"][name], atol=1e-4)
