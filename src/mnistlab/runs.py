"""Run directories: write them atomically, read them back, list them.

A run directory holds `run.json` (status, model, times), `config.json`, `history.csv` and
`history.jsonl`, `metrics.json`, the model under `model/`, and PNG figures. It is written in
a hidden staging directory beside its final place and renamed into place at the end, so a
run directory is either complete or absent, and an existing one is never half-overwritten.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistlab.config import config_from_dict
from mnistlab.errors import ConfigError, RunError
from mnistlab.fileio import publish_mode, write_text_atomic

RUN_FILE = "run.json"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
HISTORY_CSV = "history.csv"
HISTORY_JSONL = "history.jsonl"
MODEL_DIR = "model"
HISTORY_COLUMNS = ("step", "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy")


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically, indented, ending with a newline."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def read_json(path: Path) -> Any:
    """Read a JSON file, turning a missing or broken file into a `RunError`."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path} is missing") from None
    except (OSError, ValueError) as error:
        raise RunError(f"{path} cannot be read: {error}") from None


def history_to_csv(history: list[dict]) -> str:
    """History records as CSV text with a fixed column order (empty where not recorded)."""
    columns = list(HISTORY_COLUMNS)
    for record in history:
        columns += [key for key in record if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return buffer.getvalue()


def write_history(directory: Path, history: list[dict]) -> None:
    """Write the records as `history.csv` and `history.jsonl`."""
    write_text_atomic(directory / HISTORY_CSV, history_to_csv(history))
    write_text_atomic(directory / HISTORY_JSONL,
                      "".join(json.dumps(record) + "\n" for record in history))


def read_history(directory: Path) -> list[dict]:
    """Read the records of `history.jsonl`."""
    path = Path(directory) / HISTORY_JSONL
    if not path.exists():
        return []
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as error:
        raise RunError(f"{path} cannot be read: {error}") from None


def check_run_target(run_dir: Path, overwrite: bool, marker: str | None = None) -> None:
    """Refuse an existing directory unless `overwrite`; refuse a non-run even then.

    `marker` names the file that makes a directory replaceable (default: a run's files).
    """
    run_dir = Path(run_dir)
    if run_dir.exists():
        if not overwrite:
            raise RunError(f"{run_dir} already exists (use --overwrite to replace it)")
        recognised = (run_dir / marker).is_file() if marker else is_run(run_dir)
        if not run_dir.is_dir() or (any(run_dir.iterdir()) and not recognised):
            raise RunError(f"{run_dir} exists and is not a run directory; not replacing it")


class StagedRun:
    """A run directory under construction, renamed into its final place by `commit`."""

    def __init__(self, run_dir: Path, overwrite: bool = False, marker: str | None = None):
        self.final = Path(run_dir)
        self.overwrite = overwrite
        self.marker = marker
        check_run_target(self.final, overwrite, marker)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(dir=self.final.parent, prefix=f".{self.final.name}."))
        publish_mode(self.path, directory=True)

    def commit(self) -> Path:
        """Move the staged directory to its final place, replacing an old run if allowed."""
        check_run_target(self.final, self.overwrite, self.marker)
        old = None
        if self.final.exists():
            old = Path(tempfile.mkdtemp(dir=self.final.parent, prefix=f".{self.final.name}.old."))
            os.replace(self.final, old / "run")
        os.replace(self.path, self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.final

    def discard(self) -> None:
        """Remove the staged directory."""
        shutil.rmtree(self.path, ignore_errors=True)


def is_run(directory: Path) -> bool:
    """Whether `directory` looks like a run directory."""
    directory = Path(directory)
    return (directory / RUN_FILE).is_file() and (directory / CONFIG_FILE).is_file()


@dataclass
class Run:
    """A run directory read back: its status, configuration, metrics and history."""

    path: Path
    info: dict
    config: dict
    metrics: dict
    history: list[dict]

    @property
    def class_names(self) -> list[str]:
        """The names of the classes the run was trained on (digits 0-9 when not recorded)."""
        names = self.config.get("data", {}).get("class_names") if isinstance(
            self.config.get("data"), dict) else None
        if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
            return names
        return [str(k) for k in range(10)]

    @property
    def status(self) -> str:
        """'completed', 'failed', 'running' (a run interrupted while writing) or 'unknown'."""
        return self.info.get("status", "unknown")


def load_run(run_dir: Path) -> Run:
    """Read a run directory; `RunError` if it is not one."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir} is not a directory")
    if not is_run(run_dir):
        raise RunError(f"{run_dir} is not a run directory (no {RUN_FILE} and {CONFIG_FILE})")
    info = read_json(run_dir / RUN_FILE)
    config = read_json(run_dir / CONFIG_FILE)
    metrics_path = run_dir / METRICS_FILE
    metrics = read_json(metrics_path) if metrics_path.exists() else {}
    for name, data in ((RUN_FILE, info), (CONFIG_FILE, config), (METRICS_FILE, metrics)):
        if not isinstance(data, dict):
            raise RunError(f"{run_dir / name} does not hold a JSON object")
    if "model" not in info:
        raise RunError(f"{run_dir / RUN_FILE} does not name its model")
    return Run(run_dir, info, config, metrics, read_history(run_dir))


def load_model(run_dir: Path) -> Any:
    """Reload a completed run's fitted model without retraining."""
    from mnistlab.models import get_model_class

    run = load_run(run_dir)
    if run.status != "completed":
        raise RunError(f"{run_dir} is a {run.status} run and has no model to load")
    model_dir = Path(run_dir) / MODEL_DIR
    if not model_dir.is_dir():
        raise RunError(f"{model_dir} is missing")
    try:
        return get_model_class(run.info["model"]).load(model_dir)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RunError(f"the model in {model_dir} cannot be loaded: {error}") from None


def find_runs(root: Path) -> list[Run]:
    """Every run directory at `root` or below it (sorted by path); unreadable ones skipped."""
    root = Path(root)
    if not root.is_dir():
        raise RunError(f"{root} is not a directory")
    found = []
    for run_file in sorted(root.rglob(RUN_FILE)):
        if any(part.startswith(".") for part in run_file.relative_to(root).parts):
            continue  # a staging directory or an old run being replaced
        try:
            run = load_run(run_file.parent)
            config_from_dict({key: value for key, value in run.config.items()
                              if key not in ("versions", "data")})
        except (RunError, ConfigError):
            continue
        found.append(run)
    return found


@dataclass
class DamagedRun:
    """A directory that holds a run's files but cannot be read as a run, and why."""

    path: Path
    problem: str

    @property
    def status(self) -> str:
        """Always 'damaged'."""
        return "damaged"


def scan_runs(root: Path) -> list[Run | DamagedRun]:
    """Every run directory at `root` or below it, sorted by path, as `find_runs` finds them,
    but with the unreadable ones kept as `DamagedRun`s saying what is wrong. A missing `root`
    holds no runs; a `root` that is not a directory is a `RunError`."""
    root = Path(root)
    if not root.exists():
        return []
    if not root.is_dir():
        raise RunError(f"{root} is not a directory")
    found: list[Run | DamagedRun] = []
    for run_file in sorted(root.rglob(RUN_FILE)):
        if any(part.startswith(".") for part in run_file.relative_to(root).parts):
            continue  # a staging directory or an old run being replaced
        try:
            run = load_run(run_file.parent)
            config_from_dict({key: value for key, value in run.config.items()
                              if key not in ("versions", "data")})
        except (RunError, ConfigError) as error:
            found.append(DamagedRun(run_file.parent, str(error)))
            continue
        found.append(run)
    return found
