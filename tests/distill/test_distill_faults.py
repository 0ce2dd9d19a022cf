"""Fault injection for distillation: a changed byte or a truncation in the teacher's files is a
one-line error before the student's directory exists; in the student's ``distill.json`` a
one-line error; in ``ntk_init.npy`` a warning, and the resumed run ends exactly as the
uninterrupted one. (The trainer's files are covered by tests/train/test_train_faults.py.)"""

import json
import re
import shutil

import numpy as np
import pytest
from distill_helpers import student_config
from fault_injection import DAMAGE_MODES, damage_file
from run_helpers import leaves_equal

from sdcomplex.cli import main
from sdcomplex.distill import distill
from sdcomplex.distill._diagnostics import NTK_INIT_FILE
from sdcomplex.distill._run import DISTILL_FILE
from sdcomplex.train import DamagedFile, list_checkpoints, load_checkpoint, read_metrics, train
from sdcomplex.train._metrics import strip_timing

MODES = DAMAGE_MODES


@pytest.mark.parametrize("mode", MODES)
def test_damaged_teacher_is_one_line_before_the_student_directory_exists(
    teacher_dir, tmp_path, capsys, mode
):
    rng = np.random.default_rng(MODES.index(mode))
    final = teacher_dir / "checkpoints" / "epoch_4"
    files = sorted(p for p in final.rglob("*") if p.is_file())
    targets = [teacher_dir / "config.json", teacher_dir / "run.json"]
    targets += [files[int(i)] for i in rng.choice(len(files), size=3, replace=False)]
    for original in targets:
        teacher = tmp_path / "teacher"
        shutil.rmtree(teacher, ignore_errors=True)
        shutil.copytree(teacher_dir, teacher)
        target = teacher / original.relative_to(teacher_dir)
        damage_file(target, mode, rng)
        config = student_config(teacher, "online")
        student = tmp_path / "student"
        with pytest.raises(ValueError) as caught:
            distill(config, student, quiet=True)
        message = str(caught.value)
        assert len(message.splitlines()) == 1 and not student.exists(), message
        if target.parent.name != "teacher":  # a checkpoint file
            assert isinstance(caught.value, DamagedFile) and "teacher checkpoint" in message
            assert str(teacher / "checkpoints" / "epoch_4") in message
        else:
            assert target.name in message
        # the command line: the same error, one line, exit status 2
        (tmp_path / "distill_config.json").write_text(json.dumps(config.to_dict()))
        argv = ["distill", "--config", str(tmp_path / "distill_config.json"), "--quiet"]
        assert main([*argv, "--out", str(student)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "error:" in err and not student.exists(), err


@pytest.fixture
def interrupted(mode_runs, teacher_dir, tmp_path):
    """The online reference run, its config, and a copy of it as a kill after epoch 1 leaves
    it (later checkpoints removed)."""
    runs, _ = mode_runs
    reference = runs["online"]
    run_dir = tmp_path / "run"
    shutil.copytree(reference.run_dir, run_dir)
    for epoch in list_checkpoints(run_dir):
        if epoch > 1:
            shutil.rmtree(run_dir / "checkpoints" / f"epoch_{epoch}")
    return reference, student_config(teacher_dir, "online"), run_dir


@pytest.mark.parametrize("mode", MODES)
def test_damaged_distill_record_is_a_one_line_error(interrupted, mode):
    _, config, run_dir = interrupted
    damage_file(run_dir / DISTILL_FILE, mode, np.random.default_rng(MODES.index(mode)))
    with pytest.raises(ValueError, match=re.escape(f"{run_dir / DISTILL_FILE} is damaged")):
        distill(config, run_dir, quiet=True)
    assert list_checkpoints(run_dir) == [0, 1]  # nothing touched


def test_plain_training_does_not_resume_a_distillation_run(interrupted, capsys):
    # it went on with the labels' cross-entropy: epochs 2-3 without the teacher, and then
    # `distill` reported the run complete
    _, config, run_dir = interrupted
    before = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*"))
    with pytest.raises(ValueError, match="holds a distillation run .*sdcomplex distill"):
        train(config.student, run_dir, quiet=True)
    argv = ["train", "--config", str(run_dir / "config.json"), "--out", str(run_dir), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds a distillation run" in err, err
    assert sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*")) == before


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_damaged_initial_ntk_is_recomputed_and_the_run_ends_identically(interrupted, mode):
    reference, config, run_dir = interrupted
    damage_file(run_dir / NTK_INIT_FILE, mode, np.random.default_rng(MODES.index(mode)))
    with pytest.warns(UserWarning, match="ntk_init.npy was missing or damaged; rewritten"):
        result = distill(config, run_dir, quiet=True)
    assert result.status == "completed"
    ntk, ntk_ref = np.load(run_dir / NTK_INIT_FILE), np.load(reference.run_dir / NTK_INIT_FILE)
    assert np.array_equal(ntk, ntk_ref)
    assert strip_timing(read_metrics(run_dir)) == strip_timing(reference.metrics)
    for epoch in list_checkpoints(reference.run_dir):
        ref = load_checkpoint(reference.run_dir, epoch)
        assert leaves_equal(load_checkpoint(run_dir, epoch), ref)


@pytest.mark.slow
def test_damaged_final_checkpoint_of_a_finished_run_is_distilled_again(
    mode_runs, teacher_dir, tmp_path
):
    # (not trained again with the plain cross-entropy: the KD loss and the teacher schedule)
    runs, _ = mode_runs
    reference = runs["online"]
    run_dir = tmp_path / "run"
    shutil.copytree(reference.run_dir, run_dir)
    final = max(list_checkpoints(run_dir))
    target = next((run_dir / "checkpoints" / f"epoch_{final}" / "variables").rglob("d/*"))
    damage_file(target, "flip", np.random.default_rng(5))
    with pytest.warns(UserWarning, match=f"checkpoint epoch_{final} not used"):
        result = distill(student_config(teacher_dir, "online"), run_dir, quiet=True)
    assert result.status == "completed"
    assert leaves_equal(load_checkpoint(run_dir, final), load_checkpoint(reference.run_dir, final))
    assert strip_timing(result.metrics) == strip_timing(reference.metrics)
