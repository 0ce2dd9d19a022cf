"""What a student learns from: the :class:`Supervision` that :func:`~sdcomplex.train.train` and
:func:`~sdcomplex.train.train_students` take (the one seam of knowledge distillation:
:func:`sdcomplex.distill.distill` builds one), and the :class:`EpochInfo` its diagnostics see.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import numpy as np
import optax

from sdcomplex.data import Dataset
from sdcomplex.train._config import TrainConfig


def cross_entropy_loss(logits: jax.Array, labels: jax.Array, outputs: Any = None) -> jax.Array:
    """Mean softmax cross-entropy with integer labels (the default :attr:`Supervision.loss`).

    ``-(1/B) sum_i log softmax(z_i)[y_i]``; ``outputs`` is ignored.

    Args:
        logits: ``(B, C)`` float.
        labels: ``(B,)`` int.
        outputs: unused.

    Returns:
        float32 scalar.
    """
    del outputs
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


class EpochInfo(NamedTuple):
    """What :attr:`Supervision.diagnostics` sees after each evaluated epoch (and at epoch 0).

    Attributes:
        epoch: epochs trained so far (0 = initialisation).
        step: optimiser updates so far.
        variables: the model's variables ``{'params', 'batch_stats'}`` after the epoch.
        supervision: the supervision's variables of this epoch
            (:meth:`Supervision.epoch_variables`; ``None`` at epoch 0).
        model: the Flax module.
        dataset: the run's data set (raw arrays and metadata).
        config: the run's config.
        run_dir: the run directory.
        train_logits: (n_eval, C) float32 outputs of the model (inference mode, no
            augmentation) on the training examples the epoch's train metrics are computed on:
            all of them, or those of ``train_indices``.
        test_logits: (n_test, C) float32 outputs on the test set.
        train_indices: (n_eval,) increasing indices of the training examples of
            ``train_logits`` when the config's ``eval_train_examples`` evaluates only some
            (``None``: all of them).
    """

    epoch: int
    step: int
    variables: dict[str, Any]
    supervision: Any
    model: nn.Module
    dataset: Dataset
    config: TrainConfig
    run_dir: Path
    train_logits: np.ndarray | None = None
    test_logits: np.ndarray | None = None
    train_indices: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class Supervision:
    """What a student learns from besides its labels: the seam of knowledge distillation.

    In every step of epoch ``e`` (1-based) the trainer computes, on the augmented and
    normalised batch ``x`` the student sees::

        outputs = stop_gradient(apply(variables(e), x))   # e.g. a teacher's logits
        objective = loss(student(params, x), labels, outputs)

    and after each epoch (and at epoch 0) merges ``diagnostics(EpochInfo)`` into the epoch's
    metrics line. ``Supervision()`` is plain training: the cross-entropy with the labels.

    Attributes:
        loss: the training objective ``(student_logits (B, C) float32, labels (B,) int32,
            outputs) -> float32 scalar`` (default :func:`cross_entropy_loss`). Evaluation
            always reports the cross-entropy with the labels.
        apply: ``(variables, x (B, ...) float32) -> outputs``, traced inside the jitted step,
            e.g. a teacher's forward pass in inference mode. ``None``: the outputs are the
            variables themselves.
        variables: ``epoch (1-based) -> pytree`` used by the steps of that epoch (a jit
            argument: other values of the same shapes never recompile), e.g. the teacher
            checkpoint online distillation replays. It must be a deterministic function of
            the epoch, so that a resumed run ends bit-identical. ``None``: ``None``.
        diagnostics: ``EpochInfo -> dict`` of extra fields of each epoch's metrics line,
            called at epoch 0 before training and after every epoch; the trainer's own field
            names are refused. ``None``: no extra fields.

    Raises:
        TypeError: a field that is not callable (or ``None`` where allowed).

    Example:
        >>> import jax.numpy as jnp
        >>> def squared_error(logits, labels, teacher_logits):
        ...     return jnp.mean((logits - teacher_logits) ** 2)
        >>> teacher = Supervision(
        ...     loss=squared_error,
        ...     apply=lambda w, x: x @ w,  # a linear 'teacher'
        ...     variables=lambda epoch: jnp.full((2, 3), float(epoch)),
        ... )
        >>> x = jnp.ones((1, 2))
        >>> outputs = teacher.outputs(teacher.epoch_variables(3), x)
        >>> outputs
        Array([[6., 6., 6.]], dtype=float32)
        >>> float(teacher.loss(jnp.zeros((1, 3)), jnp.array([0]), outputs))
        36.0
    """

    loss: Callable[[jax.Array, jax.Array, Any], jax.Array] = cross_entropy_loss
    apply: Callable[[Any, jax.Array], Any] | None = None
    variables: Callable[[int], Any] | None = None
    diagnostics: Callable[[EpochInfo], Mapping[str, Any]] | None = None

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not callable(value) and (value is not None or field.name == "loss"):
                raise TypeError(
                    f"Supervision.{field.name} must be a function, got {type(value).__name__}"
                )

    def epoch_variables(self, epoch: int) -> Any:
        """``variables(epoch)``, or ``None`` without ``variables``."""
        return None if self.variables is None else self.variables(epoch)

    def outputs(self, variables: Any, x: jax.Array) -> Any:
        """``apply(variables, x)`` (or ``variables`` without ``apply``); no gradient flows
        into them."""
        outputs = variables if self.apply is None else self.apply(variables, x)
        return jax.lax.stop_gradient(outputs)


def resolve_supervision(supervision: Any) -> Supervision:
    """``supervision`` itself, or plain training (``Supervision()``) for ``None``.

    Raises:
        TypeError: anything else.
    """
    if supervision is None:
        return Supervision()
    if not isinstance(supervision, Supervision):
        raise TypeError(f"supervision must be a Supervision, got {type(supervision).__name__}")
    return supervision
