"""``sdcomplex reproduce --distributed``: two processes of two simulated CPU devices on 127.0.0.1.

The first test runs a tiny reproduction through the CLI in two processes (the teacher and the
students trained data-parallel on the four devices, every other stage in process 0 on its two)
and in this process on one device, and compares: the tables byte for byte, every number of the
results to 1e-5 relative (the runs differ by float reordering: about 2e-7 here), the stages'
input hashes exactly, and, for the multi-process distillation, the online-KD student's parameters
to 1e-5 relative with the same accuracies every epoch.

The second test drives the runner's protocol with stages of its own in one pair of processes:
a stage every process runs (a collective) and stages process 0 runs alone, a second invocation
that skips them all, a failure in process 0's own stage that stops the other process with its
message, an output directory the other process does not see, and process 0 killed with SIGKILL
while the other waits, which JAX's distributed runtime ends within seconds.

Every process is started with a time limit and killed when it passes it.
"""

from __future__ import annotations

import io
import json
import math
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from device_helpers import start_processes

HERE = Path(__file__).resolve().parent
EXPERIMENT = HERE / "tiny_distributed_experiment.py"
TIMEOUT = 400.0

_CLI = r"""
import json, sys
from sdcomplex.cli import main
port, pid, experiment, out = sys.argv[1:5]
code = main(["reproduce", experiment, "--scale", "smoke", "--out", out, "--quiet",
             "--distributed", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
             "--process-id", pid])
print(json.dumps({"pid": int(pid), "code": code}))
"""


def _finish(procs, timeout: float = TIMEOUT) -> list[tuple[int, str, str]]:
    """``(returncode, stdout, stderr)`` of each process, each killed after ``timeout``."""
    done = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            done.append((proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return done


def _numbers(value, path=""):
    """Every leaf of a JSON value with its path."""
    if isinstance(value, dict):
        for key in sorted(value):
            yield from _numbers(value[key], f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _numbers(item, f"{path}[{i}]")
    else:
        yield path, value


def _json_gap(a, b) -> float:
    """The largest relative difference of the float leaves of two JSON values whose other
    leaves (and structure) are equal."""
    la, lb = dict(_numbers(a)), dict(_numbers(b))
    assert la.keys() == lb.keys()
    gap = 0.0
    for key, x in la.items():
        y = lb[key]
        if isinstance(x, float) and isinstance(y, float) and not (math.isnan(x) and math.isnan(y)):
            gap = max(gap, abs(x - y) / max(abs(x), abs(y), 1e-300))
        else:
            assert x == y or (x != x and y != y), (key, x, y)
    return gap


def _relative_gap(a, b) -> float:
    """Largest parameter difference relative to the largest parameter."""
    import jax

    pairs = [(np.asarray(x, np.float64), np.asarray(y, np.float64))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)]  # fmt: skip
    scale = max(float(np.max(np.abs(y))) for _, y in pairs)
    return max(float(np.max(np.abs(x - y))) for x, y in pairs) / scale


@pytest.mark.slow
def test_two_processes_reproduce_as_one_process(tmp_path):
    from sdcomplex.reproduce import load_experiment, plan_stages, run_experiment
    from sdcomplex.train import list_checkpoints, load_checkpoint, read_metrics

    out = tmp_path / "two"
    procs = start_processes(_CLI, tmp_path, str(EXPERIMENT), str(out))
    (code0, out0, err0), (code1, out1, err1) = _finish(procs)
    assert code0 == 0, err0[-3000:]
    assert code1 == 0, err1[-3000:]
    # process 0 speaks for the run; the other prints nothing of its own
    assert "on 2 processes" in out0 and "10 stages run, 0 skipped" in out0
    own = [line for line in out1.splitlines() if not line.startswith("[Gloo]")]  # (Gloo's)
    assert own == [json.dumps({"pid": 1, "code": 0})]
    assert not (out / "processes").exists()  # the tokens are removed after a clean end

    config = load_experiment(str(EXPERIMENT), "smoke")
    one = tmp_path / "one"
    run_experiment(config, one, quiet=True, stream=io.StringIO(), figures=False)

    # the stages' input hashes do not depend on the process count
    for stage in plan_stages(config)[:-1]:  # (figures: not run in this process)
        name = f"{stage.key.replace('/', '__')}.json"
        marker_two = json.loads((out / "stages" / name).read_text())
        marker_one = json.loads((one / "stages" / name).read_text())
        assert marker_two["hash"] == marker_one["hash"] == stage.hash, stage.key
    for table in ("accuracy.md", "claims.md", "diagnostics.md"):
        assert (out / "tables" / table).read_text() == (one / "tables" / table).read_text()
    results = sorted(p.name for p in (one / "results").glob("*.json"))
    assert results == sorted(p.name for p in (out / "results").glob("*.json"))
    assert {"complexity.json", "bound.json", "diagnostics.json", "claims.json"} <= set(results)
    for name in results:
        a = json.loads((out / "results" / name).read_text())
        b = json.loads((one / "results" / name).read_text())
        assert _json_gap(a, b) < 1e-5, name

    # the training runs: four devices of two processes, against one device
    for run in ("teacher", "students/online_t4/seed0"):
        two_dir, one_dir = out / "runs" / run, one / "runs" / run
        placement = json.loads((two_dir / "run.json").read_text())["placement"]
        assert placement["num_processes"] == 2 and placement["num_devices"] == 4
        last = list_checkpoints(one_dir)[-1]
        assert list_checkpoints(two_dir) == list_checkpoints(one_dir)
        gap = _relative_gap(load_checkpoint(two_dir, last), load_checkpoint(one_dir, last))
        assert gap < 1e-5, (run, gap)
        m_two, m_one = read_metrics(two_dir), read_metrics(one_dir)
        assert [m["epoch"] for m in m_two] == [m["epoch"] for m in m_one]  # written once
        for key in ("test_acc", "train_acc"):
            assert [m[key] for m in m_two] == [m[key] for m in m_one], (run, key)


_PROTOCOL = r"""
import json, sys, time
from pathlib import Path
import numpy as np
port, pid, root, experiment = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
train_config = sys.argv[5]
from sdcomplex.placement import active_processes, make_placement, start_distributed
start_distributed(f"127.0.0.1:{port}", 2, pid, timeout_s=20)
import jax
from sdcomplex.reproduce import _processes, _runner, load_experiment, run_experiment
from sdcomplex.reproduce._stage import Stage
from sdcomplex.train import TrainConfig, train

config = load_experiment(experiment, "smoke")
placement = make_placement()

def together(ctx):  # a collective over both processes' devices: both must run it
    rows = placement.put_rows(np.arange(8.0))
    return {"sum": float(np.sum(placement.gather(rows)))}

def alone(ctx):  # process 0 by itself, on its own devices; a one-device training run
    # (Orbax checkpoints written and read by this process alone), resumed when finished
    here = make_placement()
    run_dir = ctx.layout.root / "runs" / "alone"
    first = train(TrainConfig.from_json(train_config), run_dir, quiet=True)
    again = train(TrainConfig.from_json(train_config), run_dir, quiet=True)
    (ctx.layout.results / "alone.json").parent.mkdir(parents=True, exist_ok=True)
    (ctx.layout.results / "alone.json").write_text(json.dumps(here.num_devices))
    return {"devices": here.num_devices, "processes": here.num_processes,
            "active": sorted(active_processes()), "status": [first.status, again.status],
            "params": [np.asarray(x).tolist() for x in jax.tree.leaves(again.variables)]}

def fails(ctx):
    raise ValueError("injected failure in process 0's own stage")

def asleep(ctx):
    print("asleep", flush=True)
    time.sleep(300)
    return {}

STAGES = {name: Stage(name, name, {"v": 1}, fn, every_process=name == "together")
          for name, fn in (("together", together), ("alone", alone), ("fails", fails),
                           ("asleep", asleep))}

def step(name, keys, out):
    _runner.plan_stages = lambda cfg: [STAGES[k] for k in keys]
    try:
        report = run_experiment(config, out, quiet=True, placement=placement)
        got = {"ran": list(report.ran), "skipped": list(report.skipped)}
        if pid == 0:
            got["summary"] = [json.loads((out / "stages" / f"{k}.json").read_text())["summary"]
                              for k in report.ran]
    except Exception as err:
        got = {"error": type(err).__name__, "message": str(err)}
    print(json.dumps({"step": name, **got}), flush=True)

step("first", ["together", "alone"], root / "shared")
step("again", ["together", "alone"], root / "shared")
step("fails", ["together", "alone", "fails"], root / "shared")
_processes.SEE_SECONDS = 1.0
step("unshared", ["together"], root / f"own{pid}")
step("killed", ["together", "asleep"], root / "killed")
"""


def _steps(text: str) -> dict[str, dict]:
    lines = [json.loads(line) for line in text.splitlines() if line.startswith('{"step"')]
    return {line.pop("step"): line for line in lines}


@pytest.mark.slow
def test_processes_follow_process_0_and_stop_with_it(tmp_path):
    from run_helpers import leaves_equal, mlp_config

    from sdcomplex.train import train

    config = mlp_config(4, synthetic=(32, 8, 3, 2), batch_size=8, epochs=2, learning_rate=0.1)
    args = (str(tmp_path), str(EXPERIMENT), config.to_json())
    procs = start_processes(_PROTOCOL, tmp_path, *args)
    first, other = procs
    try:
        lines, deadline = [], time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:  # process 0's lines until it is in "asleep"
            line = first.stdout.readline()
            assert line, first.communicate(timeout=60)[1][-3000:]
            lines.append(line)
            if line.strip() == "asleep":
                break
        first.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        out, err = other.communicate(timeout=120)
        ended_after = time.monotonic() - killed_at
        first.wait(timeout=60)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    zero, one = _steps("".join(lines)), _steps(out)

    # 1. the collective stage in both processes, the other in process 0 alone on its devices
    assert zero["first"]["ran"] == ["together", "alone"] and one["first"]["ran"] == ["together"]
    together, alone = zero["first"]["summary"]
    assert together == {"sum": 28.0}
    assert {k: alone[k] for k in ("devices", "processes", "active", "status")} == {
        "devices": 2,
        "processes": 1,
        "active": [0],
        "status": ["completed", "already_complete"],
    }
    # its one-device run, saved and restored by process 0 alone: this process's run, bit for bit
    reference = train(config, tmp_path / "reference", quiet=True)
    assert leaves_equal([np.asarray(x, np.float32) for x in alone["params"]], reference.variables)
    assert json.loads((tmp_path / "shared" / "results" / "alone.json").read_text()) == 2
    # 2. process 0's decisions are the other's: the same command again skips everything
    assert zero["again"] == {"ran": [], "skipped": ["together", "alone"], "summary": []}
    assert one["again"] == {"ran": [], "skipped": ["together"]}
    # 3. process 0 fails in a stage of its own: the other stops with its message
    assert zero["fails"] == {
        "error": "ValueError",
        "message": "injected failure in process 0's own stage",
    }
    assert one["fails"] == {
        "error": "ProcessStopped",
        "message": "process 0 stopped: injected failure in process 0's own stage",
    }
    assert not (tmp_path / "shared" / "stages" / "fails.json").exists()
    # 4. an output directory process 1 does not see: the same one-line error in both
    for got in (zero["unshared"], one["unshared"]):
        assert got["error"] == "ValueError"
        assert got["message"].startswith("process(es) 1 of 2 do not see the output directory")
        assert "file system every process shares" in got["message"]
    # 5. process 0 killed while the other waits for it: JAX's runtime ends the other
    assert "killed" not in one  # it never returned
    assert other.returncode != 0 and ended_after < 60, (other.returncode, ended_after)
    assert "JAX distributed service detected fatal errors" in err, err[-3000:]
