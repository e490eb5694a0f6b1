"""Every claim lesson 06 makes about a training run, asserted on exactly that run.

The lesson's base run: a 64-256-256-10 ReLU/softmax net on the first 256 training digits (8 batches
of 32), judged on the same 357 validation digits, Adam at lr 1e-3, 100 epochs. Seeds 0 to 4 unless a
test says otherwise. Measured on Keras 3.15.1 / TensorFlow 2.21 (CPU); measured values in comments.
"""

import math
from dataclasses import replace

import numpy as np
import pytest

from adamclinic.lessons.overfitting_or_optimizer import (
    CHANCE_LOSS,
    RegularizedConfig,
    best_epoch,
    capacity_config,
    classifier,
    curve_summary,
    digits_subset,
    dropout_config,
    early_stopping_config,
    generalization_gap,
    run_regularized,
    weight_decay_config,
    weight_norm,
)

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


@pytest.fixture(scope="module")
def runs(base):
    """Histories of the lesson's runs, by (what, seed), trained once per module."""
    cache = {}

    def get(what, seed, make=lambda config: config):
        if (what, seed) not in cache:
            cache[what, seed] = run_regularized(make(replace(base, seed=seed)))
        return cache[what, seed]

    return get


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


def test_adamw_needs_about_a_thousand_times_the_number_to_match(runs):
    """Section 4: AdamW at 1.0 ends where coupled L2 at 1e-3 does (mean final val loss)."""
    coupled = [runs("coupled 1e-3", s, lambda c: weight_decay_config(c, "L2 in Adam (coupled)", 1e-3)) for s in SEEDS]
    adamw = [runs("adamw 1", s, lambda c: weight_decay_config(c, "AdamW (decoupled)", 1.0)) for s in SEEDS]
    for a in adamw:
        assert 14.5 < weight_norm(a) < 17  # 15.5..16.0
        assert 0.5 < a.val_loss[-1] < 0.65  # 0.54..0.62
    difference = np.mean([a.val_loss[-1] for a in adamw]) - np.mean([c.val_loss[-1] for c in coupled])
    assert abs(difference) < 0.03  # 0.583 vs 0.583


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
