"""Model registry: names -> configured Flax modules, variable initialisation, parameter counts."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sdcomplex.models._common import check_int
from sdcomplex.models._lenet import LeNet5
from sdcomplex.models._mobilenet import MobileNetV3
from sdcomplex.models._resnet import CifarResNet
from sdcomplex.models._small import MLP, SmallCNN


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registry entry.

    Attributes:
        module: the Flax module class.
        defaults: constructor arguments the name implies.
        fixed: argument names the name pins (they may not be overridden, e.g. ``depth`` of
            ``resnet20``).
        description: one line for listings.
    """

    module: type[nn.Module]
    defaults: Mapping[str, Any]
    fixed: frozenset[str]
    description: str


def _spec(module: type[nn.Module], description: str, fixed: Sequence[str] = (), **defaults: Any):
    return ModelSpec(module, dict(defaults), frozenset(fixed), description)


_REGISTRY: dict[str, ModelSpec] = {
    "lenet5": _spec(LeNet5, "LeNet-5xk, width k = `width` (default 1)", width=1),
    "resnet20": _spec(CifarResNet, "CIFAR ResNet-20 (m=3)", ("depth",), depth=20),
    "resnet56": _spec(CifarResNet, "CIFAR ResNet-56 (m=9)", ("depth",), depth=56),
    "resnet110": _spec(CifarResNet, "CIFAR ResNet-110 (m=18)", ("depth",), depth=110),
    "mobilenet_v3": _spec(
        MobileNetV3, "MobileNet-V3 (Large), width `width_multiplier` (1.0)", width_multiplier=1.0
    ),
    "mobilenet_v3_35": _spec(
        MobileNetV3, "MobileNet-V3 (Large) x0.35", ("width_multiplier",), width_multiplier=0.35
    ),
    "mobilenet_v3_125": _spec(
        MobileNetV3, "MobileNet-V3 (Large) x1.25", ("width_multiplier",), width_multiplier=1.25
    ),
    "mlp": _spec(MLP, "fully connected network on flattened inputs"),
    "cnn": _spec(SmallCNN, "small 1-D / 2-D conv net"),
}
for _k in (1, 2, 4, 8):
    _REGISTRY[f"lenet5x{_k}"] = _spec(
        LeNet5,
        f"LeNet-5x{_k}" + (" (the paper's student)" if _k == 8 else ""),
        ("width",),
        width=_k,
    )
_LENET_PATTERN = re.compile(r"lenet5x([1-9][0-9]*)")


def available_models() -> tuple[str, ...]:
    """Names accepted by :func:`create_model`, sorted.

    ``lenet5x<k>`` is accepted for every integer ``k >= 1``; only k = 1, 2, 4, 8 are listed.

    Example:
        >>> "resnet20" in available_models()
        True
    """
    return tuple(sorted(_REGISTRY))


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` behind a registry name (see :func:`create_model`)."""
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {name!r}")
    if name in _REGISTRY:
        return _REGISTRY[name]
    match = _LENET_PATTERN.fullmatch(name)
    if match:
        k = int(match.group(1))
        return _spec(LeNet5, f"LeNet-5x{k}", ("width",), width=k)
    raise ValueError(
        f"unknown model {name!r}; known models: {', '.join(available_models())} "
        "(and lenet5x<k> for any integer k >= 1)"
    )


def create_model(name: str, num_classes: int, **overrides: Any) -> nn.Module:
    """Builds a configured (unbound) Flax module from the registry.

    Every model maps ``(variables, x, train=False)`` to float32 logits ``(batch, num_classes)``
    via ``model.apply(variables, x, train=...)``; see the package docstring for conventions.

    Args:
        name: a name from :func:`available_models` or ``lenet5x<k>``.
        num_classes: number of logits ``C >= 1``.
        **overrides: constructor arguments of the model class (e.g. ``width=2`` for ``lenet5``,
            ``shortcut="B"`` for the ResNets, ``stem_stride=2`` or ``variant="small"`` for the
            MobileNets, ``hidden_sizes=(64,)`` for ``mlp``). Arguments the name pins (the
            depth of ``resnet20``, the multiplier of ``mobilenet_v3_35``, the width of
            ``lenet5x8``) cannot be overridden. Lists are converted to tuples.

    Returns:
        The ``flax.linen.Module``.

    Raises:
        ValueError: unknown name, ``num_classes < 1``, unknown/pinned override or bad value.
        TypeError: wrongly typed argument.

    Example:
        >>> model = create_model("resnet20", num_classes=10, shortcut="B")
        >>> model.depth, model.shortcut
        (20, 'B')
    """
    spec = model_spec(name)
    check_int(f"create_model({name!r})", "num_classes", num_classes)
    fields = {f.name for f in dataclasses.fields(spec.module) if f.name not in ("parent", "name")}
    allowed = sorted(fields - spec.fixed - {"num_classes"})
    bad = sorted(set(overrides) - set(allowed))
    if bad:
        pinned = [b for b in bad if b in spec.fixed]
        reason = f" ({', '.join(pinned)} is fixed by the name)" if pinned else ""
        raise ValueError(
            f"create_model({name!r}): unsupported override(s) {bad}{reason}; "
            f"allowed overrides: {allowed}"
        )
    kwargs = {**spec.defaults, **overrides}
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    return spec.module(num_classes=num_classes, **kwargs)


def _check_input_shape(input_shape: Any) -> tuple[int, ...]:
    if isinstance(input_shape, int | np.integer) or not isinstance(input_shape, Sequence):
        raise TypeError(
            f"input_shape must be a tuple of ints (one example, without the batch axis), "
            f"got {input_shape!r}"
        )
    shape = tuple(input_shape)
    if len(shape) == 0:
        raise ValueError("input_shape must have at least one axis (batch axis excluded)")
    for i, d in enumerate(shape):
        check_int("init_variables", f"input_shape[{i}]", d)
    return tuple(int(d) for d in shape)


def init_variables(model: nn.Module, rng: Any, input_shape: Sequence[int]) -> dict[str, Any]:
    """Initialises a model's variables deterministically: THE initialisation of every run.

    ``model.init(key, zeros((1, *input_shape)), train=False)`` under ``jax.jit`` (one
    compilation, cached per model and shape; op-by-op initialisation compiles every initialiser
    shape separately). An int seed means ``jax.random.key(seed, impl="rbg")``, the key
    :func:`sdcomplex.train.train` initialises a run of that ``seed`` with (the threefry
    generator compiles slowly on a CPU), so ``init_variables(model, seed, shape)`` is the
    run's epoch-0 checkpoint and its NTK the kernel of ``sdcomplex ntk RUN@init``.

    Args:
        model: a module from :func:`create_model` (or any zoo module).
        rng: an int seed (see above) or a JAX PRNG key (``jax.random.key`` or
            ``jax.random.PRNGKey``), used as given.
        input_shape: the shape of ONE example, without the batch axis, e.g. ``(32, 32, 3)``
            for CIFAR or ``(40,)`` for MNIST-1D. (Parameter shapes do not depend on the batch.)

    Returns:
        A plain dict with ``'params'`` and, for models with BatchNorm, ``'batch_stats'``
        (running mean 0 / variance 1). All leaves are float32. For a key, the values of
        ``model.init(key, jnp.zeros((1, *input_shape)), train=False)``.

    Note:
        Use :func:`abstract_variables` when only shapes are needed (no compilation).

    Example:
        >>> import jax
        >>> model = create_model("cnn", num_classes=10, channels=(4,))
        >>> variables = init_variables(model, 0, (40,))  # the init of a run with seed 0
        >>> sorted(variables)
        ['params']
        >>> key = jax.random.key(0, impl="rbg")
        >>> same = init_variables(model, key, (40,))
        >>> jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), same, variables))
        True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a flax.linen.Module, got {type(model).__name__}")
    shape = _check_input_shape(input_shape)
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool):
        rng = jax.random.key(int(rng), impl="rbg")
    try:
        hash(model)
    except TypeError:  # a module with unhashable fields (e.g. a dict): compiled for this call
        return dict(jax.jit(lambda key: _init(model, key, shape))(rng))
    return dict(_jitted_init(model, rng, shape))


def _init(model: nn.Module, key: Any, shape: tuple[int, ...]) -> Any:
    return model.init(key, jnp.zeros((1, *shape), jnp.float32), train=False)


_jitted_init = jax.jit(_init, static_argnums=(0, 2))


def abstract_variables(model: nn.Module, input_shape: Sequence[int]) -> dict[str, Any]:
    """Shapes and dtypes of :func:`init_variables` without computing anything (``eval_shape``).

    Example:
        >>> v = abstract_variables(create_model("resnet110", 10), (32, 32, 3))
        >>> count_params(v["params"])
        1727962
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a flax.linen.Module, got {type(model).__name__}")
    shape = _check_input_shape(input_shape)
    x = jax.ShapeDtypeStruct((1, *shape), jnp.float32)
    variables = jax.eval_shape(
        lambda key, x: model.init(key, x, train=False), jax.random.PRNGKey(0), x
    )
    return {k: v for k, v in variables.items()}


def count_params(params: Any) -> int:
    """Total number of scalar parameters in a pytree.

    Args:
        params: ``variables['params']`` (arrays or ``jax.ShapeDtypeStruct`` leaves). Passing
            the whole variable dict is refused, since ``batch_stats`` are not parameters.

    Returns:
        ``sum(prod(leaf.shape))`` as a Python int.

    Example:
        >>> import jax.numpy as jnp
        >>> count_params({"dense": {"kernel": jnp.zeros((3, 4)), "bias": jnp.zeros(4)}})
        16
    """
    if isinstance(params, Mapping) and ({"params", "batch_stats"} & set(params)):
        raise ValueError(
            "count_params expects variables['params'], not the whole variable dict "
            f"(got top-level keys {sorted(params)})"
        )
    total = 0
    for leaf in jax.tree_util.tree_leaves(params):
        shape = getattr(leaf, "shape", None)
        if shape is None:
            raise TypeError(f"count_params: leaf {leaf!r} is not an array")
        total += math.prod(shape)
    return int(total)
