"""The runner: stage skipping, refusal of a different config, resumption after a stage that
failed half-way (in-process, with stages that write files and one that raises), and
kill-and-rerun resumption of training (a real subprocess killed with SIGKILL mid-training,
rerun, equals the shared uninterrupted run, bit for bit)."""

import errno
import fcntl
import io
import json
import os
import shutil
import signal
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from fault_injection import damage_file

import sdcomplex.distill
import sdcomplex.reproduce._runner as runner
import sdcomplex.reproduce._training as training
import sdcomplex.train._trainer as trainer
from sdcomplex.reproduce import (
    Interrupted,
    Layout,
    Stage,
    plan_stages,
    read_status,
    run_experiment,
)
from sdcomplex.reproduce._results import write_json
from sdcomplex.reproduce._runner import prepare_out_dir
from sdcomplex.train import DamagedFile, list_checkpoints, load_checkpoint

pytest_plugins = ["reproduce_helpers"]  # the shared tiny run and its fixtures


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def _results(root: Path) -> dict[str, str]:
    """Every result file (CSV, JSON) and table, by relative path."""
    out = {}
    for sub in ("results", "tables"):
        for p in sorted((root / sub).iterdir()):
            out[f"{sub}/{p.name}"] = p.read_text(encoding="utf-8")
    return out


def test_every_stage_has_a_marker_and_outputs(tiny_run, tiny_config):
    stages = plan_stages(tiny_config)
    assert [s.key for s in stages][:2] == ["teacher", "student/none/seed0"]
    status = read_status(tiny_run)
    assert status["pending"] == [] and len(status["done"]) == len(stages)
    for name in ("complexity", "bound", "accuracy", "accuracy_runs", "diagnostics", "claims"):
        assert (tiny_run / "results" / f"{name}.{'json' if name == 'claims' else 'csv'}").is_file()
    for table in ("accuracy.md", "diagnostics.md", "claims.md"):
        assert (tiny_run / "tables" / table).is_file()
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["student"]["model_options"] == {"hidden_sizes": [16]}


def test_second_run_does_nothing(tiny_run, tiny_config, monkeypatch):
    before = _files(tiny_run)

    def forbidden(*args, **kwargs):
        raise AssertionError("training was called on a finished run")

    monkeypatch.setattr(training, "train", forbidden)
    monkeypatch.setattr(sdcomplex.distill, "distill", forbidden)
    stream = io.StringIO()
    report = run_experiment(tiny_config, tiny_run, stream=stream)
    assert report.ran == ()
    assert len(report.skipped) == len(plan_stages(tiny_config))
    assert stream.getvalue().count("skipped") == len(report.skipped)
    assert _files(tiny_run) == before


def test_a_different_config_is_refused_before_writing(tiny_run, tiny_config):
    before = _files(tiny_run)
    other = tiny_config.replace(student=tiny_config.student.replace(learning_rate=0.1))
    expected = r"different config.*student\.learning_rate: 0\.05 -> 0\.1"
    with pytest.raises(ValueError, match=expected):
        run_experiment(other, tiny_run, stream=io.StringIO())
    assert _files(tiny_run) == before


def test_a_foreign_directory_is_refused(tmp_path, tiny_config):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an sdcomplex experiment directory"):
        prepare_out_dir(tmp_path, tiny_config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_relative_out_dir_is_made_absolute(tmp_path, tiny_config, monkeypatch):
    # Orbax, which writes the training stages' checkpoints, refuses relative paths
    monkeypatch.chdir(tmp_path)
    layout = prepare_out_dir("runs/rel", tiny_config)
    assert layout.root == (tmp_path / "runs" / "rel").resolve()
    assert layout.teacher.is_absolute() and (layout.root / "experiment.json").is_file()


def test_stage_keys_are_unique_and_hashes_stable(tiny_config):
    stages = plan_stages(tiny_config)
    keys = [s.key for s in stages]
    assert len(set(keys)) == len(keys)
    again = plan_stages(tiny_config)
    assert [s.hash for s in stages] == [s.hash for s in again]
    changed = plan_stages(
        tiny_config.replace(bound=tiny_config.bound.__class__(n_per_class=11, n_test_per_class=10))
    )
    differing = {a.key for a, b in zip(stages, changed, strict=True) if a.hash != b.hash}
    assert "bound" in differing and "teacher" not in differing and "complexity" not in differing


def _synthetic_stages(fail: set[str]) -> list[Stage]:
    """Three stages, each writing a result file from the one before (``a`` -> ``b`` -> ``c``);
    the stages named in ``fail`` write half of their file, then raise."""

    def step(key: str, source: str | None):
        def run(ctx) -> dict:
            text = key + ((ctx.layout.results / f"{source}.txt").read_text() if source else "")
            path = ctx.layout.results / f"{key}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            if key in fail:
                path.write_text(text[:1])
                raise RuntimeError(f"stage {key} failed")
            path.write_text(text)
            return {"text": text}

        return run

    keys = ("a", "b", "c")
    return [
        Stage(key, f"stage {key}", {"n": i}, step(key, keys[i - 1] if i else None))
        for i, key in enumerate(keys)
    ]


def test_a_failed_stage_has_no_marker_and_runs_again(tmp_path, tiny_config, monkeypatch):
    fail = {"b"}
    monkeypatch.setattr(runner, "plan_stages", lambda config: _synthetic_stages(fail))
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="stage b failed"):
        run_experiment(tiny_config, out, stream=io.StringIO(), quiet=True)
    layout = Layout(out.resolve())
    assert layout.marker("a").is_file() and not layout.marker("b").exists()
    status = read_status(out)
    assert status["done"] == ["a"] and status["pending"] == ["b", "c"]
    assert status["problems"] == {}  # no marker: nothing to explain, it just runs

    fail.clear()
    stream = io.StringIO()
    report = run_experiment(tiny_config, out, stream=stream)
    assert report.ran == ("b", "c") and report.skipped == ("a",)
    assert "[1/3] stage a: done before, skipped" in stream.getvalue()
    assert "[2/3] stage b ..." in stream.getvalue()  # a first run of b, not a rerun
    assert (out / "results" / "c.txt").read_text() == "cba"
    marker = json.loads(layout.marker("b").read_text())
    assert [e["path"] for e in marker["outputs"]] == ["results/b.txt"]
    assert read_status(out)["pending"] == []
    assert run_experiment(tiny_config, out, stream=io.StringIO()).ran == ()

    fresh = tmp_path / "fresh"  # the same results as a run that never failed
    run_experiment(tiny_config, fresh, stream=io.StringIO(), quiet=True)

    def texts(root: Path) -> dict[str, str]:
        return {p.name: p.read_text() for p in (root / "results").iterdir()}

    assert texts(out) == texts(fresh) == {"a.txt": "a", "b.txt": "ba", "c.txt": "cba"}


def test_a_signal_in_the_last_epoch_stops_the_run(tmp_path, tiny_run, tiny_config, monkeypatch):
    # SIGTERM while the teacher evaluates its last epoch: that epoch finishes, and the run
    # stops there (it used to go on with the students and exit 0); the rerun records the
    # finished teacher without training it again
    last = tiny_config.teacher.epochs
    evaluate = trainer.evaluate_epoch

    def signalled(p, state, epoch, *args):
        if epoch == last:
            os.kill(os.getpid(), signal.SIGTERM)  # recorded by the training loop's handler
        return evaluate(p, state, epoch, *args)

    monkeypatch.setattr(trainer, "evaluate_epoch", signalled)
    monkeypatch.setattr(runner, "plan_stages", lambda config: plan_stages(config)[:2])
    out = tmp_path / "run"
    with pytest.raises(Interrupted, match="finished its last epoch") as stopped:
        run_experiment(tiny_config, out, stream=io.StringIO(), quiet=True)
    assert stopped.value.signum == signal.SIGTERM
    assert read_status(out)["pending"] == ["teacher", "student/none/seed0"]
    teacher = Layout(out.resolve()).teacher
    assert list_checkpoints(teacher) == list(range(last + 1))

    monkeypatch.setattr(runner, "plan_stages", lambda config: plan_stages(config)[:1])
    monkeypatch.setattr(training, "train", _no_epochs(training.train))
    assert run_experiment(tiny_config, out, stream=io.StringIO(), quiet=True).ran == ("teacher",)
    a, b = load_checkpoint(teacher, last), load_checkpoint(tiny_run / "runs" / "teacher", last)
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    assert all(np.array_equal(x, y) for x, y in pairs)  # the same teacher, bit for bit


def _no_epochs(train):
    """``train`` that fails if it trains an epoch (the run must be complete)."""

    def call(*args, **kwargs):
        result = train(*args, **kwargs)
        assert result.status == "already_complete"
        return result

    return call


def test_a_second_invocation_is_refused_while_one_runs(tmp_path, tiny_config, monkeypatch):
    # two invocations on one directory trained into the same run directories at once and
    # both crashed; the lock another process would hold, taken here on its own descriptor
    monkeypatch.setattr(runner, "plan_stages", lambda config: _synthetic_stages(set()))
    out = prepare_out_dir(tmp_path / "run", tiny_config).root
    other = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ValueError, match="in use by another sdcomplex reproduce"):
            run_experiment(tiny_config, out, stream=io.StringIO(), quiet=True)
        assert not Layout(out).stages.exists()  # nothing ran
    finally:
        os.close(other)  # that invocation ended (or was killed): the lock goes with it
    report = run_experiment(tiny_config, out, stream=io.StringIO(), quiet=True)
    assert report.ran == ("a", "b", "c")
    assert (out / "results" / "c.txt").read_text() == "cba"


def test_a_file_system_without_locks_runs_unlocked(tmp_path, tiny_config, monkeypatch):
    # e.g. an NFS client refusing an exclusive lock on a read-only descriptor (EBADF): that is
    # not another invocation, and refusing would stop every run on that file system
    def no_locks(fd, operation):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(runner, "plan_stages", lambda config: _synthetic_stages(set()))
    monkeypatch.setattr(fcntl, "flock", no_locks)
    report = run_experiment(tiny_config, tmp_path / "run", stream=io.StringIO(), quiet=True)
    assert report.ran == ("a", "b", "c")


def test_a_damaged_checkpoint_names_the_stage_that_wrote_it(tmp_path, tiny_run, tiny_config):
    # checkpoints are recorded by size: a byte changed in place is found when a later stage
    # reads it, and the error says which stage's output it is and how to redo that stage
    out = tmp_path / "run"
    shutil.copytree(tiny_run, out)
    variables = out / "runs" / "teacher" / "checkpoints" / "epoch_1" / "variables"
    damaged = max((p for p in variables.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    damage_file(damaged, "flip", np.random.default_rng(0))
    (out / "results" / "complexity.json").unlink()  # the C1/C2 stage runs again
    stream = io.StringIO()
    with pytest.raises(DamagedFile, match="an output of the stage 'teacher': delete it") as err:
        run_experiment(tiny_config, out, stream=stream, quiet=True, figures=False)
    assert Path(err.value.path) == damaged
    assert "teacher cnn: done before, skipped" in stream.getvalue()


def _teacher_and_student(state: dict) -> list[Stage]:
    """``teacher`` writes ``results/teacher.txt`` (``state["teacher"]``); ``student`` owns
    ``runs/student`` and, like a training run that resumes, appends one line per call to
    ``runs/student/epochs.txt`` from the teacher's file, failing after it when
    ``state["kill"]``."""

    def teacher(ctx) -> dict:
        write_json(ctx.layout.results / "teacher.txt", state["teacher"])
        return {}

    def student(ctx) -> dict:
        epochs = ctx.layout.root / "runs" / "student" / "epochs.txt"
        epochs.parent.mkdir(parents=True, exist_ok=True)
        with open(epochs, "a") as fh:
            fh.write((ctx.layout.results / "teacher.txt").read_text().strip() + "\n")
        if state["kill"]:
            raise RuntimeError("killed")
        return {}

    return [
        Stage("teacher", "teacher", {}, teacher),
        Stage("student", "student", {}, student, owns=("runs/student",)),
    ]


def test_a_run_begun_after_another_teacher_does_not_resume(tmp_path, tiny_config, monkeypatch):
    # a student killed half-way, then its teacher trained again with another outcome: the
    # student used to resume its partial run, half from each teacher
    state = {"teacher": "A", "kill": True}
    monkeypatch.setattr(runner, "plan_stages", lambda config: _teacher_and_student(state))
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="killed"):
        run_experiment(tiny_config, out, stream=io.StringIO(), quiet=True)
    state.update(teacher="B", kill=False)
    (out / "results" / "teacher.txt").unlink()  # the teacher runs again, with another outcome
    monkeypatch.setattr(runner, "plan_stages", lambda config: _teacher_and_student(state)[:1])
    assert run_experiment(tiny_config, out, stream=io.StringIO(), quiet=True).ran == ("teacher",)
    monkeypatch.setattr(runner, "plan_stages", lambda config: _teacher_and_student(state))
    problems = read_status(out)["problems"]
    assert problems == {"student": "begun with other inputs, starts from nothing"}
    stream = io.StringIO()
    assert run_experiment(tiny_config, out, stream=stream, quiet=True).ran == ("student",)
    assert "student: begun with other inputs, running again" in stream.getvalue()
    assert (out / "runs" / "student" / "epochs.txt").read_text() == '"B"\n'
    moved = list((out / "replaced").rglob("epochs.txt"))
    assert [p.read_text() for p in moved] == ['"A"\n']  # kept, not lost
    assert not list(Layout(out.resolve()).stages.glob("*.started.json"))


def test_a_killed_run_with_the_same_inputs_resumes(tmp_path, tiny_config, monkeypatch):
    state = {"teacher": "A", "kill": True}
    monkeypatch.setattr(runner, "plan_stages", lambda config: _teacher_and_student(state))
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="killed"):
        run_experiment(tiny_config, out, stream=io.StringIO(), quiet=True)
    state["kill"] = False
    assert run_experiment(tiny_config, out, stream=io.StringIO(), quiet=True).ran == ("student",)
    assert (out / "runs" / "student" / "epochs.txt").read_text() == '"A"\n"A"\n'  # resumed


def _unfinish(root: Path, config, first: str) -> list[str]:
    """Turns a copy of a finished run into the run as it was when stage ``first`` started:
    the markers of ``first`` and every later stage and all their outputs deleted. Returns the
    keys of those stages."""
    keys = [s.key for s in plan_stages(config)]
    later = keys[keys.index(first) :]
    layout = Layout(root)
    for stage in plan_stages(config):
        if stage.key not in later:
            continue
        marker = json.loads(layout.marker(stage.key).read_text())
        for entry in marker["outputs"]:
            (root / entry["path"]).unlink()
        for owned in stage.owns:
            shutil.rmtree(root / owned)
        layout.marker(stage.key).unlink()
    return later


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_results(
    tmp_path, tiny_run, tiny_config, reproduce_cli
):
    # the shared finished run as it was when the last student started; a real process is
    # killed in the middle of that student's training, after its epoch-1 metrics line
    out = tmp_path / "killed"
    shutil.copytree(tiny_run, out)
    later = _unfinish(out, tiny_config, "student/online_t4/seed1")
    student = out / "runs" / "students" / "online_t4" / "seed1"
    metrics = student / "metrics.jsonl"
    proc = reproduce_cli(out, wait=False)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.is_file() and metrics.read_text().count("\n") >= 2:
            break
        time.sleep(0.01)
    assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    status = read_status(out)
    assert "teacher" in status["done"] and status["pending"] == later

    # rerun here (the figures, which hold no numbers, are left to a later run)
    stream = io.StringIO()
    report = run_experiment(tiny_config, out, stream=stream, quiet=True, figures=False)
    assert "teacher cnn: done before, skipped" in stream.getvalue()
    assert list(report.ran) == later[:-1] and read_status(out)["pending"] == ["figures"]
    assert _results(out) == _results(tiny_run)
    original = tiny_run / "runs" / "students" / "online_t4" / "seed1"
    epochs = list_checkpoints(original)
    assert list_checkpoints(student) == epochs
    for epoch in epochs:  # the resumed student's parameters, bit for bit
        a, b = load_checkpoint(student, epoch), load_checkpoint(original, epoch)
        pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
        assert all(np.array_equal(x, y) for x, y in pairs), epoch
