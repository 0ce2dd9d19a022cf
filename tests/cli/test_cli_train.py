"""``sdcomplex train`` and ``sdcomplex plot``: round trips, config files, one-line errors."""

import json

import numpy as np
import pytest
from cli_helpers import SYNTHETIC_FLAGS

from sdcomplex.cli import main
from sdcomplex.train import TrainConfig, list_checkpoints, load_config, read_metrics

TINY_FLAGS = [
    "--model",
    "mlp",
    "--model-option",
    "hidden_sizes=[6]",
    *SYNTHETIC_FLAGS,
    "--batch-size",
    "16",
]


def test_train_round_trip_then_rerun_then_plot(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY_FLAGS, "--epochs", "2", "--lr", "0.3", "--out", str(out)]) == 0
    assert "trained mlp on synthetic to epoch 2" in capsys.readouterr().out
    config = load_config(out / "config.json")  # the resolved config is itself a config file
    assert config.epochs == 2 and config.learning_rate == 0.3 and not config.augment
    assert config.model_options == {"hidden_sizes": [6]}
    assert config.data_options == {"n_train": 48, "n_test": 16, "dim": 4, "num_classes": 3}
    assert config.momentum == TrainConfig().momentum  # untouched fields keep the defaults
    assert [m["epoch"] for m in read_metrics(out)] == [0, 1, 2]
    assert list_checkpoints(out) == [0, 1, 2]

    assert main(["train", *TINY_FLAGS, "--epochs", "2", "--lr", "0.3", "--out", str(out)]) == 0
    assert "already complete" in capsys.readouterr().out
    # the same run from its own config file
    assert main(["train", "--config", str(out / "config.json"), "--out", str(out)]) == 0
    assert "already complete" in capsys.readouterr().out

    assert main(["plot", str(out)]) == 0
    assert (out / "learning_curves.png").stat().st_size > 10_000
    assert (out / "learning_curves.pdf").exists()
    assert main(["plot", str(out)]) == 2  # never overwrites silently
    assert "exists" in capsys.readouterr().err
    assert main(["plot", str(out), "--out", str(tmp_path / "c.png"), "--force"]) == 0
    assert (tmp_path / "c.pdf").exists()


def test_config_files_and_flag_precedence(tmp_path, capsys):
    py = tmp_path / "experiment.py"
    py.write_text(
        "from sdcomplex.train import TrainConfig\n"
        "def get_config():\n"
        "    return TrainConfig(model='lenet5x2', dataset='cifar10_jpeg', epochs=30,\n"
        "                       n_per_class=100, lr_milestones=(10, 20), schedule='step')\n"
    )
    code = main(["train", "--config", str(py), "--epochs", "40", "--print-config", "--out", "x"])
    assert code == 0
    printed = TrainConfig.from_dict(json.loads(capsys.readouterr().out))
    assert (printed.model, printed.epochs, printed.n_per_class) == ("lenet5x2", 40, 100)
    assert printed.lr_milestones == (10, 20)

    js = tmp_path / "base.json"
    js.write_text(json.dumps({"model": "resnet20", "weight_decay": 1e-4, "seed": 3}))
    code = main(
        ["train", "--config", str(js), "--seed", "4", "--set", "nesterov=true", "--print-config"]
        + ["--out", "x"]
    )
    assert code == 0
    printed = TrainConfig.from_dict(json.loads(capsys.readouterr().out))
    assert (printed.weight_decay, printed.seed, printed.nesterov) == (1e-4, 4, True)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "resnet21", "--data", "cifar10"], "unknown model 'resnet21'"),
        (["--model", "resnet20", "--data", "cifar11"], "unknown dataset 'cifar11'"),
        (["--model", "resnet20", "--data", "cifar10", "--data-dir", "/no/such"], "does not exist"),
        ([*TINY_FLAGS, "--num-classes", "10"], "wrong number of classes"),
        ([*TINY_FLAGS, "--model-option", "num_classes=5"], "wrong number of classes"),
        ([*TINY_FLAGS, "--set", "learning_rat=1"], "unknown config field"),
        ([*TINY_FLAGS, "--set", "epochs"], "--set expects KEY=VALUE"),
        ([*TINY_FLAGS, "--epochs", "0"], "epochs must be >= 1"),
        (["--config", "/no/such.json"], "does not exist"),
    ],
)
def test_errors_are_one_line_with_exit_status_2(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert main(["train", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sdcomplex train: error: ") and message in err
    assert err.count("\n") == 1
    assert not out.exists()


def test_different_config_in_output_dir(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY_FLAGS, "--epochs", "1", "--out", str(out)]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(["train", *TINY_FLAGS, "--epochs", "3", "--out", str(out)]) == 2
    assert "different config (epochs: 1 -> 3)" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_print_config_states_the_data_sets_augmentation(capsys):
    argv = ["train", "--model", "cnn", "--data", "digits", "--out", "x", "--print-config"]
    assert main(argv) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert (cfg["augment"], cfg["crop_padding"], cfg["flip"]) == (True, 1, False)
    argv[4] = "cifar10"
    assert main(argv) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert (cfg["augment"], cfg["crop_padding"], cfg["flip"]) == (True, 4, True)
    assert main([*argv, "--set", "flip=false", "--set", "crop_padding=2"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert (cfg["augment"], cfg["crop_padding"], cfg["flip"]) == (True, 2, False)


def test_run_directory_relative_to_the_working_directory(tmp_path, monkeypatch, capsys):
    # Orbax needs absolute checkpoint paths; the CLI takes --out relative to the cwd.
    monkeypatch.chdir(tmp_path)
    assert main(["train", *TINY_FLAGS, "--epochs", "2", "--out", "runs/rel"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert list_checkpoints(tmp_path / "runs" / "rel")[-1] == 2
    assert list_checkpoints("runs/rel") == list_checkpoints(tmp_path / "runs" / "rel")


def test_a_finished_run_without_its_run_record_is_repaired(tmp_path, capsys):
    """A finished run whose run.json was deleted is not 'complete': train writes the record
    again (the commands that read the run need it), and the kernel of the repaired run is that
    of the intact run."""
    out = tmp_path / "run"
    flags = ["train", *TINY_FLAGS, "--epochs", "1", "--out", str(out)]
    assert main(flags) == 0
    assert main(["ntk", str(out), "--out", str(tmp_path / "k0.npz"), "--quiet"]) == 0
    record = json.loads((out / "run.json").read_text())
    (out / "run.json").unlink()
    capsys.readouterr()
    assert main(flags) == 0
    assert "already complete" not in capsys.readouterr().out
    repaired = json.loads((out / "run.json").read_text())
    assert repaired["config_hash"] == record["config_hash"]
    assert repaired["dataset"] == record["dataset"]
    assert main(["ntk", str(out), "--out", str(tmp_path / "k1.npz"), "--quiet"]) == 0
    k0, k1 = np.load(tmp_path / "k0.npz")["kernel"], np.load(tmp_path / "k1.npz")["kernel"]
    np.testing.assert_array_equal(k0, k1)
    assert [m["epoch"] for m in read_metrics(out)] == [0, 1]


METRICS = [{"epoch": e, "train_loss": 2.0 - e, "test_loss": 2.1 - e} for e in range(3)]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("config.json", "[1]", "run config {run}/config.json: expected a JSON object, got list"),
        ("config.json", '{"model": ', "run config {run}/config.json, line 1 column 11"),
        ("run.json", "[1]", "run record {run}/run.json: expected a JSON object, got list"),
        ("run.json", '{"dataset": "x"}', "run record {run}/run.json has no data set"),
        ("metrics.jsonl", b"\xff\xfe", "{run}/metrics.jsonl is not UTF-8 text"),
    ],
    ids=["config list", "config truncated", "record list", "record no dataset", "metrics bytes"],
)
def test_plot_of_a_damaged_run_names_the_file(tmp_path, capsys, name, text, message):
    """The files plot reads, damaged: one line naming the file, exit 2, nothing written (it was
    an internal error, or a JSON error naming no file)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in METRICS))
    (run / "config.json").write_text('{"model": "mlp", "dataset": "digits"}')
    (run / "run.json").write_text('{"dataset": {"n_train": 4, "n_test": 2}}')
    data = text if isinstance(text, bytes) else text.encode()
    (run / name).write_bytes(data)
    assert main(["plot", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "internal error" not in err
    assert message.format(run=run) in err, err
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "metrics.jsonl", "run.json"]


def test_plot_title_of_an_intact_run(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in METRICS))
    (run / "config.json").write_text('{"model": "mlp", "dataset": "digits"}')
    assert main(["plot", str(run)]) == 0  # no run.json: the title has no example counts
    (run / "run.json").write_text('{"dataset": {"n_train": 4, "n_test": 2}}')
    assert main(["plot", str(run), "--force"]) == 0
    assert (run / "learning_curves.png").stat().st_size > 10_000
