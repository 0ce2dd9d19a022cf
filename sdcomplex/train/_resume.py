"""Where a run resumes: the newest intact checkpoint, and what each checkpoint's manifest
records so that "intact" can be checked (its metrics lines, its config)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sdcomplex.train._checkpoint import CheckpointStore, library_versions
from sdcomplex.train._config import TrainConfig
from sdcomplex.train._metrics import check_metrics_lines, metrics_digests


def resume_point(store: CheckpointStore, run_dir: Path, chash: str) -> tuple[str, int] | None:
    """The newest intact checkpoint, ``("epoch", epoch)`` or ``("preempt", step)`` (``None``:
    start afresh).

    Intact: its files match their checksums and the metrics lines it recorded are those of
    ``metrics.jsonl``; newer damaged checkpoints are moved aside with a warning (see
    :meth:`CheckpointStore.newest_intact`). A stale preemption checkpoint (not newer than the
    newest epoch checkpoint, by the global step in its name) is removed without being read.

    Raises:
        ValueError: the checkpoint was written by another config.
    """

    def check(manifest: dict[str, Any]) -> None:
        check_metrics_lines(run_dir, manifest.get("metrics_sha256", []))
        if manifest.get("config_hash") != chash:
            raise ValueError(
                f"checkpoint of epoch {manifest.get('epoch')} in {run_dir} was written by "
                f"config {manifest.get('config_hash')}, not {chash}; not resuming"
            )

    epoch = store.newest_intact("epoch", check)
    if epoch is not None:
        # removed unread: one whose removal a kill interrupted is incomplete, not damaged
        store.delete_preempt(up_to=epoch[1]["step"])
    preempt = store.newest_intact("preempt", check)
    if preempt is not None:
        return "preempt", preempt[0]
    return None if epoch is None else ("epoch", epoch[0])


def checkpoint_manifest(
    run_dir: Path, kind: str, completed: int, batch: int, step: int, chash: str, cfg: TrainConfig
) -> dict[str, Any]:
    """The manifest of a checkpoint being saved: what it resumes (``kind``, ``epoch``
    completed, ``batch`` of the next epoch, global ``step``), the config hash, the digests of
    the metrics lines written so far, the time and the library versions."""
    return {
        "metrics_sha256": metrics_digests(run_dir),
        "kind": kind,
        "epoch": completed,
        "batch": batch,
        "step": step,
        "config_hash": chash,
        "model": cfg.model,
        "dataset": cfg.dataset,
        "time": time.time(),
        "versions": library_versions(),
    }
