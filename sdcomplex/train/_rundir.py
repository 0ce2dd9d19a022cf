"""The run directory: one type for every command that writes a directory of results.

A run directory holds a resolved config (``config.json``), sealed metadata records (``run.json``
of a training run, ``distill.json`` of a distillation run, ``experiment.json`` of an output
directory of ``sdcomplex reproduce``; see :mod:`sdcomplex.train._integrity`), and, for a training
run, the metrics lines (``metrics.jsonl``) and the checkpoints (``checkpoints/``).
:class:`RunDirectory` is the protocol they all follow, for every :class:`ConfigKind`:

* **create, or verify, or refuse**: a new or empty directory is created for a config; one
  that holds the same config (same hash) is reused (resumed); one that holds another config is
  refused, naming the differences, and anything else is refused, before anything is written
  (:meth:`RunDirectory.verify`, :meth:`RunDirectory.verify_record`);
* **metadata**: sealed JSON records, written once, atomically, and checked when read
  (:meth:`RunDirectory.write_record`, :meth:`RunDirectory.read_metadata`); records written
  before seals existed are read as they are;
* **contents**: the metrics lines and the epochs that have a checkpoint.

A kind's record holds the config's hash and the config itself, so a ``config.json`` edited
after the run started is refused, naming what changed, before anything is restored from
checkpoints written with the original config (:meth:`RunDirectory.read_config`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, NamedTuple

from sdcomplex._config_base import Config
from sdcomplex._io import atomic_write_text
from sdcomplex.data import DatasetInfo
from sdcomplex.train._checkpoint import CHECKPOINT_DIR, library_versions, list_checkpoints
from sdcomplex.train._config import TrainConfig
from sdcomplex.train._integrity import DamagedFile, read_sealed_json, write_sealed_json
from sdcomplex.train._metrics import METRICS_FILE, read_metrics

CONFIG_FILE = "config.json"
RUN_FILE = "run.json"
DISTILL_FILE = "distill.json"
"""The sealed record of a distillation run (:func:`sdcomplex.distill.distill`): a training run
whose supervision (the KD loss against the teacher's checkpoints) only ``distill`` rebuilds."""
_FILES = {
    "config_file": CONFIG_FILE,
    "run_file": RUN_FILE,
    "metrics_file": METRICS_FILE,
    "checkpoint_dir": CHECKPOINT_DIR,
}
_LISTED = 5
"""The differences a refusal lists (the rest are counted)."""
DATA_IDENTITY = (
    "name", "class_names", "input_shape", "n_train", "n_test", "mean", "std", "pixel_max",
    "checksum", "split", "provenance",
)  # fmt: skip
"""The :class:`~sdcomplex.data.DatasetInfo` fields a resumed run's data must keep."""


class ConfigKind(NamedTuple):
    """One kind of config a directory holds: its name in messages and the record of its hash.

    Configs are compared through the config base (:class:`~sdcomplex._config_base.Config`):
    the same kind and the same :meth:`~sdcomplex._config_base.Config.hash` is the same config,
    and a refusal lists :meth:`~sdcomplex._config_base.Config.differences`.

    Attributes:
        noun: what a directory of this config holds, in messages (``"run"``).
        record: what its record is called, in messages (``"run record"``).
        config_class: the config class (read with its ``from_dict``).
        record_file: the sealed record that holds the config's hash (``"run.json"``).
    """

    noun: str
    record: str
    config_class: type[Config]
    record_file: str


TRAIN_RUN = ConfigKind("run", "run record", TrainConfig, RUN_FILE)
"""The config kind of a training run (:class:`~sdcomplex.train.TrainConfig`; ``config.json``,
its hash in ``run.json``)."""


def _article(noun: str) -> str:
    return "an" if noun[:1] in "aeiou" else "a"


def _short(value: Any) -> str:
    """A value in a message: long tuples (class names, statistics) cut after three items."""
    if isinstance(value, tuple) and len(value) > 3:
        return f"({', '.join(repr(v) for v in value[:3])}, ... {len(value)} in all)"
    return repr(value)


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

    def is_empty(self) -> bool:
        """True if the directory does not exist or holds nothing but temporary files of a
        write of ``config.json`` killed before its rename."""
        if not self.path.exists():
            return True
        leftover = f".{CONFIG_FILE}."
        return self.path.is_dir() and all(p.name.startswith(leftover) for p in self.path.iterdir())

    def refuse_different(self, old: Config, new: Config, kind: ConfigKind) -> None:
        """Raises the refusal of a directory holding ``old`` when ``new`` is asked for, unless
        both have the same hash.

        Raises:
            ValueError: ``"<dir> holds a <noun> with a different config (<differences>); ..."``
                (the first five differences, then how many more).
        """
        if old.hash() != new.hash():
            lines = old.differences(new)
            more = f"; and {len(lines) - _LISTED} more" if len(lines) > _LISTED else ""
            raise ValueError(
                f"{self.path} holds {_article(kind.noun)} {kind.noun} with a different config "
                f"({'; '.join(lines[:_LISTED])}{more}); use another output directory (nothing "
                "was changed)"
            )

    def verify(self, config: Config, kind: ConfigKind = TRAIN_RUN) -> bool:
        """True if the directory holds ``config`` (in ``config.json``, checked against the hash
        of the kind's record); False if it is new or empty; raises if it holds anything else.

        Raises:
            ValueError: a different config (the differences are listed), an edited or damaged
                ``config.json`` or record, or a non-empty directory that is not of this kind.
        """
        if self.config_file.exists():
            self.refuse_different(self.read_config(kind), config, kind)
            return True
        if not self.is_empty():
            raise ValueError(
                f"{self.path} exists and is not an sdcomplex {kind.noun} directory (no "
                f"{CONFIG_FILE}); choose a new or empty output directory (nothing was changed)"
            )
        return False

    def verify_record(self, config: Config, kind: ConfigKind) -> dict[str, Any] | None:
        """The kind's sealed record, if it holds ``config`` (None: no such record yet).

        Raises:
            ValueError: the record holds a different config (the differences are listed) or
                no valid config; :class:`DamagedFile` when it changed after it was written.
        """
        record = self.read_metadata(kind.record_file)
        if record is None:
            return None
        try:
            old = kind.config_class.from_dict(record["config"])
        except (KeyError, TypeError, ValueError) as err:
            where = self.path / kind.record_file
            raise ValueError(f"{where} is not a valid {kind.record} ({err})") from None
        self.refuse_different(old, config, kind)
        return record

    def refuse_distillation(self) -> None:
        """Raises if the directory holds a distillation run (``distill.json``): trained on by
        itself, without its KD supervision, it would go on with the labels' cross-entropy.

        Raises:
            ValueError: naming the record and the command that resumes the run.
        """
        if (self.path / DISTILL_FILE).exists():
            raise ValueError(
                f"{self.path} holds a distillation run ({DISTILL_FILE}): resume it with "
                "`sdcomplex distill` (sdcomplex.distill.distill), which trains with its teacher; "
                "plain training would go on without it (nothing was changed)"
            )

    def create(self, config: Config) -> None:
        """Creates the directory and writes ``config.json`` (atomic)."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.config_file, config.to_json())

    def refuse_other_data(self, info: DatasetInfo) -> None:
        """Raises unless the data set described by ``info`` is the one ``run.json`` records
        (nothing to check before ``run.json`` is written): resumed on data files that changed
        since the run started, a run would go on with other examples, statistics and steps per
        epoch than its checkpoints were trained with, although its config is the same.

        Compared: :data:`DATA_IDENTITY` (the normalisation statistics to a relative 1e-9, the
        rounding of another NumPy); not the ``source`` path or the citation.

        Raises:
            ValueError: naming what differs; :class:`DamagedFile` for a damaged ``run.json``.
        """
        record = self.read_metadata(RUN_FILE)
        if record is None or "dataset" not in record:
            return
        recorded = self._recorded_dataset(record)
        lines = []
        for name in DATA_IDENTITY:
            old, new = getattr(recorded, name), getattr(info, name)
            if name in ("mean", "std"):
                same = len(old) == len(new) and all(
                    math.isclose(a, b, rel_tol=1e-9) for a, b in zip(old, new, strict=False)
                )
            else:
                same = tuple(old) == tuple(new) if isinstance(old, tuple) else old == new
            if not same:
                lines.append(f"{name}: {_short(old)} -> {_short(new)}")
        if lines:
            raise ValueError(
                f"{self.path} was trained on other data than {info.name} holds now "
                f"({'; '.join(lines[:_LISTED])}): its data files changed since the run started; "
                "restore them or use another output directory (nothing was changed)"
            )

    def version_changes(self) -> list[str]:
        """What differs between the library versions ``run.json`` records (those the run
        started with) and this process's, e.g. ``["jax 0.10.1 -> 0.10.2"]`` (``[]``: the same,
        or nothing recorded).

        Raises:
            DamagedFile: a damaged ``run.json``.
        """
        recorded = (self.read_metadata(RUN_FILE) or {}).get("versions")
        if not isinstance(recorded, dict):
            return []
        now = library_versions()
        return [
            f"{name} {recorded[name]} -> {now[name]}"
            for name in now
            if name in recorded and recorded[name] != now[name]
        ]

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

    def write_record(self, config: Config, kind: ConfigKind = TRAIN_RUN, **fields: Any) -> Path:
        """Writes the kind's record (``run.json`` of a training run): the config, its hash, the
        config class, the creation time, the library versions and ``fields``."""
        record = {
            "config": config.to_dict(),
            "config_hash": config.hash(),
            "config_class": f"{type(config).__module__}.{type(config).__qualname__}",
            "created": time.time(),
            "versions": library_versions(),
            **fields,
        }
        return self.write_metadata(record, kind.record_file)

    def read_config(self, kind: ConfigKind = TRAIN_RUN) -> Any:
        """The config in ``config.json``, checked against the hash the kind's record holds.

        Raises:
            ValueError: no ``config.json`` or not a valid config, or it does not match the
                recorded hash (the message lists what differs from the recorded config when the
                record holds it); :class:`DamagedFile` for a damaged record.
        """
        cfg_file, cls = self.config_file, kind.config_class
        if not cfg_file.is_file():
            raise ValueError(
                f"{self.path} is not an sdcomplex {kind.noun} directory (no {CONFIG_FILE})"
            )
        try:
            config = cls.from_dict(json.loads(cfg_file.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, ValueError, TypeError) as err:
            raise ValueError(f"{cfg_file} is not a valid config ({err}); not touching it") from None
        info = self.read_metadata(kind.record_file)
        if info is None or info.get("config_hash") == config.hash():
            return config
        recorded = info.get("config")
        diff = f"the recorded config is not in {kind.record_file}"
        if isinstance(recorded, dict):
            try:
                diff = "; ".join(cls.from_dict(recorded).differences(config))
            except (ValueError, TypeError) as err:
                where = self.path / kind.record_file
                raise DamagedFile(where, f"its config is invalid: {err}") from None
        raise ValueError(
            f"{cfg_file} was changed after the {kind.noun} started: it no longer matches the "
            f"config hash {info.get('config_hash')} recorded in {kind.record_file} ({diff}); "
            "restore it or use another output directory"
        )

    def dataset_info(self) -> DatasetInfo:
        """The data set the run trained on, as ``run.json`` records it (seal checked).

        Raises:
            ValueError: no ``run.json`` or no valid data set description in it;
                :class:`DamagedFile` for a damaged ``run.json``.
        """
        return self._recorded_dataset(self.read_metadata(RUN_FILE) or {})

    def _recorded_dataset(self, record: dict[str, Any]) -> DatasetInfo:
        """The data set description of the ``run.json`` record ``record``."""
        try:
            return DatasetInfo.from_dict(record["dataset"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{self.run_file} has no valid data set description ({err})") from None

    # --- contents ------------------------------------------------------------------------------

    def checkpoints(self) -> list[int]:
        """Epochs with a complete checkpoint, increasing (``[]`` without ``checkpoints/``)."""
        return list_checkpoints(self.path) if self.checkpoint_dir.is_dir() else []

    def metrics(self) -> list[dict[str, Any]]:
        """Every line of ``metrics.jsonl`` (see :func:`~sdcomplex.train.read_metrics`)."""
        return read_metrics(self.path)
