"""Running code on simulated CPU devices and in several processes on 127.0.0.1, for the tests of
the mesh code paths (the device count is fixed when JAX initialises, so each check runs in a
subprocess of its own; every wait is bounded, and a process that dies fails the test with its
stderr instead of hanging it)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def simulated_env(devices: int) -> dict[str, str]:
    """The environment of a subprocess with ``devices`` simulated CPU devices that imports this
    checkout's ``sdcomplex``."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def run_on_devices(code: str, devices: int, *args: str, timeout: float = 300.0) -> dict:
    """Runs ``code`` (dedented) with ``devices`` simulated devices and ``args`` as ``sys.argv[1:]``;
    returns the JSON object of its last stdout line."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=simulated_env(devices),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (for a coordinator)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_processes(
    script: str, directory: Path, *args: str, processes: int = 2, devices: int = 2
) -> list[subprocess.Popen]:
    """Starts ``script`` as ``processes`` processes of ``devices`` simulated devices each, with
    ``sys.argv[1:] == [port, process_id, *args]`` (a free coordinator port on 127.0.0.1) and
    their stdout and stderr piped (text); the caller waits for them, with a timeout, and kills
    what is left."""
    path = Path(directory) / "multi_process.py"
    path.write_text(textwrap.dedent(script))
    port = str(free_port())
    return [
        subprocess.Popen(
            [sys.executable, str(path), port, str(pid), *args],
            env=simulated_env(devices),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for pid in range(processes)
    ]


def run_processes(
    script: str,
    directory: Path,
    *args: str,
    processes: int = 2,
    devices: int = 2,
    timeout: float = 240.0,
) -> list[dict]:
    """Runs ``script`` as :func:`start_processes` does; returns each process's last stdout line
    as JSON, in process order. Every process is killed after ``timeout`` seconds; a non-zero
    exit fails with that process's stderr."""
    procs = start_processes(script, directory, *args, processes=processes, devices=devices)
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, err[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return results


__all__: Sequence[str] = (
    "ROOT",
    "free_port",
    "run_on_devices",
    "run_processes",
    "simulated_env",
    "start_processes",
)
