"""The jitted training step and evaluation: gradients, BatchNorm state, supervision plumbing."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sdcomplex.models import create_model, init_variables
from sdcomplex.train import (
    Supervision,
    cross_entropy_loss,
    init_train_state,
    make_eval_step,
    make_preprocess,
    make_train_step,
)

RNG = np.random.default_rng(0)
IDENTITY = make_preprocess(mean=(0.0,), std=(1.0,), pixel_max=1.0, augment=False)


def _apply(model):
    """Inference-mode forward pass, jitted (op-by-op execution compiles every op)."""
    return jax.jit(lambda variables, x: model.apply(variables, x, train=False))


def _mlp():
    model = create_model("mlp", 3, hidden_sizes=(5,))
    return model, init_variables(model, 0, (4,))


def test_sgd_step_equals_manual_gradient_step_and_running_sums():
    model, variables = _mlp()
    tx = optax.sgd(0.5)
    state = init_train_state(jax.tree.map(jnp.copy, variables), tx)  # the step donates it
    x = RNG.normal(size=(6, 4)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2], np.int32)

    def loss(params):
        logits = model.apply({"params": params}, x)
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(6), y])

    expected_loss, grads = jax.jit(jax.value_and_grad(loss))(variables["params"])
    logits0 = _apply(model)(variables, x)
    step = make_train_step(model, tx, IDENTITY)
    new, running, batch_loss = step(state, jnp.zeros(3), x, y, jax.random.key(0), None)
    assert int(new.step) == 1
    np.testing.assert_allclose(batch_loss, expected_loss, rtol=1e-6)
    for p, g, q in zip(
        jax.tree.leaves(variables["params"]),
        jax.tree.leaves(grads),
        jax.tree.leaves(new.params),
        strict=True,
    ):
        np.testing.assert_allclose(q, p - 0.5 * g, rtol=1e-5, atol=1e-7)
    correct = int(np.sum(np.argmax(logits0, -1) == y))
    np.testing.assert_allclose(running, [6 * expected_loss, correct, 6], rtol=1e-6)


def test_batchnorm_running_stats_updated_in_training_and_used_in_eval():
    model = create_model(
        "cnn", 2, channels=(3,), dense_width=None, batch_norm=True, bn_momentum=0.8
    )
    variables = init_variables(model, 1, (4, 4, 1))
    tx = optax.sgd(0.0)  # parameters fixed: only the statistics move
    state = init_train_state(jax.tree.map(jnp.copy, variables), tx)
    x = (2.0 + 3.0 * RNG.normal(size=(8, 4, 4, 1))).astype(np.float32)
    y = np.zeros(8, np.int32)
    step = make_train_step(model, tx, IDENTITY)
    new, _, _ = step(state, jnp.zeros(3), x, y, jax.random.key(0), None)
    # independent conv: SAME 3x3 convolution plus bias, statistics over batch and space
    conv = variables["params"]["conv1"]
    z = (
        jax.lax.conv_general_dilated(
            x, conv["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        + conv["bias"]
    )
    mean, var = np.mean(z, axis=(0, 1, 2)), np.var(z, axis=(0, 1, 2))
    stats = new.batch_stats["bn1"]
    np.testing.assert_allclose(stats["mean"], 0.2 * mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats["var"], 0.8 + 0.2 * var, rtol=1e-4)
    # eval uses the running averages: an example's logits do not depend on the batch
    eval_vars = new.variables
    apply = _apply(model)
    alone = apply(eval_vars, x[:1])
    together = apply(eval_vars, x)[:1]
    np.testing.assert_allclose(alone, together, rtol=1e-5, atol=1e-6)
    before = apply(variables, x[:1])
    assert not np.allclose(alone, before)  # the new statistics are used
    # the eval step sums the cross-entropy and correct predictions over unmasked examples
    eval_step = make_eval_step(model, IDENTITY)
    mask = np.array([True] * 5 + [False] * 3)
    sums, outputs = eval_step(eval_vars, x, y, mask)
    logits = apply(eval_vars, x)
    np.testing.assert_allclose(outputs, logits, rtol=1e-5, atol=1e-6)
    ce = np.asarray(optax.softmax_cross_entropy_with_integer_labels(logits, y))
    np.testing.assert_allclose(sums[0], ce[:5].sum(), rtol=1e-5)
    assert int(sums[1]) == int(np.sum(np.argmax(logits[:5], -1) == 0))


def test_supervision_apply_and_loss_see_the_same_augmented_batch():
    model = create_model("cnn", 3, channels=(2,), dense_width=None)
    variables = init_variables(model, 0, (6, 6, 1))
    tx = optax.sgd(0.1)
    preprocess = make_preprocess(mean=(0.5,), std=(0.25,), pixel_max=255.0, augment=True)
    raw = RNG.integers(0, 256, size=(4, 6, 6, 1)).astype(np.uint8)
    y = np.array([0, 1, 2, 0], np.int32)
    key = jax.random.key(3)
    teacher = {"w": jnp.asarray(RNG.normal(size=(36, 3)), jnp.float32)}

    def teacher_apply(sup, x):
        return x.reshape(x.shape[0], -1) @ sup["w"]

    def loss_fn(logits, labels, targets):
        return jnp.mean((logits - targets) ** 2) + 0.0 * cross_entropy_loss(logits, labels)

    supervision = Supervision(loss=loss_fn, apply=teacher_apply)
    step = make_train_step(model, tx, preprocess, supervision=supervision)
    state = init_train_state(jax.tree.map(jnp.copy, variables), tx)
    _, _, loss = step(state, jnp.zeros(3), raw, y, key, teacher)
    x = preprocess(key, raw)
    logits = _apply(model)(variables, x)
    expected = jnp.mean((logits - teacher_apply(teacher, x)) ** 2)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    # the same key gives the same augmentation; another key another one
    assert np.array_equal(preprocess(key, raw), x)
    assert not np.array_equal(preprocess(jax.random.key(4), raw), x)

    # without apply the supervision's variables reach the loss as they are
    def weighted(logits, labels, weight):
        return weight * cross_entropy_loss(logits, labels)

    step2 = make_train_step(model, tx, preprocess, supervision=Supervision(loss=weighted))
    state = init_train_state(jax.tree.map(jnp.copy, variables), tx)
    _, _, l2 = step2(state, jnp.zeros(3), raw, y, key, jnp.float32(2))
    ce = cross_entropy_loss(logits, y)
    np.testing.assert_allclose(l2, 2 * ce, rtol=1e-5)
    with pytest.raises(TypeError, match="supervision must be a Supervision, got function"):
        make_train_step(model, tx, preprocess, supervision=weighted)  # type: ignore[arg-type]


def test_train_step_is_deterministic():
    model, variables = _mlp()
    tx = optax.sgd(0.1, momentum=0.9)
    step = make_train_step(model, tx, IDENTITY)
    x = RNG.normal(size=(6, 4)).astype(np.float32)
    y = np.arange(6, dtype=np.int32) % 3
    outs = []
    for _ in range(2):
        state = init_train_state(jax.tree.map(jnp.copy, variables), tx)
        running = jnp.zeros(3)
        for s in range(3):
            state, running, _ = step(state, running, x, y, jax.random.key(s), None)
        outs.append(jax.tree.leaves(state))
    assert all(np.array_equal(a, b) for a, b in zip(*outs, strict=True))


@pytest.mark.parametrize("seed", [0, 1])
def test_initial_variables_depend_only_on_seed(seed):
    model, _ = _mlp()
    a = init_variables(model, seed, (4,))
    b = init_variables(model, seed, (4,))
    c = init_variables(model, seed + 2, (4,))
    leaves = [jax.tree.leaves(v) for v in (a, b, c)]
    assert all(np.array_equal(u, v) for u, v in zip(leaves[0], leaves[1], strict=True))
    assert not all(np.array_equal(u, v) for u, v in zip(leaves[0], leaves[2], strict=True))
