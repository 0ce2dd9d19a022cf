"""The teacher runs inside the student's jitted step on the same augmented batch.

A student with the teacher's architecture and seed starts exactly at the teacher's epoch-0
checkpoint. Distilled offline from that checkpoint (alpha = 0), its KD loss is zero on every
batch if, and only if, the teacher sees the very crop and flip the student sees: then the
gradient is zero and the student never moves. A teacher fed the unaugmented batch would give a
loss orders of magnitude larger (computed below as a control).
"""

import jax
import jax.numpy as jnp
import numpy as np
from distill_helpers import TEACHER

from sdcomplex.data import EpochBatcher, augment_batch, load_dataset, normalise
from sdcomplex.distill import DistillConfig, distill, kd_loss
from sdcomplex.models import create_model
from sdcomplex.train import load_checkpoint


def test_teacher_sees_the_students_augmented_batch(teacher_dir, tmp_path):
    student = TEACHER.replace(epochs=1, weight_decay=0.0)  # the teacher's model and seed
    config = DistillConfig(
        student=student,
        mode="offline",
        teacher_dir=str(teacher_dir),
        teacher_epoch=0,
        temperature=1.0,
        diagnostics_every=0,
    )
    result = distill(config, tmp_path / "student", quiet=True)
    assert [m["teacher_epoch"] for m in result.metrics] == [0, 0]
    assert "ntk_similarity" not in result.metrics[-1]  # diagnostics off
    start = load_checkpoint(teacher_dir, 0)
    moved = max(
        float(np.max(np.abs(a - b)))
        for a, b in zip(jax.tree.leaves(result.variables), jax.tree.leaves(start), strict=True)
    )
    batch_loss = result.metrics[-1]["batch_loss"]
    assert batch_loss < 1e-9 and moved < 1e-6

    # control: the first batch's loss if the teacher saw the batch without augmentation
    ds = load_dataset("digits")
    info = ds.info
    batcher = EpochBatcher(info.n_train, student.batch_size, seed=student.seed)
    xb, _ = next(batcher.batches(1, ds.x_train, ds.y_train))
    augmented = augment_batch(
        batcher.step_key(1, 0), xb, info.mean, info.std, info.pixel_max, padding=1
    )
    plain = normalise(jnp.asarray(xb), info.mean, info.std, info.pixel_max)
    model = create_model("mlp", 10, hidden_sizes=(64,))
    control = kd_loss(model.apply(start, augmented), model.apply(start, plain), temperature=1.0)
    assert float(control) > 1e4 * max(batch_loss, 1e-12)
