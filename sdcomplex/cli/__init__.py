"""The ``sdcomplex`` command line: a thin layer over the library.

Each subcommand lives in its own module (see `SUBCOMMANDS`). Every error is one line
on stderr and a non-zero exit status, never a traceback: bad arguments and errors of the inputs
(``ValueError``, ``TypeError``, ``OSError``, ``LookupError``, malformed archives and pickles, out
of memory, XLA's included, ...) exit with status 2; any other exception is reported as an
internal error, exit status 1; Ctrl-C, even while the arguments are parsed, exits with status
130 ("interrupted"). With ``SDCOMPLEX_DEBUG=1`` in the environment every exception is
re-raised with its traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pickle
import sys
import zipfile
import zlib
from collections.abc import Sequence
from typing import NoReturn

from sdcomplex.cli._signals import redelivered_interrupts
from sdcomplex.cli._warnings import one_line_warnings

DEBUG_ENV = "SDCOMPLEX_DEBUG"
"""Set to ``1`` to get the full traceback of an error instead of the one-line message."""

INPUT_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,  # json.JSONDecodeError, UnicodeDecodeError, ...
    TypeError,
    OSError,  # missing files, permissions, full disks
    LookupError,  # KeyError, IndexError, unknown codecs
    EOFError,
    ArithmeticError,  # OverflowError, ZeroDivisionError, FloatingPointError
    MemoryError,
    RecursionError,
    pickle.UnpicklingError,
    zipfile.BadZipFile,
    zlib.error,
)
"""Exceptions reported as errors of the command's inputs (exit status 2); any other exception is
an internal error (exit status 1), also reported in one line."""

SUBCOMMANDS = {
    "demo": "complexity of labels, random labels and soft targets on embedded digits",
    "complexity": (
        "supervision complexity of targets w.r.t. a saved kernel or a trained run's kernel"
    ),
    "ntk": "empirical NTK of a trained run at an epoch, written as .npz with a JSON sidecar",
    "train": "train a model (resumable; checkpoints every k epochs)",
    "plot": "plot the learning curves (loss, accuracy vs epoch) of a run directory",
    "distill": "train a student by knowledge distillation (modes: none, offline, online)",
    "reproduce": "reproduce the paper's claims C1-C5 (resumable; results, tables, figures)",
}
"""Every subcommand and its one-line help, in the order ``sdcomplex --help`` lists them. The
module ``sdcomplex.cli._<name>`` of each holds its ``DESCRIPTION``, ``add_arguments(parser)``
and ``run(args)`` (the exit status)."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {text} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = OneLineParser(
        prog="sdcomplex",
        description=(
            "Empirical NTKs, supervision complexity and online knowledge distillation "
            "(Harutyunyan et al., ICLR 2023)."
        ),
        epilog=(
            f"Errors are one line on stderr (exit status 2 for bad input, 1 for an internal "
            f"error); set {DEBUG_ENV}=1 for the full traceback."
        ),
    )
    from sdcomplex import __version__

    parser.add_argument("--version", action="version", version=f"sdcomplex {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_line in SUBCOMMANDS.items():
        command = importlib.import_module(f"sdcomplex.cli._{name}")
        p = sub.add_parser(name, help=help_line, description=command.DESCRIPTION)
        command.add_arguments(p)
        p.set_defaults(run=command.run)
    return parser


def error_line(err: BaseException) -> str:
    """The one-line description of ``err``: its first non-empty line, else its type."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if isinstance(err, KeyError) and lines:
        return f"missing key {lines[0]}"
    if not lines:
        return type(err).__name__
    builtin = type(err).__module__ == "builtins"
    plain = isinstance(err, ValueError | OSError) and builtin
    return lines[0] if plain else f"{type(err).__name__}: {lines[0]}"


def is_input_error(err: BaseException) -> bool:
    """Whether ``err`` is an error of the command's inputs (exit status 2): one of
    `INPUT_ERRORS`, or XLA running out of memory for what the inputs ask (a model or kernel too
    large for the device, ``RESOURCE_EXHAUSTED``)."""
    if isinstance(err, INPUT_ERRORS):
        return True
    jax = sys.modules.get("jax")  # (not imported by `sdcomplex --help`)
    return (
        jax is not None
        and isinstance(err, jax.errors.JaxRuntimeError)
        and str(err).startswith("RESOURCE_EXHAUSTED")
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    return _main(argv)[0]


def console_main() -> NoReturn:
    """The ``sdcomplex`` console script and ``python -m sdcomplex``: exits with the status of
    :func:`main`.

    After a Ctrl-C that stopped a command in the middle of its work the process ends at once,
    its output flushed, without the interpreter's shutdown: JAX's runtime, torn down around a
    computation the interrupt left behind, crashed with a segmentation fault there about once
    in five (exit status -11 after "interrupted"). Every ``finally`` block and atomic write has
    run by then; what is skipped is what ``kill -9`` skips, which every run resumes from.
    """
    status, interrupted = _main(None)
    if interrupted:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


def _main(argv: Sequence[str] | None) -> tuple[int, bool]:
    """The exit status, and whether a Ctrl-C stopped the command."""
    with redelivered_interrupts():
        try:
            return _parse_and_run(argv), False
        except KeyboardInterrupt:  # (also while the flags are made: that imports JAX)
            print("sdcomplex: interrupted", file=sys.stderr)
            return 130, True


def _parse_and_run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    try:
        with one_line_warnings(args.command):  # (numpy's, too: no source lines on stderr)
            return int(args.run(args) or 0)
    except Exception as err:
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        if is_input_error(err):
            print(f"sdcomplex {args.command}: error: {error_line(err)}", file=sys.stderr)
            return 2
        print(
            f"sdcomplex {args.command}: internal error: {error_line(err)} (please report it; "
            f"{DEBUG_ENV}=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
