"""Resumption: an online-KD run killed with SIGKILL (a real subprocess) and started again ends
exactly as an uninterrupted run: checkpoints and every metric, the diagnostics included.
Also: diagnostics every k epochs, a stride, a finished run, a changed config."""

import json
import signal

import numpy as np
import pytest
from distill_helpers import STUDENT as BASE
from distill_helpers import student_config
from run_helpers import leaves_equal, start_run, wait_for_lines

from sdcomplex.distill import distill, online_schedule
from sdcomplex.distill._diagnostics import NTK_INIT_FILE
from sdcomplex.distill._run import DISTILL_FILE
from sdcomplex.train import list_checkpoints, load_checkpoint, read_metrics
from sdcomplex.train._metrics import strip_timing

# many small steps, so that a kill lands in the middle of the run
STUDENT = BASE.replace(epochs=5, batch_size=16)


@pytest.fixture(scope="module")
def setting(tmp_path_factory, teacher_dir):
    """The student's config file and the uninterrupted reference run (online KD from every third
    teacher checkpoint, diagnostics every second epoch)."""
    root = tmp_path_factory.mktemp("resume")
    config = student_config(
        teacher_dir, "online", student=STUDENT, stride=3, diagnostics_every=2, probe_size=40
    )
    (root / "distill.json").write_text(json.dumps(config.to_dict()))
    reference = distill(config, root / "reference", quiet=True)
    return root, config, reference


def _start(root, run_dir):
    return start_run("distill", root / "distill.json", run_dir)


def test_sigint_then_kill_9_then_resume_is_identical(setting):
    root, config, reference = setting
    run_dir = root / "run"
    # Ctrl-C (SIGINT) after epoch 1: the run saves and exits with 130, not 0
    proc = _start(root, run_dir)
    wait_for_lines(run_dir, 2, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT == 130, err.decode()
    assert b"Traceback" not in err and b"stopped by SIGINT after epoch" in err
    assert STUDENT.epochs not in list_checkpoints(run_dir)
    # resumed, then killed with SIGKILL after epoch 2
    proc = _start(root, run_dir)
    wait_for_lines(run_dir, 3, proc)  # epochs 0-2 logged (a diagnostic epoch among them)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert STUDENT.epochs not in list_checkpoints(run_dir)  # killed before the end
    assert (run_dir / NTK_INIT_FILE).is_file() and (run_dir / DISTILL_FILE).is_file()

    proc = _start(root, run_dir)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert b"distilled mlp on digits (online KD, tau 4)" in out
    ref_dir = reference.run_dir
    assert list_checkpoints(run_dir) == list_checkpoints(ref_dir) == list(range(6))
    for epoch in list_checkpoints(ref_dir):
        assert leaves_equal(load_checkpoint(run_dir, epoch), load_checkpoint(ref_dir, epoch))
    assert strip_timing(read_metrics(run_dir)) == strip_timing(read_metrics(ref_dir))
    assert np.array_equal(np.load(run_dir / NTK_INIT_FILE), np.load(ref_dir / NTK_INIT_FILE))
    record = json.loads((run_dir / DISTILL_FILE).read_text())
    ref_record = json.loads((ref_dir / DISTILL_FILE).read_text())
    differ = {"created", "sha256"}  # the creation time, and the seal that covers it
    assert {k: v for k, v in record.items() if k not in differ} == {
        k: v for k, v in ref_record.items() if k not in differ
    }


def test_diagnostics_every_k_stride_and_a_finished_run(setting):
    root, config, reference = setting
    metrics = reference.metrics
    assert [m["epoch"] for m in metrics] == list(range(6))
    assert [m["epoch"] for m in metrics if "ntk_similarity" in m] == [0, 2, 4, 5]
    schedule = online_schedule(5, 4, stride=3)
    assert schedule == (3, 3, 3, 4, 4)  # checkpoints 3 and 4 of the 4-epoch teacher
    assert [m["teacher_epoch"] for m in metrics[1:]] == list(schedule)
    before = {p: p.stat().st_mtime_ns for p in reference.run_dir.rglob("*")}
    again = distill(config, reference.run_dir, quiet=True)
    assert again.status == "already_complete" and again.metrics == metrics
    assert {p: p.stat().st_mtime_ns for p in reference.run_dir.rglob("*")} == before
    # the same directory with another config is refused, naming the difference
    with pytest.raises(ValueError, match=r"different config \(temperature: 4.0 -> 2.0\)"):
        distill(config.replace(temperature=2.0), reference.run_dir, quiet=True)
