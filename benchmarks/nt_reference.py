"""neural-tangents 0.6.5 reference timings for benchmarks/ntk_engines.py (runs in its own venv).

Runs inside the environment made by ``benchmarks/neural_tangents_env.sh`` (jax 0.4.38), never
inside sdcomplex's. It runs LeNet-5xk and the CIFAR ResNet-20 (option-A shortcuts,
inference-mode BatchNorm) written in plain JAX (benchmarks/jax_models.py, at
``Precision.HIGHEST``) on the very parameters, BatchNorm statistics and inputs that
ntk_engines.py used (an .npz of flattened Flax variables), times
``nt.empirical_ntk_fn(f, trace_axes=(-1,), vmap_axes=0, implementation=...)`` (optionally
under ``nt.batch``) and writes the kernel and the timings back. One configuration per process,
so that a configuration that runs out of memory does not take the others with it.

    python benchmarks/nt_reference.py --data in.npz --model lenet5 --implementation 1 \
        --batch-size 32 --out out.npz
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import jax
import jax.numpy as jnp
import neural_tangents as nt
import numpy as np
from jax import lax
from jax_models import lenet5, resnet


def _unflatten(arrays, prefix):
    tree = {}
    for key, value in arrays.items():
        if not key.startswith(prefix + "/"):
            continue
        node = tree
        parts = key[len(prefix) + 1 :].split("/")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = jnp.asarray(value)
    return tree


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help=".npz with params/..., batch_stats/..., x")
    parser.add_argument("--model", choices=["lenet5", "resnet20"], required=True)
    parser.add_argument("--implementation", type=int, choices=[1, 2, 3], required=True)
    parser.add_argument("--batch-size", type=int, default=0, help="nt.batch size (0: unbatched)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--repeat-below-s", type=float, default=60.0, help="repeat only calls faster than this"
    )
    parser.add_argument(
        "--no-vmap", action="store_true", help="do not pass vmap_axes=0 (examples independent)"
    )
    parser.add_argument("--out", required=True, help=".npz for the kernel and the timings")
    args = parser.parse_args()

    arrays = dict(np.load(args.data))
    params = _unflatten(arrays, "params")
    x = jnp.asarray(arrays["x"])
    highest = lax.Precision.HIGHEST
    if args.model == "lenet5":

        def apply_fn(p, inputs):
            return lenet5(p, inputs, precision=highest)
    else:
        stats = _unflatten(arrays, "batch_stats")

        def apply_fn(p, inputs):
            return resnet(p, stats, inputs, precision=highest)

    kernel_fn = nt.empirical_ntk_fn(
        apply_fn,
        trace_axes=(-1,),
        vmap_axes=None if args.no_vmap else 0,
        implementation=args.implementation,
    )
    if args.batch_size:
        kernel_fn = nt.batch(kernel_fn, batch_size=args.batch_size, device_count=0)
    else:
        kernel_fn = jax.jit(kernel_fn)

    times = []
    kernel = None
    for _ in range(args.repeats + 1):
        start = time.perf_counter()
        kernel = np.asarray(jax.block_until_ready(kernel_fn(x, None, params)))
        times.append(time.perf_counter() - start)
        if times[0] > args.repeat_below_s:  # compilation is a small share of a long run
            break
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = {
        "first_s": times[0],
        "best_s": min(times[1:]) if len(times) > 1 else times[0],
        "timed_calls": len(times),
        "peak_rss_bytes": peak,
        "jax": jax.__version__,
        "neural_tangents": getattr(nt, "__version__", "0.6.5"),
        "vmap_axes": None if args.no_vmap else 0,
        "num_params": int(sum(np.size(v) for v in jax.tree.leaves(params))),
    }
    tmp = args.out + ".tmp.npz"
    np.savez(tmp, kernel=kernel, result=json.dumps(result))
    os.replace(tmp, args.out)
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
