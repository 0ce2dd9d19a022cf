"""What the command-line tests of trained runs share: the tiny run's config."""

from sdcomplex.train import TrainConfig

TINY_RUN = TrainConfig(
    model="mlp",
    model_options={"hidden_sizes": [16]},
    dataset="digits",
    n_per_class=10,
    augment=False,
    epochs=2,
    batch_size=50,
    learning_rate=0.05,
    eval_batch_size=500,
)
"""A 2-epoch MLP on 100 digits (checkpoints 0, 1, 2): seconds to train."""
