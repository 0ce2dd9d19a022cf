"""A stage is done only when its recorded outputs are still there: deleted or damaged outputs make
it run again (and the runner says so), an unreadable marker is an error naming the file."""

import dataclasses
import hashlib
import io
import json
import shutil
from pathlib import Path

import pytest

import sdcomplex.distill
import sdcomplex.reproduce._runner as runner
import sdcomplex.reproduce._training as training
from sdcomplex.cli import main
from sdcomplex.reproduce import plan_stages, read_status, run_experiment
from sdcomplex.reproduce._outputs import (
    Upstream,
    move_aside,
    output_problem,
    record_outputs,
    snapshot,
)

pytest_plugins = ["reproduce_helpers"]  # the shared tiny run and its fixtures


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def finished(tiny_run, tmp_path, monkeypatch):
    """A copy of the finished tiny run; training is forbidden (no stage may train)."""

    def forbidden(*args, **kwargs):
        raise AssertionError("training was called")

    monkeypatch.setattr(training, "train", forbidden)
    monkeypatch.setattr(sdcomplex.distill, "distill", forbidden)
    out = tmp_path / "run"
    shutil.copytree(tiny_run, out)
    return out


def _rerun(config, out):
    stream = io.StringIO()
    report = run_experiment(config, out, stream=stream, quiet=True)
    return report, stream.getvalue()


def test_markers_record_every_output_with_checksums(tiny_run, tiny_config):
    marker = json.loads((tiny_run / "stages" / "bound.json").read_text())
    recorded = {e["path"]: e for e in marker["outputs"]}
    assert set(recorded) == {"results/bound.csv", "results/bound.json"}
    for path, entry in recorded.items():
        data = (tiny_run / path).read_bytes()
        assert entry["size"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    teacher = json.loads((tiny_run / "stages" / "teacher.json").read_text())["outputs"]
    on_disk = {
        p.relative_to(tiny_run).as_posix()
        for p in (tiny_run / "runs" / "teacher").rglob("*")
        if p.is_file()
    }
    assert {e["path"] for e in teacher} == on_disk  # the whole run directory
    checkpoint = [e for e in teacher if "/checkpoints/" in e["path"]]
    assert checkpoint and all(e["sha256"] is None for e in checkpoint)  # by size only
    metrics = next(e for e in teacher if e["path"] == "runs/teacher/metrics.jsonl")
    assert metrics["sha256"] is not None


@pytest.mark.parametrize(
    ("stage", "deleted", "kept"),
    [
        ("accuracy", "results/accuracy_runs.csv", "tables/accuracy.md"),
        pytest.param("bound", "results/bound.csv", "results/bound.json", marks=pytest.mark.slow),
    ],
)
def test_a_deleted_result_file_makes_its_stage_run_again(
    finished, tiny_config, stage, deleted, kept
):
    before = _digests(finished)
    (finished / deleted).unlink()
    report, text = _rerun(tiny_config, finished)
    assert report.ran == (stage,)  # the recomputed files are identical: nothing after reruns
    assert f"output {deleted} missing, running again" in text
    after = _digests(finished)
    assert after[deleted] == before[deleted]
    moved = [p for p in after if p.startswith("replaced/") and p.endswith(kept)]
    assert len(moved) == 1 and f"-{stage}/" in moved[0]
    assert after[moved[0]] == before[kept]
    assert _rerun(tiny_config, finished)[0].ran == ()


@pytest.mark.parametrize(
    ("path", "damage", "why"),
    [
        pytest.param(
            "results/complexity.csv", "flip", "changed (checksum)", marks=pytest.mark.slow
        ),
        ("results/diagnostics.json", "append", "changed (size)"),
        ("tables/accuracy.md", "truncate", "changed (size)"),
        ("tables/claims.md", "flip", "changed (checksum)"),
    ],
)
def test_a_damaged_result_file_makes_its_stage_run_again(finished, tiny_config, path, damage, why):
    before = _digests(finished)
    target = finished / path
    data = bytearray(target.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    elif damage == "append":
        data += b"\n"
    else:
        data = data[: len(data) // 2]
    target.write_bytes(bytes(data))
    report, text = _rerun(tiny_config, finished)
    stage = path.split("/")[1].split(".")[0]
    assert report.ran == (stage,)
    assert f"output {path} {why}, running again" in text
    assert _digests(finished)[path] == before[path]
    damaged = [p for p in _digests(finished) if p.startswith("replaced/") and p.endswith(path)]
    assert len(damaged) == 1 and (finished / damaged[0]).read_bytes() == bytes(data)


def test_status_names_the_damaged_output(finished):
    (finished / "results" / "diagnostics_mean.csv").unlink()
    status = read_status(finished)
    assert status["pending"] == ["diagnostics"]
    assert status["problems"] == {"diagnostics": "output results/diagnostics_mean.csv missing"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "invalid JSON"),
        ("{not json", "line 1 column 2: invalid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"stage": "bound"}', "no 'hash' string"),
        (b"\xff\xfe\x00garbage", "cannot be read as UTF-8"),
        ("OUTPUTS_PATH", "output path '../config.json'"),
        ("OUTPUTS_SIZE", "size -1"),
    ],
)
def test_an_unreadable_marker_is_an_error_naming_it(finished, tiny_config, content, message):
    marker = finished / "stages" / "bound.json"
    if isinstance(content, str) and content.startswith("OUTPUTS_"):
        data = json.loads(marker.read_text())
        if content == "OUTPUTS_PATH":
            data["outputs"][0]["path"] = "../config.json"
        else:
            data["outputs"][0]["size"] = -1
        content = json.dumps(data)
    marker.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = _digests(finished)
    with pytest.raises(ValueError, match=message) as err:
        _rerun(tiny_config, finished)
    assert str(marker) in str(err.value)
    assert _digests(finished) == before  # checked before any stage runs


def test_an_unreadable_marker_is_one_line_from_the_cli(finished, capsys):
    (finished / "stages" / "claims.json").write_text("{")
    code = main(["reproduce", "--status", "--out", str(finished)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "claims.json" in err and "Traceback" not in err


def test_an_unreadable_experiment_file_is_an_error_naming_it(finished, tiny_config):
    (finished / "experiment.json").write_text('{"config_hash": ')
    with pytest.raises(ValueError, match=r"experiment\.json is damaged \(not valid JSON"):
        _rerun(tiny_config, finished)


def test_recorded_outputs_of_a_synthetic_tree(tmp_path):
    root = tmp_path
    (root / "results").mkdir()
    (root / "results" / "old.csv").write_text("old")
    (root / "logs").mkdir()
    run = root / "runs" / "r"
    (run / "checkpoints" / "epoch_0").mkdir(parents=True)
    (run / "checkpoints" / "epoch_0" / "data").write_bytes(b"\x00" * 10)  # from an earlier run
    before = snapshot(root)
    (root / "results" / "new.csv").write_text("new")
    (root / "logs" / "x.log").write_text("log")  # bookkeeping: nobody's output
    (run / "metrics.jsonl").write_text("{}\n")
    outputs = record_outputs(root, before, owns=("runs/r",), size_only=("runs/r/checkpoints",))
    assert outputs == [
        {"path": "results/new.csv", "size": 3, "sha256": hashlib.sha256(b"new").hexdigest()},
        {"path": "runs/r/checkpoints/epoch_0/data", "size": 10, "sha256": None},
        {"path": "runs/r/metrics.jsonl", "size": 3, "sha256": hashlib.sha256(b"{}\n").hexdigest()},
    ]
    assert output_problem(root, outputs) is None
    (run / "checkpoints" / "epoch_0" / "data").write_bytes(b"\x01" * 10)  # same size: not seen
    assert output_problem(root, outputs) is None
    (run / "checkpoints" / "epoch_0" / "data").write_bytes(b"\x01" * 11)
    (root / "results" / "new.csv").unlink()
    assert output_problem(root, outputs) == "output results/new.csv missing (and 1 more)"

    moved = move_aside(root, "stage/x", outputs, owns=("runs/r",))
    assert moved is not None and moved.parent == root / "replaced"
    assert sorted(p.relative_to(moved).as_posix() for p in moved.rglob("*") if p.is_file()) == [
        "runs/r/checkpoints/epoch_0/data",
        "runs/r/metrics.jsonl",
    ]
    assert not run.exists() and (root / "results" / "old.csv").read_text() == "old"


def test_upstream_digest_depends_on_every_earlier_output():
    a, b, c = Upstream(), Upstream(), Upstream()
    entry = [{"path": "results/x.csv", "size": 1, "sha256": "0" * 64}]
    a.add("s", entry)
    b.add("s", [{**entry[0], "sha256": "1" * 64}])
    c.add("s", None)
    assert len({a.hexdigest(), b.hexdigest(), c.hexdigest()}) == 3


@pytest.mark.slow
def test_a_deleted_checkpoint_retrains_the_teacher_and_everything_after(
    tiny_run,
    tiny_config,
    tmp_path,
    monkeypatch,
):
    # the teacher really trains again; every later stage, which the runner must run again
    # because its earlier stages' outputs changed, only records that it ran (its work is that
    # of the shared run, checked by the other tests)
    out = tmp_path / "run"
    shutil.copytree(tiny_run, out)
    shutil.rmtree(out / "runs" / "teacher" / "checkpoints" / "epoch_2")
    called = []

    def recorded(ctx):
        called.append(ctx.stage_key)
        return {}

    planned = runner.plan_stages
    monkeypatch.setattr(
        runner,
        "plan_stages",
        lambda config: [
            s if s.key == "teacher" else dataclasses.replace(s, run=recorded)
            for s in planned(config)
        ],
    )
    stream = io.StringIO()
    report = run_experiment(tiny_config, out, stream=stream, quiet=True, figures=False)
    text = stream.getvalue()
    assert "teacher cnn: output runs/teacher/checkpoints/epoch_2/" in text
    assert report.ran[0] == "teacher" and "student/none/seed0" in report.ran
    assert (out / "runs" / "teacher" / "checkpoints" / "epoch_2").is_dir()
    assert len(plan_stages(tiny_config)) - 1 == len(report.ran)  # all but the figures
    assert called == list(report.ran[1:])
    assert text.count("an earlier stage's outputs changed since it ran, running again") == len(
        called
    )
