"""The run directory: one type for every command that writes a directory of results.

A run directory holds the resolved config (``config.json``), sealed metadata records
(``run.json`` of a training run, ``distill.json`` of a distillation run; see
:mod:`sdcomplex.train._integrity`), the metrics lines (``metrics.jsonl``) and the checkpoints
(``checkpoints/``). :class:`RunDirectory` is the protocol they all follow:

* **create, or verify, or refuse**: a new or empty directory is created for a config; one
  that holds a run of the same config (same hash) is reused (resumed); one that holds another
  config is refused, naming the differences, and anything else is refused, before anything is
  written (:meth:`RunDirectory.verify`, :meth:`RunDirectory.verify_record`);
* **metadata**: sealed JSON records, written once, atomically, and checked when read
  (:meth:`RunDirectory.read_metadata`, :meth:`RunDirectory.write_metadata`);
* **contents**: the metrics lines and the epochs that have a checkpoint.

``run.json`` records the config's hash and the config itself, so a ``config.json`` edited after
training is refused, naming what changed, before anything is restored from checkpoints written
with the original config.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from sdcomplex._io import atomic_write_text
from sdcomplex.data import DatasetInfo
from sdcomplex.train._checkpoint import CHECKPOINT_DIR, library_versions, list_checkpoints
from sdcomplex.train._config import TrainConfig, config_differences, config_hash
from sdcomplex.train._integrity import DamagedFile, read_sealed_json, write_sealed_json
from sdcomplex.train._metrics import METRICS_FILE, read_metrics

CONFIG_FILE = "config.json"
RUN_FILE = "run.json"
_FILES = {
    "config_file": CONFIG_FILE,
    "run_file": RUN_FILE,
    "metrics_file": METRICS_FILE,
    "checkpoint_dir": CHECKPOINT_DIR,
}


class ConfigKind(NamedTuple):
    """How a run directory reads and compares one kind of config.

    Attributes:
        noun: what a directory of this config holds, in messages (``"run"``).
        record: what its metadata record is called, in messages (``"run record"``).
        from_dict: ``dict -> config`` (raises ``ValueError``/``TypeError`` when invalid).
        hash: ``config -> str``, equal for equal configs.
        differences: ``(old, new) -> ["field: old -> new", ...]``.
    """

    noun: str
    record: str
    from_dict: Callable[[Any], Any]
    hash: Callable[[Any], str]
    differences: Callable[[Any, Any], list[str]]


TRAIN_RUN = ConfigKind("run", "run record", TrainConfig.from_dict, config_hash, config_differences)
"""The config kind of a training run (:class:`~sdcomplex.train.TrainConfig`)."""


@dataclasses.dataclass(frozen=True)
class RunDirectory:
    """A run directory (it need not exist yet).

    Attributes:
        path: the directory.
        config_file: ``config.json``, the resolved config of the run.
        run_file: ``run.json``, the sealed record of a training run.
        metrics_file: ``metrics.jsonl``, one line per evaluated epoch.
        checkpoint_dir: ``checkpoints/``, one Orbax checkpoint per saved epoch.

    Example:
        >>> run = RunDirectory("runs/not-yet-trained")
        >>> run.config_file.name, run.checkpoints(), run.is_empty()
        ('config.json', [], True)
    """

    path: Path
    config_file: Path = dataclasses.field(init=False, repr=False, compare=False)
    run_file: Path = dataclasses.field(init=False, repr=False, compare=False)
    metrics_file: Path = dataclasses.field(init=False, repr=False, compare=False)
    checkpoint_dir: Path = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        path = Path(self.path)
        object.__setattr__(self, "path", path)
        for name, file in _FILES.items():
            object.__setattr__(self, name, path / file)

    # --- create, verify or refuse --------------------------------------------------------------

    def is_empty(self, *, leftover_of: str = CONFIG_FILE) -> bool:
        """True if the directory does not exist or holds nothing but temporary files of a
        write of ``leftover_of`` killed before its rename."""
        if not self.path.exists():
            return True
        leftover = f".{leftover_of}."
        return self.path.is_dir() and all(p.name.startswith(leftover) for p in self.path.iterdir())

    def refuse_different(self, old: Any, new: Any, kind: ConfigKind) -> None:
        """Raises the refusal of a directory holding ``old`` when ``new`` is asked for, unless
        both have the same hash.

        Raises:
            ValueError: ``"<dir> holds a <noun> with a different config (<differences>); ..."``.
        """
        if kind.hash(old) != kind.hash(new):
            diff = "; ".join(kind.differences(old, new))
            raise ValueError(
                f"{self.path} holds a {kind.noun} with a different config ({diff}); use another "
                "output directory (nothing was changed)"
            )

    def verify(self, config: TrainConfig) -> bool:
        """True if the directory holds a run of the same config; False if it is new or empty;
        raises if it holds anything else.

        Raises:
            ValueError: a different config (the differences are listed), an edited or damaged
                ``config.json`` / ``run.json``, or a non-empty directory that is not a run.
        """
        if self.config_file.exists():
            self.refuse_different(self.read_config(type(config)), config, TRAIN_RUN)
            return True
        if not self.is_empty():
            raise ValueError(
                f"{self.path} exists and is not an sdcomplex run directory (no {CONFIG_FILE}); "
                "choose a new or empty output directory (nothing was changed)"
            )
        return False

    def verify_record(self, name: str, config: Any, kind: ConfigKind) -> dict[str, Any] | None:
        """The sealed record ``name`` of a run of the same ``config`` (None: no such record).

        Raises:
            ValueError: the record holds a different config (the differences are listed) or
                no valid config; :class:`DamagedFile` when it changed after it was written.
        """
        record = self.read_metadata(name)
        if record is None:
            return None
        try:
            old = kind.from_dict(record["config"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{self.path / name} is not a valid {kind.record} ({err})") from None
        self.refuse_different(old, config, kind)
        return record

    def create(self, config: TrainConfig) -> None:
        """Creates the directory and writes ``config.json`` (atomic)."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.config_file, config.to_json())

    # --- metadata ------------------------------------------------------------------------------

    def read_metadata(self, name: str = RUN_FILE) -> dict[str, Any] | None:
        """The sealed record ``name`` (seal checked); ``None`` if there is none yet.

        Raises:
            DamagedFile: not valid JSON or does not match its seal.
        """
        path = self.path / name
        if not path.exists():
            return None
        return read_sealed_json(path)

    def write_metadata(self, record: dict[str, Any], name: str = RUN_FILE) -> Path:
        """Writes the record ``name`` sealed with its sha256, atomically (never overwrites)."""
        return write_sealed_json(self.path / name, record)

    def write_run_info(self, config: TrainConfig, **fields: Any) -> Path:
        """Writes ``run.json``: the config, its hash, the config class, the creation time, the
        library versions and ``fields``."""
        record = {
            "config": config.to_dict(),
            "config_hash": config_hash(config),
            "config_class": f"{type(config).__module__}.{type(config).__qualname__}",
            "created": time.time(),
            "versions": library_versions(),
            **fields,
        }
        return self.write_metadata(record, RUN_FILE)

    def read_config(self, cls: type[TrainConfig] = TrainConfig) -> TrainConfig:
        """The config of the run, checked against the hash ``run.json`` recorded.

        Raises:
            ValueError: ``config.json`` is missing or not a valid config, or it does not match
                the recorded hash (the message lists what differs from the recorded config when
                ``run.json`` holds it); :class:`DamagedFile` for a damaged ``run.json``.
        """
        cfg_file = self.config_file
        try:
            config = cls.from_dict(json.loads(cfg_file.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise ValueError(f"{self.path} has no {CONFIG_FILE}") from None
        except (UnicodeDecodeError, ValueError, TypeError) as err:
            raise ValueError(f"{cfg_file} is not a valid config ({err}); not touching it") from None
        info = self.read_metadata(RUN_FILE)
        if info is None or info.get("config_hash") == config_hash(config):
            return config
        recorded = info.get("config")
        diff = "the recorded config is not in run.json"
        if isinstance(recorded, dict):
            try:
                diff = "; ".join(config_differences(cls.from_dict(recorded), config))
            except (ValueError, TypeError) as err:
                raise DamagedFile(self.run_file, f"its config is invalid: {err}") from None
        raise ValueError(
            f"{cfg_file} was changed after the run started: it no longer matches the config hash "
            f"{info.get('config_hash')} recorded in {RUN_FILE} ({diff}); restore it or train "
            "into a new directory"
        )

    def dataset_info(self) -> DatasetInfo:
        """The data set the run trained on, as ``run.json`` records it (seal checked).

        Raises:
            ValueError: no ``run.json`` or no valid data set description in it;
                :class:`DamagedFile` for a damaged ``run.json``.
        """
        try:
            return DatasetInfo.from_dict((self.read_metadata(RUN_FILE) or {})["dataset"])
        except DamagedFile:
            raise
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{self.run_file} has no valid data set description ({err})") from None

    # --- contents ------------------------------------------------------------------------------

    def checkpoints(self) -> list[int]:
        """Epochs with a complete checkpoint, increasing (``[]`` without ``checkpoints/``)."""
        return list_checkpoints(self.path) if self.checkpoint_dir.is_dir() else []

    def metrics(self) -> list[dict[str, Any]]:
        """Every line of ``metrics.jsonl`` (see :func:`~sdcomplex.train.read_metrics`)."""
        return read_metrics(self.path)


def read_run_info(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The run's ``run.json`` (seal checked); ``None`` if there is none yet.

    Raises:
        DamagedFile: ``run.json`` is not valid JSON or does not match its seal.
    """
    return RunDirectory(Path(run_dir)).read_metadata(RUN_FILE)


def read_run_config(
    run_dir: str | os.PathLike[str], cls: type[TrainConfig] = TrainConfig
) -> TrainConfig:
    """The config of a run directory, checked against the hash ``run.json`` recorded
    (:meth:`RunDirectory.read_config`)."""
    return RunDirectory(Path(run_dir)).read_config(cls)
