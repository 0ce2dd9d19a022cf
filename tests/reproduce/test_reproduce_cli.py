"""``sdcomplex reproduce``: --list, --print-config, --status, errors as one line with status 2."""

import json
import shutil
from pathlib import Path

from sdcomplex.cli import main
from sdcomplex.reproduce import read_status
from sdcomplex.reproduce._runtimes import format_runtime

pytest_plugins = ["reproduce_helpers"]  # the shared tiny run and its fixtures

TINY = Path(__file__).resolve().parent / "tiny_experiment.py"


def test_list_shows_experiments_scales_and_runtimes(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("all", "c1_c2_complexity", "c3_c4_online_kd", "c5_margin_bound"):
        assert f"\n{name}  [" in out
    for scale in ("smoke", "quick", "paper"):
        assert f"  {scale} " in out
    assert "resnet56" in out and "lenet5x8" in out


def test_print_config_is_the_experiment_json(capsys):
    assert main(["reproduce", str(TINY), "--scale", "smoke", "--print-config"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["name"] == "tiny" and data["distillation"]["seeds"] == [0, 1]


def test_status_of_a_finished_run(tiny_run, capsys):
    assert main(["reproduce", "--status", "--out", str(tiny_run)]) == 0
    assert "0 pending" in capsys.readouterr().out


def test_a_runtime_is_recorded_beside_the_experiments_file(tmp_path, tiny_run, capsys):
    # (it went to the repository's experiments/runtimes.json, under a name --list never shows)
    repository = Path(__file__).resolve().parents[2] / "experiments" / "runtimes.json"
    before = repository.read_bytes()
    folder, out = tmp_path / "experiments", tmp_path / "run"
    folder.mkdir()
    shutil.copyfile(TINY, folder / "tiny.py")
    shutil.copytree(tiny_run, out)
    args = ["reproduce", str(folder / "tiny.py"), "--scale", "smoke", "--out", str(out)]
    assert main([*args, "--quiet", "--no-compilation-cache", "--record-runtime", "m"]) == 0
    assert f"in {folder / 'runtimes.json'}" in capsys.readouterr().out
    entry = json.loads((folder / "runtimes.json").read_text())["tiny"]["smoke"]
    assert entry["seconds"] == round(read_status(out)["seconds"], 1) and entry["machine"] == "m"
    assert repository.read_bytes() == before
    assert main(["reproduce", "--list", "--experiments-dir", str(folder)]) == 0
    smoke = [line for line in capsys.readouterr().out.splitlines() if "  smoke " in line]
    assert len(smoke) == 1 and f" {format_runtime(entry)} " in smoke[0]


def test_errors_are_one_line(tmp_path, tiny_run, capsys):
    assert main(["reproduce", "nope", "--scale", "smoke", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "unknown experiment 'nope'" in err and err.count("\n") == 1
    assert main(["reproduce", "all", "--scale", "smoke", "--out", str(tiny_run)]) == 2
    assert "different config" in capsys.readouterr().err
    assert main(["reproduce"]) == 2
    assert "name an EXPERIMENT" in capsys.readouterr().err


def test_a_stopped_run_exits_128_plus_its_signal(tmp_path, capsys, monkeypatch):
    import signal

    import sdcomplex.reproduce as reproduce

    for signum, status in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):

        def stopped(*args, _signum=signum, **kwargs):
            raise reproduce.Interrupted("teacher stopped after epoch 1; rerun to resume", _signum)

        monkeypatch.setattr(reproduce, "run_experiment", stopped)
        out = tmp_path / f"run{status}"
        assert main(["reproduce", str(TINY), "--scale", "smoke", "--out", str(out)]) == status
        assert "rerun to resume" in capsys.readouterr().err
    assert reproduce.Interrupted("x").signum == signal.SIGINT
