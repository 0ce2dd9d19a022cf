"""kill -9 in the middle of an epoch of a run on four simulated CPU devices, then resumed on four:
it ends with exactly the checkpoints and metrics of an uninterrupted four-device run.

Every run is a real ``sdcomplex train --cpu-devices 4`` subprocess (the device count is fixed
when JAX starts); the killed one is stopped with SIGKILL once its epoch-1 checkpoint is sealed,
while epoch 2 (150 steps of a global batch split over the four devices) is under way.
"""

import json
import signal
import time

import pytest
from run_helpers import leaves_equal, mlp_config, partial_files, start_run, wait_for_lines

from sdcomplex.train import list_checkpoints, load_checkpoint, read_metrics
from sdcomplex.train._metrics import strip_timing

CONFIG = mlp_config(
    8, synthetic=(2400, 16, 6, 3), batch_size=16, epochs=3, learning_rate=0.05, eval_batch_size=800
)
STEPS = 2400 // 16


def _placement(run_dir):
    """The devices a run recorded in its run.json."""
    return json.loads((run_dir / "run.json").read_text())["placement"]


def _start(root, run_dir):
    return start_run("train", root / "config.json", run_dir, cpu_devices=4)


def _finish(proc):
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]


def _wait_for_file(path, proc, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not path.is_file():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {path.name}: {proc.communicate()}")
        time.sleep(0.005)


@pytest.mark.slow
def test_kill_9_mid_epoch_on_four_devices_then_resume_is_bit_identical(tmp_path):
    (tmp_path / "config.json").write_text(CONFIG.to_json())
    reference = tmp_path / "reference"
    _finish(_start(tmp_path, reference))
    assert _placement(reference)["num_devices"] == 4

    run_dir = tmp_path / "run"
    proc = _start(tmp_path, run_dir)
    wait_for_lines(run_dir, 2, proc)  # epochs 0 and 1 evaluated
    _wait_for_file(run_dir / "checkpoints" / "epoch_1" / "checksums.json", proc)
    time.sleep(0.05)  # into epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    # killed in epoch 2: its checkpoint and metrics line not written, no mid-epoch checkpoint
    assert list_checkpoints(run_dir) == [0, 1]
    assert [m["epoch"] for m in read_metrics(run_dir)] == [0, 1]
    assert not list((run_dir / "preempt").glob("step_*"))

    _finish(_start(tmp_path, run_dir))  # the same command, on four devices again
    assert list_checkpoints(run_dir) == list_checkpoints(reference) == [0, 1, 2, 3]
    for epoch in range(CONFIG.epochs + 1):
        assert leaves_equal(load_checkpoint(run_dir, epoch), load_checkpoint(reference, epoch))
    assert strip_timing(read_metrics(run_dir)) == strip_timing(read_metrics(reference))
    assert _placement(run_dir)["num_devices"] == 4
    assert read_metrics(run_dir)[-1]["step"] == CONFIG.epochs * STEPS
    assert not partial_files(run_dir)  # no partial checkpoint left
