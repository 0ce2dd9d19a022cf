"""TrainConfig: paper defaults, validation, JSON round trip, stable hash, config files."""

import dataclasses
import json

import pytest

from sdcomplex.train import TrainConfig, load_config


def test_defaults_are_the_paper_recipe():
    cfg = TrainConfig()
    assert (cfg.optimizer, cfg.momentum, cfg.batch_size) == ("sgd", 0.9, 128)
    assert (cfg.learning_rate, cfg.schedule, cfg.weight_decay) == (0.1, "cosine", 5e-4)
    assert (cfg.augment, cfg.crop_padding, cfg.flip) == (True, 4, True)
    assert cfg.epochs == 200 and cfg.checkpoint_every == 1 and cfg.keep_checkpoints is None


def test_json_round_trip_and_hash_stability():
    cfg = TrainConfig(
        model="lenet5",
        model_options={"width": 2, "sizes": (3, 4)},
        lr_milestones=[2, 3],
        schedule="step",
        epochs=4,
        learning_rate=1,
    )
    assert cfg.lr_milestones == (2, 3) and cfg.learning_rate == 1.0
    assert cfg.model_options == {"width": 2, "sizes": [3, 4]}  # JSON form
    back = TrainConfig.from_dict(json.loads(cfg.to_json()))
    assert back == cfg and back.hash() == cfg.hash()
    # 1 and 1.0, tuples and lists hash alike; any real change changes the hash
    assert cfg.replace(learning_rate=1.0, lr_milestones=(2, 3)).hash() == cfg.hash()
    assert cfg.replace(seed=1).hash() != cfg.hash()
    # the hash is a fixed function of the canonical JSON (sha256, 16 hex digits)
    import hashlib

    text = json.dumps(cfg.to_dict(), sort_keys=True, separators=(",", ":"))
    assert cfg.hash() == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert cfg.differences(cfg.replace(seed=3, epochs=5)) == [
        "epochs: 4 -> 5",
        "seed: 0 -> 3",
    ]


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"epochs": 0}, ValueError, "epochs"),
        ({"epochs": 2.0}, TypeError, "epochs"),
        ({"batch_size": True}, TypeError, "batch_size"),
        ({"optimizer": "lbfgs"}, ValueError, "optimizer"),
        ({"schedule": "linear"}, ValueError, "schedule"),
        ({"schedule": "step"}, ValueError, "lr_milestones"),
        ({"schedule": "step", "lr_milestones": [5, 3]}, ValueError, "lr_milestones"),
        ({"schedule": "step", "lr_milestones": [200]}, ValueError, "lr_milestones"),
        ({"learning_rate": 0.0}, ValueError, "learning_rate"),
        ({"learning_rate": float("nan")}, ValueError, "learning_rate"),
        ({"momentum": 1.0}, ValueError, "momentum"),
        ({"nesterov": True, "momentum": 0.0}, ValueError, "nesterov"),
        ({"weight_decay": -1e-4}, ValueError, "weight_decay"),
        ({"warmup_epochs": 200}, ValueError, "warmup_epochs"),
        ({"n_per_class": 0}, ValueError, "n_per_class"),
        ({"num_classes": 1}, ValueError, "num_classes"),
        ({"model_options": {"width": {1, 2}}}, TypeError, "JSON"),
        ({"model_options": [("width", 2)]}, TypeError, "model_options"),
        ({"augment": 1}, TypeError, "augment"),
        ({"model": ""}, TypeError, "model"),
    ],
)
def test_invalid_values_are_named(changes, error, match):
    with pytest.raises(error, match=match):
        TrainConfig(**changes)


def test_unknown_field_is_listed():
    with pytest.raises(ValueError, match="unknown config field.*'lr'"):
        TrainConfig.from_dict({"lr": 0.1})


def test_load_json_and_python_config_files(tmp_path):
    js = tmp_path / "cfg.json"
    js.write_text(json.dumps({"model": "mlp", "dataset": "digits", "epochs": 3}))
    assert load_config(js) == TrainConfig(model="mlp", dataset="digits", epochs=3)

    py = tmp_path / "exp.py"
    py.write_text(
        "from sdcomplex.train import TrainConfig\n"
        "def get_config():\n"
        "    return TrainConfig(model='resnet20', dataset='cifar10_jpeg', n_per_class=100)\n"
    )
    assert load_config(py).n_per_class == 100
    py_dict = tmp_path / "exp_dict.py"
    py_dict.write_text("def get_config():\n    return {'epochs': 7}\n")
    assert load_config(py_dict) == TrainConfig(epochs=7)

    (tmp_path / "nofn.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="get_config"):
        load_config(tmp_path / "nofn.py")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ValueError, match="bad.json, line 1 column 2: invalid JSON"):
        load_config(tmp_path / "bad.json")
    (tmp_path / "cfg.yaml").write_text("epochs: 3")
    with pytest.raises(ValueError, match=r"\.json or a \.py"):
        load_config(tmp_path / "cfg.yaml")
    with pytest.raises(ValueError, match="does not exist"):
        load_config(tmp_path / "missing.json")


def test_numpy_scalars_are_accepted_as_python_numbers():
    import numpy as np

    plain = TrainConfig(
        learning_rate=0.5, epochs=7, augment=False, schedule="step", lr_milestones=(3, 5)
    )
    numpy = TrainConfig(
        learning_rate=np.float32(0.5),
        epochs=np.int64(7),
        augment=np.bool_(False),
        schedule="step",
        lr_milestones=(np.int32(3), np.int64(5)),
        data_options={"n_train": np.int64(10)},
    )
    assert numpy.replace(data_options={"n_train": 10}) == plain.replace(
        data_options={"n_train": 10}
    )
    assert type(numpy.epochs) is int and type(numpy.learning_rate) is float
    assert type(numpy.augment) is bool and numpy.data_options == {"n_train": 10}
    assert numpy.replace(data_options={}).hash() == plain.hash()
    assert TrainConfig.from_dict(json.loads(numpy.to_json())) == numpy
    with pytest.raises(TypeError, match="epochs must be an integer"):
        TrainConfig(epochs=np.float64(3.0))


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [
        ("cifar10", (True, 4, True)),
        ("cifar100", (True, 4, True)),
        ("cifar10_jpeg", (True, 4, True)),
        ("tiny_imagenet", (True, 8, True)),
        ("digits", (True, 1, False)),  # 8x8 images; a mirrored digit is another digit
        ("mnist1d", (False, 0, False)),  # 1-D signals
        ("synthetic", (False, 0, False)),
        ("image_folder", (False, 0, False)),  # size unknown before loading: set explicitly
    ],
)
def test_augmentation_defaults_come_from_the_data_set(dataset, expected):
    cfg = TrainConfig(dataset=dataset)
    assert (cfg.augment, cfg.crop_padding, cfg.flip) == expected
    assert cfg.to_dict()["crop_padding"] == expected[1]  # recorded resolved
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    # a copy for another data set takes that data set's defaults; explicit values stay
    assert TrainConfig(dataset="cifar10").replace(dataset=dataset) == cfg
    explicit = TrainConfig(dataset="cifar10", crop_padding=2, flip=True).replace(dataset=dataset)
    assert (explicit.augment, explicit.crop_padding, explicit.flip) == (expected[0], 2, True)


@pytest.mark.slow
def test_declared_image_size_matches_the_data():
    from sdcomplex.data import load_dataset
    from sdcomplex.data._registry import CROP_FRACTION, augmentation_defaults

    for name in ("digits", "mnist1d"):
        info = load_dataset(name).info
        declared = augmentation_defaults(name)
        size = info.input_shape[0] if info.is_image else None
        assert declared.image_size == size
        # the CIFAR recipe's 4 pixels of 32, in proportion
        expected = 0 if size is None else max(1, round(size * 4 / 32))
        assert declared.crop_padding == expected and 32 / CROP_FRACTION == 4


def test_non_finite_option_values_are_refused():
    with pytest.raises(TypeError, match="config options must be JSON values"):
        TrainConfig(model_options={"scale": float("nan")})
    with pytest.raises(TypeError, match="config options must be JSON values"):
        TrainConfig(data_options={"noise": float("inf")})
