"""neural-tangents 0.6.5 reference timings for benchmarks/ntk_engines.py (runs in its own venv).

Runs inside the environment made by ``benchmarks/neural_tangents_env.sh`` (jax 0.4.38), never
inside sdcomplex's. It re-implements LeNet-5xk and the CIFAR ResNet-20 (option-A shortcuts,
inference-mode BatchNorm) in plain JAX, loads the very parameters, BatchNorm statistics and
inputs that ntk_engines.py used (an .npz of flattened Flax variables), times
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


def _conv(x, kernel, strides=(1, 1), padding="VALID"):
    return lax.conv_general_dilated(
        x,
        kernel,
        strides,
        padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=lax.Precision.HIGHEST,
    )


def _dense(x, p):
    return jnp.dot(x, p["kernel"], precision=lax.Precision.HIGHEST) + p["bias"]


def _max_pool(x):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def lenet5(params, x):
    """LeNet-5xk as sdcomplex.models.LeNet5 (VALID convolutions, biases everywhere)."""
    x = _conv(x, params["conv1"]["kernel"]) + params["conv1"]["bias"]
    x = _max_pool(jax.nn.relu(x))
    x = _conv(x, params["conv2"]["kernel"]) + params["conv2"]["bias"]
    x = _max_pool(jax.nn.relu(x))
    x = x.reshape(x.shape[0], -1)
    x = jax.nn.relu(_dense(x, params["fc1"]))
    x = jax.nn.relu(_dense(x, params["fc2"]))
    return _dense(x, params["logits"])


def _batch_norm(x, p, stats, epsilon=1e-5):
    return (x - stats["mean"]) * lax.rsqrt(stats["var"] + epsilon) * p["scale"] + p["bias"]


def resnet(params, stats, x, blocks_per_stage=3, width=16):
    """CIFAR ResNet-(6m+2) as sdcomplex.models.CifarResNet (option A, inference BatchNorm)."""
    same = ((1, 1), (1, 1))
    x = _conv(x, params["stem_conv"]["kernel"], padding=same)
    x = jax.nn.relu(_batch_norm(x, params["stem_bn"], stats["stem_bn"]))
    for stage in range(3):
        for block in range(blocks_per_stage):
            name = f"stage{stage + 1}_block{block + 1}"
            p, s = params[name], stats[name]
            features = width * 2**stage
            stride = 2 if (stage > 0 and block == 0) else 1
            y = _conv(x, p["conv1"]["kernel"], (stride, stride), same)
            y = jax.nn.relu(_batch_norm(y, p["bn1"], s["bn1"]))
            y = _conv(y, p["conv2"]["kernel"], padding=same)
            y = _batch_norm(y, p["bn2"], s["bn2"])
            shortcut = x
            if stride != 1 or x.shape[-1] != features:
                shortcut = x[:, ::stride, ::stride, :]
                extra = features - x.shape[-1]
                shortcut = jnp.pad(
                    shortcut, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2))
                )
            x = jax.nn.relu(y + shortcut)
    x = jnp.mean(x, axis=(1, 2))
    return _dense(x, params["logits"])


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
    if args.model == "lenet5":
        apply_fn = lenet5
    else:
        stats = _unflatten(arrays, "batch_stats")

        def apply_fn(p, inputs):
            return resnet(p, stats, inputs)

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
