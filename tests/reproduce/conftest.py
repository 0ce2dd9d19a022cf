"""Shared fixtures: one uninterrupted run of the tiny experiment (a subprocess of the CLI), and a
JAX compilation cache shared by this session's subprocesses (the students compile the same
steps again and again). Nothing changes JAX's configuration in the test process itself."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TINY = HERE / "tiny_experiment.py"


def run_cli(out: Path, cache: Path, *, wait: bool = True):
    """``sdcomplex reproduce tiny_experiment.py --scale smoke --out OUT --quiet`` in a
    subprocess with the shared compilation cache; the finished process, or the running one."""
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(cache), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "sdcomplex", "reproduce", str(TINY), "--scale", "smoke"]
    proc = subprocess.Popen(
        [*cmd, "--out", str(out), "--quiet"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if wait:
        output, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, output
        proc.output = output
    return proc


@pytest.fixture(scope="session")
def jax_cache(tmp_path_factory):
    """A compilation cache directory for this session's subprocesses."""
    return tmp_path_factory.mktemp("jax_cache")


@pytest.fixture(scope="session")
def reproduce_cli(jax_cache):
    """``run_cli`` with the session's compilation cache: ``reproduce_cli(out, wait=True)``."""

    def call(out: Path, *, wait: bool = True):
        return run_cli(out, jax_cache, wait=wait)

    return call


@pytest.fixture(scope="session")
def tiny_config():
    from sdcomplex.reproduce import load_experiment

    return load_experiment(str(TINY), "smoke")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, jax_cache):
    """The tiny experiment run once, uninterrupted."""
    out = tmp_path_factory.mktemp("tiny") / "out"
    proc = run_cli(out, jax_cache)
    assert "done before" not in proc.output
    return out
