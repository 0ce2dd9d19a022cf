"""Registry behaviour, initialisation, parameter counting and argument validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdcomplex.models import (
    MLP,
    CifarResNet,
    LeNet5,
    MobileNetV3,
    SmallCNN,
    abstract_variables,
    available_models,
    count_params,
    create_model,
    init_variables,
)

REQUIRED = {
    "lenet5",
    "lenet5x8",
    "resnet20",
    "resnet56",
    "resnet110",
    "mobilenet_v3_35",
    "mobilenet_v3_125",
    "mlp",
    "cnn",
}


def test_available_models():
    names = available_models()
    assert isinstance(names, tuple)
    assert list(names) == sorted(names)
    assert REQUIRED <= set(names)


@pytest.mark.parametrize(
    ("name", "cls", "attrs"),
    [
        ("lenet5", LeNet5, {"width": 1}),
        ("lenet5x8", LeNet5, {"width": 8}),
        ("lenet5x3", LeNet5, {"width": 3}),  # any lenet5x<k> is accepted
        ("resnet20", CifarResNet, {"depth": 20, "width": 16, "shortcut": "A"}),
        ("resnet56", CifarResNet, {"depth": 56}),
        ("resnet110", CifarResNet, {"depth": 110}),
        ("mobilenet_v3_35", MobileNetV3, {"width_multiplier": 0.35, "variant": "large"}),
        ("mobilenet_v3_125", MobileNetV3, {"width_multiplier": 1.25, "stem_stride": 1}),
        ("mlp", MLP, {"hidden_sizes": (256, 256)}),
        ("cnn", SmallCNN, {"batch_norm": False}),
    ],
)
def test_create_model_configuration(name, cls, attrs):
    model = create_model(name, num_classes=4)
    assert type(model) is cls
    assert model.num_classes == 4
    for key, value in attrs.items():
        assert getattr(model, key) == value


def test_overrides_are_applied_and_lists_become_tuples():
    model = create_model("mlp", 2, hidden_sizes=[8, 4], activation="tanh")
    assert model.hidden_sizes == (8, 4) and model.activation == "tanh"
    assert create_model("resnet56", 10, shortcut="B", width=8).shortcut == "B"
    assert create_model("mobilenet_v3_35", 10, variant="small", stem_stride=2).variant == "small"
    assert create_model("lenet5", 10, width=4).width == 4


@pytest.mark.parametrize("name", ["resnet18", "lenet5x0", "lenet", "", "MLP"])
def test_unknown_name_lists_known_models(name):
    with pytest.raises(ValueError, match="unknown model") as info:
        create_model(name, 10)
    assert "resnet20" in str(info.value) and "mobilenet_v3_35" in str(info.value)


def test_non_string_name():
    with pytest.raises(TypeError, match="string"):
        create_model(20, 10)


@pytest.mark.parametrize("num_classes", [0, -3])
def test_num_classes_must_be_positive(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        create_model("resnet20", num_classes)


@pytest.mark.parametrize("num_classes", [2.0, "10", True, None])
def test_num_classes_must_be_an_int(num_classes):
    with pytest.raises(TypeError, match="num_classes"):
        create_model("mlp", num_classes)


def test_unknown_and_pinned_overrides():
    with pytest.raises(ValueError, match="allowed overrides") as info:
        create_model("resnet20", 10, widht=4)
    assert "widht" in str(info.value) and "'width'" in str(info.value)
    with pytest.raises(ValueError, match="fixed by the name"):
        create_model("resnet20", 10, depth=56)
    with pytest.raises(ValueError, match="fixed by the name"):
        create_model("mobilenet_v3_35", 10, width_multiplier=1.0)
    with pytest.raises(ValueError, match="fixed by the name"):
        create_model("lenet5x8", 10, width=2)
    with pytest.raises(ValueError, match="allowed overrides"):
        create_model("mlp", 10, parent=None)


@pytest.mark.parametrize(
    ("name", "overrides", "error", "match"),
    [
        ("lenet5", {"width": 0}, ValueError, "width"),
        ("lenet5", {"width": 1.5}, TypeError, "width"),
        ("resnet20", {"width": 0}, ValueError, "width"),
        ("resnet20", {"shortcut": "C"}, ValueError, "shortcut"),
        ("resnet20", {"bn_momentum": 1.0}, ValueError, "bn_momentum"),
        ("mobilenet_v3", {"width_multiplier": -1.0}, ValueError, "width_multiplier"),
        ("mobilenet_v3", {"width_multiplier": float("nan")}, ValueError, "width_multiplier"),
        ("mobilenet_v3_35", {"variant": "tiny"}, ValueError, "variant"),
        ("mobilenet_v3_35", {"stem_stride": 4}, ValueError, "stem_stride"),
        ("mobilenet_v3_35", {"head_width": 0}, ValueError, "head_width"),
        ("mlp", {"hidden_sizes": (8, 0)}, ValueError, "hidden_sizes"),
        ("mlp", {"hidden_sizes": 8}, TypeError, "hidden_sizes"),
        ("mlp", {"activation": "sigmoidal"}, ValueError, "activation"),
        ("cnn", {"channels": ()}, ValueError, "channels"),
        ("cnn", {"kernel_size": 0}, ValueError, "kernel_size"),
        ("cnn", {"batch_norm": 1}, TypeError, "batch_norm"),
    ],
)
def test_bad_override_values(name, overrides, error, match):
    with pytest.raises(error, match=match):
        create_model(name, 10, **overrides)


def test_resnet_depth_must_be_6m_plus_2():
    with pytest.raises(ValueError, match="6m"):
        CifarResNet(num_classes=10, depth=21)
    with pytest.raises(ValueError, match="depth"):
        CifarResNet(num_classes=10, depth=2)


def test_init_is_deterministic_and_key_dependent():
    model = create_model("mlp", 3, hidden_sizes=(5,))
    a = init_variables(model, jax.random.PRNGKey(0), (4,))
    b = init_variables(model, jax.random.PRNGKey(0), (4,))
    c = init_variables(model, jax.random.PRNGKey(1), (4,))
    seed = init_variables(model, 0, (4,))  # an int seed is the trainer's key(seed, impl="rbg")
    rbg = init_variables(model, jax.random.key(0, impl="rbg"), (4,))
    assert sorted(a) == ["params"]
    for x, y in [(a, b), (seed, rbg)]:
        jax.tree_util.tree_map(np.testing.assert_array_equal, x, y)
    assert not np.allclose(a["params"]["hidden1"]["kernel"], c["params"]["hidden1"]["kernel"])
    # input_shape excludes the batch axis and equals a direct model.init
    direct = model.init(jax.random.PRNGKey(0), jnp.zeros((7, 4)), train=False)
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, direct)


def test_init_collections_and_dtypes():
    v = init_variables(create_model("cnn", 2, channels=(2,), batch_norm=True), 0, (6,))
    assert sorted(v) == ["batch_stats", "params"]
    leaves = jax.tree_util.tree_leaves(v)
    assert all(leaf.dtype == jnp.float32 for leaf in leaves)
    np.testing.assert_array_equal(v["batch_stats"]["bn1"]["mean"], 0.0)
    np.testing.assert_array_equal(v["batch_stats"]["bn1"]["var"], 1.0)
    assert sorted(abstract_variables(create_model("resnet20", 2), (8, 8, 3))) == [
        "batch_stats",
        "params",
    ]
    assert sorted(abstract_variables(create_model("lenet5", 2), (32, 32, 3))) == ["params"]


@pytest.mark.parametrize(
    ("shape", "error"),
    [
        ((), ValueError),
        ((8, -1), ValueError),
        ((8, 0), ValueError),
        (8, TypeError),
        ("8", TypeError),
    ],
)
def test_init_rejects_bad_input_shapes(shape, error):
    with pytest.raises(error, match="input_shape"):
        init_variables(create_model("mlp", 2), 0, shape)


def test_init_rejects_non_modules():
    with pytest.raises(TypeError, match="flax.linen.Module"):
        init_variables("mlp", 0, (4,))


def test_count_params():
    params = {"a": {"kernel": np.zeros((3, 4)), "bias": np.zeros(4)}, "b": jnp.zeros((2, 2, 2))}
    assert count_params(params) == 12 + 4 + 8
    abstract = jax.tree_util.tree_map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params)
    assert count_params(abstract) == 24
    assert count_params({}) == 0
    with pytest.raises(ValueError, match="variables\\['params'\\]"):
        count_params({"params": params, "batch_stats": {}})
    with pytest.raises(TypeError, match="not an array"):
        count_params({"a": 3.0})


@pytest.mark.parametrize(
    ("name", "x_shape", "error", "match"),
    [
        ("lenet5", (2, 12, 12, 3), ValueError, "16x16"),
        ("lenet5", (2, 32, 32), ValueError, "shape"),
        ("resnet20", (2, 32), ValueError, "shape"),
        ("mobilenet_v3_35", (2, 32, 32), ValueError, "shape"),
        ("cnn", (2, 4, 4, 4, 1), ValueError, "shape"),
        ("mlp", (5,), ValueError, "shape"),
    ],
)
def test_bad_input_shapes_at_call_time(name, x_shape, error, match):
    model = create_model(name, 3)
    with pytest.raises(error, match=match):
        model.init(jax.random.PRNGKey(0), jnp.zeros(x_shape), train=False)


def test_integer_inputs_are_refused():
    model = create_model("mlp", 3)
    with pytest.raises(TypeError, match="floating-point"):
        model.init(jax.random.PRNGKey(0), jnp.zeros((2, 4), jnp.int32))
