"""``distill(config, run_dir)``: a student trained with no KD, offline KD or online KD.

:func:`distill` reads top-down: check the config (a finished run returns at once), open the
teacher, load the data, pick the teacher's checkpoints (``teacher_schedule``), draw the probe
and fidelity subsets (:func:`_subsets`), write ``distill.json`` (:func:`_record`), and hand the
trainer its data and one :class:`~sdcomplex.train.Supervision` (:func:`_supervision`): the KD
loss, the teacher's forward pass inside the student's jitted step (on the same augmented
batch), the teacher checkpoint of each epoch (a jit argument: switching never recompiles) and
the :class:`~sdcomplex.distill.Diagnostics`. Resumption after a kill is the trainer's, and exact.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import numpy as np

from sdcomplex._io import to_jsonable
from sdcomplex.data import Dataset, input_statistics, quiet_loading
from sdcomplex.distill._config import DistillConfig
from sdcomplex.distill._diagnostics import (
    NTK_INIT_FILE,
    Diagnostics,
    diagnostic_epochs,
    probe_indices,
)
from sdcomplex.distill._loss import kd_loss
from sdcomplex.distill._teacher import (
    CheckpointCache,
    ScheduledTeacher,
    TeacherRun,
    make_teacher_apply,
    open_teacher,
    teacher_input_map,
    teacher_schedule,
)
from sdcomplex.placement import Placement, make_placement
from sdcomplex.train import (
    RunDirectory,
    Supervision,
    TrainResult,
    make_preprocess,
    setup_run,
    train,
)
from sdcomplex.train._checkpoint import library_versions
from sdcomplex.train._rundir import DISTILL_FILE, ConfigKind
from sdcomplex.train._trainer import finished_result

if TYPE_CHECKING:
    from sdcomplex.train._setup import RunSetup

DISTILL_RUN = ConfigKind("distillation run", "distillation record", DistillConfig, DISTILL_FILE)
"""The config kind of a distillation run, recorded in its ``distill.json``."""


class _Subsets(NamedTuple):
    """The fixed examples the diagnostics use (sorted indices): the probe of the NTK and the
    complexities (training set), and the fidelity subsets of the training and the test set."""

    probe: np.ndarray
    fidelity_train: np.ndarray
    fidelity_test: np.ndarray


def _previous_run(run: RunDirectory, config: DistillConfig) -> dict[str, Any] | None:
    """The ``distill.json`` of a run directory holding this config (None for a new run)."""
    record = run.verify_record(config, DISTILL_RUN)
    if record is None and run.checkpoints():
        raise ValueError(
            f"{run.path} holds a training run that is not a distillation run (no {DISTILL_FILE}); "
            "use another output directory (nothing was changed)"
        )
    return record


def _open_teacher(config: DistillConfig, previous: dict[str, Any] | None) -> TeacherRun | None:
    """The teacher run (None without one), refused if it changed since this run started."""
    if config.teacher_dir is None:
        return None
    teacher = open_teacher(config.teacher_dir)
    recorded = (previous or {}).get("teacher") or {}
    if recorded and recorded.get("config_hash") != teacher.config_hash:
        raise ValueError(
            f"teacher run {teacher.run_dir} has changed since this distillation run started "
            f"(config {recorded.get('config_hash')} -> {teacher.config_hash}); not resuming"
        )
    if recorded.get("trajectory", teacher.trajectory) != teacher.trajectory:  # (older records)
        raise ValueError(
            f"teacher run {teacher.run_dir} was trained again since this distillation run "
            f"started: same config, other metrics (trajectory {recorded['trajectory']} -> "
            f"{teacher.trajectory}), so other checkpoints; not resuming"
        )
    return teacher


def _fidelity_subset(
    labels: np.ndarray, size: int | None, num_classes: int, seed: tuple[int, int]
) -> np.ndarray:
    """All indices of a split, or ``size`` class-balanced random ones when it has more."""
    if size is None or size >= len(labels):
        return np.arange(len(labels))
    return probe_indices(labels, size, num_classes, seed)


def _subsets(config: DistillConfig, dataset: Dataset) -> _Subsets:
    """The probe (``probe_size`` class-balanced random training examples) and the fidelity
    subsets (``fidelity_examples`` of each split, seeds derived from ``probe_seed``).

    Raises:
        ValueError: a probe larger than the training set (when there are diagnostics).
    """
    info = dataset.info
    if config.diagnostics_every and config.probe_size > info.n_train:
        raise ValueError(
            f"probe_size {config.probe_size} exceeds the {info.n_train} training examples"
        )
    size, seed, classes = config.fidelity_examples, config.probe_seed, info.num_classes
    return _Subsets(
        probe_indices(dataset.y_train, min(config.probe_size, info.n_train), classes, seed),
        _fidelity_subset(dataset.y_train, size, classes, (seed, 1)),
        _fidelity_subset(dataset.y_test, size, classes, (seed, 2)),
    )


def _diagnostics_record(
    config: DistillConfig, teacher: TeacherRun | None, subsets: _Subsets, dataset: Dataset
) -> dict[str, Any]:
    info, (probe, train, test) = dataset.info, subsets
    soft = {"kind": "soft", "temperature": config.temperature}
    return {
        "epochs": list(diagnostic_epochs(config.student.epochs, config.diagnostics_every)),
        "probe": {
            "split": "train",
            "size": len(probe),
            "seed": config.probe_seed,
            "class_counts": np.bincount(dataset.y_train[probe], minlength=info.num_classes),
            "indices": probe,
        },
        "ntk": {
            "outputs": "mean",
            "mode": "inference (BatchNorm running statistics)",
            "init_file": NTK_INIT_FILE,
        },
        "complexity": "adjusted: sqrt(s(Y) tr K) / n, float64 solves, no ridge",
        "targets": {
            "labels": {"kind": "one_hot", "centered": False},
            "random_labels": {
                "kind": "random_labels",
                "seed": config.random_labels_seed,
                "centered": False,
            },
            "teacher_final": None
            if teacher is None
            else {**soft, "checkpoint": teacher.final_epoch},
            "current": {"kind": "one_hot", "centered": False}
            if config.mode == "none"
            else {**soft, "checkpoint": "teacher_epoch"},
        },
        "fidelity": {
            "examples": config.fidelity_examples,
            "subsets": "class-balanced, random (seed probe_seed)",
            "train_indices": train if len(train) < info.n_train else "all",
            "test_indices": test if len(test) < info.n_test else "all",
        },
    }


def _record(
    config: DistillConfig,
    teacher: TeacherRun | None,
    schedule: tuple[int, ...] | None,
    subsets: _Subsets,
    dataset: Dataset,
) -> dict[str, Any]:
    """The contents of ``distill.json``: the config and its hash, the teacher and how its
    inputs are made, the schedule, the loss, and what the diagnostics compute on."""
    teacher_inputs = None
    if teacher is not None:
        mapped = teacher_input_map(teacher, config.student, dataset.info) is not None
        teacher_inputs = "student inputs renormalised" if mapped else "student inputs"
    return {
        "config": config.to_dict(),
        "config_hash": config.hash(),
        "created": time.time(),
        "mode": config.mode,
        "teacher": None if teacher is None else teacher.describe(),
        "teacher_inputs": teacher_inputs,
        "schedule": None if schedule is None else list(schedule),
        "loss": {"kind": "cross_entropy", "targets": "one-hot labels"}
        if config.mode == "none"
        else {
            "kind": "kd",
            "formula": "(1 - alpha) tau^2 KL(softmax(z_t/tau) || softmax(z_s/tau)) "
            "+ alpha CE(softmax(z_s), y)",
            "temperature": config.temperature,
            "alpha": config.alpha,
        },
        "diagnostics": _diagnostics_record(config, teacher, subsets, dataset),
        "versions": library_versions(),
    }


def _kd_objective(
    student_logits: jax.Array,
    labels: jax.Array,
    teacher_logits: jax.Array,
    *,
    temperature: float,
    alpha: float,
) -> jax.Array:
    """:func:`kd_loss` in the argument order of :attr:`~sdcomplex.train.Supervision.loss`."""
    return kd_loss(student_logits, teacher_logits, labels, temperature=temperature, alpha=alpha)


def _supervision(
    config: DistillConfig,
    setup: RunSetup,
    teacher: TeacherRun | None,
    schedule: tuple[int, ...] | None,
    subsets: _Subsets,
) -> Supervision:
    """The trainer's supervision of a distillation run: the KD loss against the teacher
    checkpoint of each epoch (mode none: the cross-entropy with the labels) and the
    run's :class:`~sdcomplex.distill.Diagnostics`."""
    student, info = config.student, setup.dataset.info
    teacher_apply = cache = None
    if teacher is not None:
        teacher_apply = make_teacher_apply(teacher.model, teacher_input_map(teacher, student, info))
        cache = CheckpointCache(teacher.run_dir)  # one checkpoint in memory for both uses
    mean, std = input_statistics(info, normalise=student.normalise)
    plain = make_preprocess(mean=mean, std=std, pixel_max=info.pixel_max, augment=False)
    diagnostics = Diagnostics(
        config=config,
        student_model=setup.model,
        student_preprocess=functools.partial(plain, jax.random.key(0)),
        input_info=info.replace(mean=mean, std=std),
        teacher=teacher,
        teacher_apply=teacher_apply,
        cache=cache,
        schedule=schedule,
        probe=subsets.probe,
        fidelity_train=subsets.fidelity_train,
        fidelity_test=subsets.fidelity_test,
        batch_size=min(student.eval_batch_size, max(len(s) for s in subsets)),
    )
    if config.mode == "none":
        return Supervision(diagnostics=diagnostics)
    assert cache is not None and schedule is not None
    return Supervision(
        loss=functools.partial(_kd_objective, temperature=config.temperature, alpha=config.alpha),
        apply=teacher_apply,
        variables=ScheduledTeacher(cache, schedule),
        diagnostics=diagnostics,
    )


def distill(
    config: DistillConfig,
    run_dir: str | Path,
    *,
    quiet: bool = False,
    placement: Placement | None = None,
) -> TrainResult:
    """Trains (or resumes, or recognises as finished) the distillation run ``config``.

    Modes:

    * ``"none"``: cross-entropy with the labels (a teacher, if given, is only used by the
      diagnostics);
    * ``"offline"``: KD loss (:func:`kd_loss`: ``(1 - alpha) tau^2 KL(p_t^tau || p_s^tau) +
      alpha CE``) against one teacher checkpoint, the final one or ``teacher_epoch``;
    * ``"online"``: the same loss against the teacher checkpoint that
      :func:`online_schedule` assigns to each student epoch (every ``stride``-th and the last).

    The teacher runs in inference mode inside the student's jitted step, on the same augmented
    and normalised batch (mapped to the teacher's normalisation if it differs); its variables
    are a jit argument, so switching checkpoints never recompiles, and only the checkpoint of
    the current epoch is read from disk and held in memory.

    The run directory is the trainer's (``config.json`` = the student's TrainConfig,
    ``run.json``, ``metrics.jsonl``, checkpoints) plus ``distill.json`` (the DistillConfig, its
    hash, the teacher, the schedule, the loss, the probe indices and the targets the
    diagnostics use) and ``ntk_init.npy`` (the student's initial NTK on the probe). Each
    metrics line also holds ``teacher_epoch`` and, on diagnostic epochs, the keys of
    ``DIAGNOSTIC_KEYS`` of :mod:`sdcomplex.distill._diagnostics`.

    Args:
        config: the distillation config.
        run_dir: output directory: new or empty, or holding a run of the same config (resumed,
            or returned at once when complete).
        quiet: no progress bars and no per-epoch lines.
        placement: the devices to train on (default: one device); data-parallel as in
            :func:`~sdcomplex.train.train`: the teacher's forward pass runs inside the
            student's step on the same shard of the global batch, its variables replicated.
            The diagnostics' forward passes run on each process's default device and their
            NTKs on the probe on every device (`empirical_ntk`'s default mesh), whatever the
            placement.

    Returns:
        The trainer's :class:`~sdcomplex.train.TrainResult`.

    Raises:
        ValueError: a teacher directory without checkpoints or unfinished, a teacher trained on
            other data (class count, data set, input shape), a missing checkpoint the schedule
            needs, a probe larger than the training set, a run directory holding another
            config, and every error of :func:`~sdcomplex.train.train`; all before training.

    Example:
        >>> from sdcomplex.train import TrainConfig
        >>> student = TrainConfig(model="mlp", dataset="digits", augment=False, epochs=3)
        >>> cfg = DistillConfig(student=student, teacher_dir="runs/teacher", mode="online")
        >>> result = distill(cfg, "runs/online", quiet=True)  # doctest: +SKIP
        >>> [m["teacher_epoch"] for m in result.metrics]  # doctest: +SKIP
        [1, 1, 2, 3]
    """
    if not isinstance(config, DistillConfig):
        raise TypeError(f"config must be a DistillConfig, got {type(config).__name__}")
    run_dir = Path(run_dir).resolve()  # Orbax needs absolute checkpoint paths
    student = config.student
    if placement is None:
        placement = make_placement(num_devices=1)
    elif not isinstance(placement, Placement):
        raise TypeError(f"placement must be a Placement, got {type(placement).__name__}")
    run = RunDirectory(run_dir)
    previous = _previous_run(run, config)
    if previous is not None and run.config_file.exists():
        done = finished_result(student, run_dir)  # None if unfinished or damaged
        if done is not None:  # (whatever the placement: a finished run needs no devices)
            return done
    placement.check_divides(student.batch_size, "batch_size")
    teacher = _open_teacher(config, previous)
    with quiet_loading(quiet):  # (a quiet run's data loading shows no progress bar)
        setup = setup_run(student)  # loads the data; raises before anything is written
    dataset, schedule = setup.dataset, None
    if teacher is not None:  # checked to fit; every checkpoint the run reads verified
        schedule = teacher_schedule(
            teacher, student, dataset.info, config.mode, stride=config.stride,
            teacher_epoch=config.teacher_epoch,
        )  # fmt: skip
    subsets = _subsets(config, dataset)
    if previous is None and placement.writes_files:  # a new run: config.json, distill.json
        if not run.verify(student):  # (raises for a directory holding anything else)
            run.create(student)
        record = _record(config, teacher, schedule, subsets, dataset)
        run.write_metadata(to_jsonable(record), DISTILL_FILE)
    placement.sync("distillation record")
    supervision = _supervision(config, setup, teacher, schedule, subsets)
    return train(
        student, run_dir, supervision=supervision, setup=setup, placement=placement, quiet=quiet
    )
