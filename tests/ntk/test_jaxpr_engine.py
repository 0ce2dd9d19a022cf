"""The structured NTK engine on functions it only knows from their jaxpr.

Pure-JAX functions (MLP, 1-D and 2-D CNNs in two layouts, a residual network with folded
inference BatchNorm, weight sharing, ``lax.scan``, ``jax.checkpoint``), an NNX model and an
Equinox model: kernels equal to the generic Jacobian contraction (1e-5 relative, float32) in
every output form, and to float64 finite differences; where each parameter ends up (direct
site, composite, fallback); the planner's choice; interacting examples raise.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from sdcomplex.ntk import compute_with_plan, empirical_ntk, plan_ntk

RTOL = 1e-5


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def normal(rng, *shape, scale=None):
    scale = 1.0 / math.sqrt(max(1, math.prod(shape[:-1]))) if scale is None else scale
    return jnp.asarray(rng.standard_normal(shape) * scale, jnp.float32)


def assert_close(a, b, rtol=RTOL):
    err = float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))
    assert err <= rtol, f"relative error {err:.2e} > {rtol:.0e}"


def reduce_full(full, outputs):
    if outputs == "full":
        return full
    diag = np.moveaxis(np.diagonal(full, axis1=2, axis2=3), -1, 0)
    return diag.mean(0) if outputs == "mean" else diag


def check_forms(fn, params, x1, x2=None, forms=("mean", "full", "diag"), block_size=None):
    """Structured kernels against the generic engine's full kernel, in every form."""
    ref = empirical_ntk(fn, params, x1, x2, outputs="full", implementation="jacobian")
    plans = {}
    for outputs in forms:
        plan = plan_ntk(
            fn, params, x1, x2, outputs=outputs, implementation="structured", block_size=block_size
        )
        kernel = compute_with_plan(plan, fn, params, x1, x2)
        assert_close(kernel, reduce_full(ref, outputs))
        plans[outputs] = plan
    return plans[forms[0]].prepared.analysis


def leaf_index(params, name):
    names = [
        "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
        for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]
    ]
    return names.index(name)


def direct_leaves(analysis):
    return {s.leaf for s in analysis.sites if s.leaf is not None}


# --- pure functions ------------------------------------------------------------------------


def mlp(params, x):
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    return h @ params["w2"] + params["b2"]


def mlp_params(rng, d=5, h=7, c=3):
    return {
        "w1": normal(rng, d, h),
        "b1": normal(rng, h, scale=0.3),
        "w2": normal(rng, h, c),
        "b2": normal(rng, c, scale=0.3),
    }


def test_mlp_all_forms_and_direct_sites(rng):
    params = mlp_params(rng)
    x1, x2 = normal(rng, 6, 5, scale=1.0), normal(rng, 4, 5, scale=1.0)
    analysis = check_forms(mlp, params, x1, x2)
    assert direct_leaves(analysis) == set(range(4))
    assert not analysis.composite and not analysis.fallback
    check_forms(mlp, params, x1, None, forms=("diag",), block_size=4)  # symmetric, blocked


def cnn1d(params, x):
    """(b, L, C) signals: strided 'SAME' conv, ReLU, dilated conv, flatten, dense."""
    y = lax.conv_general_dilated(
        x, params["k1"], (2,), "SAME", dimension_numbers=("NWC", "WIO", "NWC")
    )
    y = jax.nn.relu(y + params["c1"])
    y = lax.conv_general_dilated(
        y, params["k2"], (1,), ((1, 1),), rhs_dilation=(2,), dimension_numbers=("NWC", "WIO", "NWC")
    )
    return y.reshape(y.shape[0], -1) @ params["w"]


def test_cnn_1d(rng):
    params = {
        "k1": normal(rng, 3, 2, 4),
        "c1": normal(rng, 4, scale=0.3),
        "k2": normal(rng, 3, 4, 3),
        "w": normal(rng, 6, 2),
    }
    x = normal(rng, 5, 7, 2, scale=1.0)
    analysis = check_forms(cnn1d, params, x, normal(rng, 3, 7, 2, scale=1.0))
    assert direct_leaves(analysis) == set(range(4))


def cnn2d_nchw(params, x):
    """(b, C, H, W) images, OIHW kernels, max pooling by reduce_window, grouped conv."""
    numbers = ("NCHW", "OIHW", "NCHW")
    y = lax.conv_general_dilated(x, params["k1"], (1, 1), "VALID", dimension_numbers=numbers)
    y = jax.nn.relu(y + params["c1"][None, :, None, None])
    y = lax.reduce_window(y, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
    y = lax.conv_general_dilated(
        y, params["k2"], (1, 1), "SAME", dimension_numbers=numbers, feature_group_count=2
    )
    y = jnp.mean(jnp.tanh(y), axis=(2, 3))
    return y @ params["w"]


@pytest.mark.slow
def test_cnn_2d_channels_first_and_groups(rng):
    params = {
        "k1": normal(rng, 4, 3, 3, 3),
        "c1": normal(rng, 4, scale=0.3),
        "k2": normal(rng, 6, 2, 2, 2),
        "w": normal(rng, 6, 3),
    }
    x = normal(rng, 4, 3, 8, 8, scale=1.0)
    analysis = check_forms(cnn2d_nchw, params, x)
    assert direct_leaves(analysis) == set(range(4))


def resnet_fn(params, stats, x):
    """Conv - folded BN - ReLU, two residual blocks, global mean pool, dense (NHWC)."""

    def conv(h, k):
        return lax.conv_general_dilated(
            h, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    def bn(h, name):
        scale = params[name + "_scale"] * lax.rsqrt(stats[name + "_var"] + 1e-5)
        return (h - stats[name + "_mean"]) * scale + params[name + "_bias"]

    h = jax.nn.relu(bn(conv(x, params["stem"]), "bn0"))
    for i in (1, 2):
        y = jax.nn.relu(bn(conv(h, params[f"k{i}a"]), f"bn{i}a"))
        h = jax.nn.relu(h + bn(conv(y, params[f"k{i}b"]), f"bn{i}b"))
    return jnp.mean(h, axis=(1, 2)) @ params["dense"]


@pytest.mark.slow
def test_resnet_with_folded_batchnorm(rng):
    names = ["bn0", "bn1a", "bn1b", "bn2a", "bn2b"]
    params = {"stem": normal(rng, 3, 3, 2, 4), "dense": normal(rng, 4, 3)}
    stats = {}
    for i in (1, 2):
        params[f"k{i}a"] = normal(rng, 3, 3, 4, 4)
        params[f"k{i}b"] = normal(rng, 3, 3, 4, 4)
    for name in names:
        params[name + "_scale"] = 1.0 + normal(rng, 4, scale=0.2)
        params[name + "_bias"] = normal(rng, 4, scale=0.2)
        stats[name + "_mean"] = normal(rng, 4, scale=0.2)
        stats[name + "_var"] = 0.5 + jnp.abs(normal(rng, 4))

    def fn(p, x):
        return resnet_fn(p, stats, x)

    x = normal(rng, 4, 6, 6, 2, scale=1.0)
    analysis = check_forms(fn, params, x, forms=("mean", "full"))
    scales = {leaf_index(params, n + "_scale") for n in names}
    assert set(analysis.composite) == scales  # scale * rsqrt(var + eps): pulled back
    assert not analysis.fallback


def test_weight_sharing(rng):
    params = {"w": normal(rng, 5, 5), "v": normal(rng, 5, 2)}

    def fn(p, x):
        return jnp.tanh(jnp.tanh(x @ p["w"]) @ p["w"]) @ p["v"]

    x = normal(rng, 5, 5, scale=1.0)
    analysis = check_forms(fn, params, x, normal(rng, 3, 5, scale=1.0))
    assert analysis.composite == (leaf_index(params, "w"),)
    assert direct_leaves(analysis) == {leaf_index(params, "v")}


@pytest.mark.slow
def test_scan_falls_back_and_checkpoint_is_inlined(rng):
    params = {"w_in": normal(rng, 4, 6), "u": normal(rng, 6, 6), "w_out": normal(rng, 6, 3)}

    def fn(p, x):
        h = jax.checkpoint(lambda h: jnp.tanh(h @ p["w_in"]))(x)

        def step(h, _):
            return jnp.tanh(h @ p["u"]), None

        h, _ = lax.scan(step, h, None, length=3)
        return h @ p["w_out"]

    x = normal(rng, 5, 4, scale=1.0)
    analysis = check_forms(fn, params, x)
    assert analysis.fallback == (leaf_index(params, "u"),)
    assert direct_leaves(analysis) == {leaf_index(params, "w_in"), leaf_index(params, "w_out")}


def test_interacting_examples_raise(rng):
    params = mlp_params(rng)

    def batch_norm_train(p, x):
        h = x @ p["w1"]
        h = (h - h.mean(0)) / (h.std(0) + 1e-3)
        return jnp.tanh(h) @ p["w2"]

    with pytest.raises(ValueError, match="examples interact"):
        plan_ntk(batch_norm_train, params, normal(rng, 4, 5, scale=1.0))


def test_an_infinite_input_derivative_is_not_an_interaction(rng):
    # d sqrt(x)/dx is infinite at an input of 0: the other example's tangent is inf * 0 = nan,
    # yet the examples do not interact (their logits are compared instead)
    params = {"w": normal(rng, 6, 3)}
    x = np.abs(normal(rng, 4, 6, scale=1.0))
    x[:, 0] = 0.0

    def sqrt_net(p, x):
        return jnp.sqrt(x) @ p["w"]

    reference = empirical_ntk(sqrt_net, params, x, outputs="full", implementation="jacobian")
    assert plan_ntk(sqrt_net, params, x).implementation == "structured"
    assert_close(empirical_ntk(sqrt_net, params, x, outputs="full"), reference)

    def coupled(p, x):  # the same, and a mean over the batch
        h = jnp.sqrt(x) @ p["w"]
        return h - h.mean(0)

    with pytest.raises(ValueError, match="examples interact"):
        plan_ntk(coupled, params, x)


def test_planner_prefers_structured_where_cheaper(rng):
    params = {"k": normal(rng, 3, 3, 3, 16), "w": normal(rng, 16 * 8 * 8, 10)}

    def conv_net(p, x):
        y = lax.conv_general_dilated(
            x, p["k"], (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return jax.nn.relu(y).reshape(x.shape[0], -1) @ p["w"]

    x = normal(rng, 64, 16, 16, 3, scale=1.0)
    plan = plan_ntk(conv_net, params, x)
    assert plan.implementation == "structured"
    assert plan.estimates["structured"][0] < plan.estimates["jacobian"][0]
    # A function whose only parameter sits inside a scan has no site: explicit Jacobians.
    u = {"u": normal(rng, 4, 4)}

    def recurrent(p, x):
        return lax.scan(lambda h, _: (jnp.tanh(h @ p["u"]), None), x, None, length=2)[0]

    assert plan_ntk(recurrent, u, normal(rng, 8, 4)).implementation != "structured"


# --- float64 finite differences -------------------------------------------------------------


def finite_difference_kernel(fn, params, x, eps=1e-6):
    """Full kernel from central differences of the flattened parameters (float64)."""
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    logits = jax.jit(lambda f: fn(unravel(f), x))  # one program, not op by op
    columns = []
    for i in range(flat.size):
        step = np.zeros(flat.size)
        step[i] = eps
        plus = logits(flat + step)
        minus = logits(flat - step)
        columns.append((np.asarray(plus) - np.asarray(minus)) / (2 * eps))
    jac = np.stack(columns, axis=-1)  # (n, C, P)
    return np.einsum("icp,jdp->ijcd", jac, jac)


def test_float64_against_finite_differences(rng):
    import jax.flatten_util  # noqa: F401 - ravel_pytree

    with jax.enable_x64(True):
        cases = {
            "mlp": (mlp, mlp_params(rng, d=3, h=4, c=2), (4, 3)),
            "cnn1d": (
                cnn1d,
                {
                    "k1": normal(rng, 3, 2, 2),
                    "c1": normal(rng, 2),
                    "k2": normal(rng, 3, 2, 2),
                    "w": normal(rng, 2, 2),
                },
                (3, 5, 2),
            ),
        }
        for fn, params, shape in cases.values():
            params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
            x = jnp.asarray(rng.standard_normal(shape))
            fd = finite_difference_kernel(fn, params, x)
            for outputs in ("mean", "full", "diag"):
                k = empirical_ntk(fn, params, x, outputs=outputs, implementation="structured")
                assert k.dtype == np.float64
                assert_close(k, reduce_full(fd, outputs), rtol=1e-7)


# --- NNX and Equinox ------------------------------------------------------------------------


@pytest.mark.slow
def test_nnx_model():
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(2, 3, (3, 3), padding="VALID", rngs=rngs)
            self.norm = nnx.BatchNorm(3, use_running_average=True, rngs=rngs)
            self.dense = nnx.Linear(3 * 4 * 4, 2, rngs=rngs)

        def __call__(self, x):
            h = jax.nn.relu(self.norm(self.conv(x)))
            return self.dense(h.reshape(x.shape[0], -1))

    model = Net(nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def fn(p, x):
        return nnx.merge(graphdef, p, rest)(x)

    x = jnp.asarray(np.random.default_rng(1).standard_normal((4, 6, 6, 2)), jnp.float32)
    analysis = check_forms(fn, params, x, forms=("mean", "full"))
    assert not analysis.fallback


@pytest.mark.slow
def test_equinox_model():
    eqx = pytest.importorskip("equinox")
    key1, key2 = jax.random.split(jax.random.key(0))

    class Net(eqx.Module):
        conv: eqx.nn.Conv2d
        linear: eqx.nn.Linear

        def __call__(self, x):  # one example, (C, H, W)
            h = jax.nn.relu(self.conv(x))
            return self.linear(h.reshape(-1))

    model = Net(eqx.nn.Conv2d(2, 3, 3, key=key1), eqx.nn.Linear(3 * 4 * 4, 2, key=key2))
    params, static = eqx.partition(model, eqx.is_array)

    def fn(p, x):
        return jax.vmap(eqx.combine(p, static))(x)

    x = jnp.asarray(np.random.default_rng(1).standard_normal((4, 2, 6, 6)), jnp.float32)
    analysis = check_forms(fn, params, x, forms=("mean", "full"))
    assert not analysis.fallback and not analysis.composite
