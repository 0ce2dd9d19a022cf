"""Finding and loading experiment config files (``experiments/*.py``) and their run times.

An experiment is a Python file ``experiments/<name>.py`` defining ``get_config(scale) ->
ExperimentConfig`` for every scale of :data:`SCALES`. Files whose name starts with ``_`` are
shared helpers, imported by the experiments with relative imports (``from ._base import
...``): the directory is loaded as the package ``sdcomplex_experiments``.

The directory is, in order: the ``directory`` argument, ``$SDCOMPLEX_EXPERIMENTS``,
``./experiments`` (the working directory) and the ``experiments/`` folder next to the installed
package (a source checkout installed with ``pip install -e .``).

Measured run times (``experiments/runtimes.json``) are kept by :mod:`._runtimes`.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

from sdcomplex._config_files import call_config, import_file
from sdcomplex.reproduce._config import SCALES, ExperimentConfig

EXPERIMENTS_ENV = "SDCOMPLEX_EXPERIMENTS"
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
