"""Training throughput (images/s) of the JAX trainer's step vs the same models in PyTorch (CPU).

LeNet-5x8 and ResNet-20 (option-A shortcuts) at CIFAR shapes (32x32x3, 10 classes), batch 128,
SGD with momentum 0.9 and weight decay 5e-4, cross-entropy; one step = batch gather from a uint8
array, (optional) random crop with 4-pixel padding and flip, normalisation, forward, backward
and the update. The JAX side runs `sdcomplex.train`'s jitted step exactly as the trainer calls
it (one step in flight, state donated); the PyTorch side does the same work with the batch
augmented by vectorised tensor ops. Both use the same number of threads.

Each side runs in its own persistent worker process (PyTorch from its own virtual environment,
see benchmarks/torch_env.sh) and the measurements are interleaved round by round, so that a
busy machine slows both sides alike; the table gives the median over rounds (and the best).

    bash benchmarks/torch_env.sh        # once: PyTorch 2.13.0 (CPU) in its own venv
    python benchmarks/train_throughput.py --rounds 5

Extra JAX variants with other XLA flags: ``--xla-variant NAME="--flag=value ..."``;
``--lax-conv`` adds a JAX worker whose LeNet runs its convolutions with XLA's convolution
operator instead of `sdcomplex.models.patch_conv` (the model's default on CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODELS = ("lenet5x8", "resnet20")
DEFAULT_TORCH_VENV = Path(
    os.environ.get("SDCOMPLEX_TORCH_VENV", Path.home() / ".cache/sdcomplex/torch-venv")
)
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
N_IMAGES = 2048  # the pool that batches are drawn from


# --------------------------------------------------------------------------- JAX worker


def _jax_worker(threads: int, lax_conv: bool = False) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from sdcomplex.data import EpochBatcher
    from sdcomplex.models import create_model, init_variables
    from sdcomplex.train import (
        TrainConfig,
        init_train_state,
        make_optimizer,
        make_preprocess,
        make_train_step,
    )

    if lax_conv:
        import sdcomplex.models._lenet as lenet

        lenet.patch_conv = None  # nn.Conv's default, lax.conv_general_dilated

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(N_IMAGES, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=N_IMAGES).astype(np.int32)
    cache: dict = {}

    def setup(name: str, augment: bool, batch: int):
        if (name, augment, batch) not in cache:
            model = create_model(name, 10)
            config = TrainConfig(model=name, batch_size=batch, augment=augment, epochs=10)
            batcher = EpochBatcher(N_IMAGES, batch, seed=0)
            tx, _ = make_optimizer(config, batcher.batches_per_epoch)
            pre = make_preprocess(mean=MEAN, std=STD, pixel_max=255.0, augment=augment)
            step = make_train_step(model, tx, pre)
            state = init_train_state(init_variables(model, 0, (32, 32, 3)), tx)
            cache[(name, augment, batch)] = [step, state, jnp.zeros(3), batcher]
        return cache[(name, augment, batch)]

    def run(name: str, augment: bool, batch: int, steps: int) -> float:
        entry = setup(name, augment, batch)
        step, state, running, batcher = entry
        start, cpu = time.perf_counter(), time.process_time()
        previous, done, epoch = None, 0, 1
        while done < steps:
            for b, (xb, yb) in enumerate(batcher.batches(epoch, images, labels)):
                key = batcher.step_key(epoch, b)
                state, running, loss = step(state, running, xb, yb, key, None)
                if previous is not None:
                    previous.block_until_ready()
                previous = loss
                done += 1
                if done == steps:
                    break
            epoch += 1
        jax.block_until_ready(state)
        entry[1], entry[2] = state, running
        return steps * batch, time.perf_counter() - start, time.process_time() - cpu

    _serve(run, {"jax": jax.__version__, "backend": jax.default_backend(), "threads": threads})


# ------------------------------------------------------------------------- PyTorch worker


def _torch_worker(threads: int, channels_last: bool) -> None:
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.stride, self.extra = stride, cout - cin

        def forward(self, x):
            y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
            if self.stride != 1 or self.extra:  # option A: subsample, zero-pad channels
                lo = self.extra // 2
                x = F.pad(
                    x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, lo, self.extra - lo)
                )
            return F.relu(y + x)

    class ResNet20(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
            self.bn = nn.BatchNorm2d(16)
            blocks, cin = [], 16
            for stage, width in enumerate((16, 32, 64)):
                for i in range(3):
                    blocks.append(Block(cin, width, 2 if stage and i == 0 else 1))
                    cin = width
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            x = self.blocks(F.relu(self.bn(self.conv(x))))
            return self.fc(x.mean((2, 3)))

    class LeNet5(nn.Module):
        def __init__(self, k: int = 8) -> None:
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(3, 6 * k, 5), nn.Conv2d(6 * k, 16 * k, 5)
            self.fc1, self.fc2 = nn.Linear(16 * k * 25, 120 * k), nn.Linear(120 * k, 84 * k)
            self.fc3 = nn.Linear(84 * k, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv1(x)), 2)
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x.flatten(1))))))

    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (N_IMAGES, 32, 32, 3), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (N_IMAGES,), generator=gen)
    mean = torch.tensor(MEAN).view(1, 1, 1, 3)
    std = torch.tensor(STD).view(1, 1, 1, 3)
    ar = torch.arange(32)
    cache: dict = {}
    memory = torch.channels_last if channels_last else torch.contiguous_format

    def batch_inputs(idx, augment: bool):
        x = images[idx]  # (B, 32, 32, 3) uint8
        if augment:  # random crop from a 4-pixel zero padding, then a random flip
            b = x.shape[0]
            padded = F.pad(x, (0, 0, 4, 4, 4, 4))
            dy, dx = (
                torch.randint(0, 9, (b,), generator=gen),
                torch.randint(0, 9, (b,), generator=gen),
            )
            rows, cols = (dy[:, None] + ar)[:, :, None], (dx[:, None] + ar)[:, None, :]
            x = padded[torch.arange(b)[:, None, None], rows, cols]
            flip = torch.rand(b, generator=gen) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(2), x)
        x = (x.float() / 255.0 - mean) / std
        return x.permute(0, 3, 1, 2).contiguous(memory_format=memory)

    def run(name: str, augment: bool, batch: int, steps: int) -> float:
        if name not in cache:
            model = (ResNet20() if name == "resnet20" else LeNet5()).to(memory_format=memory)
            opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
            cache[name] = (model, opt)
        model, opt = cache[name]
        model.train()
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            idx = torch.randint(0, N_IMAGES, (batch,), generator=gen)
            x = batch_inputs(idx, augment)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), labels[idx])
            loss.backward()
            opt.step()
        return steps * batch, time.perf_counter() - start, time.process_time() - cpu

    info = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    info["memory_format"] = "channels_last" if channels_last else "NCHW"
    _serve(run, info)


def _serve(run, info: dict) -> None:
    """Line protocol: prints info, then answers {"model","augment","batch","steps"} lines with
    the images processed, the wall-clock seconds and the process CPU seconds (all threads)."""
    print(json.dumps(info), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        images, wall, cpu = run(req["model"], req["augment"], req["batch"], req["steps"])
        print(json.dumps({"images": images, "wall_s": wall, "cpu_s": cpu}), flush=True)


# ------------------------------------------------------------------------------- driver


class Worker:
    def __init__(self, label: str, cmd: list[str], env: dict[str, str]) -> None:
        self.label = label
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.info = json.loads(self._readline())

    def _readline(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.label} exited (status {self.proc.wait()})")
        return line

    def measure(self, model: str, augment: bool, batch: int, steps: int) -> dict:
        assert self.proc.stdin is not None
        req = {"model": model, "augment": augment, "batch": batch, "steps": steps}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return json.loads(self._readline())

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5, help="interleaved measurement rounds")
    p.add_argument("--steps", type=int, default=0, help="steps per measurement (0: per model)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--augment", choices=("both", "on", "off"), default="both")
    p.add_argument("--torch-python", default=str(DEFAULT_TORCH_VENV / "bin/python"))
    p.add_argument("--torch-channels-last", action="store_true", help="also PyTorch NHWC")
    p.add_argument("--xla-variant", action="append", default=[], metavar='NAME="FLAGS"')
    p.add_argument("--lax-conv", action="store_true", help="also JAX with XLA's convolution")
    p.add_argument("--json", help="write all measurements to this file")
    p.add_argument(
        "--worker", choices=("jax", "jax_lax", "torch", "torch_cl"), help=argparse.SUPPRESS
    )
    args = p.parse_args()
    if args.worker in ("jax", "jax_lax"):
        return _jax_worker(args.threads, args.worker == "jax_lax")
    if args.worker in ("torch", "torch_cl"):
        return _torch_worker(args.threads, args.worker == "torch_cl")

    if not Path(args.torch_python).exists():
        sys.exit(f"no PyTorch interpreter at {args.torch_python}: run benchmarks/torch_env.sh")
    script = str(Path(__file__).resolve())
    base_env = {**os.environ, "PYTHONUNBUFFERED": "1", "JAX_PLATFORMS": "cpu"}
    threads = ["--threads", str(args.threads)]
    specs = [("jax", [sys.executable, script, "--worker", "jax", *threads], base_env)]
    for variant in args.xla_variant:
        name, _, flags = variant.partition("=")
        env = {**base_env, "XLA_FLAGS": f"{base_env.get('XLA_FLAGS', '')} {flags}".strip()}
        specs.append((f"jax[{name}]", [sys.executable, script, "--worker", "jax", *threads], env))
    if args.lax_conv:
        cmd = [sys.executable, script, "--worker", "jax_lax", *threads]
        specs.append(("jax[lax conv]", cmd, base_env))
    specs.append(("torch", [args.torch_python, script, "--worker", "torch", *threads], base_env))
    if args.torch_channels_last:
        cmd = [args.torch_python, script, "--worker", "torch_cl", *threads]
        specs.append(("torch[channels_last]", cmd, base_env))
    workers = [Worker(label, cmd, env) for label, cmd, env in specs]
    modes = {"both": (True, False), "on": (True,), "off": (False,)}[args.augment]
    steps_for = {"lenet5x8": 20, "resnet20": 10}
    print(f"machine: {_cpu_name()}, {os.cpu_count()} cores; load average {os.getloadavg()}")
    for w in workers:
        print(f"  {w.label}: {w.info}")
    results: dict[tuple[str, bool, str], list[dict]] = {}
    try:
        for model in args.models:
            for augment in modes:
                steps = args.steps or steps_for[model]
                for w in workers:  # warm-up: compilation, allocator, caches
                    w.measure(model, augment, args.batch_size, 3)
                for r in range(args.rounds):
                    for w in workers if r % 2 == 0 else workers[::-1]:
                        m = w.measure(model, augment, args.batch_size, steps)
                        results.setdefault((model, augment, w.label), []).append(m)
    finally:
        for w in workers:
            w.close()
    print(
        f"\nbatch {args.batch_size}, {args.threads} threads, {args.rounds} interleaved rounds; "
        "training images/s (wall clock), median (best); CPU: process CPU seconds (all threads) "
        "per 1000 images, median"
    )
    labels = [w.label for w in workers]
    head = " | ".join(f"{label} img/s | {label} CPU" for label in labels)
    print(f"| model | augmentation | {head} | JAX / PyTorch (img/s) |")
    print("|---|---|" + "---|---|" * len(labels) + "---|")
    for model in args.models:
        for augment in modes:
            cells, med = [], {}
            for label in labels:
                rows = results[(model, augment, label)]
                rates = [m["images"] / m["wall_s"] for m in rows]
                cpu = statistics.median(1000 * m["cpu_s"] / m["images"] for m in rows)
                med[label] = statistics.median(rates)
                cells += [f"{med[label]:.0f} ({max(rates):.0f})", f"{cpu:.1f} s"]
            ratio = med["jax"] / med["torch"]
            aug = "crop+flip" if augment else "none"
            print(f"| {model} | {aug} | " + " | ".join(cells) + f" | {ratio:.2f} |")
    if args.json:
        rows_out = [
            {"model": m, "augment": a, "worker": w, "measurements": v}
            for (m, a, w), v in results.items()
        ]
        info = {w.label: w.info for w in workers}
        Path(args.json).write_text(json.dumps({"workers": info, "rows": rows_out}, indent=1))


if __name__ == "__main__":
    main()
