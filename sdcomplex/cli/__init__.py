"""The ``sdcomplex`` command line: a thin layer over the library.

Each subcommand lives in its own module with ``register(subparsers)``; errors from the library
(``ValueError``, ``TypeError``, ``OSError``) become a one-line message and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

SUBCOMMANDS = (
    "sdcomplex.cli._demo",
    "sdcomplex.cli._complexity",
    "sdcomplex.cli._ntk",
    "sdcomplex.cli._train",
    "sdcomplex.cli._plot",
    "sdcomplex.cli._distill",
    "sdcomplex.cli._reproduce",
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="sdcomplex",
        description=(
            "Empirical NTKs, supervision complexity and online knowledge distillation "
            "(Harutyunyan et al., ICLR 2023)."
        ),
    )
    from sdcomplex import __version__

    parser.add_argument("--version", action="version", version=f"sdcomplex {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sdcomplex`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("sdcomplex: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, KeyError) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if isinstance(err, KeyError):
            message = f"missing key {message}"
        print(f"sdcomplex {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
