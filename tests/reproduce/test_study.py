"""The C3 study: its config, its statistics against closed forms, its students against the solo
distillation run, and one tiny study run end to end (shared by the checks of this module)."""

import io
import math
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from sdcomplex.reproduce import (
    BoundSpec,
    ExperimentConfig,
    StudentCapacity,
    StudySpec,
    TeacherRecipe,
    load_experiment,
    plan_stages,
    read_csv,
    read_json,
    run_experiment,
)
from sdcomplex.reproduce._study import members, train_group
from sdcomplex.reproduce._study_analysis import paired_interval, summarize, summary_text
from sdcomplex.train import TrainConfig, load_checkpoint

pytest_plugins = ["reproduce_helpers"]  # notebook_env, execute_notebook, session_folder

DATA = {"dataset": "mnist1d", "n_per_class": 10, "n_test_per_class": 10, "augment": False}
COMMON = {**DATA, "batch_size": 25, "epochs": 3, "learning_rate": 0.05, "eval_batch_size": 100}
TEACHER = TrainConfig(model="cnn", model_options={"channels": [4], "dense_width": 16}, **COMMON)
STUDENT = TrainConfig(model="mlp", model_options={"hidden_sizes": [8]}, **COMMON)
CAPACITIES = (
    StudentCapacity("linear", {"hidden_sizes": []}),
    StudentCapacity("mlp8", {"hidden_sizes": [8]}),
)


def _spec(**changes):
    base = {
        "capacities": CAPACITIES,
        "recipes": (
            TeacherRecipe("cosine", "the experiment's teacher", capacities=("linear",)),
            TeacherRecipe(
                "step",
                "a step schedule",
                teacher=TEACHER.replace(schedule="step", lr_milestones=(1,)),
                capacities=("mlp8",),
            ),
        ),
        "seeds": (0, 1),
        "n_per_class": 3,
    }
    return StudySpec(**{**base, **changes})


def _experiment(**changes):
    return ExperimentConfig(
        name="tiny_study",
        scale="smoke",
        description="tiny study",
        claims=("C3",),
        teacher=TEACHER,
        student=STUDENT,
        study=_spec(**changes),
    )


@pytest.fixture(scope="session")
def study_run(tmp_path_factory):
    """The experiment file's own smoke study (``experiments/c3_study.py``), run once (every
    stage; once for all xdist workers); tests only read it."""
    from reproduce_helpers import session_folder  # the plugin pytest_plugins loads

    config = load_experiment("c3_study", "smoke")
    with session_folder(tmp_path_factory, "c3_study_smoke") as shared:
        out = shared / "run"
        if not (shared / "done").is_file():
            shutil.rmtree(out, ignore_errors=True)  # (a worker that failed here: start again)
            report = run_experiment(config, out, quiet=True, stream=io.StringIO())
            assert report.ran == tuple(s.key for s in plan_stages(config))
            (shared / "done").touch()
    return config, out


# ------------------------------------------------------------------------------ config


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"seeds": (0,)}, "at least 2 distinct seeds"),
        ({"seeds": (1, 1)}, "at least 2 distinct seeds"),
        ({"capacities": (CAPACITIES[0], CAPACITIES[0])}, "repeats a name"),
        (
            {"recipes": (TeacherRecipe("a", "r"), TeacherRecipe("a", "r", teacher=TEACHER))},
            "repeats a name",
        ),
        ({"recipes": (TeacherRecipe("a", "r"), TeacherRecipe("b", "r"))}, "at most one"),
        ({"recipes": (TeacherRecipe("a", "r", capacities=("huge",)),)}, "unknown capacities"),
        ({"confidence": 1.0}, "confidence"),
    ],
)
def test_invalid_study_specs(changes, match):
    with pytest.raises(ValueError, match=match):
        _spec(**changes)


def test_recipe_teachers_must_fit_the_student():
    other = TEACHER.replace(n_per_class=20)
    with pytest.raises(ValueError, match="must train on the student's data"):
        _experiment(recipes=(TeacherRecipe("a", "r", teacher=other),))
    sparse = TEACHER.replace(checkpoint_every=2)
    with pytest.raises(ValueError, match="checkpoint_every=1"):
        _experiment(recipes=(TeacherRecipe("a", "r", teacher=sparse),))


def test_study_round_trips_and_is_left_out_of_configs_without_one():
    config = _experiment()
    assert ExperimentConfig.from_json(config.to_json()) == config
    plain = config.replace(study=None, bound=BoundSpec())
    assert "study" not in plain.to_dict() and "study" in config.to_dict()
    assert ExperimentConfig.from_dict(plain.to_dict()) == plain
    assert plain.hash() != config.hash()


def test_the_experiments_study_is_in_all_at_the_smoke_and_quick_scales():
    for scale in ("smoke", "quick"):
        study = load_experiment("c3_study", scale)
        whole = load_experiment("all", scale)
        assert whole.study == study.study and whole.teacher == study.teacher
        assert whole.student == study.student
    assert load_experiment("all", "paper").study is None
    quick = load_experiment("c3_study", "quick").study
    assert len(quick.capacities) >= 4 and len(quick.seeds) >= 5
    assert quick.temperatures == (1.0, 4.0) and len(quick.recipes) >= 2
    assert quick.capacities[0].model_options == {"hidden_sizes": []}  # a linear model


# ------------------------------------------------------------------------------ statistics


def test_paired_interval_matches_the_t_table():
    # n = 4, t(0.975, 3) = 3.182446305284263 (tables); mean 2.5, sd sqrt(5/3)
    mean, sd, low, high = paired_interval([1.0, 2.0, 3.0, 4.0], 0.95)
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2
    assert (mean, sd) == pytest.approx((2.5, math.sqrt(5 / 3)))
    assert (low, high) == pytest.approx((2.5 - half, 2.5 + half))
    # n = 2, 90 %: t(0.95, 1) = 6.313751514675043
    mean, sd, low, high = paired_interval([0.0, 1.0], 0.90)
    assert high - mean == pytest.approx(6.313751514675043 * math.sqrt(0.5) / math.sqrt(2))
    with pytest.raises(ValueError, match="at least 2"):
        paired_interval([1.0], 0.95)


def test_verdict_rule():
    spec = _spec()
    assert [spec.verdict(*ci) for ci in ((0.1, 2.0), (-2.0, -0.1), (-0.1, 0.1), (0.0, 1.0))] == [
        "holds",
        "fails",
        "undecided",
        "undecided",
    ]
    wide = _spec(margin=0.5)
    assert [wide.verdict(*ci) for ci in ((0.4, 2.0), (0.6, 2.0), (-2.0, -0.6))] == [
        "undecided",
        "holds",
        "fails",
    ]
    assert "above 0.5 points" in wide.rule and "95 %" in wide.rule


def test_members_are_temperature_major():
    seeds, temps = members(_spec(), "online")
    assert (seeds, temps) == ([0, 1, 0, 1], [1.0, 1.0, 4.0, 4.0])
    assert members(_spec(), "none") == ([0, 1], None)


# ------------------------------------------------------------------------------ the run


@pytest.mark.slow
def test_students_equal_their_solo_distillation_runs(study_run, tmp_path):
    """Member (seed, tau) of an online group is the run distill() does alone: bitwise with
    ``unroll``; with ``vmap`` to float32 rounding (see tests/train/test_ensemble.py)."""
    from sdcomplex.distill import DistillConfig, distill

    config, out = study_run
    spec = config.study
    student = spec.capacities[0].student(config.student)
    teacher_dir = out / "runs" / "teacher"
    unrolled, schedule = train_group(
        student, spec.replace(batching="unroll"), "online", teacher_dir
    )
    vmapped, _ = train_group(student, spec, "online", teacher_dir)
    assert unrolled.compilations == vmapped.compilations == 1
    m = 3  # seed 1, tau 4
    assert (unrolled.seeds[m], unrolled.temperatures[m]) == (1, 4.0)
    solo_config = DistillConfig(
        student=student.replace(seed=1),
        teacher_dir=str(teacher_dir),
        mode="online",
        temperature=4.0,
        diagnostics_every=0,
    )
    solo = distill(solo_config, tmp_path / "solo", quiet=True)
    assert [line["teacher_epoch"] for line in solo.metrics[1:]] == list(schedule)
    variables = load_checkpoint(tmp_path / "solo", student.epochs)
    for a, b in zip(
        jax.tree.leaves(unrolled.variables[m]), jax.tree.leaves(variables), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(vmapped.variables[m]), jax.tree.leaves(variables), strict=True):
        b = np.asarray(b, np.float64)
        assert np.linalg.norm(np.asarray(a, np.float64) - b) <= 1e-6 * np.linalg.norm(b)
    for mine, theirs in zip(unrolled.metrics[m], solo.metrics, strict=True):
        assert mine["test_acc"] == theirs["test_acc"] and mine["train_loss"] == theirs["train_loss"]


@pytest.mark.slow
def test_the_gains_are_the_paired_differences_of_the_runs(study_run):
    config, out = study_run
    spec = config.study
    runs = read_csv(out / "results" / "study_runs.csv")
    gains = read_csv(out / "results" / "study_gains.csv")
    # one row per (recipe, capacity it teaches, temperature)
    assert [(g["recipe"], g["capacity"], g["temperature"]) for g in gains] == [
        ("cosine", "linear", 1.0),
        ("cosine", "linear", 4.0),
        ("cosine", "mlp16", 1.0),
        ("cosine", "mlp16", 4.0),
        ("step", "mlp16", 1.0),
        ("step", "mlp16", 4.0),
    ]
    # no KD per capacity x seeds + (recipe, capacity) settings x (off, on) x tau x seeds
    assert len(runs) == 2 * 2 + 3 * 2 * 2 * 2
    assert {r["params"] for r in runs if r["capacity"] == "linear"} == {40 * 10 + 10}
    for g in gains:

        def acc(mode, g=g):
            return {
                r["seed"]: r["test_acc"]
                for r in runs
                if (r["mode"], r["recipe"], r["capacity"], r["temperature"])
                == (mode, g["recipe"], g["capacity"], g["temperature"])
            }

        on, off = acc("online"), acc("offline")
        d = np.array([on[s] - off[s] for s in spec.seeds])
        assert g["gain"] == pytest.approx(d.mean())
        half = 12.706204736174707 * d.std(ddof=1) / math.sqrt(2)  # t(0.975, 1)
        assert (g["ci_low"], g["ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
        assert g["verdict"] == spec.verdict(g["ci_low"], g["ci_high"])
        none = [
            r["test_acc"] for r in runs if r["mode"] == "none" and r["capacity"] == g["capacity"]
        ]
        assert g["gap"] == pytest.approx(g["teacher_test_acc"] - np.mean(none))


@pytest.mark.slow
def test_the_study_reports_verdicts_c2_curves_and_a_figure(study_run):
    config, out = study_run
    study = read_json(out / "results" / "study.json")
    gains = read_csv(out / "results" / "study_gains.csv")
    assert study["summary"] == summarize(gains) and study["rule"] == config.study.rule
    assert sum(len(v) for v in study["summary"].values()) == len(gains)
    assert [r["reason"] for r in study["recipes"]] == [r.reason for r in config.study.recipes]
    c2 = read_csv(out / "results" / "study_c2.csv")
    # per (recipe, capacity) setting: the labels, and the teacher's checkpoints of epochs
    # 1, ..., E at every temperature
    assert len(c2) == 3 * (1 + config.teacher.epochs * 2)
    assert all(r["adjusted"] > 0 for r in c2)
    claims = read_json(out / "results" / "claims.json")["claims"]
    assert [c["claim"] for c in claims] == ["C3 study"]
    assert claims[0]["evidence"] == summary_text(study["summary"])
    text = (out / "tables" / "claims.md").read_text(encoding="utf-8")
    assert "online − offline [95 % CI]" in text and "Rule (fixed before the run)" in text
    assert (out / "figures" / "study.png").stat().st_size > 10_000
    groups = [read_json(p) for p in sorted((out / "runs" / "study").glob("*/*.json"))]
    # (offline, online) per (recipe, capacity) setting, and no KD per capacity
    assert len(groups) == 3 * 2 + 2 and all(g["compilations"] == 1 for g in groups)


def test_a_runtime_is_current_only_for_the_config_it_was_measured_for():
    from sdcomplex.reproduce._runtimes import is_current

    config = _experiment()
    assert is_current({"seconds": 1.0, "config_hash": config.hash()}, config)
    assert not is_current({"seconds": 1.0, "config_hash": "0" * 16}, config)
    assert not is_current(None, config)


@pytest.mark.slow
def test_the_study_notebook_shows_the_finished_study(study_run, notebook_env, tmp_path):
    from reproduce_helpers import execute_notebook

    _, out = study_run
    notebook = Path(__file__).resolve().parents[2] / "notebooks" / "c3_study.ipynb"
    nb, text = execute_notebook(notebook, {**notebook_env, "SDCOMPLEX_RUN": str(out)}, tmp_path)
    assert "0 stages run" in text  # every stage loaded, nothing trained again
    assert "online − offline [95 % CI]" in text and "| claim | reproduced? |" in text
    figure = next(c for c in nb.cells if "figure_study(" in c.source)
    assert any("image/png" in o.get("data", {}) for o in figure.outputs)


@pytest.mark.slow
def test_the_c3_study_experiment_runs_at_the_smoke_scale(study_run):
    """The experiment file's own smoke config, end to end (the session's study run: every
    stage ran): a verdict for every (recipe, capacity, temperature) setting it names, and the
    summary of those verdicts."""
    config, out = study_run
    gains = read_csv(out / "results" / "study_gains.csv")
    study = config.study
    expected = {
        (recipe.name, capacity.name, tau)
        for recipe in study.recipes
        for capacity in study.capacities_of(recipe)
        for tau in study.temperatures
    }
    assert {(r["recipe"], r["capacity"], r["temperature"]) for r in gains} == expected
    assert all(r["seeds"] == len(study.seeds) for r in gains)
    assert read_json(out / "results" / "study.json")["summary"] == summarize(gains)
