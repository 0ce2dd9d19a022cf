"""Which teacher checkpoint supervises the student at each epoch of online distillation."""

from __future__ import annotations

from collections.abc import Iterable


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def trajectory_epochs(teacher_epochs: int, stride: int = 1) -> tuple[int, ...]:
    """Teacher epochs replayed by online KD: every ``stride``-th epoch and always the last.

    Returns:
      Increasing epochs in [stride, teacher_epochs], ending with ``teacher_epochs``.
    """
    _positive_int("teacher_epochs", teacher_epochs)
    _positive_int("stride", stride)
    epochs = list(range(stride, teacher_epochs + 1, stride))
    if not epochs or epochs[-1] != teacher_epochs:
        epochs.append(teacher_epochs)
    return tuple(epochs)


def online_schedule(
    student_epochs: int,
    teacher_epochs: int,
    available: Iterable[int] | None = None,
    *,
    stride: int = 1,
) -> tuple[int, ...]:
    """Teacher checkpoint epoch for each student epoch t = 1 .. T_s (PAPER.md section 5).

    The teacher was trained for T_t epochs; online KD replays its checkpoints
    e_1 < ... < e_m (every ``stride``-th epoch and the last, see `trajectory_epochs`) at the
    student's pace: at student epoch t the supervising checkpoint is the latest e_k with
    e_k <= ceil(t * T_t / T_s). The last student epoch is always supervised by the final teacher.

    Args:
      student_epochs: T_s >= 1.
      teacher_epochs: T_t >= 1.
      available: epochs of the checkpoints that exist on disk; every checkpoint the schedule
        uses must be among them (None: assume all exist).
      stride: use every ``stride``-th teacher checkpoint.

    Returns:
      A tuple of length T_s; entry t - 1 is the checkpoint epoch used at student epoch t.
      When ceil(t * T_t / T_s) < e_1, the first checkpoint e_1 is used.

    Raises:
      ValueError: a needed checkpoint is missing (the message names its epoch), or a bad count.

    Example:
      >>> online_schedule(4, 8)
      (2, 4, 6, 8)
      >>> online_schedule(6, 3)
      (1, 1, 2, 2, 3, 3)
    """
    t_s = _positive_int("student_epochs", student_epochs)
    t_t = _positive_int("teacher_epochs", teacher_epochs)
    trajectory = trajectory_epochs(t_t, stride)
    schedule = []
    for t in range(1, t_s + 1):
        target = -(-t * t_t // t_s)  # ceil(t * T_t / T_s), exact in integers
        usable = [e for e in trajectory if e <= target]
        schedule.append(usable[-1] if usable else trajectory[0])
    if available is not None:
        have = set(int(e) for e in available)
        for t, epoch in enumerate(schedule, start=1):
            if epoch not in have:
                raise ValueError(
                    f"teacher checkpoint for epoch {epoch} is missing (needed at student "
                    f"epoch {t}); available: {sorted(have) if have else 'none'}"
                )
    return tuple(schedule)
