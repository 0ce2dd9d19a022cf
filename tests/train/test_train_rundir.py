"""The run directory type: create, verify the same config or refuse, sealed metadata, contents."""

import json

import pytest

from sdcomplex.train import DamagedFile, RunDirectory, TrainConfig
from sdcomplex.train._rundir import CONFIG_FILE, RUN_FILE, TRAIN_RUN

CONFIG = TrainConfig(
    model="mlp", dataset="synthetic", augment=False, epochs=2, batch_size=8, learning_rate=0.1
)
EXTRA = TRAIN_RUN._replace(record_file="extra.json")  # the training config in another record


def test_new_directory_is_created_then_recognised(tmp_path):
    run = RunDirectory(tmp_path / "a" / "run")
    assert run.is_empty() and run.verify(CONFIG) is False  # nothing written by verify
    assert not run.path.exists()
    run.create(CONFIG)
    assert json.loads(run.config_file.read_text()) == CONFIG.to_dict()
    assert run.verify(CONFIG) is True
    assert run.checkpoints() == [] and not run.metrics_file.exists()
    run.write_record(CONFIG, steps_per_epoch=3)
    info = RunDirectory(run.path).read_metadata(RUN_FILE)
    assert info["config_hash"] == CONFIG.hash() and info["steps_per_epoch"] == 3
    assert RunDirectory(run.path).read_config() == CONFIG
    with pytest.raises(FileExistsError):  # written once
        run.write_record(CONFIG)


def test_a_different_config_is_refused_with_its_differences(tmp_path):
    run = RunDirectory(tmp_path)
    run.create(CONFIG)
    other = CONFIG.replace(epochs=3, seed=4)
    with pytest.raises(ValueError, match=r"holds a run with a different config \(epochs: 2 -> 3"):
        run.verify(other)
    run.refuse_different(CONFIG, CONFIG, TRAIN_RUN)  # the same config: no refusal


def test_anything_else_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=f"not an sdcomplex run directory \\(no {CONFIG_FILE}\\)"):
        RunDirectory(tmp_path).verify(CONFIG)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_sealed_metadata_round_trip_and_damage(tmp_path):
    run = RunDirectory(tmp_path)
    assert run.read_metadata("extra.json") is None
    run.write_metadata({"config": CONFIG.to_dict(), "value": 1.5}, "extra.json")
    assert run.read_metadata("extra.json")["value"] == 1.5
    # the record of the same config is recognised; another config is refused
    assert run.verify_record(CONFIG, EXTRA)["value"] == 1.5
    with pytest.raises(ValueError, match=r"different config \(learning_rate: 0.1 -> 0.2\)"):
        run.verify_record(CONFIG.replace(learning_rate=0.2), EXTRA)
    # one changed value breaks the seal
    path = tmp_path / "extra.json"
    path.write_text(path.read_text().replace("1.5", "2.5"))
    with pytest.raises(DamagedFile, match="seal mismatch"):
        run.read_metadata("extra.json")


def test_a_record_without_a_valid_config_is_an_error(tmp_path):
    run = RunDirectory(tmp_path)
    run.write_metadata({"config": {"model": 3}}, "bad.json")
    with pytest.raises(ValueError, match="bad.json is not a valid run record"):
        run.verify_record(CONFIG, TRAIN_RUN._replace(record_file="bad.json"))


def test_an_edited_config_file_is_refused(tmp_path):
    run = RunDirectory(tmp_path)
    run.create(CONFIG)
    run.write_record(CONFIG)
    edited = CONFIG.replace(learning_rate=0.3)
    run.config_file.write_text(edited.to_json())
    with pytest.raises(ValueError, match=f"changed after the run started.*{RUN_FILE}"):
        run.read_config()


def test_dataset_info_is_read_from_the_run_record(tmp_path):
    from sdcomplex.data import load_dataset

    info = load_dataset("synthetic").info
    run = RunDirectory(tmp_path / "run")
    run.create(CONFIG)
    run.write_record(CONFIG, dataset=info.to_dict())
    assert run.dataset_info() == info
    other = RunDirectory(tmp_path / "other")
    other.create(CONFIG)
    other.write_record(CONFIG)  # no data set recorded
    with pytest.raises(ValueError, match="run.json has no valid data set description"):
        other.dataset_info()
