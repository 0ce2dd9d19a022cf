"""The resumable runner: an experiment as a list of stages with explicit result files.

Layout of an output directory ``DIR``::

    DIR/config.json            the experiment's full config (every hyperparameter)
    DIR/experiment.json        its sealed record: the config and its hash, name, scale, versions
    DIR/stages/<stage>.json    one marker per finished stage: its input hash, seconds, summary,
                               its outputs (path, size, SHA-256) and its earlier stages' digest
    DIR/stages/<stage>.started.json  a stage begun and not finished: its input hash and its
                               earlier stages' digest when it began
    DIR/runs/teacher/          the teacher's run (sdcomplex.train: checkpoints every epoch)
    DIR/runs/students/<method>/seed<k>/   each student's run (sdcomplex.distill)
    DIR/results/*.json, *.csv  complexities, accuracies, diagnostics, bound terms, claims
    DIR/tables/*.md            Markdown tables
    DIR/figures/*.png, *.pdf   figures (PNG at 200 dpi) and a multi-panel overview
    DIR/logs/<stage>.log       per-epoch lines of the training stages
    DIR/replaced/<time>-<stage>/  what was left of a stage's outputs when it ran again

A stage is skipped when its marker exists with the same input hash and every output it recorded
(path, size, SHA-256; see :mod:`._outputs`) is still there unchanged, so running the same command
twice does nothing the second time. A stage whose outputs were deleted or damaged, or whose
inputs or earlier stages changed, runs again, and the runner says why; what is left of its
outputs is first moved to ``DIR/replaced/<time>-<stage>/`` (nothing is overwritten or lost). The
marker is written last (atomically), after every output of the stage; a stage killed half-way
has no marker and runs again, and training stages resume from their last checkpoint
(:func:`sdcomplex.train.train` and :func:`sdcomplex.distill.distill` resume themselves), unless
the stages before it have other outputs now than when it began (a teacher trained again): then
its partial outputs are moved aside first and it starts from nothing. A
directory holding a different config is refused with the differences; an unreadable marker or
metadata file is an error naming it. One invocation at a time runs a directory's stages: a second
one started while the first runs is refused (the first holds a lock on the directory).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import jax
from jax.errors import JaxRuntimeError

from sdcomplex._io import atomic_write_json
from sdcomplex.data import quiet_loading
from sdcomplex.placement import this_process_only
from sdcomplex.reproduce._config import ExperimentConfig
from sdcomplex.reproduce._outputs import (
    Upstream,
    move_aside,
    read_marker_file,
    record_outputs,
    set_aside,
    snapshot,
    stage_problem,
)
from sdcomplex.reproduce._plan import plan_stages
from sdcomplex.reproduce._processes import Processes, collective_failed, join
from sdcomplex.reproduce._stage import EXPERIMENT, Context, Layout, Stage
from sdcomplex.train import DamagedFile, RunDirectory


@dataclasses.dataclass(frozen=True)
class RunReport:
    """What :func:`run_experiment` did: stage keys run and skipped, and total seconds."""

    out: Path
    ran: tuple[str, ...]
    skipped: tuple[str, ...]
    seconds: float


def prepare_out_dir(out: str | os.PathLike[str], config: ExperimentConfig) -> Layout:
    """Creates ``out`` for ``config``, or checks that it already holds the same config: the
    run directory protocol (:class:`~sdcomplex.train.RunDirectory`) of the :data:`EXPERIMENT`
    kind, ``config.json`` and its sealed record ``experiment.json``.

    Raises:
        ValueError: ``out`` holds another config (the message lists the first differences), an
            edited ``config.json`` or a damaged ``experiment.json``, or is a non-empty
            directory that is not an output directory.
    """
    # absolute: Orbax (the training stages' checkpoints) refuses relative paths
    root = Path(out).expanduser().resolve()
    run = RunDirectory(root)
    if not run.verify(config, EXPERIMENT):
        run.create(config)
    if not (root / EXPERIMENT.record_file).exists():  # (also after a kill between the writes)
        run.write_record(config, EXPERIMENT, name=config.name, scale=config.scale)
    return Layout(root)


def enable_compilation_cache(path: str | os.PathLike[str] | None = None) -> str | None:
    """Turns on JAX's persistent compilation cache (process-wide) unless one is configured.

    The students of an experiment compile the same computations again and again (every seed of
    a method has the same shapes); with the cache, each is compiled once per machine. Results
    are identical with and without it. Respects ``$JAX_COMPILATION_CACHE_DIR`` or an earlier
    ``jax.config`` setting. JAX decides whether to use the cache at the first compilation of a
    process, so call this before anything is compiled (the CLI does).

    Args:
        path: cache directory (default ``$SDCOMPLEX_CACHE/jax``, i.e. ``~/.cache/sdcomplex/jax``).

    Returns:
        The cache directory in use, or None if JAX's cache cannot be configured.
    """
    from sdcomplex.data import cache_root

    current = jax.config.values.get("jax_compilation_cache_dir")
    if current:
        return str(current)
    directory = Path(path) if path is not None else cache_root() / "jax"
    directory.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return str(directory)


def read_marker(layout: Layout, key: str) -> dict[str, Any] | None:
    """The marker of a finished stage, or None.

    Raises:
        ValueError: the marker is unreadable or malformed (the message names the file).
    """
    return read_marker_file(layout.marker(key))


def _fmt_seconds(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _summary_text(summary: dict[str, Any]) -> str:
    text = summary.get("text")
    return f": {text}" if text else ""


def _run_stage(
    config: ExperimentConfig, layout: Layout, stage: Stage, quiet: bool, placement: Any = None
) -> tuple[list[dict[str, Any]], dict[str, Any], float]:
    """Runs one stage: its recorded outputs, its summary and its time in seconds."""
    before = snapshot(layout.root)
    t0 = time.perf_counter()
    with quiet_loading(quiet):  # (the data a quiet stage loads shows no progress bar)
        summary = dict(stage.run(Context(config, layout, quiet, stage.key, placement)) or {})
    seconds = time.perf_counter() - t0
    outputs = record_outputs(layout.root, before, owns=stage.owns, size_only=stage.size_only)
    return outputs, summary, seconds


def _decide(
    layout: Layout,
    stage: Stage,
    marker: dict[str, Any] | None,
    upstream: Upstream,
    prefix: str,
    *,
    quiet: bool,
    figures: bool,
    stream: IO[str],
) -> str:
    """Whether a stage is ``"skip"`` (done before), ``"off"`` (figures not asked for) or
    ``"run"``; before a run again, what is left of its outputs is moved aside and its marker
    removed. Says so on ``stream``; adds a stage that does not run to ``upstream``."""
    problem = stage_problem(layout.root, stage.hash, marker, upstream.hexdigest())
    if problem is None:
        assert marker is not None
        upstream.add(stage.key, marker["outputs"])
        print(f"{prefix}: done before, skipped", file=stream, flush=True)
        return "skip"
    if stage.key == "figures" and not figures:
        upstream.add(stage.key, None)
        return "off"
    if marker is not None:
        moved = set_aside(layout.root, stage.key, marker, stage.owns)
        print(f"{prefix}: {problem}, running again{moved}", file=stream, flush=True)
        layout.marker(stage.key).unlink()
    elif _started_after_others(layout, stage, upstream.hexdigest()):
        # a training run begun after another teacher must not resume: it starts from nothing
        partial = move_aside(layout.root, stage.key, [], stage.owns)
        where = ""
        if partial is not None:
            where = f" (partial outputs moved to {partial.relative_to(layout.root)})"
        text = "begun with other inputs, running again from nothing"
        print(f"{prefix}: {text}{where}", file=stream, flush=True)
    elif not quiet:
        print(f"{prefix} ...", file=stream, flush=True)
    return "run"


def _started_after_others(layout: Layout, stage: Stage, upstream: str) -> bool:
    """Whether a stage without a marker was begun by an earlier invocation (killed before its
    marker) after other inputs or other outputs of the stages before it than now."""
    started = read_marker_file(layout.started(stage.key))
    if started is None:
        return False
    return (started["hash"], started.get("upstream")) != (stage.hash, upstream)


def _damaged_input(layout: Layout, err: DamagedFile) -> DamagedFile:
    """``err`` naming the earlier stage whose output the damaged file is, if one is: its
    checkpoints are recorded by size (see :mod:`._outputs`), so in-place damage is found only
    when a later stage reads them. Deleting the file makes that stage run again."""
    path = Path(err.path).resolve()
    if not path.is_relative_to(layout.root):
        return err
    relative = path.relative_to(layout.root).as_posix()
    for marker_file in sorted(layout.stages.glob("*.json")):
        marker = read_marker_file(marker_file) or {}
        if any(entry["path"] == relative for entry in marker.get("outputs") or ()):
            return DamagedFile(
                err.path,
                f"{err.reason}; an output of the stage {marker.get('stage', marker_file.stem)!r}: "
                "delete it and run again, that stage runs again",
            )
    return err


def _run_and_record(
    config: ExperimentConfig,
    layout: Layout,
    stage: Stage,
    upstream: Upstream,
    prefix: str,
    *,
    quiet: bool,
    placement: Any,
    stream: IO[str],
) -> None:
    """Runs a stage and writes its marker (last, atomically), then its line on ``stream``."""
    started = {"stage": stage.key, "hash": stage.hash, "upstream": upstream.hexdigest()}
    atomic_write_json(layout.started(stage.key), started, overwrite=True)
    try:
        outputs, summary, seconds = _run_stage(config, layout, stage, quiet, placement)
    except DamagedFile as err:
        raise _damaged_input(layout, err) from None
    atomic_write_json(
        layout.marker(stage.key),
        {
            "stage": stage.key,
            "title": stage.title,
            "hash": stage.hash,
            "seconds": seconds,
            "finished": time.time(),
            "summary": summary,
            "upstream": upstream.hexdigest(),
            "outputs": outputs,
        },
        overwrite=True,
    )
    layout.started(stage.key).unlink()
    upstream.add(stage.key, outputs)
    print(f"{prefix}: {_fmt_seconds(seconds)}{_summary_text(summary)}", file=stream, flush=True)


def _run_here(
    config: ExperimentConfig,
    layout: Layout,
    stage: Stage,
    upstream: Upstream,
    prefix: str,
    processes: Processes,
    *,
    quiet: bool,
    placement: Any,
    stream: IO[str],
) -> None:
    """Runs a stage in this process: in process 0, recorded (alone on its own devices, unless
    every process runs the stage); in another process, a training stage it takes part in."""
    if not processes.first:
        stage.run(Context(config, layout, True, stage.key, placement, writes_files=False))
        return
    alone = processes.distributed and not stage.every_process
    with this_process_only() if alone else contextlib.nullcontext():
        _run_and_record(
            config, layout, stage, upstream, prefix, quiet=quiet, placement=placement, stream=stream
        )


@contextlib.contextmanager
def _exclusive(layout: Layout) -> Iterator[None]:
    """Holds the output directory for one invocation: an exclusive lock on the directory
    itself (no file is written), released when the invocation ends, killed included. Where
    the file system has no such locks (flock fails otherwise than "held"), the invocation runs
    unlocked: a false refusal would stop every run there.

    Raises:
        ValueError: another invocation holds it.
    """
    try:
        import fcntl
    except ImportError:  # (not a POSIX system: no lock)
        yield
        return
    fd = os.open(layout.root, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(
                f"{layout.root} is in use by another sdcomplex reproduce; wait for it to end"
            ) from None
        except OSError:
            pass  # a file system without such locks (some network ones): not held, not refused
        yield
    finally:
        os.close(fd)


def _open(
    config: ExperimentConfig,
    out: str | os.PathLike[str],
    stages: list[Stage],
    hold: contextlib.ExitStack,
) -> tuple[Layout, dict[str, Any], Processes]:
    """The output directory (prepared and held by process 0 until ``hold`` closes), its
    markers (read by process 0) and the processes of this invocation
    (:func:`._processes.join`: the others check they see it)."""
    if jax.process_count() == 1:
        layout = prepare_out_dir(out, config)
        hold.enter_context(_exclusive(layout))
        markers = {stage.key: read_marker(layout, stage.key) for stage in stages}  # errors first
        return layout, markers, Processes()
    layout, markers, error = Layout(Path(out).expanduser().resolve()), {}, None
    if jax.process_index() == 0:
        try:
            layout = prepare_out_dir(out, config)
            hold.enter_context(_exclusive(layout))
            markers = {stage.key: read_marker(layout, stage.key) for stage in stages}
        except ValueError as err:
            error = str(err)
    return layout, markers, join(layout.root, first_error=error)


def run_experiment(
    config: ExperimentConfig,
    out: str | os.PathLike[str],
    *,
    quiet: bool = False,
    stream: IO[str] | None = None,
    figures: bool = True,
    placement: Any = None,
) -> RunReport:
    """Runs (or resumes, or recognises as done) every stage of an experiment into ``out``.

    Prints one line per stage with its time (and the library's progress bars on stderr unless
    ``quiet``). Stages whose marker exists with the same input hash, whose recorded outputs
    are all present and unchanged and whose earlier stages are unchanged are skipped; any other
    stage with a marker runs again, saying why, after what is left of its outputs is moved to
    ``out/replaced/``.

    In a multi-process run (``jax.distributed``; ``placement`` over every process's devices)
    every process calls it with the same arguments: the training stages run in every process
    together, every other stage in process 0 alone on its own devices while the others wait;
    process 0 alone writes the output directory's bookkeeping and prints the stage lines (see
    :mod:`._processes`). ``out`` must be on a file system every process sees.

    Args:
        config: the experiment.
        out: output directory (new, empty, or holding the same config).
        quiet: no progress bars and no start lines (completion lines are still printed).
        stream: where the stage lines go (default ``sys.stdout``).
        figures: run the figures stage (PNG and PDF files); notebooks that draw their own
            figures inline pass False (the stage stays pending and runs on a later call).
        placement: the devices the teacher and the students train on
            (:func:`~sdcomplex.placement.make_placement`; default: one device). Not part of
            the experiment's config: the stages' hashes do not depend on it.

    Returns:
        :class:`RunReport` (in the other processes of a multi-process run: the training stages
        only).

    Raises:
        ValueError: a different config in ``out``, an unreadable marker or metadata file
            (the message names it), or ``out`` held by another invocation still running,
            before anything is written; in a multi-process run also
            an output directory that some process does not see (on every process).
        Interrupted: a training stage was stopped by a signal (its checkpoint is saved).
        ProcessStopped: (multi-process runs) in the other processes, process 0 stopped with
            an error in a stage it ran alone; in any process, a stage every process runs
            failed in JAX's runtime (a collective with a process that stopped, typically).
    """
    stream = stream if stream is not None else sys.stdout
    if placement is not None:  # before any work: every training run's global batch
        placement.check_divides(config.teacher.batch_size, "teacher batch_size")
        placement.check_divides(config.student.batch_size, "student batch_size")
    stages = plan_stages(config)
    with contextlib.ExitStack() as hold:  # the output directory, held until the run ends
        layout, markers, processes = _open(config, out, stages, hold)
        if not processes.first:
            stream, quiet = io.StringIO(), True  # process 0 speaks for the run
        ran, skipped = [], []
        started = time.perf_counter()
        width = len(str(len(stages)))
        upstream = Upstream()
        together = False  # in a stage every process runs (a failure there is each process's own)
        try:
            for i, stage in enumerate(stages, start=1):
                prefix = f"[{i:>{width}}/{len(stages)}] {stage.title}"
                action = None
                if processes.first:
                    action = _decide(
                        layout, stage, markers.get(stage.key), upstream, prefix,
                        quiet=quiet, figures=figures, stream=stream,
                    )  # fmt: skip
                if stage.every_process:
                    action = processes.meet(f"{i:04d}", action)
                elif not processes.first:
                    continue  # process 0 runs it alone
                if action == "skip":
                    skipped.append(stage.key)
                if action != "run":
                    continue
                together = stage.every_process and processes.distributed
                _run_here(
                    config, layout, stage, upstream, prefix, processes,
                    quiet=quiet, placement=placement, stream=stream,
                )  # fmt: skip
                together = False
                ran.append(stage.key)
        except BaseException as err:
            if processes.first and not together:
                processes.finish(err)  # the others stop with process 0's error
            if together and isinstance(err, JaxRuntimeError):
                raise collective_failed(stage.key, err) from err
            raise
        processes.finish(None)
        return RunReport(layout.root, tuple(ran), tuple(skipped), time.perf_counter() - started)


def read_status(out: str | os.PathLike[str]) -> dict[str, Any]:
    """Which stages of an output directory are done and how long they took.

    Returns:
        ``{"name", "scale", "config_hash", "done": [keys], "pending": [keys], "problems",
        "seconds"}``: ``problems`` maps each pending stage that has a marker to why it will run
        again (an output missing or changed, ...); ``seconds`` is the sum of the finished
        stages' recorded times. The stages after one that runs again are listed as done; they
        run again too if its new outputs differ from the old.

    Raises:
        ValueError: ``out`` is not an output directory, or a marker or metadata file in it is
            unreadable (the message names the file).
    """
    root = Path(out).expanduser().resolve()
    config = RunDirectory(root).read_config(EXPERIMENT)  # checked against experiment.json
    layout = Layout(root)
    done, pending, seconds, problems = [], [], 0.0, {}
    upstream = Upstream()
    for stage in plan_stages(config):
        marker = read_marker(layout, stage.key)
        problem = stage_problem(layout.root, stage.hash, marker, upstream.hexdigest())
        if problem is None:
            assert marker is not None
            done.append(stage.key)
            seconds += float(marker.get("seconds", 0.0))
            upstream.add(stage.key, marker["outputs"])
        else:
            pending.append(stage.key)
            if marker is not None:
                problems[stage.key] = problem
            elif _started_after_others(layout, stage, upstream.hexdigest()):
                problems[stage.key] = "begun with other inputs, starts from nothing"
            upstream.add(stage.key, marker.get("outputs") if marker is not None else None)
    return {
        "name": config.name,
        "scale": config.scale,
        "config_hash": config.hash(),
        "done": done,
        "pending": pending,
        "problems": problems,
        "seconds": seconds,
    }
