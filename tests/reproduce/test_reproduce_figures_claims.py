"""Figures (PNG at >= 150 dpi and PDF for each, an overview) and the claims rules."""

import pytest
from PIL import Image

from sdcomplex.reproduce import read_json
from sdcomplex.reproduce._claims import check_c1, check_c2, check_c3, check_c4, check_c5
from sdcomplex.reproduce._figures import save_figure

pytest_plugins = ["reproduce_helpers"]  # the shared tiny run and its fixtures

FIGURES = ("c1_temperature", "c2_trajectory", "c3_accuracy", "c4_diagnostics", "c5_bound")


def test_every_figure_is_a_png_and_a_pdf(tiny_run):
    for name in (*FIGURES, "overview"):
        png, pdf = tiny_run / "figures" / f"{name}.png", tiny_run / "figures" / f"{name}.pdf"
        with Image.open(png) as image:
            dpi = image.info["dpi"]
            assert min(dpi) >= 150 - 0.5, (name, dpi)
            width, height = image.size
        assert width >= 900 and height >= 600, (name, image.size)
        assert pdf.read_bytes()[:5] == b"%PDF-"
    with Image.open(tiny_run / "figures" / "overview.png") as image:
        assert image.size[0] >= 2000  # a multi-panel figure


def test_save_figure_refuses_low_dpi(tmp_path):
    from matplotlib.figure import Figure

    with pytest.raises(ValueError, match="dpi"):
        save_figure(Figure(), tmp_path / "f", dpi=100)
    assert not list(tmp_path.iterdir())


def test_claims_file_covers_every_claim(tiny_run):
    claims = read_json(tiny_run / "results" / "claims.json")["claims"]
    assert [c["claim"] for c in claims] == ["C1", "C2", "C3", "C4", "C5"]
    for c in claims:
        assert c["verdict"] in ("yes", "partly", "no", "n/a") and c["evidence"] and c["rule"]
    table = (tiny_run / "tables" / "claims.md").read_text()
    assert table.count("\n| C") == 5


def _c1_rows(values_by_kernel):
    rows = []
    for kernel, values in values_by_kernel.items():
        for tau, v in zip((1.0, 2.0, 4.0), values, strict=True):
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


def test_claim_rules():
    assert check_c1(_c1_rows({"init": [3, 2, 1]}))["verdict"] == "yes"
    assert check_c1(_c1_rows({"init": [3, 2, 1], "trained": [1, 2, 1]}))["verdict"] == "partly"
    assert check_c1(_c1_rows({"init": [1, 1, 1]}))["verdict"] == "no"

    def traj(values, labels):
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

    assert check_c2(traj([1, 2, 3], 4))["verdict"] == "yes"
    assert check_c2(traj([1, 2, 3], 2.5))["verdict"] == "no"  # labels not the most complex
    assert check_c2(traj([3, 2, 1], 4))["verdict"] == "no"

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
