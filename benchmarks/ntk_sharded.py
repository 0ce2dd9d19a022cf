"""Benchmark of `empirical_ntk(..., mesh=...)`: overhead on one device, memory per device.

(a) Overhead: the mean NTK (C = 10) of LeNet-5x8 on n random 32x32x3 inputs (default 128) on
    this machine's one CPU device, by today's one-device path and by the mesh code path on a
    one-device mesh (per-device features by ``shard_map``, the ring contraction, placement and
    gathers; `sdcomplex.ntk._api.run_plan` with ``force_mesh``), same plan, alternating rounds
    (the order flips every round), after one warm-up each. Wall and process CPU time.
(b) Memory: per-device memory of the block-pair programs of the n = 4096 mean Gram at the
    planned block size (``--memory-budget`` per device), on one device and on 4 simulated CPU
    devices (a subprocess with ``--xla_force_host_platform_device_count=4``), read from XLA's
    memory analysis of the compiled programs (arguments + outputs + temporaries - aliased, per
    device); the kernel itself is not computed.

Simulated CPU devices share the machine's cores: no speed-up is claimed.

    python benchmarks/ntk_sharded.py                   # both parts
    python benchmarks/ntk_sharded.py --rounds 3 --n 64 # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from sdcomplex.models import create_model, init_variables
from sdcomplex.ntk import flax_ntk_fn, plan_ntk
from sdcomplex.ntk._api import _contract, _features, run_plan
from sdcomplex.ntk._engine import partition_callable
from sdcomplex.ntk._sharded import ShardedBlocks, sharded_contract, sharded_features
from sdcomplex.placement import make_placement

SHAPE = (32, 32, 3)
NUM_CLASSES = 10
ROOT = Path(__file__).resolve().parents[1]


def lenet(n: int, seed: int = 0) -> tuple:
    model = create_model("lenet5x8", num_classes=NUM_CLASSES)
    variables = init_variables(model, jax.random.key(0), SHAPE)
    fn, params = flax_ntk_fn(model, variables)
    x = np.random.default_rng(seed).normal(size=(n, *SHAPE)).astype(np.float32)
    return fn, params, x


def overhead(n: int, rounds: int) -> dict:
    """(a): today's path against the mesh path on a one-device mesh, alternating."""
    fn, params, x = lenet(n)
    plan = plan_ntk(fn, params, x, outputs="mean")
    placement = make_placement(num_devices=1)

    def run(force: bool) -> tuple[np.ndarray, float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        k = run_plan(
            plan, fn, params, x, None, progress=False, placement=placement, force_mesh=force
        )
        return k, time.perf_counter() - wall, time.process_time() - cpu

    ref, _, _ = run(False)  # warm-up (compilation) of both
    mesh_k, _, _ = run(True)
    times: dict[str, list[tuple[float, float]]] = {"today": [], "mesh": []}
    for r in range(rounds):
        order = (False, True) if r % 2 == 0 else (True, False)
        for force in order:
            _, wall, cpu = run(force)
            times["mesh" if force else "today"].append((wall, cpu))
    med = {
        k: (float(np.median([t[0] for t in v])), float(np.median([t[1] for t in v])))
        for k, v in times.items()
    }
    return {
        "n": n,
        "implementation": plan.implementation,
        "block_size": plan.block_size,
        "rounds": rounds,
        "times": times,
        "median_wall_s": {k: v[0] for k, v in med.items()},
        "median_cpu_s": {k: v[1] for k, v in med.items()},
        "overhead_wall": med["mesh"][0] / med["today"][0] - 1,
        "overhead_cpu": med["mesh"][1] / med["today"][1] - 1,
        "max_abs_diff": float(np.max(np.abs(mesh_k - ref))),
        "bit_identical": bool(np.array_equal(mesh_k, ref)),
    }


def _memory(compiled: jax.stages.Compiled) -> dict:
    m = compiled.memory_analysis()
    if isinstance(m, list | tuple):
        m = m[0]
    parts = {
        "arguments": int(m.argument_size_in_bytes),
        "outputs": int(m.output_size_in_bytes),
        "temporaries": int(m.temp_size_in_bytes),
        "aliased": int(m.alias_size_in_bytes),
    }
    parts["peak"] = parts["arguments"] + parts["outputs"] + parts["temporaries"] - parts["aliased"]
    return parts


def memory(n: int, budget: float) -> dict:
    """(b), in this process's devices: per-device memory of one block pair's programs."""
    fn, params, x = lenet(n)
    plan = plan_ntk(fn, params, x, outputs="mean", memory_budget=budget)
    impl, spec = plan.prepared, plan.size.spec
    dynamic, static = partition_callable(fn)
    part = jnp.asarray(0, jnp.int32)
    placement = make_placement()
    d_count = placement.num_devices
    if d_count == 1:
        block = plan.block_size
        xs = jax.ShapeDtypeStruct((block, *SHAPE), jnp.float32)
        feats = _features.lower(impl, static, spec, dynamic, params, xs, part).compile()
        f = jax.eval_shape(lambda xb: _features(impl, static, spec, dynamic, params, xb, part), xs)
        contract = _contract.lower(impl, static, spec, dynamic, params, f, f, part).compile()
    else:
        blocks = ShardedBlocks.plan(placement, plan.block_size, n)
        block = blocks.block
        dynamic, params = placement.replicate((dynamic, params))
        xs = jax.ShapeDtypeStruct(
            (block, *SHAPE), jnp.float32, sharding=placement.batch_sharding(1 + len(SHAPE))
        )
        args = (impl, static, spec, placement, dynamic, params)
        feats = sharded_features.lower(*args, xs, part).compile()
        f = jax.eval_shape(lambda xb: sharded_features(*args, xb, part), xs)
        f = jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(
                s.shape, s.dtype, sharding=placement.batch_sharding(len(s.shape))
            ),
            f,
        )
        contract = sharded_contract.lower(*args, f, f, part).compile()
    return {
        "devices": d_count,
        "n": n,
        "memory_budget": budget,
        "planned_block_per_device": plan.block_size,
        "block_all_devices": block,
        "implementation": plan.implementation,
        "features": _memory(feats),
        "contract": _memory(contract),
    }


def memory_in_subprocess(devices: int, n: int, budget: float) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    cmd = [
        sys.executable,
        __file__,
        "--memory-only",
        "--n-memory",
        str(n),
        "--memory-budget",
        str(budget),
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=128, help="examples for (a)")
    ap.add_argument("--rounds", type=int, default=6, help="alternating rounds for (a)")
    ap.add_argument("--n-memory", type=int, default=4096, help="examples for (b)")
    ap.add_argument(
        "--memory-budget",
        type=float,
        default=float(1024**3),
        help="per-device budget in bytes for (b) (default 1 GiB)",
    )
    ap.add_argument("--memory-only", action="store_true", help="(b) on this process's devices")
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON here")
    args = ap.parse_args()
    if args.memory_only:
        print(json.dumps(memory(args.n_memory, args.memory_budget)))
        return
    result = {"jax": jax.__version__, "cores": os.cpu_count()}
    if not args.skip_overhead:
        result["overhead"] = overhead(args.n, args.rounds)
        print(json.dumps(result["overhead"], indent=1), flush=True)
    result["memory"] = [memory_in_subprocess(d, args.n_memory, args.memory_budget) for d in (1, 4)]
    print(json.dumps(result["memory"], indent=1), flush=True)
    if args.out is not None:
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp.write_text(json.dumps(result, indent=1))
        os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
