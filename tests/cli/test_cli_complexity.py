"""The command line: complexity from saved arrays or a trained run's kernel, errors as one line
and exit status 2."""

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
import pytest
from cli_helpers import TINY_RUN, tiny_run_dir  # noqa: F401 (a fixture)

from sdcomplex.cli import main
from sdcomplex.complexity import supervision_complexity
from sdcomplex.data import balanced_indices, normalised_arrays
from sdcomplex.models import create_model
from sdcomplex.ntk import (
    empirical_ntk,
    flax_ntk_fn,
    load_kernel,
    load_run_checkpoint,
    run_examples,
    run_ntk,
)
from sdcomplex.ntk._kernel_files import cached_run_kernel
from sdcomplex.targets import one_hot, random_labels, soft_targets
from sdcomplex.train import load_checkpoint, load_run_data


@pytest.fixture
def arrays(tmp_path):
    r = np.random.default_rng(0)
    a = r.normal(size=(12, 30))
    kernel = a @ a.T / 30
    labels = r.integers(0, 3, size=12)
    logits = r.normal(size=(12, 3))
    np.save(tmp_path / "kernel.npy", kernel)
    np.save(tmp_path / "labels.npy", labels)
    np.save(tmp_path / "logits.npy", logits)
    np.savez(tmp_path / "targets.npz", a=one_hot(labels, 3).values, b=logits)
    return tmp_path, kernel, labels, logits


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "complexity" in capsys.readouterr().out


def test_complexity_table_and_json(arrays, capsys):
    path, kernel, labels, logits = arrays
    out = path / "out.json"
    code = main(
        [
            "complexity",
            "--kernel",
            str(path / "kernel.npy"),
            "--targets",
            str(path / "targets.npz"),
            "--labels",
            str(path / "labels.npy"),
            "--logits",
            str(path / "logits.npy"),
            "--temperature",
            "1",
            "4",
            "--random-labels",
            "0",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "soft(tau=4)" in text and "random labels" in text
    results = {r["name"]: r for r in json.loads(out.read_text())["results"]}
    assert set(results) == {"a", "b", "labels", "soft(tau=1)", "soft(tau=4)", "random labels"}
    expected = supervision_complexity(kernel, soft_targets(logits, 4.0).values).value
    assert results["soft(tau=4)"]["value"] == pytest.approx(expected, rel=1e-12)
    assert results["labels"]["value"] == pytest.approx(results["a"]["value"], rel=1e-12)
    assert results["soft(tau=4)"]["targets"]["temperature"] == 4.0


def test_refuses_to_overwrite_json(arrays, capsys):
    path, *_ = arrays
    out = path / "out.json"
    out.write_text("keep me")
    args = [
        "complexity",
        "--kernel",
        str(path / "kernel.npy"),
        "--labels",
        str(path / "labels.npy"),
        "--json",
        str(out),
    ]
    assert main(args) == 2
    assert out.read_text() == "keep me"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exists" in err
    assert main([*args, "--force"]) == 0
    assert json.loads(out.read_text())["results"]


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--kernel", "missing.npy", "--labels", "labels.npy"], "no such file"),
        (["--kernel", "labels.npy", "--labels", "labels.npy"], "kernel must have shape"),
        (["--kernel", "kernel.npy"], "at least one"),
        (["--kernel", "kernel.npy", "--labels", "labels.npy", "--ridge", "-1"], "ridge"),
        (["--kernel", "targets.npz", "--labels", "labels.npy"], "--kernel-key"),
    ],
)
def test_errors_are_one_line(arrays, capsys, monkeypatch, extra, match):
    path, *_ = arrays
    monkeypatch.chdir(path)
    assert main(["complexity", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sdcomplex complexity: error:") and err.count("\n") == 1
    assert match in err


RUN_CONFIG = TINY_RUN


@pytest.fixture
def trained_run(tiny_run_dir):  # noqa: F811 (the imported fixture)
    """A finished 2-epoch MLP run on 100 digits (checkpoints 0, 1, 2)."""
    return tiny_run_dir


def _library_values(run_dir, teacher_epoch, tau, seed):
    """The same quantities from the public train/data/model/ntk APIs alone."""
    dataset = load_run_data(RUN_CONFIG)
    indices = balanced_indices(dataset.y_train, 3, seed=0)
    x = normalised_arrays(dataset).x_train[indices]
    y = dataset.y_train[indices]
    model = create_model("mlp", 10, hidden_sizes=[16])
    fn, params = flax_ntk_fn(model, load_checkpoint(run_dir, 2))
    kernel = empirical_ntk(fn, params, x)
    teacher_logits = model.apply(load_checkpoint(run_dir, teacher_epoch), x, train=False)
    targets = {
        "labels": one_hot(y, 10).values,
        f"random:{seed}": random_labels(len(y), 10, seed=seed).values,
        f"teacher={run_dir}@{teacher_epoch}:{tau:g}": soft_targets(teacher_logits, tau).values,
    }
    return kernel, {k: supervision_complexity(kernel, v).value for k, v in targets.items()}


@pytest.mark.slow
def test_run_kernel_targets_equal_the_library(trained_run, tmp_path, capsys):
    out = tmp_path / "out" / "c.json"
    teacher = f"teacher={trained_run}@1:2"
    args = ["complexity", "--run", f"{trained_run}@2", "--n-per-class", "3", "--quiet"]
    args += ["--targets", "labels", "--targets", "random:5", "--targets", teacher]
    assert main([*args, "--json", str(out)]) == 0
    assert "cached in" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    results = {r["name"]: r for r in saved["results"]}
    kernel, expected = _library_values(trained_run, 1, 2.0, 5)
    assert set(results) == set(expected)
    for name, value in expected.items():
        assert results[name]["value"] == pytest.approx(value, rel=1e-6), name
    assert results["labels"]["value"] < results["random:5"]["value"]
    cached, record = load_kernel(saved["kernel"])  # the cache entry, next to the JSON
    np.testing.assert_allclose(cached, kernel, rtol=1e-6, atol=1e-6)
    assert Path(saved["kernel"]).parent == out.parent
    assert saved["run_kernel"]["run"]["epoch"] == 2 and record["data"]["n"] == 30

    # a second call reuses the verified cache entry and gives the same numbers
    assert main([*args, "--json", str(out), "--force"]) == 0
    assert "reused from" in capsys.readouterr().out
    again = {r["name"]: r["value"] for r in json.loads(out.read_text())["results"]}
    assert again == {name: r["value"] for name, r in results.items()}
    # a damaged entry is not used: computed again and replaced
    Path(saved["kernel"]).with_suffix(".json").write_text(
        json.dumps({**record, "sha256": "0" * 64})
    )
    assert main([*args, "--json", str(out), "--force"]) == 0
    assert "cached in" in capsys.readouterr().out
    assert load_kernel(saved["kernel"])[1]["sha256"] == record["sha256"]


@pytest.mark.slow
def test_cache_is_not_reused_for_other_variables_or_inputs(trained_run, tmp_path):
    # a student distilled again from another teacher keeps its directory, epoch and config
    # hash but not its variables; data files replaced under the same name keep the request's
    # description and indices but not the inputs: neither may reuse the cached kernel
    run = load_run_checkpoint(trained_run, 2)
    examples = run_examples(run, n_per_class=2)
    cached_run_kernel(run, examples, tmp_path)
    other_run = dataclasses.replace(
        run, variables=jax.tree.map(lambda v: 1.5 * np.asarray(v), run.variables)
    )
    other_examples = examples._replace(raw=examples.raw[::-1].copy())
    for checkpoint, chosen in ((other_run, examples), (run, other_examples)):
        kernel, _, _, reused = cached_run_kernel(checkpoint, chosen, tmp_path)
        assert not reused
        np.testing.assert_array_equal(kernel, run_ntk(checkpoint, chosen.raw))
    assert cached_run_kernel(run, examples, tmp_path)[3]  # the first request: still reused


@pytest.mark.slow
def test_a_damaged_cache_entry_is_computed_again(trained_run, tmp_path):
    run = load_run_checkpoint(trained_run, 2)
    examples = run_examples(run, n_per_class=2)
    kernel, _, file, _ = cached_run_kernel(run, examples, tmp_path)
    file.write_bytes(file.read_bytes()[:100])  # cut off (a full disk, a copy interrupted)
    again, _, _, reused = cached_run_kernel(run, examples, tmp_path)
    assert not reused
    np.testing.assert_array_equal(again, kernel)
    assert cached_run_kernel(run, examples, tmp_path)[3]  # replaced: reused from now on


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--run", "{run}@5", "--targets", "labels"], "no checkpoint of epoch 5"),
        (["--run", "{run}@x", "--targets", "labels"], "bad epoch 'x'"),
        (["--run", "{tmp}/none@1", "--targets", "labels"], "no such run directory"),
        (["--run", "{run}", "--targets", "teacher={run}@1:-2"], "bad temperature '-2'"),
        (["--run", "{run}", "--targets", "teacher={run}@1:hot"], "bad temperature 'hot'"),
        (["--run", "{run}", "--targets", "teacher={run}@1"], "teacher=RUN[@EPOCH]:TAU"),
        (["--run", "{run}", "--targets", "teacher={run}@9:1"], "no checkpoint of epoch 9"),
        (["--run", "{run}", "--targets", "random:seed"], "bad seed"),
        (["--kernel", "{tmp}/k.npy", "--targets", "labels"], "needs --run"),
    ],
)
def test_run_errors_are_one_line(trained_run, tmp_path, capsys, extra, match):
    extra = [a.format(run=trained_run, tmp=tmp_path) for a in extra]
    assert main(["complexity", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sdcomplex complexity: error:") and err.count("\n") == 1
    assert match in err


def test_indefinite_kernel_refused_or_projected(tmp_path, capsys):
    kernel = np.array([[1.0, 2.0], [2.0, 1.0]])  # eigenvalues 3 and -1
    np.save(tmp_path / "k.npy", kernel)
    np.save(tmp_path / "y.npy", np.array([1.0, 1.0]))
    base = ["complexity", "--kernel", str(tmp_path / "k.npy"), "--targets", str(tmp_path / "y.npy")]
    assert main(base) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "positive semi-definite" in err and "-0.333" in err
    out = tmp_path / "p.json"
    assert main([*base, "--psd", "project", "--json", str(out)]) == 0
    (result,) = json.loads(out.read_text())["results"]
    # K+ = 3 u u^T with u = (1, 1)/sqrt(2): y^T K+^+ y = (y.u)^2 / 3 = 2/3
    assert result["value"] == pytest.approx(2.0 / 3.0, rel=1e-9)
    assert result["psd"] == "project" and result["psd_removed"] > 0


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_results_get_the_permissions_of_any_new_file(arrays, capsys, umask):
    """An atomically written result has the mode a plain open() gives a new file under the
    same umask (it was always 0o600: unreadable to a group sharing the results)."""
    import os

    path, *_ = arrays
    old = os.umask(umask)
    try:
        (path / "plain").write_text("x")
        flags = ["--kernel", str(path / "kernel.npy"), "--labels", str(path / "labels.npy")]
        assert main(["complexity", *flags, "--json", str(path / "out.json")]) == 0
    finally:
        os.umask(old)
    expected = (path / "plain").stat().st_mode & 0o777
    assert expected == 0o666 & ~umask
    assert (path / "out.json").stat().st_mode & 0o777 == expected
    assert [p.name for p in path.iterdir() if p.name.endswith(".tmp")] == []
