"""Finding and loading experiment config files (``experiments/*.py``) and their run times.

An experiment is a Python file ``experiments/<name>.py`` defining ``get_config(scale) ->
ExperimentConfig`` for every scale of :data:`SCALES`. Files whose name starts with ``_`` are
shared helpers, imported by the experiments with relative imports (``from ._base import
...``): the directory is loaded as the package ``sdcomplex_experiments``.

The directory is, in order: the ``directory`` argument, ``$SDCOMPLEX_EXPERIMENTS``,
``./experiments`` (the working directory) and the ``experiments/`` folder next to the installed
package (a source checkout installed with ``pip install -e .``).

Measured run times live in ``experiments/runtimes.json``, written by :func:`record_runtime`
from finished output directories, never typed by hand.
"""

from __future__ import annotations

import os
import sys
import time
import types
from pathlib import Path
from typing import Any

from sdcomplex._config_files import call_config, import_file
from sdcomplex._io import atomic_write_json, read_json_object
from sdcomplex.reproduce._config import SCALES, ExperimentConfig
from sdcomplex.reproduce._runner import read_status

EXPERIMENTS_ENV = "SDCOMPLEX_EXPERIMENTS"
RUNTIMES_FILE = "runtimes.json"
_PACKAGE = "sdcomplex_experiments"


def experiments_dir(directory: str | os.PathLike[str] | None = None) -> Path:
    """The directory holding the experiment config files (see the module docstring).

    Raises:
        ValueError: none of the candidates exists.
    """
    candidates: list[Path] = []
    if directory is not None:
        candidates.append(Path(directory))
    elif os.environ.get(EXPERIMENTS_ENV):
        candidates.append(Path(os.environ[EXPERIMENTS_ENV]))
    else:
        candidates.append(Path.cwd() / "experiments")
        candidates.append(Path(__file__).resolve().parents[2] / "experiments")
    for path in candidates:
        if path.is_dir() and any(path.glob("*.py")):
            return path.resolve()
    raise ValueError(
        f"no experiments directory found (looked in {', '.join(str(c) for c in candidates)}); "
        f"run from the repository root, set ${EXPERIMENTS_ENV}, or pass --experiments-dir"
    )


def available_experiments(directory: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """``{name: path}`` of the experiment files, sorted by name."""
    root = experiments_dir(directory)
    return {
        p.stem: p for p in sorted(root.glob("*.py")) if not p.name.startswith("_") and p.is_file()
    }


def _package(root: Path) -> None:
    """Registers ``sdcomplex_experiments`` as a package over ``root`` (for relative imports)."""
    existing = sys.modules.get(_PACKAGE)
    if existing is not None and list(getattr(existing, "__path__", [])) == [str(root)]:
        return
    for name in [m for m in sys.modules if m == _PACKAGE or m.startswith(_PACKAGE + ".")]:
        del sys.modules[name]
    package = types.ModuleType(_PACKAGE)
    package.__path__ = [str(root)]
    package.__package__ = _PACKAGE
    sys.modules[_PACKAGE] = package


def _load_module(path: Path) -> types.ModuleType:
    root = path.parent.resolve()
    _package(root)
    name = f"{_PACKAGE}.{path.stem}"
    module = import_file(path, name, keep=True)
    return module


def load_experiment(
    name: str, scale: str, *, directory: str | os.PathLike[str] | None = None
) -> ExperimentConfig:
    """The config of experiment ``name`` (or a path to a ``.py`` file) at ``scale``.

    Raises:
        ValueError: unknown experiment (the message lists the known ones), unknown scale, or a
            file without ``get_config`` or whose ``get_config`` returns something else.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"experiment file {path} does not exist")
    else:
        known = available_experiments(directory)
        if name not in known:
            raise ValueError(f"unknown experiment {name!r}; available: {', '.join(known)}")
        path = known[name]
    module = _load_module(path)
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ValueError(f"experiment file {path} defines no get_config(scale) function")
    config = call_config(path, get_config, scale)
    if not isinstance(config, ExperimentConfig):
        raise TypeError(
            f"{path}: get_config({scale!r}) returned {type(config).__name__}, "
            "not an ExperimentConfig"
        )
    if config.scale != scale:
        raise ValueError(f"{path}: get_config({scale!r}) returned scale {config.scale!r}")
    return config


def read_runtimes(directory: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The measured run times of ``experiments/runtimes.json`` (``{}`` when absent)."""
    try:
        path = experiments_dir(directory) / RUNTIMES_FILE
    except ValueError:
        return {}
    if not path.is_file():
        return {}
    return read_json_object(path, "run-time file")


def record_runtime(
    out_dir: str | os.PathLike[str],
    *,
    machine: str,
    directory: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Adds a finished output directory's measured run time to ``experiments/runtimes.json``.

    The time is the sum of the recorded wall-clock seconds of every stage (each stage records
    its own time when it runs, whichever invocation ran it), so a run that was interrupted and
    resumed still reports the work it did.

    Args:
        out_dir: an output directory of ``sdcomplex reproduce`` whose stages are all done.
        machine: a description of the machine (e.g. ``"2-core x86 CPU, shared, no GPU"``).
        directory: the experiments directory.

    Returns:
        The entry written.

    Raises:
        ValueError: not an output directory, or unfinished stages.
    """
    status = read_status(out_dir)
    if status["pending"]:
        raise ValueError(f"{out_dir} has unfinished stages: {', '.join(status['pending'])}")
    path = experiments_dir(directory) / RUNTIMES_FILE
    runtimes = read_runtimes(directory)
    entry = {
        "seconds": round(status["seconds"], 1),
        "stages": len(status["done"]),
        "machine": machine,
        "recorded": time.strftime("%Y-%m-%d"),
        "config_hash": status["config_hash"],
    }
    runtimes.setdefault(status["name"], {})[status["scale"]] = entry
    atomic_write_json(path, runtimes, overwrite=True)
    return entry


def format_runtime(entry: dict[str, Any] | None) -> str:
    """``"8.4 min"``-style text of a runtimes entry (``"not measured"`` when absent)."""
    if not entry:
        return "not measured"
    seconds = float(entry["seconds"])
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
