"""Every claim lesson 03 makes about a training run, asserted on exactly that run (seeds 0 to 4).

The lesson's numbers were measured on Keras 3.15.1 / TensorFlow 2.21 (CPU); measured values are in
the comments, the bounds are the lesson's words with margin.
"""

from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf

from adamclinic.data import load_csv, parcels
from adamclinic.engine import TrainConfig, run, seed_everything, step_trace
from adamclinic.lessons.feature_scaling import (
    DISTANCE,
    SCALERS,
    first_layer_at_init,
    first_layer_gradient,
    first_layer_table,
    leak_effect,
    leak_experiment,
    leak_summary,
    scaled_config,
    spread_config,
    spread_parcels,
)
from adamclinic.models import parcel_relu_net, parcel_tanh_net
from lesson_cells import plain_keras_cells

pytestmark = pytest.mark.slow  # every test here trains real models (make check leaves them out)

SEEDS = range(5)
EPSILON = 1e-7  # Keras's Adam ε, added to each weight's own running gradient size


def rms(values):
    return float(np.sqrt(np.mean(np.square(values))))


def distance_gradient(k, seed, build_model=parcel_relu_net):
    """The gradient of the first-layer weights that read distance_m (one per unit), at initialization."""
    return first_layer_gradient(build_model, spread_parcels(k), seed=seed)[DISTANCE]


@pytest.fixture(scope="module")
def base():
    return TrainConfig(parcels(), parcel_relu_net, learning_rate=1e-3, epochs=30, batch_size=32, seed=0)


@pytest.fixture(scope="module")
def runs(base):
    """Histories by key, shared by the tests below: ("scaled", k, scaler, seed) or ("spread", k, optimizer, net, seed)."""
    cache = {}

    def get(*key):
        if key not in cache:
            if key[0] == "scaled":
                _, k, scaler, seed = key
                config = replace(scaled_config(base, k, scaler), seed=seed)
            else:
                _, k, optimizer, net, seed = key
                config = replace(spread_config(base, k, optimizer, build_model=net), seed=seed)
            cache[key] = run(config)
        return cache[key]

    return get


def test_the_columns_span_eight_orders_of_magnitude():
    """Section 1: the typical sizes run from about 5e-3 (wall_m) to about 4e5 (distance_m)."""
    medians = load_csv("parcels").drop(columns="cost").abs().median()
    assert 1e-3 < medians["wall_m"] < 1e-2  # 0.0045
    assert 1e5 < medians["distance_m"] < 1e6  # about 4e5
    assert medians.max() / medians.min() > 1e7


@pytest.mark.parametrize("seed", SEEDS)
def test_unscaled_parcels_end_far_worse_than_predicting_the_mean(runs, seed):
    """Section 2: no scaler, Adam at 1e-3: first epoch around 1e8, final loss in the hundreds or thousands."""
    history = runs("scaled", 0, "none", seed)
    assert not history.diverged
    assert 1e8 < history.loss[0] < 1e10  # measured 1.10e8 .. 3.95e9
    assert 200 < history.final_loss < 5000  # measured 237 .. 4490; the mean's loss is 1.0


@pytest.mark.parametrize("seed", SEEDS)
def test_fixing_one_unit_is_not_enough(runs, seed):
    """Section 2: distance in units of 100 km (k=-5) but no scaler: still far above 1.0 (3.5 .. 141)."""
    assert runs("scaled", -5, "none", seed).final_loss > 2  # measured 3.47 .. 140.7


@pytest.mark.parametrize("seed", SEEDS)
def test_every_scaler_trains_and_standard_is_best_here(runs, seed):
    """Section 2: StandardScaler about 0.02, RobustScaler about 0.03, MinMaxScaler 0.04-0.06."""
    final = {s: runs("scaled", 0, s, seed).final_loss for s in SCALERS[1:]}
    assert 0.018 < final["StandardScaler"] < 0.026  # measured 0.021 .. 0.023
    assert 0.02 < final["RobustScaler"] < 0.036  # measured 0.024 .. 0.031
    assert 0.03 < final["MinMaxScaler"] < 0.065  # measured 0.038 .. 0.057
    assert final["StandardScaler"] < final["RobustScaler"] < final["MinMaxScaler"]
    assert 1.5 < final["MinMaxScaler"] / final["StandardScaler"] < 3  # "about twice": 1.7 .. 2.6


def test_the_opening_figure_on_the_validation_rows(runs):
    """The figure (seed 0, validation loss): raw units end hundreds of times above 1.0 without diverging, one column
    in sensible units (k=-5) ends above 1, and both scalers shown end far below 1."""
    raw = runs("scaled", 0, "none", 0)
    assert not raw.diverged and 100 < raw.val_loss[-1] < 1000  # measured 436
    assert 1 < runs("scaled", -5, "none", 0).val_loss[-1] < 10  # measured 4.5
    assert runs("scaled", 0, "StandardScaler", 0).val_loss[-1] < 0.1  # measured 0.030
    assert runs("scaled", 0, "MinMaxScaler", 0).val_loss[-1] < 0.1  # measured 0.060


@pytest.mark.parametrize("scaler", SCALERS[1:])
def test_with_a_scaler_the_unit_slider_changes_nothing(runs, scaler):
    """Section 2: with any scaler, distance in metres (k=0) or millimetres (k=3) gives the same run."""
    same = runs("scaled", 0, scaler, 0).loss, runs("scaled", 3, scaler, 0).loss
    np.testing.assert_allclose(*same, rtol=1e-3)


@pytest.mark.parametrize("seed", SEEDS)
def test_adam_degrades_with_one_large_feature_but_never_diverges(runs, seed):
    """Section 3: Adam's final loss 0.02 (k=0), about 0.07-0.1 (k=2), above 0.4 (k=4); no NaN."""
    final = {k: runs("spread", k, "adam", parcel_relu_net, seed) for k in (0, 2, 4)}
    assert not any(h.diverged for h in final.values())
    assert 0.018 < final[0].final_loss < 0.026  # measured 0.021 .. 0.023
    assert 0.055 < final[2].final_loss < 0.12  # measured 0.068 .. 0.099
    assert final[4].final_loss > 0.4  # measured 0.43 .. 0.81, and 51 for seed 3
    assert final[4].loss[0] > 1e4  # first epoch: measured 1.9e4 .. 2.5e6


def test_adam_k4_seed_3_is_a_blow_up_not_a_plateau(runs):
    """Section 3: at k=4 one of the five seeds (seed 3) ends near 51, far above the mean's loss."""
    assert runs("spread", 4, "adam", parcel_relu_net, 3).final_loss > 10  # measured 51.3


@pytest.mark.parametrize("seed", SEEDS)
def test_adams_step_stays_near_the_learning_rate_however_large_the_gradient(base, seed):
    """Section 3: the distance weights' gradients are about 1e2 (k=2) and 1e6 (k=4) per weight at initialization;
    yet the largest step any weight takes in the first epoch is 1.0 to 1.2 learning rates, at k = 0, 2 and 4."""
    assert 1e2 < rms(distance_gradient(2, seed)) < 1e3  # measured 1.4e2 .. 7.4e2
    assert 1e6 < rms(distance_gradient(4, seed)) < 1e7  # measured 1.3e6 .. 7.4e6
    for k in (0, 2, 4):
        trace = step_trace(replace(spread_config(base, k, "adam"), seed=seed), epochs=1)
        assert 0.95 < trace.largest_step_in_learning_rates < 1.3  # measured 1.001 .. 1.211


@pytest.mark.parametrize("seed", SEEDS)
def test_sgd_diverges_where_adam_does_not(runs, seed):
    """Section 3: SGD (lr 1e-2) trains at k=0 (about 0.045), and at k=4 is NaN in the first epoch."""
    assert 0.04 < runs("spread", 0, "sgd", parcel_relu_net, seed).final_loss < 0.05  # 0.043 .. 0.046
    assert runs("spread", 4, "sgd", parcel_relu_net, seed).diverged_at == 1


def test_sgd_at_k2_diverges_in_four_seeds_of_five(runs):
    """Section 3: at k=2 SGD is NaN in epoch 1 for 4 of 5 seeds; the fifth ends near 3e5."""
    histories = [runs("spread", 2, "sgd", parcel_relu_net, s) for s in SEEDS]
    assert sum(h.diverged_at == 1 for h in histories) == 4
    assert all(h.diverged or h.final_loss > 1e3 for h in histories)  # seed 3: 2.8e5


@pytest.mark.parametrize("seed", SEEDS)
def test_a_tiny_feature_is_lost_too(runs, seed):
    """Section 3: at k=-3 and k=-4 Adam ends near 0.38 (the same plateau: distance is as good as absent)."""
    k3 = runs("spread", -3, "adam", parcel_relu_net, seed).final_loss
    k4 = runs("spread", -4, "adam", parcel_relu_net, seed).final_loss
    assert 0.34 < k3 < 0.42 and 0.34 < k4 < 0.42  # 0.370 .. 0.389 and 0.376 .. 0.392
    assert abs(k3 - k4) < 0.03


@pytest.mark.parametrize("seed", SEEDS)
def test_a_tiny_features_weights_are_rescaled_but_cannot_grow_enough(runs, seed):
    """Section 3: at k=-3 and k=-4 the distance weights' gradients are about 1e-4 and 1e-5 per weight (1000 and
    10 000 times smaller than at k=0), still 80 times eps or more, so Adam scales them up: over the 960 steps
    (at most about 0.96 at 0.001 a step) those weights move by 0.82-0.87 (RMS per weight)."""
    g = {k: rms(distance_gradient(k, seed)) for k in (0, -3, -4)}
    assert 7e-5 < g[-3] < 1.6e-4 and 7e-6 < g[-4] < 1.6e-5  # measured 7.8e-5 .. 1.5e-4 and 7.8e-6 .. 1.5e-5
    assert 700 < g[0] / g[-3] < 1500 and 9 < g[-3] / g[-4] < 11  # 880 .. 1320, and 10.0
    assert g[-4] > 75 * EPSILON
    seed_everything(seed)
    start = parcel_relu_net().get_weights()[0][DISTANCE]
    for k in (-3, -4):
        history = runs("spread", k, "adam", parcel_relu_net, seed)
        assert len(history.epochs) * 32 == 960
        moved = rms(history.final_weights[0][DISTANCE] - start)
        assert 0.78 < moved < 0.9 < 960 * history.config.learning_rate  # 0.842 .. 0.870 (k=-3), 0.820 .. 0.845 (k=-4)


def test_at_init_one_large_feature_dominates_and_saturates_the_first_layer():
    """Section 4: pre-activation spread 0.5 / 21 / 2100, share 18% / 99.95% / ~100%, saturated 0.2% / 82% / 99.5%."""
    at = {k: first_layer_at_init(parcel_relu_net, spread_parcels(k)) for k in (0, 2, 4)}
    assert 0.4 < at[0]["pre-activation std"] < 0.6 and 15 < at[2]["pre-activation std"] < 30
    assert 1500 < at[4]["pre-activation std"] < 3000
    assert 0.1 < at[0]["share from the column"] < 0.3  # 0.176
    assert at[2]["share from the column"] > 0.999 and at[4]["share from the column"] > 0.9999
    assert at[0]["saturated fraction"] < 0.01  # 0.0019
    assert 0.75 < at[2]["saturated fraction"] < 0.9  # 0.818
    assert at[4]["saturated fraction"] > 0.99  # 0.9947
    raw = first_layer_at_init(parcel_relu_net, parcels())
    assert raw["saturated fraction"] == 1.0 and 5e4 < raw["pre-activation std"] < 2e5  # 9.0e4


def test_adams_output_step_grows_like_x_and_sgds_far_faster():
    """Section 4: one step moves the outputs by 0.017 / 0.92 / 92 (Adam) and 0.012 / 790 / 6e15 (SGD)."""
    table = first_layer_table(parcel_relu_net)
    adam, sgd = table["one Adam step moves outputs by"], table["one SGD step moves outputs by"]
    assert 0.01 < adam[0] < 0.03 and 0.5 < adam[2] < 1.5 and 50 < adam[4] < 150
    assert 50 < adam[2] / adam[0] < 100 and 90 < adam[4] / adam[2] < 110  # about 100 per factor 100 in x
    assert 0.005 < sgd[0] < 0.02 and 300 < sgd[2] < 2000 and sgd[4] > 1e14


@pytest.mark.parametrize("seed", SEEDS)
def test_tanh_net_saturated_by_a_large_feature_stalls(runs, seed):
    """Section 4: the tanh net ends near 0.04 at k=0, 0.06-0.08 at k=2, and near 0.80 at k=4 (stuck)."""
    assert 0.03 < runs("spread", 0, "adam", parcel_tanh_net, seed).final_loss < 0.05  # 0.036 .. 0.043
    assert 0.05 < runs("spread", 2, "adam", parcel_tanh_net, seed).final_loss < 0.09  # 0.060 .. 0.075
    stuck = runs("spread", 4, "adam", parcel_tanh_net, seed)
    assert 0.78 < stuck.final_loss < 0.82  # 0.795 .. 0.804
    assert stuck.final_loss > 0.7 * stuck.loss[0] or stuck.loss[0] < 1.2  # it barely moved after epoch 1


@pytest.mark.parametrize("seed", SEEDS)
def test_behind_saturated_tanh_units_the_gradient_is_exactly_zero(seed):
    """Section 4: at k=4, on the first batch, 87-97% of the tanh net's first-layer weights have a gradient of
    exactly 0; at k=0 none do."""
    zero = {k: np.mean(first_layer_gradient(parcel_tanh_net, spread_parcels(k), seed=seed) == 0) for k in (0, 4)}
    assert 0.85 < zero[4] < 0.98  # measured 0.875 .. 0.969
    assert zero[0] == 0


def test_float32_tanh_has_slope_exactly_zero_beyond_about_8():
    """Section 4: in float32, tanh's slope is exactly 0 once |z| is above about 8 (7.91)."""
    z = tf.constant([7.5, 7.9, 8.0, -8.0, 20.0])
    with tf.GradientTape() as tape:
        tape.watch(z)
        y = tf.math.tanh(z)
    slope = tape.gradient(y, z).numpy()
    assert slope[0] > 0 and slope[1] > 0 and np.all(slope[2:] == 0)


def test_the_leak_is_negligible_on_small_iid_data():
    """Section 5: StandardScaler, 64/32 rows, 10 splits: leak minus leak-free reported MSE is +0.0002,
    each split within ±0.01, both procedures report about 0.073 and score about 0.09 on held-out rows."""
    table = leak_experiment("same distribution, small data", "StandardScaler", splits=10)
    effect = leak_effect(table)
    assert abs(effect.mean()) < 0.003  # +0.0002
    assert effect.abs().max() < 0.01  # 0.008
    summary = leak_summary(table)
    for procedure in ("fit on everything (leak)", "fit on training rows"):
        assert 0.06 < summary.loc[procedure, "reported test MSE"] < 0.085  # 0.0728, 0.0726
        assert 0.08 < summary.loc[procedure, "held-out MSE"] < 0.105  # 0.0929, 0.0906


def test_under_a_shift_the_leaky_minmax_report_is_better_in_every_split():
    """Section 5: MinMaxScaler, train under 500 km, test and held-out beyond: the leak lowers the reported
    MSE in 10 of 10 splits, by 0.025 on average (0.232 vs 0.257); held-out 0.245 vs 0.268."""
    table = leak_experiment("shifted test period", "MinMaxScaler", splits=10)
    effect = leak_effect(table)
    assert (effect < 0).all()
    assert -0.04 < effect.mean() < -0.015  # -0.025
    summary = leak_summary(table)
    assert 0.21 < summary.loc["fit on everything (leak)", "reported test MSE"] < 0.25  # 0.2316
    assert 0.24 < summary.loc["fit on training rows", "reported test MSE"] < 0.28  # 0.2566
    assert 0.23 < summary.loc["fit on everything (leak)", "held-out MSE"] < 0.26  # 0.2447
    assert 0.25 < summary.loc["fit on training rows", "held-out MSE"] < 0.29  # 0.2683


def test_the_plain_keras_cell_tells_the_same_story_as_the_engine():
    """Section 2's plain-Keras cell: model.fit on the raw parcels, then on parcels standardized by a StandardScaler
    fitted on the training rows; the engine's twin runs beside them. Both fall in section 2's ranges over seeds 0-4."""
    cells = plain_keras_cells("03_feature_scaling")
    scaler, data = cells["scaler"], cells["parcel_data"]
    np.testing.assert_allclose(
        scaler.mean_, data.x_train.astype("float64").mean(axis=0), rtol=1e-4
    )  # training rows only
    for fit, engine in ((cells["fits"][name].history["loss"], cells["engine_runs"][name]) for name in cells["inputs"]):
        assert len(fit) == len(engine.loss) == 30
    for losses in (np.array(cells["fits"]["raw units"].history["loss"]), cells["engine_runs"]["raw units"].loss):
        assert np.isfinite(losses).all()  # no divergence
        assert 1e8 < losses[0] < 1e10  # lesson: first epoch 1e8 .. 4e9; measured 1.21e8 (fit), 1.18e8 (engine)
        assert 200 < losses[-1] < 5000  # lesson: 240 .. 4500; measured 273 (fit), 237 (engine)
    for losses in (
        np.array(cells["fits"]["StandardScaler"].history["loss"]),
        cells["engine_runs"]["StandardScaler"].loss,
    ):
        assert 0.018 < losses[-1] < 0.026  # lesson: 0.021 .. 0.023; measured 0.0219 (fit), 0.0222 (engine)
