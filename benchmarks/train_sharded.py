"""The cost of the sharded training path on one device: one epoch of steps, side by side.

"plain" is the trainer's loop as it was before data parallelism: NumPy batches, the step key
and the state passed as they are to ``make_train_step(...)``. "sharded" is the loop of
``sdcomplex.train`` now: a one-device ``Placement`` (``make_placement(num_devices=1)``), each
batch placed with ``put_step_batch`` (sharded over the data axis), the state replicated, the
step compiled with ``placement=`` (replicated outputs). Both train the same model from the
same initialisation on the same batches (and end with the same parameters, bit for bit:
checked). The rounds
alternate plain / sharded so that a busy machine slows both alike; the table gives the median
seconds per epoch over rounds, the best, and the overhead of the median.

Models (``--model``): ``teacher`` is the quick reproduction's teacher (1-D CNN, channels 32
and 64, dense 128, on MNIST-1D: 4,000 examples, batch 128, 31 steps per epoch); ``student``
its MLP student (hidden 32); ``lenet5x8`` LeNet-5x8 on 2,048 random CIFAR-shaped uint8 images
with crops and flips (batch 128, 16 steps).

    python benchmarks/train_sharded.py --model teacher --rounds 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sdcomplex.data import EpochBatcher
from sdcomplex.models import init_variables
from sdcomplex.placement import make_placement
from sdcomplex.train import (
    TrainConfig,
    build_model,
    init_train_state,
    make_optimizer,
    make_preprocess,
    make_train_step,
    setup_run,
)
from sdcomplex.train._step import run_preprocess


def _setup(name: str) -> tuple[TrainConfig, Any, np.ndarray, np.ndarray, tuple, Any]:
    """The config, model, training arrays, input shape and preprocessing of a benchmark."""
    if name in ("teacher", "student"):
        from sdcomplex.reproduce import load_experiment

        experiment = load_experiment("all", "quick")
        config = experiment.teacher if name == "teacher" else experiment.student
        setup = setup_run(config)
        ds = setup.dataset
        pre, _ = run_preprocess(config, ds.info)
        return config, setup.model, ds.x_train, ds.y_train, ds.info.input_shape, pre
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(2048, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, size=2048).astype(np.int32)
    config = TrainConfig(model="lenet5x8", batch_size=128, augment=True, epochs=10)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    pre = make_preprocess(mean=mean, std=std, pixel_max=255.0, augment=True)
    return config, build_model(config, 10), x, y, (32, 32, 3), pre


def _epoch(step, state, x, y, batcher, epoch, placement) -> tuple[Any, float]:
    """One epoch as the trainer runs it (one step in flight); returns the state and seconds."""
    running = jnp.zeros(3, jnp.float32)
    if placement is not None:
        running = placement.replicate(running)
    size = batcher.batch_size
    rows = None if placement is None else placement.local_rows(size)
    t0 = time.perf_counter()
    previous = None
    for b, local in enumerate(batcher.batches(epoch, x, y, rows=rows)):
        key = batcher.step_key(epoch, b)
        if placement is None:
            xb, yb = local
        else:
            xb, yb = placement.put_step_batch(local, global_size=size)
            key = placement.replicate_key(key)
        state, running, loss = step(state, running, xb, yb, key, None)
        if previous is not None:
            float(previous)  # the trainer checks the previous step's loss
        previous = loss
    float(previous)
    jax.block_until_ready(state)
    return state, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("teacher", "student", "lenet5x8"), default="teacher")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    config, model, x, y, shape, pre = _setup(args.model)
    batcher = EpochBatcher(len(y), config.batch_size, seed=config.seed)
    tx, _ = make_optimizer(config, batcher.batches_per_epoch)
    variables = init_variables(model, config.seed, shape)
    placement = make_placement(num_devices=1)
    paths = {
        "plain": (make_train_step(model, tx, pre), None),
        "sharded": (make_train_step(model, tx, pre, placement=placement), placement),
    }
    states = {}
    for name, (step, where) in paths.items():  # compile; epoch 1 from the same init
        state = init_train_state(jax.tree.map(jnp.copy, variables), tx)  # (donated)
        if where is not None:
            state = where.replicate(state)
        states[name], _ = _epoch(step, state, x, y, batcher, 1, where)
    same = all(
        np.array_equal(a, b)
        for a, b in zip(
            jax.tree.leaves(states["plain"]), jax.tree.leaves(states["sharded"]), strict=True
        )
    )
    times: dict[str, list[float]] = {name: [] for name in paths}
    for r in range(args.rounds):
        order = list(paths) if r % 2 == 0 else list(reversed(paths))
        for name in order:
            step, where = paths[name]
            states[name], seconds = _epoch(step, states[name], x, y, batcher, 2 + r, where)
            times[name].append(seconds)
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"{args.model}: {batcher.batches_per_epoch} steps of {config.batch_size} per epoch, "
          f"{args.rounds} alternating rounds, same parameters after epoch 1: {same}")  # fmt: skip
    print("| path | median s/epoch | best s/epoch |")
    print("|---|---|---|")
    for name, t in times.items():
        print(f"| {name} | {med[name]:.4f} | {min(t):.4f} |")
    overhead = 100 * (med["sharded"] / med["plain"] - 1)
    print(f"overhead of the sharded path (medians): {overhead:+.1f} %")
    print(json.dumps({"model": args.model, "same_parameters": same, "seconds": times}))


if __name__ == "__main__":
    main()
