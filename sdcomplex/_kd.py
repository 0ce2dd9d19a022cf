"""The distillation loss's formula, shared by the distillation loss and the students trained
together (``sdcomplex.train``'s ensemble step), which cannot import ``sdcomplex.distill``."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def kd_loss_terms(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    labels: jax.Array | None,
    temperature: float | jax.Array,
    alpha: float,
) -> jax.Array:
    """Per-example ``(1 - alpha) tau^2 KL(softmax(z_t / tau) || softmax(z_s / tau)) + alpha
    CE(softmax(z_s), y)``, unchecked (the public :func:`sdcomplex.distill.kd_loss_per_example`
    validates its arguments first).

    Args:
      student_logits: (b, C) z_s.
      teacher_logits: (b, C) z_t (no gradient flows into the teacher).
      labels: (b,) integer labels, used when ``alpha > 0``.
      temperature: tau > 0, a Python float or a traced scalar.
      alpha: Python float in [0, 1].

    Returns:
      (b,) losses, in the dtype of the student logits.
    """
    teacher_logits = jax.lax.stop_gradient(teacher_logits)
    log_p_s = jax.nn.log_softmax(student_logits / temperature, axis=-1)
    log_p_t = jax.nn.log_softmax(teacher_logits / temperature, axis=-1)
    p_t = jnp.exp(log_p_t)
    kl = jnp.sum(p_t * (log_p_t - log_p_s), axis=-1)
    loss = (1.0 - alpha) * temperature**2 * kl
    if alpha > 0:
        assert labels is not None
        log_q = jax.nn.log_softmax(student_logits, axis=-1)
        ce = -jnp.take_along_axis(log_q, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]
        loss = loss + alpha * ce
    return loss
