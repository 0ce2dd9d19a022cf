"""The device flags of ``train``, ``distill`` and ``reproduce``: ``--devices``, ``--distributed``.

Errors are one line on stderr with exit status 2; on four simulated devices (one subprocess) a
batch they do not divide is refused naming both numbers before anything is written, and
``run.json`` records the device count a run trained on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cli_helpers import SYNTHETIC_FLAGS

from sdcomplex.cli import main

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ["train", "--model", "mlp", "--set", "model_options={\"hidden_sizes\": [4]}",
         "--epochs", "1", *SYNTHETIC_FLAGS]  # fmt: skip


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--devices", "5", "--batch-size", "8"], "--devices: num_devices=5 but 1 device(s)"),
        (["--devices", "0"], "--devices must be at least 1, got 0"),
        (  # refused before the processes are started (which waits for the other processes)
            "--devices 0 --distributed --coordinator 127.0.0.1:1234 --num-processes 2 "
            "--process-id 1".split(),
            "--devices must be at least 1, got 0",
        ),
        (["--coordinator", "127.0.0.1:1234"], "--coordinator need --distributed"),
        (
            ["--distributed", "--coordinator", "127.0.0.1:1234"],
            "give coordinator, num_processes and process_id together",
        ),
    ],
)
def test_device_flag_errors_are_one_line(tmp_path, capsys, argv, message):
    import jax

    jax.devices()  # (JAX started: a jax.distributed start is an error at once, never a wait)
    code = main([*TRAIN, "--out", str(tmp_path / "run"), *argv])
    assert code == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("sdcomplex train: error: ") and message in line
    assert not (tmp_path / "run").exists()


def test_distill_and_reproduce_take_the_flags(tmp_path, capsys):
    code = main(["distill", "--out", str(tmp_path / "s"), "--student", "mlp", "--devices", "2"])
    assert code == 2
    assert "--devices: num_devices=2 but 1 device(s)" in _one_line(capsys.readouterr().err)
    out = tmp_path / "r"
    argv = ["reproduce", "c3_c4_online_kd", "--scale", "smoke", "--out", str(out)]
    code = main([*argv, "--distributed", "--coordinator", "127.0.0.1:1234"])
    assert code == 2  # (reproduce --distributed runs: tests/reproduce/test_reproduce_distributed)
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("sdcomplex reproduce: error: give coordinator, num_processes")
    assert not out.exists()


_FOUR_DEVICES = """
import contextlib, io, json, sys
from sdcomplex.cli import main
from sdcomplex.train import RunDirectory
root, argv = sys.argv[1], json.loads(sys.argv[2])
err = io.StringIO()
with contextlib.redirect_stderr(err):
    odd = main([*argv, "--out", root + "/odd", "--batch-size", "18"])
two = main([*argv, "--out", root + "/two", "--batch-size", "16", "--devices", "2"])
every = main([*argv, "--out", root + "/all", "--batch-size", "16"])
placement = [RunDirectory(root + "/" + d).read_metadata()["placement"] for d in ("two", "all")]
print(json.dumps({"odd": odd, "err": err.getvalue(), "two": two, "all": every,
                  "placement": placement}))
"""


@pytest.mark.slow
def test_four_devices_batch_division_and_run_record(tmp_path):
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_FOUR_DEVICES), str(tmp_path), json.dumps(TRAIN)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["odd"] == 2
    line = _one_line(got["err"])
    assert "batch_size 18 is not divisible by the number of devices 4" in line
    assert not (tmp_path / "odd").exists()
    assert got["two"] == 0 and got["all"] == 0
    two, every = got["placement"]
    assert two["num_devices"] == 2 and every["num_devices"] == 4
    assert every["platform"] == "cpu" and every["num_processes"] == 1
    assert every["device_kinds"] == two["device_kinds"] and len(every["device_kinds"]) == 1


def test_cpu_devices_flag_errors_are_one_line(tmp_path, capsys):
    import jax

    jax.devices()  # this process's devices exist: simulated ones can no longer be asked for
    code = main([*TRAIN, "--out", str(tmp_path / "a"), "--cpu-devices", "0"])
    assert code == 2
    assert "--cpu-devices must be at least 1, got 0" in _one_line(capsys.readouterr().err)
    # A count past the bound is refused at once (not minutes of JAX starting 100000 devices).
    code = main([*TRAIN, "--out", str(tmp_path / "a"), "--cpu-devices", "100000"])
    assert code == 2
    line = _one_line(capsys.readouterr().err)
    assert "--cpu-devices must be at most 1024, got 100000" in line
    code = main([*TRAIN, "--out", str(tmp_path / "b"), "--cpu-devices", "2"])
    assert code == 2
    assert _one_line(capsys.readouterr().err).startswith("sdcomplex train: error: --cpu-devices")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _cli(args: list[str]) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("XLA_FLAGS", None)
    return subprocess.run(
        [sys.executable, "-m", "sdcomplex", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_cpu_devices_flag_trains_and_computes_the_kernel_on_four_devices(tmp_path):
    import numpy as np

    from sdcomplex.train import RunDirectory

    run = tmp_path / "run"
    done = _cli([*TRAIN, "--out", str(run), "--batch-size", "16", "--cpu-devices", "4"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert RunDirectory(run).read_metadata()["placement"]["num_devices"] == 4
    four = _cli(["ntk", str(run), "--out", str(tmp_path / "k4.npz"), "--cpu-devices", "4",
                 "--n-per-class", "6", "--quiet"])  # fmt: skip
    assert four.returncode == 0, four.stderr[-2000:]
    one = main(["ntk", str(run), "--out", str(tmp_path / "k1.npz"), "--devices", "1",
                "--n-per-class", "6", "--quiet"])  # fmt: skip
    assert one == 0
    k4 = np.load(tmp_path / "k4.npz")["kernel"]
    k1 = np.load(tmp_path / "k1.npz")["kernel"]
    assert k4.shape == k1.shape and k1.shape[0] >= 12
    np.testing.assert_allclose(k4, k1, rtol=1e-5, atol=1e-6 * float(np.abs(k1).max()))
