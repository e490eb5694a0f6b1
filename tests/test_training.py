"""The engine is real Adam: it matches stock ``model.fit`` step for step, and it stops and reports clearly."""

import threading

import keras
import numpy as np
import pytest

from adamclinic.data import smooth_regression
from adamclinic.engine import Dataset, TrainConfig, learning_rate_table, run, seed_everything
from adamclinic.models import small_relu_net

pytestmark = pytest.mark.slow  # the engine's tests train real models (make check leaves them out)


@pytest.fixture(scope="module")
def data():
    return smooth_regression()


def stock_fit_losses(config: TrainConfig) -> np.ndarray:
    """The same run through Keras's own compile + fit, batches in order."""
    seed_everything(config.seed)
    model = config.build_model()
    common = dict(
        beta_1=config.beta_1,
        beta_2=config.beta_2,
        epsilon=config.epsilon,
        amsgrad=config.amsgrad,
        clipnorm=config.clipnorm,
        global_clipnorm=config.global_clipnorm,
    )
    if config.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(config.learning_rate, weight_decay=config.weight_decay, **common)
    else:
        optimizer = keras.optimizers.Adam(config.learning_rate, **common)
    model.compile(optimizer=optimizer, loss=config.loss)
    fitted = model.fit(
        config.data.x_train,
        config.data.y_train,
        batch_size=config.batch_size,
        epochs=config.epochs,
        shuffle=False,
        verbose=0,
        class_weight=config.class_weight,
    )
    return np.array(fitted.history["loss"])


@pytest.mark.parametrize(
    "settings",
    [
        dict(learning_rate=1e-3),
        dict(learning_rate=3e-2, beta_1=0.5, beta_2=0.9, epsilon=1e-3),
        dict(learning_rate=1e-2, beta_1=0.99, beta_2=0.99999, epsilon=1e-8),
        dict(learning_rate=1e-2, amsgrad=True),
        dict(learning_rate=1e-2, optimizer="adamw", weight_decay=0.5),
        dict(learning_rate=3e-2, clipnorm=0.05),
        dict(learning_rate=1e-2, global_clipnorm=0.1),
    ],
    ids=["defaults", "low-betas-large-eps", "high-betas", "amsgrad", "adamw", "clipnorm", "global-clipnorm"],
)
def test_engine_matches_stock_keras_fit(data, settings):
    config = TrainConfig(data, small_relu_net, epochs=4, shuffle=False, seed=3, **settings)
    engine = run(config).loss
    stock = stock_fit_losses(config)
    np.testing.assert_allclose(engine, stock, rtol=2e-3)


def test_a_schedule_matches_stock_keras_fit(data):
    schedule = keras.optimizers.schedules.ExponentialDecay(0.02, decay_steps=16, decay_rate=0.5)
    config = TrainConfig(data, small_relu_net, learning_rate=schedule, epochs=3, shuffle=False)
    np.testing.assert_allclose(run(config).loss, stock_fit_losses(config), rtol=2e-3)


def test_same_config_same_numbers_even_after_other_runs(data):
    config = TrainConfig(data, small_relu_net, learning_rate=1e-2, epochs=5, seed=1)
    first = run(config).loss
    run(TrainConfig(data, small_relu_net, learning_rate=0.5, beta_1=0.3, epochs=5, seed=2))
    np.testing.assert_array_equal(run(config).loss, first)


def test_a_nan_loss_stops_the_run_and_says_where(data):
    huge = Dataset(data.x_train, data.y_train * 1e30, name="overflowing targets")
    history = run(TrainConfig(huge, small_relu_net, epochs=10))
    assert history.diverged and history.diverged_at == 1
    assert len(history.epochs) == 1
    assert "diverged at epoch 1" in history.status()


def test_cancelling_stops_at_the_next_epoch(data):
    cancel = threading.Event()

    def stop_after_three(metrics):
        if metrics.epoch == 3:
            cancel.set()

    history = run(TrainConfig(data, small_relu_net, epochs=30), cancel=cancel, on_epoch=stop_after_three)
    assert len(history.epochs) == 3 and history.cancelled
    assert "settings changed" in history.status()


def test_final_weights_are_returned_and_independent_of_later_runs(data):
    history = run(TrainConfig(data, small_relu_net, epochs=2))
    kept = [w.copy() for w in history.final_weights]
    run(TrainConfig(data, small_relu_net, epochs=2, seed=9))
    for a, b in zip(kept, history.final_weights):
        np.testing.assert_array_equal(a, b)


def test_schedule_table_matches_the_keras_schedule():
    schedule = keras.optimizers.schedules.CosineDecay(0.0, 100, warmup_target=0.1, warmup_steps=10)
    table = learning_rate_table(schedule, 110)
    expected = [float(schedule(step)) for step in range(110)]
    np.testing.assert_allclose(table, expected, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(learning_rate=-1.0), "positive number"),
        (dict(learning_rate="fast"), "learning_rate must be a number or a schedule"),
        (dict(batch_size=0), "batch_size must be between 1"),
        (dict(epochs=0), "epochs must be at least 1"),
        (dict(beta_1=1.0), "beta_1 and beta_2 must lie in"),
        (dict(epsilon=0.0), "epsilon must be positive"),
    ],
)
def test_bad_settings_get_a_message_that_says_what_to_do(data, change, message):
    with pytest.raises((ValueError, TypeError), match=message):
        run(TrainConfig(data, small_relu_net, **change))


def test_nan_inputs_are_refused_before_training(data):
    x = data.x_train.copy()
    x[5, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite values: impute or drop"):
        run(TrainConfig(Dataset(x, data.y_train, name="holey"), small_relu_net))


def test_a_plain_python_schedule_works_too():
    import math

    def halve_every_100(step):
        return 0.1 * math.pow(0.5, step // 100)

    table = learning_rate_table(halve_every_100, 300)
    assert table[0] == pytest.approx(0.1) and table[150] == pytest.approx(0.05) and table[299] == pytest.approx(0.025)


def test_class_weights_match_stock_keras_fit(data):
    labels = (data.y_train[:, 0] > 0.8).astype("float32")  # about 20% positives
    binary = Dataset(data.x_train, labels, name="imbalanced")

    def classifier():
        return keras.Sequential(
            [keras.Input((10,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1, activation="sigmoid")]
        )

    config = TrainConfig(
        binary,
        classifier,
        learning_rate=1e-2,
        epochs=3,
        shuffle=False,
        loss="binary_crossentropy",
        class_weight={0: 1.0, 1: 4.0},
    )
    history = run(config)
    np.testing.assert_allclose(history.loss, stock_fit_losses(config), rtol=2e-3)
    assert history.epochs[-1].accuracy is not None and 0.5 < history.epochs[-1].accuracy <= 1.0


def test_classification_reports_accuracy_and_per_layer_gradient_norms(data):
    labels = np.digitize(data.y_train[:, 0], [-0.5, 0.5]).astype("float32")  # three classes
    val_labels = np.digitize(data.y_val[:, 0], [-0.5, 0.5]).astype("float32")
    three = Dataset(data.x_train, labels, data.x_val, val_labels, name="three classes")

    def classifier():
        return keras.Sequential(
            [
                keras.Input((10,)),
                keras.layers.Dense(16, activation="relu"),
                keras.layers.Dense(16, activation="relu"),
                keras.layers.Dense(3, activation="softmax"),
            ]
        )

    history = run(TrainConfig(three, classifier, learning_rate=1e-2, epochs=5, loss="sparse_categorical_crossentropy"))
    last = history.epochs[-1]
    assert 0.6 < last.accuracy <= 1.0 and 0.6 < last.val_accuracy <= 1.0
    assert history.layer_grad_norms.shape == (5, 3) and (history.layer_grad_norms > 0).all()
    assert history.predict(data.x_val[:4]).shape == (4, 3)


def test_without_bias_correction_the_first_step_is_3_2_times_the_rate(data):
    config = TrainConfig(data, small_relu_net, learning_rate=1e-4, epochs=1, batch_size=1024, shuffle=False)
    corrected = run(config)
    uncorrected = run(
        TrainConfig(
            data,
            small_relu_net,
            learning_rate=1e-4,
            epochs=1,
            batch_size=1024,
            shuffle=False,
            optimizer="adam without bias correction",
        )
    )
    start = run(
        TrainConfig(data, small_relu_net, learning_rate=1e-12, epochs=1, batch_size=1024, shuffle=False)
    ).final_weights[0]
    ratio = np.median(np.abs(uncorrected.final_weights[0] - start)) / np.median(
        np.abs(corrected.final_weights[0] - start)
    )
    assert ratio == pytest.approx(0.1 / np.sqrt(0.001), rel=0.05)


def test_nan_inputs_can_be_let_through_on_purpose(data):
    x = data.x_train.copy()
    x[5, 2] = np.nan
    history = run(TrainConfig(Dataset(x, data.y_train), small_relu_net, epochs=2, check_inputs=False))
    assert len(history.epochs) >= 1
