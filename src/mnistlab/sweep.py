"""Sweeps and many runs on Ray Tune: every trial is an ordinary mnistlab run.

`sweep` trains one model over a grid of option values and/or random draws, with several
seeds, each trial in its own run directory under the sweep's directory (through
`train_and_evaluate`, so each is a run like any other: `evaluate`, `predict`, `compare` and
`ensemble` take it). The trials run on Ray Tune: on a local Ray instance started for the
sweep, or on an existing cluster (`address`). `run_many` is the engine underneath: it trains
a list of (configuration, run directory) pairs on Ray, and is what `reproduce --parallel`
uses.

How it is built, and why:

- The trial list is decided up front, deterministically from the sweep's seed (random
  values are drawn with Tune's own distributions, `tune.uniform`/`tune.loguniform`/
  `tune.randint`, from a seeded generator) and saved as `sweep-plan.json` before anything
  trains. Tune then runs the pending trials (`tune.grid_search` over them). Resuming an
  interrupted sweep reads the plan, keeps every trial whose run directory is finished
  (completed or failed), continues interrupted ones from their checkpoints, and trains the
  rest: nothing finished is trained twice.
- Each trial sets TensorFlow's own thread pools to its CPU share before TensorFlow starts:
  Ray sets `OMP_NUM_THREADS`, which TensorFlow does not read, so trials would otherwise
  each use every core (ray#7092).
- A trial that fails (a diverging loss, an exception, a process that dies) is recorded as
  failed, with its error in one line; the sweep goes on.
- The best run is chosen by validation accuracy (a split of the training images, 0.1 unless
  the user says otherwise), never by the test set; the report says so.
- Ray writes nothing in the user's home: its session files (logs, sockets) and Tune's
  experiment state go to a temporary directory removed afterwards, and the local instance
  gets a fresh authentication token in its environment instead of `~/.ray/auth_token`.
- Fits pay for tracing and XLA compiling each time a new process starts. Trials use
  TensorFlow's persistent XLA compilation cache (`compile_cache_dir()`, under the user cache
  directory); see `CompileCache` for how it is made safe to share between processes.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import html
import io
import itertools
import json
import math
import os
import platform
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mnistlab.errors import ConfigError, MnistlabError, OptionError, RunError

PLAN_FILE = "sweep-plan.json"
RESULTS_JSON = "sweep.json"
RESULTS_CSV = "sweep.csv"
REPORT_HTML = "sweep.html"
SWEEP_FILES = frozenset({PLAN_FILE, RESULTS_JSON, RESULTS_CSV, REPORT_HTML})
PLAN_FORMAT = "mnistlab-sweep-plan"
PLAN_VERSION = 1
MARKER_KIND = "sweep"
INSTALL_HINT = "pip install 'mnistlab[sweep]'"
# Selection needs held-out images; this share of the training images when none is given.
DEFAULT_VALIDATION_SPLIT = 0.1
# A random range spanning at least this ratio is drawn log-uniformly.
LOG_RANGE_RATIO = 100
MAX_TRIALS = 10_000
# Random values are rounded to this many significant digits, so tables and names read well.
SIGNIFICANT_DIGITS = 4
# Statuses of a finished trial: neither is trained again by a resumed sweep.
FINISHED = ("completed", "failed")
# Ray's environment for a sweep (set only where the user has not set them): no usage
# reports, no Tune result files or TensorBoard logs of its own (the run directories are the
# record), the old quiet console output, trials that stay in the working directory they were
# started in, and Ctrl-C that reaches mnistlab instead of Tune's own handler.
RAY_ENVIRONMENT = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "RAY_AIR_NEW_OUTPUT": "0",
    "RAY_CHDIR_TO_TRIAL_DIR": "0",
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
}
# What the trials' processes need in their environment, on any node of a cluster.
WORKER_ENVIRONMENT = ("RAY_CHDIR_TO_TRIAL_DIR", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS",
                      "TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY")
# The shared compilation cache is kept under this size, its oldest entries removed first
# (an entry is about 0.4 MB for softmax; every distinct configuration compiles its own).
MAX_COMPILE_CACHE_BYTES = 256 * 2 ** 20
# The object store of a local instance: room for the datasets, and no more by default.
MIN_OBJECT_STORE_BYTES = 256 * 2 ** 20


class RayNotInstalledError(MnistlabError):
    """Ray (the `sweep` extra) is not installed."""


def import_ray():
    """Ray and Ray Tune, or `RayNotInstalledError` saying in one line how to install them."""
    try:
        import ray
        from ray import tune  # noqa: F401 - Tune is the part sweeps need
    except ImportError:
        raise RayNotInstalledError(f"sweeps run on Ray Tune, which is not installed: "
                                   f"{INSTALL_HINT}") from None
    return ray


# ------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class Trial:
    """One planned run: its name (its run directory under the sweep), the point of the
    search space it belongs to, the swept options' values and the seed."""

    name: str
    point: int
    options: dict[str, Any]
    seed: int

    def describe(self) -> str:
        """'learning_rate=0.01, batch_size=300' (the swept options only)."""
        return ", ".join(f"{name}={_format_value(value)}" for name, value in
                         self.options.items())


@dataclass
class SweepPlan:
    """What a sweep was asked to do (`request`) and the trials that does, decided up front."""

    request: dict[str, Any]
    trials: list[Trial]

    def config(self, trial: Trial):
        """The `TrainConfig` of one trial."""
        from mnistlab.config import make_config

        request = self.request
        return make_config(request["model"], preset=request["preset"],
                           model_options=trial.options, dataset=request["dataset"],
                           seed=trial.seed, validation_split=request["validation_split"],
                           limit_train=request["limit_train"],
                           limit_test=request["limit_test"])

    @property
    def swept(self) -> list[str]:
        """The swept options, grid first, in the order they were given."""
        return list(self.request["grid"]) + list(self.request["random"])

    def to_dict(self) -> dict:
        """The plan as JSON-ready data (`sweep-plan.json`)."""
        return {"format": PLAN_FORMAT, "format_version": PLAN_VERSION,
                "request": self.request,
                "trials": [dataclasses.asdict(trial) for trial in self.trials]}

    @classmethod
    def from_dict(cls, data: Any, source: Path) -> SweepPlan:
        """A plan read back from `sweep-plan.json`; `RunError` naming `source` if damaged."""
        try:
            if data["format"] != PLAN_FORMAT or data["format_version"] != PLAN_VERSION:
                raise ValueError("not a sweep plan of this version")
            request = data["request"]
            for key in ("model", "preset", "grid", "random", "trials", "seeds", "seed",
                        "dataset", "validation_split", "limit_train", "limit_test"):
                request[key]  # noqa: B018 - a missing key is damage
            trials = [Trial(str(item["name"]), int(item["point"]), dict(item["options"]),
                            int(item["seed"])) for item in data["trials"]]
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise RunError(f"{source} is damaged: {error}") from None
        names = [trial.name for trial in trials]
        if not trials or len(set(names)) != len(names) or any(
                Path(name).name != name or name.startswith(".") for name in names):
            raise RunError(f"{source} is damaged: bad trial names")
        return cls(request, trials)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "none"
    return str(value).lower() if isinstance(value, bool) else str(value)


def resolve_option_name(model: str, text: str) -> str:
    """The option of `model` that `text` names: the option itself (`learning_rate`), with
    dashes (`learning-rate`), or its command line flag (`trees`, `--trees`)."""
    from mnistlab.models import get_model_class

    options = get_model_class(model).options
    wanted = text.strip()
    for name, option in options.items():
        if wanted in (name, name.replace("_", "-"), option.flag_name(name),
                      option.flag_name(name).lstrip("-")):
            return name
    known = ", ".join(name.replace("_", "-") for name, option in options.items() if option.cli)
    raise ConfigError(f"model {model!r} has no option {text!r} (its options: {known})")


def _round(value: float) -> float:
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, SIGNIFICANT_DIGITS - 1 - int(math.floor(math.log10(abs(value)))))


def random_domain(option, low: float, high: float):
    """Tune's distribution for a random range of `option`: log-uniform when the range is
    positive and spans a factor of `LOG_RANGE_RATIO` or more, else uniform; integers for an
    integer option (both ends included)."""
    from ray import tune

    log = low > 0 and high / low >= LOG_RANGE_RATIO
    if type(option.constraint).__name__ == "Integer":
        return (tune.lograndint if log else tune.randint)(int(low), int(high) + 1)
    return (tune.loguniform if log else tune.uniform)(low, high)


def _check_range(model: str, name: str, option, low: Any, high: Any) -> tuple[float, float]:
    kind = type(option.constraint).__name__
    if kind not in ("Integer", "Real"):
        raise ConfigError(f"{name} is not a number; sweep it with a grid instead of a "
                          "random range")
    for end in (low, high):
        if isinstance(end, bool) or not isinstance(end, (int, float)) \
                or not math.isfinite(end):
            raise ConfigError(f"the random range of {name} needs two numbers, got "
                              f"{low!r} and {high!r}")
    if kind == "Integer" and (low != int(low) or high != int(high)):
        raise ConfigError(f"{name} is a whole number; its random range needs whole ends, "
                          f"got {low!r}:{high!r}")
    if not low < high:
        raise ConfigError(f"the random range of {name} must go from low to high, got "
                          f"{low!r}:{high!r}")
    for end in (low, high):
        value = int(end) if kind == "Integer" else float(end)
        problem = option.problem(value)
        if problem is not None:
            raise OptionError(name, f"{problem} (the random range's end {end!r})")
    return (int(low), int(high)) if kind == "Integer" else (float(low), float(high))


def make_plan(model: str | None, *, preset: str | None = None,
              grid: Mapping[str, Sequence[Any]] | None = None,
              random: Mapping[str, tuple[float, float]] | None = None,
              trials: int | None = None, seeds: int = 1, seed: int = 0,
              dataset: str = "mnist", validation_split: float | None = None,
              limit_train: int | None = None, limit_test: int | None = None) -> SweepPlan:
    """Decide a sweep's trials, deterministically from `seed`, and check every trial's
    configuration with the model's own option table (`ConfigError`/`OptionError` naming
    the first bad value). Needs Ray (random values are drawn with Tune's distributions).

    The points of the search space are the grid's combinations, each with `trials` random
    draws when `random` is given (as Tune's `num_samples` repeats a grid); every point is
    trained with the seeds `seed` to `seed + seeds - 1`.
    """
    import numpy as np

    from mnistlab.config import PRESETS, TRAINABLE_MODELS
    from mnistlab.experiment import resolve_dataset_name
    from mnistlab.models import get_model_class, unknown_name_message

    if model is None:
        if preset is None:
            raise ConfigError("name a model or a preset to sweep")
        if preset not in PRESETS:
            raise ConfigError(unknown_name_message("preset", preset, PRESETS))
        model = PRESETS[preset].model
    if model not in TRAINABLE_MODELS:
        raise ConfigError(unknown_name_message("model to sweep", model, TRAINABLE_MODELS))
    grid, random = dict(grid or {}), dict(random or {})
    for what, count in (("seeds", seeds), ("trials", trials)):
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)
                                  or not 1 <= count <= MAX_TRIALS):
            raise ConfigError(f"{what} must be a whole number from 1 to {MAX_TRIALS:,}, "
                              f"got {count!r}")
    if random and trials is None:
        raise ConfigError("a random range needs a number of trials (how many random draws)")
    if trials is not None and not random:
        raise ConfigError("trials counts random draws: give a random range too")
    if validation_split is None:
        validation_split = DEFAULT_VALIDATION_SPLIT
    if isinstance(validation_split, (int, float)) and not isinstance(validation_split, bool) \
            and validation_split == 0:
        raise ConfigError("a sweep chooses its best run on held-out training images: the "
                          "validation split must be above 0 (it is 0.1 unless given)")
    options = get_model_class(model).options
    grid_values: dict[str, list[Any]] = {}
    for text, values in grid.items():
        name = resolve_option_name(model, text)
        if name in grid_values:
            raise ConfigError(f"{name} is given twice")
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        if not values:
            raise ConfigError(f"the grid of {name} has no values")
        if len({json.dumps(value) for value in values}) != len(values):
            raise ConfigError(f"the grid of {name} repeats a value")
        for value in values:
            problem = options[name].problem(value)
            if problem is not None:
                raise OptionError(name, problem if "got" in problem
                                  else f"{problem}, got {value!r}")
        grid_values[name] = values
    ranges: dict[str, tuple[float, float]] = {}
    for text, bounds in random.items():
        name = resolve_option_name(model, text)
        if name in grid_values or name in ranges:
            raise ConfigError(f"{name} is given twice")
        if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
            raise ConfigError(f"the random range of {name} needs two numbers, low and high")
        ranges[name] = _check_range(model, name, options[name], *bounds)
    if not grid_values and not ranges and seeds == 1:
        raise ConfigError("nothing to sweep: give a grid, a random range, or more than one "
                          "seed")
    draws = trials or 1
    combinations = list(itertools.product(*grid_values.values())) or [()]
    total = len(combinations) * draws * seeds
    if total > MAX_TRIALS:
        raise ConfigError(f"the sweep has {total:,} trials, more than {MAX_TRIALS:,}")
    request = {"model": model, "preset": preset, "grid": grid_values,
               "random": {name: list(bounds) for name, bounds in ranges.items()},
               "trials": trials, "seeds": seeds, "seed": seed,
               "dataset": resolve_dataset_name(dataset),
               "validation_split": validation_split, "limit_train": limit_train,
               "limit_test": limit_test}
    generator = np.random.default_rng(seed)
    domains = {name: random_domain(options[name], *bounds) for name, bounds in ranges.items()}
    width = max(3, len(str(total - 1)))
    planned: list[Trial] = []
    point = 0
    for combination in combinations:
        for _ in range(draws):
            values = dict(zip(grid_values, combination))
            for name, domain in domains.items():
                value = domain.sample(random_state=generator)
                low, high = ranges[name]
                values[name] = (int(value) if isinstance(low, int)
                                else min(high, max(low, _round(float(value)))))
            for offset in range(seeds):
                planned.append(Trial(f"trial-{len(planned):0{width}d}", point, values,
                                     seed + offset))
            point += 1
    plan = SweepPlan(json.loads(json.dumps(request)), planned)
    for trial in planned:  # every configuration checked before anything starts
        plan.config(trial)
    return plan


# --------------------------------------------------------------- the XLA compilation cache


def compile_cache_dir() -> Path:
    """Where the trials' persistent XLA compilation cache lives: under the user cache
    directory (`MNISTLAB_CACHE_DIR`, `$XDG_CACHE_HOME/mnistlab` or `~/.cache/mnistlab`), in
    `xla/<TensorFlow version>-<CPU>`: a compiled executable is native code for one XLA
    version and one kind of processor, so another version or processor (a cluster sharing a
    home directory) gets its own directory and never loads it."""
    from importlib import metadata

    from mnistlab.data.sources import cache_root

    version = "unknown"
    for name in ("tensorflow-cpu", "tensorflow"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            version = metadata.version(name)
            break
    return cache_root() / "xla" / f"tf{version}-{_processor_signature()}"


def _processor_signature() -> str:
    """A short hash of the processor's model and instruction set extensions."""
    text = platform.machine() + platform.processor()
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
        wanted = ("model name", "flags", "Features", "CPU part")
        seen = dict(line.split(":", 1) for line in lines
                    if ":" in line and line.split(":", 1)[0].strip() in wanted)
        text += "".join(f"{key.strip()}={value.strip()};" for key, value in sorted(
            seen.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class CompileCache:
    """TensorFlow's persistent XLA compilation cache, shared safely between processes.

    TensorFlow (`TF_XLA_FLAGS=--tf_xla_persistent_cache_directory=DIR`) saves every
    executable it compiles in DIR and loads it in a later process whose computation is the
    same (it checks the HLO). Two of its habits make a shared DIR unsafe: it writes a file
    in place, so a process starting at the same moment can read half of it, and a file it
    cannot read or verify makes the computation fail rather than compile again. So each
    process gets a private working directory (`.work/<host>-<pid>-<random>` beside the
    shared entries), filled with hard links to the shared entries when TensorFlow starts;
    TensorFlow writes new entries there only (it never rewrites an entry it found), and
    `publish` links each new, complete entry into the shared directory under its final
    name, which is atomic. Working directories of processes that died are removed, and the
    shared directory is kept under `MAX_COMPILE_CACHE_BYTES` (oldest entries first; a
    process's working directory keeps its own links, so removing a shared entry never
    disturbs a running process).

    The directory must belong to the user and not be writable by others: it holds native
    code that TensorFlow runs.
    """

    FLAG = "--tf_xla_persistent_cache_directory"

    def __init__(self, directory: Path | None = None):
        self.directory = Path(directory) if directory is not None else compile_cache_dir()
        self.work: Path | None = None

    def start(self) -> bool:
        """Point this process's TensorFlow at a private working copy of the cache; must
        run before TensorFlow is imported. Returns whether the cache is in use (not when
        TensorFlow is already running, or the user set their own cache directory)."""
        if "tensorflow" in sys.modules or "tf_xla_persistent_cache" in os.environ.get(
                "TF_XLA_FLAGS", ""):
            return self.work is not None
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._check_owner()
            self.remove_dead_work_dirs()
            work = self.directory / ".work" / f"{_host()}-{os.getpid()}-{secrets.token_hex(4)}"
            work.mkdir(parents=True, mode=0o700)
            for entry in self.directory.iterdir():
                if entry.is_file() and entry.suffix == ".pb":
                    with contextlib.suppress(OSError):
                        os.link(entry, work / entry.name)
        except (OSError, RunError):
            return False  # no cache: every fit compiles, as without it
        self.work = work
        flags = os.environ.get("TF_XLA_FLAGS", "")
        os.environ["TF_XLA_FLAGS"] = f"{flags} {self.FLAG}={work}".strip()
        return True

    def _check_owner(self) -> None:
        status = self.directory.stat()
        if hasattr(os, "getuid") and (status.st_uid != os.getuid() or status.st_mode & 0o022):
            raise RunError(f"{self.directory} belongs to another user or others can write "
                           "it; not loading compiled code from it")

    def publish(self) -> int:
        """Link the entries this process compiled into the shared directory; returns how
        many were new."""
        if self.work is None:
            return 0
        published = 0
        with contextlib.suppress(OSError):
            for entry in self.work.iterdir():
                if entry.suffix != ".pb" or entry.stat().st_nlink > 1 or not entry.is_file():
                    continue  # linked from the shared directory, or not finished
                with contextlib.suppress(FileExistsError):
                    os.link(entry, self.directory / entry.name)
                    published += 1
        if published:
            self.prune()
        return published

    def prune(self, limit: int = MAX_COMPILE_CACHE_BYTES) -> None:
        """Remove the oldest shared entries until the rest take at most `limit` bytes."""
        entries = []
        with contextlib.suppress(OSError):
            for entry in self.directory.iterdir():
                if entry.suffix == ".pb" and entry.is_file():
                    status = entry.stat()
                    entries.append((status.st_mtime, status.st_size, entry))
        total = sum(size for _, size, _ in entries)
        for _, size, entry in sorted(entries):
            if total <= limit:
                break
            with contextlib.suppress(OSError):
                entry.unlink()
                total -= size

    def remove_dead_work_dirs(self) -> None:
        """Remove the working directories of this host's processes that are gone."""
        work_root = self.directory / ".work"
        if not work_root.is_dir():
            return
        for work in work_root.iterdir():
            host, _, rest = work.name.rpartition("-")[0].rpartition("-")
            with contextlib.suppress(ValueError):
                if host == _host() and not _alive(int(rest)):
                    shutil.rmtree(work, ignore_errors=True)


def _host() -> str:
    return socket.gethostname().replace("-", "_") or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_PROCESS_CACHE: dict[str, CompileCache] = {}


# ------------------------------------------------------------------------------- a trial


def limit_tensorflow_threads(count: int) -> int:
    """Give TensorFlow `count` intra-op and inter-op threads; returns the intra-op count in
    force. Must run before TensorFlow does any work (later, TensorFlow keeps what it has)."""
    import tensorflow as tf

    threading = tf.config.threading
    for getter, setter in ((threading.get_intra_op_parallelism_threads,
                            threading.set_intra_op_parallelism_threads),
                           (threading.get_inter_op_parallelism_threads,
                            threading.set_inter_op_parallelism_threads)):
        if getter() != count:
            with contextlib.suppress(RuntimeError):  # TensorFlow started with other counts
                setter(count)
    return threading.get_intra_op_parallelism_threads()


def _one_line(error: BaseException, limit: int = 400) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    if not isinstance(error, MnistlabError):
        text = f"{type(error).__name__}: {text}"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _run_job(spec: dict, *, jobs: dict, datasets: dict, threads: int,
             cache_dir: str | None) -> None:
    """A Ray Tune function trainable: train (or continue) one run directory and report how
    it ended. Errors are reported, not raised, so that Tune and Ray log nothing."""
    from ray import tune

    job = jobs[spec["job"]]
    cache = None
    if cache_dir is not None:
        cache = _PROCESS_CACHE.setdefault(cache_dir, CompileCache(Path(cache_dir)))
        cache.start()
    start = time.perf_counter()
    import ray

    report = {"job": spec["job"], "pid": os.getpid(), "host": socket.gethostname(),
              "node": ray.get_runtime_context().get_node_id()}
    try:
        report["threads"] = limit_tensorflow_threads(threads)
        report["status"] = _train_job(job, datasets[job["dataset"]])
    except Exception as error:  # recorded as the trial's failure; the sweep goes on
        report.update(status="failed", error=_one_line(error))
        with contextlib.suppress(Exception):
            from mnistlab.runs import load_run

            report["status"] = _run_status(load_run(Path(job["run_dir"])).status)
    except KeyboardInterrupt:
        report.update(status="interrupted", error="interrupted")
    finally:
        if cache is not None:
            cache.publish()
    report["seconds"] = round(time.perf_counter() - start, 3)
    tune.report(report)


def _run_status(status: str) -> str:
    return status if status in FINISHED else "interrupted"


def _train_job(job: dict, dataset) -> str:
    """Train one job in this process; returns the run's status."""
    from mnistlab.experiment import train_and_evaluate
    from mnistlab.runs import is_run, load_run

    run_dir = Path(job["run_dir"])
    if job["action"] == "resume":
        from mnistlab.experiment import resume_run

        try:
            resume_run(run_dir, dataset=dataset, progress=False)
            return "completed"
        except (RunError, ConfigError):
            if not is_run(run_dir):
                raise
            shutil.rmtree(run_dir)  # a run that cannot be continued starts again
    try:
        train_and_evaluate(job["config"], run_dir, dataset=dataset, progress=False,
                           overwrite=job["overwrite"])
    except MnistlabError:
        if is_run(run_dir) and load_run(run_dir).status == "failed":
            return "failed"  # a diverged loss: the run directory says so
        raise
    return "completed"


# ------------------------------------------------------------------------ Ray, many runs


@dataclass
class RunOutcome:
    """How one run of `run_many` ended: 'completed', 'failed', 'interrupted' (stopped
    before it finished; continue it with `resume=True`) or 'skipped' (already finished)."""

    run_dir: Path
    status: str
    error: str | None = None
    seconds: float | None = None
    threads: int | None = None
    pid: int | None = None
    host: str | None = None
    node: str | None = None


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables the user has not set, for the block only."""
    added = {name: value for name, value in values.items() if name not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for name, value in added.items():
            if os.environ.get(name) == value:
                del os.environ[name]


@dataclass
class RaySession:
    """Where the trials run: a local instance started for them, or a cluster."""

    address: str | None
    cpus: float
    nodes: int
    storage: Path


@contextlib.contextmanager
def ray_session(*, cpus: int | None = None, address: str | None = None,
                object_store_bytes: int = MIN_OBJECT_STORE_BYTES) -> Iterator[RaySession]:
    """Start a local Ray instance with `cpus` CPUs (all by default), or connect to the
    cluster at `address`; quiet, with nothing written in the user's home, and shut down
    afterwards. A Ray connection the caller already made is used as it is."""
    ray = import_ray()
    import logging

    if address is not None and cpus is not None:
        raise ConfigError("cpus applies to a local Ray instance; a cluster has the CPUs its "
                          "nodes were started with")
    temporary = Path(tempfile.mkdtemp(prefix="mnistlab-ray-"))
    environment = dict(RAY_ENVIRONMENT)
    started = not ray.is_initialized()
    if started and address is None and not any(name.startswith("RAY_AUTH_") for name in
                                               os.environ):
        # The local instance's own token, in its processes' environment (Ray turns token
        # authentication on for a new local instance; its own token would be a file it
        # writes in ~/.ray).
        environment["RAY_AUTH_TOKEN"] = _local_token()
    ray_logger = logging.getLogger("ray")
    level = ray_logger.level
    mode_before = os.environ.get("RAY_AUTH_MODE")
    try:
        with _environment(environment):
            if started:
                worker_environment = {name: os.environ[name] for name in WORKER_ENVIRONMENT
                                      if name in os.environ}
                settings = {"include_dashboard": False, "log_to_driver": False,
                            "logging_level": logging.ERROR,
                            "runtime_env": {"env_vars": worker_environment}}
                if address is None:
                    settings.update(num_cpus=cpus or os.cpu_count() or 1,
                                    object_store_memory=max(MIN_OBJECT_STORE_BYTES,
                                                            object_store_bytes),
                                    _temp_dir=str(temporary))
                try:
                    ray.init(address=address, **settings)
                except (ConnectionError, RuntimeError, ValueError) as error:
                    where = f"the Ray cluster at {address}" if address else "a local Ray instance"
                    raise RunError(f"could not start or reach {where}: {_one_line(error)}"
                                   ) from None
            ray_logger.setLevel(logging.CRITICAL)  # failed trials are reported by mnistlab
            resources = ray.cluster_resources()
            session = RaySession(address, float(resources.get("CPU", 0)),
                                 len([node for node in ray.nodes() if node.get("Alive")]),
                                 temporary / "tune")
            try:
                yield session
            finally:
                if started:
                    ray.shutdown()
    finally:
        ray_logger.setLevel(level)
        if mode_before is None:
            os.environ.pop("RAY_AUTH_MODE", None)  # Ray sets it for the instance it starts
        _remove_tree(temporary)


def _remove_tree(path: Path, patience: float = 10.0) -> None:
    """Remove a directory that Ray's processes may still be writing while they exit."""
    deadline = time.monotonic() + patience
    while True:
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists() or time.monotonic() > deadline:
            return
        time.sleep(0.2)


def _local_token() -> str:
    """The token of the local instances this process starts: one per process, because
    Ray reads the token once."""
    if "token" not in _LOCAL_AUTH:
        _LOCAL_AUTH["token"] = secrets.token_hex(32)
    return _LOCAL_AUTH["token"]


_LOCAL_AUTH: dict[str, str] = {}


def _truncated(dataset, limit_train: int | None, limit_test: int | None):
    """The dataset with only the images the runs use, so less travels to the trials."""
    return dataclasses.replace(
        dataset, train_images=dataset.train_images[:limit_train],
        train_labels=dataset.train_labels[:limit_train],
        test_images=dataset.test_images[:limit_test],
        test_labels=dataset.test_labels[:limit_test])


def _plan_jobs(configs_and_dirs, *, resume: bool, overwrite: bool
               ) -> tuple[dict[str, dict], dict[int, RunOutcome]]:
    """What to do with each run directory: train, continue or keep it; checked before Ray
    starts."""
    from mnistlab.runs import check_run_target, is_run, load_run

    jobs, kept = {}, {}
    seen = set()
    for index, (config, run_dir) in enumerate(configs_and_dirs):
        run_dir = Path(run_dir).resolve()
        if run_dir in seen:
            raise ConfigError(f"{run_dir} is named for more than one run")
        seen.add(run_dir)
        action = "train"
        if resume and is_run(run_dir):
            status = load_run(run_dir).status
            if status in FINISHED:
                kept[index] = RunOutcome(run_dir, "skipped")
                continue
            action = "resume"
        elif run_dir.exists() and not (run_dir.is_dir() and not any(run_dir.iterdir())):
            check_run_target(run_dir, overwrite)
        jobs[str(index)] = {"config": config, "run_dir": str(run_dir), "action": action,
                            "overwrite": overwrite, "dataset": config.dataset}
    return jobs, kept


def run_many(configs_and_dirs: Sequence[tuple[Any, str | Path]], *, cpus: int | None = None,
             cpus_per_trial: int = 1, address: str | None = None, dataset=None,
             data_dir: Path | None = None, resume: bool = False, overwrite: bool = False,
             compile_cache: bool = True, progress: bool = False,
             on_finish: Callable[[int, RunOutcome], None] | None = None) -> list[RunOutcome]:
    """Train each (`TrainConfig`, run directory) on Ray Tune, as many at a time as the CPUs
    allow, each trial with `cpus_per_trial` CPUs and as many TensorFlow threads; returns
    how each ended, in the order given. A run that fails does not stop the others.

    `dataset` (a loaded `Dataset`) serves every configuration; otherwise each distinct
    `config.dataset` is loaded once, here, from `data_dir` or the usual sources, and sent to
    the trials through Ray's object store (so the nodes of a cluster need no copy). Run
    directories must be on a file system every node writes (one machine, or a shared one).
    With `resume`, finished runs (completed or failed) are kept and interrupted or killed
    ones continue from their checkpoints. `on_finish(index, outcome)` is called in this
    process as each run ends.
    """
    if isinstance(cpus_per_trial, bool) or not isinstance(cpus_per_trial, int) \
            or cpus_per_trial < 1:
        raise ConfigError(f"cpus_per_trial must be a whole number of at least 1, got "
                          f"{cpus_per_trial!r}")
    if cpus is not None and (isinstance(cpus, bool) or not isinstance(cpus, int)
                             or cpus < cpus_per_trial):
        raise ConfigError(f"cpus must be a whole number, at least cpus_per_trial "
                          f"({cpus_per_trial}), got {cpus!r}")
    import_ray()
    pairs = [(_within_share(config, cpus_per_trial), run_dir)
             for config, run_dir in configs_and_dirs]
    jobs, kept = _plan_jobs(pairs, resume=resume, overwrite=overwrite)
    outcomes: dict[int, RunOutcome] = dict(kept)
    if jobs:
        datasets = {}
        for job in jobs.values():
            name = job["dataset"]
            if name not in datasets:
                datasets[name] = dataset if dataset is not None else _load(
                    name, data_dir, progress)
        for name in datasets:
            limits = [(job["config"].limit_train, job["config"].limit_test)
                      for job in jobs.values() if job["dataset"] == name]
            train = None if any(a is None for a, _ in limits) else max(a for a, _ in limits)
            test = None if any(b is None for _, b in limits) else max(b for _, b in limits)
            datasets[name] = _truncated(datasets[name], train, test)
        size = sum(array.nbytes for data in datasets.values() for array in (
            data.train_images, data.train_labels, data.test_images, data.test_labels))
        with ray_session(cpus=cpus, address=address,
                         object_store_bytes=4 * size) as session:
            if session.cpus < cpus_per_trial:
                raise ConfigError(f"a trial needs {cpus_per_trial} CPUs, but the Ray "
                                  f"{'cluster' if address else 'instance'} has "
                                  f"{session.cpus:g}")
            cache = str(compile_cache_dir()) if compile_cache else None
            for index, outcome in _run_on_ray(jobs, datasets, session, cpus_per_trial, cache,
                                              on_finish):
                outcomes[index] = outcome
        if compile_cache and address is None:
            CompileCache().remove_dead_work_dirs()  # the trials' processes have ended
    for index, outcome in outcomes.items():
        if on_finish is not None and outcome.status == "skipped":
            on_finish(index, outcome)
    return [outcomes.get(index) or RunOutcome(Path(run_dir).resolve(), "interrupted",
                                              "not started")
            for index, (_, run_dir) in enumerate(pairs)]


def _within_share(config, cpus_per_trial: int):
    """A configuration whose model would use every core (`n_jobs=-1`, the forest's
    default) gets the trial's share instead; the forest's trees are the same either way."""
    from mnistlab.config import FrozenOptions

    if config.model_config.get("n_jobs") == -1:
        options = FrozenOptions({**config.model_config, "n_jobs": cpus_per_trial})
        return dataclasses.replace(config, model_config=options)
    return config


def _load(name: str, data_dir: Path | None, progress: bool):
    from mnistlab.data import load_dataset

    return load_dataset(name, data_dir=data_dir, progress=progress)


def _run_on_ray(jobs: dict, datasets: dict, session: RaySession, cpus_per_trial: int,
                cache: str | None, on_finish) -> Iterator[tuple[int, RunOutcome]]:
    """Run the jobs as Tune trials; yields (index, outcome) for each that ended."""
    from ray import tune

    finished: dict[int, RunOutcome] = {}

    def record(result: dict) -> None:
        index = int(result["job"])
        job = jobs[result["job"]]
        outcome = RunOutcome(Path(job["run_dir"]), str(result.get("status", "failed")),
                             result.get("error"), result.get("seconds"),
                             result.get("threads"), result.get("pid"), result.get("host"),
                             result.get("node"))
        finished[index] = outcome
        if on_finish is not None:
            on_finish(index, outcome)

    class Reporter(tune.Callback):
        """Passes each trial's report on as it arrives."""

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if "job" in result and int(result["job"]) not in finished:
                record(result)

        def on_trial_error(self, iteration, trials, trial, **info):
            job = trial.config.get("job")
            if job is not None and int(job) not in finished:
                error = None
                with contextlib.suppress(Exception):
                    error = trial.get_pickled_error()
                message = _one_line(error) if error is not None else "the trial's process died"
                record({"job": job, "status": "failed",
                        "error": f"the trial failed outside training: {message}"})

    trainable = tune.with_resources(
        tune.with_parameters(_run_job, jobs=jobs, datasets=datasets, threads=cpus_per_trial,
                             cache_dir=cache),
        {"cpu": cpus_per_trial})
    tuner = tune.Tuner(
        trainable, param_space={"job": tune.grid_search(list(jobs))},
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(
            name="mnistlab", storage_path=str(session.storage), verbose=0,
            callbacks=[Reporter()], failure_config=tune.FailureConfig(max_failures=0)))
    tuner.fit()
    yield from finished.items()


# ------------------------------------------------------------------------------ a sweep


@dataclass
class TrialResult:
    """A trial as it stands: its plan, status, scores and run directory."""

    trial: Trial
    status: str  # completed, failed, interrupted, not run
    run_dir: Path
    test_accuracy: float | None = None
    val_accuracy: float | None = None
    train_seconds: float | None = None
    validation_examples: int | None = None
    error: str | None = None
    # Where it ran, when this call trained it: the TensorFlow threads, process and Ray node.
    threads: int | None = None
    pid: int | None = None
    node: str | None = None

    def to_dict(self, out: Path) -> dict:
        """JSON-ready, the run directory relative to the sweep's."""
        return {"trial": self.trial.name, "point": self.trial.point,
                "options": self.trial.options, "seed": self.trial.seed,
                "status": self.status, "test_accuracy": self.test_accuracy,
                "val_accuracy": self.val_accuracy, "train_seconds": self.train_seconds,
                "run_dir": _relative(self.run_dir, out), "error": self.error,
                "threads": self.threads, "pid": self.pid, "node": self.node}


@dataclass
class SweepResult:
    """What `sweep` returns: the plan, every trial's result, the best run and the files."""

    out: Path
    plan: SweepPlan
    results: list[TrialResult]
    best: TrialResult | None
    wall_seconds: float
    ran: int  # trials trained (or continued) by this call
    kept: int  # finished trials kept from before (a resumed sweep)
    session: dict = field(default_factory=dict)

    @property
    def failed(self) -> list[TrialResult]:
        """The trials that failed."""
        return [result for result in self.results if result.status == "failed"]

    def selection(self) -> str:
        """How the best run was chosen, in one sentence for the report."""
        split = self.plan.request["validation_split"]
        held = {result.validation_examples for result in self.results
                if result.validation_examples}
        count = f"{min(held):,} " if len(held) == 1 else ""
        return (f"The best run is the one with the highest validation accuracy, measured on "
                f"the {count}training images each run held out (validation split {split:g}, "
                "drawn with the run's seed). The test set is never used to choose: test "
                "accuracy is shown for the record only.")

    def table(self) -> list[list[str]]:
        """The results table: a header row, then one row per trial."""
        rows = [["trial", "options", "seed", "test accuracy", "validation accuracy",
                 "train s", "status"]]
        for result in self.results:
            rows.append([result.trial.name + (" *" if result is self.best else ""),
                         result.trial.describe() or "-", str(result.trial.seed),
                         _score(result.test_accuracy), _score(result.val_accuracy),
                         "-" if result.train_seconds is None else f"{result.train_seconds:.2f}",
                         result.status])
        return rows


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _relative(path: Path, out: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(Path(path).relative_to(out))
    return str(path)


def _read_plan(out: Path) -> SweepPlan:
    from mnistlab.runs import read_json

    return SweepPlan.from_dict(read_json(out / PLAN_FILE), out / PLAN_FILE)


def _check_sweep_target(out: Path, plan: SweepPlan | None) -> None:
    """Refuse to replace `out` unless it is a sweep mnistlab wrote and holds nothing else."""
    from mnistlab.fileio import MARKER_FILE, is_temporary_name, read_marker
    from mnistlab.runs import RUN_FILES, RUN_FOLDERS

    if out.is_symlink() or not out.is_dir():
        raise RunError(f"{out} exists and is not a directory; not replacing it")
    if not any(out.iterdir()):
        return
    marker = read_marker(out)
    if marker is None or marker.get("kind") != MARKER_KIND or plan is None:
        raise RunError(f"{out} is not a sweep mnistlab wrote; not replacing it")
    names = {trial.name for trial in plan.trials}
    for entry in out.iterdir():
        if entry.name in (MARKER_FILE,) or entry.name in SWEEP_FILES \
                or is_temporary_name(entry.name):
            continue
        if entry.name in names and entry.is_dir() and not entry.is_symlink():
            foreign = [inner.name for inner in entry.iterdir()
                       if inner.name not in RUN_FILES and inner.name not in RUN_FOLDERS
                       and inner.name != MARKER_FILE and not is_temporary_name(inner.name)]
            if not foreign:
                continue
            raise RunError(f"{out} holds {entry.name}/{foreign[0]}, which mnistlab did not "
                           "write; not replacing it")
        raise RunError(f"{out} holds {entry.name}, which mnistlab did not write; not "
                       "replacing it")


def _same_request(saved: dict, given: dict) -> bool:
    return json.loads(json.dumps(saved)) == json.loads(json.dumps(given))


def sweep(model: str | None = None, *, preset: str | None = None,
          grid: Mapping[str, Sequence[Any]] | None = None,
          random: Mapping[str, tuple[float, float]] | None = None,
          trials: int | None = None, seeds: int = 1, seed: int = 0,
          out: Path | str, dataset: str = "mnist", data_dir: Path | None = None,
          validation_split: float | None = None, limit_train: int | None = None,
          limit_test: int | None = None, cpus: int | None = None, cpus_per_trial: int = 1,
          address: str | None = None, resume: bool = False, overwrite: bool = False,
          compile_cache: bool = True, progress: bool = False) -> SweepResult:
    """Train `model` (or `preset`'s model) over a grid and/or random ranges of its options
    with `seeds` seeds each, every trial a run directory under `out`, on Ray Tune; write
    `sweep.json`, `sweep.csv` and `sweep.html` and return the results.

    `grid` maps options to lists of values (`{"learning_rate": [0.01, 0.003]}`); `random`
    maps options to `(low, high)` ranges, drawn `trials` times (log-uniformly when low > 0
    and high/low >= 100). Option names may be spelled with dashes or as their flag. Trials
    run on a local Ray instance with `cpus` CPUs (all by default), or on the cluster at
    `address`, `cpus_per_trial` CPUs each. The best run has the highest validation accuracy
    (`validation_split`, 0.1 unless given); the test set never chooses.

    `resume=True` continues the sweep in `out`: the plan saved there decides the trials
    (the request given must be the same, or `model` None to take it as saved), finished
    trials are kept. `progress` prints a line per finished trial on stderr.
    """
    import_ray()
    out = Path(out)
    started = time.perf_counter()
    saved = _read_plan(out) if (out / PLAN_FILE).is_file() else None
    if resume and saved is not None and model is None and preset is None and not grid \
            and not random:
        plan = saved
    else:
        if resume and model is None and preset is None:
            raise RunError(f"{out} holds no sweep to resume (no {PLAN_FILE})")
        plan = make_plan(model, preset=preset, grid=grid, random=random, trials=trials,
                         seeds=seeds, seed=seed, dataset=dataset,
                         validation_split=validation_split, limit_train=limit_train,
                         limit_test=limit_test)
        if resume and saved is not None and not _same_request(saved.request, plan.request):
            raise ConfigError(f"{out} holds a sweep of other settings; resume it with its "
                              "own (give only the directory) or start again with overwrite")
        if resume and saved is not None:
            plan = saved
    configs = [plan.config(trial) for trial in plan.trials]
    if not (resume and saved is not None):  # a new sweep
        if out.is_symlink() or (out.exists() and not (out.is_dir() and not any(out.iterdir()))):
            if not overwrite:
                raise RunError(f"{out} already exists (use resume to continue the sweep in "
                               "it, or overwrite to replace it)")
            _check_sweep_target(out, saved)
            shutil.rmtree(out)
        _create_sweep_dir(out, plan)
    else:
        _remove_unusable_trial_dirs(out, plan)
    finished_before = {trial.name for trial in plan.trials
                       if _finished_status(out / trial.name) is not None}
    messages: dict[str, str] = {}
    reported: set[str] = set()

    def report(index: int, outcome: RunOutcome) -> None:
        trial = plan.trials[index]
        if outcome.error:
            messages[trial.name] = outcome.error
        if progress and outcome.status != "skipped":
            reported.add(trial.name)
            _print_progress(out, trial, outcome, done=len(reported),
                            total=len(plan.trials) - len(finished_before))

    if progress:
        where = f"the Ray cluster at {address}" if address else \
            f"a local Ray instance ({cpus or os.cpu_count()} CPUs)"
        kept = f", {len(finished_before)} finished before" if finished_before else ""
        print(f"sweep: {len(plan.trials)} trials{kept}, on {where}, {cpus_per_trial} "
              f"CPU{'s' if cpus_per_trial > 1 else ''} per trial", file=sys.stderr, flush=True)
    outcomes = run_many(list(zip(configs, (out / trial.name for trial in plan.trials))),
                        cpus=cpus, cpus_per_trial=cpus_per_trial, address=address,
                        data_dir=data_dir, resume=True, compile_cache=compile_cache,
                        progress=progress, on_finish=report)
    results = [_trial_result(out, trial, messages.get(trial.name), outcome)
               for trial, outcome in zip(plan.trials, outcomes)]
    best = best_result(results)
    result = SweepResult(out, plan, results, best, time.perf_counter() - started,
                         ran=len(plan.trials) - len(finished_before),
                         kept=len(finished_before),
                         session={"address": address, "cpus": cpus,
                                  "cpus_per_trial": cpus_per_trial,
                                  "compile_cache": compile_cache})
    write_sweep_results(result)
    return result


def resume_sweep(out: Path | str, **execution: Any) -> SweepResult:
    """Continue the sweep in `out` with the settings it was started with; `execution` takes
    `sweep`'s `cpus`, `cpus_per_trial`, `address`, `data_dir`, `compile_cache`, `progress`."""
    return sweep(None, out=out, resume=True, **execution)


def _create_sweep_dir(out: Path, plan: SweepPlan) -> None:
    from mnistlab.fileio import publish_mode, write_marker
    from mnistlab.runs import write_json

    out.mkdir(parents=True, exist_ok=True)
    publish_mode(out, directory=True)
    write_marker(out, MARKER_KIND)
    write_json(out / PLAN_FILE, {**plan.to_dict(),
                                 "created": datetime.now(timezone.utc).isoformat(
                                     timespec="seconds")})


def _finished_status(run_dir: Path) -> str | None:
    from mnistlab.runs import is_run, load_run

    if not is_run(run_dir):
        return None
    with contextlib.suppress(RunError):
        status = load_run(run_dir).status
        return status if status in FINISHED else None
    return None


def _remove_unusable_trial_dirs(out: Path, plan: SweepPlan) -> None:
    """A trial directory that is not a readable run (a process killed while creating it) is
    removed, after checking that it holds only what a run holds."""
    from mnistlab.runs import is_run, load_run

    for trial in plan.trials:
        run_dir = out / trial.name
        if not run_dir.exists() or (is_run(run_dir) and _readable(load_run, run_dir)):
            continue
        _check_sweep_target(out, plan)
        shutil.rmtree(run_dir)


def _readable(load_run, run_dir: Path) -> bool:
    try:
        load_run(run_dir)
    except RunError:
        return False
    return True


def _trial_result(out: Path, trial: Trial, message: str | None,
                  outcome: RunOutcome) -> TrialResult:
    """A trial's result, read from its run directory (the record of truth)."""
    from mnistlab.runs import is_run, load_run

    run_dir = out / trial.name
    result = TrialResult(trial, "not run" if outcome.status in ("interrupted", "skipped")
                         else outcome.status, run_dir, error=message,
                         threads=outcome.threads, pid=outcome.pid, node=outcome.node)
    if is_run(run_dir):
        try:
            run = load_run(run_dir)
        except RunError as error:
            result.status, result.error = "failed", str(error)
            return result
        result.status = run.status if run.status in FINISHED else "interrupted"
        metrics = run.metrics
        result.test_accuracy = metrics.get("test_accuracy")
        result.val_accuracy = metrics.get("val_accuracy")
        result.train_seconds = metrics.get("train_seconds")
        data = run.config.get("data") if isinstance(run.config.get("data"), dict) else {}
        result.validation_examples = data.get("validation_examples")
        if run.status == "failed":
            result.error = run.info.get("error") or message
    elif outcome.status == "failed":
        result.status = "failed"
    return result


def best_result(results: Sequence[TrialResult]) -> TrialResult | None:
    """The completed trial with the highest validation accuracy (the first, on a tie)."""
    scored = [result for result in results
              if result.status == "completed" and result.val_accuracy is not None]
    if not scored:
        return None
    return max(scored, key=lambda result: (result.val_accuracy,
                                           -results.index(result)))


def _print_progress(out: Path, trial: Trial, outcome: RunOutcome, *, done: int,
                    total: int) -> None:
    from mnistlab.runs import load_run

    detail = outcome.error or outcome.status
    if outcome.status == "completed":
        with contextlib.suppress(Exception):
            metrics = load_run(out / trial.name).metrics
            detail = (f"validation {metrics['val_accuracy']:.4f}, test "
                      f"{metrics['test_accuracy']:.4f}, {metrics['train_seconds']:.1f} s")
    print(f"[{done}/{total}] {trial.name} ({trial.describe() or 'defaults'}, seed "
          f"{trial.seed}): {detail}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- results, report


def write_sweep_results(result: SweepResult) -> dict[str, Path]:
    """Write `sweep.json`, `sweep.csv` and the self-contained `sweep.html`."""
    from mnistlab.fileio import write_text_atomic
    from mnistlab.runs import write_json

    out = result.out
    best = result.best
    document = {
        "request": result.plan.request,
        "selection": result.selection(),
        "best": None if best is None else {**best.to_dict(out),
                                           "run_dir": _relative(best.run_dir, out)},
        "trials": [item.to_dict(out) for item in result.results],
        "counts": {status: sum(item.status == status for item in result.results)
                   for status in ("completed", "failed", "interrupted", "not run")},
        "session": {**result.session, "wall_seconds": round(result.wall_seconds, 2),
                    "trained": result.ran, "kept": result.kept,
                    "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")},
    }
    write_json(out / RESULTS_JSON, document)
    swept = result.plan.swept
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["trial", *swept, "seed", "test_accuracy", "val_accuracy",
                     "train_seconds", "status", "best", "run_dir", "error"])
    for item in result.results:
        writer.writerow([item.trial.name, *(item.trial.options.get(name) for name in swept),
                         item.trial.seed, _blank(item.test_accuracy),
                         _blank(item.val_accuracy), _blank(item.train_seconds), item.status,
                         "yes" if item is best else "", _relative(item.run_dir, out),
                         item.error or ""])
    write_text_atomic(out / RESULTS_CSV, buffer.getvalue())
    write_text_atomic(out / REPORT_HTML, sweep_html(result))
    return {name: out / name for name in (RESULTS_JSON, RESULTS_CSV, REPORT_HTML)}


def _blank(value: Any) -> Any:
    return "" if value is None else value


def _is_log_scale(plan: SweepPlan, name: str, values: Sequence[Any]) -> bool:
    if name in plan.request["random"]:
        low, high = plan.request["random"][name]
        return low > 0 and high / low >= LOG_RANGE_RATIO
    numbers = [value for value in values if isinstance(value, (int, float))
               and not isinstance(value, bool)]
    return bool(numbers) and len(numbers) == len(values) and min(numbers) > 0 \
        and max(numbers) / min(numbers) >= LOG_RANGE_RATIO


def plot_scores(result: SweepResult, options: Sequence[str] | None = None, axes=None):
    """The validation accuracy of every completed trial against each swept option (one
    panel each; the mean over trials at each grid value joined by a line; the best run
    starred); returns the figure."""
    from mnistlab import plots  # noqa: F401, I001 - selects the non-interactive backend
    import matplotlib.pyplot as plt
    import numpy as np

    options = list(options if options is not None else result.plan.swept) or ["seed"]
    if axes is None:
        columns = min(3, len(options))
        rows = math.ceil(len(options) / columns)
        figure, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.6 * rows),
                                    squeeze=False)
        axes = list(axes.ravel())
        for ax in axes[len(options):]:
            ax.set_visible(False)
    else:
        axes = list(np.ravel(axes))
        figure = axes[0].figure
    scored = [item for item in result.results
              if item.status == "completed" and item.val_accuracy is not None]
    for ax, name in zip(axes, options):
        values = [item.trial.seed if name == "seed" else item.trial.options.get(name)
                  for item in scored]
        numeric = all(isinstance(value, (int, float)) and not isinstance(value, bool)
                      for value in values)
        if numeric:
            positions = [float(value) for value in values]
        else:
            labels = list(dict.fromkeys(_format_value(value) for value in values))
            positions = [labels.index(_format_value(value)) for value in values]
            ax.set_xticks(range(len(labels)), labels)
        scores = [item.val_accuracy for item in scored]
        ax.scatter(positions, scores, s=22, alpha=0.75, label="a run")
        if name in result.plan.request["grid"] or name == "seed" or not numeric:
            at = sorted(set(positions))
            means = [float(np.mean([score for position, score in zip(positions, scores)
                                    if position == x])) for x in at]
            if len(at) > 1:
                ax.plot(at, means, "-", color="gray", alpha=0.7, label="mean")
        if result.best is not None and result.best in scored:
            index = scored.index(result.best)
            ax.scatter([positions[index]], [scores[index]], marker="*", s=180,
                       color="tab:red", zorder=3, label="best run")
        if numeric and _is_log_scale(result.plan, name, values):
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("validation accuracy")
        ax.grid(alpha=0.3)
    if scored:
        axes[0].legend(loc="best", fontsize="small")
    figure.tight_layout()
    return figure


def _figure_html(figure, alt: str, caption: str) -> str:
    import base64

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _subset_caveat(request: dict) -> str | None:
    parts = []
    if request["limit_train"]:
        parts.append(f"trained on the first {request['limit_train']:,} training images")
    if request["limit_test"]:
        parts.append(f"tested on the first {request['limit_test']:,} test images")
    if not parts:
        return None
    return (f"Subset: every trial was {' and '.join(parts)}, not the full data; accuracies "
            "are lower and noisier than on the full data.")


def sweep_html(result: SweepResult) -> str:
    """The sweep's report: what was swept, how the best run was chosen, the table, the
    validation score against each swept option, and the failures; self-contained."""
    from mnistlab.report import REPORT_STYLE

    request = result.plan.request
    subject = request["preset"] or request["model"]
    dataset = Path(request["dataset"]).name if os.sep in request["dataset"] \
        else request["dataset"]
    heading = f"Sweep of {subject} on {dataset}"
    parts = [f"<h1>{html.escape(heading)}</h1>"]
    caveat = _subset_caveat(request)
    if caveat:
        parts.append(f'<p class="caveat">{html.escape(caveat)}</p>')
    swept = [f"{name} over {', '.join(_format_value(value) for value in values)}"
             for name, values in request["grid"].items()]
    swept += [f"{name} drawn {'log-' if _is_log_scale(result.plan, name, []) else ''}"
              f"uniformly from {low:g} to {high:g} ({request['trials']} draws)"
              for name, (low, high) in request["random"].items()]
    seeds = request["seeds"]
    seed_text = (f"seeds {request['seed']} to {request['seed'] + seeds - 1}" if seeds > 1
                 else f"seed {request['seed']}")
    counts = {status: sum(item.status == status for item in result.results)
              for status in ("completed", "failed", "interrupted", "not run")}
    summary = ", ".join(f"{count} {status}" for status, count in counts.items() if count)
    parts.append(f"<p>{len(result.results)} trials ({summary}): "
                 f"{html.escape('; '.join(swept) or 'the configuration as it is')}, each with "
                 f"{seed_text}. Every trial is a run directory of its own.</p>")
    parts.append(f"<p><b>Selection.</b> {html.escape(result.selection())}</p>")
    best = result.best
    if best is not None:
        parts.append(
            f"<p><b>Best run:</b> <code>{html.escape(_relative(best.run_dir, result.out))}"
            f"</code> ({html.escape(best.trial.describe() or 'defaults')}, seed "
            f"{best.trial.seed}): validation accuracy {best.val_accuracy:.4f}, test accuracy "
            f"{_score(best.test_accuracy)}.</p>")
    else:
        parts.append("<p><b>No trial completed</b>, so there is no best run.</p>")
    table = result.table()
    parts.append('<table class="results"><thead><tr>' + "".join(
        f"<th>{html.escape(cell)}</th>" for cell in table[0]) + "</tr></thead><tbody>")
    for item, row in zip(result.results, table[1:]):
        style = ' class="best"' if item is best else ""
        parts.append(f"<tr{style}>" + "".join(
            f'<td data-label="{html.escape(label)}">{html.escape(cell)}</td>'
            for label, cell in zip(table[0], row)) + "</tr>")
    parts.append("</tbody></table><p>* the best run.</p>")
    if any(item.status == "completed" for item in result.results):
        caption = ("Validation accuracy of every completed trial against each swept option "
                   "(the line joins the mean at each value; the star is the best run).")
        parts += ["<h2>Validation accuracy against the swept options</h2>",
                  _figure_html(plot_scores(result), "validation accuracy against the swept "
                               "options", caption)]
    failed = [item for item in result.results if item.status != "completed"]
    if failed:
        parts.append("<h2>Trials that did not complete</h2><ul>")
        parts += [f"<li><code>{html.escape(item.trial.name)}</code> ({item.status}): "
                  f"{html.escape(item.error or '-')}</li>" for item in failed]
        parts.append("</ul>")
    session = result.session
    where = f"the Ray cluster at {session['address']}" if session.get("address") else \
        "a local Ray instance"
    parts.append(f"<p>Run on {html.escape(where)}, {session.get('cpus_per_trial')} CPU per "
                 f"trial; this call took {result.wall_seconds:.1f} s, training "
                 f"{result.ran} trials and keeping {result.kept} finished ones.</p>")
    style = REPORT_STYLE + "tr.best td{font-weight:700;background:#eef6ee}\n"
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(heading)}</title><style>{style}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")
