"""BatchNorm conventions: train=True uses and updates batch statistics, train=False is a pure
function of (variables, x) whose per-example output ignores the rest of the batch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from zoo_helpers import shallow_mobilenet

from sdcomplex.models import CifarResNet, SmallCNN

# (model, input shape of one example, path of the first BatchNorm, stem conv, padding); the
# MobileNet-V3 x0.35 is the three-block one of tests/zoo_helpers.py (every kind of block of its
# tables, BatchNorm after every convolution), made in the fixture
CASES = {
    "resnet": (CifarResNet(num_classes=5, depth=8, width=4), (8, 8, 3), "stem_bn", "stem_conv"),
    "mobilenet": (None, (8, 8, 3), "BatchNorm_0", "conv0"),
    "cnn": (
        SmallCNN(num_classes=5, channels=(3, 4), batch_norm=True, dense_width=None),
        (12,),
        "bn1",
        "conv1",
    ),
}


def batch(shape, seed, n=4):
    x = np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)
    return 2.0 * x + 0.5  # non-standardised, so batch and running statistics differ


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, random_variables):
    model, shape, bn_name, conv_name = CASES[request.param]
    with pytest.MonkeyPatch.context() as monkeypatch:
        if model is None:
            model = shallow_mobilenet(monkeypatch, 5, head_width=8)
        variables = random_variables(model, shape, seed=3)
        eval_fn = jax.jit(lambda v, x: model.apply(v, x, train=False))
        train_fn = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))
        yield request.param, model, shape, bn_name, conv_name, variables, eval_fn, train_fn


def first_conv_output(name, variables, conv_name, x):
    """The first convolution computed with lax directly (independently of Flax)."""
    p = variables["params"][conv_name]
    kernel = jnp.asarray(p["kernel"])
    if name == "cnn":
        x = x[..., None]  # (n, L) -> (n, L, 1)
        out = jax.lax.conv_general_dilated(
            x, kernel, (1,), "SAME", dimension_numbers=("NWC", "WIO", "NWC")
        )
        return out + p["bias"]
    return jax.lax.conv_general_dilated(  # 3x3 stem, stride 1, padding 1 in both models
        x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def test_train_step_updates_running_statistics(case):
    name, model, shape, bn_name, conv_name, variables, _, train_fn = case
    x = batch(shape, seed=0)
    _, updates = train_fn(variables, x)
    old = variables["batch_stats"][bn_name]
    new = updates["batch_stats"][bn_name]
    momentum = model.bn_momentum
    h = np.asarray(first_conv_output(name, variables, conv_name, jnp.asarray(x)), np.float64)
    axes = tuple(range(h.ndim - 1))
    mean, var = h.mean(axes), h.var(axes)  # Flax uses the biased batch variance
    np.testing.assert_allclose(
        new["mean"], momentum * old["mean"] + (1 - momentum) * mean, rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(
        new["var"], momentum * old["var"] + (1 - momentum) * var, rtol=1e-4, atol=1e-5
    )
    # every BatchNorm layer moved
    moved = jax.tree_util.tree_map(
        lambda a, b: not np.allclose(a, b), variables["batch_stats"], updates["batch_stats"]
    )
    assert all(jax.tree_util.tree_leaves(moved))


def test_eval_mode_does_not_touch_statistics_and_is_pure(case):
    _, model, shape, _, _, variables, eval_fn, _ = case
    x = batch(shape, seed=1)
    eval_mutable = jax.jit(lambda v, x: model.apply(v, x, train=False, mutable=["batch_stats"]))
    out, updates = eval_mutable(variables, x)
    same = jax.tree_util.tree_map(np.array_equal, variables["batch_stats"], updates["batch_stats"])
    assert all(jax.tree_util.tree_leaves(same))
    np.testing.assert_allclose(eval_fn(variables, x), out, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(eval_fn(variables, x), eval_fn(variables, x))
    assert model.bn_momentum > 0  # so an update would have been visible


def test_eval_output_independent_of_batch_composition(case):
    _, _, shape, _, _, variables, eval_fn, train_fn = case
    x = batch(shape, seed=2)
    others = batch(shape, seed=5)
    mixed = np.concatenate([x[:1], others[1:]])
    np.testing.assert_allclose(
        eval_fn(variables, x)[0], eval_fn(variables, mixed)[0], rtol=1e-5, atol=1e-6
    )
    # a batch of one, and the same example at another position
    np.testing.assert_allclose(
        eval_fn(variables, x[:1])[0], eval_fn(variables, x)[0], rtol=1e-5, atol=1e-6
    )
    swapped = np.concatenate([others[:2], x[:1], others[3:]])
    np.testing.assert_allclose(
        eval_fn(variables, swapped)[2], eval_fn(variables, x)[0], rtol=1e-5, atol=1e-6
    )
    # sanity: in training mode the batch statistics do couple the examples
    assert not np.allclose(
        train_fn(variables, x)[0][0], train_fn(variables, mixed)[0][0], atol=1e-4
    )


def test_train_mode_without_mutable_collection_is_an_error(case):
    _, model, shape, _, _, variables, _, _ = case
    with pytest.raises(Exception, match="batch_stats"):
        model.apply(variables, batch(shape, seed=0), train=True)
