"""The C3 table and the C4 diagnostics agree with the runs' metrics files (statistics computed
here independently with numpy), and the Markdown table shows the same numbers."""

import json

import numpy as np
import pytest

from sdcomplex.reproduce import read_csv
from sdcomplex.reproduce._results import mean_std, spearman

pytest_plugins = ["reproduce_helpers"]  # the shared tiny run and its fixtures


def _metrics(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _student(run, method, seed):
    return _metrics(run / "runs" / "students" / method / f"seed{seed}" / "metrics.jsonl")


def test_accuracy_table_matches_metrics(tiny_run, tiny_config):
    summary = {r["method"]: r for r in read_csv(tiny_run / "results" / "accuracy.csv")}
    runs = read_csv(tiny_run / "results" / "accuracy_runs.csv")
    markdown = (tiny_run / "tables" / "accuracy.md").read_text()
    spec = tiny_config.distillation
    for method in spec.methods:
        last, best = [], []
        for seed in spec.seeds:
            lines = _student(tiny_run, method.key, seed)
            trained = [m for m in lines if m["epoch"] >= 1]
            assert trained[-1]["epoch"] == tiny_config.student.epochs
            last.append(trained[-1]["test_acc"])
            best.append(max(m["test_acc"] for m in trained))
        row = summary[method.key]
        assert row["seeds"] == len(spec.seeds)
        assert row["last_test_acc_mean"] == pytest.approx(np.mean(last), abs=1e-12)
        assert row["last_test_acc_std"] == pytest.approx(np.std(last, ddof=1), abs=1e-12)
        assert row["best_test_acc_mean"] == pytest.approx(np.mean(best), abs=1e-12)
        assert row["best_test_acc_std"] == pytest.approx(np.std(best, ddof=1), abs=1e-12)
        mine = sorted((r for r in runs if r["method"] == method.key), key=lambda r: r["seed"])
        assert [r["last_test_acc"] for r in mine] == last
        cell = f"{100 * np.mean(last):.2f} ± {100 * np.std(last, ddof=1):.2f}"
        assert f"| {method.label} | {cell} |" in markdown
    teacher = _metrics(tiny_run / "runs/teacher/metrics.jsonl")
    assert summary["teacher"]["last_test_acc_mean"] == teacher[-1]["test_acc"]
    assert summary["teacher"]["last_test_acc_std"] is None


def test_diagnostics_mean_matches_runs(tiny_run, tiny_config):
    means = read_csv(tiny_run / "results" / "diagnostics_mean.csv")
    spec = tiny_config.distillation
    for method in spec.methods:
        per_seed = [{m["epoch"]: m for m in _student(tiny_run, method.key, s)} for s in spec.seeds]
        for row in (r for r in means if r["method"] == method.key):
            values = [runs[row["epoch"]]["train_fidelity_final"] for runs in per_seed]
            assert row["train_fidelity_final_mean"] == pytest.approx(np.mean(values), abs=1e-12)
            sims = [runs[row["epoch"]]["ntk_similarity"] for runs in per_seed]
            assert row["ntk_similarity_mean"] == pytest.approx(np.mean(sims), abs=1e-12)
    summary = {r["method"]: r for r in read_csv(tiny_run / "results" / "diagnostics_summary.csv")}
    assert summary["none"]["first_epoch"] == 0
    assert summary["none"]["last_epoch"] == tiny_config.student.epochs
    assert summary["none"]["ntk_similarity_first"] == pytest.approx(1.0)


def test_mean_std_and_spearman_against_numpy():
    values = [0.5, 0.25, 0.75, 0.5]
    mean, std = mean_std(values)
    assert mean == pytest.approx(np.mean(values)) and std == pytest.approx(np.std(values, ddof=1))
    assert mean_std([0.3]) == (0.3, None)
    with pytest.raises(ValueError):
        mean_std([])
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert spearman(x, [10.0, 20.0, 30.0, 40.0, 50.0]) == pytest.approx(1.0)
    assert spearman(x, [5.0, 4.0, 3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    # ties get average ranks: compare with the Pearson correlation of the ranks
    y = [1.0, 2.0, 2.0, 3.0, 1.0]
    ranks = np.array([0.5, 2.5, 2.5, 4.0, 0.5])
    assert spearman(x, y) == pytest.approx(np.corrcoef(np.arange(5.0), ranks)[0, 1])
    assert spearman(x, [1.0] * 5) is None and spearman([1.0, 2.0], [2.0, 1.0]) is None
