"""Data-parallel training and distillation on four simulated CPU devices against one device.

One subprocess (the device count is fixed when JAX starts) trains a tiny MLP on synthetic data
and a tiny BatchNorm CNN with crop augmentation on a digits subset, on four devices and on one,
distils a student offline and online from the CNN on both, continues checkpoints written on
four devices on one and vice versa, and tries a batch four devices do not divide. The parent
checks: parameters within 1e-5 relative and the same metrics to float tolerance (the same
global batches, augmentation and BatchNorm statistics of the global batch), resumption on the
same device count bit for bit, the device count recorded in ``run.json``, and the error
naming both numbers before anything is written.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from device_helpers import run_on_devices, run_processes

_SCRIPT = r"""
import json, shutil, sys
from pathlib import Path
import jax, jax.numpy as jnp, numpy as np
from sdcomplex.distill import DistillConfig, distill
from sdcomplex.placement import make_placement
from sdcomplex.train import RunDirectory, TrainConfig, read_metrics, train
from sdcomplex.train._metrics import strip_timing
from sdcomplex.train._step import run_preprocess
from sdcomplex.train._setup import setup_run

root = Path(sys.argv[1])
four, one = make_placement(), make_placement(num_devices=1)
assert four.num_devices == 4
MLP = TrainConfig(model="mlp", model_options={"hidden_sizes": [8]}, dataset="synthetic",
                  data_options={"n_train": 64, "n_test": 24, "dim": 5, "num_classes": 3},
                  augment=False, epochs=2, batch_size=16, learning_rate=0.1)
CNN = TrainConfig(model="cnn", model_options={"channels": [4], "dense_width": None,
                  "batch_norm": True}, dataset="digits", n_per_class=8, n_test_per_class=4,
                  epochs=2, batch_size=16, learning_rate=0.05, eval_batch_size=30)

def leaves(variables):
    return [np.asarray(x, np.float64) for x in jax.tree.leaves(variables)]

def rel(a, b):  # largest difference relative to the largest parameter (a bias that a
    # BatchNorm follows has no gradient but float noise: no per-leaf scale)
    pairs = list(zip(leaves(a), leaves(b), strict=True))
    scale = max(float(np.max(np.abs(y))) for _, y in pairs)
    return max(float(np.max(np.abs(x - y))) for x, y in pairs) / scale

def metrics_gap(d1, d2):
    m1, m2 = strip_timing(read_metrics(d1)), strip_timing(read_metrics(d2))
    assert [sorted(m) for m in m1] == [sorted(m) for m in m2]
    gap = 0.0
    for a, b in zip(m1, m2, strict=True):
        for k, v in a.items():
            if isinstance(v, float):
                gap = max(gap, abs(v - b[k]) / max(abs(b[k]), 1e-12))
            elif v != b[k]:
                gap = float("inf")
    return gap

def same_bits(a, b):
    return all(np.array_equal(x, y) for x, y in zip(leaves(a), leaves(b), strict=True))

out = {}
runs = {}
for name, cfg in (("mlp", MLP), ("cnn", CNN)):
    for tag, placement in (("4", four), ("1", one)):
        runs[name + tag] = train(cfg, root / f"{name}{tag}", quiet=True, placement=placement)
    out[name] = {"rel": rel(runs[name + "4"].variables, runs[name + "1"].variables),
                 "metrics": metrics_gap(root / f"{name}4", root / f"{name}1"),
                 "recorded": [RunDirectory(root / f"{name}{t}").read_metadata()["placement"]
                              ["num_devices"] for t in "41"]}

# The augmented, normalised batch of a step: the same bits on 4 devices as on 1.
setup = setup_run(CNN)
pre, _ = run_preprocess(CNN, setup.dataset.info)
raw = setup.dataset.x_train[:16]
key = jax.random.fold_in(jax.random.key(3), 5)
aug = [np.asarray(jax.jit(pre)(p.replicate_key(key), p.put_batch(raw))) for p in (four, one)]
out["augment_equal"] = bool(np.array_equal(aug[0], aug[1]))
out["augment_changes"] = bool(not np.array_equal(aug[1], np.asarray(jax.jit(pre)(
    jax.random.key(4), raw))))

# Offline and online KD from the CNN teacher (trained on one device), on 4 and on 1 device.
student = MLP.replace(dataset="digits", data_options={}, n_per_class=8, n_test_per_class=4,
                      eval_batch_size=30)
for mode in ("offline", "online"):
    dcfg = DistillConfig(student=student, teacher_dir=str(root / "cnn1"), mode=mode,
                         diagnostics_every=0)
    res = {t: distill(dcfg, root / f"{mode}{t}", quiet=True, placement=p)
           for t, p in (("4", four), ("1", one))}
    out[mode] = {"rel": rel(res["4"].variables, res["1"].variables),
                 "metrics": metrics_gap(root / f"{mode}4", root / f"{mode}1")}

# A checkpoint of epoch 1 written on 4 devices continued on 1, and vice versa; and on the same
# device count (bit for bit).
for src, dst, placement in (("4", "1", one), ("1", "4", four), ("4", "4", four)):
    run_dir = root / f"cont{src}{dst}"
    shutil.copytree(root / f"cnn{src}", run_dir)
    shutil.rmtree(run_dir / "checkpoints" / "epoch_2")
    resumed = train(CNN, run_dir, quiet=True, placement=placement)
    ref = runs["cnn" + dst]
    out[f"cont{src}{dst}"] = {"status": resumed.status, "rel": rel(resumed.variables,
                              ref.variables), "bits": same_bits(resumed.variables, ref.variables),
                              "metrics": metrics_gap(run_dir, root / f"cnn{dst}")}

try:
    train(MLP.replace(batch_size=18), root / "odd", quiet=True, placement=four)
    out["odd"] = "no error"
except ValueError as err:
    out["odd"] = str(err)
out["odd_written"] = (root / "odd").exists()
print(json.dumps(out))
"""


def _four_device_results(root: Path) -> dict:
    return run_on_devices(_SCRIPT, 4, str(root), timeout=600)


@pytest.mark.slow
def test_four_devices_train_as_one(tmp_path):
    """One subprocess (one JAX start, whichever xdist worker runs it) for every check."""
    results = _four_device_results(tmp_path)
    # The same global batches: parameters within 1e-5 relative, metrics to float tolerance.
    for name in ("mlp", "cnn", "offline", "online"):
        assert results[name]["rel"] < 1e-5, (name, results[name])
        assert results[name]["metrics"] < 1e-4, (name, results[name])
    # run.json records the device count.
    assert results["mlp"]["recorded"] == [4, 1]
    assert results["cnn"]["recorded"] == [4, 1]
    # The augmented batch of a step has the same bits on 4 devices as on 1, and the crops
    # depend on the key (the check has teeth).
    assert results["augment_equal"] and results["augment_changes"]
    # Epoch 1 written on one device count, epoch 2 trained on another: the run of the other
    # device count (bit for bit when the count is the same).
    for pair in ("cont41", "cont14", "cont44"):
        got = results[pair]
        assert got["status"] == "completed", (pair, got)
        assert got["rel"] < 1e-5 and got["metrics"] < 1e-4, (pair, got)
    assert results["cont44"]["bits"] and results["cont44"]["metrics"] == 0.0
    # A batch the device count does not divide: refused before anything is written.
    assert "batch_size 18 is not divisible by the number of devices 4" in results["odd"]
    assert not results["odd_written"]


def test_placement_must_be_a_placement(tmp_path):
    from run_helpers import mlp_config

    from sdcomplex.train import train

    cfg = mlp_config(4, synthetic=(24, 8, 3, 2), batch_size=8, epochs=1)
    with pytest.raises(TypeError, match="placement must be a Placement"):
        train(cfg, tmp_path / "c", quiet=True, placement=4)  # type: ignore[arg-type]
    assert not (tmp_path / "c").exists()


_FINISHED_ON_THREE = r"""
import json, sys
from pathlib import Path
from sdcomplex.distill import DistillConfig, distill
from sdcomplex.placement import make_placement
from sdcomplex.train import TrainConfig, train

root = Path(sys.argv[1])
three, one = make_placement(), make_placement(num_devices=1)
assert three.num_devices == 3
cfg = TrainConfig(model="mlp", model_options={"hidden_sizes": [8]}, dataset="synthetic",
                  data_options={"n_train": 32, "n_test": 8, "dim": 5, "num_classes": 3},
                  augment=False, epochs=1, batch_size=8)
kd = DistillConfig(student=cfg.replace(model_options={"hidden_sizes": [4]}), mode="offline",
                   teacher_dir=str(root / "teacher"), probe_size=6)
train(cfg, root / "teacher", quiet=True, placement=one)
distill(kd, root / "student", quiet=True, placement=one)
out = {"train": train(cfg, root / "teacher", quiet=True, placement=three).status,
       "distill": distill(kd, root / "student", quiet=True, placement=three).status}
for name, run in (("train_new", lambda: train(cfg, root / "new_t", quiet=True, placement=three)),
                  ("distill_new", lambda: distill(kd, root / "new_s", quiet=True,
                                                  placement=three))):
    try:
        run()
        out[name] = "trained"
    except ValueError as err:
        out[name] = str(err)
out["written"] = [(root / d).exists() for d in ("new_t", "new_s")]
print(json.dumps(out))
"""


@pytest.mark.slow
def test_a_finished_run_is_returned_on_a_device_count_not_dividing_its_batch(tmp_path):
    # Nothing needs training, so no device count is refused; a run that does need training
    # is still refused before anything is written.
    got = run_on_devices(_FINISHED_ON_THREE, 3, str(tmp_path))
    assert got["train"] == "already_complete" and got["distill"] == "already_complete"
    for name in ("train_new", "distill_new"):
        assert "batch_size 8 is not divisible by the number of devices 3" in got[name]
    assert got["written"] == [False, False]


_TWO_PROCESS = r"""
import json, sys
import jax, numpy as np
from sdcomplex.placement import make_placement, start_distributed
port, pid, run_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
start_distributed(f"127.0.0.1:{port}", 2, pid, timeout_s=60)
from sdcomplex.train import TrainConfig, train
cfg = TrainConfig.from_dict(json.loads(sys.argv[4]))
placement = make_placement()
result = train(cfg, run_dir, quiet=True, placement=placement)
leaves = [np.asarray(x).tolist() for x in jax.tree.leaves(result.variables)]
print(json.dumps({"pid": pid, "n": placement.num_devices, "rows": placement.local_rows(16).start,
                  "status": result.status, "leaves": leaves}))
jax.distributed.shutdown()
"""


@pytest.mark.slow
def test_two_processes_train_as_one(tmp_path):
    """2 processes x 2 CPU devices on 127.0.0.1 train 2 epochs into one run directory (process 0
    writes the files, each process gathers only its rows of every batch) and end with the
    parameters of a one-device run; the directory resumes on one device as finished."""
    import jax
    import numpy as np
    from run_helpers import mlp_config

    from sdcomplex.train import RunDirectory, read_metrics, train
    from sdcomplex.train._metrics import strip_timing

    cfg = mlp_config(8, synthetic=(64, 24, 5, 3), batch_size=16, epochs=2, learning_rate=0.1)
    run_dir = tmp_path / "mp"
    results = run_processes(_TWO_PROCESS, tmp_path, str(run_dir), cfg.to_json())
    assert [r["n"] for r in results] == [4, 4] and [r["rows"] for r in results] == [0, 8]
    assert all(r["status"] == "completed" for r in results)
    reference = train(cfg, tmp_path / "one", quiet=True)
    ref = [np.asarray(x) for x in jax.tree.leaves(reference.variables)]
    scale = max(float(np.max(np.abs(x))) for x in ref)
    for r in results:
        got = [np.asarray(x) for x in r["leaves"]]
        assert max(float(np.max(np.abs(a - b))) for a, b in zip(got, ref, strict=True)) < (
            1e-5 * scale
        )
    info = RunDirectory(run_dir).read_metadata()
    assert info["placement"]["num_devices"] == 4 and info["placement"]["num_processes"] == 2
    ours = strip_timing(read_metrics(run_dir))
    theirs = strip_timing(read_metrics(reference.run_dir))
    assert [m["epoch"] for m in ours] == [0, 1, 2]  # one line per epoch: process 0 writes
    for a, b in zip(ours, theirs, strict=True):
        assert a["test_acc"] == b["test_acc"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    again = train(cfg, run_dir, quiet=True)  # restored on one device: finished
    assert again.status == "already_complete"
