"""The training recipe counted in optimizer steps: ``StepPlateau`` alone (no TensorFlow), then on tiny
models, where a tiny data set must still get ``min_steps`` steps and patience must end training after
that many steps without improvement."""

import pyarrow.parquet as pq
import pytest

from seqae.config import ModelConfig, TrainConfig
from seqae.errors import ConfigError
from seqae.train import StepPlateau


def run_rule(rule, losses, every=10):
    """Feed ``losses`` at steps every, 2*every, ...; return the (step, decision) pairs up to the stop."""
    seen = []
    for i, loss in enumerate(losses, 1):
        decision = rule.update(i * every, loss)
        seen.append((i * every, decision))
        if decision.stop:
            break
    return seen


def test_patience_counts_steps_since_the_best_loss():
    seen = run_rule(StepPlateau(patience=30, lr_patience=1000), [1.0, 0.5, 0.6, 0.55, 0.7, 0.4, 0.3])
    assert [s for s, d in seen if d.improved] == [10, 20]
    assert seen[-1][0] == 50 and seen[-1][1].stop  # best at 20, 30 steps later


def test_min_steps_holds_off_the_stop():
    seen = run_rule(StepPlateau(patience=10, lr_patience=1000, min_steps=100), [1.0] + [2.0] * 20)
    assert seen[-1][0] == 100 and [s for s, d in seen if d.stop] == [100]


def test_min_delta_is_relative():
    rule = StepPlateau(patience=100, lr_patience=1000, min_delta=0.01)
    assert rule.update(1, 1000.0).improved
    assert not rule.update(2, 995.0).improved  # 0.5% less: not 1%
    assert rule.update(3, 989.0).improved
    small = StepPlateau(patience=100, lr_patience=1000, min_delta=0.01)
    assert small.update(1, 1e-3).improved and small.update(2, 0.98e-3).improved  # the same share at any scale


def test_the_rate_is_halved_every_lr_patience_steps_without_improvement():
    seen = run_rule(StepPlateau(patience=1000, lr_patience=20, min_steps=0), [1.0] * 9)
    assert [s for s, d in seen if d.halve] == [30, 50, 70, 90]  # 20 steps after the best (10), then after each halving


def test_a_nan_loss_never_improves():
    rule = StepPlateau(patience=5, lr_patience=5)
    assert rule.update(1, float("nan")).improved is False
    assert rule.update(2, 3.0).improved


@pytest.mark.parametrize(("field", "value", "message"), [
    ("min_steps", -1, "min_steps: expected an integer >= 0 (optimizer steps), got -1"),
    ("warmup_steps", 1.5, "warmup_steps: expected an integer >= 0 (optimizer steps), got 1.5"),
    ("patience", 0, "patience: expected a positive integer, got 0"),
    ("min_epoch_steps", 0, "min_epoch_steps: expected a positive integer, got 0"),
    ("min_delta", 1.0, "min_delta: a relative decrease (1e-3 is 0.1%) must be below 1, got 1.0"),
    ("min_learning_rate", 0, "min_learning_rate: expected a positive number, got 0"),
])
def test_bad_step_settings_are_refused(field, value, message):
    with pytest.raises(ConfigError) as caught:
        TrainConfig(**{field: value})
    assert str(caught.value) == message


@pytest.fixture()
def tiny_set(tmp_path, make_sine_table):
    """20 rows: one step per pass at batch 32."""
    pq.write_table(make_sine_table(n=20, length=8), tmp_path / "p.parquet")
    return str(tmp_path)


@pytest.mark.slow
def test_a_tiny_set_gets_min_steps(tiny_set, tmp_path):
    from seqae.train import train

    # patience 1 and no improvement after the first epoch (min_delta 90%): only min_steps holds it off
    config = TrainConfig(batch_size=32, min_steps=45, min_epoch_steps=15, patience=1, lr_patience=1,
                         min_delta=0.9, validation_fraction=0.0)
    t = train(tiny_set, tmp_path / "m", model_config=ModelConfig(units=4), train_config=config).metadata["training"]
    assert t["steps_per_epoch"] == 15 and t["steps"] == 45 and t["epochs"] == 3  # not 1 step per pass
    # max_epochs wins over min_steps
    config = TrainConfig(batch_size=32, min_steps=45, min_epoch_steps=15, max_epochs=1)
    assert train(tiny_set, tmp_path / "q", model_config=ModelConfig(units=4),
                 train_config=config).metadata["training"]["steps"] == 15


@pytest.mark.slow
def test_patience_in_steps_stops_and_restores_the_best_and_warmup_ramps(tiny_set, tmp_path):
    from seqae.train import train

    # No decrease of 90% ever comes after the first epoch: best at step 10, stop at the first epoch end
    # 25 or more steps later (step 40); the rate rises over 20 steps, then is halved 15 steps after the best.
    config = TrainConfig(batch_size=32, min_steps=0, min_epoch_steps=10, patience=25, lr_patience=15,
                         warmup_steps=20, min_delta=0.9, validation_fraction=0.0)
    t = train(tiny_set, tmp_path / "m", model_config=ModelConfig(units=4, learning_rate=0.01),
              train_config=config).metadata["training"]
    assert (t["steps"], t["epochs"], t["best_step"], t["best_epoch"]) == (40, 4, 10, 1)
    assert t["history"]["learning_rate"] == pytest.approx([0.01 * 11 / 20, 0.01, 0.005, 0.005])
    assert t["metrics"]["loss"] == t["history"]["loss"][0]


def test_weight_averaging_momentum_is_checked():
    with pytest.raises(ConfigError, match=r"ema: expected a value in \[0, 1\), got 1.0"):
        TrainConfig(ema=1.0)
    assert TrainConfig().ema is None


@pytest.mark.slow
def test_weight_averaging_validates_and_keeps_the_average(tmp_path, make_sine_table):
    import numpy as np

    from seqae.model import load_model
    from seqae.train import split_of, train

    table = make_sine_table(n=64, length=8, vary=False)
    (tmp_path / "data").mkdir()
    pq.write_table(table, tmp_path / "data" / "p.parquet")
    common = dict(batch_size=16, min_steps=0, min_epoch_steps=10, max_epochs=3, patience=1000, lr_patience=1000,
                  validation_fraction=0.25, min_validation_rows=1)
    held_out = split_of(table.column("id"), 0, 0.25)
    values = np.stack(table.column("values").to_numpy(zero_copy_only=False))[held_out][..., None]
    runs = {}
    for ema in (None, 0.9):
        runs[ema] = train(str(tmp_path / "data"), tmp_path / f"m{ema}", model_config=ModelConfig(units=4, learning_rate=0.01),
                          train_config=TrainConfig(**common, ema=ema)).metadata["training"]
        # The saved model holds the weights validated at the best epoch (with ema: the average).
        errors = load_model(tmp_path / f"m{ema}").predict(values, np.full(len(values), 8))["recon_error"]
        assert float(errors.mean()) == pytest.approx(runs[ema]["metrics"]["val_loss"], rel=1e-4)
    # The same seed trains the same raw weights (the swap back rounds a little); only what is validated differs.
    assert runs[0.9]["history"]["loss"] == pytest.approx(runs[None]["history"]["loss"], rel=1e-3)
    assert runs[0.9]["history"]["val_loss"] != pytest.approx(runs[None]["history"]["val_loss"], rel=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("min_rows, monitor", [(None, "loss"), (10, "val_loss")])
def test_a_few_held_out_rows_do_not_pick_the_epoch(tmp_path, make_sine_table, min_rows, monitor):
    """About 16 held-out rows are fewer than the default 64: the schedule keeps the epoch of the
    lowest training loss, and the held-out rows stay the reference; 10 is enough to watch them."""
    import numpy as np

    from seqae.train import train

    (tmp_path / "data").mkdir()
    pq.write_table(make_sine_table(n=64, length=8), tmp_path / "data" / "p.parquet")
    extra = {} if min_rows is None else {"min_validation_rows": min_rows}
    config = TrainConfig(batch_size=16, min_steps=0, min_epoch_steps=5, max_epochs=6, patience=1000,
                         lr_patience=1000, min_delta=0.0, validation_fraction=0.25, **extra)
    t = train(str(tmp_path / "data"), tmp_path / "m", model_config=ModelConfig(units=4, learning_rate=0.01),
              train_config=config).metadata["training"]
    assert 10 <= t["validation_rows"] < 64
    assert t["monitor"] == monitor
    assert len(t["history"]["val_loss"]) == 6  # still validated every epoch, whichever loss is watched
    assert t["best_epoch"] == int(np.argmin(t["history"][monitor])) + 1


def test_min_validation_rows_is_checked():
    with pytest.raises(ConfigError, match="min_validation_rows"):
        TrainConfig(min_validation_rows=0)
    assert TrainConfig().min_validation_rows == 64
