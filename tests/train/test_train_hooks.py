"""The supervision seam (variables per epoch, in-step outputs, pluggable loss, diagnostics),
checkpoint policy, loading by epoch, metrics fields, and the learning-curve plot."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from run_helpers import mlp_config

from sdcomplex.models import create_model
from sdcomplex.train import (
    EpochInfo,
    Supervision,
    cross_entropy_loss,
    list_checkpoints,
    load_checkpoint,
    plot_learning_curves,
    read_metrics,
    train,
)
from sdcomplex.train._metrics import TIMING_FIELDS, train_eval_indices

TINY = mlp_config(
    8,
    synthetic=(64, 32, 5, 3),
    epochs=4,
    batch_size=16,
    learning_rate=0.2,
    eval_batch_size=24,  # the test split is 32: a padded last batch
)


@pytest.fixture(scope="module")
def hooked_run(tmp_path_factory):
    """A 4-epoch run whose 'teacher' is a fixed linear map scaled by the epoch, supervising
    the student through the KL divergence; diagnostics count the calls."""
    run_dir = tmp_path_factory.mktemp("hooked") / "run"
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)
    calls = {"supervision": [], "diagnostics": []}

    def variables(epoch):
        calls["supervision"].append(epoch)
        return {"w": w, "scale": jnp.float32(epoch)}

    def apply(sup, x):
        return x @ sup["w"] * sup["scale"]  # teacher logits

    def loss(logits, labels, teacher_logits):
        kl = optax.kl_divergence(jax.nn.log_softmax(logits), jax.nn.softmax(teacher_logits))
        return kl.mean() + 0.0 * cross_entropy_loss(logits, labels)

    def diagnostics(info):
        assert isinstance(info, EpochInfo)
        calls["diagnostics"].append(info.epoch)
        x = (info.dataset.x_test - info.dataset.info.mean[0]) / info.dataset.info.std[0]
        student = info.model.apply(info.variables, x, train=False)
        teacher = x @ w
        return {
            "test_fidelity": float(np.mean(np.argmax(student, 1) == np.argmax(teacher, 1))),
            "scale_seen": None if info.supervision is None else float(info.supervision["scale"]),
        }

    supervision = Supervision(loss=loss, apply=apply, variables=variables, diagnostics=diagnostics)
    result = train(TINY, run_dir, quiet=True, supervision=supervision)
    return run_dir, result, calls


def test_hooks_are_called_once_per_epoch_and_merged_into_metrics(hooked_run):
    run_dir, result, calls = hooked_run
    assert calls["supervision"] == [1, 2, 3, 4]
    assert calls["diagnostics"] == [0, 1, 2, 3, 4]  # epoch 0 before training
    metrics = read_metrics(run_dir)
    assert [m["scale_seen"] for m in metrics] == [None, 1.0, 2.0, 3.0, 4.0]
    # the student learns to agree with the teacher, though it never sees the labels' loss
    assert metrics[-1]["test_fidelity"] >= metrics[0]["test_fidelity"] + 0.1


def test_metrics_lines_have_every_field(hooked_run):
    run_dir, result, _ = hooked_run
    metrics = read_metrics(run_dir)
    assert [m["epoch"] for m in metrics] == [0, 1, 2, 3, 4]
    assert [m["step"] for m in metrics] == [0, 4, 8, 12, 16]  # 64 / 16 steps per epoch
    for m in metrics:
        for key in ("train_loss", "train_acc", "test_loss", "test_acc", "lr", *TIMING_FIELDS):
            assert key in m
        assert 0 <= m["test_acc"] <= 1 and m["test_acc"] * 32 == pytest.approx(
            round(m["test_acc"] * 32)
        )
    assert metrics[0]["batch_loss"] is None and metrics[1]["batch_loss"] > 0
    # lr: the cosine rate of the epoch's last update
    lrs = [m["lr"] for m in metrics]
    assert lrs[0] == pytest.approx(0.2)
    assert lrs[2] == pytest.approx(0.2 * 0.5 * (1 + np.cos(np.pi * 7 / 16)))


def test_evaluation_matches_an_independent_computation(hooked_run):
    run_dir, _, _ = hooked_run
    from sdcomplex.data import load_dataset, normalised_arrays

    arrays = normalised_arrays(load_dataset("synthetic", **TINY.data_options))
    model = create_model("mlp", 3, hidden_sizes=(8,))
    for epoch in (0, 4):
        logits = model.apply(load_checkpoint(run_dir, epoch), arrays.x_test)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, arrays.y_test).mean()
        acc = np.mean(np.argmax(logits, 1) == arrays.y_test)
        line = read_metrics(run_dir)[epoch]
        assert line["test_loss"] == pytest.approx(float(ce), rel=1e-5)
        assert line["test_acc"] == pytest.approx(acc)


def test_eval_train_examples_is_a_uniform_sample_not_the_first_ones(tmp_path):
    # a data set stored class by class: its first 20 examples hold one class, the sample all
    labels = np.repeat(np.arange(5), 20)
    rows = train_eval_indices(100, 20)
    assert rows is not None and len(rows) == 20 and np.all(np.diff(rows) > 0)
    assert set(labels[rows].tolist()) == set(range(5))
    assert train_eval_indices(100, None) is None and train_eval_indices(100, 100) is None
    # the logged train metrics are those of the sample; the diagnostics see its rows
    from sdcomplex.data import load_dataset, normalised_arrays

    seen = []

    def diagnostics(info):
        seen.append(info.train_indices)
        return {}

    config = TINY.replace(epochs=1, eval_train_examples=20)
    run_dir = tmp_path / "run"
    train(config, run_dir, quiet=True, supervision=Supervision(diagnostics=diagnostics))
    rows = train_eval_indices(64, 20)
    assert len(seen) == 2 and all(np.array_equal(s, rows) for s in seen)
    arrays = normalised_arrays(load_dataset("synthetic", **TINY.data_options))
    model = create_model("mlp", 3, hidden_sizes=(8,))
    for epoch in (0, 1):
        logits = model.apply(load_checkpoint(run_dir, epoch), arrays.x_train[rows])
        labels = arrays.y_train[rows]
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        line = read_metrics(run_dir)[epoch]
        assert line["train_loss"] == pytest.approx(float(ce), rel=1e-5)
        assert line["train_acc"] == pytest.approx(np.mean(np.argmax(logits, 1) == labels))


def test_checkpoints_by_epoch_and_keep_policy(hooked_run, tmp_path):
    run_dir, result, _ = hooked_run
    assert list_checkpoints(run_dir) == [0, 1, 2, 3, 4]  # every epoch kept (teacher default)
    last = load_checkpoint(run_dir, 4)
    assert set(last) == {"params"}
    leaves = zip(jax.tree.leaves(last), jax.tree.leaves(result.variables), strict=True)
    assert all(np.array_equal(a, b) for a, b in leaves)
    first = load_checkpoint(run_dir, 0)["params"]["logits"]["kernel"]
    assert not np.array_equal(first, last["params"]["logits"]["kernel"])
    with pytest.raises(ValueError, match="no checkpoint for epoch 7"):
        load_checkpoint(run_dir, 7)
    with pytest.raises(ValueError, match="does not exist"):
        list_checkpoints(tmp_path / "nothing")

    sparse = train(TINY.replace(epochs=5, checkpoint_every=2, keep_checkpoints=2), tmp_path / "s")
    assert sparse.status == "completed"
    assert list_checkpoints(tmp_path / "s") == [4, 5]  # saved 0, 2, 4, 5; kept the last 2
    assert [m["epoch"] for m in read_metrics(tmp_path / "s")] == [0, 1, 2, 3, 4, 5]


def test_reserved_diagnostic_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="reserved metric names"):
        supervision = Supervision(diagnostics=lambda info: {"test_acc": 1})
        train(TINY, tmp_path / "run", quiet=True, supervision=supervision)


def test_supervision_defaults_and_field_types(tmp_path):
    plain = Supervision()
    assert plain.loss is cross_entropy_loss and plain.epoch_variables(3) is None
    # without apply the variables are the outputs, and no gradient flows into them
    v = jnp.arange(3.0)
    assert np.array_equal(plain.outputs(v, None), v)
    assert np.array_equal(jax.grad(lambda v: jnp.sum(plain.outputs(v, None) ** 2))(v), [0, 0, 0])
    with_apply = Supervision(apply=lambda w, x: x * w)
    assert np.array_equal(with_apply.outputs(v, 2.0), 2 * v)
    assert np.array_equal(jax.grad(lambda v: jnp.sum(with_apply.outputs(v, 2.0)))(v), [0, 0, 0])
    for field in ("loss", "apply", "variables", "diagnostics"):
        with pytest.raises(TypeError, match=f"Supervision.{field} must be a function, got int"):
            Supervision(**{field: 3})
    with pytest.raises(TypeError, match="Supervision.loss must be a function, got NoneType"):
        Supervision(loss=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="supervision must be a Supervision, got function"):
        train(TINY, tmp_path / "run", supervision=lambda epoch: None)  # type: ignore[arg-type]
    assert not (tmp_path / "run").exists()


def test_plot_learning_curves(hooked_run, tmp_path):
    run_dir, _, _ = hooked_run
    png, pdf = plot_learning_curves(run_dir, tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pdf.read_bytes()[:5] == b"%PDF-"
    from PIL import Image

    with Image.open(png) as image:
        assert image.info["dpi"][0] == pytest.approx(200, abs=1)
        assert image.size[0] >= 1500
    with pytest.raises(FileExistsError, match="exists"):
        plot_learning_curves(run_dir, tmp_path / "curves.pdf")
    plot_learning_curves(run_dir, tmp_path / "curves", overwrite=True)
    with pytest.raises(ValueError, match="dpi"):
        plot_learning_curves(run_dir, tmp_path / "low", dpi=72)
    with pytest.raises(ValueError, match="no metrics file"):
        plot_learning_curves(tmp_path, tmp_path / "x")
