"""An output directory of the runner is a run directory of the experiment kind: created, or
recognised as the same config, or refused naming the differences; its record sealed; records
written before seals existed still read. No stage runs here."""

import json
import time

import pytest

from sdcomplex._io import atomic_write_json
from sdcomplex.reproduce import read_status
from sdcomplex.reproduce._runner import prepare_out_dir
from sdcomplex.train import DamagedFile, RunDirectory
from sdcomplex.train._checkpoint import library_versions

pytest_plugins = ["reproduce_helpers"]  # tiny_config


def _contents(root):
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


def test_created_then_recognised_with_a_sealed_record(tmp_path, tiny_config):
    out = tmp_path / "out"
    layout = prepare_out_dir(out, tiny_config)
    assert layout.root == out.resolve()
    assert json.loads((out / "config.json").read_text()) == tiny_config.to_dict()
    record = json.loads((out / "experiment.json").read_text())
    assert (record["name"], record["scale"]) == ("tiny", "smoke")
    assert record["config_hash"] == tiny_config.hash() and "sha256" in record
    assert record["config"] == tiny_config.to_dict()
    before = _contents(out)
    assert prepare_out_dir(out, tiny_config) == layout
    assert _contents(out) == before  # recognised: nothing written again
    status = read_status(out)
    assert (status["name"], status["scale"], status["config_hash"]) == (
        "tiny",
        "smoke",
        tiny_config.hash(),
    )


def test_the_unsealed_record_of_earlier_versions_is_read(tmp_path, tiny_config):
    # exactly what the runner wrote before experiment.json was sealed
    out = tmp_path / "old"
    out.mkdir()
    (out / "config.json").write_text(tiny_config.to_json())
    old = {
        "name": tiny_config.name,
        "scale": tiny_config.scale,
        "config_hash": tiny_config.hash(),
        "created": time.time(),
        "versions": library_versions(),
    }
    atomic_write_json(out / "experiment.json", old)
    before = _contents(out)
    prepare_out_dir(out, tiny_config)
    assert read_status(out)["config_hash"] == tiny_config.hash()
    other = tiny_config.replace(student=tiny_config.student.replace(epochs=4))
    with pytest.raises(ValueError, match=r"holds an experiment with a different config \("):
        prepare_out_dir(out, other)
    assert _contents(out) == before  # neither rewritten nor sealed


def test_a_long_list_of_differences_is_cut_after_five(tmp_path, tiny_config):
    prepare_out_dir(tmp_path, tiny_config)
    other = tiny_config.replace(
        notes="x",
        description="another",
        teacher=tiny_config.teacher.replace(epochs=4, seed=1),
        student=tiny_config.student.replace(epochs=4, seed=1, learning_rate=0.1),
    )
    assert len(tiny_config.differences(other)) == 7
    expected = (
        r"different config \(description: 'tiny test experiment' -> 'another'; notes: '' -> 'x'; "
        r"student\.epochs: 3 -> 4; student\.learning_rate: 0\.05 -> 0\.1; student\.seed: 0 -> 1; "
        r"and 2 more\); use another output directory"
    )
    with pytest.raises(ValueError, match=expected):
        prepare_out_dir(tmp_path, other)


def test_an_edited_config_file_is_refused_naming_the_edit(tmp_path, tiny_config):
    prepare_out_dir(tmp_path, tiny_config)
    edited = tiny_config.replace(student=tiny_config.student.replace(learning_rate=0.1))
    (tmp_path / "config.json").write_text(edited.to_json())
    expected = r"changed after the experiment started.*student\.learning_rate: 0\.05 -> 0\.1"
    for call in (lambda: prepare_out_dir(tmp_path, tiny_config), lambda: read_status(tmp_path)):
        with pytest.raises(ValueError, match=expected):
            call()


def test_a_changed_record_is_damage(tmp_path, tiny_config):
    prepare_out_dir(tmp_path, tiny_config)
    record = tmp_path / "experiment.json"
    record.write_text(record.read_text().replace('"scale": "smoke"', '"scale": "quick"'))
    with pytest.raises(DamagedFile, match="experiment.json is damaged .*seal mismatch"):
        prepare_out_dir(tmp_path, tiny_config)


def test_a_run_killed_between_its_two_files_is_completed(tmp_path, tiny_config):
    # killed after config.json, before experiment.json (the earlier runner refused this)
    RunDirectory(tmp_path).create(tiny_config)
    prepare_out_dir(tmp_path, tiny_config)
    assert json.loads((tmp_path / "experiment.json").read_text())["name"] == "tiny"
