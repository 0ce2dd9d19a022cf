"""`ntk_fn`: one adapter for linen, NNX and Equinox models, with one parameter filter."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sdcomplex.ntk import empirical_ntk, ntk_fn

eqx = pytest.importorskip("equinox")

SIZES = (4, 6, 6, 3)  # input, two hidden layers, logits
JAC = "jacobian"  # the plain implementation, for references (fewer compilations)


def last_layer(path):
    """The same filter for the three kinds: linen ("layers_2", "kernel"), NNX ("layers", "2",
    "kernel"), Equinox ("layers", "2", "weight")."""
    return path[-2].endswith("2")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def weights(rng):
    """[(W, b)] with W of shape (fan_in, fan_out), float32."""
    out = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:], strict=True):
        w = rng.normal(size=(fan_in, fan_out)) / np.sqrt(fan_in)
        out.append((w.astype(np.float32), rng.normal(size=fan_out).astype(np.float32)))
    return out


@pytest.fixture
def x(rng):
    return rng.normal(size=(7, SIZES[0])).astype(np.float32)


def pure_mlp(params, x):
    for i, (w, b) in enumerate(params):
        x = x @ w + b
        if i < len(params) - 1:
            x = jax.nn.relu(x)
    return x


class LinenMLP(nn.Module):
    def setup(self):
        self.layers = [nn.Dense(n) for n in SIZES[1:]]

    def __call__(self, x):
        for layer in self.layers[:-1]:
            x = nn.relu(layer(x))
        return self.layers[-1](x)


class NNXMLP(nnx.Module):
    def __init__(self, rngs):
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(SIZES[:-1], SIZES[1:], strict=True)]
        )

    def __call__(self, x):
        for layer in self.layers[:-1]:
            x = nnx.relu(layer(x))
        return self.layers[-1](x)


def linen_model(weights):
    params = {f"layers_{i}": {"kernel": w, "bias": b} for i, (w, b) in enumerate(weights)}
    return LinenMLP(), {"params": jax.tree.map(jnp.asarray, params)}


def nnx_model(weights):
    model = NNXMLP(nnx.Rngs(1))
    for layer, (w, b) in zip(model.layers, weights, strict=True):
        layer.kernel[...] = jnp.asarray(w)
        layer.bias[...] = jnp.asarray(b)
    return model, None


def equinox_model(weights):
    model = eqx.nn.MLP(SIZES[0], SIZES[-1], SIZES[1], len(SIZES) - 2, key=jax.random.key(1))
    for i, (w, b) in enumerate(weights):
        model = eqx.tree_at(lambda m, i=i: m.layers[i].weight, model, jnp.asarray(w.T))
        model = eqx.tree_at(lambda m, i=i: m.layers[i].bias, model, jnp.asarray(b))
    return model, None


BUILDERS = {"linen": linen_model, "nnx": nnx_model, "equinox": equinox_model}


@pytest.mark.slow
@pytest.mark.parametrize("kind", BUILDERS)
def test_same_weights_give_the_pure_functions_kernel(kind, weights, x):
    """The automatically chosen implementation on the adapted model, against the pure function."""
    model, variables = BUILDERS[kind](weights)
    fn, params = ntk_fn(model, variables)
    np.testing.assert_allclose(fn(params, x), pure_mlp(weights, x), rtol=1e-5, atol=1e-6)
    reference_params = [tuple(map(jnp.asarray, wb)) for wb in weights]
    expected = empirical_ntk(pure_mlp, reference_params, x, outputs="full", implementation=JAC)
    scale = np.abs(expected).max()
    k = empirical_ntk(fn, params, x, outputs="full")
    np.testing.assert_allclose(k, expected, rtol=1e-5, atol=1e-5 * scale)
    assert sum(np.size(a) for a in jax.tree.leaves(params)) == sum(
        w.size + b.size for w, b in weights
    )


@pytest.mark.parametrize("kind", BUILDERS)
@pytest.mark.parametrize("as_regex", [False, True])
def test_last_layer_filter_is_the_feature_kernel(kind, as_regex, weights, x):
    model, variables = BUILDERS[kind](weights)
    param_filter = r"2/[a-z]+$" if as_regex else last_layer
    fn, params = ntk_fn(model, variables, param_filter=param_filter)
    assert sum(np.size(a) for a in jax.tree.leaves(params)) == weights[-1][0].size + SIZES[-1]
    h = np.asarray(pure_mlp(weights[:-1], x), np.float64)
    h = np.maximum(h, 0.0)  # features entering the last Dense layer
    gram = h @ h.T + 1.0  # kernel weights plus the bias, the same for every logit
    k = empirical_ntk(fn, params, x, outputs="full", implementation=JAC)
    expected = gram[:, :, None, None] * np.eye(SIZES[-1])
    np.testing.assert_allclose(k, expected, rtol=1e-5, atol=1e-5 * gram.max())


def batchnorm_reference(weights, stats, x):
    """Dense -> BatchNorm(running mean, var; scale, bias) -> relu -> Dense, in float64."""
    (w0, b0), (w1, b1) = weights
    mean, var, scale, bias, eps = stats
    h = x.astype(np.float64) @ w0 + b0
    h = (h - mean) / np.sqrt(var + eps) * scale + bias
    return np.maximum(h, 0.0) @ w1 + b1


@pytest.fixture
def bn_setup(rng):
    weights = [
        (rng.normal(size=(4, 5)).astype(np.float32), rng.normal(size=5).astype(np.float32)),
        (rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)),
    ]
    stats = (
        rng.normal(size=5).astype(np.float32),  # running mean
        rng.uniform(0.5, 2.0, size=5).astype(np.float32),  # running variance
        rng.uniform(0.5, 1.5, size=5).astype(np.float32),  # scale
        rng.normal(size=5).astype(np.float32),  # bias
    )
    return weights, stats


class NNXBatchNormNet(nnx.Module):
    def __init__(self, rngs):
        self.dense0 = nnx.Linear(4, 5, rngs=rngs)
        self.norm = nnx.BatchNorm(5, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.dense1 = nnx.Linear(5, 3, rngs=rngs)

    def __call__(self, x):
        return self.dense1(self.drop(nnx.relu(self.norm(self.dense0(x)))))


class EqxBatchNormNet(eqx.Module):
    dense0: eqx.nn.Linear
    norm: eqx.nn.BatchNorm
    drop: eqx.nn.Dropout
    dense1: eqx.nn.Linear

    def __init__(self, key):
        k0, k1 = jax.random.split(key)
        self.dense0 = eqx.nn.Linear(4, 5, key=k0)
        self.norm = eqx.nn.BatchNorm(5, axis_name="batch", mode="ema")
        self.drop = eqx.nn.Dropout(0.5)
        self.dense1 = eqx.nn.Linear(5, 3, key=k1)

    def __call__(self, x, state, *, key=None):
        h, state = self.norm(self.dense0(x), state)
        return self.dense1(self.drop(jax.nn.relu(h), key=key)), state


def nnx_bn_model(weights, stats):
    model = NNXBatchNormNet(nnx.Rngs(0))
    (w0, b0), (w1, b1) = weights
    mean, var, scale, bias = stats
    values = [
        (model.dense0.kernel, w0),
        (model.dense0.bias, b0),
        (model.dense1.kernel, w1),
        (model.dense1.bias, b1),
        (model.norm.mean, mean),
        (model.norm.var, var),
        (model.norm.scale, scale),
        (model.norm.bias, bias),
    ]
    for variable, value in values:
        variable[...] = jnp.asarray(value)
    return model, None, model.norm.epsilon


def eqx_bn_model(weights, stats):
    model, state = eqx.nn.make_with_state(EqxBatchNormNet)(jax.random.key(0))
    (w0, b0), (w1, b1) = weights
    mean, var, scale, bias = stats
    for name, value in (
        ("dense0.weight", w0.T),
        ("dense0.bias", b0),
        ("dense1.weight", w1.T),
        ("dense1.bias", b1),
        ("norm.weight", scale),
        ("norm.bias", bias),
    ):
        layer, leaf = name.split(".")
        model = eqx.tree_at(
            lambda m, layer=layer, leaf=leaf: getattr(getattr(m, layer), leaf),
            model,
            jnp.asarray(value),
        )
    state = state.set(model.norm.ema_state_index, (jnp.asarray(mean), jnp.asarray(var)))
    return model, state, model.norm.eps


@pytest.mark.slow
@pytest.mark.parametrize("builder", [nnx_bn_model, eqx_bn_model], ids=["nnx", "equinox"])
def test_batchnorm_and_dropout_in_evaluation_mode(builder, bn_setup, x):
    weights, stats = bn_setup
    model, variables, eps = builder(weights, stats)
    fn, params = ntk_fn(model, variables)
    reference = batchnorm_reference(weights, (*stats, eps), x)
    np.testing.assert_allclose(fn(params, x), reference, rtol=1e-5, atol=1e-5)
    k = empirical_ntk(fn, params, x, outputs="full", implementation=JAC)
    again = empirical_ntk(fn, params, x, outputs="full", implementation=JAC)
    np.testing.assert_array_equal(k, again)  # no dropout
    # examples do not interact (the running statistics, not the batch's, normalise)
    np.testing.assert_allclose(fn(params, x[:3]), fn(params, x)[:3], rtol=1e-6, atol=1e-6)

    def pure(p, inputs):  # the same network written out with the running statistics
        (w0, b0), (w1, b1), (scale, bias) = p
        mean, var = (jnp.asarray(s) for s in stats[:2])
        h = (inputs @ w0 + b0 - mean) / jnp.sqrt(var + eps) * scale + bias
        return jax.nn.relu(h) @ w1 + b1

    p = [tuple(map(jnp.asarray, wb)) for wb in weights] + [tuple(map(jnp.asarray, stats[2:]))]
    expected = empirical_ntk(pure, p, x, outputs="full", implementation=JAC)
    np.testing.assert_allclose(k, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_nnx_model_is_left_in_training_mode(bn_setup):
    model, _, _ = nnx_bn_model(*bn_setup)
    ntk_fn(model)
    assert model.drop.deterministic is False and model.norm.use_running_average is False


def test_equinox_model_without_batch_axis_convention(weights, x):
    model, _ = equinox_model(weights)
    fn, params = ntk_fn(model)
    np.testing.assert_allclose(fn(params, x)[2], model(jnp.asarray(x[2])), rtol=1e-6)


@pytest.mark.parametrize("kind", BUILDERS)
def test_errors(kind, weights):
    model, variables = BUILDERS[kind](weights)
    with pytest.raises(ValueError, match="selected no parameter"):
        ntk_fn(model, variables, param_filter="no_such_layer")
    with pytest.raises(ValueError, match="not a valid regex"):
        ntk_fn(model, variables, param_filter="(")
    with pytest.raises(TypeError, match="param_filter"):
        ntk_fn(model, variables, param_filter=3)


def test_model_kind_errors(weights):
    linen, variables = linen_model(weights)
    with pytest.raises(TypeError, match="needs its variables"):
        ntk_fn(linen)
    model, _ = nnx_model(weights)
    with pytest.raises(TypeError, match="holds its own state"):
        ntk_fn(model, variables)
    with pytest.raises(TypeError, match="linen.Module"):
        ntk_fn(pure_mlp, weights)
