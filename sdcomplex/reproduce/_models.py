"""Models, inputs, logits and kernels of trained runs, as the analysis stages need them."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from sdcomplex.data import Dataset, normalised_arrays
from sdcomplex.models import init_variables
from sdcomplex.ntk import empirical_ntk, flax_ntk_fn
from sdcomplex.train import (
    TrainConfig,
    batched_apply,
    build_model,
    list_checkpoints,
    load_checkpoint,
)

__all__ = ["build_model"]  # the trainer's, re-exported for the analysis stages


def model_inputs(dataset: Dataset, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(x_train, x_test)``: float32 inputs normalised exactly as in training."""
    arrays = normalised_arrays(dataset, normalise=config.normalise)
    return arrays.x_train, arrays.x_test


def initial_student(model: nn.Module, seed: int, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """Variables of a fresh model, initialised exactly as :func:`sdcomplex.train.train` does."""
    return init_variables(model, seed, tuple(input_shape))


def logits_fn(model: nn.Module, batch_size: int = 1000) -> Callable[[Any, np.ndarray], np.ndarray]:
    """``predict(variables, x) -> float64 logits (n, C)`` in inference mode, in fixed-size batches
    (the last one padded, so one compilation serves every input size)."""

    @jax.jit
    def apply(variables: Any, xb: jax.Array) -> jax.Array:
        return model.apply(variables, xb, train=False)  # type: ignore[return-value]

    def predict(variables: Any, x: np.ndarray) -> np.ndarray:
        return batched_apply(apply, variables, x, min(batch_size, len(x))).astype(np.float64)

    return predict


def kernel(
    model: nn.Module,
    variables: Any,
    x1: np.ndarray,
    x2: np.ndarray | None = None,
    *,
    outputs: str = "mean",
    implementation: str = "auto",
) -> np.ndarray:
    """The empirical NTK of ``model`` at ``variables`` (BatchNorm in inference mode), float64."""
    fn, params = flax_ntk_fn(model, variables)
    k = empirical_ntk(fn, params, x1, x2, outputs=outputs, implementation=implementation)
    return np.asarray(k, np.float64)


def trajectory(run_dir: str | os.PathLike[str], stride: int = 1) -> list[int]:
    """Checkpoint epochs of a run used for sweeps: every ``stride``-th of the epochs >= 1 that
    have a checkpoint, and always the last.

    Raises:
        ValueError: the run has no checkpoint after epoch 0.
    """
    epochs = [e for e in list_checkpoints(run_dir) if e >= 1]
    if not epochs:
        raise ValueError(f"{run_dir} has no trained checkpoint")
    chosen = [e for e in epochs if e % stride == 0]
    if not chosen or chosen[-1] != epochs[-1]:
        chosen.append(epochs[-1])
    return chosen


def checkpoint_logits(
    run_dir: str | os.PathLike[str],
    model: nn.Module,
    epochs: list[int],
    inputs: dict[str, np.ndarray],
) -> dict[int, dict[str, np.ndarray]]:
    """``{epoch: {name: logits}}`` of a run's checkpoints on named input arrays."""
    predict = logits_fn(model)
    out: dict[int, dict[str, np.ndarray]] = {}
    for epoch in epochs:
        variables = load_checkpoint(run_dir, epoch)
        out[epoch] = {name: predict(variables, x) for name, x in inputs.items()}
    return out
