"""Every claim lesson 06 makes about a training run, asserted on exactly that run.

The lesson's base run: a 64-256-256-10 ReLU/softmax net on the first 256 training digits (8 batches
of 32), judged on the same 357 validation digits, Adam at lr 1e-3, 100 epochs. Seeds 0 to 4 unless a
test says otherwise. Measured on Keras 3.15.1 / TensorFlow 2.21 (CPU); measured values in comments.
"""

import math
from dataclasses import replace

import keras
import numpy as np
import pytest
import tensorflow as tf

from adamclinic.lessons.overfitting_or_optimizer import (
    CHANCE_LOSS,
    RegularizedConfig,
    _add_l2_to_gradient,
    adam_scale_summary,
    best_epoch,
    capacity_config,
    classifier,
    curve_summary,
    digits_subset,
    dropout_config,
    early_stopping_config,
    generalization_gap,
    run_regularized,
    run_with_adam_scale,
    weight_decay_config,
    weight_norm,
)
from lesson_cells import plain_keras_cells

pytestmark = pytest.mark.slow  # every test here trains real models (make check leaves them out)

SEEDS = range(5)
FEW_SEEDS = range(3)  # for the expensive runs (width 512, 1440 rows, a second dropout rate)


@pytest.fixture(scope="module")
def base():
    return RegularizedConfig(
        data=digits_subset(256),
        build_model=classifier(256),
        loss="sparse_categorical_crossentropy",
        epochs=100,
        batch_size=32,
    )


class Runs:
    """The lesson's runs by (what, seed), each trained once per module; ``runs(...)`` gives the History,
    ``runs.scale(...)`` the same run's ``sqrt(v_hat) + eps_hat`` per weight (``run_with_adam_scale``)."""

    def __init__(self, base):
        self.base, self.trained = base, {}

    def _get(self, what, seed, make):
        if (what, seed) not in self.trained:
            self.trained[what, seed] = run_with_adam_scale(make(replace(self.base, seed=seed)))
        return self.trained[what, seed]

    def __call__(self, what, seed, make=lambda config: config):
        return self._get(what, seed, make)[0]

    def scale(self, what, seed, make=lambda config: config):
        return self._get(what, seed, make)[1]


@pytest.fixture(scope="module")
def runs(base):
    return Runs(base)


@pytest.mark.parametrize("seed", SEEDS)
def test_overfitting_training_falls_fine_while_validation_turns_up(runs, seed):
    """Section 2: the overfitting run's training loss falls to almost 0; validation bottoms out and rises."""
    s = curve_summary(runs("base", seed))
    assert s["first train loss"] > 1.9 and s["final train loss"] < 1e-3  # 2.1 -> 0.0004..0.0005
    assert 14 <= s["best epoch"] <= 21  # 15..20
    assert 0.5 < s["best val loss"] < 0.6  # 0.523..0.581
    assert 0.1 < s["val_rise"] < 0.22  # 0.13..0.19: final val 0.66..0.74
    assert 0.82 < s["final val accuracy"] < 0.86  # 0.826..0.843: accuracy holds while the val loss rises


@pytest.mark.parametrize("seed", SEEDS)
def test_validation_accuracy_does_not_fall_with_the_rising_validation_loss(runs, seed):
    """Section 2: the val loss rises after its best epoch, the val accuracy does not drop with it."""
    history = runs("base", seed)
    assert history.val_accuracy[-1] >= history.val_accuracy[best_epoch(history) - 1] - 0.02


@pytest.mark.parametrize("seed", SEEDS)
def test_a_true_failure_to_minimize_sits_at_the_chance_loss(runs, seed):
    """Section 2: at lr 0.3 the training loss is stuck at ln 10 and the net guesses."""
    history = runs("lr 0.3", seed, lambda c: c.with_learning_rate(0.3))
    assert not history.diverged
    last_ten = history.loss[-10:]
    assert (np.abs(last_ten - CHANCE_LOSS) < 0.1).all()  # 2.31..2.39 around ln 10 = 2.303
    assert history.val_accuracy[-1] < 0.15  # 0.095..0.137: chance is 0.1
    assert history.val_loss[-1] > 2.2  # validation stuck too (2.25..3.53): no gap opens


@pytest.mark.parametrize("seed", SEEDS)
def test_a_rate_far_too_low_is_slow_not_stuck(runs, seed):
    """Section 2's second Try it: at lr 1e-5 the training loss has left ln 10 and still falls at epoch 100
    (near 1.7); validation falls with it at every epoch, best at the last; 58% to 71% of the digits right."""
    history = runs("lr 1e-5", seed, lambda c: c.with_learning_rate(1e-5))
    assert 1.65 < history.final_loss < 1.78  # 1.68..1.75, well below ln 10 = 2.303
    assert history.loss[-1] < history.loss[-10] - 0.04  # still falling: 0.062..0.066 over the last ten epochs
    assert (np.diff(history.val_loss) < 0).all() and best_epoch(history) == 100
    assert 0.57 < history.val_accuracy[-1] < 0.72  # 0.580..0.706


@pytest.mark.parametrize("seed", FEW_SEEDS)
def test_a_bigger_net_overfits_sooner_and_further_yet_its_best_val_loss_is_lower(runs, seed):
    """Section 3: widths 32, 256, 512 on 256 rows: the best epoch comes earlier, the rise after it grows."""
    small, mid, big = (
        curve_summary(runs(f"width {w}", seed, lambda c, w=w: capacity_config(c, w, 256))) for w in (32, 256, 512)
    )
    assert (
        small["best epoch"] > 55 and 14 <= mid["best epoch"] <= 21 and big["best epoch"] <= 12
    )  # 62..75, 15..20, 8..11
    assert small["val_rise"] < 0.07 < mid["val_rise"]  # 0.02..0.06 vs 0.13..0.19
    assert mid["val_rise"] < big["val_rise"] + 0.03 and big["val_rise"] > 0.2  # 512: 0.21..0.26
    assert (
        big["best val loss"] < small["best val loss"] and mid["best val loss"] < small["best val loss"]
    )  # 0.49..0.55, 0.52..0.58 vs 0.64..0.68
    assert big["final val accuracy"] > small["final val accuracy"]  # 0.84..0.86 vs 0.80..0.81


@pytest.mark.parametrize("seed", FEW_SEEDS)
def test_more_data_shrinks_the_gap(runs, seed):
    """Section 3: the final gap (val minus train loss) falls from 128 to 512 to 1440 rows."""
    gaps = {
        rows: generalization_gap(runs(f"rows {rows}", seed, lambda c, r=rows: capacity_config(c, 256, r)))
        for rows in (128, 512, 1440)
    }
    gaps[256] = generalization_gap(runs("base", seed))
    assert 0.75 < gaps[128] < 0.87  # 0.79..0.83
    assert 0.62 < gaps[256] < 0.78  # 0.66..0.74
    assert 0.5 < gaps[512] < 0.62  # 0.54..0.58
    assert 0.4 < gaps[1440] < 0.52  # 0.44..0.50
    assert gaps[128] > gaps[256] > gaps[512] > gaps[1440]


def test_equal_nominal_strength_is_not_equal_coupled_l2_vs_adamw(runs, base):
    """Section 4: at 1e-3, L2 inside Adam shrinks the weights by half; AdamW's decay does nothing."""
    none = [runs("base", s) for s in SEEDS]
    coupled = [runs("coupled 1e-3", s, lambda c: weight_decay_config(c, "L2 in Adam (coupled)", 1e-3)) for s in SEEDS]
    adamw = [runs("adamw 1e-3", s, lambda c: weight_decay_config(c, "AdamW (decoupled)", 1e-3)) for s in SEEDS]
    for n, c, a in zip(none, coupled, adamw):
        assert 21 < weight_norm(n) < 24.5 and 11 < weight_norm(c) < 13.5  # 22.7..23.1 vs 12.1..12.2
        assert abs(weight_norm(a) / weight_norm(n) - 1) < 0.01  # AdamW 1e-3: the same weights, to 1%
        assert abs(a.val_loss[-1] - n.val_loss[-1]) < 0.01
        assert c.val_loss[-1] < n.val_loss[-1] - 0.05  # 0.57..0.60 vs 0.66..0.74
    mean = lambda hs: float(np.mean([h.val_loss[-1] for h in hs]))  # noqa: E731
    assert 0.55 < mean(coupled) < 0.61 and 0.68 < mean(none) < 0.74  # 0.583 vs 0.709


def test_adamw_at_1_ends_at_coupled_l2s_validation_loss_with_bigger_weights(runs):
    """Section 4: AdamW at 1.0 ends where coupled L2 at 1e-3 does (mean final val loss), weights 15.5..16."""
    coupled = [runs("coupled 1e-3", s, lambda c: weight_decay_config(c, "L2 in Adam (coupled)", 1e-3)) for s in SEEDS]
    adamw = [runs("adamw 1", s, lambda c: weight_decay_config(c, "AdamW (decoupled)", 1.0)) for s in SEEDS]
    for a in adamw:
        assert 14.5 < weight_norm(a) < 17  # 15.5..16.0
        assert 0.5 < a.val_loss[-1] < 0.65  # 0.54..0.62
    difference = np.mean([a.val_loss[-1] for a in adamw]) - np.mean([c.val_loss[-1] for c in coupled])
    assert abs(difference) < 0.03  # 0.583 vs 0.583


# Section 4, "Which AdamW number matches a given λ?": seeds 0 to 2, lr 1e-3 and 1e-4.
COUPLED = lambda config: weight_decay_config(config, "L2 in Adam (coupled)", 1e-3)  # noqa: E731
SLOW = 1e-4


def adamw(wd, lr=None):
    def make(config):
        return weight_decay_config(config if lr is None else config.with_learning_rate(lr), "AdamW (decoupled)", wd)

    return make


def matching_weight_decay(target_norm, low, high):
    """The AdamW weight_decay whose final weight norm is ``target_norm``, read off in log(wd) along the line
    through two nearby runs ``(wd, norm)`` (at most 5% of their gap outside them: seed 1 at lr 1e-3 is 0.4%)."""
    (wd_low, norm_low), (wd_high, norm_high) = low, high
    margin = 0.05 * (norm_low - norm_high)
    assert norm_high - margin <= target_norm <= norm_low + margin, (target_norm, low, high)
    share = (norm_low - target_norm) / (norm_low - norm_high)
    return float(np.exp(np.log(wd_low) + share * (np.log(wd_high) - np.log(wd_low))))


def matches(runs, seed):
    """(matching wd at lr 1e-3, matching wd at lr 1e-4) for coupled L2 at 1e-3, by final weight norm."""
    fast = matching_weight_decay(
        weight_norm(runs("coupled 1e-3", seed, COUPLED)),
        (1.0, weight_norm(runs("adamw 1", seed, adamw(1.0)))),
        (3.0, weight_norm(runs("adamw 3", seed, adamw(3.0)))),
    )
    slow = matching_weight_decay(
        weight_norm(runs("lr 1e-4 coupled 1e-3", seed, lambda c: COUPLED(c.with_learning_rate(SLOW)))),
        (2.0, weight_norm(runs("lr 1e-4 adamw 2", seed, adamw(2.0, SLOW)))),
        (3.0, weight_norm(runs("lr 1e-4 adamw 3", seed, adamw(3.0, SLOW)))),
    )
    return fast, slow


@pytest.mark.parametrize("seed", FEW_SEEDS)
def test_the_matching_weight_decay_does_not_follow_one_over_the_learning_rate(runs, seed):
    """Section 4: the AdamW wd with coupled L2 1e-3's weight norm is 2.7..3.0 at lr 1e-3 and 2.2..2.3 at
    lr 1e-4: about 0.8 times, where the 1/lr rule says 10 times."""
    fast, slow = matches(runs, seed)
    assert 2.6 < fast < 3.1  # 2.71, 3.04, 2.75
    assert 2.1 < slow < 2.4  # 2.27, 2.25, 2.16
    assert 0.7 < slow / fast < 0.9  # 0.84, 0.74, 0.79: the 1/lr rule says 10


@pytest.mark.parametrize("seed", FEW_SEEDS)
def test_the_one_over_lr_rules_weight_decay_over_regularizes_at_lr_1e4(runs, seed):
    """Section 4: at lr 1e-4 the rule's wd = λ/lr = 10 shrinks the weights to 11.3 (coupled: 17.8..18.0)."""
    coupled = runs("lr 1e-4 coupled 1e-3", seed, lambda c: COUPLED(c.with_learning_rate(SLOW)))
    rule = runs("lr 1e-4 adamw 10", seed, adamw(10.0, SLOW))
    assert 17.7 < weight_norm(coupled) < 18.1 and 11.2 < weight_norm(rule) < 11.45  # 17.81..18.00 vs 11.27..11.36
    assert 0.053 < coupled.final_loss < 0.056 and 0.32 < rule.final_loss < 0.36  # 0.0536..0.0552 vs 0.330..0.350
    assert 0.56 < coupled.val_loss[-1] < 0.62 and 0.83 < rule.val_loss[-1] < 0.86  # 0.569..0.611 vs 0.838..0.853


def test_validation_loss_alone_cannot_pin_the_match_at_lr_1e3(runs):
    """Section 4: AdamW at 1.0 and at 3.0 both end within 0.03 of coupled L2's mean final val loss (seeds 0..2)."""
    mean = lambda what, make: np.mean([runs(what, s, make).val_loss[-1] for s in FEW_SEEDS])  # noqa: E731
    coupled = mean("coupled 1e-3", COUPLED)
    assert abs(mean("adamw 1", adamw(1.0)) - coupled) < 0.03  # 0.563 vs 0.584
    assert abs(mean("adamw 3", adamw(3.0)) - coupled) < 0.03  # 0.571 vs 0.584


@pytest.mark.parametrize("seed", FEW_SEEDS)
def test_adams_divisor_spreads_a_hundredfold_and_grows_at_the_lower_learning_rate(runs, seed):
    """Section 4: sqrt(v_hat) at the end of the coupled run: median 3.4e-4..3.8e-4 at lr 1e-3, 80% of the
    weights between ~1e-5 and 1.4e-3; at lr 1e-4 the median is ~1.05e-3, three times larger."""
    fast = adam_scale_summary(runs.scale("coupled 1e-3", seed, COUPLED), l2=1e-3)
    slow = adam_scale_summary(
        runs.scale("lr 1e-4 coupled 1e-3", seed, lambda c: COUPLED(c.with_learning_rate(SLOW))), l2=1e-3
    )
    assert 3.3e-4 < fast["median"] < 3.9e-4  # 3.59e-4, 3.39e-4, 3.79e-4
    assert 1.0e-5 < fast["10th percentile"] < 1.35e-5 and 1.25e-3 < fast["90th percentile"] < 1.4e-3
    assert 95 < fast["90th percentile"] / fast["10th percentile"] < 130  # 110, 123, 105: about a hundred
    assert 1e-3 / fast["10th percentile"] > 75 and 1e-3 / fast["90th percentile"] < 0.8  # 78..95; 0.74..0.78
    assert 2.55 < fast["l2 / median"] < 3.05  # 2.78, 2.95, 2.64
    assert 1.0e-3 < slow["median"] < 1.1e-3 and 0.92 < slow["l2 / median"] < 0.98  # 1.05e-3..1.06e-3; 0.94..0.95
    assert 2.7 < slow["median"] / fast["median"] < 3.2  # 2.95, 3.11, 2.78: larger, not 10 times smaller
    coupled_fast = runs("coupled 1e-3", seed, COUPLED)
    coupled_slow = runs("lr 1e-4 coupled 1e-3", seed, lambda c: COUPLED(c.with_learning_rate(SLOW)))
    assert 0.0064 < coupled_fast.final_loss < 0.0069 and 0.053 < coupled_slow.final_loss < 0.056  # still learning
    # eps_hat = 1e-7 / sqrt(1 - 0.999**800) = 1.35e-7: what a weight the data never move is divided by
    # (without L2, the first layer's weights from the pixels that are 0 in every training digit)
    assert 1.3e-7 < runs.scale("base", seed).min() < 1.4e-7


def test_keras_l2_regularizer_is_half_this_lessons_lambda():
    """Section 4's course note: keras.regularizers.L2(5e-4) has the gradient the lesson's hook adds at λ = 1e-3."""
    weight = tf.Variable(np.random.default_rng(0).normal(size=(8, 4)).astype("float32"))
    with tf.GradientTape() as tape:
        penalty = keras.regularizers.L2(5e-4)(weight)
    keras_gradient = tape.gradient(penalty, weight)
    with tf.GradientTape() as tape:
        hooked = tf.reduce_sum(0.0 * _add_l2_to_gradient(weight, tf.constant(1e-3)))
    hook_gradient = tape.gradient(hooked, weight)
    np.testing.assert_allclose(keras_gradient.numpy(), hook_gradient.numpy(), rtol=1e-6)
    np.testing.assert_allclose(hook_gradient.numpy(), 1e-3 * weight.numpy(), rtol=1e-6)


@pytest.mark.parametrize("seed", range(2))
def test_coupled_l2_at_1_kills_the_net_and_looks_like_a_failure_to_minimize(runs, seed):
    """Section 4: coupled L2 at 1.0 drives every weight to 0: training loss ln 10, chance accuracy."""
    history = runs("coupled 1", seed, lambda c: weight_decay_config(c, "L2 in Adam (coupled)", 1.0))
    assert abs(history.final_loss - CHANCE_LOSS) < 1e-3  # 2.3026
    assert weight_norm(history) < 0.05  # 0.0
    assert history.val_accuracy[-1] < 0.15  # 0.092


@pytest.mark.parametrize("seed", SEEDS)
def test_dropout_raises_the_training_loss_and_delays_the_turn_but_does_not_cure_it(runs, seed):
    """Section 5: dropout 0.5 lifts the training loss ~20x and moves the best epoch later; its best
    validation loss is no better than without dropout, and dropout 0.2 ends worse."""
    none = curve_summary(runs("base", seed))
    half = curve_summary(runs("dropout 0.5", seed, lambda c: dropout_config(c, 0.5)))
    assert half["final train loss"] > 10 * none["final train loss"]  # 0.0075..0.0125 vs 0.0004..0.0005
    assert half["best epoch"] >= none["best epoch"] + 8  # 29..37 vs 15..20
    assert abs(half["best val loss"] - none["best val loss"]) < 0.06  # 0.54..0.59 vs 0.52..0.58
    assert half["val_rise"] > 0.05  # 0.06..0.23: still turning up


@pytest.mark.parametrize("seed", FEW_SEEDS)
def test_dropout_02_ends_worse_than_no_dropout(runs, seed):
    """Section 5: dropout 0.2 ends with a higher validation loss than no dropout."""
    fifth = runs("dropout 0.2", seed, lambda c: dropout_config(c, 0.2))
    assert fifth.val_loss[-1] > runs("base", seed).val_loss[-1]  # 0.70..0.79 vs 0.66..0.73


def test_dropout_05_changes_the_mean_final_val_loss_by_little(runs):
    """Section 5: mean final validation loss 0.71 without dropout, 0.69 with 0.5; three seeds end worse."""
    none = np.array([runs("base", s).val_loss[-1] for s in SEEDS])
    half = np.array([runs("dropout 0.5", s, lambda c: dropout_config(c, 0.5)).val_loss[-1] for s in SEEDS])
    assert abs(half.mean() - none.mean()) < 0.05  # 0.687 vs 0.709
    assert (half > none).sum() == 3  # seeds 0 (by 0.002), 1 and 4 end worse with dropout


@pytest.mark.parametrize("seed", SEEDS)
def test_early_stopping_finds_the_best_epoch_and_saves_most_of_the_rise(runs, seed):
    """Section 6: patience 10 stops 10 epochs after the best one (25..30) instead of training to 100."""
    full = runs("base", seed)
    stopped = runs("patience 10", seed, lambda c: early_stopping_config(c, 10))
    assert not stopped.cancelled
    assert len(stopped.epochs) == best_epoch(stopped) + 10 and 24 <= len(stopped.epochs) <= 31  # 25..30
    assert best_epoch(stopped) == best_epoch(full)  # the same run, stopped
    np.testing.assert_array_equal(stopped.val_loss, full.val_loss[: len(stopped.epochs)])
    saved = full.val_loss[-1] - stopped.val_loss.min()
    assert 0.1 < saved < 0.22  # 0.13..0.19
    assert stopped.val_loss[-1] < full.val_loss[-1] - 0.05  # last weights: 0.57..0.63 vs 0.66..0.74


def test_early_stopping_needs_validation_and_l2_needs_the_coupled_builder(base):
    """Section 4 and 6: the settings the panels cannot mix up are refused with a message."""
    with pytest.raises(ValueError, match="coupled_l2=True"):
        run_regularized(replace(base, l2=1e-3))
    with pytest.raises(ValueError, match="patience"):
        run_regularized(replace(base, patience=0))
    assert math.isclose(CHANCE_LOSS, 2.302585, rel_tol=1e-6)


def test_the_plain_keras_cell_tells_the_same_story_as_the_engine():
    """Section 6's plain-Keras cell: model.fit with EarlyStopping(patience=10, restore_best_weights=True) and the
    engine's patience-10 run (seed 0) each bottom out where the lesson says (epoch 15 to 20, best validation
    loss 0.52 to 0.58, within the claims' margins) and stop 10 epochs later; fit hands back the best epoch's
    weights, the engine keeps the last ones (0.57 to 0.63)."""
    cells = plain_keras_cells("06_overfitting_or_optimizer")
    fit, engine = cells["keras_history"].history, cells["engine_history"]
    for loss, val_loss in ((np.array(fit["loss"]), np.array(fit["val_loss"])), (engine.loss, engine.val_loss)):
        best = int(np.argmin(val_loss)) + 1
        assert loss[0] > 1.9 and loss[-1] < 0.05  # training falls fine: fit 2.10 -> 0.008, engine 2.10 -> 0.007
        assert 14 <= best <= 21 and len(val_loss) == best + 10  # fit: best 14, stops at 24; engine: 18 and 28
        assert 0.5 < val_loss.min() < 0.6  # fit 0.561, engine 0.533
    assert math.isclose(cells["kept_val_loss"], min(fit["val_loss"]), rel_tol=1e-5)  # restore_best_weights
    assert 0.56 < engine.val_loss[-1] < 0.64 and engine.val_loss[-1] > engine.val_loss.min() + 0.03  # last: 0.584
