"""Experiment configs: validation, JSON round trip, hashes, and the experiment files."""

import pytest

from sdcomplex.reproduce import (
    PAPER_METHODS,
    SCALES,
    BoundSpec,
    ComplexitySpec,
    DistillationSpec,
    ExperimentConfig,
    StudentCapacity,
    StudentMethod,
    available_experiments,
    load_experiment,
)
from sdcomplex.reproduce._runtimes import format_runtime
from sdcomplex.train import TrainConfig

TEACHER = TrainConfig(model="cnn", dataset="mnist1d", augment=False, epochs=2)
STUDENT = TrainConfig(model="mlp", dataset="mnist1d", augment=False, epochs=2)


def _config(**changes):
    base = {
        "name": "exp",
        "scale": "smoke",
        "description": "d",
        "claims": ("C3",),
        "teacher": TEACHER,
        "student": STUDENT,
        "distillation": DistillationSpec(),
    }
    return ExperimentConfig(**{**base, **changes})


def test_round_trip_and_hash():
    cfg = _config(complexity=ComplexitySpec(trained_students=("none", "online_t4")))
    again = ExperimentConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.hash() == cfg.hash()
    assert len(cfg.hash()) == 16
    assert cfg.replace(notes="x").hash() != cfg.hash()
    assert cfg.to_dict()["distillation"]["methods"][4] == {"mode": "online", "temperature": 4.0}


def test_methods():
    assert [m.key for m in PAPER_METHODS] == [
        "none",
        "offline_t1",
        "offline_t4",
        "online_t1",
        "online_t4",
    ]
    assert StudentMethod("online", 0.5).key == "online_t0p5"
    assert StudentMethod("offline", 4).label == "offline KD (τ=4)"
    with pytest.raises(ValueError, match="mode"):
        StudentMethod("teacher")
    with pytest.raises(ValueError, match="> 0"):
        StudentMethod("online", 0.0)


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"scale": "huge"}, ValueError, "scale"),
        ({"name": "a b"}, ValueError, "identifier"),
        ({"distillation": None}, ValueError, "no analysis"),
        ({"student": STUDENT.replace(dataset="digits")}, ValueError, "same data.*dataset"),
        ({"teacher": TEACHER.replace(checkpoint_every=2)}, ValueError, "checkpoint_every=1"),
        ({"teacher": TEACHER.replace(keep_checkpoints=3)}, ValueError, "keep every checkpoint"),
        ({"complexity": ComplexitySpec(trained_students=("online_t8",))}, ValueError, "online_t8"),
        ({"teacher": None}, ValueError, "teacher is required"),
        ({"bound": "x"}, TypeError, "BoundSpec"),
        ({"distillation": DistillationSpec(diagnostics_every=0)}, ValueError, "diagnostics"),
    ],
)
def test_invalid_configs(changes, error, match):
    with pytest.raises(error, match=match):
        _config(**changes)


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (DistillationSpec, {"seeds": ()}, "distinct and non-empty"),
        (DistillationSpec, {"seeds": (0, 0)}, "distinct"),
        (DistillationSpec, {"methods": (StudentMethod("none"),) * 2}, "repeats"),
        (DistillationSpec, {"alpha": 2.0}, r"\[0, 1\]"),
        (DistillationSpec, {"probe_size": 0}, "probe_size"),
        (ComplexitySpec, {"temperatures": ()}, "empty"),
        (ComplexitySpec, {"ntk_outputs": "trace"}, "mean, full or diag"),
        (ComplexitySpec, {"n_per_class": 0}, "n_per_class"),
        (BoundSpec, {"delta": 1.0}, r"\(0, 1\)"),
        (BoundSpec, {"gammas": (0.1, -1.0)}, "> 0"),
    ],
)
def test_invalid_specs(cls, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        cls(**kwargs)


def test_temperatures_are_sorted_and_unique():
    spec = ComplexitySpec(temperatures=(4, 1, 4.0, 2))
    assert spec.temperatures == (1.0, 2.0, 4.0)


def test_every_experiment_file_loads_at_every_scale():
    names = available_experiments()
    assert {"all", "c1_c2_complexity", "c3_c4_online_kd", "c5_margin_bound"} <= set(names)
    for name in names:
        for scale in SCALES:
            cfg = load_experiment(name, scale)
            assert cfg.scale == scale and cfg.name == name
    quick = load_experiment("all", "quick")
    assert len(quick.distillation.seeds) >= 3
    assert quick.teacher.model != quick.student.model
    paper = load_experiment("all", "paper")
    assert (paper.teacher.model, paper.student.model) == ("resnet56", "lenet5x8")
    assert paper.teacher.dataset == "cifar100" and paper.teacher.epochs >= 200
    assert [m.key for m in paper.distillation.methods] == [m.key for m in PAPER_METHODS]


def test_all_is_the_union_of_the_claim_experiments():
    for scale in SCALES:
        whole = load_experiment("all", scale)
        for name, field in (
            ("c1_c2_complexity", "complexity"),
            ("c3_c4_online_kd", "distillation"),
            ("c5_margin_bound", "bound"),
        ):
            part = load_experiment(name, scale)
            assert part.teacher == whole.teacher and part.student == whole.student
            mine, theirs = getattr(part, field), getattr(whole, field)
            if field == "complexity":
                theirs = theirs.__class__(**{**theirs.__dict__, "trained_students": ("none",)})
            assert mine == theirs


def test_unknown_experiment_and_scale():
    with pytest.raises(ValueError, match="unknown experiment 'nope'; available: all"):
        load_experiment("nope", "smoke")
    with pytest.raises(ValueError, match="unknown scale"):
        load_experiment("all", "medium")


def test_format_runtime():
    assert format_runtime(None) == "not measured"
    assert format_runtime({"seconds": 42}) == "42 s"
    assert format_runtime({"seconds": 510}) == "8.5 min"
    assert format_runtime({"seconds": 7200}) == "2.0 h"


@pytest.mark.parametrize("name", ["nan", "NaN", "inf", "Infinity", "true", "false"])
def test_a_name_that_results_files_would_read_as_a_value_is_refused(name, tmp_path):
    # names go into results CSVs, read back with numbers and booleans parsed: "nan" would come
    # back as a float and no longer match its capacity
    from sdcomplex.reproduce._results import read_csv, write_csv

    write_csv(tmp_path / "t.csv", [{"capacity": name}], ["capacity"])
    assert read_csv(tmp_path / "t.csv")[0]["capacity"] != name
    with pytest.raises(ValueError, match="number or a boolean"):
        StudentCapacity(name)
    with pytest.raises(ValueError, match="number or a boolean"):
        _config(name=name)


@pytest.mark.parametrize("name", ["linear", "mlp32", "nan_mlp", "true_teacher", "infinite"])
def test_names_come_back_from_results_files_as_written(name, tmp_path):
    from sdcomplex.reproduce._results import read_csv, write_csv

    StudentCapacity(name)
    write_csv(tmp_path / "t.csv", [{"capacity": name}], ["capacity"])
    assert read_csv(tmp_path / "t.csv")[0]["capacity"] == name
