"""The images scale (CIFAR-10, ResNet-20 teacher, LeNet-5 students): configs, plans, siblings.

No training: the configs load, validate, round-trip and plan; the other scales' configs keep the
hashes they had before the images scale was added (their results on disk stay valid), but for
a field's rename (see ``SIBLING_HASHES``).
"""

import pytest

from sdcomplex.reproduce import (
    SCALES,
    ExperimentConfig,
    available_experiments,
    load_experiment,
    plan_stages,
)

NAMES = ("all", "c1_c2_complexity", "c3_c4_online_kd", "c5_margin_bound")

SIBLING_HASHES = {
    ("all", "smoke"): "bca4e32f230156a6",
    ("all", "quick"): "139e38b5d74f823a",
    ("all", "paper"): "fee1b4a9b6bd34f8",
    ("c1_c2_complexity", "smoke"): "4ae160afb2d0a98c",
    ("c1_c2_complexity", "quick"): "bb6e84439451f7b4",
    ("c1_c2_complexity", "paper"): "12ab36ad0639d3de",
    ("c3_c4_online_kd", "smoke"): "69959587ddacba17",
    ("c3_c4_online_kd", "quick"): "f35f9a2683aff9ca",
    ("c3_c4_online_kd", "paper"): "ee51407c31d29761",
    ("c5_margin_bound", "smoke"): "cde260c95dc1dd33",
    ("c5_margin_bound", "quick"): "768829479b4ed0be",
    ("c5_margin_bound", "paper"): "1a78bb9edfd98462",
}
"""The hashes of every experiment at the other scales, computed from the experiment files as
they were before the images scale existed (``all`` at smoke and quick: without the C3 study, which
joined it later), with the complexity spec's ``kernel_outputs`` renamed ``ntk_outputs`` since (the
same settings under a new field name, so new hashes for the configs that have that spec)."""


def test_images_lies_between_quick_and_paper():
    assert SCALES.index("quick") < SCALES.index("images") < SCALES.index("paper")


@pytest.mark.parametrize("name", NAMES)
def test_images_config_loads_validates_and_round_trips(name):
    assert name in available_experiments()
    cfg = load_experiment(name, "images")
    assert (cfg.name, cfg.scale) == (name, "images")
    again = ExperimentConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.hash() == cfg.hash()
    teacher, student = cfg.teacher, cfg.student
    assert (teacher.model, student.model[:6]) == ("resnet20", "lenet5")
    assert teacher.dataset == student.dataset == "cifar10_jpeg"
    assert teacher.n_per_class is not None and teacher.n_test_per_class is not None
    assert teacher.checkpoint_every == 1 and teacher.keep_checkpoints is None
    assert teacher.epochs == student.epochs  # online KD: one teacher checkpoint per epoch
    assert getattr(cfg, "study", None) is None


def test_images_all_has_every_claim_and_its_stages():
    cfg = load_experiment("all", "images")
    assert cfg.claims == ("C1", "C2", "C3", "C4", "C5")
    methods = {m.key for m in cfg.distillation.methods}
    assert {"none", "offline_t4", "online_t4"} <= methods
    assert len(cfg.distillation.seeds) >= 2
    assert set(cfg.complexity.trained_students) <= methods
    names = [stage.key for stage in plan_stages(cfg)]
    students = [f"student/{m}/seed{s}" for m in sorted(methods) for s in cfg.distillation.seeds]
    assert names[0] == "teacher" and sorted(names[1 : 1 + len(students)]) == sorted(students)
    expected = {"complexity", "bound", "accuracy", "diagnostics", "claims", "figures"}
    assert expected <= set(names)
    assert len(names) == len(set(names)) == 1 + len(students) + len(expected)


@pytest.mark.parametrize(("name", "scale"), sorted(SIBLING_HASHES))
def test_other_scales_are_unchanged(name, scale):
    config = load_experiment(name, scale)
    if getattr(config, "study", None) is not None:
        config = config.replace(study=None)
    assert config.hash() == SIBLING_HASHES[(name, scale)]
