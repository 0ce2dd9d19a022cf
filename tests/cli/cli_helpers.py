"""What the command-line tests of trained runs share: the tiny run's config and its fixture
(imported by the test modules that use it)."""

import pytest

from sdcomplex.train import TrainConfig, train

TINY_RUN = TrainConfig(
    model="mlp",
    model_options={"hidden_sizes": [16]},
    dataset="digits",
    n_per_class=10,
    augment=False,
    epochs=2,
    batch_size=50,
    learning_rate=0.05,
    eval_batch_size=500,
)
"""A 2-epoch MLP on 100 digits (checkpoints 0, 1, 2): seconds to train."""


@pytest.fixture(scope="module")
def tiny_run_dir(tmp_path_factory):
    """A finished run of ``TINY_RUN`` (checkpoints 0, 1, 2); tests read it and write nowhere
    inside it."""
    path = tmp_path_factory.mktemp("tiny_cli_run") / "run"
    train(TINY_RUN, path, quiet=True)
    return path
