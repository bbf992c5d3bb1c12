"""Run directories: write them atomically, read them back, list them.

A run directory holds `run.json` (status, model, times), `config.json`, `history.csv` and
`history.jsonl`, `metrics.json`, the model under `model/`, and PNG figures. It is written in
a hidden staging directory beside its final place and renamed into place at the end, so a
run directory is either complete or absent, and an existing one is never half-overwritten.

A run directory is also input: people copy, edit and damage it. Every record is read through
one schema check (`mnistlab.records`) and refused in one line naming the file and the field.
A directory mnistlab writes whole carries a marker (`.mnistlab`); `--overwrite` replaces
only a marked directory that holds nothing but what mnistlab writes there.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mnistlab.config import config_from_dict
from mnistlab.errors import ConfigError, RunError
from mnistlab.fileio import (
    MARKER_FILE,
    is_temporary_name,
    publish_mode,
    read_marker,
    write_marker,
    write_text_atomic,
)
from mnistlab.records import (
    CONFIG,
    HISTORY_RECORD,
    MAX_HISTORY_BYTES,
    METRICS,
    RUN_INFO,
    check_record,
    parse_json,
    read_record,
    read_record_text,
)

RUN_FILE = "run.json"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
HISTORY_CSV = "history.csv"
HISTORY_JSONL = "history.jsonl"
MODEL_DIR = "model"
HISTORY_COLUMNS = ("step", "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy")
# What a run directory may hold: mnistlab's files, and folders it writes whole (the model,
# the checkpoints of a run in progress, TensorBoard's events).
RUN_FILES = frozenset({RUN_FILE, CONFIG_FILE, METRICS_FILE, HISTORY_CSV, HISTORY_JSONL,
                       "curves.png", "predictions.png", "confusion_matrix.png",
                       "misclassified.png", "weights.png"})
RUN_FOLDERS = frozenset({MODEL_DIR, "checkpoints", "tensorboard"})
# A reproduction directory: its report, what it was asked to do (for --resume), and run
# directories (any name).
REPRODUCTION_FILES = frozenset({"summary.json", "report.html", "report.md", "reproduce.json"})
REPORT_FIGURES = "figures"  # the report's figures (report.REPORT_FIGURES_DIR)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically, indented, ending with a newline."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def read_json(path: Path) -> Any:
    """Read a JSON file, turning a missing, oversized or broken file into a `RunError`."""
    return parse_json(read_record_text(Path(path)), path)


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
    """Read the records of `history.jsonl`, each checked (`records.HISTORY_RECORD`); a
    `RunError` names the file and line of the first bad one."""
    path = Path(directory) / HISTORY_JSONL
    if not path.exists():
        return []
    try:
        text = read_record_text(path, MAX_HISTORY_BYTES).decode("utf-8")
    except UnicodeDecodeError as error:
        raise RunError(f"{path} cannot be read: {error}") from None
    history = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            source = f"{path}, line {number}"
            history.append(check_record(HISTORY_RECORD, parse_json(line, source), source))
    return history


def _kind(marker: str | None) -> str:
    """The kind of directory a target is: a run, or (marked by its summary) a reproduction."""
    return "run" if marker is None else "reproduction"


def _foreign_entry(directory: Path, kind: str) -> str | None:
    """The first entry of `directory` (a path relative to it) that mnistlab does not write
    in a directory of `kind`, or None when it holds only mnistlab's."""
    for entry in sorted(directory.iterdir()):
        name = entry.name
        if name == MARKER_FILE or is_temporary_name(name):
            continue
        if kind == "run":
            known = (name in RUN_FILES and entry.is_file() and not entry.is_symlink()) or (
                name in RUN_FOLDERS and entry.is_dir() and not entry.is_symlink())
        elif name == REPORT_FIGURES and entry.is_dir() and not entry.is_symlink():
            # the report's own figures: PNG files only
            known = all(item.suffix == ".png" and item.is_file() for item in entry.iterdir())
        elif entry.is_dir() and not entry.is_symlink():  # a reproduction's run directory
            inner = _foreign_entry(entry, "run")
            if inner is not None:
                return f"{name}/{inner}"
            known = True
        else:
            known = name in REPRODUCTION_FILES and entry.is_file() and not entry.is_symlink()
        if not known:
            return name
    return None


def check_run_target(run_dir: Path, overwrite: bool, marker: str | None = None) -> None:
    """Refuse an existing `run_dir` unless `overwrite`; even then, refuse anything that
    mnistlab did not provably write.

    Replaceable are an empty directory, and a directory with mnistlab's marker (see
    `mnistlab.fileio.write_marker`) of the same kind that holds only what mnistlab writes
    there: a user's file beside a run's (a thesis.tex) is never deleted. `marker` names the
    file that marks the kind of output other than a run (`summary.json`: a reproduction).
    """
    run_dir = Path(run_dir)
    if not run_dir.exists() and not run_dir.is_symlink():
        return
    if not overwrite:
        raise RunError(f"{run_dir} already exists (use --overwrite to replace it)")
    if run_dir.is_symlink() or not run_dir.is_dir():
        raise RunError(f"{run_dir} exists and is not a directory; not replacing it")
    if not any(run_dir.iterdir()):
        return  # nothing to lose
    kind = _kind(marker)
    found = read_marker(run_dir)
    if found is None:
        raise RunError(f"{run_dir} is not a {kind} directory mnistlab wrote (it has no "
                       f"{MARKER_FILE} marker); not replacing it")
    if found["kind"] != kind:
        raise RunError(f"{run_dir} was written by mnistlab as a {found['kind']}, not a "
                       f"{kind}; not replacing it")
    foreign = _foreign_entry(run_dir, kind)
    if foreign is not None:
        raise RunError(f"{run_dir} holds {foreign}, which mnistlab did not write; not "
                       "replacing it")


def unique_run_dir(label: str, root: Path = Path("runs")) -> Path:
    """`root/<time>-<label>-<6 random hex digits>`, a name no other directory has.

    Directories started in the same second, by other processes or containers sharing
    `root`, draw other random digits (from the system, never from the seeded generators); a
    name that exists already is drawn again. Were two ever to draw the same name, the
    second would be refused when its directory is created, never mixed with the first.
    """
    import secrets

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    while True:
        candidate = Path(root) / f"{stamp}-{label}-{secrets.token_hex(3)}"
        if not (candidate.exists() or candidate.is_symlink()):
            return candidate


def create_run_dir(run_dir: Path, overwrite: bool = False, marker: str | None = None) -> Path:
    """Create a run directory (or, with `marker`, a reproduction directory) in place,
    marked as mnistlab's, for output written where it stands rather than staged by
    `StagedRun`; an old one is removed first when `overwrite` allows it
    (`check_run_target`). The creation is atomic: if another process creates the directory
    first, this one gets `RunError`, never a shared directory.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() or run_dir.is_symlink():
        check_run_target(run_dir, overwrite, marker)
        shutil.rmtree(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        run_dir.mkdir()
    except FileExistsError:
        raise RunError(f"{run_dir} was just created by another process; not sharing "
                       "it") from None
    publish_mode(run_dir, directory=True)
    write_marker(run_dir, _kind(marker))
    return run_dir


class StagedRun:
    """A run directory under construction, renamed into its final place by `commit`.

    The staging directory is marked as mnistlab's from the start, so the directory it
    becomes can be replaced by a later `--overwrite`.
    """

    def __init__(self, run_dir: Path, overwrite: bool = False, marker: str | None = None):
        self.final = Path(run_dir)
        self.overwrite = overwrite
        self.marker = marker
        check_run_target(self.final, overwrite, marker)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(dir=self.final.parent, prefix=f".{self.final.name}."))
        try:
            publish_mode(self.path, directory=True)
            write_marker(self.path, _kind(marker))
        except BaseException:
            shutil.rmtree(self.path, ignore_errors=True)
            raise

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
        data = self.config.get("data")
        names = data.get("class_names") if isinstance(data, dict) else None
        if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
            return names
        return [str(k) for k in range(10)]

    @property
    def status(self) -> str:
        """'completed', 'failed', 'running' (being trained, or killed while it was) or
        'interrupted' (stopped by a signal)."""
        return self.info.get("status", "unknown")


def load_run(run_dir: Path) -> Run:
    """Read a run directory, every record checked against its schema (`mnistlab.records`);
    `RunError` naming the file and the field if it is not a run or a record is damaged."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir} is not a directory")
    if not is_run(run_dir):
        raise RunError(f"{run_dir} is not a run directory (no {RUN_FILE} and {CONFIG_FILE})")
    info = read_record(run_dir / RUN_FILE, RUN_INFO)
    config = read_record(run_dir / CONFIG_FILE, CONFIG)
    if info["model"] != config["model"]:
        raise RunError(f"{run_dir / RUN_FILE}: model is {info['model']!r}, but {CONFIG_FILE} "
                       f"says {config['model']!r}")
    run = Run(run_dir, info, config, {}, [])
    # The metrics hold one row and one entry per class the run was trained on.
    context = {"classes": len(run.class_names)}
    metrics_path = run_dir / METRICS_FILE
    if metrics_path.exists() or metrics_path.is_symlink():
        run.metrics = read_record(metrics_path, METRICS, context)
    run.history = read_history(run_dir)
    return run


def _one_line(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def load_model(run_dir: Path) -> Any:
    """Reload a completed run's fitted model without retraining; `RunError` in one line when
    the model's files are missing or damaged, or it does not predict the run's classes."""
    from mnistlab.models import get_model_class

    run = load_run(run_dir)
    if run.status != "completed":
        raise RunError(f"{run_dir} is a{'n' if run.status[0] in 'aeiou' else ''} "
                       f"{run.status} run and has no model to load")
    model_dir = Path(run_dir) / MODEL_DIR
    if not model_dir.is_dir():
        raise RunError(f"{model_dir} is missing")
    try:
        model = get_model_class(run.info["model"]).load(model_dir)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError,
            RuntimeError, RecursionError, OverflowError, MemoryError) as error:
        # The loaders name what they check; the libraries below them raise these on a
        # damaged file they were handed (h5py a RuntimeError on damaged HDF5 structures).
        raise RunError(f"the model in {model_dir} cannot be loaded: "
                       f"{_one_line(error)}") from None
    classes = len(getattr(model, "classes_", ()))
    if classes != len(run.class_names):
        raise RunError(f"the model in {model_dir} predicts {classes} classes, but "
                       f"{run_dir / CONFIG_FILE} names {len(run.class_names)}")
    check_model_works(model, model_dir)
    return model


def check_model_works(model: Any, source: Path) -> None:
    """Refuse a loaded model that does not give finite probabilities for a blank image.

    A weights file can be whole and of the right shapes yet hold NaN or infinite values
    (damaged on disk, or from a diverged run); such a model would answer NaN for every
    image. Any NaN or infinite weight on the path to the output makes the blank image's
    probabilities NaN (0 x NaN is NaN), so one prediction finds it.
    """
    import numpy as np

    blank = np.zeros((1, *model.image_shape_), np.uint8)
    try:
        probabilities = np.asarray(model.predict_proba(blank), np.float64)
    except (ValueError, TypeError, IndexError) as error:
        raise RunError(f"the model in {source} cannot be used: {_one_line(error)}") from None
    if probabilities.shape != (1, len(model.classes_)) or not np.isfinite(probabilities).all():
        raise RunError(f"the model in {source} gives no finite probabilities: its weights "
                       "are damaged")


def find_runs(root: Path) -> list[Run]:
    """Every run directory at `root` or below it (sorted by path); damaged ones are
    skipped (`scan_runs` keeps them, with the reason)."""
    root = Path(root)
    if not root.is_dir():
        raise RunError(f"{root} is not a directory")
    return [run for run in scan_runs(root) if isinstance(run, Run)]


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
        except OSError as error:  # a folder or file that cannot be read (permissions)
            found.append(DamagedRun(run_file.parent, _one_line(error)))
            continue
        found.append(run)
    return found
