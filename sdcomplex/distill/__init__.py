"""Knowledge distillation: the KD loss and the online (teacher-trajectory) schedule."""

from sdcomplex.distill._loss import check_kd_arguments, kd_loss, kd_loss_per_example
from sdcomplex.distill._schedule import online_schedule, trajectory_epochs

__all__ = [
    "check_kd_arguments",
    "kd_loss",
    "kd_loss_per_example",
    "online_schedule",
    "trajectory_epochs",
]
