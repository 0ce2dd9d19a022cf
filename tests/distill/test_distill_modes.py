"""Every distillation mode end to end, with the diagnostics checked against independent
computations (model.apply on the normalised arrays, the NTK and complexity of the saved
checkpoints), the online schedule, checkpoint reads and the absence of recompilation."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from distill_helpers import PROBE, STUDENT, TEACHER

from sdcomplex import targets as tg
from sdcomplex.complexity import kernel_alignment, supervision_complexity
from sdcomplex.data import load_dataset, normalised_arrays
from sdcomplex.distill import kd_loss, online_schedule
from sdcomplex.distill._diagnostics import DIAGNOSTIC_KEYS, NTK_INIT_FILE, positions_in
from sdcomplex.distill._run import DISTILL_FILE
from sdcomplex.models import create_model
from sdcomplex.ntk import empirical_ntk, flax_ntk_fn
from sdcomplex.train import list_checkpoints, load_checkpoint, read_metrics
from sdcomplex.train._metrics import TIMING_FIELDS

KEYS = ("teacher_epoch", *DIAGNOSTIC_KEYS)


@pytest.fixture(scope="module")
def arrays():
    return normalised_arrays(load_dataset("digits"))


def _logits(model_name, hidden, variables, x):
    model = create_model(model_name, 10, hidden_sizes=hidden)
    return np.asarray(model.apply(variables, x))


def _teacher_logits(teacher_dir, epoch, x):
    return _logits("mlp", (64,), load_checkpoint(teacher_dir, epoch), x)


def _student_logits(run_dir, epoch, x):
    return _logits("mlp", (32,), load_checkpoint(run_dir, epoch), x)


def test_every_mode_logs_every_key_every_epoch(mode_runs):
    runs, _ = mode_runs
    for mode, result in runs.items():
        assert result.status == "completed" and result.epoch == STUDENT.epochs
        metrics = read_metrics(result.run_dir)
        assert [m["epoch"] for m in metrics] == [0, 1, 2, 3]
        for m in metrics:
            assert set(KEYS) <= set(m), mode
            assert set(TIMING_FIELDS) <= set(m)
            for key in ("train_fidelity_final", "test_fidelity_final"):
                assert 0 <= m[key] <= 1
            for key in ("complexity_labels", "complexity_random_labels", "complexity_current"):
                assert m[key] > 0
            assert 0 < m["ntk_similarity"] <= 1 + 1e-6
        assert metrics[0]["ntk_similarity"] == pytest.approx(1.0, abs=1e-6)
        assert metrics[-1]["ntk_similarity"] < 1  # the student's NTK moved
        # random labels are more complex than true labels for the student's NTK
        assert all(m["complexity_random_labels"] > m["complexity_labels"] for m in metrics)
        assert (result.run_dir / NTK_INIT_FILE).is_file()
        assert list_checkpoints(result.run_dir) == [0, 1, 2, 3]


def test_mode_none_supervises_with_labels(mode_runs):
    metrics = read_metrics(mode_runs[0]["none"].run_dir)
    for m in metrics:
        assert m["teacher_epoch"] is None
        assert m["complexity_current"] == m["complexity_labels"]
        assert m["train_fidelity_current"] is None and m["train_kd_loss"] is None
        assert m["complexity_teacher_final"] > 0  # the teacher only feeds the diagnostics
    record = json.loads((mode_runs[0]["none"].run_dir / DISTILL_FILE).read_text())
    assert record["schedule"] is None and record["loss"]["kind"] == "cross_entropy"
    assert record["diagnostics"]["targets"]["current"]["kind"] == "one_hot"


def test_online_replays_the_schedule_and_reads_only_needed_checkpoints(mode_runs):
    runs, counter = mode_runs
    schedule = online_schedule(STUDENT.epochs, TEACHER.epochs)
    assert schedule == (2, 3, 4)
    metrics = read_metrics(runs["online"].run_dir)
    # epoch 0 logs the checkpoint that supervises epoch 1
    assert [m["teacher_epoch"] for m in metrics] == [schedule[0], *schedule]
    record = json.loads((runs["online"].run_dir / DISTILL_FILE).read_text())
    assert record["schedule"] == list(schedule) and record["mode"] == "online"
    assert record["loss"]["temperature"] == 4.0 and record["loss"]["alpha"] == 0.0
    # the current checkpoint's targets and fidelity equal the final teacher's at the end
    last = metrics[-1]
    assert last["complexity_current"] == last["complexity_teacher_final"]
    assert last["train_fidelity_current"] == last["train_fidelity_final"]
    assert metrics[1]["complexity_current"] != metrics[1]["complexity_teacher_final"]
    # checkpoints are read one at a time, when needed: never 0 or 1, each at most twice
    assert set(counter.loads) == {2, 3, 4} and len(counter.loads) <= 4


def test_switching_checkpoints_does_not_recompile(mode_runs):
    _, counter = mode_runs
    # three teacher checkpoints supervised the three epochs: one trace of the step
    assert counter.traces["step"] == 1
    assert counter.compiles["jit(step)"] <= 1  # 0 if an identical program was compiled before
    assert counter.traces["teacher_logits"] == 1 and counter.traces["student_logits"] == 1


def test_offline_uses_the_chosen_checkpoint(mode_runs, teacher_dir, arrays):
    run_dir = mode_runs[0]["offline"].run_dir
    metrics = read_metrics(run_dir)
    assert [m["teacher_epoch"] for m in metrics] == [2, 2, 2, 2]
    fidelity = json.loads((run_dir / DISTILL_FILE).read_text())["diagnostics"]["fidelity"]
    subset = np.asarray(fidelity["train_indices"])
    assert len(subset) == 1000 and fidelity["test_indices"] == "all"  # 359 test digits
    counts = np.bincount(arrays.y_train[subset])
    assert counts.max() - counts.min() <= 1  # class-balanced
    # the KD objective at epoch 0 against checkpoint 2's logits, computed independently
    x, y = arrays.x_train[subset], arrays.y_train[subset]
    student0 = _student_logits(run_dir, 0, x)
    expected = {
        epoch: float(
            kd_loss(
                jnp.asarray(student0),
                jnp.asarray(_teacher_logits(teacher_dir, epoch, x)),
                jnp.asarray(y),
                temperature=4.0,
            )
        )
        for epoch in (2, 4)
    }
    assert metrics[0]["train_kd_loss"] == pytest.approx(expected[2], rel=1e-5)
    assert abs(expected[2] - expected[4]) > 1e-3  # the final teacher would give another value
    # fidelity with the current (epoch 2) and the final teacher at the end, independently
    for split, inputs in (("train", x), ("test", arrays.x_test)):
        student = _student_logits(run_dir, 3, inputs)
        for epoch, which in ((2, "current"), (4, "final")):
            teacher = _teacher_logits(teacher_dir, epoch, inputs)
            agree = np.mean(student.argmax(1) == teacher.argmax(1))
            key = f"{split}_fidelity_{which}"
            assert metrics[-1][key] == pytest.approx(agree, abs=1.5 / len(student))


def test_ntk_similarity_and_complexities_match_the_core_library(mode_runs, teacher_dir, arrays):
    run_dir = mode_runs[0]["online"].run_dir
    record = json.loads((run_dir / DISTILL_FILE).read_text())
    probe = np.asarray(record["diagnostics"]["probe"]["indices"])
    assert len(probe) == PROBE and len(set(probe.tolist())) == PROBE
    counts = record["diagnostics"]["probe"]["class_counts"]
    assert sum(counts) == PROBE and max(counts) - min(counts) <= 1  # class-balanced
    x, y = arrays.x_train[probe], arrays.y_train[probe]
    model = create_model("mlp", 10, hidden_sizes=(32,))

    def ntk(epoch):
        fn, params = flax_ntk_fn(model, load_checkpoint(run_dir, epoch))
        return empirical_ntk(fn, params, x, outputs="mean")

    k0, k3 = ntk(0), ntk(3)
    np.testing.assert_allclose(np.load(run_dir / NTK_INIT_FILE), k0, rtol=1e-5, atol=1e-6)
    last = read_metrics(run_dir)[-1]
    assert last["ntk_similarity"] == pytest.approx(kernel_alignment(k0, k3), abs=1e-6)
    labels = supervision_complexity(k3, tg.one_hot(y, 10)).adjusted
    assert last["complexity_labels"] == pytest.approx(labels, rel=1e-4)
    random = supervision_complexity(k3, tg.random_labels(PROBE, 10, seed=0)).adjusted
    assert last["complexity_random_labels"] == pytest.approx(random, rel=1e-4)
    soft = tg.soft_targets(_teacher_logits(teacher_dir, 4, x), 4.0)
    teacher = supervision_complexity(k3, soft).adjusted
    assert last["complexity_teacher_final"] == pytest.approx(teacher, rel=1e-4)
    assert last["complexity_teacher_final"] < last["complexity_labels"]  # soft targets: simpler


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_fidelity_examples_are_found_in_the_evaluated_sample(rng):
    # the trainer evaluates a sample of the training examples (eval_train_examples); the
    # diagnostics reuse its logits where the sample holds every fidelity example
    for _ in range(200):
        rows = np.sort(rng.choice(40, int(rng.integers(0, 41)), replace=False))
        indices = np.sort(rng.choice(40, int(rng.integers(0, 8)), replace=False))
        expected = [int(np.flatnonzero(rows == i)[0]) for i in indices if i in rows]
        got = positions_in(rows, indices)
        if len(expected) == len(indices):
            assert got is not None and got.tolist() == expected
        else:
            assert got is None
    assert positions_in(None, np.array([3, 9])).tolist() == [3, 9]  # every example evaluated
