"""Divergence: a non-finite training loss stops the run, naming the epoch and the step.

The training loop keeps at most one step in flight: after dispatching step ``s + 1`` it waits
for the loss of step ``s`` (a scalar already computed on the device), so checking that loss on
the host adds no synchronisation. Every step's loss is checked, the last one of an epoch (or
before a preemption save) included, before anything of that step is checkpointed; the
evaluated train and test losses are checked before the epoch's metrics line is written. So the
latest checkpoint is always the state after the last finite step, and ``metrics.jsonl`` never
holds a non-finite loss.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


class TrainingDiverged(ValueError):
    """A training loss became NaN or infinite (a ``ValueError``: the CLI prints one line).

    Attributes:
        epoch: the epoch (1-based) of the first non-finite loss.
        step: the step within that epoch (1-based); ``None`` when the evaluated loss after
            the epoch is the first non-finite one.
        global_step: optimiser updates up to and including that step.
        value: the loss (``nan``, ``inf`` or ``-inf``).
    """

    def __init__(
        self,
        message: str,
        *,
        epoch: int,
        step: int | None,
        global_step: int,
        value: float,
    ) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.step = step
        self.global_step = global_step
        self.value = value


def _advice(learning_rate: float) -> str:
    return (
        f"lower the learning rate (now {learning_rate:g}, e.g. --lr {learning_rate / 10:g}); "
        "nothing after the last finite step was saved"
    )


def check_step_loss(
    loss: Any, *, epoch: int, step: int, steps_per_epoch: int, learning_rate: float
) -> None:
    """Raises :class:`TrainingDiverged` if the loss of ``step`` (1-based) of ``epoch`` is not
    finite.

    Args:
        loss: the scalar training loss of that step (a device array already computed).
        epoch: the epoch (1-based).
        step: the step within the epoch (1-based).
        steps_per_epoch: steps of every epoch (to name the global step).
        learning_rate: the config's peak learning rate (named in the advice).
    """
    value = float(np.asarray(loss))
    if math.isfinite(value):
        return
    global_step = (epoch - 1) * steps_per_epoch + step
    raise TrainingDiverged(
        f"training diverged: the loss is {value} at epoch {epoch}, step {step} of "
        f"{steps_per_epoch} (global step {global_step}); {_advice(learning_rate)}",
        epoch=epoch,
        step=step,
        global_step=global_step,
        value=value,
    )


def check_evaluated_losses(
    losses: dict[str, float], *, epoch: int, global_step: int, learning_rate: float
) -> None:
    """Raises :class:`TrainingDiverged` if an evaluated loss after ``epoch`` is not finite
    (the last update produced non-finite parameters although every step's loss was finite).
    """
    for name, value in losses.items():
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"training diverged: the evaluated {name} after epoch {epoch} (global step "
                f"{global_step}) is {value}; {_advice(learning_rate)}",
                epoch=epoch,
                step=None,
                global_step=global_step,
                value=value,
            )
