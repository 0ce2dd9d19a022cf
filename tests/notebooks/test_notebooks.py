"""Every notebook executes at the smoke scale (with nbclient, outputs in a temporary folder)
and shows its tables and the claims check; the committed files carry no outputs.

``all.ipynb`` runs its experiment into a new directory (the tiny experiment of the reproduction
tests, as ``all``: the shared finished run of ``reproduce_helpers``); the claim notebooks are
then executed on that one finished run (``$SDCOMPLEX_RUN``), which covers every claim, so the
smoke experiment is trained once in the session, not once per notebook or test package.
"""

import importlib.util
from pathlib import Path

import nbformat
import pytest

pytest_plugins = ["reproduce_helpers"]  # the shared tiny run and its fixtures

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CLAIM_NOTEBOOKS = [p for p in NOTEBOOKS if p.stem not in ("all", "c3_study")]
"""The notebooks executed on the tiny run (``c3_study``'s runs on the tiny study of
tests/reproduce/test_study.py, which the tiny experiment does not hold)."""


def _has_images(nb):
    """Every figure cell shows a PNG (the notebooks turn on inline figures, whatever
    $MPLBACKEND)."""
    cells = [c for c in nb.cells if c.cell_type == "code" and "figure_c" in c.source]
    return bool(cells) and all(
        any("image/png" in o.get("data", {}) for o in c.get("outputs", [])) for c in cells
    )


def _files(root):
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_there_is_a_notebook_per_experiment():
    from sdcomplex.reproduce import available_experiments

    names = {p.stem for p in NOTEBOOKS}
    assert names == set(available_experiments(ROOT / "experiments"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, path.name
    source = "\n".join(c.source for c in nb.cells)
    assert "from sdcomplex.reproduce import" in source  # the library, never a copy


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_is_what_make_notebooks_writes(path):
    spec = importlib.util.spec_from_file_location(
        "make_notebooks", ROOT / "notebooks" / "make_notebooks.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = nbformat.read(path, as_version=4)
    built = module.build(path.stem)
    assert [(c.cell_type, c.source) for c in committed.cells] == [
        (c.cell_type, c.source) for c in built.cells
    ]


@pytest.mark.parametrize("name", [p.stem for p in CLAIM_NOTEBOOKS])
def test_the_all_experiment_covers_every_stage_of_the_claim_experiments(name):
    from sdcomplex.reproduce import load_experiment, plan_stages

    everything = {
        s.key: s
        for s in plan_stages(load_experiment("all", "smoke", directory=ROOT / "experiments"))
    }
    config = load_experiment(name, "smoke", directory=ROOT / "experiments")
    stages = plan_stages(config)
    assert {s.key for s in stages} <= set(everything)
    assert stages[0].key == "teacher" and stages[0].hash == everything["teacher"].hash
    assert set(config.claims) <= set(
        load_experiment("all", "smoke", directory=ROOT / "experiments").claims
    )


@pytest.mark.slow
def test_notebook_runs_its_experiment_at_smoke_scale(notebook_run):
    nb, text, out_dir = notebook_run
    assert "stages run, 0 done before" in text and "\n0 stages run" not in "\n" + text
    assert "| claim | reproduced? |" in text
    assert (out_dir / "tables" / "claims.md").is_file()
    assert _has_images(nb)


@pytest.mark.slow
@pytest.mark.parametrize("path", CLAIM_NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_shows_a_finished_run(path, tiny_run, notebook_env, tmp_path):
    out_dir = tiny_run
    before = _files(out_dir)
    from reproduce_helpers import execute_notebook  # the plugin pytest_plugins loads

    nb, text = execute_notebook(path, {**notebook_env, "SDCOMPLEX_RUN": str(out_dir)}, tmp_path)
    assert "0 stages run" in text  # every stage loaded, nothing trained again
    assert "| claim | reproduced? |" in text
    assert _files(out_dir) == before  # showing a run writes nothing into it
    assert _has_images(nb)
