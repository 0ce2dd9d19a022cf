"""Shared fixtures of the distillation tests: the teacher run and one student run per mode."""

import collections

import jax
import pytest
from distill_helpers import TEACHER, student_config

from sdcomplex.distill import _teacher as teacher_module
from sdcomplex.distill import distill
from sdcomplex.train import train


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory):
    """A finished 4-epoch teacher run with a checkpoint every epoch."""
    run_dir = tmp_path_factory.mktemp("teacher") / "run"
    train(TEACHER, run_dir, quiet=True)
    return run_dir


class _Counter:
    """Counts JAX traces and backend compilations by function name, and teacher loads."""

    def __init__(self):
        self.traces = collections.Counter()
        self.compiles = collections.Counter()
        self.loads = []

    def __call__(self, event, duration, **kwargs):
        name = kwargs.get("fun_name")
        if event.endswith("jaxpr_trace_duration"):
            self.traces[name] += 1
        elif event.endswith("backend_compile_duration"):
            self.compiles[name] += 1


@pytest.fixture(scope="session")
def mode_runs(teacher_dir, tmp_path_factory):
    """One run per mode (offline from the early-stopped checkpoint 2); the online run counts
    its traces, compilations and teacher-checkpoint reads."""
    root = tmp_path_factory.mktemp("modes")
    runs = {}
    runs["none"] = distill(student_config(teacher_dir, "none"), root / "none", quiet=True)
    runs["offline"] = distill(
        student_config(teacher_dir, "offline", teacher_epoch=2), root / "offline", quiet=True
    )
    counter = _Counter()
    load = teacher_module.load_checkpoint

    def counting_load(run_dir, epoch):
        counter.loads.append(epoch)
        return load(run_dir, epoch)

    jax.monitoring.register_event_duration_secs_listener(counter)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(teacher_module, "load_checkpoint", counting_load)
            runs["online"] = distill(
                student_config(teacher_dir, "online"), root / "online", quiet=True
            )
    finally:
        jax.monitoring.unregister_event_duration_listener(counter)
    return runs, counter
