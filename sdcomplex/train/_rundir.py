"""The records of a run directory: ``config.json`` (the resolved config) and ``run.json``.

``run.json`` is written once, sealed with its own sha256 (see
:mod:`sdcomplex.train._integrity`), and records the config's hash and the config itself, so a
``config.json`` edited after training is refused, naming what changed, before anything is
restored from checkpoints written with the original config.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from sdcomplex.train._checkpoint import library_versions
from sdcomplex.train._config import TrainConfig, config_differences, config_hash
from sdcomplex.train._integrity import DamagedFile, read_sealed_json, write_sealed_json

CONFIG_FILE = "config.json"
RUN_FILE = "run.json"


def read_run_info(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``run.json`` (seal checked); ``None`` if there is none yet.

    Raises:
        DamagedFile: ``run.json`` is not valid JSON or does not match its seal.
    """
    path = Path(run_dir) / RUN_FILE
    if not path.exists():
        return None
    return read_sealed_json(path)


def write_run_info(run_dir: Path, config: TrainConfig, **fields: Any) -> None:
    """Writes ``run.json`` (sealed, atomic): the config, its hash, the config class, the
    creation time, the library versions and ``fields``."""
    write_sealed_json(
        run_dir / RUN_FILE,
        {
            "config": config.to_dict(),
            "config_hash": config_hash(config),
            "config_class": f"{type(config).__module__}.{type(config).__qualname__}",
            "created": time.time(),
            "versions": library_versions(),
            **fields,
        },
    )


def read_run_config(run_dir: str | Path, cls: type[TrainConfig] = TrainConfig) -> TrainConfig:
    """The config of a run directory, checked against the hash ``run.json`` recorded.

    Raises:
        ValueError: ``config.json`` is missing or not a valid config, or it does not match the
            recorded hash (the message lists what differs from the recorded config when
            ``run.json`` holds it); :class:`DamagedFile` for a damaged ``run.json``.
    """
    run_dir = Path(run_dir)
    cfg_file = run_dir / CONFIG_FILE
    try:
        config = cls.from_dict(json.loads(cfg_file.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ValueError(f"{run_dir} has no {CONFIG_FILE}") from None
    except (UnicodeDecodeError, ValueError, TypeError) as err:
        raise ValueError(f"{cfg_file} is not a valid config ({err}); not touching it") from None
    info = read_run_info(run_dir)
    if info is None or info.get("config_hash") == config_hash(config):
        return config
    recorded = info.get("config")
    diff = "the recorded config is not in run.json"
    if isinstance(recorded, dict):
        try:
            diff = "; ".join(config_differences(cls.from_dict(recorded), config))
        except (ValueError, TypeError) as err:
            raise DamagedFile(run_dir / RUN_FILE, f"its config is invalid: {err}") from None
    raise ValueError(
        f"{cfg_file} was changed after the run started: it no longer matches the config hash "
        f"{info.get('config_hash')} recorded in {RUN_FILE} ({diff}); restore it or train into "
        "a new directory"
    )


def check_run_dir(run_dir: Path, config: TrainConfig) -> bool:
    """True if ``run_dir`` holds a run of the same config; raises if it holds anything else.

    Raises:
        ValueError: a different config (the differences are listed), an edited or damaged
            ``config.json`` / ``run.json``, or a non-empty directory that is not a run.
    """
    if (run_dir / CONFIG_FILE).exists():
        old = read_run_config(run_dir, type(config))
        if config_hash(old) != config_hash(config):
            diff = "; ".join(config_differences(old, config))
            raise ValueError(
                f"{run_dir} holds a run with a different config ({diff}); use another output "
                "directory (nothing was changed)"
            )
        return True
    leftover = f".{CONFIG_FILE}."  # a temporary file of a write killed before its rename
    if run_dir.exists() and (
        not run_dir.is_dir() or any(not p.name.startswith(leftover) for p in run_dir.iterdir())
    ):
        raise ValueError(
            f"{run_dir} exists and is not an sdcomplex run directory (no {CONFIG_FILE}); "
            "choose a new or empty output directory (nothing was changed)"
        )
    return False
