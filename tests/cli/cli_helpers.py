"""What the command-line tests share: the synthetic data flags, the tiny run's config and its
fixture (imported by the test modules that use them)."""

import pytest

from sdcomplex.train import TrainConfig, train

SYNTHETIC_FLAGS = [
    "--data",
    "synthetic",
    "--data-option",
    "n_train=48",
    "--data-option",
    "n_test=16",
    "--data-option",
    "dim=4",
    "--data-option",
    "num_classes=3",
    "--no-augment",
    "--quiet",
]
"""Command-line flags of a tiny synthetic data set (48 + 16 examples, 4 features, 3 classes)."""

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
    return finished_run(tmp_path_factory, TINY_RUN, "tiny_cli_run")


def finished_run(tmp_path_factory, config, name):
    """The directory of ``config`` trained to its last epoch, in a new temporary folder."""
    path = tmp_path_factory.mktemp(name) / "run"
    train(config, path, quiet=True)
    return path
