"""The charts a student reads and the status line under them (issue 18).

Axes: every tick label differs from the others at every range the lessons produce, read through a Python
copy of the d3 formats the charts send (``d3_label``). Legends: outside the plot area, one entry per line.
Status line: each wording on real, seeded runs of the engine (marked slow: they train).
"""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import numpy as np
import pytest

from adamclinic.engine import Dataset, EpochMetrics, TrainConfig, run
from adamclinic.panels import (
    BLEW_UP,
    LossPlot,
    axis_ticks,
    constant_loss,
    describe_run,
    learning_rate_panel,
    plot_sweep,
    starting_loss,
    verdict,
)


def d3_label(value: float, tick_format: str) -> str:
    """What d3-format prints for the formats ``axis_ticks`` chooses (".3~r", ".1~e", "d")."""
    if tick_format == "d":
        return str(round(value))
    match = re.fullmatch(r"\.(\d+)~([re])", tick_format)
    assert match, f"axis_ticks chose a format this test cannot read: {tick_format!r}"
    digits, kind = int(match.group(1)), match.group(2)
    if kind == "e":
        mantissa, exponent = f"{value:.{digits}e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa
        return f"{mantissa}e{int(exponent):+d}"
    rounded = float(f"{value:.{digits - 1}e}")  # r: decimal notation, ``digits`` significant digits
    return np.format_float_positional(rounded, trim="-")


# Ranges the lessons' charts show (issue 18): lesson 02's loss near ln 10, lesson 05's near 20, lesson 07's
# unscaled targets near 6.5e10, lesson 04's 0.6-0.95, a flat line, and wide ranges over many decades.
LOG_RANGES = [
    (1.8, 2.35),
    (2.29, 2.31),
    (2.3024, 2.3028),
    (17.5, 24.0),
    (6.45e10, 6.6e10),
    (0.58, 0.97),
    (0.0625, 2.3),
    (0.02, 7355.0),
    (1e-4, 10.0),
    (1e-9, 1e12),
    (3e-6, 4e-6),
    (1.0, 3000.0),
]


@pytest.mark.parametrize(("low", "high"), LOG_RANGES)
def test_log_axis_ticks_are_distinct_and_readable_at_every_range(low, high):
    ticks, tick_format = axis_ticks(low, high)
    labels = [d3_label(t, tick_format) for t in ticks]
    assert 2 <= len(ticks) <= 8, (ticks, labels)
    assert all(low * (1 - 1e-9) <= t <= high * (1 + 1e-9) for t in ticks), ticks  # no tick off the axis
    assert len(set(labels)) == len(labels), labels
    assert all(len(label) <= 8 for label in labels), labels
    # A label reads as the tick's value, to the digits it shows.
    for tick, label in zip(ticks, labels):
        assert math.isclose(float(label), tick, rel_tol=0.05), (tick, label)


def test_the_labels_the_issue_saw_repeat_now_differ():
    for low, high, expected in [(1.8, 2.35, "2"), (17.5, 24.0, "20"), (6.45e10, 6.6e10, "6.5e+10")]:
        ticks, tick_format = axis_ticks(low, high)
        labels = [d3_label(t, tick_format) for t in ticks]
        assert expected in labels and len(labels) >= 3, labels


@pytest.mark.parametrize("epochs", [1, 3, 5, 10, 20, 30, 100, 200])
def test_epoch_axes_tick_whole_epochs(epochs):
    ticks, tick_format = axis_ticks(0.0, float(epochs), log=False, integer=True)
    assert tick_format == "d" and all(t == int(t) for t in ticks)
    assert ticks[0] == 0 and ticks[-1] <= epochs and 2 <= len(ticks) <= 11


def epoch(n: int, loss: float, val_loss: float | None = None) -> EpochMetrics:
    return EpochMetrics(epoch=n, loss=loss, val_loss=val_loss, learning_rate=1e-3, grad_norm=1.0, seconds=0.0)


def test_the_loss_plot_follows_its_data_names_every_line_and_keeps_the_legend_off_the_plot():
    plot = LossPlot(30, keep=5, show_validation=True)
    plot.set_loss("mean_squared_error")
    labels = [f"lr={lr:g}" for lr in (1e-4, 1e-3, 1e-2, 0.1, 0.3, 1.0)]
    for index, label in enumerate(labels):
        line = plot.new_line(label)
        for n in range(1, 31):
            plot.extend(line, epoch(n, 2.0 + 0.3 * index - 0.01 * n, 2.1 + 0.3 * index))
    assert not any(mark.display_legend for mark in plot.figure.marks), "bqplot's legend sits inside the plot area"
    assert plot.legend.html not in plot.figure.marks and plot.widget.children == (plot.figure, plot.legend.html)
    for label in labels[1:]:  # the oldest run was dropped (keep=5)
        assert f">{label}</span>" in plot.legend.html.value
        assert f">{label} (validation)</span>" in plot.legend.html.value
    assert ">lr=0.0001<" not in plot.legend.html.value
    assert all(mark.labels and mark.labels[0] for mark in plot.figure.marks)
    low, high = plot.y_scale.min, plot.y_scale.max
    values = np.concatenate([np.asarray(mark.y) for mark in plot.figure.marks])
    assert low <= values.min() and values.max() <= high
    labels_shown = [d3_label(t, plot.y_axis.tick_format) for t in plot.y_axis.tick_values]
    assert len(set(labels_shown)) == len(labels_shown) >= 3, labels_shown
    assert plot.y_axis.label == "loss (solid: training, dashed: validation), MSE"
    plot.clear()
    assert plot.figure.marks == [] and plot.legend.html.value == ""


def test_the_range_test_chart_reads_its_ticks_and_names_its_lines():
    rates = np.geomspace(1e-6, 1.0, 60)
    losses = 2.3 - 0.5 * np.exp(-((np.log10(rates) + 2.5) ** 2))
    sweep = SimpleNamespace(learning_rates=rates, losses=losses, smoothed=losses)
    chart = plot_sweep(sweep, suggestion=3e-3)
    assert len(chart.marks) == 3 and not any(mark.display_legend for mark in chart.marks)
    for label in ("batch loss", "smoothed batch loss", "suggested learning rate 0.003"):
        assert f">{label}</span>" in chart.legend.html.value
    for axis in chart.axes:
        labels = [d3_label(t, axis.tick_format) for t in axis.tick_values]
        assert len(set(labels)) == len(labels) >= 3, labels


# The status line, on real runs ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data():
    from adamclinic.data import smooth_regression

    return smooth_regression()


def config_for(data: Dataset, y: np.ndarray, **settings) -> TrainConfig:
    from adamclinic.models import small_relu_net

    settings.setdefault("epochs", 5)
    return TrainConfig(Dataset(data.x_train, y, name="test"), small_relu_net, **settings)


@pytest.mark.slow
def test_a_run_that_learns_fell_from_its_untrained_loss(data):
    history = run(config_for(data, data.y_train, learning_rate=1e-2))
    status = verdict(history)
    start = starting_loss(history.config)
    assert re.search(rf"finished 5 epochs, loss \S+ → {history.final_loss:.4g}; the loss fell from ", status), status
    assert f"fell from {start:.3g} to {history.final_loss:.3g}" in status
    assert "blew up" not in status and "stalled" not in status


@pytest.mark.slow
def test_a_run_that_explodes_in_its_first_epoch_blew_up(data):
    # Lesson 01 at lr = 1: the first epoch's loss is far above the untrained model's, then the net dies.
    history = run(config_for(data, data.y_train, learning_rate=1.0))
    start = starting_loss(history.config)
    assert max(history.loss) > BLEW_UP * start
    status = verdict(history)
    assert re.search(r"lr=1</b>: finished 5 epochs, loss \S+ → \S+; it blew up to \S+ in epoch \d+", status), status


@pytest.mark.slow
def test_a_run_that_learns_nothing_stalls_near_the_loss_of_predicting_the_mean(data):
    noise = np.random.default_rng(0).normal(0.0, 1.0, len(data.y_train)).astype("float32")
    history = run(config_for(data, noise, learning_rate=1e-3))
    mean_loss = constant_loss(history.config)
    assert mean_loss == pytest.approx(float(np.var(noise)), rel=1e-4)
    status = verdict(history)
    assert f"stalled near the loss of predicting the mean ({mean_loss:.3g})" in status, status
    assert "blew up" not in status


@pytest.mark.slow
def test_a_high_start_that_only_falls_is_not_called_a_blow_up(data):
    # Lesson 07's unscaled targets: the loss starts near 6.5e10 and never rises above it.
    prices = (250_000.0 + 50_000.0 * data.y_train).astype("float32")
    history = run(config_for(data, prices, learning_rate=1e-2))
    assert history.loss[0] > 1e10 and max(history.loss) <= history.loss[0] * 1.01
    status = verdict(history)
    assert "blew up" not in status, status
    assert re.search(r"the loss (did not fall|fell from)", status), status
    # Without the untrained loss (a custom trainer), the first epoch is where it started: still no blow-up.
    assert "blew up" not in describe_run(history, None, constant_loss(history.config))


@pytest.mark.slow
def test_a_run_whose_loss_becomes_infinite_diverged(data):
    history = run(config_for(data, data.y_train * 1e30, learning_rate=1e-3))
    assert history.diverged
    assert f"diverged at epoch {history.diverged_at} (the loss became NaN or infinite)" in verdict(history)


@pytest.mark.slow
def test_the_panel_shows_the_verdict_after_a_run(data):
    panel = learning_rate_panel(config_for(data, data.y_train), min_seconds_per_epoch=0.0)
    history = panel.train_now()
    assert panel.status.value == verdict(history)
    assert panel.plot.y_axis.label == "training loss, MSE"
    assert ">lr=0.001</span>" in panel.plot.legend.html.value
    # The browser tests read "loss A → B" and "<label>: finished N epochs" from this line.
    assert re.search(r"lr=0\.001</b>: finished 5 epochs, loss (\S+) → (\S+?)[;\s(]", panel.status.value)
