"""Fixtures shared by the command-line tests."""

import pytest
from cli_helpers import TINY_RUN

from sdcomplex.train import train


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory):
    """A finished run of ``cli_helpers.TINY_RUN`` (checkpoints 0, 1, 2), trained once; tests
    read it and write nowhere inside it."""
    path = tmp_path_factory.mktemp("tiny_cli_run") / "run"
    train(TINY_RUN, path, quiet=True)
    return path
