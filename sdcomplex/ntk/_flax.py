"""Adapter from Flax (linen) models to pure NTK functions ``fn(params, x) -> logits``."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
from flax import traverse_util

ParamPath = tuple[str, ...]


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True, eq=False)
class FlaxNTKFunction:
    """``fn(params, x)`` for a Flax module in inference mode, differentiable in chosen params.

    Attributes:
      module: the linen module.
      frozen: every variable collection (BatchNorm ``batch_stats`` included) with the parameters
        that are *not* differentiated; held as arrays, so new statistics do not recompile.
      trainable_paths: paths (tuples of names) of the parameters in ``params``.
      apply_kwargs: keyword arguments of ``module.apply`` (e.g. ``(("train", False),)``).
    """

    module: nn.Module
    frozen: Mapping[str, Any]
    trainable_paths: tuple[ParamPath, ...]
    apply_kwargs: tuple[tuple[str, Any], ...]

    def __call__(self, params: Any, x: jax.Array) -> jax.Array:
        flat = dict(traverse_util.flatten_dict(self.frozen.get("params", {})))
        flat.update(traverse_util.flatten_dict(params))
        variables = {k: v for k, v in self.frozen.items() if k != "params"}
        variables["params"] = traverse_util.unflatten_dict(flat)
        return self.module.apply(variables, x, **dict(self.apply_kwargs))  # type: ignore[return-value]

    def tree_flatten(self) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        return (self.frozen,), (self.module, self.trainable_paths, self.apply_kwargs)

    @classmethod
    def tree_unflatten(cls, aux: tuple[Any, ...], children: tuple[Any, ...]) -> FlaxNTKFunction:
        return cls(aux[0], children[0], aux[1], aux[2])


def _default_apply_kwargs(module: nn.Module) -> dict[str, Any]:
    try:
        names = inspect.signature(module.__call__).parameters
    except (TypeError, ValueError):
        return {}
    if "train" in names:
        return {"train": False}
    if "deterministic" in names:
        return {"deterministic": True}
    if "use_running_average" in names:
        return {"use_running_average": True}
    return {}


def flax_ntk_fn(
    module: nn.Module,
    variables: Mapping[str, Any],
    *,
    param_filter: Callable[[ParamPath], bool] | None = None,
    apply_kwargs: Mapping[str, Any] | None = None,
) -> tuple[FlaxNTKFunction, dict[str, Any]]:
    """Pure ``(fn, params)`` for the empirical NTK of a Flax linen model.

    The model runs in inference mode: by default ``train=False`` is passed when ``__call__`` takes
    a ``train`` argument (``deterministic=True`` when it takes ``deterministic``), so BatchNorm
    uses its running statistics and dropout is off. Only parameters (the ``"params"``
    collection) are differentiated; BatchNorm statistics and other collections are held fixed.

    Args:
      module: a ``flax.linen.Module`` whose ``apply`` returns logits of shape (batch, C).
      variables: its variables, e.g. from ``module.init`` (must hold ``"params"``).
      param_filter: optional predicate on parameter paths (tuples of names, e.g.
        ``("Dense_2", "kernel")``); only parameters for which it is true are differentiated.
        ``lambda path: path[0] == "Dense_2"`` restricts the NTK to the last layer of a model
        whose last layer is ``Dense_2``.
      apply_kwargs: overrides the keyword arguments passed to ``module.apply``.

    Returns:
      ``(fn, params)``: ``fn(params, x)`` gives the logits; ``params`` is the nested dict of the
      selected parameters. Pass both to `empirical_ntk`.

    Raises:
      ValueError: if ``variables`` has no ``"params"`` or the filter selects no parameter.
      TypeError: if ``module`` is not a linen module.

    Example:
      >>> import flax.linen as nn, jax, jax.numpy as jnp
      >>> model = nn.Dense(3)
      >>> variables = model.init(jax.random.key(0), jnp.ones((1, 4)))
      >>> fn, params = flax_ntk_fn(model, variables)
      >>> fn(params, jnp.ones((2, 4))).shape
      (2, 3)
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a flax.linen.Module, got {type(module).__name__}")
    if not isinstance(variables, Mapping) or "params" not in variables:
        raise ValueError("variables must be a mapping with a 'params' collection")
    flat = traverse_util.flatten_dict(variables["params"])
    flat = {tuple(str(k) for k in path): leaf for path, leaf in flat.items()}
    chosen = {p: v for p, v in flat.items() if param_filter is None or param_filter(p)}
    if not chosen:
        raise ValueError(f"param_filter selected no parameter; paths are e.g. {next(iter(flat))}")
    rest = {p: v for p, v in flat.items() if p not in chosen}
    frozen = {k: v for k, v in variables.items() if k != "params"}
    frozen["params"] = traverse_util.unflatten_dict(rest) if rest else {}
    kwargs = _default_apply_kwargs(module) if apply_kwargs is None else dict(apply_kwargs)
    fn = FlaxNTKFunction(
        module=module,
        frozen=frozen,
        trainable_paths=tuple(sorted(chosen)),
        apply_kwargs=tuple(sorted(kwargs.items())),
    )
    return fn, traverse_util.unflatten_dict(chosen)
