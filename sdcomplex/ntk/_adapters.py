"""`ntk_fn`: any model (Flax linen, Flax NNX, Equinox) to a pure ``(fn, params)`` for the NTK.

One function for the three model kinds, with one parameter filter:

* linen: ``ntk_fn(module, variables)`` (delegates to `flax_ntk_fn`; ``train=False`` etc.);
* NNX: ``ntk_fn(model)``: ``nnx.view(model, deterministic=True, use_running_average=True)``
  (Dropout off, BatchNorm on its running statistics), then ``nnx.split``; ``fn`` merges the
  graph with the selected ``nnx.Param`` values and every other variable held fixed;
* Equinox: ``ntk_fn(model)`` or ``ntk_fn(model, state)`` for models made with
  ``eqx.nn.make_with_state``: ``eqx.nn.inference_mode(model)``, then
  ``eqx.partition(model, eqx.is_inexact_array)``; the model is called per example under
  ``jax.vmap`` (the Equinox convention), as ``model(x)`` or ``model(x, state)[0]``.

The filter sees every parameter's path as a tuple of strings: ``("Dense_2", "kernel")`` (linen),
``("layers", "2", "kernel")`` (NNX), ``("layers", "2", "weight")`` (Equinox). A string is a
regular expression searched in the ``/``-joined path (``"^Dense_2/"``: the last layer only of a
linen model whose last layer is ``Dense_2``); a callable gets the tuple and returns a bool.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
from flax import nnx, traverse_util

from sdcomplex.ntk._flax import flax_ntk_fn

ParamPath = tuple[str, ...]
ParamFilter = str | Callable[[ParamPath], bool] | None


def _predicate(param_filter: ParamFilter) -> Callable[[ParamPath], bool]:
    """The filter as a predicate on string paths (None: every parameter)."""
    if param_filter is None:
        return lambda path: True
    if isinstance(param_filter, str):
        try:
            pattern = re.compile(param_filter)
        except re.error as err:
            raise ValueError(f"param_filter {param_filter!r} is not a valid regex: {err}") from None
        return lambda path: pattern.search("/".join(path)) is not None
    if callable(param_filter):
        return lambda path: bool(param_filter(path))
    raise TypeError(
        f"param_filter must be a regex string, a callable on paths or None, "
        f"got {type(param_filter).__name__}"
    )


def _key_name(key: Any) -> str:
    """One entry of a JAX key path (or an NNX path) as a string."""
    for attr in ("name", "key", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _nothing_selected(paths: list[ParamPath]) -> ValueError:
    example = "/".join(paths[0]) if paths else "none"
    return ValueError(f"param_filter selected no parameter; paths are e.g. {example!r}")


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True, eq=False)
class NNXNTKFunction:
    """``fn(params, x)`` of an NNX model in evaluation mode.

    Attributes:
      graphdef: the model's ``nnx.GraphDef`` (static: structure and evaluation flags).
      frozen: the ``nnx.State`` of every variable not differentiated (unselected parameters,
        BatchNorm statistics, RNG state), held as arrays.
    """

    graphdef: Any
    frozen: Any

    def __call__(self, params: Any, x: jax.Array) -> jax.Array:
        model = nnx.merge(self.graphdef, params, self.frozen)
        return model(x)

    def tree_flatten(self) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        return (self.frozen,), (self.graphdef,)

    @classmethod
    def tree_unflatten(cls, aux: tuple[Any, ...], children: tuple[Any, ...]) -> NNXNTKFunction:
        return cls(aux[0], children[0])


def _nnx_eval(model: nnx.Module) -> nnx.Module:
    """A view of ``model`` with Dropout deterministic and BatchNorm on running statistics."""
    flags = {"deterministic": True, "use_running_average": True}
    if hasattr(nnx, "view"):
        return nnx.view(model, raise_if_not_found=False, **flags)
    graphdef, state = nnx.split(model)  # flax < 0.12: evaluate a copy, leave the model as it is
    copy = nnx.merge(graphdef, state)
    copy.eval()
    return copy


def _nnx_fn(model: nnx.Module, keep: Callable[[ParamPath], bool]) -> tuple[NNXNTKFunction, Any]:
    model = _nnx_eval(model)
    paths: list[ParamPath] = []

    def selected(path: tuple[Any, ...], value: Any) -> bool:
        if not isinstance(value, nnx.Param):
            return False
        names = tuple(_key_name(k) for k in path)
        paths.append(names)
        return keep(names)

    graphdef, *states = nnx.split(model, selected, ...)
    params, frozen = states
    if not jax.tree.leaves(params):
        raise _nothing_selected(paths)
    return NNXNTKFunction(graphdef, frozen), params


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True, eq=False)
class EquinoxNTKFunction:
    """``fn(params, x)`` of an Equinox model in inference mode, vmapped over the batch.

    Attributes:
      frozen: the model with the differentiated leaves replaced by None (everything else,
        arrays and static fields, as in the model).
      state: the ``eqx.nn.State`` of a stateful model (BatchNorm statistics), or None.
    """

    frozen: Any
    state: Any

    def __call__(self, params: Any, x: jax.Array) -> jax.Array:
        import equinox as eqx

        model = eqx.combine(params, self.frozen)
        if self.state is None:
            return jax.vmap(model)(x)
        return jax.vmap(lambda xi: model(xi, self.state)[0])(x)

    def tree_flatten(self) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        return (self.frozen, self.state), ()

    @classmethod
    def tree_unflatten(cls, aux: tuple[Any, ...], children: tuple[Any, ...]) -> EquinoxNTKFunction:
        return cls(children[0], children[1])


def _equinox_fn(model: Any, state: Any, keep: Callable[[ParamPath], bool]):
    import equinox as eqx

    model = eqx.nn.inference_mode(model)
    arrays, static = eqx.partition(model, eqx.is_inexact_array)
    leaves = jax.tree_util.tree_flatten_with_path(arrays)[0]
    paths = [tuple(_key_name(k) for k in path) for path, _ in leaves]
    chosen = {path for path in paths if keep(path)}
    if not chosen:
        raise _nothing_selected(paths)

    def pick(select: bool) -> Any:
        def leaf(path: Any, value: Any) -> Any:
            return value if (tuple(_key_name(k) for k in path) in chosen) == select else None

        return jax.tree_util.tree_map_with_path(leaf, arrays)

    frozen = eqx.combine(pick(False), static)
    return EquinoxNTKFunction(frozen, state), pick(True)


def _is_equinox(model: Any) -> bool:
    try:
        import equinox as eqx
    except ImportError:
        return False
    return isinstance(model, eqx.Module)


def ntk_fn(
    model: Any,
    variables: Any = None,
    *,
    param_filter: ParamFilter = None,
) -> tuple[Callable[[Any, jax.Array], jax.Array], Any]:
    """Pure ``(fn, params)`` of a model in inference mode, for `empirical_ntk`.

    ``fn(params, x)`` returns the (batch, C) logits; ``params`` holds only the parameters the
    kernel differentiates (those ``param_filter`` selects); everything else (BatchNorm
    statistics, unselected parameters, RNG state) is held fixed inside ``fn`` as arrays, so
    new values of them reuse the compiled kernel. Examples never interact: BatchNorm uses its
    running statistics and dropout is off.

    Args:
      model: a ``flax.linen.Module``, a ``flax.nnx.Module`` or an ``equinox.Module`` (called
        per example, ``model(x_i)`` or ``model(x_i, state)``, and vmapped over the batch).
      variables: linen: the variables (``{"params": ..., "batch_stats": ...}``), required;
        Equinox: the ``eqx.nn.State`` of a stateful model, or None; NNX: must be None (the
        module holds its state).
      param_filter: which parameters to differentiate: None (all), a regular expression
        searched in the ``/``-joined path (e.g. ``"^Dense_2/"``), or a callable on the path
        tuple of strings (e.g. ``lambda path: path[0] == "Dense_2"``).

    Returns:
      ``(fn, params)``; pass both to `empirical_ntk`. For linen ``params`` is the nested dict
      of `flax_ntk_fn`; for NNX an ``nnx.State`` of the selected ``nnx.Param`` values; for
      Equinox the model's pytree with only the selected arrays (None elsewhere).

    Raises:
      TypeError: not one of the three model kinds, a linen module without variables, NNX with
        variables, or a bad ``param_filter``.
      ValueError: the filter selects no parameter (or linen variables without ``"params"``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> model = nnx.Linear(4, 3, rngs=nnx.Rngs(0))
      >>> fn, params = ntk_fn(model, param_filter="kernel")
      >>> fn(params, jnp.ones((2, 4))).shape
      (2, 3)
    """
    keep = _predicate(param_filter)
    if isinstance(model, nn.Module):
        if variables is None:
            raise TypeError("a linen module needs its variables: ntk_fn(module, variables)")
        if not isinstance(variables, Mapping):
            raise TypeError(f"linen variables must be a mapping, got {type(variables).__name__}")
        if "params" in variables:  # (flax_ntk_fn reports a missing "params" collection)
            flat = traverse_util.flatten_dict(variables["params"])
            paths = [tuple(str(k) for k in path) for path in flat]
            if not any(keep(path) for path in paths):
                raise _nothing_selected(paths)
        return flax_ntk_fn(model, variables, param_filter=keep)
    if isinstance(model, nnx.Module):
        if variables is not None:
            raise TypeError("an NNX module holds its own state: call ntk_fn(model) alone")
        return _nnx_fn(model, keep)
    if _is_equinox(model):
        return _equinox_fn(model, variables, keep)
    raise TypeError(
        "model must be a flax.linen.Module (with variables), a flax.nnx.Module or an "
        f"equinox.Module, got {type(model).__name__}"
    )
