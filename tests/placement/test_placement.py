"""The placement module on simulated CPU devices (subprocesses: the device count is fixed when JAX
initialises) and in a real two-process run with a coordinator on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import numpy as np
import pytest
from device_helpers import free_port, run_on_devices, run_processes, simulated_env
from jax.sharding import Mesh

from sdcomplex.placement import Placement, as_placement, make_placement


def test_one_device_placement_in_process():
    placement = make_placement(num_devices=1)
    batch = placement.put_batch({"x": np.arange(12.0).reshape(4, 3), "y": np.arange(4)})
    np.testing.assert_array_equal(np.asarray(batch["x"]), np.arange(12.0).reshape(4, 3))
    assert placement.local_rows(4) == slice(0, 4)
    assert placement.describe()["num_devices"] == 1


def test_errors_name_the_numbers():
    placement = make_placement()
    with pytest.raises(ValueError, match="num_devices=5 but 1 device"):
        make_placement(num_devices=5)
    with pytest.raises(TypeError, match="integer"):
        make_placement(num_devices=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="coordinator, num_processes and process_id together"):
        from sdcomplex.placement import start_distributed

        start_distributed(coordinator="127.0.0.1:1234")
    placement.check_divides(7)  # one device divides everything


def test_explicit_devices_must_be_distinct_devices():
    device = jax.devices()[0]
    with pytest.raises(ValueError, match="devices must be distinct"):
        make_placement(devices=[device, device])  # (one device's rows would be lost)
    with pytest.raises(TypeError, match="devices must be jax.Device objects, got 'cpu'"):
        make_placement(devices=["cpu"])
    assert make_placement(devices=[device]).devices == (device,)


def test_a_placement_is_a_one_axis_mesh_of_some_devices():
    device = jax.devices()[0]
    with pytest.raises(ValueError, match=r"one axis 'data', got axes \('x',\)"):
        Placement(mesh=Mesh(np.array([device]), ("x",)))  # (the kernels failed on it)
    with pytest.raises(ValueError, match=r"one axis 'data', got axes \('data', 'm'\)"):
        Placement(mesh=Mesh(np.array([device]).reshape(1, 1), ("data", "m")))
    with pytest.raises(ValueError, match="has no devices"):  # (a ZeroDivisionError in kernels)
        as_placement(Mesh(np.array([], dtype=object), ("data",)))
    with pytest.raises(TypeError, match="mesh must be a jax.sharding.Mesh"):
        Placement(mesh=[device])  # type: ignore[arg-type]
    assert as_placement(Mesh(np.array([device]), ("x",))).axis == "x"


@pytest.mark.parametrize(
    ("coordinator", "processes", "message"),
    [
        ("127.0.0.1:port", 2, "coordinator must be host:port with a port in 1..65535"),
        ("127.0.0.1:70000", 2, "coordinator must be host:port with a port in 1..65535"),
        (":1234", 2, "coordinator must be host:port"),
        ("127.0.0.1:1234", 0, "num_processes must be at least 1, got 0"),
    ],
)
def test_a_bad_process_specification_is_refused_before_jax_is_asked(
    coordinator, processes, message
):
    # (JAX is initialised here: a specification that reached jax.distributed would fail with a
    # RuntimeError; in a fresh process it waited for the coordinator and then aborted)
    from sdcomplex.placement import start_distributed

    make_placement()
    with pytest.raises(ValueError, match=message):
        start_distributed(coordinator, processes, 0)


def test_four_simulated_devices():
    result = run_on_devices(
        """
        import json, numpy as np, jax, jax.numpy as jnp
        from sdcomplex.placement import make_placement
        p = make_placement()
        x = np.arange(24.0, dtype=np.float32).reshape(8, 3)
        xs = p.put_batch(x)
        shards = sorted((s.index[0].start, s.data.shape[0]) for s in xs.addressable_shards)
        params = p.replicate({"w": np.ones((3, 2), np.float32)})
        y = jax.jit(lambda w, x: x @ w["w"])(params, xs)
        try:
            p.check_divides(10)
            err = ""
        except ValueError as e:
            err = str(e)
        print(json.dumps({"n": p.num_devices, "shards": shards, "y": np.asarray(y).tolist(),
                          "ysharded": len(y.sharding.device_set), "err": err,
                          "two": make_placement(num_devices=2).num_devices,
                          "describe": p.describe()}))
        """,
        devices=4,
    )
    assert result["n"] == 4 and result["two"] == 2
    assert result["shards"] == [[0, 2], [2, 2], [4, 2], [6, 2]]
    x = np.arange(24.0).reshape(8, 3)
    np.testing.assert_allclose(result["y"], x @ np.ones((3, 2)))
    assert result["ysharded"] == 4
    assert "10 is not divisible by the number of devices 4" in result["err"]
    assert result["describe"]["num_devices"] == 4 and result["describe"]["platform"] == "cpu"


_TWO_PROCESS = """
import json, sys, numpy as np, jax, jax.numpy as jnp
from sdcomplex.placement import make_placement, start_distributed
port, pid = sys.argv[1], int(sys.argv[2])
start_distributed(f"127.0.0.1:{port}", 2, pid, timeout_s=60)
p = make_placement()
rows = p.local_rows(8)
x = np.arange(24.0, dtype=np.float32).reshape(8, 3)
xs = p.put_batch(x[rows], global_size=8)
w = p.replicate(np.full((3,), 2.0, np.float32))
total = jax.jit(lambda w, x: jnp.sum(x @ w), out_shardings=p.replicated())(w, xs)
print(json.dumps({"pid": pid, "rows": [rows.start, rows.stop], "n": p.num_devices,
                  "procs": p.num_processes, "total": float(total)}))
jax.distributed.shutdown()
"""


@pytest.mark.slow
def test_two_processes_on_loopback(tmp_path):
    results = run_processes(_TWO_PROCESS, tmp_path, timeout=120)
    expected = float(np.arange(24.0).reshape(8, 3).sum() * 2.0)
    assert [r["rows"] for r in results] == [[0, 4], [4, 8]]
    assert all(r["n"] == 4 and r["procs"] == 2 for r in results)
    assert all(r["total"] == pytest.approx(expected) for r in results)


_UNEVEN = """
import json, sys
from sdcomplex.placement import make_placement, start_distributed

start_distributed(f"127.0.0.1:{sys.argv[1]}", 2, int(sys.argv[2]), timeout_s=60)
import jax

try:
    make_placement()
    print(json.dumps({"error": None}))
except ValueError as err:
    print(json.dumps({"error": str(err)}))
"""


@pytest.mark.slow
def test_processes_with_different_device_counts_are_refused(tmp_path):
    # JAX's collectives (sync, gathers) lay the devices out as processes x local devices: two
    # processes with 2 and 1 devices failed inside them with "cannot reshape array of size 3"
    script = tmp_path / "uneven.py"
    script.write_text(_UNEVEN)
    port = str(free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), port, str(pid)],
            env=simulated_env(devices),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for pid, devices in ((0, 2), (1, 1))
    ]
    try:
        outputs = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-3000:]
        message = json.loads(out.strip().splitlines()[-1])["error"]
        assert message == (
            "every process must bring the same number of devices to the mesh, got "
            "2 on process 0, 1 on process 1"
        )


def test_rows_of_a_full_host_copy_and_gather_in_process():
    import jax
    from jax.sharding import Mesh, PartitionSpec

    from sdcomplex.placement import Placement, as_placement

    placement = make_placement(num_devices=1)
    x = np.arange(24.0, dtype=np.float64).reshape(2, 4, 3)
    rows = placement.put_rows({"a": x, "b": x[0]}, axis=0)
    assert rows["a"].dtype == np.float32  # canonicalised like every JAX array (no x64)
    np.testing.assert_array_equal(placement.gather(rows)["a"], x.astype(np.float32))
    cols = placement.put_rows(x, axis=1)
    assert cols.sharding.spec == PartitionSpec(None, "data", None)
    assert placement.data_spec(3, 2) == PartitionSpec(None, None, "data")
    assert placement.data_spec(0) == PartitionSpec()
    with pytest.raises(ValueError, match="axis 3 out of range"):
        placement.data_spec(2, 3)
    assert as_placement(placement) is placement
    assert as_placement(None).num_devices == len(jax.devices())
    mesh = Mesh(np.asarray(placement.devices), ("rows",))
    assert as_placement(mesh) == Placement(mesh=mesh, axis="rows")
    with pytest.raises(TypeError, match="kernel_mesh must be None"):
        as_placement("cpu", what="kernel_mesh")
    with pytest.raises(ValueError, match="one axis"):
        as_placement(Mesh(np.asarray(placement.devices).reshape(1, 1), ("a", "b")))


@pytest.mark.slow
def test_rows_split_over_four_simulated_devices():
    result = run_on_devices(
        """
        import json, numpy as np, jax, jax.numpy as jnp
        from sdcomplex.placement import make_placement
        p = make_placement()
        x = np.arange(48.0, dtype=np.float32).reshape(3, 8, 2)
        xs = p.put_rows(x, axis=1)
        shards = sorted((s.index[1].start, s.data.shape) for s in xs.addressable_shards)
        total = p.shard_map(lambda a: jax.lax.psum(jnp.sum(a), p.axis),
                            in_specs=p.data_spec(3, 1), out_specs=p.data_spec(0))(xs)
        try:
            p.put_rows(x, axis=0)
            err = ""
        except ValueError as e:
            err = str(e)
        print(json.dumps({"shards": [[s, list(shape)] for s, shape in shards],
                          "back": np.asarray(p.gather(xs)).tolist(), "total": float(total),
                          "err": err}))
        """,
        devices=4,
    )
    assert result["shards"] == [[0, [3, 2, 2]], [2, [3, 2, 2]], [4, [3, 2, 2]], [6, [3, 2, 2]]]
    np.testing.assert_array_equal(result["back"], np.arange(48.0).reshape(3, 8, 2))
    assert result["total"] == float(np.arange(48.0).sum())
    assert "axis 0 of size 3 is not divisible by the number of devices 4" in result["err"]
