"""Figures (PNG at >= 150 dpi and PDF for each, an overview) and the claims file (the rules:
``test_claim_rules.py``)."""

import pytest
from PIL import Image

from sdcomplex.reproduce import read_json
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
