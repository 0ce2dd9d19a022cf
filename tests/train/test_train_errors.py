"""Bad input gets a clear error before any training, and nothing that exists is overwritten."""

import json

import pytest
from run_helpers import mlp_config

from sdcomplex.train import RunDirectory, TrainConfig, train

TINY = mlp_config(4, synthetic=(40, 20, 3, 4), epochs=1, batch_size=8)


def _snapshot(path):
    return {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"model": "resnet21"}, "unknown model 'resnet21'"),
        ({"dataset": "cifar11"}, "unknown dataset 'cifar11'"),
        ({"model_options": {"num_classes": 3}}, "wrong number of classes.*asks for 3.*has 4"),
        ({"num_classes": 10}, "wrong number of classes.*asks for 10.*has 4"),
        ({"model_options": {"depth": 3}}, "unsupported override"),
        ({"augment": True}, "augment=True needs image data"),
        ({"batch_size": 64}, "batch_size 64 exceeds the 40 training examples"),
        ({"data_options": {"colour": 1}}, "no option"),
    ],
)
def test_bad_config_errors_before_writing_anything(tmp_path, changes, match):
    run_dir = tmp_path / "run"
    with pytest.raises(ValueError, match=match):
        train(TINY.replace(**changes), run_dir, quiet=True)
    assert not run_dir.exists()


def test_missing_data_directory(tmp_path):
    cfg = TrainConfig(model="resnet20", dataset="cifar10_jpeg", data_dir=str(tmp_path / "none"))
    with pytest.raises(ValueError, match="data directory .*none does not exist"):
        train(cfg, tmp_path / "run", quiet=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="cifar10-jpeg.tar.gz not found"):
        train(cfg.replace(data_dir=str(empty)), tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


def test_model_that_cannot_take_the_input_shape(tmp_path):
    cfg = TrainConfig(model="lenet5", dataset="digits", augment=False, epochs=1)  # 8x8 < 5x5x2
    with pytest.raises(ValueError, match="cannot take digits inputs of shape"):
        train(cfg, tmp_path / "run", quiet=True)


def test_output_dir_with_another_config_is_refused_untouched(tmp_path):
    run_dir = tmp_path / "run"
    train(TINY, run_dir, quiet=True)
    before = _snapshot(run_dir)
    with pytest.raises(ValueError, match=r"different config \(epochs: 1 -> 2; seed: 0 -> 5\)"):
        train(TINY.replace(epochs=2, seed=5), run_dir, quiet=True)
    assert _snapshot(run_dir) == before


def test_foreign_or_corrupt_output_dir_is_refused_untouched(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "results.csv").write_text("precious\n")
    with pytest.raises(ValueError, match="not an sdcomplex run directory"):
        train(TINY, foreign, quiet=True)
    assert _snapshot(foreign) == {foreign / "results.csv": b"precious\n"}

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text(json.dumps({"model": "mlp", "learning_rat": 1}))
    with pytest.raises(ValueError, match="is not a valid config"):
        train(TINY, corrupt, quiet=True)
    assert json.loads((corrupt / "config.json").read_text())["learning_rat"] == 1

    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="not an sdcomplex run directory"):
        train(TINY, a_file, quiet=True)


def test_config_type_is_checked(tmp_path):
    with pytest.raises(TypeError, match="TrainConfig"):
        train({"model": "mlp"}, tmp_path / "run")  # type: ignore[arg-type]


def test_run_dir_killed_while_being_created_is_usable(tmp_path):
    # killed after config.json but before run.json and any checkpoint
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(TINY.to_json())
    assert train(TINY, run_dir, quiet=True).status == "completed"
    assert json.loads((run_dir / "run.json").read_text())["steps_per_epoch"] == 5
    # killed while config.json was written: only its temporary file is there; a new run
    other = tmp_path / "other"
    other.mkdir()
    (other / ".config.json.x1y2.tmp").write_text("{")
    assert RunDirectory(other).verify(TINY) is False


def test_metrics_lines_torn_or_malformed(tmp_path):
    from sdcomplex.train import read_metrics

    good = '{"epoch": 1, "test_acc": 0.5}\n'
    (tmp_path / "metrics.jsonl").write_text(good + '{"epoch": 2, "te')  # torn by a kill
    assert read_metrics(tmp_path) == [{"epoch": 1, "test_acc": 0.5}]
    (tmp_path / "metrics.jsonl").write_text(good + "{not json\n")  # complete, malformed
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        read_metrics(tmp_path)
    (tmp_path / "metrics.jsonl").write_text("{not json\n" + good)
    with pytest.raises(ValueError, match="line 1 is not valid JSON"):
        read_metrics(tmp_path)
