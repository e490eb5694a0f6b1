"""The panels around ``run``: a slider move trains, redraws per epoch, cancels the stale run, overlays
and clears runs, and reports divergence. Driven through the widgets' own values, as a browser would."""

import time

import pytest

from adamclinic.data import smooth_regression
from adamclinic.engine import Dataset, TrainConfig
from adamclinic.models import small_relu_net
from adamclinic.panels import learning_rate_panel, schedule_panel

pytestmark = pytest.mark.slow  # the panels train real models (make check leaves them out)


@pytest.fixture(scope="module")
def base():
    return TrainConfig(smooth_regression(), small_relu_net, epochs=20)


def test_a_run_redraws_the_line_after_every_epoch(base):
    panel = learning_rate_panel(base, min_seconds_per_epoch=0.0)
    lengths_sent = []
    make_line = panel.plot.new_line

    def watched_line(label):
        line = make_line(label)
        line.observe(lambda change: lengths_sent.append(len(change["new"])), names="y")
        return line

    panel.plot.new_line = watched_line
    panel.train_now()
    line = panel.plot.lines[-1]
    assert list(line.x) == list(range(1, 21)) and len(line.y) == 20
    assert lengths_sent == list(range(1, 21)), "one redraw per epoch, while training"


def test_moving_the_slider_during_a_run_cancels_it_and_trains_the_new_value(base, monkeypatch):
    monkeypatch.delenv("ADAMCLINIC_NO_PACING", raising=False)  # paced like a student's run, so it is still going
    panel = learning_rate_panel(base, min_seconds_per_epoch=0.05)
    slider = panel.controls["learning_rate"]
    slider.value = 1.0
    time.sleep(0.3)  # the 1.0 run is a few epochs in
    slider.value = 1e-2
    panel.wait()
    stale, fresh = panel.histories
    assert stale.config.learning_rate == pytest.approx(1.0) and stale.cancelled
    assert 0 < len(stale.epochs) < base.epochs
    assert fresh.config.learning_rate == pytest.approx(1e-2) and not fresh.cancelled
    assert len(fresh.epochs) == base.epochs
    assert "lr=0.01" in panel.status.value and "finished" in panel.status.value


def test_runs_overlay_up_to_five_labelled_lines_and_clear(base):
    panel = learning_rate_panel(base, min_seconds_per_epoch=0.0)
    for lr in (1e-4, 1e-3, 1e-2, 0.1, 0.3, 1.0):
        panel.train_now(base.with_learning_rate(lr))
    labels = [line.labels[0] for line in panel.plot.lines]
    assert labels == ["lr=0.001", "lr=0.01", "lr=0.1", "lr=0.3", "lr=1"]
    assert panel.plot.figure.marks == panel.plot.lines
    panel.clear_button.click()
    assert panel.plot.lines == [] and panel.plot.figure.marks == []


def test_the_status_line_reports_divergence(base):
    exploding = Dataset(base.data.x_train, base.data.y_train * 1e30, name="overflow")
    panel = learning_rate_panel(TrainConfig(exploding, small_relu_net, epochs=5), min_seconds_per_epoch=0.0)
    history = panel.train_now()
    assert history.diverged
    assert "diverged at epoch 1" in panel.status.value


def test_the_status_line_reports_the_blow_up_at_lr_1(base):
    panel = learning_rate_panel(base, min_seconds_per_epoch=0.0)
    panel.train_now(base.with_learning_rate(1.0))
    assert "blew up" in panel.status.value


def test_the_schedule_panel_swaps_schedules(base):
    panel = schedule_panel(base, peak=0.1, min_seconds_per_epoch=0.0)
    panel.controls["kind"].value = "warmup + cosine decay"
    panel.wait()
    assert "CosineDecay + warmup, peak 0.1" in panel.histories[-1].config.label()


def test_a_setting_the_config_rejects_shows_a_message_instead_of_crashing(base):
    panel = learning_rate_panel(base, min_seconds_per_epoch=0.0)
    panel.make_config = lambda base, values: (_ for _ in ()).throw(ValueError("batch_size must be positive"))
    panel.controls["learning_rate"].value = 0.01
    assert "Cannot train with these settings: batch_size must be positive" in panel.status.value


def test_validation_lines_and_extra_views_follow_each_run(base):
    with_val = TrainConfig(base.data, small_relu_net, epochs=5)

    class CountingView:
        widget = None

        def __init__(self):
            self.calls = []

        def start(self, config, colour):
            self.calls.append(("start", colour))

        def update(self, metrics):
            self.calls.append(("update", metrics.epoch))

        def clear(self):
            self.calls.append(("clear",))

    import ipywidgets

    view = CountingView()
    view.widget = ipywidgets.HTML()
    panel = learning_rate_panel(with_val, min_seconds_per_epoch=0.0, show_validation=True, views=[view])
    panel.train_now()
    train_line, val_line = panel.plot.figure.marks
    assert len(train_line.y) == 5 and len(val_line.y) == 5 and val_line.line_style == "dashed"
    assert val_line.colors == train_line.colors
    assert view.calls == [("start", train_line.colors[0])] + [("update", e) for e in range(1, 6)]
    panel.clear_button.click()
    assert view.calls[-1] == ("clear",) and panel.plot.figure.marks == []
