"""``augment=True`` on images whose size is unknown before loading (``image_folder``).

Its crop padding and flip have no default: left to the data set they resolve to 0 and false,
and a run would train with no augmentation at all while its config says ``augment: true``.
Such a run is refused before anything is written; explicit values, and the recorded values of
an existing run's ``config.json``, train as before.
"""

import pytest
from run_helpers import write_image_folder

from sdcomplex.cli import main
from sdcomplex.train import TrainConfig, setup_run, train


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """Two classes of 16x8 RGB images (4 training, 1 test image each)."""
    monkeypatch.setenv("SDCOMPLEX_CACHE", str(tmp_path / "cache"))
    return write_image_folder(tmp_path / "images", (16, 8, 3), (4, 1))


def _config(folder, **fields):
    return TrainConfig(
        model="mlp", dataset="image_folder", data_dir=str(folder), epochs=1, batch_size=4,
        **fields,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "unset"),
    [
        (
            {},
            r"no default crop_padding or flip .*set crop_padding \(e\.g\. 1 for its 16x8 images: "
            r"--crop-padding 1\) and flip \(true or false",
        ),  # fmt: skip
        ({"crop_padding": 2}, r"no default flip \(.*: set flip \(true or false"),
        ({"flip": True}, r"no default crop_padding \(.*: set crop_padding \(e\.g\. 1"),
    ],
)
def test_augment_without_crop_padding_or_flip_is_refused(folder, tmp_path, fields, unset):
    config = _config(folder, augment=True, **fields)
    with pytest.raises(ValueError, match="augment=True, but image_folder has " + unset):
        train(config, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


def test_explicit_or_recorded_augmentation_is_taken(folder):
    explicit = _config(folder, augment=True, crop_padding=2, flip=False)
    assert (explicit.augment, explicit.crop_padding, explicit.flip) == (True, 2, False)
    assert setup_run(explicit).dataset.info.input_shape == (16, 8, 3)
    # a run's config.json records the resolved values: an existing run resumes as it started
    recorded = TrainConfig.from_dict(_config(folder, augment=True).to_dict())
    assert (recorded.augment, recorded.crop_padding, recorded.flip) == (True, 0, False)
    assert recorded.hash() == _config(folder, augment=True).hash()
    setup_run(recorded)
    # no augmentation asked: nothing to resolve
    plain = _config(folder)
    assert (plain.augment, plain.crop_padding, plain.flip) == (False, 0, False)
    setup_run(plain)


def test_the_cli_refuses_augment_alone_in_one_line(folder, tmp_path, capsys):
    argv = ["train", "--model", "mlp", "--data", "image_folder", "--data-dir", str(folder)]
    code = main([*argv, "--augment", "--batch-size", "4", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err  # (after the progress bar of the images' decoding)
    last = err.splitlines()[-1]
    assert code == 2 and last.startswith("sdcomplex train: ") and "Traceback" not in err, err
    assert "set crop_padding (e.g. 1 for its 16x8 images: --crop-padding 1) and flip" in last
    assert not (tmp_path / "run").exists()
