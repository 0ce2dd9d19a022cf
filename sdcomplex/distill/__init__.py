"""Knowledge distillation: the KD loss, the online (teacher-trajectory) schedule, and
:func:`distill`, which trains a student with no KD, offline KD or online KD and logs fidelity,
NTK similarity and supervision-complexity diagnostics (PAPER.md sections 2, 4 and 5).

Example:
    >>> from sdcomplex.train import TrainConfig
    >>> from sdcomplex.distill import DistillConfig, distill
    >>> student = TrainConfig(model="lenet5x8", dataset="cifar10_jpeg", epochs=200)
    >>> cfg = DistillConfig(student=student, teacher_dir="runs/resnet56", mode="online",
    ...                     temperature=4.0)
    >>> result = distill(cfg, "runs/lenet5x8_online")  # doctest: +SKIP
"""

from sdcomplex.distill._config import (
    MODES,
    DistillConfig,
    load_config,
)
from sdcomplex.distill._diagnostics import Diagnostics
from sdcomplex.distill._loss import kd_loss, kd_loss_per_example
from sdcomplex.distill._run import distill
from sdcomplex.distill._schedule import online_schedule, trajectory_epochs
from sdcomplex.distill._teacher import (
    CheckpointCache,
    TeacherRun,
    check_teacher_fits,
    make_teacher_apply,
    open_teacher,
    teacher_input_map,
)

__all__ = [
    "MODES",
    "CheckpointCache",
    "Diagnostics",
    "DistillConfig",
    "TeacherRun",
    "check_teacher_fits",
    "distill",
    "kd_loss",
    "kd_loss_per_example",
    "load_config",
    "make_teacher_apply",
    "online_schedule",
    "open_teacher",
    "teacher_input_map",
    "trajectory_epochs",
]
