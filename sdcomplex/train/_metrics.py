"""The metrics file of a run: ``metrics.jsonl``, one JSON object per evaluated epoch.

Fields of every line:

* ``epoch`` (0 = before training), ``step`` (optimiser updates so far);
* ``train_loss``, ``train_acc``: cross-entropy and accuracy on the training split (or on
  ``eval_train_examples`` of its examples, :func:`train_eval_indices`), in inference mode,
  after the epoch;
* ``test_loss``, ``test_acc``: the same on the test split;
* ``batch_loss``, ``batch_acc``: mean training objective and accuracy over the epoch's
  mini-batches in training mode (``null`` at epoch 0);
* ``lr``: learning rate of the epoch's last update (of the first update at epoch 0);
* timing fields (:data:`TIMING_FIELDS`): ``time`` (Unix time), ``elapsed_s`` (seconds since
  this process started the run), ``epoch_time_s`` (training seconds of the epoch in this
  process), ``eval_time_s``, ``images_per_s`` (training images per second);
* whatever the supervision's diagnostics return for that epoch;
* ``non_finite`` (only on lines that need it): the names of the values that were NaN or
  infinite and are stored as ``null``, so that every line is strict JSON (RFC 8259 has no NaN).
  The trainer never writes a non-finite loss (a diverged run stops, see
  :class:`~sdcomplex.train.TrainingDiverged`); this concerns diagnostics only.

Everything but the timing fields is identical between an interrupted-and-resumed run and an
uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from sdcomplex._io import atomic_write_bytes, atomic_write_text, to_jsonable
from sdcomplex.train._integrity import DamagedFile

METRICS_FILE = "metrics.jsonl"
TIMING_FIELDS = ("time", "elapsed_s", "epoch_time_s", "eval_time_s", "images_per_s")
"""Fields of a metrics line that measure time and so differ between otherwise equal runs."""


def train_eval_indices(n_train: int, eval_train_examples: int | None) -> np.ndarray | None:
    """The training examples whose loss and accuracy are logged after each epoch: all of them
    (``None``) or ``eval_train_examples`` of them drawn uniformly without replacement (numpy
    seed 0, so every run on a data set evaluates the same ones), increasing.

    Not the first ones: data sets stored class by class (image folders, ``cifar10_jpeg``)
    would be evaluated on their first classes only.
    """
    if eval_train_examples is None or eval_train_examples >= n_train:
        return None
    chosen = np.random.default_rng(0).choice(n_train, eval_train_examples, replace=False)
    return np.sort(chosen)


def epoch_fields(
    epoch: int, step: int, train: Any, test: Any, sums: Any, schedule: Any
) -> dict[str, Any]:
    """The trainer's own fields of an epoch's metrics line (timings and diagnostics follow).

    ``train`` and ``test`` are ``(mean loss, accuracy)``; ``sums`` the float64 running
    ``(summed loss, correct, count)`` of the epoch's steps (``None`` or a zero count: no batch
    fields); ``schedule`` the learning-rate schedule (the rate of the last step).
    """
    counted = sums is not None and sums[2]
    return {
        "epoch": epoch,
        "step": step,
        "train_loss": float(train[0]),
        "train_acc": float(train[1]),
        "test_loss": float(test[0]),
        "test_acc": float(test[1]),
        "batch_loss": float(sums[0] / sums[2]) if counted else None,
        "batch_acc": float(sums[1] / sums[2]) if counted else None,
        "lr": schedule.numpy(max(step - 1, 0)),
    }


def _metrics_path(run_dir_or_file: str | os.PathLike[str]) -> Path:
    path = Path(run_dir_or_file)
    return path / METRICS_FILE if path.is_dir() else path


def read_metrics(run_dir_or_file: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The metrics lines of a run directory (or a ``metrics.jsonl`` path), in order.

    A torn last line (no final newline: a process killed while appending) is ignored; any other
    malformed line, a complete last line included, is an error naming it.

    Raises:
        ValueError: no metrics file, not UTF-8 text, or a malformed line before the last.
    """
    path = _metrics_path(run_dir_or_file)
    if not path.is_file():
        raise ValueError(f"no metrics file at {path}")
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # an unterminated last line: torn by a killed append
                break
            raise ValueError(f"{path}: line {i + 1} is not valid JSON") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}: line {i + 1} is not a JSON object")
        out.append(record)
    return out


NON_FINITE_FIELD = "non_finite"


def _finite_only(value: Any, path: str, found: dict[str, str]) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        found[path] = str(value)
        return None
    if isinstance(value, dict):
        return {k: _finite_only(v, f"{path}.{k}" if path else k, found) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_only(v, f"{path}[{i}]", found) for i, v in enumerate(value)]
    return value


def metrics_line(record: dict[str, Any]) -> str:
    """One strict-JSON metrics line (sorted keys, ``\\n``-terminated) of a record.

    NaN and infinite values become ``null`` and are listed by name (``key``, ``key.sub``,
    ``key[i]``) under :data:`NON_FINITE_FIELD`, e.g. ``{"ntk_similarity": null,
    "non_finite": {"ntk_similarity": "nan"}}``.
    """
    raw = to_jsonable(record)
    found: dict[str, str] = dict(raw.pop(NON_FINITE_FIELD, None) or {})
    clean = _finite_only(raw, "", found)
    if found:
        clean[NON_FINITE_FIELD] = found
    return json.dumps(clean, sort_keys=True, allow_nan=False) + "\n"


def append_metrics(run_dir: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Appends one line (flushed and fsynced, so it survives a kill right after); strict JSON,
    see :func:`metrics_line`."""
    text = metrics_line(record)
    with open(Path(run_dir) / METRICS_FILE, "a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def truncate_metrics(run_dir: str | os.PathLike[str], last_epoch: int) -> int:
    """Keeps only the lines with ``epoch <= last_epoch`` (atomic rewrite); returns how many.

    Used on resume from a checkpoint without ``metrics_sha256`` (written before they were
    recorded; see :func:`keep_metrics_lines`): lines written after the checkpoint the run
    resumes from are recomputed.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return 0
    records = read_metrics(path)
    kept = [r for r in records if r.get("epoch", -1) <= last_epoch]
    text = "".join(metrics_line(r) for r in kept)
    if text != path.read_text(encoding="utf-8"):
        atomic_write_text(path, text, overwrite=True)
    return len(kept)


def _raw_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True) if path.exists() else []


def metrics_digests(run_dir: str | os.PathLike[str]) -> list[str]:
    """The sha256 (first 16 hex digits) of every line of ``metrics.jsonl``, newline included;
    recorded in each checkpoint's manifest (``metrics_sha256``)."""
    lines = _raw_lines(Path(run_dir) / METRICS_FILE)
    return [hashlib.sha256(line).hexdigest()[:16] for line in lines]


def check_metrics_lines(run_dir: str | os.PathLike[str], digests: list[str]) -> None:
    """Checks that the first ``len(digests)`` lines of ``metrics.jsonl`` are the ones a
    checkpoint recorded (:func:`metrics_digests`).

    Raises:
        DamagedFile: a line is missing or differs (named by number).
    """
    path = Path(run_dir) / METRICS_FILE
    lines = _raw_lines(path)
    for i, digest in enumerate(digests):
        if i >= len(lines):
            raise DamagedFile(path, f"{len(lines)} lines, the checkpoint recorded {len(digests)}")
        if hashlib.sha256(lines[i]).hexdigest()[:16] != digest:
            raise DamagedFile(path, f"line {i + 1} differs from the one the checkpoint recorded")


def keep_metrics_lines(run_dir: str | os.PathLike[str], count: int) -> None:
    """Keeps only the first ``count`` lines of ``metrics.jsonl`` (atomic rewrite if needed):
    on resume, the lines written after the checkpoint are recomputed."""
    path = Path(run_dir) / METRICS_FILE
    lines = _raw_lines(path)
    if len(lines) > count:
        atomic_write_bytes(path, b"".join(lines[:count]), overwrite=True)


def strip_timing(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records without their :data:`TIMING_FIELDS` (to compare two runs)."""
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records]
