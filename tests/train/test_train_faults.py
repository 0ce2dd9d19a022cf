"""Fault injection in a run directory: one changed byte or a truncation in each kind of file it
holds, then resumption ends exactly as an uninterrupted run or stops with a one-line error.

The kinds of file are collected from a real run directory (so a file kind a new Orbax version
adds is covered too): ``config.json``, ``run.json``, ``metrics.jsonl`` and every kind of file
of an epoch checkpoint and of a preemption checkpoint (hex file names and numbers generalised).
"""

import json
import os
import re
import shutil
import signal
import warnings

import numpy as np
import pytest
from fault_injection import DAMAGE_MODES, damage_file
from run_helpers import leaves_equal, mlp_config

from sdcomplex.cli import main
from sdcomplex.train import (
    DamagedCheckpointWarning,
    DamagedFile,
    Supervision,
    TrainConfig,
    list_checkpoints,
    load_checkpoint,
    read_metrics,
    train,
)
from sdcomplex.train._checkpoint import CheckpointStore
from sdcomplex.train._metrics import strip_timing
from sdcomplex.train._resume import resume_point

CONFIG = mlp_config(8, synthetic=(64, 16, 4, 3), batch_size=16, epochs=3, learning_rate=0.05)
STEPS = 4  # steps per epoch
MODES = DAMAGE_MODES


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The uninterrupted reference run, and the same run stopped by SIGTERM after the first
    step of epoch 3: checkpoints of epochs 0-2 and a preemption checkpoint at step 9."""
    root = tmp_path_factory.mktemp("faults")
    reference = train(CONFIG, root / "reference", quiet=True)

    def stop_in_epoch_3(epoch):
        if epoch == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # handled by the trainer: save and return

    stop = Supervision(variables=stop_in_epoch_3)  # asked for at the start of each epoch
    stopped = train(CONFIG, root / "stopped", quiet=True, supervision=stop)
    assert stopped.status == "preempted" and stopped.signal == signal.SIGTERM
    assert list_checkpoints(root / "stopped") == [0, 1, 2]
    assert [p.name for p in (root / "stopped" / "preempt").iterdir()] == [f"step_{2 * STEPS + 1}"]
    return root, reference


def _kind(relative):
    name = re.sub(r"\b[0-9a-f]{32}\b", "<hex>", relative)
    return re.sub(r"(epoch|step)_\d+", r"\1_<n>", name)


def _kinds(run_dir, under):
    """{kind: [files]} of the files below ``run_dir/under``."""
    out = {}
    for path in sorted(p for p in (run_dir / under).rglob("*") if p.is_file()):
        out.setdefault(_kind(path.relative_to(run_dir).as_posix()), []).append(path)
    return out


def _copy(root, name):
    target = root / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(root / "stopped", target)
    return target


def test_every_checkpoint_file_kind_damaged_is_detected_and_skipped(runs):
    root, _ = runs
    stopped = root / "stopped"
    epoch_kinds = _kinds(stopped, "checkpoints/epoch_2")
    preempt_kinds = _kinds(stopped, f"preempt/step_{2 * STEPS + 1}")
    expected = {"checksums.json", "manifest/metadata", "variables/_METADATA"}
    expected |= {"train/ocdbt.process_0/d/<hex>", "_CHECKPOINT_METADATA"}
    assert {k.split("/", 2)[2] for k in epoch_kinds} >= expected
    assert len(epoch_kinds) == len(preempt_kinds) >= 15
    rng = np.random.default_rng(0)
    # each kind is damaged both ways: flipped in one checkpoint, truncated in the other
    cases = [("epoch", k, f, MODES[j % 2]) for j, (k, f) in enumerate(epoch_kinds.items())]
    cases += [
        ("preempt", k, f, MODES[(j + 1) % 2]) for j, (k, f) in enumerate(preempt_kinds.items())
    ]
    for checkpoint, kind, files, mode in cases:
        run_dir = _copy(root, "damaged")
        target = run_dir / files[int(rng.integers(len(files)))].relative_to(stopped)
        damage_file(target, mode, rng)
        store = CheckpointStore(run_dir)
        try:
            with pytest.warns(DamagedCheckpointWarning, match="not used") as caught:
                point = resume_point(store, run_dir, CONFIG.hash())
        finally:
            store.close()
        case = f"{mode} {kind}"
        assert len(caught) == 1, case
        # the damaged checkpoint is moved aside; the newest intact one is chosen
        if checkpoint == "epoch":
            assert point == ("preempt", 2 * STEPS + 1), case
            assert (run_dir / "damaged" / "epoch_2").is_dir(), case
            assert list_checkpoints(run_dir) == [0, 1], case
        else:
            assert point == ("epoch", 2), case
            assert (run_dir / "damaged" / f"preempt_{2 * STEPS + 1}").is_dir(), case


def test_stale_preemption_checkpoint_half_removed_is_removed_not_quarantined(runs):
    # a kill -9 while a superseded preemption checkpoint was being removed leaves part of it:
    # step 9 is older than epoch 3 of the finished run, so it is removed unread, no warning
    root, _ = runs
    run_dir = root / "stale"
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(root / "reference", run_dir)
    shutil.copytree(root / "stopped" / "preempt", run_dir / "preempt", dirs_exist_ok=True)
    files = sorted(p for p in (run_dir / "preempt").rglob("*") if p.is_file())
    for path in files[::2]:
        path.unlink()
    store = CheckpointStore(run_dir)
    try:
        assert store.preempt_steps() == [2 * STEPS + 1]
        with warnings.catch_warnings():
            warnings.simplefilter("error", DamagedCheckpointWarning)
            assert resume_point(store, run_dir, CONFIG.hash()) == ("epoch", 3)
    finally:
        store.close()
    assert not list((run_dir / "preempt").glob("step_*"))
    assert not (run_dir / "damaged").exists()


def test_a_removed_checkpoint_leaves_the_listing_in_one_rename(tmp_path, monkeypatch):
    # keep_checkpoints: the older epochs are renamed into checkpoints/removed/ before their
    # files are deleted, so a kill during the deletion leaves no listed, partial checkpoint
    monkeypatch.setattr(CheckpointStore, "_empty_removed", lambda self: None)  # (never deleted)
    config = CONFIG.replace(keep_checkpoints=2)
    run_dir = tmp_path / "run"
    train(config, run_dir, quiet=True)
    assert list_checkpoints(run_dir) == [2, 3]
    removed = run_dir / "checkpoints" / "removed"
    assert sorted(p.name for p in removed.iterdir()) == ["epoch_0", "epoch_1"]
    monkeypatch.undo()
    # part of one deleted, as a kill would leave it: the run's next store deletes the rest
    next(p for p in (removed / "epoch_1").rglob("*") if p.is_file()).unlink()
    CheckpointStore(run_dir).close()
    assert not removed.exists() and list_checkpoints(run_dir) == [2, 3]
    assert train(config, run_dir, quiet=True).status == "already_complete"


def _cli_resume(root, run_dir, capsys):
    config_file = root / "config_file.json"
    config_file.write_text(CONFIG.to_json())
    status = main(["train", "--config", str(config_file), "--out", str(run_dir), "--quiet"])
    return status, capsys.readouterr().err.strip()


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_damaged_run_directory_resumes_identically_or_stops_in_one_line(runs, capsys, mode):
    root, reference = runs
    stopped = root / "stopped"
    rng = np.random.default_rng(MODES.index(mode))
    checkpoint_files = _kinds(stopped, "checkpoints/epoch_2") | _kinds(stopped, "preempt")
    kinds = sorted(checkpoint_files)
    picked = [kinds[int(rng.integers(len(kinds)))]]
    targets = [stopped / "config.json", stopped / "run.json", stopped / "metrics.jsonl"]
    targets += [checkpoint_files[k][0] for k in picked]
    outcomes = {}
    for original in targets:
        run_dir = _copy(root, f"e2e_{mode}")
        target = run_dir / original.relative_to(stopped)
        damage_file(target, mode, rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DamagedCheckpointWarning)
            status, err = _cli_resume(root, run_dir, capsys)
        name = original.relative_to(stopped).as_posix()
        if status == 0:  # resumed from an intact checkpoint: exactly the reference run
            # (a damaged epoch_2 is not rewritten when the run resumes from the newer preempt)
            assert {0, 1, 3} <= set(list_checkpoints(run_dir)), name
            for epoch in list_checkpoints(run_dir):
                ref = load_checkpoint(reference.run_dir, epoch)
                assert leaves_equal(load_checkpoint(run_dir, epoch), ref), name
            assert strip_timing(read_metrics(run_dir)) == strip_timing(reference.metrics), name
            outcomes[name] = "identical"
        else:
            assert status == 2, (name, err)
            lines = [line for line in err.splitlines() if "warning:" not in line]
            assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err, name
            assert target.name in lines[0], (name, lines)
            outcomes[name] = "error"
    # the records that cannot be recomputed stop with an error; checkpoints and metrics lines
    # (recomputed from an earlier checkpoint) resume identically
    assert outcomes["run.json"] == "error"
    assert outcomes["metrics.jsonl"] == "identical"
    assert all(outcomes[f.relative_to(stopped).as_posix()] == "identical" for f in targets[3:])


def test_edited_config_json_is_refused_with_the_difference(runs, capsys):
    root, _ = runs
    run_dir = _copy(root, "edited")
    data = json.loads((run_dir / "config.json").read_text())
    data["model_options"] = {"hidden_sizes": [16]}
    (run_dir / "config.json").write_text(json.dumps(data))
    edited = TrainConfig.from_dict(data)
    with pytest.raises(ValueError, match=r"was changed after the run started") as caught:
        train(edited, run_dir, quiet=True)
    assert "model_options: {'hidden_sizes': [8]} -> {'hidden_sizes': [16]}" in str(caught.value)
    # the CLI says the same in one line, and nothing is touched
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")}
    (root / "edited.json").write_text(edited.to_json())
    argv = ["train", "--config", str(root / "edited.json"), "--out", str(run_dir), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "hidden_sizes" in err
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")} == before


def test_damaged_final_checkpoint_of_a_finished_run_is_retrained(runs):
    root, reference = runs
    run_dir = root / "finished"
    shutil.copytree(reference.run_dir, run_dir)
    target = next((run_dir / "checkpoints" / "epoch_3" / "variables").rglob("d/*"))
    damage_file(target, "flip", np.random.default_rng(3))
    with pytest.raises(DamagedFile, match=re.escape(target.name)):
        load_checkpoint(run_dir, 3)
    with pytest.warns(DamagedCheckpointWarning, match="checkpoint epoch_3 not used"):
        result = train(CONFIG, run_dir, quiet=True)
    assert result.status == "completed"
    assert leaves_equal(result.variables, reference.variables)
    assert strip_timing(result.metrics) == strip_timing(reference.metrics)
