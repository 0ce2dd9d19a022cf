"""The types shared by the runner and its stages: the output directory's layout, a stage, what
a stage function receives, and the error of an interrupted training stage.

Every stage module (``_training``, ``_sweeps``, ``_margin``, ``_tables``, ``_claims``) and the
plan (``_plan``) import these from here; the runner (``_runner``) imports the plan, so the
imports of the package point one way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sdcomplex.reproduce._config import ExperimentConfig, stage_hash
from sdcomplex.train._checkpoint import CHECKPOINT_DIR, PREEMPT_DIR
from sdcomplex.train._rundir import ConfigKind

EXPERIMENT_FILE = "experiment.json"
EXPERIMENT = ConfigKind("experiment", "experiment record", ExperimentConfig, EXPERIMENT_FILE)
"""The config kind of an output directory: its :class:`~sdcomplex.reproduce.ExperimentConfig`
in ``config.json``, its hash, name and scale in the sealed ``experiment.json`` (one written before
seals existed is read as it is)."""
STAGES_DIR = "stages"


class Interrupted(RuntimeError):
    """A training stage stopped on SIGTERM/SIGINT after saving a checkpoint; rerun to resume.

    Attributes:
        signum: the signal that stopped it (``signal.SIGINT`` when unknown).
    """

    def __init__(self, message: str, signum: int | None = None) -> None:
        super().__init__(message)
        self.signum = int(signal.SIGINT if signum is None else signum)


def stop_on_signal(result: Any, what: str) -> None:
    """Raises :class:`Interrupted` when a signal came while ``what`` trained: it stopped after
    saving a checkpoint, or it came during the last epoch, which finished (the stage then has
    no marker yet: run again, it finds the run complete and records it).

    Args:
        result: the :class:`~sdcomplex.train.TrainResult` of the stage's run.
        what: the run, named in the message.
    """
    if result.status == "preempted":
        raise Interrupted(
            f"{what} stopped after epoch {result.epoch}; rerun to resume", result.signal
        )
    if result.signal is not None:
        raise Interrupted(
            f"{what} finished its last epoch ({result.epoch}) when the signal came; rerun to go on",
            result.signal,
        )


@dataclasses.dataclass(frozen=True)
class Layout:
    """Paths inside an output directory."""

    root: Path

    @property
    def teacher(self) -> Path:
        return self.root / "runs" / "teacher"

    def student(self, method_key: str, seed: int) -> Path:
        return self.root / "runs" / "students" / method_key / f"seed{seed}"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def tables(self) -> Path:
        return self.root / "tables"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def stages(self) -> Path:
        return self.root / STAGES_DIR

    def log(self, key: str) -> Path:
        return self.root / "logs" / f"{key.replace('/', '__')}.log"

    def marker(self, key: str) -> Path:
        return self.stages / f"{key.replace('/', '__')}.json"

    def started(self, key: str) -> Path:
        """The record of a stage begun and not finished (its inputs when it began)."""
        return self.stages / f"{key.replace('/', '__')}.started.json"


@dataclasses.dataclass
class Context:
    """What a stage function receives: the config, the layout and the verbosity."""

    config: ExperimentConfig
    layout: Layout
    quiet: bool
    stage_key: str = ""
    placement: Any = None  # the devices the training stages use (None: one device)
    writes_files: bool = True  # False in the processes other than process 0 of a distributed run

    @contextlib.contextmanager
    def training_output(self):
        """Sends the library's per-epoch lines (stdout) to the stage's log file; progress bars
        (stderr) stay on the terminal. In a process that writes no files (not process 0 of a
        distributed run) the lines go nowhere."""
        if not self.writes_files:
            with open(os.devnull, "w", encoding="utf-8") as sink, contextlib.redirect_stdout(sink):
                yield
            return
        path = self.layout.log(self.stage_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as log, contextlib.redirect_stdout(log):
            yield


@dataclasses.dataclass(frozen=True)
class Stage:
    """One unit of work with a result marker.

    Attributes:
        key: unique, path-like name (``teacher``, ``student/online_t4/seed1``, ``complexity``).
        title: one-line description for the progress display.
        payload: everything the stage's result depends on (hashed into the marker).
        run: ``ctx -> summary`` (a small JSON-serialisable dict recorded in the marker).
        owns: directories (relative to the output directory) whose every file is an output of
            the stage: a training run directory.
        size_only: directories whose files are recorded by size, not checksum: checkpoints,
            whose contents the trainer checks when it loads them.
        every_process: in a distributed run, every process runs the stage together
            (data-parallel training on the run's placement); any other stage runs in process 0
            alone, on its own devices. Not part of the hash.
    """

    key: str
    title: str
    payload: dict[str, Any]
    run: Callable[[Context], dict[str, Any]]
    owns: tuple[str, ...] = ()
    size_only: tuple[str, ...] = ()
    every_process: bool = False

    @property
    def hash(self) -> str:
        return stage_hash({"key": self.key, "payload": self.payload})


def run_dir_outputs(path: Path) -> dict[str, Any]:
    """``owns`` and ``size_only`` of a stage that trains the run directory ``path`` (relative
    to the output directory): all of it is the stage's, its checkpoints are recorded by size
    (the trainer checks their contents when it loads them)."""
    rel = path.as_posix()
    return {"owns": (rel,), "size_only": (f"{rel}/{CHECKPOINT_DIR}", f"{rel}/{PREEMPT_DIR}")}
