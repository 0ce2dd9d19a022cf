"""The layer-structured NTK engine against the explicit Jacobian contraction.

Every layer type (Dense with extra axes, Conv with strides/padding/dilation/feature groups,
inference BatchNorm, pooling in between) of Flax linen models is checked with each of its two
methods forced, for the mean, full and diag kernels, blocked and unblocked, with and without x2;
registry models at tiny sizes; parameter subsets; shared modules and LayerNorm.
"""

import dataclasses
import math

import flax.linen as nn
import jax
import numpy as np
import pytest
from zoo_helpers import shallow_mobilenet

from sdcomplex.models import CifarResNet, abstract_variables, create_model
from sdcomplex.ntk import (
    compute_with_plan,
    empirical_ntk,
    flax_ntk_fn,
    plan_ntk,
)
from sdcomplex.ntk._engine import OutputSpec

RTOL = 1e-5


def random_variables(variables, seed=0):
    """Fills a (possibly abstract) variable tree with well-scaled random numbers."""
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = str(getattr(path[-1], "key", path[-1]))
        shape = tuple(leaf.shape)
        if name == "var":
            return (0.5 + rng.random(shape)).astype(np.float32)
        if name in ("mean", "bias"):
            return (0.3 * rng.standard_normal(shape)).astype(np.float32)
        if name == "scale":
            return (1.0 + 0.3 * rng.standard_normal(shape)).astype(np.float32)
        fan_in = max(1, math.prod(shape[:-1]))
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(fill, variables)


def inputs(n, shape, seed=1):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


def assert_close(a, b, rtol=RTOL):
    err = float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
    assert err <= rtol, f"relative error {err:.2e} > {rtol:.0e}"


def with_methods(plan, method):
    """The plan with every direct dense/conv site that allows ``method`` switched to it."""
    eng = plan.prepared
    sites = tuple(
        dataclasses.replace(site, tap=site.tap.with_method(method))
        if site.tap is not None
        and site.leaf is not None
        and (method == "explicit" or site.tap.outer_allowed)
        else site
        for site in eng.sites
    )
    analysis = dataclasses.replace(eng.analysis, sites=sites)
    return dataclasses.replace(plan, prepared=dataclasses.replace(eng, analysis=analysis))


def leaf_names(params):
    """Leaf index -> path of names, in the order of jax.tree.leaves."""
    return [
        tuple(str(getattr(k, "key", k)) for k in path)
        for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]
    ]


def reference_kernel(fn, params, x1, x2, outputs):
    """J(x1) J(x2)^T from one reverse-mode Jacobian of the whole batch (the definition)."""
    x = x1 if x2 is None else np.concatenate([x1, x2])
    jac = jax.jit(jax.jacrev(lambda p: fn(p, x)))(params)  # one program, not op by op
    j = np.concatenate(
        [
            np.asarray(leaf, np.float64).reshape(*leaf.shape[:2], -1)
            for leaf in jax.tree.leaves(jac)
        ],
        axis=2,
    )
    j1, j2 = j[: len(x1)], j[len(x1) :] if x2 is not None else j
    return reduce_full(np.einsum("icp,jdp->ijcd", j1, j2), outputs)


def reduce_full(full, outputs):
    """The mean or diag kernel from the full one (n1, n2, C, C)."""
    if outputs == "full":
        return full
    diag = np.moveaxis(np.diagonal(full, axis1=2, axis2=3), -1, 0)
    return diag.mean(0) if outputs == "mean" else diag


def check(fn, params, x1, x2, outputs, *, methods=("auto",), block_size=None, reference=None):
    if reference is None:
        reference = reference_kernel(fn, params, x1, x2, outputs)
    plan = plan_ntk(
        fn, params, x1, x2, outputs=outputs, implementation="structured", block_size=block_size
    )
    for method in methods:
        chosen = plan if method == "auto" else with_methods(plan, method)
        kernel = compute_with_plan(chosen, fn, params, x1, x2)
        assert kernel.shape == reference.shape
        assert_close(kernel, reference)
    return plan


class DenseExtraAxes(nn.Module):
    """Dense layers on an input with 3 positions, a mean over positions, then dense logits."""

    @nn.compact
    def __call__(self, x, train=False):
        h = nn.relu(nn.Dense(6)(x))  # (b, 3, 6): S = 3 positions share the weights
        h = nn.Dense(5, use_bias=False)(h)
        return nn.Dense(4)(jnp_mean(h))


def jnp_mean(h):
    return h.mean(axis=1)


class ConvNet(nn.Module):
    """Strided, padded, dilated (kernel and input) and grouped convolutions with pooling."""

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.relu(nn.Conv(4, (3, 3), strides=(2, 1), padding="SAME")(x))
        x = nn.Conv(4, (2, 2), input_dilation=(2, 1), padding=1)(x)  # lax patches path
        x = nn.Conv(4, (3, 3), padding=1, feature_group_count=4, use_bias=False)(x)  # depthwise
        x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2), padding="SAME")
        x = nn.Conv(6, (2, 2), kernel_dilation=(2, 1), padding=((1, 0), (0, 1)))(x)
        x = nn.Conv(6, (1, 1), feature_group_count=2)(nn.tanh(x))
        x = nn.avg_pool(x, (1, 2), strides=(1, 1))
        return nn.Dense(3)(x.reshape(x.shape[0], -1))


class BatchNormNet(nn.Module):
    """Conv - BatchNorm (features last) - Dense - BatchNorm over a non-last axis."""

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.Conv(3, (3,), padding="VALID", use_bias=False)(x)  # 1-D convolution
        x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
        x = nn.BatchNorm(use_running_average=not train, axis=1, use_scale=False)(x)
        return nn.Dense(2)(x.reshape(x.shape[0], -1))


class Fallbacks(nn.Module):
    """Circular padding, LayerNorm and a module called twice."""

    @nn.compact
    def __call__(self, x, train=False):
        x = nn.relu(nn.Conv(3, (3,), padding="CIRCULAR")(x))
        x = nn.LayerNorm()(x.reshape(x.shape[0], -1))
        shared = nn.Dense(x.shape[-1])
        x = shared(nn.tanh(shared(x)))
        return nn.Dense(3)(x)


LAYER_CASES = {
    "dense_extra_axes": (DenseExtraAxes(), (3, 4)),
    "conv": (ConvNet(), (8, 6, 2)),
    "batchnorm": (BatchNormNet(), (7, 2)),
    "fallbacks": (Fallbacks(), (6, 2)),
}


def _layer_case(name):
    module, shape = LAYER_CASES[name]
    # shapes only (random_variables sets every value): real init would compile op by op
    abstract = jax.eval_shape(
        lambda key, x: module.init(key, x, train=False), jax.random.key(0), inputs(2, shape)
    )
    return module, random_variables(abstract), shape


@pytest.fixture(scope="module")
def layer_case():
    """(fn, params, x1, x2, full reference kernel of [x1; x2]) per layer case, built once.

    One Jacobian per case serves every kernel form and both the x2 and the symmetric checks, and
    the same ``fn`` object lets the forms share compiled programs.
    """
    cache = {}

    def get(name):
        if name not in cache:
            module, variables, shape = _layer_case(name)
            fn, params = flax_ntk_fn(module, variables)
            x1, x2 = inputs(5, shape), inputs(3, shape, seed=2)
            full = reference_kernel(fn, params, np.concatenate([x1, x2]), None, "full")
            cache[name] = (fn, params, x1, x2, full)
        return cache[name]

    return get


@pytest.mark.parametrize("outputs", ["mean", "full", "diag"])
@pytest.mark.parametrize("case", ["dense_extra_axes", "conv", "batchnorm"])
def test_layer_types_both_methods(case, outputs, layer_case):
    fn, params, x1, x2, full = layer_case(case)
    n1 = len(x1)
    if outputs == "diag":  # symmetric and blocked
        reference = reduce_full(full[:n1, :n1], outputs)
        methods = ("explicit", "outer")
        plan = check(
            fn, params, x1, None, outputs, methods=methods, block_size=2, reference=reference
        )
    else:
        reference = reduce_full(full[:n1, n1:], outputs)
        methods = ("explicit",) if outputs == "full" else ("explicit", "outer")
        plan = check(fn, params, x1, x2, outputs, methods=methods, reference=reference)
    assert not plan.prepared.analysis.fallback


def test_layer_choices_are_recorded():
    module, variables, shape = _layer_case("dense_extra_axes")
    fn, params = flax_ntk_fn(module, variables)
    names = leaf_names(params)
    plan = plan_ntk(fn, params, inputs(64, shape), implementation="structured")
    by_name = {names[s.leaf][0]: s.tap for s in plan.prepared.sites if s.tap is not None}
    assert by_name["Dense_0"].positions == 3 and by_name["Dense_2"].positions == 1
    assert by_name["Dense_2"].method == "outer"  # a plain dense layer is always cheaper outer
    full = plan_ntk(fn, params, inputs(64, shape), outputs="full", implementation="structured")
    # The full kernel never uses the outer form over several positions.
    taps = [s.tap for s in full.prepared.sites if s.tap is not None]
    assert all(t.method == "explicit" for t in taps if t.positions > 1)


def test_shared_and_normalising_layers_are_exact(layer_case):
    """Circular padding, LayerNorm and a module called twice: composite leaves, exact."""
    fn, params, x1, x2, full = layer_case("fallbacks")
    n1 = len(x1)
    plan = check(fn, params, x1, x2, "full", reference=full[:n1, n1:])
    names = leaf_names(params)
    composite = {names[i][0] for i in plan.prepared.analysis.composite}
    assert composite == {"Dense_0"}  # the shared module's kernel and bias
    assert not plan.prepared.analysis.fallback


@pytest.mark.parametrize(
    "keep",
    [
        lambda path: path[-1] == "bias",
        lambda path: path[0] == "BatchNorm_0",
        lambda path: path in {("BatchNorm_0", "scale"), ("Conv_0", "kernel"), ("Dense_0", "bias")},
    ],
    ids=["biases", "one_layer", "mixed"],
)
def test_parameter_subsets(keep):
    module, variables, shape = _layer_case("batchnorm")
    fn, params = flax_ntk_fn(module, variables, param_filter=keep)
    check(fn, params, inputs(4, shape), None, "mean", block_size=3)


# Registry models at tiny sizes, one kernel form each (every form, blocking and x2 case is
# covered per layer type above); the reference is the core's generic "jacobian" engine. The
# ResNet is ResNet-8 (the blocks, shortcuts and stages of ResNet-20, one block per stage), the
# MobileNet-V3 x0.35 three blocks of every kind of its tables (tests/zoo_helpers.py).
REGISTRY = {
    "lenet5": ({"width": 1}, (16, 16, 3), "full", False),
    "resnet8": ({"width": 2, "depth": 8}, (8, 8, 3), "mean", True),
    "mlp": ({"hidden_sizes": (7, 5)}, (6,), "diag", False),
    "cnn": ({"channels": (3, 4), "batch_norm": True, "dense_width": 5}, (12,), "full", True),
    "mobilenet_v3_35_shallow": ({"head_width": 8}, (8, 8, 3), "mean", True),
}


def _registry_model(name, overrides, monkeypatch):
    if name == "resnet8":
        return CifarResNet(num_classes=3, **overrides)
    if name == "mobilenet_v3_35_shallow":
        return shallow_mobilenet(monkeypatch, 3, **overrides)
    return create_model(name, num_classes=3, **overrides)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registry_models(name, monkeypatch):
    overrides, shape, outputs, symmetric = REGISTRY[name]
    model = _registry_model(name, overrides, monkeypatch)
    variables = random_variables(abstract_variables(model, shape))
    fn, params = flax_ntk_fn(model, variables)
    x1, x2 = inputs(4, shape), (None if symmetric else inputs(3, shape, seed=2))
    generic = empirical_ntk(fn, params, x1, x2, outputs=outputs, implementation="jacobian")
    plan = check(fn, params, x1, x2, outputs, block_size=3, reference=generic)
    assert not plan.prepared.analysis.fallback  # every parameter of the zoo has a closed form


def test_auto_picks_structured_when_cheaper():
    # The paper's student on 16x16 images (same layers; its planning and tracing are faster).
    model = create_model("lenet5x8", num_classes=10)
    variables = random_variables(abstract_variables(model, (16, 16, 3)))
    fn, params = flax_ntk_fn(model, variables)
    plan = plan_ntk(fn, params, inputs(64, (16, 16, 3)))
    assert plan.implementation == "structured"
    assert plan.estimates["structured"][0] < plan.estimates["jacobian"][0] / 3
    assert plan.num_parts == 1 and plan.block_size == 64


def test_logit_parts_under_a_small_memory_budget():
    model = create_model("mlp", num_classes=7, hidden_sizes=(16,))
    variables = random_variables(abstract_variables(model, (5,)))
    fn, params = flax_ntk_fn(model, variables)
    x = inputs(6, (5,))
    for outputs in ("mean", "diag"):
        plan = plan_ntk(fn, params, x, outputs=outputs, implementation="structured")
        small = plan_ntk(
            fn, params, x, outputs=outputs, implementation="structured", memory_budget=3e3
        )
        assert plan.num_parts == 1 and small.num_parts > 1
        assert_close(
            compute_with_plan(small, fn, params, x), compute_with_plan(plan, fn, params, x)
        )


def test_self_blocks_are_the_diagonal_of_the_full_kernel():
    module, variables, shape = _layer_case("batchnorm")
    fn, params = flax_ntk_fn(module, variables)
    x = inputs(4, shape)
    plan = plan_ntk(fn, params, x, outputs="full", implementation="structured")
    spec = OutputSpec("full", 2)

    @jax.jit
    def blocks(params, x):
        feats = plan.prepared.features(fn, params, x, jax.numpy.asarray(0), spec)
        return plan.prepared.self_blocks(fn, params, feats, spec)

    full = reference_kernel(fn, params, x, None, "full")
    assert_close(np.asarray(blocks(params, x)), full[np.arange(4), np.arange(4)])
