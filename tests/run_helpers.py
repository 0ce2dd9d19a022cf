"""What tests of training runs in several packages share: tiny MLP configs, tiny image folders,
bitwise comparison of parameter trees, and training subprocesses (started, their progress
awaited, what their kills leave behind)."""

import os
import subprocess
import sys
import time

import jax
import numpy as np
from PIL import Image

from sdcomplex.train import TrainConfig
from sdcomplex.train._checkpoint import DAMAGED_DIR


def mlp_config(hidden, *, synthetic=None, **fields):
    """A :class:`TrainConfig` of an MLP with one hidden layer of ``hidden`` units, no
    augmentation unless ``fields`` say otherwise.

    Args:
        hidden: width of the hidden layer.
        synthetic: ``(n_train, n_test, dim, num_classes)`` of the generated synthetic data set,
            or None to keep the data set ``fields`` name (e.g. ``dataset="digits"``).
        **fields: any other config field.
    """
    options = {"model": "mlp", "model_options": {"hidden_sizes": [hidden]}, "augment": False}
    if synthetic is not None:
        n_train, n_test, dim, num_classes = synthetic
        options["dataset"] = "synthetic"
        options["data_options"] = {
            "n_train": n_train,
            "n_test": n_test,
            "dim": dim,
            "num_classes": num_classes,
        }
    return TrainConfig(**{**options, **fields})


def leaves_equal(a, b):
    """Whether two parameter trees have the same leaves, bit for bit."""
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb, strict=True))


def start_run(command, config_file, run_dir, *, cpu_devices=None):
    """A real ``sdcomplex COMMAND --config FILE --out RUN_DIR --quiet`` subprocess on the CPU
    (unbuffered, stdout and stderr piped); with ``cpu_devices``, on that many simulated CPU
    devices (``--cpu-devices``; this process's ``XLA_FLAGS`` are not passed on)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-m", "sdcomplex", command, "--config", str(config_file)]
    cmd += ["--out", str(run_dir), "--quiet"]
    if cpu_devices is not None:
        env.pop("XLA_FLAGS", None)
        cmd += ["--cpu-devices", str(cpu_devices)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_lines(run_dir, n, proc, timeout=120.0):
    """Waits until ``run_dir/metrics.jsonl`` has ``n`` complete lines (one per evaluated epoch:
    a training subprocess's progress); fails if ``proc`` ends first, and kills it after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    path = run_dir / "metrics.jsonl"
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.communicate()}")
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("timed out waiting for the subprocess")


def partial_files(run_dir):
    """Temporary files of unfinished writes left in a run directory, outside ``damaged/``.

    A kill -9 during a checkpoint's write leaves that checkpoint incomplete; resuming moves it
    to ``damaged/`` (kept, never deleted), so its partial files may rightly remain there.
    """
    return [p for p in run_dir.rglob("*tmp*") if p.relative_to(run_dir).parts[0] != DAMAGED_DIR]


def write_image_folder(root, image_shape, counts, seed=0):
    """Writes an ``image_folder`` data set of random RGB PNGs under ``root``: classes ``a`` and
    ``b``, ``counts = (train, test)`` images of each, of shape ``image_shape`` (H, W, 3).
    Returns ``root``."""
    rng = np.random.default_rng(seed)
    for split, count in zip(("train", "test"), counts, strict=True):
        for name in "ab":
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, image_shape, dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root
