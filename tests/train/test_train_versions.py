"""A run resumed with other library versions than it started with says so: its ``run.json``
records the versions, and the resumed run is no longer bit for bit the uninterrupted one."""

import shutil
import warnings

import pytest
from run_helpers import mlp_config

from sdcomplex.train import _rundir, train
from sdcomplex.train._checkpoint import library_versions


def test_a_run_resumed_with_other_library_versions_warns(tmp_path, monkeypatch):
    config = mlp_config(4, synthetic=(24, 8, 5, 3), epochs=2, batch_size=8)
    train(config, tmp_path / "whole", quiet=True)
    run_dir = tmp_path / "run"
    shutil.copytree(tmp_path / "whole", run_dir)
    shutil.rmtree(run_dir / "checkpoints" / "epoch_2")  # as if killed before saving epoch 2
    again = tmp_path / "again"
    shutil.copytree(run_dir, again)

    with warnings.catch_warnings():  # the same versions: no warning
        warnings.simplefilter("error")
        assert train(config, again, quiet=True).status == "completed"

    now = library_versions()
    other = {**now, "jax": "0.0.1", "optax": "0.0.2"}
    monkeypatch.setattr(_rundir, "library_versions", lambda: other)
    message = f"other library versions .*jax {now['jax']} -> 0.0.1, optax {now['optax']} -> 0.0.2"
    with pytest.warns(UserWarning, match=message):
        assert train(config, run_dir, quiet=True).status == "completed"
