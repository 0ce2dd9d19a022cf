"""kill -9 at random moments of checkpoint writing, over many seeds: the resumed run ends with
exactly the checkpoints and metrics of an uninterrupted run.

The child (forked from a server process that imported the library once) trains a tiny MLP with
one step per epoch and a checkpoint every epoch, so that most of its time is spent writing
checkpoints; the resumed run (and the reference) are other forked children. For seed ``s`` the
parent waits until the checkpoint of a random epoch ``k`` starts being written (Orbax's
temporary directory appears, or the finished directory if the write was too quick to be
seen), waits a random 0-60 ms more (the Orbax write, the rename, the checksums, the next
metrics line) and sends SIGKILL.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from run_helpers import leaves_equal, mlp_config

from sdcomplex.train import list_checkpoints, load_checkpoint, read_metrics
from sdcomplex.train._metrics import strip_timing

CONFIG = mlp_config(4, synthetic=(16, 8, 3, 2), batch_size=16, epochs=5, learning_rate=0.05)
SEEDS = range(6)


# Forks a training process per run directory read from stdin (after importing everything once,
# before any JAX computation, so each child starts in a fraction of a second): prints the
# child's pid, then its wait status.
FORK_SERVER = """
import json, os, sys, traceback
from sdcomplex.train import TrainConfig, train
config = TrainConfig.from_dict(json.loads(open(sys.argv[1]).read()))
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            train(config, line.strip(), quiet=True)
        except BaseException:
            traceback.print_exc()
            code = 1
        os._exit(code)
    print(pid, flush=True)
    print(os.waitpid(pid, 0)[1], flush=True)
"""


class _ForkServer:
    def __init__(self, root):
        env = {
            **os.environ,
            "JAX_PLATFORMS": "cpu",
        }
        (root / "config.json").write_text(CONFIG.to_json())
        cmd = [sys.executable, "-c", FORK_SERVER, str(root / "config.json")]
        self.proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def start(self, run_dir):
        """Starts training ``run_dir`` in a forked child; returns its pid."""
        self.proc.stdin.write(f"{run_dir}\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def wait(self):
        """The wait status of the last child."""
        return int(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _kill_while_writing(server, pid, run_dir, epoch, delay, timeout=120.0):
    """SIGKILL ``delay`` seconds after the checkpoint of ``epoch`` starts being written."""
    checkpoints = run_dir / "checkpoints"
    prefix = f"epoch_{epoch}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = os.listdir(checkpoints) if checkpoints.is_dir() else []
        if any(n == prefix or n.startswith(f"{prefix}.") for n in names):
            time.sleep(delay)
            os.kill(pid, signal.SIGKILL)
            status = server.wait()
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
            return
        time.sleep(0.0005)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError("timed out waiting for the child")


@pytest.mark.slow
def test_kill_9_during_checkpoint_writes_then_resume_is_bit_identical(tmp_path, request):
    server = _ForkServer(tmp_path)
    request.addfinalizer(server.close)
    reference = tmp_path / "reference"
    server.start(reference)
    assert server.wait() == 0
    ref_metrics = strip_timing(read_metrics(reference))
    ref_checkpoints = {e: load_checkpoint(reference, e) for e in range(CONFIG.epochs + 1)}
    states = []
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        epoch, delay = int(rng.integers(1, CONFIG.epochs)), float(rng.uniform(0.0, 0.06))
        run_dir = tmp_path / f"run_{seed}"
        _kill_while_writing(server, server.start(run_dir), run_dir, epoch, delay)
        names = sorted(os.listdir(run_dir / "checkpoints"))
        unfinished = [n for n in names if "tmp" in n]
        sealed = [(run_dir / "checkpoints" / n / "checksums.json").exists() for n in names]
        unsealed = [n for n, s in zip(names, sealed, strict=True) if "tmp" not in n and not s]
        states.append((seed, epoch, unfinished, unsealed))
        server.start(run_dir)  # resumed in another child
        assert server.wait() == 0, seed
        assert list_checkpoints(run_dir) == list(range(CONFIG.epochs + 1)), seed
        for e, variables in ref_checkpoints.items():
            assert leaves_equal(load_checkpoint(run_dir, e), variables), (seed, e)
        assert strip_timing(read_metrics(run_dir)) == ref_metrics, seed
        assert not [n for n in os.listdir(run_dir / "checkpoints") if "tmp" in n], seed
    # the kills hit the write window: some left an unfinished Orbax write or a checkpoint
    # without its checksums
    assert any(unfinished or unsealed for _, _, unfinished, unsealed in states), states
