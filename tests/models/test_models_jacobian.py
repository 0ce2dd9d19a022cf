"""The NTK adapter's contract: ``jax.jacrev`` of
``lambda p, x: model.apply({'params': p, **rest}, x, train=False)`` w.r.t. the parameters works
for every model family, and agrees with forward-mode ``jax.jvp``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from zoo_helpers import shallow_mobilenet

from sdcomplex.models import CifarResNet, count_params, create_model

# ResNet-8 (ResNet-20's blocks, one per stage) and a MobileNet-V3 x0.35 of three blocks, one of
# every kind of its tables (tests/zoo_helpers.py): every layer type at a fraction of the depth
FAMILIES = {
    "lenet5": ("lenet5", {"width": 1}, (16, 16, 3)),
    "resnet": ("resnet8", {"width": 2}, (8, 8, 3)),
    "mobilenet": ("mobilenet_v3_35_shallow", {"head_width": 8}, (8, 8, 3)),
    "mlp": ("mlp", {"hidden_sizes": (16, 8)}, (40,)),
    "cnn_1d": ("cnn", {"channels": (4, 4), "dense_width": 8}, (40,)),
    "cnn_2d_bn": ("cnn", {"channels": (4,), "batch_norm": True, "dense_width": None}, (8, 8, 3)),
}


def _model(name, num_classes, overrides, monkeypatch):
    if name == "resnet8":
        return CifarResNet(num_classes, depth=8, **overrides)
    if name == "mobilenet_v3_35_shallow":
        return shallow_mobilenet(monkeypatch, num_classes, **overrides)
    return create_model(name, num_classes, **overrides)


@pytest.mark.parametrize("family", FAMILIES)
def test_jacrev_wrt_params_matches_jvp(family, random_variables, monkeypatch):
    name, overrides, shape = FAMILIES[family]
    num_classes, n = 3, 2
    model = _model(name, num_classes, overrides, monkeypatch)
    variables = random_variables(model, shape)
    params = variables["params"]
    rest = {k: v for k, v in variables.items() if k != "params"}
    x = np.random.default_rng(1).standard_normal((n, *shape)).astype(np.float32)

    def f(p, x):
        return model.apply({"params": p, **rest}, x, train=False)

    rng = np.random.default_rng(2)
    tangent = jax.tree_util.tree_map(
        lambda p: rng.standard_normal(p.shape).astype(np.float32), params
    )

    @jax.jit  # one compiled program for both (compiling a MobileNet's derivatives is slow)
    def jac_and_jvp(p, t):
        return jax.jacrev(f)(p, x), jax.jvp(lambda q: f(q, x), (p,), (t,))[1]

    jac, jvp = jac_and_jvp(params, tangent)
    # one leaf per parameter, shaped (batch, num_classes, *param.shape)
    flat_jac = jax.tree_util.tree_leaves(jac)
    flat_params = jax.tree_util.tree_leaves(params)
    assert len(flat_jac) == len(flat_params)
    for j, p in zip(flat_jac, flat_params, strict=True):
        assert j.shape == (n, num_classes, *p.shape)
        assert j.dtype == jnp.float32
    assert sum(j[0, 0].size for j in flat_jac) == count_params(params)

    # J v from the reverse-mode Jacobian == forward-mode directional derivative
    jv = sum(  # in NumPy float64: eager jnp would compile one tensordot per parameter shape
        np.tensordot(np.asarray(j, np.float64), t.astype(np.float64), axes=t.ndim)
        for j, t in zip(flat_jac, jax.tree_util.tree_leaves(tangent), strict=True)
    )
    assert jv.shape == (n, num_classes)
    scale = float(np.max(np.abs(jvp)))
    assert scale > 0
    np.testing.assert_allclose(jv, jvp, rtol=2e-4, atol=2e-4 * scale)
