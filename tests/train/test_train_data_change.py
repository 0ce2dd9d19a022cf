"""A run resumes only on the data it started with: its data files are not part of its config.

An image folder changed between a kill and the resume (images added) would give a resumed run
other examples, other normalisation statistics and another number of steps per epoch than the
checkpoints it restores were trained with, under the same config hash. ``run.json`` records
the data set; the resume compares it with the data loaded now.
"""

import shutil

import numpy as np
import pytest
from PIL import Image
from run_helpers import mlp_config

from sdcomplex.train import train
from sdcomplex.train._metrics import strip_timing


def _add_images(root, split, name, count, seed):
    folder = root / split / name
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        image = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(image).save(folder / f"{seed}_{i}.png")


def test_a_run_whose_data_files_changed_is_not_resumed(tmp_path, monkeypatch):
    monkeypatch.setenv("SDCOMPLEX_CACHE", str(tmp_path / "cache"))  # not the user's cache
    data = tmp_path / "images"
    for k, name in enumerate("ab"):
        _add_images(data, "train", name, 8, seed=k)
        _add_images(data, "test", name, 2, seed=10 + k)
    config = mlp_config(4, dataset="image_folder", data_dir=str(data), epochs=2, batch_size=4)
    whole = train(config, tmp_path / "whole", quiet=True)
    run_dir = tmp_path / "run"
    shutil.copytree(tmp_path / "whole", run_dir)
    shutil.rmtree(run_dir / "checkpoints" / "epoch_2")  # as if killed before saving epoch 2
    before = (run_dir / "metrics.jsonl").read_bytes()

    for k, name in enumerate("ab"):
        _add_images(data, "train", name, 4, seed=20 + k)  # 16 -> 24 training images
    changed = r"other data than image_folder holds now \(n_train: 16 -> 24; mean: "
    with pytest.raises(ValueError, match=changed):
        train(config, run_dir, quiet=True)
    assert (run_dir / "metrics.jsonl").read_bytes() == before  # nothing was changed
    assert not (run_dir / "checkpoints" / "epoch_2").exists()

    for name in "ab":  # the original files again: the run resumes and ends as the whole run
        for path in (data / "train" / name).glob("2?_*.png"):
            path.unlink()
    resumed = train(config, run_dir, quiet=True)
    assert resumed.status == "completed"
    assert strip_timing(resumed.metrics) == strip_timing(whole.metrics)
