"""The teacher of a distillation run: its run directory, model, checkpoints and inputs.

The teacher's model is rebuilt from its own ``config.json`` and ``run.json``; its checkpoints are
read one at a time with :func:`~sdcomplex.train.load_checkpoint` (the current one cached), and it
always runs in inference mode (BatchNorm running statistics, no dropout).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sdcomplex._config_base import json_hash
from sdcomplex.data import DatasetInfo, input_statistics
from sdcomplex.distill._schedule import online_schedule
from sdcomplex.train import (
    DamagedFile,
    RunDirectory,
    TrainConfig,
    build_model,
    load_checkpoint,
    verify_checkpoint,
)
from sdcomplex.train._metrics import strip_timing
from sdcomplex.train._rundir import CONFIG_FILE, RUN_FILE


@dataclasses.dataclass(frozen=True, eq=False)
class TeacherRun:
    """A finished teacher run, opened for distillation.

    Attributes:
        run_dir: the teacher's run directory.
        config: its :class:`~sdcomplex.train.TrainConfig` (from ``config.json``).
        config_hash: the hash of that config.
        info: the :class:`~sdcomplex.data.DatasetInfo` it was trained on (from ``run.json``).
        model: the teacher's Flax module, rebuilt from its config.
        checkpoints: epochs with a complete checkpoint, increasing.
        trajectory: :func:`trajectory_digest` of its metrics lines (what its checkpoints
            computed): a teacher trained again under the same config, on another device
            count or library version, has other weights and so another digest.
    """

    run_dir: Path
    config: TrainConfig
    config_hash: str
    info: DatasetInfo
    model: nn.Module
    checkpoints: tuple[int, ...]
    trajectory: str = ""

    @property
    def final_epoch(self) -> int:
        """The epoch of the final teacher, ``config.epochs``."""
        return self.config.epochs

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary recorded in a distillation run's ``distill.json``."""
        return {
            "run_dir": str(self.run_dir),
            "config_hash": self.config_hash,
            "model": self.config.model,
            "model_options": self.config.model_options,
            "dataset": self.config.dataset,
            "epochs": self.config.epochs,
            "checkpoints": list(self.checkpoints),
            "trajectory": self.trajectory,
        }


def open_teacher(teacher_dir: str | Path) -> TeacherRun:
    """Opens a teacher run directory written by :func:`~sdcomplex.train.train`.

    Raises:
        ValueError: no such directory, not a run directory (no ``config.json`` or
            ``run.json``), no checkpoints, or no checkpoint of the teacher's final epoch
            (an unfinished run).
    """
    path = Path(teacher_dir).resolve()  # Orbax needs absolute checkpoint paths
    if not path.is_dir():
        raise ValueError(f"teacher run directory {path} does not exist")
    run = RunDirectory(path)
    if not run.config_file.is_file() or not run.run_file.is_file():
        raise ValueError(
            f"teacher directory {path} is not a training run directory (no {CONFIG_FILE} "
            f"and {RUN_FILE}); train the teacher with `sdcomplex train` first"
        )
    config = run.read_config()  # checked against the hash run.json records
    info = run.dataset_info()
    checkpoints = tuple(run.checkpoints())
    if not checkpoints:
        raise ValueError(f"teacher directory {path} has no checkpoints")
    if config.epochs not in checkpoints:
        raise ValueError(
            f"teacher run {path} is unfinished: no checkpoint of its final epoch {config.epochs} "
            f"(checkpoints: {list(checkpoints)}); finish it with `sdcomplex train` first"
        )
    model = build_model(config, info.num_classes)
    return TeacherRun(
        path, config, config.hash(), info, model, checkpoints, trajectory_digest(run.metrics())
    )


def trajectory_digest(metrics: list[dict[str, Any]]) -> str:
    """16 hex digits identifying a run's trajectory: the hash of its metrics lines without
    their timing fields (losses and accuracies at full precision after every epoch, functions
    of its weights), equal for runs that are equal bit for bit.

    Example:
        >>> line = {"epoch": 1, "train_loss": 0.5, "elapsed_s": 3.0}
        >>> trajectory_digest([line]) == trajectory_digest([{**line, "elapsed_s": 4.0}])
        True
        >>> trajectory_digest([line]) == trajectory_digest([{**line, "train_loss": 0.5000001}])
        False
    """
    return json_hash(strip_timing(metrics))


def verify_teacher_checkpoints(teacher: TeacherRun, epochs: Iterable[int]) -> None:
    """Checks the teacher checkpoints a distillation will read against their checksums.

    Raises:
        DamagedFile: one line naming the first damaged checkpoint file.
    """
    for epoch in sorted(set(epochs)):
        try:
            verify_checkpoint(teacher.run_dir, epoch)
        except DamagedFile as err:
            raise DamagedFile(
                err.path, f"{err.reason}; teacher checkpoint of epoch {epoch}, retrain the teacher"
            ) from None


def check_teacher_fits(teacher: TeacherRun, student: TrainConfig, info: DatasetInfo) -> None:
    """Raises ValueError unless the teacher was trained on the student's data set.

    Checked: the data set name, the binary relabelling, the class count and names, and the
    input shape. Normalisation may differ (the teacher's inputs are mapped, see
    :func:`teacher_input_map`); subsets of the same data set may differ.
    """
    where = f"teacher {teacher.run_dir}"
    if teacher.info.num_classes != info.num_classes:
        raise ValueError(
            f"{where} has {teacher.info.num_classes} classes but the student's data "
            f"({student.dataset}) has {info.num_classes}"
        )
    if teacher.config.dataset != student.dataset or teacher.config.binary != student.binary:
        raise ValueError(
            f"{where} was trained on {teacher.config.dataset}"
            f"{' (binary)' if teacher.config.binary else ''}, the student is trained on "
            f"{student.dataset}{' (binary)' if student.binary else ''}: use the same data set"
        )
    if tuple(teacher.info.class_names) != tuple(info.class_names):
        raise ValueError(f"{where} has other class names than the student's data")
    if tuple(teacher.info.input_shape) != tuple(info.input_shape):
        raise ValueError(
            f"{where} takes inputs of shape {tuple(teacher.info.input_shape)}, the student's "
            f"data has {tuple(info.input_shape)}"
        )


def teacher_schedule(
    teacher: TeacherRun,
    student: TrainConfig,
    info: DatasetInfo,
    mode: str,
    *,
    stride: int = 1,
    teacher_epoch: int | None = None,
) -> tuple[int, ...] | None:
    """The teacher checkpoint of each student epoch: None (mode ``"none"``), ``teacher_epoch``
    (default the final one) every epoch (``"offline"``) or :func:`~sdcomplex.distill.
    online_schedule` (``"online"``), once the teacher is checked to fit the student's data and
    every checkpoint the student reads (the final one too, for diagnostics) to be intact.

    Raises:
        ValueError: a teacher that does not fit (:func:`check_teacher_fits`), a missing
            checkpoint; :class:`~sdcomplex.train.DamagedFile`: a damaged one.
    """
    check_teacher_fits(teacher, student, info)
    schedule = None
    if mode == "online":
        schedule = online_schedule(
            student.epochs, teacher.final_epoch, teacher.checkpoints, stride=stride
        )
    elif mode == "offline":
        chosen = teacher.final_epoch if teacher_epoch is None else teacher_epoch
        if chosen not in teacher.checkpoints:
            raise ValueError(
                f"teacher {teacher.run_dir} has no checkpoint for epoch {chosen}; checkpoints: "
                f"{list(teacher.checkpoints)}"
            )
        schedule = (chosen,) * student.epochs
    verify_teacher_checkpoints(teacher, (*(schedule or ()), teacher.final_epoch))
    return schedule


def _stats(config: TrainConfig, info: DatasetInfo) -> tuple[np.ndarray, np.ndarray]:
    mean, std = input_statistics(info, normalise=config.normalise)
    return np.asarray(mean, np.float32), np.asarray(std, np.float32)


def teacher_input_map(
    teacher: TeacherRun, student: TrainConfig, info: DatasetInfo
) -> Callable[[jax.Array], jax.Array] | None:
    """Maps the student's normalised inputs to the teacher's normalisation (None: identical).

    With per-channel statistics ``(m_s, s_s)`` of the student and ``(m_t, s_t)`` of the
    teacher, ``x_t = (x_s * s_s + m_s - m_t) / s_t``; both see the same raw (augmented) image.
    """
    m_s, s_s = _stats(student, info)
    m_t, s_t = _stats(teacher.config, teacher.info)
    if np.array_equal(m_s, m_t) and np.array_equal(s_s, s_t):
        return None
    scale = jnp.asarray(s_s / s_t)
    shift = jnp.asarray((m_s - m_t) / s_t)

    def to_teacher(x: jax.Array) -> jax.Array:
        return x * scale + shift

    return to_teacher


def make_teacher_apply(
    model: nn.Module, input_map: Callable[[jax.Array], jax.Array] | None
) -> Callable[[Any, jax.Array], jax.Array]:
    """``(teacher_variables, student_inputs) -> teacher logits`` in inference mode (traceable).

    Used as the trainer's :attr:`~sdcomplex.train.Supervision.apply`: the variables are a jit
    argument, so switching checkpoints does not recompile.
    """

    def teacher_apply(variables: Any, x: jax.Array) -> jax.Array:
        if input_map is not None:
            x = input_map(x)
        return model.apply(variables, x, train=False)  # type: ignore[return-value]

    return teacher_apply


def load_teacher_variables(run_dir: str | Path, epoch: int) -> Any:
    """A teacher checkpoint's variables as *uncommitted* device arrays.

    Orbax restores arrays committed to a device; a jitted step whose other arguments (the
    student's initial state) are uncommitted would then compile once more for the committed
    outputs that follow. Uncommitted teacher variables keep the step at one compilation.
    """
    variables = load_checkpoint(run_dir, epoch)
    return jax.tree.map(lambda leaf: jnp.asarray(np.asarray(leaf)), variables)


class CheckpointCache:
    """Loads teacher checkpoints from disk on demand, holding only the latest one in memory.

    Example:
        >>> cache = CheckpointCache("runs/teacher")  # doctest: +SKIP
        >>> variables = cache.get(3)  # read from disk  # doctest: +SKIP
        >>> cache.get(3) is variables  # cached  # doctest: +SKIP
        True
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.epoch: int | None = None
        self._variables: Any = None
        self.loads = 0

    def get(self, epoch: int) -> Any:
        """The variables ``{'params', 'batch_stats'}`` of the teacher after ``epoch`` epochs."""
        if epoch != self.epoch:
            self._variables = None  # release the previous checkpoint before reading the next
            self._variables = load_teacher_variables(self.run_dir, epoch)
            self.epoch = epoch
            self.loads += 1
        return self._variables


@dataclasses.dataclass(frozen=True)
class ScheduledTeacher:
    """``epoch -> teacher variables``: student epoch ``e`` (1-based) learns from the teacher
    checkpoint ``schedule[e - 1]``, read through ``cache`` (the trainer's
    :attr:`~sdcomplex.train.Supervision.variables` in a KD run: a deterministic function of the
    epoch, so a resumed run replays the same checkpoints).

    Attributes:
        cache: the :class:`CheckpointCache` of the teacher run.
        schedule: the teacher epoch of each student epoch (:func:`teacher_schedule`).
    """

    cache: CheckpointCache
    schedule: tuple[int, ...]

    def __call__(self, epoch: int) -> Any:
        """The variables of the teacher checkpoint that supervises student epoch ``epoch``."""
        return self.cache.get(self.schedule[epoch - 1])
