"""A catalogue of bad inputs through the command line: each exits non-zero with exactly one line
on stderr, no traceback, and leaves every file that existed before unchanged (SHA-256 of every
file of the test's directory before and after). In-process through ``sdcomplex.cli.main``, and a
few through real ``python -m sdcomplex`` processes."""

import gzip
import hashlib
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import SYNTHETIC_FLAGS
from numpy.lib import format as npformat

from sdcomplex.cli import main

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "reproduce" / "tiny_experiment.py"
SYNTH = SYNTHETIC_FLAGS
TRAIN = ["train", "--model", "mlp", *SYNTH]


def _npy_header(shape, descr="<f8") -> bytes:
    buffer = io.BytesIO()
    npformat.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue()


def _cifar_archive(path: Path, batch: object) -> None:
    """A CIFAR-10 archive in the official layout whose first training batch is ``batch``."""
    good = {
        b"data": np.zeros((2, 3072), np.uint8),
        b"labels": [0, 1],
    }
    names = {b"label_names": [f"c{i}".encode() for i in range(10)]}
    members = {"batches.meta": pickle.dumps(names, protocol=2)}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        members[name] = pickle.dumps(good, protocol=2)
    members["data_batch_1"] = batch if isinstance(batch, bytes) else pickle.dumps(batch, 2)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _workspace(d: Path) -> None:
    """The files every case may use (valid and broken ones)."""
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(6, 6))
    np.save(d / "kernel.npy", feats @ feats.T + np.eye(6))
    np.save(d / "labels.npy", np.array([0, 1, 2, 0, 1, 2]))
    np.save(d / "labels5.npy", np.array([0, 1, 2, 0, 1]))
    np.save(d / "nan_kernel.npy", np.full((6, 6), np.nan))
    np.save(d / "indefinite.npy", np.array([[1.0, 2.0], [2.0, 1.0]]))
    np.save(d / "complex_kernel.npy", np.eye(6) + 1j * np.eye(6))
    np.save(d / "inf_kernel.npy", np.diag([1.0, 2.0, np.inf, 1.0, 1.0, 1.0]))
    np.save(d / "y2.npy", np.array([1.0, -1.0]))
    np.save(d / "nan_logits.npy", np.full((6, 3), np.nan))
    np.save(d / "logits1d.npy", np.zeros(6))
    np.save(d / "subnormal_kernel.npy", (feats @ feats.T + np.eye(6)) * 1e-320)
    np.save(d / "nan_labels.npy", np.array([0.0, np.nan, 1.0, 0.0, 1.0, 2.0]))
    np.save(d / "empty_labels.npy", np.zeros(0, np.int64))
    np.save(d / "text_labels.npy", np.array(["a", "b", "c", "a", "b", "c"]))
    (d / "empty.npy").write_bytes(b"")
    (d / "text.npy").write_text("1 2 3\n4 5 6\n")
    full = (d / "kernel.npy").read_bytes()
    (d / "truncated.npy").write_bytes(full[: len(full) - 9])
    np.save(d / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    (d / "huge.npy").write_bytes(_npy_header((1 << 31, 1 << 31)) + b"\0" * 64)
    (d / "negative.npy").write_bytes(_npy_header((-4,)))
    (d / "badheader.npy").write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': 12}    \n")
    np.savez(d / "objects.npz", a=np.array([None, 1], dtype=object))
    (d / "notzip.npz").write_bytes(b"PK\x03\x04 this is not really a zip")
    np.savez(d / "two.npz", a=np.eye(6), b=np.eye(6))
    (d / "truncated.npz").write_bytes((d / "two.npz").read_bytes()[:200])
    (d / "kernel.txt").write_text("1 0\n0 1\n")
    (d / "adir.npy").mkdir()
    (d / "results.json").write_text('{"keep": true}\n')
    (d / "bad.json").write_text('{\n  "model": "mlp",\n  "epochs": 3,,\n}\n')
    (d / "list.json").write_text("[1, 2, 3]\n")
    (d / "twice.json").write_text('{"model": "mlp", "epochs": 3, "epochs": 30}\n')
    (d / "latin1.json").write_bytes(b'{"model": "\xe9"}')
    (d / "syntax.py").write_text("def get_config(:\n    return {}\n")
    (d / "nameerror.py").write_text("def get_config(scale='smoke'):\n    return undefined\n")
    (d / "noconfig.py").write_text("X = 1\n")
    (d / "wrongtype.py").write_text("def get_config(scale='smoke'):\n    return 42\n")
    (d / "importerror.py").write_text("import no_such_module_xyz\n")
    (d / "exits.py").write_text("import sys\ndef get_config(scale='smoke'):\n    sys.exit(0)\n")
    (d / "exits_on_import.py").write_text("import sys\nsys.exit(3)\n")
    (d / "config.yaml").write_text("model: mlp\n")
    (d / "afile").write_text("not a directory\n")
    (d / "foreign").mkdir()
    (d / "foreign" / "notes.txt").write_text("mine\n")
    (d / "norun").mkdir()
    (d / "badmetrics").mkdir()
    (d / "badmetrics" / "metrics.jsonl").write_text("{not json\n")
    for name, batch in {
        "cifar_list": [1, 2, 3],
        "cifar_codec": b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x06\x00\x00\x00nosuch\x86R.",
        "cifar_huge": b"\x80\x04\x8e" + (1 << 60).to_bytes(8, "little") + b"xx.",
        "cifar_nodata": {b"labels": [0, 1]},
        "cifar_truncated": pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)})[:-50],
    }.items():
        (d / name).mkdir()
        _cifar_archive(d / name / "cifar-10-python.tar.gz", batch)
    (d / "cifar_lying").mkdir()
    info = tarfile.TarInfo("cifar-10-batches-py/batches.meta")
    info.size = 1 << 60  # the header declares an exabyte; two blocks follow
    lying = info.tobuf(format=tarfile.GNU_FORMAT) + bytes(4 * tarfile.BLOCKSIZE)
    (d / "cifar_lying" / "cifar-10-python.tar.gz").write_bytes(gzip.compress(lying))
    (d / "cifar_garbage").mkdir()
    (d / "cifar_garbage" / "cifar-10-python.tar.gz").write_bytes(gzip.compress(b"junk" * 100))


def _reproduce_dir(d: Path, name: str, marker: str | None = None, meta: str | None = None) -> Path:
    from sdcomplex.reproduce import load_experiment
    from sdcomplex.reproduce._runner import prepare_out_dir

    out = d / name
    prepare_out_dir(out, load_experiment(str(TINY), "smoke"))
    if marker is not None:
        (out / "stages").mkdir()
        (out / "stages" / "teacher.json").write_text(marker)
    if meta is not None:
        (out / "experiment.json").write_text(meta)
    return out


CIFAR = ["--model", "mlp", "--data", "cifar10", "--data-option", "checksum=null", "--quiet"]
LABELS = ["--labels", "{d}/labels.npy"]
RANDOM = ["--random-labels", "0"]


def _kernel(name: str, *flags: str) -> list[str]:
    """``sdcomplex complexity`` of the kernel file ``name`` of the test's directory."""
    return ["complexity", "--kernel", f"{{d}}/{name}", *flags]


def _config(name: str) -> list[str]:
    """``sdcomplex train`` with the config file ``name`` of the test's directory."""
    return ["train", "--config", f"{{d}}/{name}", "--out", "{d}/r"]


def _cifar(data_dir: str) -> list[str]:
    """``sdcomplex train`` on the CIFAR-10 archive in ``data_dir`` of the test's directory."""
    return ["train", *CIFAR, "--data-dir", f"{{d}}/{data_dir}", "--out", "{d}/r"]


# id -> (argv with {d} for the test's directory, what stderr must contain)
CASES: dict[str, tuple[list[str], str]] = {
    # complexity: kernels and targets
    "kernel missing": (_kernel("nope.npy", *LABELS), "no such file"),
    "kernel is a directory": (_kernel("adir.npy"), "is not a file"),
    "empty npy": (_kernel("empty.npy", *LABELS), "empty.npy: not a valid .npy file"),
    "text npy": (_kernel("text.npy", *LABELS), "text.npy: not a valid .npy file"),
    "truncated npy": (_kernel("truncated.npy", *RANDOM), "truncated.npy: not a valid .npy file"),
    "pickled npy": (_kernel("objects.npy", *RANDOM), "Python objects"),
    "huge npy": (_kernel("huge.npy", *RANDOM), "more than this machine's memory"),
    "negative shape npy": (_kernel("negative.npy", *RANDOM), "negative.npy: not a valid .npy file"),
    "bad npy header": (_kernel("badheader.npy", *RANDOM), "badheader.npy: not a valid .npy file"),
    "npz with a pickled member": (
        _kernel("objects.npz", *RANDOM),
        "member a.npy: not a valid .npy",
    ),
    "npz not a zip": (_kernel("notzip.npz", *RANDOM), "notzip.npz: not a valid .npz file"),
    "truncated npz": (_kernel("truncated.npz", *RANDOM), "truncated.npz: not a valid .npz file"),
    "npz key missing": (_kernel("two.npz", "--kernel-key", "zz", *RANDOM), "no array 'zz'"),
    "npz needs a key": (_kernel("two.npz", *RANDOM), "--kernel-key"),
    "kernel of text": (_kernel("kernel.txt"), "expected a .npy or .npz"),
    "labels as kernel": (_kernel("labels.npy", *LABELS), "kernel must have shape"),
    "labels of wrong length": (_kernel("kernel.npy", "--labels", "{d}/labels5.npy"), "5"),
    "targets truncated": (_kernel("kernel.npy", "--targets", "{d}/truncated.npy"), "truncated.npy"),
    "negative ridge": (_kernel("kernel.npy", *LABELS, "--ridge", "-1"), "ridge"),
    "no targets": (_kernel("kernel.npy"), "at least one"),
    "num-classes not int": (_kernel("kernel.npy", "--num-classes", "x"), "invalid int value"),
    "existing json": (_kernel("kernel.npy", *LABELS, "--json", "{d}/results.json"), "exists"),
    "no kernel flag": (["complexity"], "required"),
    "indefinite kernel": (
        _kernel("indefinite.npy", "--targets", "{d}/y2.npy"),
        "not positive semi-definite",
    ),
    "complex kernel": (_kernel("complex_kernel.npy", *RANDOM), "must be real"),
    "inf in kernel": (_kernel("inf_kernel.npy", *RANDOM), "inf"),
    "NaN logits": (_kernel("kernel.npy", "--logits", "{d}/nan_logits.npy"), "NaN"),
    "ridge overflows": (
        _kernel("kernel.npy", *LABELS, "--ridge", "1e308"),
        "ridge * n (1e+308 * 6) overflows float64",
    ),
    "complexity overflows": (
        _kernel("subnormal_kernel.npy", *LABELS),
        "the complexity overflows float64",
    ),
    "1-d logits": (
        _kernel("kernel.npy", "--logits", "{d}/logits1d.npy"),
        "logits must have shape (n, C)",
    ),
    "NaN labels": (_kernel("kernel.npy", "--labels", "{d}/nan_labels.npy"), "labels contains NaN"),
    "empty labels": (_kernel("kernel.npy", "--labels", "{d}/empty_labels.npy"), "labels are empty"),
    "text labels": (_kernel("kernel.npy", "--labels", "{d}/text_labels.npy"), "labels must be"),
    "zero classes": (
        _kernel("kernel.npy", *LABELS, "--num-classes", "0"),
        "--num-classes must be >= 1, got 0",
    ),
    "zero classes random labels": (
        _kernel("kernel.npy", *RANDOM, "--num-classes", "0"),
        "--num-classes must be >= 1, got 0",
    ),
    # train: flags, config files, data sets, output directories
    "negative epochs": ([*TRAIN, "--epochs", "-1", "--out", "{d}/r"], "epochs must be >= 1"),
    "epochs not int": ([*TRAIN, "--epochs", "two", "--out", "{d}/r"], "invalid int value"),
    "zero batch size": ([*TRAIN, "--batch-size", "0", "--out", "{d}/r"], "batch_size"),
    "negative lr": ([*TRAIN, "--lr", "-0.1", "--out", "{d}/r"], "learning_rate"),
    "unknown model": (["train", "--model", "nosuchnet", *SYNTH, "--out", "{d}/r"], "nosuchnet"),
    "unknown dataset": (
        ["train", "--model", "mlp", "--data", "nosuchdata", "--out", "{d}/r"],
        "nosuchdata",
    ),
    "model option without =": ([*TRAIN, "--model-option", "hidden", "--out", "{d}/r"], "KEY=VALUE"),
    "unknown optimizer": ([*TRAIN, "--optimizer", "nosuchopt", "--out", "{d}/r"], "nosuchopt"),
    "config missing": (_config("none.json"), "does not exist"),
    "config JSON syntax": (_config("bad.json"), "bad.json, line 3 column"),
    "config JSON list": (_config("list.json"), "list"),
    "config JSON key twice": (_config("twice.json"), "twice.json: the key 'epochs' appears twice"),
    "config not UTF-8": (_config("latin1.json"), "UTF-8"),
    "config Python syntax": (_config("syntax.py"), "syntax.py, line 1: SyntaxError"),
    "config Python NameError": (_config("nameerror.py"), "nameerror.py, line 2: NameError"),
    "config Python ImportError": (
        _config("importerror.py"),
        "importerror.py, line 1: ModuleNotFoundError",
    ),
    "config calling sys.exit": (_config("exits.py"), "exits.py, line 3: SystemExit: 0"),
    "config exiting on import": (_config("exits_on_import.py"), "line 2: SystemExit: 3"),
    "reproduce config calling sys.exit": (
        ["reproduce", "{d}/exits.py", "--scale", "smoke"],
        "exits.py, line 3: SystemExit: 0",
    ),
    "config without get_config": (_config("noconfig.py"), "get_config"),
    "config yaml": (_config("config.yaml"), ".json or a .py"),
    "config is a directory": (_config("foreign"), "is not a file"),
    "out is a file": ([*TRAIN, "--epochs", "1", "--out", "{d}/afile"], "afile"),
    "out is a foreign directory": ([*TRAIN, "--epochs", "1", "--out", "{d}/foreign"], "foreign"),
    "cifar archive missing": (_cifar("norun"), "not found"),
    "cifar not a tar": (_cifar("cifar_garbage"), "cifar_garbage"),
    "cifar batch a list": (_cifar("cifar_list"), "data_batch_1"),
    "cifar unknown codec": (_cifar("cifar_codec"), "data_batch_1' is not a valid pickle"),
    "cifar member lying about size": (_cifar("cifar_lying"), "more than this machine's memory"),
    "cifar data dir is a file": (_cifar("afile"), "afile"),
    "data option not an int": (
        [*TRAIN, "--data-option", "n_train=abc", "--out", "{d}/r"],
        "n_train must be an integer >= 1, got 'abc'",
    ),
    "digits seed negative": (
        [
            "train",
            "--model",
            "mlp",
            "--data",
            "digits",
            "--data-option",
            "seed=-1",
            "--out",
            "{d}/r",
        ],
        "seed must be an integer >= 0, got -1",
    ),
    "digits test fraction text": (
        ["train", "--model", "mlp", "--data", "digits", "--data-option", "test_fraction=a"]
        + ["--out", "{d}/r"],
        "test_fraction must be a number in (0, 1), got 'a'",
    ),
    "data option unknown": ([*TRAIN, "--data-option", "colour=1", "--out", "{d}/r"], "colour"),
    "cifar huge length": (_cifar("cifar_huge"), "declares 1152921504606846976 bytes"),
    "cifar no data": (_cifar("cifar_nodata"), "'data'"),
    "cifar truncated pickle": (_cifar("cifar_truncated"), "not a valid pickle"),
    "cifar bad checksum": (
        [
            "train",
            "--model",
            "mlp",
            "--data",
            "cifar10",
            "--data-dir",
            "{d}/cifar_list",
            "--out",
            "{d}/r",
        ],
        "md5",
    ),
    # distill
    "distill teacher missing": (
        ["distill", "--teacher", "{d}/nope", "--student", "mlp", *SYNTH, "--out", "{d}/s"],
        "nope",
    ),
    "distill teacher not a run": (
        ["distill", "--teacher", "{d}/norun", "--student", "mlp", *SYNTH, "--out", "{d}/s"],
        "norun",
    ),
    "distill negative temperature": (
        [
            "distill",
            "--teacher",
            "{d}/norun",
            "--temperature",
            "-1",
            "--student",
            "mlp",
            *SYNTH,
            "--out",
            "{d}/s",
        ],
        "temperature",
    ),
    "distill unknown mode": (
        [
            "distill",
            "--teacher",
            "{d}/norun",
            "--mode",
            "sideways",
            "--student",
            "mlp",
            *SYNTH,
            "--out",
            "{d}/s",
        ],
        "sideways",
    ),
    # reproduce
    "reproduce no experiment": (["reproduce"], "EXPERIMENT"),
    "reproduce unknown experiment": (["reproduce", "nosuchexp", "--out", "{d}/o"], "nosuchexp"),
    "reproduce missing file": (["reproduce", "{d}/nope.py", "--out", "{d}/o"], "does not exist"),
    "reproduce syntax error": (
        ["reproduce", "{d}/syntax.py", "--out", "{d}/o"],
        "syntax.py, line 1: SyntaxError",
    ),
    "reproduce NameError": (
        ["reproduce", "{d}/nameerror.py", "--scale", "smoke"],
        "nameerror.py, line 2: NameError",
    ),
    "reproduce no get_config": (["reproduce", "{d}/noconfig.py"], "get_config"),
    "reproduce wrong return": (["reproduce", "{d}/wrongtype.py", "--scale", "smoke"], "int"),
    "reproduce unknown scale": (["reproduce", str(TINY), "--scale", "huge"], "invalid choice"),
    "reproduce status without out": (["reproduce", "--status"], "--out"),
    "reproduce status foreign": (
        ["reproduce", "--status", "--out", "{d}/foreign"],
        "not an sdcomplex experiment directory",
    ),
    "reproduce foreign out": (
        [
            "reproduce",
            str(TINY),
            "--scale",
            "smoke",
            "--out",
            "{d}/foreign",
            "--no-compilation-cache",
        ],
        "not an sdcomplex experiment directory",
    ),
    "reproduce garbage marker": (
        ["reproduce", "--status", "--out", "{d}/garbage_marker"],
        "teacher.json",
    ),
    "reproduce marker not object": (
        [
            "reproduce",
            str(TINY),
            "--scale",
            "smoke",
            "--out",
            "{d}/list_marker",
            "--no-compilation-cache",
        ],
        "teacher.json",
    ),
    "reproduce garbage experiment file": (
        ["reproduce", "--status", "--out", "{d}/garbage_meta"],
        "experiment.json is damaged (not valid JSON",
    ),
    "reproduce other scale": (
        [
            "reproduce",
            str(TINY),
            "--scale",
            "quick",
            "--out",
            "{d}/garbage_marker",
            "--no-compilation-cache",
        ],
        "different config",
    ),
    # plot and demo
    "plot missing run": (["plot", "{d}/nope"], "nope"),
    "plot empty run": (["plot", "{d}/norun"], "metrics"),
    "plot bad metrics": (["plot", "{d}/badmetrics"], "metrics.jsonl"),
    "plot low dpi": (["plot", "{d}/badmetrics", "--dpi", "10"], "dpi"),
    "demo per-class 1": (["demo", "--per-class", "1"], "--per-class"),
    "demo seed not int": (["demo", "--seed", "x"], "invalid int value"),
    "demo negative seed": (["demo", "--seed", "-1"], "--seed must be >= 0, got -1"),
    "demo per-class above a class": (["demo", "--per-class", "175"], "per_class 175 exceeds"),
    "demo existing json": (["demo", "--json", "{d}/results.json"], "exists"),
    "unknown command": (["frobnicate"], "invalid choice"),
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_inputs")
    _workspace(d)
    _reproduce_dir(d, "garbage_marker", marker="{not json")
    _reproduce_dir(d, "list_marker", marker="[1, 2]")
    _reproduce_dir(d, "garbage_meta", meta='{"name": ')
    return d


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _check_stderr(err: str, expected: str) -> None:
    assert err.endswith("\n") and err.count("\n") == 1 and err.strip(), err
    assert "Traceback" not in err and "allow_pickle" not in err
    assert expected in err, err


@pytest.fixture
def env(workspace, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # default output paths (runs/...) land here
    monkeypatch.setenv("SDCOMPLEX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SDCOMPLEX_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("SDCOMPLEX_DEBUG", raising=False)
    return workspace


def test_the_catalogue_is_large():
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_changes_nothing(env, capsys, case):
    argv, expected = CASES[case]
    argv = [a.replace("{d}", str(env)) for a in argv]
    before = _digests(env)
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse usage errors
        code = exit_.code
    out, err = capsys.readouterr()
    assert code not in (0, None), out
    _check_stderr(err, expected.replace("{d}", str(env)))
    assert _digests(env) == before


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    ["truncated npy", "config Python syntax", "reproduce garbage marker", "cifar unknown codec"],
)
def test_bad_input_in_a_real_process(env, case):
    argv, expected = CASES[case]
    argv = [a.replace("{d}", str(env)) for a in argv]
    before = _digests(env)
    process_env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "sdcomplex", *argv],
        env=process_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    _check_stderr(proc.stderr, expected)
    assert _digests(env) == before


def test_debug_env_shows_the_traceback(env, capsys, monkeypatch):
    monkeypatch.setenv("SDCOMPLEX_DEBUG", "1")
    with pytest.raises(ValueError, match="not a valid .npy file"):
        main(["complexity", "--kernel", str(env / "empty.npy"), "--random-labels", "0"])


def test_an_internal_error_is_one_line_with_exit_status_1(env, capsys, monkeypatch):
    import sdcomplex.cli._demo as demo

    def broken(args):
        raise AssertionError("a bug\nsecond line")

    monkeypatch.setattr(demo, "run", broken)  # registered when main builds its parser
    assert main(["demo"]) == 1
    err = capsys.readouterr().err
    _check_stderr(err, "internal error: AssertionError: a bug (please report it")
    assert "SDCOMPLEX_DEBUG=1" in err


def test_xla_out_of_memory_is_an_input_error(env, capsys, monkeypatch):
    """XLA failing to allocate what the inputs ask (e.g. ``--model-option
    hidden_sizes=[1099511627776]``) is exit status 2, not an internal error to report; any
    other XLA runtime error still is one."""
    import jax

    import sdcomplex.cli._demo as demo

    message = "RESOURCE_EXHAUSTED: Out of memory allocating 4398046511104 bytes."
    monkeypatch.setattr(demo, "run", lambda args: raise_xla(jax, message))
    assert main(["demo"]) == 2
    _check_stderr(capsys.readouterr().err, f"demo: error: JaxRuntimeError: {message}")
    monkeypatch.setattr(demo, "run", lambda args: raise_xla(jax, "INTERNAL: a bug"))
    assert main(["demo"]) == 1
    _check_stderr(capsys.readouterr().err, "internal error: JaxRuntimeError: INTERNAL: a bug")


def raise_xla(jax, message):
    raise jax.errors.JaxRuntimeError(message)


def test_every_command_prints_warnings_in_one_line(env, capsys, monkeypatch):
    """A library's or numpy's warning is one line on stderr in every command (it was Python's
    two, file:line and the source line, outside train and distill)."""
    import warnings

    import sdcomplex.cli._demo as demo

    def warns(args):
        warnings.warn("overflow encountered\n in multiply", RuntimeWarning, stacklevel=1)
        return 0

    monkeypatch.setattr(demo, "run", warns)
    assert main(["demo"]) == 0
    assert capsys.readouterr().err == "sdcomplex demo: warning: overflow encountered in multiply\n"


def test_ctrl_c_while_the_flags_are_made_is_one_line_and_130(env, capsys, monkeypatch):
    """Ctrl-C while the parser imports JAX for a subcommand's flags (the first seconds of
    every command) exits 130 with one line, as later in the command, not with a traceback."""
    import sdcomplex.cli._train as train_cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_cli, "add_train_flags", interrupted)
    assert main(["train", "--out", str(env / "r")]) == 130
    _check_stderr(capsys.readouterr().err, "sdcomplex: interrupted")


class _InterruptedDel:
    def __del__(self):
        raise KeyboardInterrupt  # where Ctrl-C lands in a gc callback: it cannot propagate


def test_a_ctrl_c_python_cannot_raise_is_delivered_again(env, capsys, monkeypatch):
    """A Ctrl-C raised in a ``__del__`` or a gc callback (JAX's, while it starts) was printed as
    'Exception ignored in ...' with a traceback and lost: the command ran to its end and exited
    0. It is sent again and stops the command: one line, exit status 130."""
    import sdcomplex.cli._demo as demo

    finished, seen = [], []

    def run(args):
        seen.append((sys.unraisablehook, signal.getsignal(signal.SIGINT)))
        _InterruptedDel()  # dropped at once: its __del__ raises
        # the signal is sent again 50 ms later from another thread; a loaded machine (CI runs
        # two workers on two cores) may start that thread late, so wait up to 60 s for it
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            sum(range(100))  # ordinary code, where the interrupt is raised again
        finished.append(time.monotonic())
        return 0

    monkeypatch.setattr(demo, "run", run)
    # a Ctrl-C reaches Python only through its SIGINT handler (Python's own unless the program
    # changed it); in a test worker an earlier test's libraries may have left another one, under
    # which no KeyboardInterrupt is ever raised (three CI runs: the command ran to its end)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        status = main(["demo"])
    finally:
        signal.signal(signal.SIGINT, previous)
    err = capsys.readouterr().err
    assert status == 130, (finished, err, seen, previous)
    _check_stderr(err, "sdcomplex: interrupted")
    assert finished == []


class _Exited(Exception):
    pass


def test_the_console_script_ends_at_once_after_ctrl_c(capsys, monkeypatch):
    """After a Ctrl-C the console script leaves by ``os._exit(130)``, skipping the interpreter's
    shutdown (where JAX's runtime crashed, exit status -11, about once in five); any other end
    is an ordinary ``sys.exit``."""
    import sdcomplex.cli._demo as demo
    from sdcomplex.cli import console_main

    def hard_exit(status):
        raise _Exited(status)

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "_exit", hard_exit)
    monkeypatch.setattr(sys, "argv", ["sdcomplex", "demo"])
    monkeypatch.setattr(demo, "run", interrupted)
    with pytest.raises(_Exited) as hard:
        console_main()
    assert hard.value.args == (130,)
    _check_stderr(capsys.readouterr().err, "sdcomplex: interrupted")
    monkeypatch.setattr(demo, "run", lambda args: 0)
    with pytest.raises(SystemExit) as ordinary:
        console_main()
    assert ordinary.value.code == 0


def test_json_results_are_untouched_by_a_refused_run(env):
    assert json.loads((env / "results.json").read_text()) == {"keep": True}


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.float64).reshape(3, 4),
        np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4)),
        np.arange(6, dtype=">i4"),
        np.zeros((0, 5), np.int8),
        np.array(3.5),
        np.array([True, False]),
        np.array([1 + 2j]),
        np.array("text"),
    ],
    ids=["f8", "fortran-f4", "big-endian", "empty", "0-d", "bool", "complex", "unicode"],
)
def test_valid_files_load_exactly(tmp_path, array):
    from sdcomplex._io import load_arrays

    np.save(tmp_path / "a.npy", array)
    np.savez_compressed(tmp_path / "b.npz", x=array, y=array[None])
    (loaded,) = load_arrays(tmp_path / "a.npy").values()
    archive = load_arrays(tmp_path / "b.npz")
    for got, want in ((loaded, array), (archive["x"], array), (archive["y"], array[None])):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    assert list(archive) == ["x", "y"]
