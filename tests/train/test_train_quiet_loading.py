"""A quiet run prints no progress bar while it loads its data (decoding an image folder).

``train``, ``distill`` and the stages of ``reproduce`` load their data inside
:func:`~sdcomplex.data.quiet_loading` when they are quiet, so the loaders' bars stay hidden
without a ``quiet`` flag on every function between them; the command line's ``--quiet`` is one
error line and nothing else.
"""

import functools

import pytest
from run_helpers import write_image_folder

from sdcomplex.cli import main
from sdcomplex.data import load_dataset, quiet_loading
from sdcomplex.distill import DistillConfig, distill
from sdcomplex.reproduce._runner import _run_stage
from sdcomplex.reproduce._stage import Layout, Stage
from sdcomplex.train import TrainConfig, train


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """Two classes of 4x4 RGB images (4 training, 2 test images each); an empty cache."""
    monkeypatch.setenv("SDCOMPLEX_CACHE", str(tmp_path / "cache"))
    return write_image_folder(tmp_path / "images", (4, 4, 3), (4, 2))


CONFIG = TrainConfig(
    model="mlp", model_options={"hidden_sizes": [4]}, dataset="image_folder", augment=False,
    epochs=1, batch_size=4,
)  # fmt: skip


def _decodes(capsys, load):
    """Whether ``load()`` (with no cache) printed the bar of the images' decoding."""
    capsys.readouterr()
    load()
    return "decoding images" in capsys.readouterr().err


def test_quiet_loading_hides_the_bars_of_data_loading(folder, capsys):
    def load():
        return load_dataset("image_folder", data_dir=folder, use_cache=False)

    assert _decodes(capsys, load)  # (the bar this is about)
    with quiet_loading():
        assert not _decodes(capsys, load)
        with quiet_loading(False):  # a loud block inside a quiet one stays quiet
            assert not _decodes(capsys, load)
    with quiet_loading(False):
        assert _decodes(capsys, load)
    assert _decodes(capsys, load)  # only inside the block


def test_quiet_train_distill_and_stages_print_no_bar(folder, tmp_path, capsys, monkeypatch):
    config = CONFIG.replace(data_dir=str(folder))
    assert not _decodes(capsys, lambda: train(config, tmp_path / "train", quiet=True))
    monkeypatch.setenv("SDCOMPLEX_CACHE", str(tmp_path / "cache2"))  # decoded again
    student = DistillConfig(student=config, mode="none", probe_size=4)
    assert not _decodes(capsys, lambda: distill(student, tmp_path / "distill", quiet=True))
    stage = Stage("load", "load", {}, lambda ctx: {"n": load_dataset(
        "image_folder", data_dir=folder, use_cache=False).info.n_train})  # fmt: skip
    layout = Layout(tmp_path / "experiment")
    layout.root.mkdir()
    for quiet in (True, False):
        run = functools.partial(_run_stage, None, layout, stage, quiet)
        assert _decodes(capsys, run) is not quiet


def test_quiet_cli_error_is_one_line(folder, tmp_path, capsys):
    (folder / "train" / "a" / "1.png").write_bytes(b"not an image")
    argv = ["train", "--quiet", "--model", "mlp", "--data", "image_folder"]
    code = main([*argv, "--data-dir", str(folder), "--no-augment", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err == (
        "sdcomplex train: error: cannot decode image 'train/a/1.png': UnidentifiedImageError: "
        "cannot identify image file\n"
    )
