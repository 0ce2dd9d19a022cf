"""``sdcomplex distill``: the student's data defaults to the teacher's, flags and config files,
a run and a rerun, one-line errors with exit status 2."""

import json
import os

import pytest
from cli_helpers import finished_run

from sdcomplex.cli import main
from sdcomplex.distill import DistillConfig, load_config
from sdcomplex.train import TrainConfig, list_checkpoints, load_checkpoint, read_metrics

# a BatchNorm teacher (a 1-D CNN on the synthetic features): its running statistics travel
# with its parameters into the student's step
TEACHER = TrainConfig(
    model="cnn",
    model_options={"channels": [4], "dense_width": 8, "batch_norm": True},
    dataset="synthetic",
    data_options={"n_train": 60, "n_test": 30, "dim": 5, "num_classes": 3},
    augment=False,
    n_per_class=15,
    epochs=2,
    batch_size=15,
    learning_rate=0.2,
)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return finished_run(tmp_path_factory, TEACHER, "cli_distill")


def _printed(capsys, argv):
    assert main([*argv, "--print-config", "--out", "x"]) == 0
    return DistillConfig.from_dict(json.loads(capsys.readouterr().out))


def test_student_data_defaults_to_the_teachers_and_flags_override(teacher, capsys):
    cfg = _printed(
        capsys,
        ["distill", "--teacher", str(teacher), "--student", "mlp", "--mode", "online"]
        + ["--temperature", "2", "--epochs", "5", "--student-option", "hidden_sizes=[4]"],
    )
    student = cfg.student
    assert (cfg.mode, cfg.temperature, cfg.alpha, cfg.teacher_dir) == (
        "online",
        2.0,
        0.0,
        str(teacher),
    )
    # data, subset and preprocessing come from the teacher's config.json ...
    assert (student.dataset, student.data_options, student.n_per_class) == (
        "synthetic",
        TEACHER.data_options,
        15,
    )
    assert student.augment is False
    # ... the optimiser and the model do not
    assert (student.model, student.model_options, student.epochs) == (
        "mlp",
        {"hidden_sizes": [4]},
        5,
    )
    assert student.learning_rate == TrainConfig().learning_rate
    cfg = _printed(
        capsys,
        ["distill", "--teacher", str(teacher), "--mode", "offline", "--teacher-epoch", "1"]
        + ["--alpha", "0.5", "--stride", "2", "--diagnostics-every", "3", "--probe-size", "9"]
        + ["--n-per-class", "10", "--set", "nesterov=true", "--lr", "0.01"],
    )
    assert (cfg.teacher_epoch, cfg.alpha, cfg.stride, cfg.diagnostics_every) == (1, 0.5, 2, 3)
    assert (cfg.probe_size, cfg.student.n_per_class, cfg.student.nesterov) == (9, 10, True)
    assert cfg.student.learning_rate == 0.01


def test_config_files(teacher, tmp_path, capsys):
    # a partial JSON config: the student's data still defaults to the teacher's
    js = tmp_path / "partial.json"
    js.write_text(json.dumps({"teacher_dir": str(teacher), "student": {"model": "mlp"}}))
    cfg = _printed(capsys, ["distill", "--config", str(js), "--mode", "none"])
    assert (cfg.mode, cfg.student.dataset, cfg.student.n_per_class) == ("none", "synthetic", 15)
    # a Python config returning a whole DistillConfig is taken as it is
    py = tmp_path / "exp.py"
    py.write_text(
        "from sdcomplex.distill import DistillConfig\n"
        "from sdcomplex.train import TrainConfig\n"
        "def get_config():\n"
        f"    return DistillConfig(student=TrainConfig(model='lenet5x8', epochs=9),\n"
        f"                         teacher_dir={str(teacher)!r}, temperature=1.0)\n"
    )
    cfg = _printed(capsys, ["distill", "--config", str(py), "--epochs", "11"])
    assert (cfg.student.model, cfg.student.dataset, cfg.student.epochs) == (
        "lenet5x8",
        "cifar10",
        11,
    )
    assert cfg.temperature == 1.0


def test_distill_run_rerun_and_its_record(teacher, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative directories (Orbax itself needs absolute ones)
    out = tmp_path / "student"
    argv = ["distill", "--teacher", os.path.relpath(teacher), "--student", "mlp"]
    argv += ["--student-option", "hidden_sizes=[8]", "--mode", "offline", "--epochs", "2"]
    argv += ["--probe-size", "12", "--batch-size", "15", "--quiet", "--out", "student"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "distilled mlp on synthetic (offline KD, tau 4) to epoch 2" in printed
    assert "train fidelity" in printed
    assert list_checkpoints(out) == [0, 1, 2]
    metrics = read_metrics(out)
    assert [m["teacher_epoch"] for m in metrics] == [2, 2, 2]  # the final teacher
    assert 0 <= metrics[-1]["train_fidelity_final"] <= 1
    config = load_config(out / "distill.json")
    assert config.mode == "offline" and config.student.batch_size == 15
    assert "batch_stats" in load_checkpoint(teacher, 2)  # the teacher's statistics were used
    assert main(argv) == 0
    assert "already complete" in capsys.readouterr().out
    # the same directory with another mode: refused, one line, exit 2
    assert main([*argv[:-3], "--mode", "online", "--out", "student"]) == 2
    err = capsys.readouterr().err
    assert "different config (mode: 'offline' -> 'online')" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--mode", "distil"], "unknown distillation mode 'distil'"),
        (["--temperature", "0"], "temperature must be a finite number > 0"),
        (["--alpha", "1.5"], r"alpha must lie in [0, 1]"),
        (["--num-classes", "5"], "wrong number of classes"),
        (["--data-option", "num_classes=4"], "has 3 classes but the student's data"),
        (["--mode", "online", "--teacher-epoch", "1"], "teacher_epoch selects the checkpoint"),
        (["--set", "colour=1"], "unknown student config field(s) ['colour']"),
    ],
)
def test_bad_input_is_one_line_exit_2(teacher, tmp_path, capsys, flags, match):
    out = tmp_path / "student"
    argv = ["distill", "--teacher", str(teacher), "--student", "mlp", "--batch-size", "15"]
    assert main([*argv, *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sdcomplex distill: error: ") and err.count("\n") == 1
    assert match in err
    assert not out.exists()


def test_teacher_without_checkpoints(tmp_path, capsys):
    for name, match in (("missing", "does not exist"), ("empty", "not a training run directory")):
        if name == "empty":
            (tmp_path / name).mkdir()
        argv = ["distill", "--teacher", str(tmp_path / name), "--out", str(tmp_path / "s")]
        assert main(argv) == 2
        assert match in capsys.readouterr().err
    # mode none needs no teacher at all
    cfg = _printed(capsys, ["distill", "--mode", "none", "--student", "mlp", "--data", "digits"])
    assert cfg.teacher_dir is None and cfg.student.dataset == "digits"
