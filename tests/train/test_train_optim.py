"""Schedules against their closed forms; weight decay and momentum against hand-written updates."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdcomplex.train import TrainConfig, make_optimizer, make_schedule

S = 7  # steps per epoch


def _values(config, steps):
    schedule = make_schedule(config, S)
    jitted = jax.jit(schedule)(jnp.arange(steps))
    numpy = np.array([schedule.numpy(t) for t in range(steps)])
    np.testing.assert_allclose(jitted, numpy, rtol=2e-6, atol=1e-9)  # same closed form
    return numpy


def test_cosine_schedule_closed_form():
    cfg = TrainConfig(epochs=10, learning_rate=0.2, final_lr_fraction=0.1)
    t = np.arange(10 * S + 5)
    expected = 0.2 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * np.minimum(t, 10 * S) / (10 * S))))
    np.testing.assert_allclose(_values(cfg, len(t)), expected, rtol=1e-12)
    assert _values(cfg, 1)[0] == pytest.approx(0.2)


def test_cosine_with_warmup_closed_form():
    cfg = TrainConfig(epochs=6, learning_rate=0.1, warmup_epochs=2)
    t = np.arange(6 * S)
    w, total = 2 * S, 6 * S
    u = np.clip((t - w) / (total - w), 0, 1)
    expected = np.where(t < w, 0.1 * (t + 1) / w, 0.1 * 0.5 * (1 + np.cos(np.pi * u)))
    np.testing.assert_allclose(_values(cfg, len(t)), expected, rtol=1e-12)
    assert expected[w - 1] == pytest.approx(0.1)  # warm-up reaches the peak


def test_step_schedule_decays_after_milestone_epochs():
    cfg = TrainConfig(epochs=10, learning_rate=0.1, schedule="step", lr_milestones=(3, 6))
    values = _values(cfg, 10 * S)
    epoch_of_update = np.arange(10 * S) // S + 1  # 1-based epoch of each update
    expected = 0.1 * 0.1 ** ((epoch_of_update > 3).astype(int) + (epoch_of_update > 6))
    np.testing.assert_allclose(values, expected, rtol=1e-12)


def test_constant_schedule():
    np.testing.assert_array_equal(_values(TrainConfig(schedule="constant", epochs=2), 20), 0.1)


def _params():
    r = np.random.default_rng(0)
    return {
        "dense": {"kernel": jnp.asarray(r.normal(size=(3, 2)), jnp.float32)},
        "bn": {"scale": jnp.asarray(r.normal(size=2), jnp.float32)},
    }


def _grads():
    r = np.random.default_rng(1)
    return {
        "dense": {"kernel": jnp.asarray(r.normal(size=(3, 2)), jnp.float32)},
        "bn": {"scale": jnp.asarray(r.normal(size=2), jnp.float32)},
    }


def _run(config, steps=3):
    tx, schedule = make_optimizer(config, S)
    params, grads = _params(), _grads()
    state = tx.init(params)
    history = [params]
    for _ in range(steps):
        updates, state = tx.update(grads, state, params)
        params = jax.tree.map(lambda p, u: p + u, params, updates)
        history.append(params)
    return history, schedule


def test_sgd_momentum_weight_decay_matches_pytorch_convention():
    cfg = TrainConfig(epochs=2, learning_rate=0.1, momentum=0.9, weight_decay=0.01)
    history, schedule = _run(cfg)
    g = jax.tree.map(np.asarray, _grads())
    p = jax.tree.map(np.asarray, _params())
    v = jax.tree.map(np.zeros_like, p)
    for t in range(3):
        lr = schedule.numpy(t)
        v = jax.tree.map(lambda v_, g_, p_: 0.9 * v_ + g_ + 0.01 * p_, v, g, p)
        p = jax.tree.map(lambda p_, v_, lr=lr: p_ - lr * v_, p, v)
        for a, b in zip(jax.tree.leaves(history[t + 1]), jax.tree.leaves(p), strict=True):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


def test_weight_decay_mask_spares_norm_and_bias():
    cfg = TrainConfig(
        epochs=2, momentum=0.0, weight_decay=0.5, decay_norm_and_bias=False, schedule="constant"
    )
    history, _ = _run(cfg, steps=1)
    p0, p1, g = _params(), history[1], _grads()
    np.testing.assert_allclose(
        p1["dense"]["kernel"],
        p0["dense"]["kernel"] - 0.1 * (g["dense"]["kernel"] + 0.5 * p0["dense"]["kernel"]),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        p1["bn"]["scale"], p0["bn"]["scale"] - 0.1 * g["bn"]["scale"], rtol=1e-6
    )


def test_adam_coupled_and_adamw_decoupled_decay():
    base = dict(epochs=2, schedule="constant", learning_rate=0.01, weight_decay=0.1)
    p0, g = _params(), _grads()
    k0, gk = np.asarray(p0["dense"]["kernel"]), np.asarray(g["dense"]["kernel"])
    # first Adam step: m/(sqrt(v)+eps) = sign-like g/|g| of the (decayed) gradient
    adam = _run(TrainConfig(optimizer="adam", **base), steps=1)[0][1]
    g_eff = gk + 0.1 * k0
    np.testing.assert_allclose(
        adam["dense"]["kernel"], k0 - 0.01 * g_eff / (np.abs(g_eff) + 1e-8), rtol=1e-5
    )
    adamw = _run(TrainConfig(optimizer="adamw", **base), steps=1)[0][1]
    np.testing.assert_allclose(
        adamw["dense"]["kernel"], k0 - 0.01 * (gk / (np.abs(gk) + 1e-8) + 0.1 * k0), rtol=1e-5
    )
    assert not math.isclose(
        float(adam["dense"]["kernel"][0, 0]), float(adamw["dense"]["kernel"][0, 0])
    )
