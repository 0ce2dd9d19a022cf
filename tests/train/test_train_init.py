"""One initialisation: epoch 0 of a training run is the library's ``init_variables`` of its seed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdcomplex.models import create_model, init_variables
from sdcomplex.train import TrainConfig, load_checkpoint, train

SEED = 3


@pytest.fixture(scope="module")
def epoch0_run(tmp_path_factory):
    data = {"n_train": 32, "n_test": 16, "dim": 6, "num_classes": 3}
    options = {"channels": [2], "dense_width": 8, "batch_norm": True}
    config = TrainConfig(model="cnn", model_options=options, dataset="synthetic", seed=SEED)
    config = config.replace(data_options=data, augment=False, epochs=1, batch_size=16)
    run_dir = tmp_path_factory.mktemp("init") / "run"
    train(config, run_dir, quiet=True)
    return config, run_dir


def _assert_same(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_epoch0_checkpoint_is_the_library_init(epoch0_run):
    config, run_dir = epoch0_run
    model = create_model("cnn", 3, channels=(2,), dense_width=8, batch_norm=True)
    saved = load_checkpoint(run_dir, 0)
    library = init_variables(model, SEED, (6,))
    assert sorted(saved) == sorted(library) == ["batch_stats", "params"]
    _assert_same(saved, library)
    # independently: a plain, eager model.init with the key an int seed stands for
    eager = model.init(jax.random.key(SEED, impl="rbg"), jnp.zeros((1, 6)), train=False)
    _assert_same(saved, dict(eager))
    # and another seed gives other parameters
    other = init_variables(model, SEED + 1, (6,))
    assert not np.array_equal(
        other["params"]["hidden"]["kernel"], library["params"]["hidden"]["kernel"]
    )
