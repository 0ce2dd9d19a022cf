"""Structured NTK with convolution patches from strided slices vs ``conv_general_dilated_patches``.

The library builds the patches of a convolution's input (for the per-example weight gradients)
from strided slices of the padded input. This script times the mean NTK (C = 10, the library's
default memory budget) with that construction and with the former one,
``lax.conv_general_dilated_patches`` (an identity-kernel convolution), substituted back in. Each
variant runs in its own process (the jit caches must not mix), and the two alternate.

    python benchmarks/ntk_patches_ab.py              # about 3 min per round
    python benchmarks/ntk_patches_ab.py --rounds 2
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = (("lenet5x8", 64), ("lenet5x8", 128), ("resnet20", 64), ("resnet20", 128))


def child(variant: str) -> None:
    import sdcomplex.ntk._layers as layers

    sys.path.insert(0, str(HERE))
    import ntk_engines  # the engine benchmark's models, data and timing

    from sdcomplex.ntk import flax_ntk_fn

    if variant == "dilated-patches":
        layers.conv_patches = layers._dilated_patches  # the former construction, for any conv
    for name, n in CASES:
        model, variables, x = ntk_engines.model_and_data(name, n)
        fn, params = flax_ntk_fn(model, variables)
        r = ntk_engines.time_ours(fn, params, x, "auto", 2, None)
        print(f"{variant:16s} {name:9s} n={n:4d} best {r['best_s']:6.2f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--child", choices=["slices", "dilated-patches"])
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    print(time.strftime("%Y-%m-%d %H:%M %Z"), flush=True)
    for r in range(args.rounds):
        order = ("dilated-patches", "slices") if r % 2 == 0 else ("slices", "dilated-patches")
        for variant in order:
            subprocess.run([sys.executable, __file__, "--child", variant], check=True)


if __name__ == "__main__":
    main()
