"""The online-distillation schedule: which teacher checkpoint at which student epoch."""

import math

import pytest

from sdcomplex.distill import online_schedule, trajectory_epochs


def test_equal_epochs_replays_every_checkpoint():
    assert online_schedule(5, 5) == (1, 2, 3, 4, 5)


def test_definition_for_unequal_epoch_counts():
    for t_s, t_t, stride in [(4, 8, 1), (6, 3, 1), (7, 20, 3), (20, 7, 2), (3, 100, 10), (1, 9, 1)]:
        trajectory = trajectory_epochs(t_t, stride)
        schedule = online_schedule(t_s, t_t, stride=stride)
        assert len(schedule) == t_s and schedule[-1] == t_t
        for t, epoch in enumerate(schedule, start=1):
            target = math.ceil(t * t_t / t_s)
            below = [e for e in trajectory if e <= target]
            assert epoch == (below[-1] if below else trajectory[0])
        assert list(schedule) == sorted(schedule)  # simple targets first


def test_examples():
    assert online_schedule(4, 8) == (2, 4, 6, 8)
    assert online_schedule(6, 3) == (1, 1, 2, 2, 3, 3)
    assert online_schedule(4, 8, stride=3) == (trajectory_epochs(8, 3)[0], 3, 6, 8)
    assert trajectory_epochs(8, 3) == (3, 6, 8)
    assert trajectory_epochs(9, 3) == (3, 6, 9)


def test_missing_checkpoint_names_the_epoch():
    with pytest.raises(ValueError, match="epoch 4 is missing"):
        online_schedule(4, 8, available=[2, 6, 8])
    assert online_schedule(4, 8, available=range(0, 9)) == (2, 4, 6, 8)


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((0, 5), {}, ValueError),
        ((5, 0), {}, ValueError),
        ((5, 5), {"stride": 0}, ValueError),
        ((5.0, 5), {}, TypeError),
    ],
)
def test_bad_counts(args, kwargs, error):
    with pytest.raises(error):
        online_schedule(*args, **kwargs)
