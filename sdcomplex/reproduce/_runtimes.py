"""The measured run times of the experiments, ``experiments/runtimes.json``: a maintainer's
record (``sdcomplex reproduce ... --record-runtime MACHINE`` after a complete run), read by
``sdcomplex reproduce --list``. Written from finished output directories, never typed by hand.
"""

from __future__ import annotations

import os
import time
from typing import Any

from sdcomplex._io import atomic_write_json, read_json_object
from sdcomplex.reproduce._registry import experiments_dir
from sdcomplex.reproduce._runner import read_status

RUNTIMES_FILE = "runtimes.json"


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


def is_current(entry: dict[str, Any] | None, config: Any) -> bool:
    """Whether a runtimes entry was measured for this config (its recorded config hash is the
    config's; an entry without a hash counts as current)."""
    if not entry:
        return False
    recorded = entry.get("config_hash")
    return recorded is None or recorded == config.hash()
