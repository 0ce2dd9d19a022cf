"""DistillConfig (JSON round trip, hash, config files), the probe subset, diagnostic epochs."""

import json

import numpy as np
import pytest
from distill_helpers import STUDENT

from sdcomplex.distill import DistillConfig, load_config
from sdcomplex.distill._diagnostics import diagnostic_epochs, probe_indices
from sdcomplex.train import TrainConfig

CONFIG = DistillConfig(student=STUDENT, mode="offline", teacher_dir="runs/t", teacher_epoch=3)


def test_round_trip_and_hash():
    data = json.loads(json.dumps(CONFIG.to_dict()))
    assert data["student"]["model_options"] == {"hidden_sizes": [32]}
    again = DistillConfig.from_dict(data)
    assert again == CONFIG and again.hash() == CONFIG.hash()
    # ints and floats, dicts and TrainConfigs: the same config, the same hash
    same = DistillConfig(student=STUDENT.to_dict(), mode="offline", teacher_dir="runs/t",
                         teacher_epoch=3, temperature=4, alpha=0)  # fmt: skip
    assert same == CONFIG and same.hash() == CONFIG.hash()
    other = CONFIG.replace(temperature=1.0, student=STUDENT.replace(seed=1))
    assert other.hash() != CONFIG.hash()
    assert CONFIG.differences(other) == [
        "student.seed: 0 -> 1",
        "temperature: 4.0 -> 1.0",
    ]
    # a partial student takes the TrainConfig defaults
    partial = DistillConfig.from_dict({"student": {"model": "lenet5x8"}, "mode": "none"})
    assert partial.student == TrainConfig(model="lenet5x8") and partial.teacher_dir is None
    with pytest.raises(ValueError, match=r"unknown distillation config field\(s\) \['tau'\]"):
        DistillConfig.from_dict({"student": {}, "tau": 4})
    with pytest.raises(ValueError, match="needs a 'student'"):
        DistillConfig.from_dict({"mode": "none"})
    with pytest.raises(ValueError, match="unknown config field"):
        DistillConfig.from_dict({"student": {"modell": "mlp"}})


def test_config_files(tmp_path):
    js = tmp_path / "c.json"
    js.write_text(CONFIG.to_json())
    assert load_config(js) == CONFIG
    py = tmp_path / "c.py"
    py.write_text(
        "from sdcomplex.distill import DistillConfig\n"
        "from sdcomplex.train import TrainConfig\n"
        "def get_config():\n"
        "    return DistillConfig(student=TrainConfig(model='lenet5x8', epochs=7),\n"
        "                         teacher_dir='runs/resnet56', temperature=1.0)\n"
    )
    cfg = load_config(py)
    assert (cfg.student.model, cfg.student.epochs, cfg.mode, cfg.temperature) == (
        "lenet5x8",
        7,
        "online",
        1.0,
    )
    dict_py = tmp_path / "d.py"
    dict_py.write_text("def get_config():\n    return {'student': {'epochs': 2}, 'mode': 'none'}\n")
    assert load_config(dict_py).student.epochs == 2
    # a run directory's distill.json record
    record = tmp_path / "distill.json"
    record.write_text(json.dumps({"config": CONFIG.to_dict(), "config_hash": "h", "mode": "x"}))
    assert load_config(record) == CONFIG
    for path, match in [
        (tmp_path / "missing.json", "does not exist"),
        (tmp_path / "c.yaml", "expected a .json or a .py file"),
    ]:
        if path.suffix == ".yaml":
            path.write_text("")
        with pytest.raises(ValueError, match=match):
            load_config(path)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json, line 1 column 2: invalid JSON"):
        load_config(tmp_path / "bad.json")
    (tmp_path / "none.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="defines no get_config"):
        load_config(tmp_path / "none.py")


def test_probe_is_class_balanced_deterministic_and_seeded():
    labels = np.repeat(np.arange(5), [50, 40, 30, 20, 3])  # an unbalanced training set
    probe = probe_indices(labels, 64, 5, seed=0)
    assert probe.shape == (64,) and np.all(np.diff(probe) > 0)  # sorted, no repeats
    counts = np.bincount(labels[probe], minlength=5)
    assert counts[4] == 3 and sorted(counts[:4].tolist()) == [15, 15, 15, 16]
    assert np.array_equal(probe, probe_indices(labels, 64, 5, seed=0))
    assert not np.array_equal(probe, probe_indices(labels, 64, 5, seed=1))
    balanced = probe_indices(np.arange(100) % 4, 20, 4, seed=3)
    assert np.bincount((np.arange(100) % 4)[balanced]).tolist() == [5, 5, 5, 5]
    assert len(probe_indices(labels, len(labels), 5, seed=0)) == len(labels)
    with pytest.raises(ValueError, match="probe_size 144 exceeds the 143 training examples"):
        probe_indices(labels, 144, 5, seed=0)


def test_diagnostic_epochs():
    assert diagnostic_epochs(5, 1) == (0, 1, 2, 3, 4, 5)
    assert diagnostic_epochs(5, 2) == (0, 2, 4, 5)
    assert diagnostic_epochs(5, 10) == (0, 5)
    assert diagnostic_epochs(5, 0) == ()


def test_numpy_scalars_are_accepted_as_python_numbers():
    numpy = CONFIG.replace(
        temperature=np.float32(2.0),
        stride=np.int64(1),
        probe_size=np.int32(64),
        teacher_epoch=np.int64(3),
    )
    plain = CONFIG.replace(temperature=2.0, stride=1, probe_size=64, teacher_epoch=3)
    assert numpy == plain and numpy.hash() == plain.hash()
    assert type(numpy.probe_size) is int and type(numpy.temperature) is float
