"""The one finished run of the tiny experiment shared by the reproduction and notebook tests.

``notebooks/all.ipynb`` is executed (with nbclient) at the smoke scale into a new output
directory, with ``$SDCOMPLEX_EXPERIMENTS`` pointing at a folder whose ``all.py`` is
``tests/reproduce/tiny_experiment.py``: the notebook trains and analyses the tiny experiment
(every stage but the figures, which notebooks draw inline); the figures stage then runs in this
process, so that the run is complete. The reproduction tests read that run (or a copy of it), the
claim notebooks are shown on it, and the killed-and-resumed run is compared with it. The
notebook kernel and the CLI subprocesses share one JAX compilation cache (the students compile
the same steps again and again); nothing changes JAX's configuration in the test process.

Test modules load this module as a plugin (``pytest_plugins = ["reproduce_helpers"]``;
pytest's ``pythonpath`` holds ``tests/``), so its session fixtures are one fixture each,
made once per session whichever package asks first (a fixture imported into several modules
would be a separate fixture, run again, in each).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "reproduce" / "tiny_experiment.py"
NOTEBOOKS = ROOT / "notebooks"


def run_cli(out: Path, cache: Path, *, wait: bool = True) -> Any:
    """``sdcomplex reproduce tiny_experiment.py --scale smoke --out OUT --quiet`` in a
    subprocess with the shared compilation cache; the finished process (its text in
    ``.output``), or the running one."""
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
        proc.output = output  # type: ignore[attr-defined]
    return proc


def execute_notebook(path: Path, env: dict[str, str], cwd: Path) -> tuple[Any, str]:
    """The notebook at ``path`` executed with ``env`` added to the environment: (the notebook
    with its outputs, the text of its outputs); fails on an error output."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        client = NotebookClient(
            nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
        )
        client.execute()
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", out
            text.append(out.get("text", ""))
            text.append(str(out.get("data", {}).get("text/markdown", "")))
    return nb, "\n".join(text)


@pytest.fixture(scope="session")
def jax_cache(tmp_path_factory):
    """A compilation cache directory for this session's subprocesses and notebook kernels."""
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
def notebook_env(tmp_path_factory, jax_cache) -> dict[str, str]:
    """The notebooks' settings: smoke scale, outputs in a new folder, and an experiments folder
    whose ``all`` is the tiny experiment."""
    base = tmp_path_factory.mktemp("notebooks")
    experiments = base / "experiments"
    experiments.mkdir()
    shutil.copyfile(TINY, experiments / "all.py")
    return {
        "SDCOMPLEX_SCALE": "smoke",
        "SDCOMPLEX_OUT": str(base / "runs"),
        "SDCOMPLEX_EXPERIMENTS": str(experiments),
        "JAX_COMPILATION_CACHE_DIR": str(jax_cache),
        "MPLBACKEND": "Agg",
    }


@pytest.fixture(scope="session")
def notebook_run(notebook_env, tmp_path_factory):
    """``all.ipynb`` executed at the smoke scale into a new output directory (the tiny
    experiment, see the module docstring): (the notebook with its outputs, their text, the
    output directory)."""
    cwd = tmp_path_factory.mktemp("all_notebook")
    nb, text = execute_notebook(NOTEBOOKS / "all.ipynb", notebook_env, cwd)
    return nb, text, Path(notebook_env["SDCOMPLEX_OUT"]) / "all-smoke"


@pytest.fixture(scope="session")
def tiny_run(notebook_run, tiny_config):
    """The tiny experiment run once, uninterrupted, every stage done: the notebook's run with
    its figures stage run here. Tests read it and write nowhere inside it (they copy it)."""
    from sdcomplex.reproduce import plan_stages, run_experiment

    _, text, out = notebook_run
    stages = [s.key for s in plan_stages(tiny_config)]
    # uninterrupted: every stage but the figures run by the notebook, none done before
    assert f"{len(stages) - 1} stages run, 0 done before" in text
    report = run_experiment(tiny_config, out, quiet=True, stream=io.StringIO())
    assert report.ran == ("figures",) and list(report.skipped) == stages[:-1]
    return out
