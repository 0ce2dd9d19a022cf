"""Resumption: a real subprocess killed with SIGKILL or stopped with SIGTERM mid-training, then
resumed, ends with exactly the parameters and metrics of an uninterrupted run (CPU)."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from sdcomplex.train import (
    TIMING_FIELDS,
    TrainConfig,
    list_checkpoints,
    load_checkpoint,
    load_manifest,
    read_metrics,
    strip_timing,
    train,
)

# A small BatchNorm CNN on the embedded digits, with augmentation, a cosine schedule and many
# steps per epoch (so that a signal sent after epoch 1 lands in the middle of epoch 2).
CONFIG = TrainConfig(
    model="cnn",
    model_options={"channels": [4], "dense_width": 16, "batch_norm": True},
    dataset="digits",
    epochs=4,
    batch_size=8,
    learning_rate=0.05,
    schedule="step",
    lr_milestones=(3,),
    crop_padding=1,
    checkpoint_every=2,
    eval_batch_size=512,
)
STEPS = 1438 // 8  # steps per epoch


def _leaves_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb, strict=True))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run (in this process)."""
    run_dir = tmp_path_factory.mktemp("reference")
    result = train(CONFIG, run_dir, quiet=True)
    assert result.status == "completed"
    return run_dir, result


def _start(run_dir, config_file):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-m", "sdcomplex", "train", "--config", str(config_file)]
    cmd += ["--out", str(run_dir), "--quiet"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_lines(run_dir, n, proc, timeout=120.0):
    """Waits until metrics.jsonl has n complete lines (the subprocess's progress signal)."""
    deadline = time.monotonic() + timeout
    path = run_dir / "metrics.jsonl"
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.communicate()}")
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("timed out waiting for the subprocess")


def _config_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(CONFIG.to_dict()))
    return path


def test_sigterm_then_kill_9_then_resume_is_bit_identical(tmp_path, reference):
    ref_dir, ref = reference
    run_dir, config_file = tmp_path / "run", _config_file(tmp_path)

    # 1. SIGTERM in the middle of epoch 2: the step finishes, a checkpoint is saved, exit 0
    proc = _start(run_dir, config_file)
    _wait_for_lines(run_dir, 2, proc)  # epochs 0 and 1 evaluated; epoch 2 has 179 steps
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err and b"stopped by a signal" in err
    preempt = sorted((run_dir / "preempt").glob("step_*"))
    assert len(preempt) == 1  # a mid-epoch checkpoint...
    step = int(preempt[0].name.split("_")[1])
    assert STEPS < step < 2 * STEPS  # ...inside epoch 2
    assert list_checkpoints(run_dir) == [0]
    assert [m["epoch"] for m in read_metrics(run_dir)] == [0, 1]

    # 2. the same command resumes mid-epoch; kill -9 it after epoch 2's metrics line (while
    #    its checkpoint is written, or in epoch 3)
    proc = _start(run_dir, config_file)
    _wait_for_lines(run_dir, 3, proc)
    time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert CONFIG.epochs not in list_checkpoints(run_dir)  # killed before the end

    # 3. resume in this process: same parameters, checkpoints and metrics as the reference
    result = train(CONFIG, run_dir, quiet=True)
    assert result.status == "completed"
    assert list_checkpoints(run_dir) == list_checkpoints(ref_dir) == [0, 2, 4]
    for epoch in (2, 4):
        assert _leaves_equal(load_checkpoint(run_dir, epoch), load_checkpoint(ref_dir, epoch))
    assert "batch_stats" in result.variables
    assert _leaves_equal(result.variables, ref.variables)
    metrics, ref_metrics = read_metrics(run_dir), read_metrics(ref_dir)
    assert [m["epoch"] for m in metrics] == list(range(CONFIG.epochs + 1))
    assert strip_timing(metrics) == strip_timing(ref_metrics)
    assert all(set(TIMING_FIELDS) <= set(m) for m in metrics)
    assert not list((run_dir / "preempt").glob("step_*"))  # removed once superseded
    assert not list(run_dir.rglob("*tmp*"))  # no partial checkpoint left


def test_rerun_of_finished_run_does_no_training(reference):
    ref_dir, ref = reference
    before = {p: p.stat().st_mtime_ns for p in ref_dir.rglob("*")}
    start = time.perf_counter()
    result = train(CONFIG, ref_dir, quiet=True)
    assert result.status == "already_complete"
    assert time.perf_counter() - start < 5
    assert result.metrics == ref.metrics
    assert _leaves_equal(result.variables, ref.variables)
    after = {p: p.stat().st_mtime_ns for p in ref_dir.rglob("*")}
    assert after == before  # nothing written


def test_same_seed_same_run_and_manifests(tmp_path, reference):
    ref_dir, ref = reference
    # a shorter run with the same seed: its first two epochs (same learning rates under the
    # step schedule) are bit-identical to the reference's
    short = CONFIG.replace(epochs=2, lr_milestones=(), schedule="constant")
    result = train(short, tmp_path / "short", quiet=True)
    assert _leaves_equal(result.variables, load_checkpoint(ref_dir, 2))
    assert strip_timing(result.metrics) == strip_timing(ref.metrics[:3])
    manifest = load_manifest(tmp_path / "short", 2)
    assert manifest["epoch"] == 2 and manifest["step"] == 2 * STEPS
    assert manifest["kind"] == "epoch" and manifest["batch"] == 0
    assert {"jax", "flax", "optax", "orbax-checkpoint", "numpy"} <= set(manifest["versions"])
    run_info = json.loads((tmp_path / "short" / "run.json").read_text())
    assert (
        manifest["config_hash"]
        == run_info["config_hash"]
        != load_manifest(ref_dir, 2)["config_hash"]
    )
    assert run_info["dataset"]["n_train"] == 1438 and run_info["steps_per_epoch"] == STEPS
