"""``sdcomplex ntk``: a trained run's kernel equals the library's on the restored model."""

import hashlib
import json
import shutil

import jax
import numpy as np
import pytest
from cli_helpers import TINY_RUN, tiny_run_dir  # noqa: F401 (a fixture)

from sdcomplex.cli import main
from sdcomplex.data import balanced_subset, load_dataset, normalise_array, normalised_arrays
from sdcomplex.models import create_model
from sdcomplex.ntk import (
    empirical_ntk,
    flax_ntk_fn,
    load_kernel,
    load_run_checkpoint,
    run_examples,
    run_ntk,
)
from sdcomplex.ntk._runs import tree_sha256
from sdcomplex.train import (
    DamagedFile,
    load_checkpoint,
    load_run_data,
)

pytestmark = pytest.mark.slow  # the module's run trains for a few seconds

TINY = TINY_RUN


@pytest.fixture
def run_dir(tiny_run_dir):  # noqa: F811 (the imported fixture)
    """A finished 2-epoch MLP run on 100 digits, checkpoints at epochs 0, 1, 2."""
    return tiny_run_dir


def expected_kernel(run_dir, epoch, indices, outputs="mean"):
    """The kernel from the public train/data/model APIs alone: the run's data loaded and
    normalised as in training, the checkpoint restored into the config's model."""
    dataset = load_run_data(TINY)
    x = normalised_arrays(dataset, normalise=TINY.normalise).x_train[indices]
    model = create_model(TINY.model, dataset.info.num_classes, **TINY.model_options)
    fn, params = flax_ntk_fn(model, load_checkpoint(run_dir, epoch))
    return empirical_ntk(fn, params, x, outputs=outputs)


def ntk(*args):
    return main(["ntk", *map(str, args), "--quiet"])


def test_kernel_equals_the_library_call_and_sidecar_records_it(run_dir, tmp_path, capsys):
    out = tmp_path / "K.npz"
    assert ntk(f"{run_dir}@1", "--n-per-class", 3, "--subset-seed", 4, "--out", out) == 0
    assert "wrote" in capsys.readouterr().out
    kernel, record = load_kernel(out)
    with np.load(out) as data:
        assert data.files == ["kernel"]  # readable by `sdcomplex complexity --kernel K.npz`
    indices = np.asarray(record["indices"])
    # the subset is balanced_subset's selection of the run's data
    dataset = load_run_data(TINY)
    subset = balanced_subset(dataset, 3, seed=4)
    np.testing.assert_array_equal(dataset.x_train[indices], subset.x_train)
    np.testing.assert_array_equal(record["labels"], subset.y_train)
    assert kernel.shape == (30, 30) and kernel.dtype == np.float32
    np.testing.assert_allclose(kernel, expected_kernel(run_dir, 1, indices), rtol=1e-6, atol=1e-6)
    run = load_run_checkpoint(run_dir, 1)
    library = run_ntk(run, run_examples(run, n_per_class=3, subset_seed=4).raw)
    np.testing.assert_allclose(kernel, library, rtol=1e-6, atol=1e-6)

    assert record["run"] == {
        "run": str(run_dir.resolve()),
        "epoch": 1,
        "config_hash": TINY.hash(),
        "variables_sha256": tree_sha256(load_checkpoint(run_dir, 1)),
        "model": "mlp",
        "model_options": {"hidden_sizes": [16]},
    }
    x = normalised_arrays(dataset, normalise=TINY.normalise).x_train[indices]
    assert record["inputs_sha256"] == hashlib.sha256(x.astype(np.float32).tobytes()).hexdigest()
    data = record["data"]
    assert (data["dataset"], data["split"], data["n_per_class"], data["subset_seed"]) == (
        "digits",
        "train",
        3,
        4,
    )
    assert data["source"] == "run" and data["n"] == 30
    assert record["outputs"] == "mean" and record["shape"] == [30, 30]
    assert {"sdcomplex", "jax", "flax"} <= set(record["versions"])
    assert json.loads(out.with_suffix(".json").read_text()) == record


def test_init_is_the_runs_initialisation(run_dir, tmp_path):
    assert ntk(f"{run_dir}@init", "--n-per-class", 2, "--out", tmp_path / "init.npz") == 0
    assert ntk(f"{run_dir}@0", "--n-per-class", 2, "--out", tmp_path / "zero.npz") == 0
    k_init, record = load_kernel(tmp_path / "init.npz")
    k_zero, _ = load_kernel(tmp_path / "zero.npz")
    assert record["run"]["epoch"] == "init"
    np.testing.assert_allclose(k_init, k_zero, rtol=1e-6, atol=1e-6)
    init = load_run_checkpoint(run_dir, "init").variables
    zero = load_checkpoint(run_dir, 0)
    assert jax.tree.structure(init) == jax.tree.structure(zero)
    for a, b in zip(jax.tree.leaves(init), jax.tree.leaves(zero), strict=True):
        np.testing.assert_array_equal(a, b)
    # a trained epoch is a different kernel
    trained = expected_kernel(run_dir, 2, np.asarray(record["indices"]))
    assert not np.allclose(k_init, trained, rtol=1e-3)


def test_last_epoch_test_split_and_full_outputs(run_dir, tmp_path):
    out = tmp_path / "full.npz"
    flags = ["--split", "test", "--n-per-class", 1, "--outputs", "full", "--out", out]
    assert ntk(run_dir, *flags) == 0
    kernel, record = load_kernel(out)
    assert record["run"]["epoch"] == 2 and record["data"]["split"] == "test"
    assert kernel.shape == (10, 10, 10, 10)
    dataset = load_run_data(TINY)
    x = normalised_arrays(dataset).x_test[np.asarray(record["indices"])]
    np.testing.assert_array_equal(dataset.y_test[np.asarray(record["indices"])], record["labels"])
    model = create_model(TINY.model, 10, **TINY.model_options)
    fn, params = flax_ntk_fn(model, load_checkpoint(run_dir, 2))
    expected = empirical_ntk(fn, params, x, outputs="full")
    np.testing.assert_allclose(kernel, expected, rtol=1e-6, atol=1e-6)


def test_never_overwrites_without_force(run_dir, tmp_path, capsys):
    out = tmp_path / "K.npz"
    out.write_bytes(b"keep me")
    assert ntk(f"{run_dir}@1", "--n-per-class", 1, "--out", out) == 2
    assert out.read_bytes() == b"keep me"
    assert "exists" in capsys.readouterr().err
    assert ntk(f"{run_dir}@1", "--n-per-class", 1, "--out", out, "--force") == 0
    assert load_kernel(out)[0].shape == (10, 10)


@pytest.mark.parametrize(
    ("spec", "extra", "match"),
    [
        ("{run}@7", [], "no checkpoint of epoch 7; checkpoints: [0, 1, 2]"),
        ("{run}@seven", [], "bad epoch 'seven'"),
        ("{run}@", [], "bad epoch ''"),
        ("{tmp}/missing@1", [], "no such run directory"),
        ("{tmp}", [], "not a training run directory"),
        ("{run}@1", ["--n-per-class", "99"], "asked for 99"),
        ("{run}@1", ["--data-dir", "x"], "need --data"),
        ("{run}@1", ["--n-per-class", "1", "--subset-seed", "-1"], "subset_seed must be >= 0"),
    ],
)
def test_errors_are_one_line(run_dir, tmp_path, capsys, spec, extra, match):
    spec = spec.format(run=run_dir, tmp=tmp_path)
    assert ntk(spec, *extra, "--out", tmp_path / "K.npz") == 2
    err = capsys.readouterr().err
    assert err.startswith("sdcomplex ntk: error:") and err.count("\n") == 1
    assert match in err
    assert not (tmp_path / "K.npz").exists()


def test_an_edited_or_damaged_run_is_refused(run_dir, tmp_path):
    """A run is read as its run directory: ``config.json`` checked against the hash ``run.json``
    records, ``run.json`` against its seal."""
    edited, damaged = tmp_path / "edited", tmp_path / "damaged"
    for copy in (edited, damaged):
        shutil.copytree(run_dir, copy)
    (edited / "config.json").write_text(TINY.replace(learning_rate=0.5).to_json())
    with pytest.raises(ValueError, match=r"changed after the run started.*learning_rate: "):
        load_run_checkpoint(edited, 1)
    record = damaged / "run.json"
    record.write_text(record.read_text().replace('"num_params": ', '"num_params": 1'))
    with pytest.raises(DamagedFile, match="run.json is damaged"):
        load_run_checkpoint(damaged, "init")
    assert load_run_checkpoint(run_dir, "init").config == TINY


def test_out_must_be_npz(run_dir, tmp_path, capsys):
    assert ntk(f"{run_dir}@1", "--out", tmp_path / "K.npy") == 2
    assert "must end in .npz" in capsys.readouterr().err


def test_other_data_and_last_layer_filter_give_the_feature_kernel(run_dir, tmp_path):
    """--data digits (the whole data set, not the run's subset) and --param-filter '^logits/':
    the kernel of the last Dense layer alone, h h^T + 1 for the hidden features h."""
    out = tmp_path / "last.npz"
    flags = ["--data", "digits", "--split", "test", "--n-per-class", 2]
    assert ntk(f"{run_dir}@2", *flags, "--param-filter", "^logits/", "--out", out) == 0
    kernel, record = load_kernel(out)
    assert record["data"]["source"] == "other" and record["param_filter"] == "^logits/"
    dataset = load_dataset("digits")
    indices = np.asarray(record["indices"])
    # normalised with the statistics of the data the run trained on, as in training
    info = load_run_data(TINY).info
    x = normalise_array(dataset.x_test[indices], info).reshape(len(indices), -1)
    hidden = load_checkpoint(run_dir, 2)["params"]["hidden1"]
    h = np.maximum(x @ np.asarray(hidden["kernel"]) + np.asarray(hidden["bias"]), 0.0)
    gram = h.astype(np.float64) @ h.T + 1.0
    np.testing.assert_allclose(kernel, gram, rtol=1e-5, atol=1e-5 * gram.max())
