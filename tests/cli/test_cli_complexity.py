"""The command line: complexity from saved arrays, errors as one line and exit status 2."""

import json

import numpy as np
import pytest

from sdcomplex.cli import main
from sdcomplex.complexity import supervision_complexity
from sdcomplex.targets import one_hot, soft_targets


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
