"""The knowledge-distillation loss (PAPER.md section 5), computed stably with log-softmax."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sdcomplex._checks import as_real
from sdcomplex._kd import kd_loss_terms


def check_kd_arguments(temperature: float, alpha: float) -> tuple[float, float]:
    """``(temperature, alpha)`` as Python floats (any real number, NumPy scalars included).

    Raises:
      TypeError: not a real number.
      ValueError: unless tau > 0 is finite and alpha lies in [0, 1].
    """
    temperature = as_real("temperature", temperature, low=0.0, low_open=True)
    return temperature, as_real("alpha", alpha, low=0.0, high=1.0)


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
    temperature, alpha = check_kd_arguments(temperature, alpha)
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
