"""The config base: field kinds, JSON round trip, pinned hashes, differences, replace, --set."""

import dataclasses
import hashlib
import json
import re
from dataclasses import FrozenInstanceError, dataclass

import numpy as np
import pytest

from sdcomplex._config_base import Config, config_hash, field_docs, option
from sdcomplex._config_kinds import (
    Bool,
    Choice,
    Int,
    Nested,
    Optional,
    Options,
    Path,
    Real,
    Text,
    Tuple,
)
from sdcomplex.cli import main
from sdcomplex.cli._config_flags import parse_set, parse_value, split_pairs
from sdcomplex.distill import DistillConfig
from sdcomplex.reproduce import (
    BoundSpec,
    ComplexitySpec,
    DistillationSpec,
    StudentMethod,
    load_experiment,
)
from sdcomplex.reproduce._config import stage_hash
from sdcomplex.train import TrainConfig


@dataclass(frozen=True)
class Inner(Config):
    """A nested toy config.

    Attributes:
        size: a size. Not a count.
    """

    size: int = option(Int(minimum=1), 2)


@dataclass(frozen=True)
class Toy(Config):
    """A toy config with one field of every kind.

    Attributes:
        name: what it is called (``"toy"``).
        steps: how many steps.
    """

    _what = "toy config"

    name: str = option(Text(identifier=True))
    steps: int = option(Int(minimum=1), 10)
    rate: float = option(Real(low=0.0, low_open=True), 0.1)
    share: float = option(Real(low=0.0, high=1.0), 0.5)
    flag: bool = option(Bool(), False)
    mode: str = option(Choice(("a", "b", "c")), "a")
    where: str | None = option(Optional(Path()), None)
    options: dict = option(Options(), default_factory=dict)
    sizes: tuple = option(Tuple(Int(minimum=0)), ())
    taus: tuple = option(
        Tuple(Real(low=0.0, low_open=True), nonempty=True, sort_unique=True), (1.0,)
    )
    inner: Inner = option(Nested(Inner), Inner())
    extra: Inner | None = option(Optional(Nested(Inner)), None)


# ---------------------------------------------------------------- hashes recorded on disk


def test_hashes_of_existing_configs_are_pinned():
    """Run directories and experiments record these hashes (computed before the config base
    existed): they must never change, except where a field was renamed (the complexity and
    study specs' ``kernel_outputs``, now ``ntk_outputs``: ``all`` quick was e105479049b2b20b,
    without its study d0f1584fbda0055e; ``ComplexitySpec()``'s stage hash 7a73193d782faaef)."""
    assert config_hash(TrainConfig()) == "6ab6e02c12bf370b"
    student = TrainConfig(
        model="mlp", dataset="digits", model_options={"hidden_sizes": [32]}, epochs=3
    )
    distill = DistillConfig(student=student, mode="offline", teacher_dir="runs/t", teacher_epoch=3)
    assert distill.hash() == "1d5cf3b307e88ce3"
    quick = load_experiment("all", "quick")
    # ``all`` gained the C3 study (a new setting, so a new hash); without it, the old config
    assert quick.hash() == "6f8d0ff079c26b78"
    assert quick.replace(study=None).hash() == "139e38b5d74f823a"
    assert (quick.teacher.hash(), quick.student.hash()) == ("73190c55f22bc18d", "d206a59ec9cf6117")
    assert load_experiment("c3_c4_online_kd", "smoke").hash() == "69959587ddacba17"
    assert load_experiment("c5_margin_bound", "paper").hash() == "1a78bb9edfd98462"
    # the analysis stages hash their spec's fields (recorded in each stage's marker)
    specs = (DistillationSpec(), ComplexitySpec(), BoundSpec())
    assert [stage_hash(dataclasses.asdict(spec)) for spec in specs] == [
        "c6bafbc57e838d2e",
        "754f5db0c017c0d9",
        "15364145c39655e3",
    ]
    assert [stage_hash(spec.to_dict()) for spec in specs] == [
        stage_hash(dataclasses.asdict(spec)) for spec in specs
    ]


def test_hash_is_sha256_of_the_canonical_json():
    cfg = Toy(name="t", options={"b": [1, 2], "a": 1})
    text = json.dumps(cfg.to_dict(), sort_keys=True, separators=(",", ":"))
    assert cfg.hash() == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert config_hash(cfg.to_dict()) == cfg.hash()  # a dict of the fields hashes alike
    assert Toy(name="t", rate=1, sizes=[1]).hash() == Toy(name="t", rate=1.0, sizes=(1,)).hash()
    assert Toy(name="t", steps=11).hash() != Toy(name="t").hash()


# ---------------------------------------------------------------- kinds


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"name": ""}, TypeError, "Toy.name must be a non-empty string, got ''"),
        ({"name": "a b"}, ValueError, "Toy.name must be an identifier, got 'a b'"),
        ({"steps": 2.0}, TypeError, "Toy.steps must be an integer, got 2.0"),
        ({"steps": True}, TypeError, "Toy.steps must be an integer, got True"),
        ({"steps": 0}, ValueError, "Toy.steps must be >= 1, got 0"),
        ({"rate": "1"}, TypeError, "Toy.rate must be a number, got '1'"),
        ({"rate": 0}, ValueError, "Toy.rate must be a finite number > 0, got 0.0"),
        ({"rate": float("inf")}, ValueError, "Toy.rate must be a finite number > 0, got inf"),
        ({"share": 1.5}, ValueError, r"Toy.share must lie in [0, 1], got 1.5"),
        ({"share": float("nan")}, ValueError, r"Toy.share must lie in [0, 1], got nan"),
        ({"flag": 1}, TypeError, "Toy.flag must be true or false, got 1"),
        ({"mode": "d"}, ValueError, "Toy.mode must be one of a, b or c, got 'd'"),
        ({"where": ""}, TypeError, "Toy.where must be a path, got ''"),
        ({"options": {1: 2}}, TypeError, "Toy.options must be a dict with string keys"),
        ({"options": {"x": {1}}}, TypeError, "config options must be JSON values"),
        ({"sizes": "12"}, TypeError, "Toy.sizes must be a list, got '12'"),
        ({"sizes": (1, -1)}, ValueError, r"Toy.sizes[1] must be >= 0, got -1"),
        ({"taus": ()}, ValueError, "Toy.taus is empty"),
        ({"inner": None}, ValueError, "Toy.inner is required"),
        ({"inner": 3}, TypeError, "Toy.inner must be a Inner, got int"),
        ({"inner": {"size": 0}}, ValueError, "Inner.size must be >= 1, got 0"),
        ({"extra": {"sise": 1}}, ValueError, "unknown config field(s) ['sise']"),
    ],
)
def test_each_kind_names_the_field_in_its_error(changes, error, message):
    with pytest.raises(error, match="^" + re.escape(message)):
        Toy(**{"name": "t", **changes})


def test_kinds_normalise_values():
    cfg = Toy(
        name="t",
        steps=np.int64(3),
        rate=np.float32(0.5),
        flag=np.bool_(True),
        where=__import__("pathlib").Path("a/b"),
        options={"n": np.int64(2), "t": (1, 2)},
        sizes=np.array([3, 1]),
        taus=[4, 1, 4.0, np.float64(2)],
        inner={"size": 5},
        extra={},
    )
    assert (cfg.steps, cfg.rate, cfg.flag, cfg.where) == (3, 0.5, True, "a/b")
    assert type(cfg.steps) is int and type(cfg.rate) is float and type(cfg.flag) is bool
    assert cfg.options == {"n": 2, "t": [1, 2]} and cfg.sizes == (3, 1)
    assert cfg.taus == (1.0, 2.0, 4.0)
    assert cfg.inner == Inner(size=5) and cfg.extra == Inner()
    with pytest.raises(FrozenInstanceError):
        cfg.steps = 4  # type: ignore[misc]


def test_choice_with_its_own_message():
    with pytest.raises(ValueError, match="^unknown distillation mode 'distil'; expected one of"):
        DistillConfig(student=TrainConfig(), mode="distil")
    kind = Choice(("x",), message="{where}: no {value!r} among {values}")
    with pytest.raises(ValueError, match=r"^F: no 'y' among \('x',\)$"):
        kind.check("F", "y")


def test_numpy_scalars_are_accepted_in_every_config():
    spec = BoundSpec(n_per_class=np.int64(3), temperatures=(np.float32(2.0),), teacher_stride=1)
    assert spec.n_per_class == 3 and type(spec.n_per_class) is int
    assert spec == BoundSpec(n_per_class=3, temperatures=(2.0,))
    dist = DistillationSpec(seeds=np.arange(2), probe_size=np.int32(16), alpha=np.float64(0.5))
    assert dist.seeds == (0, 1) and dist.to_dict()["probe_size"] == 16
    assert StudentMethod("online", np.float32(4.0)).key == "online_t4"


# ---------------------------------------------------------------- JSON, differences, replace


def test_json_round_trip():
    cfg = Toy(name="t", options={"a": [1]}, sizes=(1, 2), extra=Inner(size=3), where="p")
    data = cfg.to_dict()
    assert data["inner"] == {"size": 2} and data["sizes"] == [1, 2] and data["taus"] == [1.0]
    assert Toy.from_dict(data) == cfg and Toy.from_json(cfg.to_json()) == cfg
    assert cfg.to_json() == json.dumps(data, indent=2, sort_keys=True) + "\n"
    assert Toy.from_dict({"name": "t"}) == Toy(name="t")  # missing fields: the defaults
    with pytest.raises(ValueError, match=r"unknown toy config field\(s\) \['stepz'\]; valid"):
        Toy.from_dict({"name": "t", "stepz": 1})
    with pytest.raises(ValueError, match="a toy config needs a 'name' field"):
        Toy.from_dict({})
    with pytest.raises(TypeError, match="must be a JSON object"):
        Toy.from_dict([("name", "t")])


def test_differences_and_replace():
    old = Toy(name="t")
    new = old.replace(steps=11, inner=Inner(size=3), extra=Inner(), options={"a": 1})
    assert old.differences(new) == [
        "extra: None -> {'size': 2}",
        "inner.size: 2 -> 3",
        "options: {} -> {'a': 1}",
        "steps: 10 -> 11",
    ]
    assert old.differences(old) == [] and new.replace(steps=10).steps == 10
    with pytest.raises(ValueError, match="Toy.steps must be >= 1"):
        old.replace(steps=0)  # validated again
    with pytest.raises(ValueError, match=r"unknown toy config field\(s\) \['step'\]"):
        old.replace(step=1)


def test_field_docs_are_first_sentences():
    assert field_docs(Toy) == {"name": 'what it is called ("toy")', "steps": "how many steps"}
    assert field_docs(Inner) == {"size": "a size"}
    docs = field_docs(DistillConfig)  # its own and its base's (DistillSettings) entries
    assert {"alpha", "probe_size", "student", "temperature"} <= set(docs)


# ---------------------------------------------------------------- --set


def test_set_values_are_parsed_by_field_kind():
    texts = split_pairs(["name=123", "steps=4", "flag=true", "taus=[2, 1]", "where=null"])
    values = parse_set(texts, Toy)
    assert values == {"name": "123", "steps": 4, "flag": True, "taus": [2, 1], "where": None}
    assert Toy(**{**values, "name": "t"}).taus == (1.0, 2.0)
    assert parse_value(Int(), "abc") == "abc"  # a bare word, which the field then refuses
    assert parse_value(Optional(Text()), "x=y") == "x=y"
    with pytest.raises(ValueError, match="^--set expects KEY=VALUE, got 'steps'$"):
        split_pairs(["steps"])
    with pytest.raises(ValueError, match="--set expects KEY=VALUE"):
        split_pairs(["=3"])
    with pytest.raises(ValueError, match=r"^unknown toy config field\(s\) \['stepz'\]"):
        parse_set({"stepz": "1"}, Toy)


def _printed(capsys, argv):
    assert main([*argv, "--print-config"]) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_flags_come_from_the_fields(capsys):
    # every TrainConfig field has a flag, named as the field (today's short names kept)
    printed = _printed(
        capsys,
        ["train", "--out", "x", "--adam-b1", "0.8", "--learning-rate", "0.2", "--lr", "0.3"]
        + ["--no-normalise", "--set", "final_lr_fraction=0.25", "--lr-milestones", "4"],
    )
    assert (printed["adam_b1"], printed["learning_rate"], printed["normalise"]) == (0.8, 0.3, False)
    assert printed["final_lr_fraction"] == 0.25 and printed["lr_milestones"] == [4]
    # distill: its own fields, the student's (--set student.FIELD or FIELD), the mode's flags
    printed = _printed(
        capsys,
        ["distill", "--out", "x", "--mode", "none", "--student", "mlp", "--fidelity-examples"]
        + ["50", "--set", "student.seed=3", "--set", "probe_seed=2", "--set", "epochs=4"],
    )
    assert printed["fidelity_examples"] == 50 and printed["probe_seed"] == 2
    assert (printed["student"]["model"], printed["student"]["seed"]) == ("mlp", 3)
    assert printed["student"]["epochs"] == 4


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--set", "epochs=abc"], "TrainConfig.epochs must be an integer, got 'abc'"),
        (["train", "--set", "epochs"], "--set expects KEY=VALUE, got 'epochs'"),
        (["train", "--set", "epoch=3"], "unknown config field(s) ['epoch']; valid fields"),
        (["train", "--epochs", "x"], "argument --epochs: invalid int value: 'x'"),
        (["distill", "--mode", "none", "--set", "colour=1"], "unknown student config field"),
    ],
)
def test_set_errors_are_one_line(capsys, argv, message):
    try:
        status = main([*argv, "--out", "x", "--print-config"])
    except SystemExit as exit_:  # argparse's own usage errors
        status = exit_.code
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_a_distillation_spec_passes_its_settings_on():
    from sdcomplex.reproduce._training import distill_options

    spec = DistillationSpec(alpha=0.25, stride=2, probe_size=16, fidelity_examples=None)
    method = StudentMethod("online", 2.0)
    student = TrainConfig(model="mlp", dataset="digits")
    cfg = spec.distill_config(student, "runs/teacher", method)
    assert (cfg.mode, cfg.temperature, cfg.teacher_epoch) == ("online", 2.0, None)
    assert (cfg.alpha, cfg.stride, cfg.probe_size, cfg.fidelity_examples) == (0.25, 2, 16, None)
    assert cfg.student == student and cfg.teacher_dir == "runs/teacher"
    experiment = load_experiment("c3_c4_online_kd", "smoke").replace(distillation=spec)
    assert distill_options(experiment, method) == spec.run_options(method)


def test_listing_the_commands_imports_no_config_package():
    import subprocess
    import sys

    code = "import sys; from sdcomplex.cli import build_parser; build_parser(); "
    names = "('jax', 'sdcomplex.train', 'sdcomplex.distill')"
    code += f"print(sorted(m for m in {names} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_differences_inside_a_nested_config_stop_at_its_fields():
    student = TrainConfig(model="mlp", model_options={"width": 1})
    old = DistillConfig(student=student, mode="none")
    new = old.replace(student=student.replace(model_options={"width": 2}), probe_size=8)
    assert old.differences(new) == [
        "probe_size: 256 -> 8",
        "student.model_options: {'width': 1} -> {'width': 2}",
    ]
