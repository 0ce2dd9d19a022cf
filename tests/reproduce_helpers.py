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
would be a separate fixture, run again, in each). Under pytest-xdist the run is made once for
all workers: in the session's folder (``$SDCOMPLEX_TEST_SESSION``, made by the root
``conftest.py``), by the first worker that asks, while the others wait on a file lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
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
    """A compilation cache directory for this worker's subprocesses and notebook kernels (one
    per xdist worker, like the root ``conftest.py``'s: JAX writes a cache entry in place, so no
    process may read an entry that another worker's process is still writing)."""
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


@contextlib.contextmanager
def session_folder(tmp_path_factory, name: str):
    """The folder ``name`` of the test session, held under an exclusive lock (one xdist worker
    at a time): shared by every worker when the root ``conftest.py`` made the session's folder,
    else a new one of this process."""
    session = os.environ.get("SDCOMPLEX_TEST_SESSION")
    if session is None:
        yield tmp_path_factory.mktemp(name)
        return
    folder = Path(session) / name
    with open(Path(session) / f"{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            folder.mkdir(exist_ok=True)
            yield folder
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _finish_tiny_run(out: Path, text: str) -> None:
    """Runs the figures stage on the notebook's run ``out`` (see the module docstring)."""
    from sdcomplex.reproduce import load_experiment, plan_stages, run_experiment

    config = load_experiment(str(TINY), "smoke")
    stages = [s.key for s in plan_stages(config)]
    # uninterrupted: every stage but the figures run by the notebook, none done before
    assert f"{len(stages) - 1} stages run, 0 done before" in text
    report = run_experiment(config, out, quiet=True, stream=io.StringIO())
    assert report.ran == ("figures",) and list(report.skipped) == stages[:-1]


@pytest.fixture(scope="session")
def notebook_run(notebook_env, tmp_path_factory):
    """``all.ipynb`` executed at the smoke scale into a new output directory (the tiny
    experiment, see the module docstring), its figures stage then run: (the notebook with its
    outputs, their text, the output directory). Made once for all xdist workers."""
    with session_folder(tmp_path_factory, "tiny_run") as shared:
        notebook, record = shared / "all.ipynb", shared / "done.json"
        out = shared / "runs" / "all-smoke"
        if not record.is_file():  # (a worker that failed here left no record: start again)
            shutil.rmtree(shared / "runs", ignore_errors=True)
            cwd = tmp_path_factory.mktemp("all_notebook")
            env = {**notebook_env, "SDCOMPLEX_OUT": str(shared / "runs")}
            nb, text = execute_notebook(NOTEBOOKS / "all.ipynb", env, cwd)
            _finish_tiny_run(out, text)
            nbformat.write(nb, notebook)
            record.write_text(json.dumps({"text": text}))
        nb = nbformat.read(notebook, as_version=4)
        text = json.loads(record.read_text())["text"]
    return nb, text, out


@pytest.fixture(scope="session")
def tiny_run(notebook_run):
    """The tiny experiment run once, uninterrupted, every stage done: the notebook's run with
    its figures stage run here. Tests read it and write nowhere inside it (they copy it)."""
    return notebook_run[2]
