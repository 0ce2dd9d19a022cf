"""Bad input gets a clear error before any training starts, and nothing is written."""

import json
import shutil

import jax
import numpy as np
import pytest
from distill_helpers import STUDENT, TEACHER, student_config

from sdcomplex.data import balanced_subset
from sdcomplex.distill import DistillConfig, distill
from sdcomplex.train import TrainConfig, load_checkpoint, setup_run, train
from sdcomplex.train._metrics import strip_timing
from sdcomplex.train._setup import RunSetup


def _refused(config, run_dir, match, error=ValueError):
    with pytest.raises(error, match=match):
        distill(config, run_dir, quiet=True)
    assert not run_dir.exists()


@pytest.mark.parametrize(
    ("changes", "match", "error"),
    [
        ({"mode": "distil"}, "unknown distillation mode 'distil'; expected one of", ValueError),
        ({"temperature": 0.0}, "temperature must be a finite number > 0, got 0.0", ValueError),
        ({"temperature": -2}, "temperature must be a finite number > 0", ValueError),
        ({"alpha": 1.5}, r"alpha must lie in \[0, 1\], got 1.5", ValueError),
        ({"alpha": -0.1}, r"alpha must lie in \[0, 1\]", ValueError),
        ({"teacher_dir": None}, "mode 'online' needs a teacher run directory", ValueError),
        ({"teacher_epoch": 2}, "teacher_epoch selects the checkpoint of offline KD", ValueError),
        ({"stride": 0}, "stride must be >= 1", ValueError),
        ({"probe_size": 1}, "probe_size must be >= 2", ValueError),
        ({"diagnostics_every": -1}, "diagnostics_every must be >= 0", ValueError),
        ({"student": "mlp"}, "student must be a TrainConfig", TypeError),
        ({"temperature": "4"}, "temperature must be a number", TypeError),
    ],
)
def test_invalid_configs(changes, match, error):
    base = {"student": STUDENT, "mode": "online", "teacher_dir": "t"}
    with pytest.raises(error, match=match):
        DistillConfig(**{**base, **changes})


def test_teacher_directory_problems(teacher_dir, tmp_path):
    run_dir = tmp_path / "student"
    _refused(student_config(tmp_path / "none", "online"), run_dir, "does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    _refused(student_config(empty, "offline"), run_dir, "not a training run directory")
    # a run directory whose checkpoints are gone
    no_ckpt = tmp_path / "no_checkpoints"
    no_ckpt.mkdir()
    for name in ("config.json", "run.json"):
        shutil.copy(teacher_dir / name, no_ckpt / name)
    _refused(student_config(no_ckpt, "online"), run_dir, "has no checkpoints")
    (no_ckpt / "checkpoints").mkdir()
    _refused(student_config(no_ckpt, "none"), run_dir, "has no checkpoints")
    # an unfinished teacher, a missing early-stopping epoch, a missing trajectory checkpoint
    partial = tmp_path / "partial"
    shutil.copytree(teacher_dir, partial)
    shutil.rmtree(partial / "checkpoints" / "epoch_4")
    _refused(student_config(partial, "offline"), run_dir, "unfinished: no checkpoint of its final")
    _refused(
        student_config(teacher_dir, "offline", teacher_epoch=9),
        run_dir,
        r"no checkpoint for epoch 9; checkpoints: \[0, 1, 2, 3, 4\]",
    )
    shutil.copytree(teacher_dir, tmp_path / "gap")
    shutil.rmtree(tmp_path / "gap" / "checkpoints" / "epoch_3")
    _refused(
        student_config(tmp_path / "gap", "online"), run_dir, "checkpoint for epoch 3 is missing"
    )


def test_teacher_trained_on_other_data(teacher_dir, tmp_path):
    run_dir = tmp_path / "student"
    five = STUDENT.replace(binary=True)  # 2 classes where the teacher has 10
    _refused(student_config(teacher_dir, "online", student=five), run_dir, "has 10 classes but")
    other = TrainConfig(
        model="mlp",
        dataset="synthetic",
        data_options={"n_train": 40, "n_test": 20, "dim": 3, "num_classes": 10},
        augment=False,
        batch_size=8,
    )
    _refused(student_config(teacher_dir, "offline", student=other), run_dir, "use the same data")
    # mode none with a teacher checks it too: its targets feed the diagnostics
    _refused(student_config(teacher_dir, "none", student=other), run_dir, "use the same data")
    too_big = student_config(teacher_dir, "online", probe_size=5000)
    _refused(too_big, run_dir, "probe_size 5000 exceeds the 1438 training examples")


def test_run_directory_of_something_else(teacher_dir, tmp_path):
    # a plain training run (a copy of the teacher's) is not resumed as a distillation run
    plain = tmp_path / "plain"
    shutil.copytree(teacher_dir, plain)
    before = sorted(p.name for p in plain.iterdir())
    with pytest.raises(ValueError, match="not a distillation run"):
        distill(student_config(teacher_dir, "online"), plain, quiet=True)
    assert sorted(p.name for p in plain.iterdir()) == before
    # a changed teacher (same directory, another config) is not silently resumed
    fake = tmp_path / "run"
    fake.mkdir()
    config = student_config(teacher_dir, "online")
    record = {
        "config": config.to_dict(),
        "config_hash": config.hash(),
        "teacher": {"config_hash": "0" * 16},
    }
    (fake / "distill.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="has changed since this distillation run started"):
        distill(config, fake, quiet=True)
    (fake / "distill.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"distill.json is damaged \(not valid JSON"):
        distill(config, fake, quiet=True)


@pytest.mark.slow
def test_a_teacher_trained_again_is_not_resumed_from(teacher_dir, tmp_path):
    """The teacher directory trained again under the same config but to other weights (here
    other training data, handed to the trainer; another device count or library version does
    the same) while a student is half done: resuming would mix two teachers' trajectories."""
    teacher = tmp_path / "teacher"
    shutil.copytree(teacher_dir, teacher)
    config = student_config(teacher, "online", diagnostics_every=0)
    run_dir = tmp_path / "student"
    whole = distill(config, run_dir, quiet=True)
    shutil.rmtree(run_dir / "checkpoints" / f"epoch_{STUDENT.epochs}")  # killed before it

    shutil.rmtree(teacher)  # trained again, bit for bit: resumed, to the same end
    train(TEACHER, teacher, quiet=True)
    again = distill(config, run_dir, quiet=True)
    assert again.status == "completed"
    assert strip_timing(again.metrics) == strip_timing(whole.metrics)

    shutil.rmtree(run_dir / "checkpoints" / f"epoch_{STUDENT.epochs}")
    before = (run_dir / "metrics.jsonl").read_bytes()
    shutil.rmtree(teacher)  # trained again to other weights, under the same config
    setup = setup_run(TEACHER)
    subset = RunSetup(balanced_subset(setup.dataset, 100, seed=0), setup.model)
    other = train(TEACHER, teacher, quiet=True, setup=subset)
    assert json.loads((teacher / "run.json").read_text())["config_hash"] == TEACHER.hash()
    assert not np.array_equal(
        jax.tree.leaves(other.variables)[0], jax.tree.leaves(load_checkpoint(teacher_dir, 4))[0]
    )
    with pytest.raises(ValueError, match="was trained again since this distillation run started"):
        distill(config, run_dir, quiet=True)
    assert (run_dir / "metrics.jsonl").read_bytes() == before
