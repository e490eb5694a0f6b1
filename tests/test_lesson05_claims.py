"""Every claim lesson 05 makes about a training run, asserted on exactly that run (seeds 0 to 4).

The lesson's numbers were measured on Keras 3.15.1 / TensorFlow 2.21 (CPU). The bounds are the
lesson's own words with a little margin; the measured values are in comments.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from adamclinic.data import digits, overlapping_classes, smooth_regression
from adamclinic.engine import TrainConfig, keras_fit, run
from adamclinic.lessons.data_problems import (
    balanced_class_weight,
    binary_scores,
    clean_mse,
    dropped_rows,
    floor_crossing,
    imbalance_config,
    imbalanced,
    imputed,
    label_noise_config,
    loss_share,
    majority_baseline,
    memorization_ratio,
    missing_config,
    nan_autopsy,
    nan_report,
    noise_floor,
    outlier_config,
    outlier_rows,
    sample_noise_floor,
    with_missing,
    with_one_nan,
)
from adamclinic.models import binary_relu_net, digits_relu_net, small_relu_net, small_tanh_net
from lesson_cells import plain_keras_cells

pytestmark = pytest.mark.slow  # every test here trains real models (make check leaves them out)

SEEDS = range(5)


@pytest.fixture(scope="module")
def reg():
    return TrainConfig(data=smooth_regression(), build_model=small_relu_net, epochs=30, batch_size=32, seed=0)


_outlier_cache = {}


def outlier_runs(reg, fraction, where, fix):
    """The section's runs over seeds 0 to 4, and their clean held-out MSE (computed once per setting)."""
    key = (fraction, where, fix)
    if key not in _outlier_cache:
        runs = [
            run(outlier_config(TrainConfig(reg.data, small_relu_net, seed=s), fraction, 30, where, fix)) for s in SEEDS
        ]
        _outlier_cache[key] = runs, np.array([clean_mse(h, h.config.data) for h in runs])
    return _outlier_cache[key]


# Section 1: outliers -----------------------------------------------------------------------------


def test_section_1_two_percent_target_outliers_take_over_the_loss_and_ruin_the_model(reg):
    """Section 1: 2% of targets 30 sd away: training MSE near 15, ~95% of it from the outlier rows,
    clean held-out MSE 0.8-1.3 where a clean run scores 0.08-0.11."""
    clean_runs, clean = outlier_runs(reg, 0.0, "targets", "none")
    dirty_runs, dirty = outlier_runs(reg, 0.02, "targets", "none")
    assert ((clean > 0.075) & (clean < 0.115)).all()  # measured 0.083 .. 0.105
    assert ((dirty > 0.7) & (dirty < 1.4)).all()  # measured 0.80 .. 1.26
    finals = np.array([h.final_loss for h in dirty_runs])
    assert ((finals > 13) & (finals < 17)).all()  # measured 14.5 .. 15.2
    shares = np.array([loss_share(h, outlier_rows(reg.data, 0.02, s)) for s, h in zip(SEEDS, dirty_runs)])
    assert ((shares > 0.92) & (shares < 0.98)).all()  # measured 0.940 .. 0.961
    assert len(outlier_rows(reg.data, 0.02, 0)) == 20


def test_section_1_huber_loss_and_clipping_the_targets_restore_the_clean_score(reg):
    """Section 1: Huber loss brings clean held-out MSE back to 0.086-0.10, clipping to 0.11-0.13; on
    clean data the Huber loss costs nothing (0.076-0.097 against 0.083-0.105)."""
    _, huber = outlier_runs(reg, 0.02, "targets", "Huber loss")
    _, clipped = outlier_runs(reg, 0.02, "targets", "clip targets")
    _, huber_clean = outlier_runs(reg, 0.0, "targets", "Huber loss")
    _, mse_clean = outlier_runs(reg, 0.0, "targets", "none")
    assert ((huber > 0.08) & (huber < 0.105)).all()  # measured 0.086 .. 0.100
    assert ((clipped > 0.105) & (clipped < 0.14)).all()  # measured 0.115 .. 0.130
    assert ((huber_clean > 0.07) & (huber_clean < 0.1)).all()  # measured 0.076 .. 0.097
    assert (huber_clean <= mse_clean + 0.01).all()


def test_section_1_ten_percent_outliers_of_100_sd_push_the_loss_into_the_hundreds(reg):
    """Section 1, Try it: at 10% of targets 100 sd away the training MSE runs into the hundreds, and on the
    clean held-out rows the model is far worse than predicting the mean (MSE 1.0)."""
    for seed in SEEDS:
        history = run(outlier_config(TrainConfig(reg.data, small_relu_net, seed=seed), 0.1, 100))
        assert 200 < history.final_loss < 1000  # measured 893 .. 913
        assert clean_mse(history, history.config.data) > 5  # measured 14.4 .. 29.5


def test_section_1_for_small_errors_the_huber_loss_is_half_the_squared_error():
    """Section 1: Keras's Huber loss (delta 1) is half the squared error below 1, linear above."""
    assert float(keras.losses.Huber()([[0.0]], [[0.5]])) == pytest.approx(0.5 * 0.5**2)
    assert float(keras.losses.Huber()([[0.0]], [[30.0]])) == pytest.approx(30 - 0.5)


def test_section_1_robust_scaler_alone_does_not_fix_outlying_inputs_clipping_does(reg):
    """Section 1: 2% input outliers: clean held-out MSE 0.33-0.49 untouched, 0.23-0.34 with a refitted
    StandardScaler, 0.30-0.41 with RobustScaler, 0.10-0.16 with RobustScaler then clipping to ±3."""
    _, none = outlier_runs(reg, 0.02, "inputs", "none")
    _, standard = outlier_runs(reg, 0.02, "inputs", "standard scaler")
    _, robust = outlier_runs(reg, 0.02, "inputs", "robust scaler")
    _, clipped = outlier_runs(reg, 0.02, "inputs", "robust scaler + clip inputs")
    assert ((none > 0.3) & (none < 0.52)).all()  # measured 0.325 .. 0.489
    assert ((standard > 0.21) & (standard < 0.36)).all()  # measured 0.232 .. 0.335
    assert ((robust > 0.28) & (robust < 0.43)).all()  # measured 0.296 .. 0.409
    assert ((clipped > 0.09) & (clipped < 0.17)).all()  # measured 0.101 .. 0.159
    assert clipped.max() < robust.min() and clipped.max() < standard.min()
    assert (standard < robust).all()  # StandardScaler beats RobustScaler on every seed


# Section 2: class imbalance ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def classes():
    pool, held_out = overlapping_classes()
    base = TrainConfig(
        data=imbalanced(pool, held_out, 0.5),
        build_model=binary_relu_net,
        loss="binary_crossentropy",
        epochs=30,
        batch_size=32,
        seed=0,
    )
    cache = {}

    def get(share, weighted=False):
        key = (share, weighted)
        if key not in cache:
            cache[key] = [
                run(
                    imbalance_config(
                        TrainConfig(base.data, binary_relu_net, loss=base.loss, seed=s), pool, held_out, share, weighted
                    )
                )
                for s in SEEDS
            ]
        return cache[key]

    return get


def scores(histories, name):
    return np.array([binary_scores(h, h.config.data)[name] for h in histories])


def test_section_2_at_5_percent_minority_loss_and_accuracy_look_good_while_the_minority_is_missed(classes):
    """Section 2: at 5% minority the loss ends at 0.08-0.10 (balanced data: 0.25-0.29), training
    accuracy 96-97%, accuracy at the training mix about 96%, but minority recall 0.27-0.35 and
    balanced accuracy 0.63-0.67; always-majority scores 95%."""
    even, rare = classes(0.5), classes(0.05)
    even_loss = np.array([h.final_loss for h in even])
    rare_loss = np.array([h.final_loss for h in rare])
    assert ((even_loss > 0.24) & (even_loss < 0.3)).all()  # measured 0.252 .. 0.289
    assert ((rare_loss > 0.075) & (rare_loss < 0.105)).all()  # measured 0.082 .. 0.097
    train_acc = np.array([h.epochs[-1].accuracy for h in rare])
    assert ((train_acc > 0.96) & (train_acc < 0.975)).all()  # measured 0.964 .. 0.972
    mix = scores(rare, "accuracy at the training mix")
    assert ((mix > 0.95) & (mix < 0.97)).all()  # measured 0.957 .. 0.964
    recall = scores(rare, "minority recall")
    assert ((recall > 0.25) & (recall < 0.37)).all()  # measured 0.267 .. 0.346
    balanced = scores(rare, "balanced accuracy")
    assert ((balanced > 0.62) & (balanced < 0.68)).all()  # measured 0.632 .. 0.671
    assert majority_baseline(rare[0].config.data) == pytest.approx(0.95, abs=0.001)
    assert (scores(even, "minority recall") > 0.8).all()  # measured 0.820 .. 0.866


def test_section_2_at_2_percent_minority_the_model_nearly_always_answers_majority(classes):
    """Section 2: at 2% minority the minority recall drops to 0.05-0.2."""
    recall = scores(classes(0.02), "minority recall")
    assert ((recall > 0.04) & (recall < 0.21)).all()  # measured 0.055 .. 0.202
    # on held-out rows that are half minority, it calls fewer than one in ten "minority"
    assert (scores(classes(0.02), "predicted minority share") < 0.1).all()  # measured 0.026 .. 0.098


def test_section_2_class_weights_buy_minority_recall_for_accuracy(classes):
    """Section 2: class weights (about 0.53 and 10) raise minority recall to 0.66-0.70 and balanced
    accuracy to 0.77-0.81; the weighted loss ends at 0.20-0.26 and the accuracy at the training mix
    falls to 0.86-0.91, below always-majority's 0.95."""
    rare, weighted = classes(0.05), classes(0.05, weighted=True)
    weights = balanced_class_weight(weighted[0].config.data)
    assert weights[0] == pytest.approx(0.526, abs=0.005) and weights[1] == pytest.approx(10.04, abs=0.05)
    recall = scores(weighted, "minority recall")
    assert ((recall > 0.64) & (recall < 0.72)).all()  # measured 0.660 .. 0.702
    assert (recall > scores(rare, "minority recall") + 0.3).all()
    balanced = scores(weighted, "balanced accuracy")
    assert ((balanced > 0.76) & (balanced < 0.82)).all()  # measured 0.770 .. 0.811
    loss = np.array([h.final_loss for h in weighted])
    assert ((loss > 0.19) & (loss < 0.27)).all()  # measured 0.202 .. 0.257
    mix = scores(weighted, "accuracy at the training mix")
    assert ((mix > 0.85) & (mix < 0.92)).all()  # measured 0.858 .. 0.908
    assert (mix < 0.95).all()


# Section 3: label noise --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def noisy():
    data = digits()
    cache = {}

    def get(fraction):
        if fraction not in cache:
            cache[fraction] = [
                run(
                    label_noise_config(
                        TrainConfig(data, digits_relu_net, loss="sparse_categorical_crossentropy", epochs=30, seed=s),
                        fraction,
                    )
                )
                for s in SEEDS
            ]
        return cache[fraction]

    return get


def test_section_3_the_loss_floor_formula():
    """Section 3: the floor is 0.94 at 20% wrong labels, 1.55 at 40% and 1.99 at 60%."""
    assert noise_floor(0.2) == pytest.approx(0.940, abs=0.002)
    assert noise_floor(0.4) == pytest.approx(1.552, abs=0.002)
    assert noise_floor(0.6) == pytest.approx(1.991, abs=0.002)
    assert noise_floor(0.0) == 0.0
    # the lesson reads it at p = 0.2: 0.8 × 0.22 + 0.2 × 3.81 ≈ 0.94
    assert -np.log(0.8) == pytest.approx(0.22, abs=0.005) and -np.log(0.2 / 9) == pytest.approx(3.81, abs=0.005)
    assert 0.8 * 0.22 + 0.2 * 3.81 == pytest.approx(noise_floor(0.2), abs=0.005)


@pytest.mark.parametrize("fraction, low, high", [(0.2, 0.92, 0.99), (0.4, 1.49, 1.545)])
def test_section_3_wrong_labels_put_a_floor_under_the_training_loss(noisy, fraction, low, high):
    """Section 3: the training loss ends near the floor (0.93-0.97 at 20%; 1.50-1.53 at 40%, just below its
    1.55), flat, and training accuracy sits near 1 - p (0.78-0.79, 0.58-0.59)."""
    runs = noisy(fraction)
    finals = np.array([h.final_loss for h in runs])
    assert ((finals > low) & (finals < high)).all()  # measured 0.934 .. 0.973 / 1.501 .. 1.528
    assert (np.abs(finals - noise_floor(fraction)) < 0.06).all()
    if fraction == 0.4:
        assert (finals < noise_floor(fraction)).all()  # already below its floor of 1.552
    assert all(h.loss[-5:].std() < 0.015 for h in runs)  # flat: measured std 0.005 .. 0.008
    assert all(not h.diverged for h in runs)
    accuracy = np.array([h.epochs[-1].accuracy for h in runs])
    assert (np.abs(accuracy - (1 - fraction)) < 0.03).all()  # measured 0.778 .. 0.790 / 0.583 .. 0.590


def test_section_3_the_model_stays_right_on_clean_labels(noisy):
    """Section 3: clean held-out accuracy 0.87-0.90 at 20% wrong labels, 0.83-0.87 at 40%, against
    0.89-0.91 on clean labels."""
    clean = np.array([h.val_accuracy[-1] for h in noisy(0.0)])
    twenty = np.array([h.val_accuracy[-1] for h in noisy(0.2)])
    forty = np.array([h.val_accuracy[-1] for h in noisy(0.4)])
    assert ((clean > 0.885) & (clean < 0.915)).all()  # measured 0.894 .. 0.905
    assert ((twenty > 0.86) & (twenty < 0.905)).all()  # measured 0.871 .. 0.896
    assert ((forty > 0.825) & (forty < 0.88)).all()  # measured 0.835 .. 0.868


def test_section_3_below_the_floor_the_model_memorizes(noisy):
    """Section 3: the loss crosses the floor at epoch 19-25 with 40% wrong labels (ending at 1.50-1.53) and
    at epoch 12-14 with 60% (ending at 1.88-1.89); the sample's own floor lies 0.02-0.04 lower (1.52 at
    40%, 1.96 at 60%): at 60% the loss ends far below it, at 40% about at it."""
    data = digits()
    forty, sixty = noisy(0.4), noisy(0.6)
    assert [floor_crossing(h, noise_floor(0.4)) for h in forty] == [25, 21, 19, 23, 22]
    assert [floor_crossing(h, noise_floor(0.6)) for h in sixty] == [13, 12, 13, 14, 13]
    finals = np.array([h.final_loss for h in sixty])
    assert ((finals > 1.86) & (finals < 1.91)).all()  # measured 1.875 .. 1.892; floor 1.991
    for fraction in (0.2, 0.4, 0.6):
        gaps = np.array([noise_floor(fraction) - sample_noise_floor(h.config.data, data) for h in noisy(fraction)])
        assert ((gaps > 0.02) & (gaps < 0.04)).all()  # measured 0.025 .. 0.039
    sample = np.array([sample_noise_floor(h.config.data, data) for h in sixty])
    assert ((sample > 1.95) & (sample < 1.97)).all() and (finals < sample - 0.05).all()  # 1.955 .. 1.967
    sample = np.array([sample_noise_floor(h.config.data, data) for h in forty])
    assert ((sample > 1.515) & (sample < 1.53)).all()  # 1.519 .. 1.525
    assert (np.abs(np.array([h.final_loss for h in forty]) - sample) < 0.03).all()  # about at it


@pytest.mark.parametrize("fraction", [0.2, 0.4, 0.6])
def test_section_3_the_memorization_ratio_shows_it_at_every_noise_level(noisy, fraction):
    """Section 3: after 30 epochs a mislabelled image gets its own wrong label 1.25 to 1.6 times the
    probability the same wrong digit gets on the other mislabelled images of its class, at every noise
    level (1 means nothing memorized), even at 20% where the loss sits at the floor."""
    ratios = np.array([memorization_ratio(h, digits()) for h in noisy(fraction)])
    assert ((ratios > 1.22) & (ratios < 1.62)).all()  # 1.43-1.58 / 1.28-1.34 / 1.25-1.34


def test_the_plain_keras_cell_lands_on_the_floor_as_the_engine_does():
    """Section 3's plain-Keras cell: model.fit with 20% wrong labels, like the engine's run of the same data,
    ends flat at the floor (0.93-0.97, floor 0.94), training accuracy near 0.8, clean held-out accuracy
    0.87-0.90."""
    cells = plain_keras_cells("05_data_problems")
    fit, engine = cells["keras_history"].history, cells["engine_history"]
    runs = {
        "model.fit": (np.array(fit["loss"]), fit["accuracy"][-1], fit["val_accuracy"][-1]),
        "engine": (engine.loss, engine.epochs[-1].accuracy, engine.val_accuracy[-1]),
    }
    for name, (losses, accuracy, held_out) in runs.items():
        assert 0.92 < losses[-1] < 0.99, name  # model.fit 0.970, engine 0.967
        assert abs(losses[-1] - noise_floor(0.2)) < 0.06, name
        assert losses[-5:].std() < 0.015, name  # flat
        assert abs(accuracy - 0.8) < 0.03, name  # model.fit 0.780, engine 0.778
        assert 0.86 < held_out < 0.905, name  # model.fit 0.880, engine 0.874


# Section 4: NaN -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_nan(reg):
    return with_one_nan(reg.data, row=0, column=3)


def test_section_4_the_engine_refuses_nan_inputs_by_default(one_nan):
    """Section 4: the engine refuses a NaN input with a message saying what to do."""
    with pytest.raises(ValueError, match="NaN or infinite.*impute or drop"):
        run(TrainConfig(data=one_nan, build_model=small_relu_net))
    assert int(np.isnan(one_nan.x_train).sum()) == 1 and one_nan.x_train.size == 10240


@pytest.mark.parametrize("net", [small_relu_net, small_tanh_net])
def test_section_4_in_the_engine_both_networks_turn_nan_in_the_first_epoch(one_nan, net):
    """Section 4: with check_inputs=False, under the engine (XLA), both runs are NaN at epoch 1."""
    history = run(TrainConfig(data=one_nan, build_model=net, check_inputs=False))
    assert history.diverged_at == 1


def test_section_4_eager_relu_keeps_nan():
    """Section 4: run eagerly, keras.ops.relu(NaN) is NaN (oneDNN's fused graph kernel maps it to 0)."""
    assert np.isnan(float(keras.ops.relu(float("nan"))))


def onednn_on() -> bool:
    """Whether TensorFlow runs its oneDNN kernels in this process. On Linux it does by default only on a
    CPU with AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX (the Intel AVX-512 reference machine: on; the AMD
    EPYC without AVX-512: off); ``TF_ENABLE_ONEDNN_OPTS=1`` or ``0``, set before TensorFlow loads, overrides it."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def relu_fit_autopsy(data, seed: int) -> dict:
    """Section 4's ReLU cell: ``keras_fit`` for 5 epochs on the data with one NaN, its losses and its autopsy."""
    history = keras_fit(TrainConfig(data=data, build_model=small_relu_net, epochs=5, seed=seed))
    return {"losses": [float(v) for v in history.loss], **nan_autopsy(history)}


def assert_relu_fit_dies_as_onednn_decides(autopsy: dict, onednn: bool, target_variance: float) -> None:
    """With oneDNN (its fused matmul + bias + ReLU kernel maps NaN to 0): finite losses ending at about
    0.958, the loss of predicting a constant; exactly one NaN row in the first layer (row 3, the NaN's
    feature, 32 weights); constant predictions. Without oneDNN (TensorFlow's own ReLU keeps NaN): every loss
    NaN from epoch 1 and every weight NaN, as with tanh. Seeds 0-4 and 5-11, final losses: Intel AVX-512
    (oneDNN on by default) 0.958 on 0-4; AMD AVX2 with TF_ENABLE_ONEDNN_OPTS=1 0.9575 .. 0.9583 on 0-11;
    AMD AVX2 by default (oneDNN off) NaN from epoch 1 on 0-11."""
    losses = np.array(autopsy["losses"])
    if onednn:
        assert np.isfinite(losses).all()
        assert autopsy["final loss"] == pytest.approx(0.958, abs=0.003)
        assert autopsy["final loss"] == pytest.approx(target_variance, rel=0.01)
        assert autopsy["first-layer rows with NaN"] == [3]
        assert autopsy["NaN weights"] == 32
        assert autopsy["prediction spread"] < 1e-6 and autopsy["NaN predictions"] == 0
    else:
        assert np.isnan(losses).all() and autopsy["diverged at epoch"] == 1
        assert autopsy["NaN weights"] == autopsy["weights"]
        assert autopsy["NaN predictions"] > 0


@pytest.mark.parametrize("seed", SEEDS)
def test_section_4_with_model_fit_a_relu_net_dies_silently_with_onednn_loudly_without(one_nan, seed):
    """Section 4: ReLU with model.fit (5 epochs), in this process, with the oneDNN setting TensorFlow chose
    for this CPU: silent death with oneDNN, a NaN loss at once without (see the assert helper)."""
    autopsy = relu_fit_autopsy(one_nan, seed)
    assert_relu_fit_dies_as_onednn_decides(autopsy, onednn_on(), float(one_nan.y_train.var()))


_OTHER_ONEDNN_RUN = """
import json, sys
sys.path.insert(0, {tests!r})
from adamclinic.data import smooth_regression
from adamclinic.lessons.data_problems import with_one_nan
from test_lesson05_claims import SEEDS, onednn_on, relu_fit_autopsy
data = with_one_nan(smooth_regression(), row=0, column=3)
print(json.dumps({{"onednn": onednn_on(), "runs": [relu_fit_autopsy(data, seed) for seed in SEEDS]}}))
"""


def test_section_4_switching_onednn_switches_how_the_relu_net_dies(one_nan):
    """Section 4's other half, whichever CPU runs the suite: the same five ReLU runs in a fresh process
    with oneDNN switched the other way (TF_ENABLE_ONEDNN_OPTS), so both outcomes the lesson describes are
    checked on every machine (about 16 s of CPU, mostly importing TensorFlow)."""
    here = onednn_on()
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0" if here else "1"}
    code = _OTHER_ONEDNN_RUN.format(tests=str(Path(__file__).parent))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["onednn"] is (not here)
    for autopsy in result["runs"]:
        assert_relu_fit_dies_as_onednn_decides(autopsy, not here, float(one_nan.y_train.var()))


@pytest.mark.parametrize("seed", SEEDS)
def test_section_4_with_model_fit_a_tanh_net_turns_nan_at_once(one_nan, seed):
    """Section 4: tanh with model.fit: every loss NaN from the first epoch, every weight NaN."""
    history = keras_fit(TrainConfig(data=one_nan, build_model=small_tanh_net, epochs=5, seed=seed))
    assert np.isnan(history.loss).all() and history.diverged_at == 1
    autopsy = nan_autopsy(history)
    assert autopsy["NaN weights"] == autopsy["weights"]


def test_section_4_finding_missing_values(reg):
    """Section 4: 1% of cells missing is 102 NaN in 98 rows (about 10% of the rows); 20% of cells
    touch 904 of 1024 rows (almost nine in ten)."""
    holes = with_missing(reg.data, 0.01, seed=0)
    assert int(np.isnan(holes.x_train).sum()) == 102
    assert int(nan_report(holes.x_train).sum()) == 102
    assert int(np.isnan(holes.x_train).any(axis=1).sum()) == 98
    assert int(np.isnan(with_missing(reg.data, 0.2, seed=0).x_train).any(axis=1).sum()) == 904
    repaired = imputed(holes)
    assert not np.isnan(repaired.x_train).any() and not np.isnan(repaired.x_val).any()
    np.testing.assert_array_equal(repaired.x_val, reg.data.x_val)  # held-out rows had no NaN: untouched
    assert len(dropped_rows(holes).x_train) == 1024 - 98


@pytest.mark.parametrize(
    "fraction, impute_range, drop_range, rows_left",
    [
        (0.05, (0.085, 0.13), (0.095, 0.15), 608),  # measured 0.093 .. 0.123 / 0.104 .. 0.139
        (0.2, (0.11, 0.16), (0.38, 0.75), 96),  # measured 0.120 .. 0.151 / 0.406 .. 0.702
    ],
)
def test_section_4_imputing_beats_dropping_when_many_cells_are_missing(
    reg, fraction, impute_range, drop_range, rows_left
):
    """Section 4: clean held-out MSE: impute 0.093-0.123 (5%) and 0.12-0.15 (20%); drop rows
    0.104-0.139 with 608 rows left (5%) and 0.41-0.70 with 96 rows left (20%)."""
    for seed in SEEDS:
        base = TrainConfig(reg.data, small_relu_net, seed=seed)
        imputed_run = run(missing_config(base, fraction, "impute (median)"))
        dropped_run = run(missing_config(base, fraction, "drop rows"))
        assert impute_range[0] < clean_mse(imputed_run, imputed_run.config.data) < impute_range[1]
        assert drop_range[0] < clean_mse(dropped_run, dropped_run.config.data) < drop_range[1]
        assert len(dropped_run.config.data.x_train) == rows_left


def test_section_4_the_panel_default_lets_one_nan_through_and_dies(reg):
    """Section 4: the missing-values panel starts with one NaN let through: NaN at epoch 1 in the engine."""
    config = missing_config(reg, 0.0001, "let NaN through")
    assert int(np.isnan(config.data.x_train).sum()) == 1
    assert run(config).diverged_at == 1


# Panels: every control retrains through the pure config functions above ----------------------------


def test_panels_retrain_live_when_a_control_moves(reg):
    """Sections 1-4: each panel's controls build their config with the tested functions, and a control
    move trains a fresh run in the background and scores it on the board."""
    from adamclinic.lessons.data_problems import imbalance_panel, label_noise_panel, missing_panel, outlier_panel

    pool, held_out = overlapping_classes()
    cls = TrainConfig(imbalanced(pool, held_out, 0.5), binary_relu_net, loss="binary_crossentropy", epochs=3)
    dig = TrainConfig(digits(), digits_relu_net, loss="sparse_categorical_crossentropy", epochs=3)
    short = TrainConfig(reg.data, small_relu_net, epochs=3)
    cases = [
        (outlier_panel(short, min_seconds_per_epoch=0), "fix", "Huber loss", lambda c: c.loss == "huber"),
        (
            imbalance_panel(cls, pool, held_out, min_seconds_per_epoch=0),
            "weighted",
            True,
            lambda c: c.class_weight is not None,
        ),
        (
            label_noise_panel(dig, min_seconds_per_epoch=0),
            "fraction",
            0.5,
            lambda c: c.label().startswith("50% labels wrong,"),
        ),
        (
            missing_panel(short, min_seconds_per_epoch=0),
            "handling",
            "impute (median)",
            lambda c: not np.isnan(c.data.x_train).any(),
        ),
    ]
    for panel, name, value, check in cases:
        panel.controls[name].value = value
        panel.wait(timeout=120)
        assert len(panel.histories) == 1 and check(panel.histories[0].config)
        assert "Held-out scores" in panel.views[0].widget.value
