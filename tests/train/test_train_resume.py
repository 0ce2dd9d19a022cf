"""Resumption: a real subprocess killed with SIGKILL or stopped with SIGTERM mid-training, then
resumed, ends with exactly the parameters and metrics of an uninterrupted run (CPU)."""

import json
import signal
import time

import pytest
from run_helpers import leaves_equal, partial_files, start_run, wait_for_lines

from sdcomplex.train import (
    TrainConfig,
    list_checkpoints,
    load_checkpoint,
    read_metrics,
    train,
)
from sdcomplex.train._checkpoint import load_manifest
from sdcomplex.train._metrics import TIMING_FIELDS, strip_timing

# A small BatchNorm CNN on the embedded digits, with augmentation, a step schedule and many
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
    flip=True,  # (the digits' default is no flips: exercise them anyway)
    checkpoint_every=2,
    eval_batch_size=512,
)
STEPS = 1438 // 8  # steps per epoch


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A config file and a JAX compilation cache shared by this module's subprocesses (each
    would otherwise spend seconds compiling the same step)."""
    path = tmp_path_factory.mktemp("resume")
    (path / "config.json").write_text(json.dumps(CONFIG.to_dict()))
    return path


def _start(workdir, run_dir):
    return start_run("train", workdir / "config.json", run_dir)


@pytest.fixture(scope="module")
def reference(workdir):
    """The uninterrupted run, in a subprocess."""
    run_dir = workdir / "reference"
    proc = _start(workdir, run_dir)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert b"trained cnn on digits to epoch 4" in out
    return run_dir


def test_sigterm_then_kill_9_then_resume_is_bit_identical(tmp_path, workdir, reference):
    run_dir = tmp_path / "run"

    # 1. SIGTERM in the middle of epoch 2: the step finishes, a checkpoint is saved, exit 143
    proc = _start(workdir, run_dir)
    wait_for_lines(run_dir, 2, proc)  # epochs 0 and 1 evaluated; epoch 2 has 179 steps
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM == 143, err.decode()
    assert b"Traceback" not in err and b"stopped by SIGTERM after epoch 1" in err
    preempt = sorted((run_dir / "preempt").glob("step_*"))
    assert len(preempt) == 1  # a mid-epoch checkpoint...
    step = int(preempt[0].name.split("_")[1])
    # ...inside epoch 2 (or at its very start, if the signal beat the first step)
    assert STEPS <= step < 2 * STEPS
    assert list_checkpoints(run_dir) == [0]
    assert [m["epoch"] for m in read_metrics(run_dir)] == [0, 1]

    # 2. the same command resumes mid-epoch; kill -9 it after epoch 2's metrics line (while
    #    its checkpoint is written, or in epoch 3)
    proc = _start(workdir, run_dir)
    wait_for_lines(run_dir, 3, proc)
    time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert CONFIG.epochs not in list_checkpoints(run_dir)  # killed before the end

    # 3. the same command resumes from the last complete checkpoint and ends exactly as the
    #    uninterrupted run: same checkpoints, parameters, BatchNorm statistics and metrics
    proc = _start(workdir, run_dir)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert list_checkpoints(run_dir) == list_checkpoints(reference) == [0, 2, 4]
    for epoch in (0, 2, 4):
        assert leaves_equal(load_checkpoint(run_dir, epoch), load_checkpoint(reference, epoch))
    assert "batch_stats" in load_checkpoint(run_dir, 4)
    metrics, ref_metrics = read_metrics(run_dir), read_metrics(reference)
    assert [m["epoch"] for m in metrics] == list(range(CONFIG.epochs + 1))
    assert strip_timing(metrics) == strip_timing(ref_metrics)
    assert all(set(TIMING_FIELDS) <= set(m) for m in metrics)
    assert not list((run_dir / "preempt").glob("step_*"))  # removed once superseded
    assert not partial_files(run_dir)  # no partial checkpoint left
    # a checkpoint the kill interrupted was moved aside, not deleted: only epoch 2's can be
    assert {p.name for p in (run_dir / "damaged").glob("*")} <= {"epoch_2"}


def test_same_run_in_this_process_then_rerun_does_no_training(tmp_path, reference):
    # a fresh compilation in another process gives the same run, bit for bit
    run_dir = tmp_path / "run"
    result = train(CONFIG, run_dir, quiet=True)
    assert result.status == "completed" and result.epoch == CONFIG.epochs
    assert leaves_equal(result.variables, load_checkpoint(reference, 4))
    assert strip_timing(result.metrics) == strip_timing(read_metrics(reference))
    manifest = load_manifest(run_dir, 2)
    assert manifest["epoch"] == 2 and manifest["step"] == 2 * STEPS
    assert manifest["kind"] == "epoch" and manifest["batch"] == 0
    assert {"jax", "flax", "optax", "orbax-checkpoint", "numpy"} <= set(manifest["versions"])
    run_info = json.loads((run_dir / "run.json").read_text())
    assert manifest["config_hash"] == run_info["config_hash"]
    assert run_info["dataset"]["n_train"] == 1438 and run_info["steps_per_epoch"] == STEPS

    # re-running the finished run trains nothing and writes nothing
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")}
    start = time.perf_counter()
    again = train(CONFIG, run_dir, quiet=True)
    assert again.status == "already_complete" and time.perf_counter() - start < 5
    assert again.metrics == result.metrics
    assert leaves_equal(again.variables, result.variables)
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")} == before
