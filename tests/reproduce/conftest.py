"""Shared fixtures: one uninterrupted run of the tiny experiment, and a JAX compilation cache
shared by this session's processes (the students compile the same steps again and again)."""

import io
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TINY = HERE / "tiny_experiment.py"


@pytest.fixture(scope="session")
def jax_cache(tmp_path_factory):
    """A compilation cache directory for this session (also given to subprocesses)."""
    path = tmp_path_factory.mktemp("jax_cache")
    from sdcomplex.reproduce import enable_compilation_cache

    return Path(enable_compilation_cache(path) or path)


@pytest.fixture(scope="session")
def tiny_config():
    from sdcomplex.reproduce import load_experiment

    return load_experiment(str(TINY), "smoke")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_config, jax_cache):
    """The tiny experiment run once, uninterrupted, in this process."""
    from sdcomplex.reproduce import run_experiment

    out = tmp_path_factory.mktemp("tiny") / "out"
    report = run_experiment(tiny_config, out, quiet=True, stream=io.StringIO())
    assert report.skipped == ()
    return out
