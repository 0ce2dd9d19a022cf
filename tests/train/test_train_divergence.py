"""A diverging run stops with an error naming the epoch and step of the first non-finite loss;
nothing non-finite is checkpointed or written to the (strict JSON) metrics file."""

import json
import math

import jax
import numpy as np
import pytest
from run_helpers import mlp_config

from sdcomplex.cli import main
from sdcomplex.data import EpochBatcher
from sdcomplex.models import init_variables
from sdcomplex.train import (
    TrainingDiverged,
    init_train_state,
    list_checkpoints,
    load_checkpoint,
    make_optimizer,
    make_preprocess,
    make_train_step,
    setup_run,
    train,
)
from sdcomplex.train._divergence import check_evaluated_losses
from sdcomplex.train._metrics import metrics_line

DIVERGING = mlp_config(16, dataset="digits", epochs=2, batch_size=128, learning_rate=1e6)


def _strict(text):
    def refuse(constant):
        raise AssertionError(f"non-strict JSON constant {constant}")

    return [json.loads(line, parse_constant=refuse) for line in text.splitlines()]


def _first_non_finite_step(config):
    """Replays the run's steps outside the trainer: (epoch, step in epoch) of the first
    non-finite loss."""
    setup = setup_run(config)
    info = setup.dataset.info
    batcher = EpochBatcher(info.n_train, config.batch_size, seed=config.seed, drop_last=True)
    optimizer, _ = make_optimizer(config, batcher.batches_per_epoch)
    preprocess = make_preprocess(
        mean=info.mean, std=info.std, pixel_max=info.pixel_max, augment=False
    )
    step_fn = make_train_step(setup.model, optimizer, preprocess)
    variables = init_variables(setup.model, config.seed, info.input_shape)
    state, running = init_train_state(variables, optimizer), jax.numpy.zeros(3)
    data = (setup.dataset.x_train, setup.dataset.y_train)
    for epoch in range(1, config.epochs + 1):
        for b, (xb, yb) in enumerate(batcher.batches(epoch, *data)):
            state, running, loss = step_fn(state, running, xb, yb, batcher.step_key(epoch, b), None)
            if not math.isfinite(float(loss)):
                return epoch, b + 1
    raise AssertionError("the replayed run did not diverge")


@pytest.mark.slow
def test_diverging_run_stops_at_the_first_non_finite_step(tmp_path):
    epoch, step = _first_non_finite_step(DIVERGING)
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="lower the learning rate") as caught:
        train(DIVERGING, run_dir, quiet=True)
    err = caught.value
    assert (err.epoch, err.step) == (epoch, step)
    assert f"at epoch {epoch}, step {step} of 11" in str(err) and not math.isfinite(err.value)
    assert err.global_step == (epoch - 1) * 11 + step
    # the metrics file is strict JSON and holds only the epochs before the divergence
    metrics = _strict((run_dir / "metrics.jsonl").read_text())
    assert [m["epoch"] for m in metrics] == list(range(epoch))
    # the latest checkpoint is finite: the state before the diverging epoch
    assert list_checkpoints(run_dir) == list(range(epoch))
    leaves = jax.tree.leaves(load_checkpoint(run_dir, epoch - 1))
    assert all(np.isfinite(leaf).all() for leaf in leaves)
    # running it again diverges again at the same step (nothing bad was saved)
    with pytest.raises(TrainingDiverged) as again:
        train(DIVERGING, run_dir, quiet=True)
    assert (again.value.epoch, again.value.step) == (epoch, step)


@pytest.mark.slow
def test_cli_divergence_is_one_line_and_non_zero(tmp_path, capsys):
    argv = ["train", "--model", "mlp", "--model-option", "hidden_sizes=[16]", "--data"]
    argv += ["digits", "--epochs", "2", "--lr", "1e6", "--no-augment", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "training diverged" in err and "epoch 1, step" in err and "--lr 100000" in err


def test_non_finite_diagnostics_are_null_in_strict_json():
    record = {"epoch": 3, "ntk_similarity": float("nan"), "extra": {"a": [1.0, float("-inf")]}}
    line = metrics_line(record)
    (parsed,) = _strict(line)
    assert parsed["ntk_similarity"] is None and parsed["extra"] == {"a": [1.0, None]}
    assert parsed["non_finite"] == {"ntk_similarity": "nan", "extra.a[1]": "-inf"}
    assert metrics_line(parsed) == line  # rewriting a read line keeps it unchanged
    assert json.loads(metrics_line({"epoch": 1, "test_loss": 0.5})) == {
        "epoch": 1,
        "test_loss": 0.5,
    }


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_evaluated_loss_is_named(bad):
    with pytest.raises(TrainingDiverged, match="evaluated test loss after epoch 4") as caught:
        check_evaluated_losses(
            {"train loss": 1.0, "test loss": bad}, epoch=4, global_step=40, learning_rate=0.1
        )
    assert caught.value.step is None and caught.value.global_step == 40
