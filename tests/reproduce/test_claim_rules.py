"""The claim rules and their statistics, edge cases included: an undefined statistic or a tie is
never a confident verdict (compared against scipy and exact rational arithmetic)."""

import json
from fractions import Fraction

import pytest
from scipy import stats

from sdcomplex.reproduce._claims import (
    check_c1,
    check_c2,
    check_c3,
    check_c3_study,
    check_c4,
    check_c5,
)
from sdcomplex.reproduce._results import mean_std, spearman
from sdcomplex.reproduce._tables import run_accuracy

NAN = float("nan")


def test_spearman_with_nan_is_undefined():
    x, y = [1.0, 2.0, 3.0, 4.0, 5.0], [NAN, 2.0, 3.0, NAN, 5.0]
    assert stats.spearmanr(x, y).statistic != stats.spearmanr(x, y).statistic  # scipy: nan
    assert spearman(x, y) is None
    assert spearman(y, x) is None


def test_spearman_of_different_lengths_is_an_error():
    with pytest.raises(ValueError, match="length"):
        spearman([1.0, 2.0, 3.0], [1.0, 2.0])


def _c1_rows(values_by_kernel):
    rows = []
    for kernel, values in values_by_kernel.items():
        for tau, v in zip((1.0, 2.0, 4.0), values, strict=False):
            rows.append(
                {
                    "kernel": kernel,
                    "targets": "teacher_final",
                    "temperature": tau,
                    "residual": False,
                    "adjusted": v,
                }
            )
    return rows


def test_c1_needs_two_temperatures():
    # one temperature compares nothing: no verdict, rather than a vacuous "strictly decreasing"
    assert check_c1(_c1_rows({"init": [0.3]}))["verdict"] == "n/a"
    assert check_c1(_c1_rows({"init": [0.3, NAN, 0.1]}))["verdict"] == "n/a"
    assert check_c1(_c1_rows({"init": [0.3, 0.2]}))["verdict"] == "yes"


def _c2_rows(values, labels):
    rows = [{"kernel": "init", "targets": "labels", "residual": False, "adjusted": labels}]
    rows += [
        {
            "kernel": "init",
            "targets": "teacher_checkpoint",
            "temperature": 1.0,
            "teacher_epoch": e,
            "residual": False,
            "adjusted": v,
        }
        for e, v in enumerate(values, start=1)
    ]
    return rows


def test_c2_without_a_defined_spearman_is_no_verdict():
    # two checkpoints: Spearman is undefined (the evidence says n/a), so is the rule
    result = check_c2(_c2_rows([1.0, 2.0], 4.0))
    assert "Spearman n/a" in result["evidence"] and result["verdict"] == "n/a"
    # a NaN complexity (scipy: nan) is not an increasing trajectory
    result = check_c2(_c2_rows([1.0, NAN, 3.0, 4.0], 5.0))
    assert "Spearman n/a" in result["evidence"] and result["verdict"] == "n/a"
    assert check_c2(_c2_rows([1.0, 2.0, 3.0], 4.0))["verdict"] == "yes"
    # a constant trajectory is defined and does not grow
    assert check_c2(_c2_rows([2.0, 2.0, 2.0], 4.0))["verdict"] == "no"


def _exact_mean(values):
    return sum(Fraction(v).limit_denominator(10**6) for v in values) / len(values)


def _summary(online, offline):
    def row(mode, accs):
        mean, std = mean_std(accs)
        return {
            "mode": mode,
            "temperature": 4.0,
            "label": mode,
            "last_test_acc_mean": mean,
            "last_test_acc_std": std,
            "best_test_acc_mean": mean,
            "best_test_acc_std": std,
        }

    return [row("online", online), row("offline", offline)]


@pytest.mark.parametrize("swap", [False, True])
def test_c3_equal_means_are_a_tie(swap):
    # test accuracies k / 200; the means are equal in exact arithmetic, not in floats
    a, b = [0.645, 0.555], [0.635, 0.565]
    assert _exact_mean(a) == _exact_mean(b) and mean_std(a)[0] != mean_std(b)[0]
    online, offline = (b, a) if swap else (a, b)
    result = check_c3(_summary(online, offline))
    assert result["verdict"] == "no"  # online is not above offline
    assert "+0.00 points last-epoch" in result["evidence"]
    assert check_c3(_summary([0.65, 0.555], b))["verdict"] == "yes"


@pytest.mark.parametrize("swap", [False, True])
def test_c4_equal_fidelities_are_a_tie(swap):
    a, b = mean_std([0.645, 0.555])[0], mean_std([0.635, 0.565])[0]
    on, off = (b, a) if swap else (a, b)
    methods = [("offline_t4", "offline", 4.0), ("online_t4", "online", 4.0)]
    summary = [
        {
            "method": key,
            "train_fidelity_final_last": fid,
            "complexity_teacher_final_first": None,
            "complexity_teacher_final_last": None,
        }
        for key, fid in (("offline_t4", off), ("online_t4", on))
    ]
    assert check_c4(summary, methods)["verdict"] == "no"


def test_run_accuracy_refuses_a_nan_accuracy():
    for values in ([NAN, 0.5], [0.5, NAN]):
        metrics = [
            {"epoch": e, "test_acc": v, "train_acc": 0.1} for e, v in enumerate(values, start=1)
        ]
        with pytest.raises(ValueError, match="test_acc"):
            run_accuracy(metrics)


def test_study_teacher_within_one_point_counts_exactly_one_point(tmp_path):
    # a 10,000-example test set: final 50.97 %, epoch 2 exactly 1 point below it (49.97 %), so
    # within 1 point (0.5097 - 0.01 rounds to a float above 0.4997: the comparison must not lose
    # it)
    from sdcomplex.reproduce._stage import Layout
    from sdcomplex.reproduce._study_analysis import recipe_rows
    from sdcomplex.reproduce._study_config import StudentCapacity, StudySpec, TeacherRecipe

    accs = [0.3, 0.4997, 0.52, 0.5097]
    assert not accs[1] >= accs[-1] - 0.01  # the float trap, checked on this platform
    layout = Layout(tmp_path)
    layout.teacher.mkdir(parents=True)
    lines = [{"epoch": e, "test_acc": a} for e, a in enumerate([0.1, *accs])]
    (layout.teacher / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    spec = StudySpec(
        capacities=(StudentCapacity("linear", {"hidden_sizes": []}),),
        recipes=(TeacherRecipe("cosine", "the experiment's teacher"),),
        seeds=(0, 1),
        temperatures=(4.0,),
    )
    c2 = [
        {
            "recipe": "cosine",
            "capacity": "linear",
            "temperature": 4.0,
            "teacher_epoch": e,
            "adjusted": float(e),
        }
        for e in (1, 2, 3)
    ]
    gains = [
        {
            "recipe": "cosine",
            "capacity": "linear",
            "temperature": 4.0,
            "gain": 0.0,
            "ci_low": -1.0,
            "ci_high": 1.0,
            "verdict": "undecided",
        }
    ]
    (row,) = recipe_rows(spec, c2, layout, gains)
    assert row["settled_epoch"] == 2


@pytest.mark.parametrize(
    ("holds", "fails", "undecided", "verdict"),
    [
        (0, 0, 3, "n/a"),  # nothing decided: neither refuted nor confirmed
        (0, 2, 3, "no"),
        (1, 2, 3, "partly"),
        (1, 0, 3, "partly"),
        (3, 0, 0, "yes"),
    ],
)
def test_c3_study_verdict_separates_undecided_from_refuted(holds, fails, undecided, verdict):
    names = iter(f"setting{i}" for i in range(10))
    summary = {
        "holds": [next(names) for _ in range(holds)],
        "fails": [next(names) for _ in range(fails)],
        "undecided": [next(names) for _ in range(undecided)],
    }
    rule = "per (recipe, capacity, τ): online − offline > 0 with 95 % confidence"
    assert check_c3_study({"rule": rule, "summary": summary})["verdict"] == verdict


def test_c3_and_c4_evidence_lists_temperatures_in_numeric_order():
    taus = (16.0, 1.0, 4.0)
    summary = [
        {**row, "temperature": tau}
        for tau in taus
        for row in _summary([0.5 + tau / 100, 0.5], [0.5, 0.5])
    ]
    evidence = check_c3(summary)["evidence"]
    assert [part.split(":")[0] for part in evidence.split("; ")] == ["τ=1", "τ=4", "τ=16"]
    methods = [(f"{m}_{t:g}", m, t) for t in taus for m in ("offline", "online")]
    rows = [
        {
            "method": key,
            "train_fidelity_final_last": 0.5,
            "complexity_teacher_final_first": None,
            "complexity_teacher_final_last": None,
        }
        for key, _, _ in methods
    ]
    parts = check_c4(rows, methods)["evidence"].split("; ")
    assert [p.split(":")[0] for p in parts[:3]] == ["τ=1", "τ=4", "τ=16"]


def test_claim_rules():
    assert check_c1(_c1_rows({"init": [3, 2, 1]}))["verdict"] == "yes"
    assert check_c1(_c1_rows({"init": [3, 2, 1], "trained": [1, 2, 1]}))["verdict"] == "partly"
    assert check_c1(_c1_rows({"init": [1, 1, 1]}))["verdict"] == "no"

    assert check_c2(_c2_rows([1, 2, 3], 4))["verdict"] == "yes"
    assert check_c2(_c2_rows([1, 2, 3], 2.5))["verdict"] == "no"  # labels not the most complex
    assert check_c2(_c2_rows([3, 2, 1], 4))["verdict"] == "no"

    def summary(online, offline):
        base = {"last_test_acc_std": 0.01, "best_test_acc_std": 0.01}
        return [
            {
                "mode": "none",
                "temperature": None,
                "label": "no KD",
                "last_test_acc_mean": 0.5,
                "best_test_acc_mean": 0.5,
                **base,
            },
            {
                "mode": "online",
                "temperature": 4.0,
                "label": "on",
                "last_test_acc_mean": online,
                "best_test_acc_mean": online,
                **base,
            },
            {
                "mode": "offline",
                "temperature": 4.0,
                "label": "off",
                "last_test_acc_mean": offline,
                "best_test_acc_mean": offline,
                **base,
            },
        ]

    assert check_c3(summary(0.6, 0.55))["verdict"] == "yes"
    result = check_c3(summary(0.55, 0.6))
    assert result["verdict"] == "no" and "-5.00 points" in result["evidence"]

    methods = [("offline_t4", "offline", 4.0), ("online_t4", "online", 4.0)]

    def diag(on_fid, off_fid, first, last):
        return [
            {
                "method": key,
                "train_fidelity_final_last": fid,
                "ntk_similarity_last": 0.9,
                "complexity_teacher_final_first": first,
                "complexity_teacher_final_last": last,
            }
            for key, fid in (("offline_t4", off_fid), ("online_t4", on_fid))
        ]

    assert check_c4(diag(0.9, 0.8, 2.0, 1.0), methods)["verdict"] == "yes"
    assert check_c4(diag(0.7, 0.8, 2.0, 1.0), methods)["verdict"] == "partly"
    assert check_c4(diag(0.7, 0.8, 1.0, 2.0), methods)["verdict"] == "no"

    def bound(errors, bounds):
        return [
            {
                "best": True,
                "targets": "teacher",
                "test_error": e,
                "bound": b,
                "complexity_term": b,
                "bound_fixed_norm": b,
                "adjusted_complexity": b,
            }
            for e, b in zip(errors, bounds, strict=True)
        ]

    assert check_c5(bound([0.1, 0.2, 0.3], [1.0, 2.0, 3.0]))["verdict"] == "yes"
    assert check_c5(bound([0.1, 0.2, 0.3], [3.0, 2.0, 1.0]))["verdict"] == "no"
