"""The metrics file of a run: ``metrics.jsonl``, one JSON object per evaluated epoch.

Fields of every line:

* ``epoch`` (0 = before training), ``step`` (optimiser updates so far);
* ``train_loss``, ``train_acc``: cross-entropy and accuracy on the training split (or its
  first ``eval_train_examples``), in inference mode, after the epoch;
* ``test_loss``, ``test_acc``: the same on the test split;
* ``batch_loss``, ``batch_acc``: mean training objective and accuracy over the epoch's
  mini-batches in training mode (``null`` at epoch 0);
* ``lr``: learning rate of the epoch's last update (of the first update at epoch 0);
* timing fields (:data:`TIMING_FIELDS`): ``time`` (Unix time), ``elapsed_s`` (seconds since
  this process started the run), ``epoch_time_s`` (training seconds of the epoch in this
  process), ``eval_time_s``, ``images_per_s`` (training images per second);
* whatever the diagnostics hook returns for that epoch.

Everything but the timing fields is identical between an interrupted-and-resumed run and an
uninterrupted one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sdcomplex._io import atomic_write_text, to_jsonable

METRICS_FILE = "metrics.jsonl"
TIMING_FIELDS = ("time", "elapsed_s", "epoch_time_s", "eval_time_s", "images_per_s")
"""Fields of a metrics line that measure time and so differ between otherwise equal runs."""


def _metrics_path(run_dir_or_file: str | os.PathLike[str]) -> Path:
    path = Path(run_dir_or_file)
    return path / METRICS_FILE if path.is_dir() else path


def read_metrics(run_dir_or_file: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The metrics lines of a run directory (or a ``metrics.jsonl`` path), in order.

    A torn last line (a process killed while appending) is ignored; a malformed line elsewhere
    is an error.

    Raises:
        ValueError: no metrics file, or a malformed line before the last.
    """
    path = _metrics_path(run_dir_or_file)
    if not path.is_file():
        raise ValueError(f"no metrics file at {path}")
    lines = path.read_text(encoding="utf-8").split("\n")
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i >= len(lines) - 2:  # the last (possibly unterminated) line
                break
            raise ValueError(f"{path}: line {i + 1} is not valid JSON") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}: line {i + 1} is not a JSON object")
        out.append(record)
    return out


def append_metrics(run_dir: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Appends one line (flushed and fsynced, so it survives a kill right after)."""
    text = json.dumps(to_jsonable(record), sort_keys=True) + "\n"
    with open(Path(run_dir) / METRICS_FILE, "a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def truncate_metrics(run_dir: str | os.PathLike[str], last_epoch: int) -> int:
    """Keeps only the lines with ``epoch <= last_epoch`` (atomic rewrite); returns how many.

    Used on resume: lines written after the checkpoint the run resumes from are recomputed.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return 0
    records = read_metrics(path)
    kept = [r for r in records if r.get("epoch", -1) <= last_epoch]
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept)
    if text != path.read_text(encoding="utf-8"):
        atomic_write_text(path, text, overwrite=True)
    return len(kept)


def strip_timing(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records without their :data:`TIMING_FIELDS` (to compare two runs)."""
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records]
