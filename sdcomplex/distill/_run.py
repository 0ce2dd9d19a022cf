"""``distill(config, run_dir)``: a student trained with no KD, offline KD or online KD.

Built on :func:`sdcomplex.train.train`: the teacher's variables are the trainer's per-epoch
``supervision`` (a jit argument, so switching checkpoints never recompiles), the teacher's
forward pass is its ``supervision_apply`` (inside the student's jitted step, on the same
augmented batch), the KD loss its ``loss_fn`` and :class:`~sdcomplex.distill._diagnostics.
Diagnostics` its ``diagnostics_fn``. Resumption after a kill is the trainer's, and exact.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from sdcomplex._io import to_jsonable
from sdcomplex.data import input_statistics
from sdcomplex.distill._config import DistillConfig
from sdcomplex.distill._diagnostics import (
    NTK_INIT_FILE,
    Diagnostics,
    diagnostic_epochs,
    probe_indices,
)
from sdcomplex.distill._loss import kd_loss
from sdcomplex.distill._schedule import online_schedule
from sdcomplex.distill._teacher import (
    CheckpointCache,
    TeacherRun,
    check_teacher_fits,
    make_teacher_apply,
    open_teacher,
    teacher_input_map,
    verify_teacher_checkpoints,
)
from sdcomplex.placement import Placement, make_placement
from sdcomplex.train import (
    RunDirectory,
    TrainResult,
    make_preprocess,
    setup_run,
    train,
)
from sdcomplex.train._checkpoint import library_versions
from sdcomplex.train._rundir import ConfigKind
from sdcomplex.train._trainer import finished_result

DISTILL_FILE = "distill.json"
"""The sealed record of a distillation run (its config, teacher, schedule, loss, probe)."""
DISTILL_RUN = ConfigKind("distillation run", "distillation record", DistillConfig, DISTILL_FILE)
"""The config kind of a distillation run, recorded in its ``distill.json``."""


def _previous_run(run: RunDirectory, config: DistillConfig) -> dict[str, Any] | None:
    """The ``distill.json`` of a run directory holding this config (None for a new run)."""
    record = run.verify_record(config, DISTILL_RUN)
    if record is None and run.checkpoints():
        raise ValueError(
            f"{run.path} holds a training run that is not a distillation run (no {DISTILL_FILE}); "
            "use another output directory (nothing was changed)"
        )
    return record


def _schedule(config: DistillConfig, teacher: TeacherRun | None) -> tuple[int, ...] | None:
    epochs = config.student.epochs
    if config.mode == "none":
        return None
    assert teacher is not None
    if config.mode == "online":
        return online_schedule(
            epochs, teacher.final_epoch, teacher.checkpoints, stride=config.stride
        )
    chosen = teacher.final_epoch if config.teacher_epoch is None else config.teacher_epoch
    if chosen not in teacher.checkpoints:
        raise ValueError(
            f"teacher {teacher.run_dir} has no checkpoint for epoch {chosen}; checkpoints: "
            f"{list(teacher.checkpoints)}"
        )
    return (chosen,) * epochs


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
            The diagnostics run on one device (the default one of each process).

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
    placement.check_divides(student.batch_size, "batch_size")
    run = RunDirectory(run_dir)
    previous = _previous_run(run, config)
    if previous is not None and run.config_file.exists():
        done = finished_result(student, run_dir)  # None if unfinished or damaged
        if done is not None:
            return done
    teacher = open_teacher(config.teacher_dir) if config.teacher_dir is not None else None
    if teacher is not None:
        recorded = (previous or {}).get("teacher") or {}
        if recorded and recorded.get("config_hash") != teacher.config_hash:
            raise ValueError(
                f"teacher run {teacher.run_dir} has changed since this distillation run started "
                f"(config {recorded.get('config_hash')} -> {teacher.config_hash}); not resuming"
            )
    setup = setup_run(student)  # loads the data; raises before anything is written
    info = setup.dataset.info
    if teacher is not None:
        check_teacher_fits(teacher, student, info)
    schedule = _schedule(config, teacher)
    if teacher is not None:  # every checkpoint this run will read, before anything is written
        verify_teacher_checkpoints(teacher, (*(schedule or ()), teacher.final_epoch))
    if config.diagnostics_every and config.probe_size > info.n_train:
        raise ValueError(
            f"probe_size {config.probe_size} exceeds the {info.n_train} training examples"
        )
    y_train = setup.dataset.y_train
    probe = probe_indices(
        y_train,
        min(config.probe_size, info.n_train),
        info.num_classes,
        config.probe_seed,
    )
    y_test = setup.dataset.y_test
    fidelity_train = np.arange(info.n_train)
    fidelity_test = np.arange(info.n_test)
    if config.fidelity_examples is not None:
        size = config.fidelity_examples
        if size < info.n_train:
            fidelity_train = probe_indices(y_train, size, info.num_classes, (config.probe_seed, 1))
        if size < info.n_test:
            fidelity_test = probe_indices(y_test, size, info.num_classes, (config.probe_seed, 2))
    probe_counts = np.bincount(y_train[probe], minlength=info.num_classes)
    student_model = setup.model

    mean, std = input_statistics(info, normalise=student.normalise)
    plain = make_preprocess(mean=mean, std=std, pixel_max=info.pixel_max, augment=False)
    zero_key = jax.random.key(0)

    def student_inputs(raw: jax.Array) -> jax.Array:
        return plain(zero_key, raw)

    input_map = None
    teacher_apply = None
    cache = None
    if teacher is not None:
        input_map = teacher_input_map(teacher, student, info)
        teacher_apply = make_teacher_apply(teacher.model, input_map)
        cache = CheckpointCache(teacher.run_dir)

    tau, alpha = config.temperature, config.alpha
    record = {
        "config": config.to_dict(),
        "config_hash": config.hash(),
        "created": time.time(),
        "mode": config.mode,
        "teacher": None if teacher is None else teacher.describe(),
        "teacher_inputs": None
        if teacher is None
        else ("student inputs" if input_map is None else "student inputs renormalised"),
        "schedule": None if schedule is None else list(schedule),
        "loss": (
            {"kind": "cross_entropy", "targets": "one-hot labels"}
            if config.mode == "none"
            else {
                "kind": "kd",
                "formula": "(1 - alpha) tau^2 KL(softmax(z_t/tau) || softmax(z_s/tau)) "
                "+ alpha CE(softmax(z_s), y)",
                "temperature": tau,
                "alpha": alpha,
            }
        ),
        "diagnostics": {
            "epochs": list(diagnostic_epochs(student.epochs, config.diagnostics_every)),
            "probe": {
                "split": "train",
                "size": len(probe),
                "seed": config.probe_seed,
                "class_counts": probe_counts,
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
                else {"kind": "soft", "temperature": tau, "checkpoint": teacher.final_epoch},
                "current": {"kind": "one_hot", "centered": False}
                if config.mode == "none"
                else {"kind": "soft", "temperature": tau, "checkpoint": "teacher_epoch"},
            },
            "fidelity": {
                "examples": config.fidelity_examples,
                "subsets": "class-balanced, random (seed probe_seed)",
                "train_indices": fidelity_train if len(fidelity_train) < info.n_train else "all",
                "test_indices": fidelity_test if len(fidelity_test) < info.n_test else "all",
            },
        },
        "versions": library_versions(),
    }
    if previous is None and placement.writes_files:  # a new run: config.json, distill.json
        if not run.verify(student):  # (raises for a directory holding anything else)
            run.create(student)
        run.write_metadata(to_jsonable(record), DISTILL_FILE)
    placement.sync("distillation record")
    diagnostics = Diagnostics(
        config=config,
        student_model=student_model,
        student_preprocess=student_inputs,
        input_info=info.replace(mean=mean, std=std),
        teacher=teacher,
        teacher_apply=teacher_apply,
        cache=cache,
        schedule=schedule,
        probe=probe,
        fidelity_train=fidelity_train,
        fidelity_test=fidelity_test,
        batch_size=min(
            student.eval_batch_size, max(len(fidelity_train), len(fidelity_test), len(probe))
        ),
    )
    if config.mode == "none":
        return train(
            student,
            run_dir,
            quiet=quiet,
            diagnostics_fn=diagnostics,
            setup=setup,
            placement=placement,
        )

    assert cache is not None and schedule is not None

    def supervision_fn(epoch: int) -> Any:
        return cache.get(schedule[epoch - 1])

    def loss_fn(student_logits: jax.Array, labels: jax.Array, teacher_logits: jax.Array):
        return kd_loss(student_logits, teacher_logits, labels, temperature=tau, alpha=alpha)

    return train(
        student,
        run_dir,
        quiet=quiet,
        loss_fn=loss_fn,
        supervision_apply=teacher_apply,
        supervision_fn=supervision_fn,
        diagnostics_fn=diagnostics,
        setup=setup,
        placement=placement,
    )
