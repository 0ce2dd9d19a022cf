"""The knowledge-distillation loss (PAPER.md section 5), computed stably with log-softmax."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from sdcomplex._kd import kd_loss_terms


def check_kd_arguments(temperature: float, alpha: float) -> None:
    """Raises ValueError unless tau > 0 is finite and alpha lies in [0, 1]."""
    if isinstance(temperature, bool) or not isinstance(temperature, int | float):
        raise TypeError(f"temperature must be a number, got {type(temperature).__name__}")
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    if isinstance(alpha, bool) or not isinstance(alpha, int | float):
        raise TypeError(f"alpha must be a number, got {type(alpha).__name__}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")


def check_labels(labels: jax.Array, batch: int) -> None:
    """Raises unless ``labels`` are (batch,) integers (float labels were truncated to ints,
    (batch, 1) and one-hot labels failed inside JAX with messages that named neither)."""
    shape, dtype = jnp.shape(labels), jnp.result_type(labels)
    if not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(f"labels must be integer class indices, got dtype {dtype}")
    if shape != (batch,):
        raise ValueError(f"labels must have shape ({batch},) for {batch} logit rows, got {shape}")


def kd_loss_per_example(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    labels: jax.Array | None = None,
    *,
    temperature: float = 1.0,
    alpha: float = 0.0,
) -> jax.Array:
    """Per-example distillation loss.

    loss_i = (1 - alpha) * tau^2 * KL(softmax(z_t / tau) || softmax(z_s / tau))
             + alpha * CE(softmax(z_s), y).

    With alpha = 0 (the default: pure teacher supervision, the setting the theory describes) the
    gradient with respect to the student logits is tau * (softmax(z_s / tau) - softmax(z_t / tau)).

    Args:
      student_logits: (b, C) z_s.
      teacher_logits: (b, C) z_t (no gradient flows into the teacher).
      labels: (b,) integer labels in [0, C); required when alpha > 0 (their values are not
        checked: the loss runs traced inside the training step).
      temperature: tau > 0.
      alpha: weight of the label cross-entropy, in [0, 1].

    Returns:
      (b,) losses, in the dtype of the student logits.
    """
    check_kd_arguments(temperature, alpha)
    if student_logits.shape != teacher_logits.shape or student_logits.ndim != 2:
        raise ValueError(
            "student and teacher logits must both be (batch, C); got "
            f"{student_logits.shape} and {teacher_logits.shape}"
        )
    if alpha > 0 and labels is None:
        raise ValueError("labels are required when alpha > 0")
    if labels is not None:
        check_labels(labels, student_logits.shape[0])
    return kd_loss_terms(student_logits, teacher_logits, labels, temperature, alpha)


def kd_loss(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    labels: jax.Array | None = None,
    *,
    temperature: float = 1.0,
    alpha: float = 0.0,
) -> jax.Array:
    """Mean of `kd_loss_per_example` over the batch (a scalar).

    Example:
      >>> import jax.numpy as jnp
      >>> z = jnp.array([[1.0, 2.0, 3.0]])
      >>> float(kd_loss(z, z, temperature=4.0))  # identical predictions: zero KL
      0.0
    """
    return jnp.mean(
        kd_loss_per_example(
            student_logits, teacher_logits, labels, temperature=temperature, alpha=alpha
        )
    )
