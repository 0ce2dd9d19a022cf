"""The runner: stage skipping, refusal of a different config, and kill-and-rerun resumption
(a real subprocess killed with SIGKILL mid-training, rerun, equals an uninterrupted run)."""

import io
import json
import signal
import time
from pathlib import Path

import pytest

import sdcomplex.distill
import sdcomplex.reproduce._training as training
from sdcomplex.reproduce import plan_stages, prepare_out_dir, read_status, run_experiment


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
    with pytest.raises(ValueError, match="not an output directory"):
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


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_results(tmp_path, tiny_run, reproduce_cli):
    out = tmp_path / "killed"
    # kill in the middle of a student's training: after its epoch-1 metrics line is written
    metrics = out / "runs" / "students" / "offline_t4" / "seed0" / "metrics.jsonl"
    proc = reproduce_cli(out, wait=False)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.is_file() and metrics.read_text().count("\n") >= 2:
            break
        time.sleep(0.01)
    assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = read_status(out)["done"]
    assert "teacher" in done and "student/offline_t4/seed0" not in done

    rerun = reproduce_cli(out)
    assert "teacher cnn: done before, skipped" in rerun.output
    assert read_status(out)["pending"] == []
    assert _results(out) == _results(tiny_run)
