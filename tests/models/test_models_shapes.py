"""Output shapes of every registry name, and the ResNet's spatial downsampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from zoo_helpers import shallow_mobilenet

from sdcomplex.models import (
    CifarResNet,
    abstract_variables,
    available_models,
    create_model,
    init_variables,
)


def abstract_logits(model, x_shape, train=False):
    """Logit shape/dtype without computing anything."""
    variables = abstract_variables(model, x_shape[1:])
    x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
    if train:
        return jax.eval_shape(
            lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"])[0], variables, x
        )
    return jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)


@pytest.mark.parametrize("name", available_models())
def test_every_model_on_cifar_shaped_input(name):
    model = create_model(name, num_classes=7)
    out = abstract_logits(model, (3, 32, 32, 3))
    assert out.shape == (3, 7)
    assert out.dtype == jnp.float32


@pytest.mark.parametrize("name", ["mobilenet_v3_35", "mobilenet_v3_125"])
@pytest.mark.parametrize("stem_stride", [1, 2])
def test_mobilenets_on_tiny_imagenet_shaped_input(name, stem_stride):
    model = create_model(name, num_classes=200, stem_stride=stem_stride)
    assert abstract_logits(model, (2, 64, 64, 3), train=stem_stride == 1).shape == (2, 200)


@pytest.mark.parametrize("x_shape", [(5, 40), (5, 40, 1), (5, 40, 2), (5, 8, 8, 1), (5, 32, 32, 3)])
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_small_models_on_1d_and_2d_inputs(name, x_shape, random_variables):
    model = create_model(name, num_classes=10)
    variables = random_variables(model, x_shape[1:])
    x = np.random.default_rng(1).standard_normal(x_shape).astype(np.float32)
    logits = model.apply(variables, x)
    assert logits.shape == (5, 10)
    assert logits.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(logits)))


@pytest.mark.parametrize(
    ("name", "overrides"),
    [("lenet5x1", {}), ("resnet20", {"width": 4}), ("mobilenet_v3_35_shallow", {"head_width": 16})],
)
def test_real_init_and_forward_pass_are_finite(name, overrides, monkeypatch):
    """The real initialisers give finite, non-constant logits in both modes.

    An "rbg" key: the threefry PRNG compiles slowly for the many parameter shapes; one
    compiled program for the initialisation and both modes (op-by-op initialisation compiles
    every layer's operations separately). The MobileNet-V3 x0.35 has three blocks, one of every
    kind of its tables (tests/zoo_helpers.py): every initialiser and layer type."""
    if name == "mobilenet_v3_35_shallow":
        model = shallow_mobilenet(monkeypatch, 10, **overrides)
    else:
        model = create_model(name, num_classes=10, **overrides)
    x = np.random.default_rng(1).standard_normal((2, 16, 16, 3)).astype(np.float32)

    @jax.jit
    def both(key, x):
        variables = init_variables(model, key, (16, 16, 3))
        eval_logits = model.apply(variables, x, train=False)
        train_logits, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
        return eval_logits, train_logits

    for out in both(jax.random.key(0, impl="rbg"), x):
        assert out.shape == (2, 10)
        assert out.dtype == jnp.float32
        assert np.all(np.isfinite(np.asarray(out)))
        assert np.std(np.asarray(out)) > 0


@pytest.mark.parametrize("side", [32, 64])
def test_resnet_downsamples_by_two_per_stage(side):
    model = create_model("resnet20", num_classes=10)
    variables = abstract_variables(model, (side, side, 3))
    x = jax.ShapeDtypeStruct((2, side, side, 3), jnp.float32)
    _, state = jax.eval_shape(
        lambda v, x: model.apply(v, x, capture_intermediates=True, mutable=["intermediates"]),
        variables,
        x,
    )
    inter = state["intermediates"]
    expected = {
        "stem_bn": (2, side, side, 16),
        "stage1_block3": (2, side, side, 16),
        "stage2_block1": (2, side // 2, side // 2, 32),
        "stage2_block3": (2, side // 2, side // 2, 32),
        "stage3_block1": (2, side // 4, side // 4, 64),
        "stage3_block3": (2, side // 4, side // 4, 64),
    }
    for layer, shape in expected.items():
        assert inter[layer]["__call__"][0].shape == shape, layer


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_resnet_shortcut_semantics(shortcut, random_variables):
    """With the residual branch switched off (last BN scale 0), a downsampling block returns
    relu(shortcut(x)): option A = stride-2 subsampling zero-padded to the new channels."""
    model = CifarResNet(num_classes=3, depth=8, width=4, shortcut=shortcut)
    variables = random_variables(model, (8, 8, 3))
    x = np.random.default_rng(1).standard_normal((2, 8, 8, 3)).astype(np.float32)
    _, state = model.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
    block_in = state["intermediates"]["stage1_block1"]["__call__"][0]  # (2, 8, 8, 4)

    params = jax.tree_util.tree_map(np.copy, variables["params"])
    params["stage2_block1"]["bn2"]["scale"][:] = 0.0
    params["stage2_block1"]["bn2"]["bias"][:] = 0.0
    _, state = model.apply(
        {**variables, "params": params}, x, capture_intermediates=True, mutable=["intermediates"]
    )
    block_out = np.asarray(state["intermediates"]["stage2_block1"]["__call__"][0])
    assert block_out.shape == (2, 4, 4, 8)
    if shortcut == "A":
        sub = np.asarray(block_in)[:, ::2, ::2, :]
        expected = np.concatenate([np.zeros((2, 4, 4, 2)), sub, np.zeros((2, 4, 4, 2))], -1)
        np.testing.assert_allclose(block_out, np.maximum(expected, 0), atol=1e-6)
    else:
        assert "proj_conv" in params["stage2_block1"]
        kernel = np.asarray(params["stage2_block1"]["proj_conv"]["kernel"])[0, 0]  # (4, 8)
        proj = np.asarray(block_in)[:, ::2, ::2, :] @ kernel
        bn = params["stage2_block1"]["proj_bn"]
        stats = variables["batch_stats"]["stage2_block1"]["proj_bn"]
        proj = (proj - np.asarray(stats["mean"])) / np.sqrt(np.asarray(stats["var"]) + 1e-5)
        proj = proj * np.asarray(bn["scale"]) + np.asarray(bn["bias"])
        np.testing.assert_allclose(block_out, np.maximum(proj, 0), atol=1e-5)
