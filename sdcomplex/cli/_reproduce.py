"""``sdcomplex reproduce``: run an experiment of the paper reproduction (claims C1-C5)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sdcomplex.cli._config_flags import add_on_use
from sdcomplex.cli._devices import add_device_flags, placement_from_args
from sdcomplex.cli._signals import signal_exit_status

DESCRIPTION = (
    "Run every stage of EXPERIMENT (experiments/<name>.py) at --scale into --out DIR: "
    "the teacher (a checkpoint every epoch), the students in each mode and seed, the "
    "complexity sweeps, the margin bound, tables (CSV, Markdown), the claims check and "
    "figures (PNG, PDF). A stage whose recorded outputs (size, SHA-256) are all present "
    "and unchanged is skipped; one whose outputs were deleted or damaged runs again and "
    "says so, what is left of them moved to DIR/replaced/; an interrupted run resumes "
    "when the same command is run again; a directory holding a different config is "
    "refused, and so is a second invocation on DIR while one runs. --status lists what "
    "would run again and why. --list shows the "
    "experiments, scales and measured run times. With --distributed (one process per "
    "host; --out on a file system every host sees) the teacher and the students train "
    "on every process's devices and the other stages run in process 0."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", nargs="?", metavar="EXPERIMENT", help="name or .py config file")
    add_on_use(p, lambda: _add_scale(p))
    p.add_argument("--out", metavar="DIR", help="output directory (default runs/NAME-SCALE)")
    p.add_argument("--list", action="store_true", help="list experiments, scales and run times")
    p.add_argument("--print-config", action="store_true", help="print the config and exit")
    p.add_argument("--status", action="store_true", help="show which stages of --out are done")
    p.add_argument("--quiet", action="store_true", help="no progress bars, one line per stage")
    p.add_argument(
        "--compilation-cache",
        metavar="DIR",
        help="JAX persistent compilation cache (default ~/.cache/sdcomplex/jax)",
    )
    p.add_argument(
        "--no-compilation-cache",
        action="store_true",
        help="compile everything afresh (slower; results are the same)",
    )
    p.add_argument("--experiments-dir", metavar="DIR", help="where the config files are")
    p.add_argument(
        "--record-runtime",
        metavar="MACHINE",
        help="after a complete run, store its measured time in runtimes.json beside the "
        "experiment's file",
    )
    add_device_flags(p)


def _add_scale(p: argparse.ArgumentParser) -> None:
    """``--scale``, whose choices are those of `ExperimentConfig.scale`."""
    from sdcomplex.reproduce import SCALES

    p.add_argument(
        "--scale",
        default="quick",
        choices=SCALES,
        help="smoke: seconds; quick: minutes on a CPU (default); images: CIFAR-10 within an "
        "hour on a 2-core CPU; paper: PAPER.md section 5",
    )


def _list(directory: str | None) -> int:
    from sdcomplex.reproduce import SCALES, available_experiments, load_experiment
    from sdcomplex.reproduce._runtimes import format_runtime, is_current, read_runtimes

    runtimes = read_runtimes(directory)
    found = available_experiments(directory)
    print(f"experiments in {next(iter(found.values())).parent}:" if found else "no experiments")
    machines = set()
    older = False
    for name in found:
        config = load_experiment(name, "quick", directory=directory)
        print(f"\n{name}  [{', '.join(config.claims)}]  {config.description}")
        for scale in SCALES:
            cfg = load_experiment(name, scale, directory=directory)
            entry = runtimes.get(name, {}).get(scale)
            if entry:
                machines.add(entry["machine"])
            trained = any(x is not None for x in (cfg.distillation, cfg.complexity, cfg.study))
            student = f"{cfg.student.epochs} ep" if trained else "kernel at init, not trained"
            if cfg.study is not None:
                student += (
                    f"; study: {len(cfg.study.capacities)} capacities, "
                    f"{len(cfg.study.recipes)} teacher recipes, {len(cfg.study.seeds)} seeds"
                )
            what = (
                f"teacher {cfg.teacher.model} ({cfg.teacher.epochs} ep), student "
                f"{cfg.student.model} ({student}) on {cfg.student.dataset}"
            )
            stale = entry and not is_current(entry, cfg)
            older = older or bool(stale)
            shown = format_runtime(entry) + ("*" if stale else " ")
            print(f"  {scale:<6} {shown:>14}   {what}")
    if older:
        print("\n* measured for an earlier version of that experiment's config")
    if machines:
        print(
            "\nrun times: wall-clock seconds of all stages of a complete run (JIT compilation "
            "included), measured on: " + "; ".join(sorted(machines))
        )
    return 0


def run(args: argparse.Namespace) -> int:
    if args.list:
        return _list(args.experiments_dir)
    from sdcomplex.reproduce import (
        Interrupted,
        enable_compilation_cache,
        load_experiment,
        read_status,
        run_experiment,
    )
    from sdcomplex.reproduce._registry import experiments_dir
    from sdcomplex.reproduce._runtimes import RUNTIMES_FILE, record_runtime

    if args.status:
        if not args.out:
            raise ValueError("--status needs --out DIR")
        status = read_status(args.out)
        print(
            f"{args.out}: {status['name']} ({status['scale']}), {len(status['done'])} stages "
            f"done ({status['seconds']:.0f} s), {len(status['pending'])} pending"
            + (f": {', '.join(status['pending'])}" if status["pending"] else "")
        )
        for key, problem in status["problems"].items():
            print(f"  {key}: {problem}; runs again")
        return 0
    if not args.experiment:
        raise ValueError("name an EXPERIMENT (see sdcomplex reproduce --list)")
    config = load_experiment(args.experiment, args.scale, directory=args.experiments_dir)
    if args.print_config:
        print(config.to_json(), end="")
        return 0
    placement = placement_from_args(args)
    name = Path(args.experiment).stem
    out = Path(args.out or Path("runs") / f"{name}-{args.scale}")
    speaks = placement.writes_files  # process 0 of a distributed run speaks for it
    if speaks:
        where = f" on {placement.num_processes} processes" if placement.is_multi_process else ""
        print(
            f"sdcomplex reproduce {config.name} at scale {config.scale}{where} -> {out}",
            flush=True,
        )
    if not args.no_compilation_cache:
        enable_compilation_cache(args.compilation_cache)
    try:
        report = run_experiment(config, out, quiet=args.quiet, placement=placement)
    except Interrupted as err:
        print(f"sdcomplex reproduce: {err}", file=sys.stderr)
        return signal_exit_status(err.signum)
    if not speaks:
        return 0
    print(
        f"\n{len(report.ran)} stages run, {len(report.skipped)} skipped, "
        f"{report.seconds:.1f} s in this invocation"
    )
    for table in ("accuracy.md", "claims.md"):
        path = report.out / "tables" / table
        if path.is_file():
            print(f"\n{path}:\n{path.read_text(encoding='utf-8')}")
    print(
        f"results: {report.out / 'results'}\nfigures: {report.out / 'figures'} "
        f"(overview: {report.out / 'figures' / 'overview.png'})"
    )
    if args.record_runtime:
        # beside the experiment's file: a .py path's folder, else --experiments-dir's
        source = Path(args.experiment).parent if args.experiment.endswith(".py") else None
        directory = source or args.experiments_dir
        entry = record_runtime(report.out, machine=args.record_runtime, directory=directory)
        path = experiments_dir(directory) / RUNTIMES_FILE
        print(f"recorded run time {entry['seconds']:.0f} s in {path}")
    return 0
