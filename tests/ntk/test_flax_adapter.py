"""The Flax adapter: inference-mode BatchNorm, parameter filters, no recompilation."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from sdcomplex.ntk import empirical_ntk, flax_ntk_fn


class BNNet(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Dense(6)(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.relu(x)
        return nn.Dense(3)(x)


def _variables(seed=0):
    model = BNNet()
    x = np.random.default_rng(seed).normal(size=(16, 4)).astype(np.float32)
    variables = model.init(jax.random.key(seed), x)
    # Non-trivial running statistics, as after training.
    _, state = model.apply(variables, x * 3 + 1, train=True, mutable=["batch_stats"])
    return model, {**variables, **state}, x


def test_inference_mode_examples_do_not_interact():
    model, variables, x = _variables()
    fn, params = flax_ntk_fn(model, variables)
    np.testing.assert_allclose(fn(params, x)[:3], fn(params, x[:3]), rtol=1e-6)
    k_all = empirical_ntk(fn, params, x)
    k_few = empirical_ntk(fn, params, x[:5])
    np.testing.assert_allclose(k_all[:5, :5], k_few, rtol=1e-5)
    # BatchNorm statistics are held fixed, not differentiated.
    assert set(params) == {"Dense_0", "BatchNorm_0", "Dense_1"}
    np.testing.assert_allclose(fn(params, x), model.apply(variables, x, train=False), rtol=1e-6)


def test_last_layer_filter_matches_closed_form():
    model, variables, x = _variables()
    fn, params = flax_ntk_fn(model, variables, param_filter=lambda path: path[0] == "Dense_1")
    assert set(params) == {"Dense_1"}

    def features(v, inputs):
        h = nn.Dense(6).apply({"params": v["params"]["Dense_0"]}, inputs)
        h = nn.BatchNorm(use_running_average=True).apply(
            {"params": v["params"]["BatchNorm_0"], "batch_stats": v["batch_stats"]["BatchNorm_0"]},
            h,
        )
        return np.asarray(nn.relu(h))

    phi = features(variables, x)
    expected = phi @ phi.T + 1.0  # kernel weights plus bias, identical for every logit
    k = empirical_ntk(fn, params, x, outputs="full")
    np.testing.assert_allclose(k, expected[:, :, None, None] * np.eye(3), rtol=1e-5, atol=1e-5)


def test_new_statistics_do_not_recompile():
    model, variables, x = _variables()
    fn, params = flax_ntk_fn(model, variables)
    k1 = empirical_ntk(fn, params, x[:4])
    compiles = []

    def listener(event, duration, **kwargs):
        if "backend_compile" in event:
            compiles.append(event)

    stats = jax.tree.map(lambda a: a * 2.0 + 0.5, variables["batch_stats"])
    fn2, params2 = flax_ntk_fn(model, {**variables, "batch_stats": stats})
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        k2 = empirical_ntk(fn2, params2, x[:4])
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert compiles == []
    # Different statistics give a different kernel through the same compiled code.
    assert not np.allclose(k1, k2)


def test_adapter_errors():
    model, variables, _ = _variables()
    with pytest.raises(ValueError, match="selected no parameter"):
        flax_ntk_fn(model, variables, param_filter=lambda path: False)
    with pytest.raises(ValueError, match="'params'"):
        flax_ntk_fn(model, {"batch_stats": variables["batch_stats"]})
    with pytest.raises(TypeError, match="linen"):
        flax_ntk_fn(lambda p, x: x, variables)
