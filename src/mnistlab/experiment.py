"""One entry point per job: `train_and_evaluate` and `evaluate_run`.

Data flows one way: the dataset is loaded and split, the model is fitted (emitting records),
evaluated on the test set, and the run directory is written with its figures.
"""

from __future__ import annotations

import dataclasses
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab import __version__
from mnistlab.config import TrainConfig, config_from_dict, make_config, validate
from mnistlab.errors import ConfigError, RunError, TrainingDivergedError
from mnistlab.evaluate import compute_metrics
from mnistlab.models import build_model
from mnistlab.progress import training_progress
from mnistlab.runs import (
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_DIR,
    RUN_FILE,
    check_run_target,
    create_run_dir,
    is_run,
    load_model,
    load_run,
    read_json,
    unique_run_dir,
    write_history,
    write_json,
)
from mnistlab.training.seeding import enable_determinism

SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoints"
# What `reproduce` was asked to do, so that `reproduce --resume` can finish it.
REPRODUCE_FILE = "reproduce.json"
# Models whose runs write TensorBoard events (those with a training history).
EVENT_MODELS = ("softmax", "mlp", "cnn")
# Models whose loop runs on tf.distribute strategies.
DISTRIBUTED_MODELS = ("softmax", "mlp", "cnn")


@dataclass
class Split:
    """The arrays one run uses: training, optional validation, and test."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    val_images: np.ndarray | None = None
    val_labels: np.ndarray | None = None


@dataclass
class RunResult:
    """What `train_and_evaluate` returns to the CLI, tests and notebooks."""

    run_dir: Path
    config: TrainConfig
    metrics: dict
    history: list[dict]
    model: Any
    resumed: bool = False  # `resume_run` of a run that was already completed: False


def default_run_dir(config: TrainConfig, root: Path = Path("runs")) -> Path:
    """`runs/<time>-<preset or model>-<6 random hex digits>` (see `runs.unique_run_dir`)."""
    return unique_run_dir(config.preset or config.model, root)


def split_dataset(dataset, config: TrainConfig) -> Split:
    """Apply `limit_train`/`limit_test` (first N images) and hold out a seeded validation set."""
    train_images, train_labels = dataset.train_images, dataset.train_labels
    if config.limit_train:
        train_images = train_images[:config.limit_train]
        train_labels = train_labels[:config.limit_train]
    test_images, test_labels = dataset.test_images, dataset.test_labels
    if config.limit_test:
        test_images, test_labels = test_images[:config.limit_test], test_labels[:config.limit_test]
    split = Split(train_images, train_labels, test_images, test_labels)
    if config.validation_split > 0:
        count = int(round(len(train_images) * config.validation_split))
        if count < 1 or count >= len(train_images):
            raise RunError(f"validation_split {config.validation_split} leaves no training or "
                           f"no validation images out of {len(train_images)}")
        order = np.random.default_rng(config.seed).permutation(len(train_images))
        held, kept = order[:count], np.sort(order[count:])
        split.val_images, split.val_labels = train_images[held], train_labels[held]
        split.train_images, split.train_labels = train_images[kept], train_labels[kept]
    return split


def package_versions() -> dict[str, str]:
    """Versions of Python and the libraries that decide a run's numbers."""
    versions = {"python": platform.python_version(), "mnistlab": __version__}
    for name in ("tensorflow", "tensorflow-cpu", "keras", "scikit-learn", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def dataset_record(dataset, split: Split) -> dict:
    """Where the data came from and how much of it the run used."""
    return {"name": dataset.name, "source": str(dataset.source),
            "verified": bool(dataset.verified), "checksums": dict(dataset.checksums),
            "class_names": list(dataset.class_names),
            "train_examples": int(len(split.train_images)),
            "validation_examples": 0 if split.val_images is None else int(len(split.val_images)),
            "test_examples": int(len(split.test_images))}


def _model_size(directory: Path) -> int:
    return sum(path.stat().st_size for path in Path(directory).rglob("*") if path.is_file())


def _load_dataset(config: TrainConfig, data_dir: Path | None, progress: bool):
    from mnistlab.data import load_dataset

    return load_dataset(config.dataset, data_dir=data_dir, progress=progress)


def resolve_dataset_name(name: str) -> str:
    """A registered dataset name as it is; a directory as an absolute path, so that a run
    can be evaluated from any working directory."""
    from mnistlab.data import DATASETS

    if name not in DATASETS and Path(name).is_dir():
        return str(Path(name).resolve())
    return name


def check_model_fits_data(dataset, split: Split) -> None:
    """Refuse data a model cannot learn or be scored on, before any training: every class
    must have training images."""
    num_classes = len(dataset.class_names)
    missing = sorted(set(range(num_classes)) - set(np.unique(split.train_labels).tolist()))
    if missing:
        names = ", ".join(str(dataset.class_names[k]) for k in missing[:5])
        raise ConfigError(f"the {len(split.train_labels)} training images hold no example of "
                          f"class {names}{' ...' if len(missing) > 5 else ''}: "
                          "use a larger --limit-train")


def _build(config: TrainConfig):
    """The unfitted model of a configuration; an ensemble's members are loaded from their
    runs."""
    if config.model == "ensemble":
        from mnistlab.models.ensemble import EnsembleModel

        return EnsembleModel(models=[load_model(Path(member))
                                     for member in config.model_config["members"]],
                             prefit=True, seed=config.seed)
    return build_model(config.model, dict(config.model_config), config.seed)


def train_and_evaluate(config: TrainConfig, run_dir: Path | None = None, *,
                       data_dir: Path | None = None, dataset=None, overwrite: bool = False,
                       progress: bool = True, checkpoints: bool = True,
                       checkpoint_every: int | None = None, strategy: str = "default",
                       devices: int | None = None) -> RunResult:
    """Train `config`'s model, evaluate it on the test set, and write a run directory.

    `dataset` (a loaded `Dataset`) skips loading; otherwise `config.dataset` is loaded from
    `data_dir` or the usual sources. This is an entry point: it turns on TensorFlow's op
    determinism for the process, so the same seed gives the same run.

    The run directory exists from the start, marked "running" in run.json, and holds the
    checkpoints (every epoch, at least every 2 minutes, or every `checkpoint_every` steps;
    none with `checkpoints=False`); it is marked "completed" last, once everything is
    written, so nothing takes an unfinished run for a finished one. A loss that becomes NaN
    marks it "failed" and raises `TrainingDivergedError`; Ctrl-C or SIGTERM stops at the
    next chunk of steps, after a checkpoint, marks it "interrupted" and raises
    `TrainingInterrupted`: `resume_run` continues it, to the same numbers.

    `strategy` runs the hand-written loop on `tf.distribute` (see `training.distribute`):
    "mirrored" over the local GPUs or `devices` logical CPU devices, "multi-worker" over the
    processes named by `TF_CONFIG`, of which only the chief (worker 0) writes `run_dir`.
    """
    validate(config)
    if strategy != "default" and config.model not in DISTRIBUTED_MODELS:
        raise ConfigError(f"a {config.model} trains in one process; --strategy is for "
                          f"{', '.join(DISTRIBUTED_MODELS)}")
    config = dataclasses.replace(config, dataset=resolve_dataset_name(config.dataset))
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
    from mnistlab.training.distribute import worker_role

    chief = worker_role()[0] == 0 or strategy != "multi-worker"
    if chief:
        check_run_target(run_dir, overwrite)
    else:  # other workers train in a scratch directory the chief never sees
        run_dir, overwrite = Path(tempfile.mkdtemp(prefix="mnistlab-worker-")) / "run", False
    if dataset is None:
        dataset = _load_dataset(config, data_dir, progress and chief)
    split = split_dataset(dataset, config)
    check_model_fits_data(dataset, split)
    # Marked as mnistlab's; with --overwrite the old run makes way for the new one.
    create_run_dir(run_dir, overwrite)
    write_json(run_dir / CONFIG_FILE, {**config.to_dict(), "versions": package_versions(),
                                       "data": dataset_record(dataset, split)})
    info = {"status": "running", "model": config.model, "preset": config.preset,
            "started": _now()}
    if strategy != "default":
        info["strategy"] = strategy
    write_json(run_dir / RUN_FILE, info)
    try:
        return _train_in(run_dir, config, dataset, split, info, progress=progress and chief,
                         checkpoints=checkpoints, checkpoint_every=checkpoint_every,
                         strategy=strategy, devices=devices)
    finally:
        if not chief:
            shutil.rmtree(run_dir.parent, ignore_errors=True)


def resume_run(run_dir: Path, *, data_dir: Path | None = None, dataset=None,
               force: bool = False, progress: bool = True, checkpoints: bool = True,
               checkpoint_every: int | None = None, devices: int | None = None) -> RunResult:
    """Continue an interrupted or killed run from its newest checkpoint (from the start
    when it has none), with the configuration it was started with.

    Refuses, unless `force`, when the data's checksums or the package versions differ from
    those recorded: the resumed run would not be the run that was started. A multi-worker
    run is resumed by every worker with the same `run_dir` (and `TF_CONFIG`), each from the
    chief's newest checkpoint.
    """
    from mnistlab.training.distribute import worker_role

    run_dir = Path(run_dir)
    run = load_run(run_dir)
    config = run_config(run)
    if run.status == "completed":  # nothing left to do: resuming twice is harmless
        return RunResult(run_dir, config, run.metrics, run.history, load_model(run_dir),
                         resumed=False)
    options = dict(data_dir=data_dir, dataset=dataset, force=force, checkpoints=checkpoints,
                   checkpoint_every=checkpoint_every, devices=devices)
    if run.info.get("strategy") == "multi-worker" and worker_role()[0] != 0:
        # A worker other than the chief continues from the chief's checkpoint (the replicas
        # hold the same variables), in a scratch copy of the run that the chief never sees:
        # the chief's run directory must be readable here (one host, or a shared disk).
        scratch = Path(tempfile.mkdtemp(prefix="mnistlab-worker-"))
        try:
            shutil.copytree(run_dir, scratch / "run", symlinks=True)
            return _resume(scratch / "run", config, progress=False, **options)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return _resume(run_dir, config, progress=progress, **options)


def _resume(run_dir: Path, config: TrainConfig, *, data_dir: Path | None, dataset,
            force: bool, progress: bool, checkpoints: bool, checkpoint_every: int | None,
            devices: int | None) -> RunResult:
    run = load_run(run_dir)
    if dataset is None:
        dataset = _load_dataset(config, data_dir, progress)
    recorded = run.config.get("data", {}).get("checksums", {})
    if not force and recorded != dict(dataset.checksums):
        raise RunError(f"the data's checksums differ from those {run_dir} was started with "
                       "(use --force to resume anyway)")
    versions = run.config.get("versions", {})
    changed = sorted(name for name, version in package_versions().items()
                     if name in versions and versions[name] != version)
    if not force and changed:
        raise RunError(f"package versions differ from those {run_dir} was started with "
                       f"({', '.join(changed)}; use --force to resume anyway)")
    split = split_dataset(dataset, config)
    info = {key: value for key, value in run.info.items()
            if key not in ("error", "step", "finished")}
    info.update(status="running", resumed=_now())
    write_json(run_dir / RUN_FILE, info)
    result = _train_in(run_dir, config, dataset, split, info, progress=progress,
                       checkpoints=checkpoints, checkpoint_every=checkpoint_every,
                       resume=True, strategy=info.get("strategy", "default"),
                       devices=devices)
    result.resumed = True
    return result


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _train_in(run_dir: Path, config: TrainConfig, dataset, split: Split, info: dict,
              **options) -> RunResult:
    """Fit in the run directory, then evaluate and write the finished run; an unexpected
    error leaves the run marked failed (never running, never completed)."""
    try:
        return _fit_and_finish(run_dir, config, dataset, split, info, **options)
    except Exception as error:
        status = read_json(run_dir / RUN_FILE).get("status")
        if status == "running":
            write_json(run_dir / RUN_FILE, {**info, "status": "failed",
                                            "error": f"{type(error).__name__}: {error}"[:500]})
        raise


def _fit_and_finish(run_dir: Path, config: TrainConfig, dataset, split: Split, info: dict, *,
                    progress: bool, checkpoints: bool, checkpoint_every: int | None,
                    resume: bool = False, strategy: str = "default",
                    devices: int | None = None) -> RunResult:
    """Fit in the run directory, then evaluate and write the finished run."""
    from mnistlab.report import write_run_figures
    from mnistlab.tensorboard import EventWriter
    from mnistlab.training.checkpoint import STOP, Checkpointer, TrainingInterrupted
    from mnistlab.training.distribute import make_strategy

    # Before any other TensorFlow work: logical devices and collectives are set up first.
    distribution = make_strategy(strategy, devices)
    enable_determinism()
    model = _build(config)
    checkpoint = None
    if checkpoints:
        checkpoint = Checkpointer(run_dir / CHECKPOINT_DIR, every_steps=checkpoint_every,
                                  resume=resume)
    events = EventWriter(run_dir) if config.model in EVENT_MODELS else None
    validation = None if split.val_images is None else (split.val_images, split.val_labels)

    def stopped(status: str, **details) -> None:
        write_history(run_dir, list(getattr(model, "history_", [])))
        write_json(run_dir / RUN_FILE, {**info, "status": status, **details})

    start = time.perf_counter()
    try:
        with STOP, training_progress(f"{config.preset or config.model}",
                                     progress) as show:
            def callback(step: int, total: int, record: dict | None) -> None:
                show(step, total, record)
                if record is not None and events is not None:
                    events.record(record)

            extra = {} if distribution is None else {"strategy": distribution}
            model.fit(split.train_images, split.train_labels, validation_data=validation,
                      callback=callback, checkpoint=checkpoint, **extra)
    except TrainingDivergedError as error:
        stopped("failed", error=str(error))
        raise
    except TrainingInterrupted as error:
        stopped("interrupted", step=error.step)
        error.run_dir = run_dir
        raise
    except KeyboardInterrupt:
        stopped("interrupted")
        raise
    except Exception as error:
        from mnistlab.training.distribute import LOST_WORKER_ERRORS

        if distribution is None or type(error).__name__ not in LOST_WORKER_ERRORS:
            raise
        stopped("failed", error="a worker stopped answering")
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise RunError(f"training stopped: another worker stopped answering "
                       f"({type(error).__name__}: {first_line})") from None
    finally:
        if events is not None and sys.exc_info()[0] is not None:
            events.close()
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    probabilities = model.predict_proba(split.test_images)
    predict_seconds = time.perf_counter() - start
    model_dir = run_dir / MODEL_DIR
    if model_dir.exists():  # from an earlier attempt that died while finishing
        shutil.rmtree(model_dir)
    model_dir.mkdir()
    model.save(model_dir)
    metrics = compute_metrics(split.test_labels, probabilities, dataset.class_names)
    metrics.update({
        "train_seconds": round(train_seconds, 4),
        "predict_seconds": round(predict_seconds, 4),
        "train_examples_per_second": round(model.examples_seen_ / train_seconds, 1),
        "parameters": int(model.count_parameters()),
        "model_bytes": _model_size(model_dir),
    })
    history = list(model.history_)
    if split.val_images is not None:
        # Every model gets its final validation score, including those without a history.
        scores = compute_metrics(split.val_labels, model.predict_proba(split.val_images),
                                 dataset.class_names)
        metrics["val_accuracy"] = scores["test_accuracy"]
        metrics["val_loss"] = scores["test_loss"]
    write_history(run_dir, history)
    write_json(run_dir / METRICS_FILE, metrics)
    write_run_figures(run_dir, model, history, split.test_images, split.test_labels,
                      probabilities, dataset.class_names,
                      title=f"{config.preset or config.model} on {dataset.name}")
    if events is not None:
        last_step = history[-1]["step"] if history else 0
        events.scalars(last_step, {"test/accuracy": metrics["test_accuracy"],
                                   "test/loss": metrics["test_loss"]})
        events.hyperparameters({**config.model_config, "seed": config.seed}, run_dir.name)
        events.close()
    write_json(run_dir / RUN_FILE, {**info, "status": "completed", "finished": _now()})
    shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)
    return RunResult(run_dir, config, metrics, history, model)


def check_member_runs(members: Sequence[str | Path]) -> dict:
    """Check that `members` are completed runs on the same classes; return what they share.

    Returns `{"dataset", "class_names", "limit_test", "models"}` from the members' saved
    configurations. Raises `RunError` naming the first run that is missing, not a run, not
    completed, or on other class names than the first.
    """
    if not members:
        raise RunError("an ensemble needs at least one member run")
    shared = None
    models = []
    for member in members:
        run = load_run(Path(member))
        if run.status != "completed":
            raise RunError(f"{member} is a {run.status} run and has no model to load")
        if run.info.get("model") == "ensemble":
            raise RunError(f"{member} is an ensemble; an ensemble's members must be single "
                           "models")
        class_names = run.config.get("data", {}).get("class_names")
        models.append(run.info.get("model"))
        if shared is None:
            shared = {"dataset": run.config.get("dataset"), "class_names": class_names,
                      "limit_test": run.config.get("limit_test")}
        elif class_names != shared["class_names"]:
            raise RunError(f"{member} was trained on classes {class_names}, but "
                           f"{members[0]} on {shared['class_names']}: cannot ensemble them")
    return {**shared, "models": models}


def ensemble_runs(run_dirs: Sequence[str | Path], out: Path | None = None, *,
                  data_dir: Path | None = None, overwrite: bool = False,
                  progress: bool = True) -> RunResult:
    """Average the probabilities of completed runs into a run directory of model
    'ensemble', evaluated on the members' test set; the members' models are saved in it."""
    members = tuple(str(Path(path).resolve()) for path in run_dirs)
    shared = check_member_runs(members)
    config = make_config("ensemble", model_options={"members": members},
                         dataset=shared["dataset"], limit_test=shared["limit_test"])
    return train_and_evaluate(config, out, data_dir=data_dir, overwrite=overwrite,
                              progress=progress)


@dataclass
class Evaluation:
    """Metrics recomputed from a saved model, beside those recorded at training time."""

    run_dir: Path
    metrics: dict
    recorded: dict
    checksums_match: bool

    # Recomputed metrics may differ from the recorded ones by float rounding only.
    RELATIVE_TOLERANCE = 1e-6

    @property
    def same_as_recorded(self) -> bool:
        """Whether test accuracy and loss are those recorded at training time."""
        def close(now, then) -> bool:
            return (isinstance(now, (int, float)) and isinstance(then, (int, float))
                    and abs(now - then) <= self.RELATIVE_TOLERANCE * max(1.0, abs(then)))

        return all(close(self.metrics.get(key), self.recorded.get(key))
                   for key in ("test_accuracy", "test_loss"))


def run_config(run) -> TrainConfig:
    """The `TrainConfig` a loaded run was trained with."""
    return config_from_dict({key: value for key, value in run.config.items()
                             if key not in ("versions", "data")})


def run_test_split(run_dir: Path, *, data_dir: Path | None = None, dataset=None,
                   progress: bool = False) -> tuple[Split, object]:
    """The split a run was tested on (same dataset, limits and seed), and its dataset."""
    config = run_config(load_run(run_dir))
    if dataset is None:
        dataset = _load_dataset(config, data_dir, progress)
    return split_dataset(dataset, config), dataset


def evaluate_run(run_dir: Path, *, data_dir: Path | None = None, progress: bool = False,
                 dataset=None) -> Evaluation:
    """Reload a run's model and recompute its test metrics on the same test images."""
    run = load_run(run_dir)
    model = load_model(run_dir)
    split, dataset = run_test_split(run_dir, data_dir=data_dir, dataset=dataset,
                                    progress=progress)
    check_model_fits_images(model, split.test_images, Path(run_dir) / "model")
    probabilities = model.predict_proba(split.test_images)
    metrics = compute_metrics(split.test_labels, probabilities, dataset.class_names)
    recorded_checksums = run.config.get("data", {}).get("checksums", {})
    return Evaluation(Path(run_dir), metrics, run.metrics,
                      recorded_checksums == dict(dataset.checksums))


def check_model_fits_images(model, images: np.ndarray, source: Path) -> None:
    """Refuse, in one line, a model whose recorded image shape is not the data's.

    The shape comes from the model's params.json, a file people can edit; a wrong one would
    otherwise fail deep inside the model (or scramble the pixels of a same-sized shape).
    """
    shape = tuple(images.shape[1:])
    fitted = tuple(model.image_shape_)
    if fitted not in (shape, (int(np.prod(shape)),)):
        raise RunError(f"the model in {source} was fitted on images of shape {fitted} "
                       f"(fitted.image_shape_ in its params.json), but the run's test images "
                       f"have shape {shape}")


def _reproduce_run(config: TrainConfig, path: Path, dataset, *, resume: bool,
                   progress: bool) -> None:
    """Train one run of a reproduction, or with `resume` finish it: a completed run is kept,
    an interrupted or killed one resumed, and one whose directory was made but never marked
    (a second Ctrl-C stops at once) trained anew. A stop request made since the last run
    stops here, before anything of this one is written."""
    from mnistlab.training.checkpoint import TrainingInterrupted, stop_requested

    requested = stop_requested()
    if requested:
        raise TrainingInterrupted(None, requested)
    if resume and is_run(path):
        if load_run(path).status != "completed":
            resume_run(path, dataset=dataset, progress=progress)
        return
    # With `resume`, a directory of ours that never became a run makes way (`overwrite`
    # replaces only what mnistlab provably wrote).
    train_and_evaluate(config, path, dataset=dataset, progress=progress, overwrite=resume)


def _reproduce_on_ray(pairs: list, out_dir: Path, dataset, *, resume: bool,
                      address: str | None, progress: bool) -> None:
    """Train a reproduction's (configuration, run directory) pairs as Ray Tune trials; a
    `RunError` naming the first run that did not complete, after all have ended."""
    from mnistlab.sweep import run_many

    def report(index: int, outcome) -> None:
        if progress:
            print(f"{outcome.run_dir.name}: {outcome.status}"
                  + (f" in {outcome.seconds:.0f} s" if outcome.seconds else ""),
                  file=sys.stderr, flush=True)

    outcomes = run_many(pairs, dataset=dataset, resume=resume, address=address,
                        on_finish=report)
    unfinished = [outcome for outcome in outcomes if outcome.status not in ("completed",
                                                                            "skipped")]
    if unfinished:
        first = unfinished[0]
        raise RunError(f"{len(unfinished)} of the reproduction's runs did not finish "
                       f"({first.run_dir.name}: {first.status}"
                       f"{': ' + first.error if first.error else ''}); the others are kept; "
                       f"continue with: mnistlab reproduce --resume {out_dir} --parallel")


# The tutorial's models, in the order it trains them.
# Each softmax variant is followed by the same variant as the tutorial's cells are written.
TUTORIAL_PRESETS = ("tutorial-rf", "tutorial-v1", "tutorial-v1-as-written", "tutorial-v2",
                    "tutorial-v2-as-written", "tutorial-v3", "tutorial-v3-as-written")
# The neural models that `reproduce(beyond=True)` adds beside them.
BEYOND_PRESETS = ("mlp", "cnn-fast", "cnn")


def reproduce(out_dir: Path | None = None, *, dataset_name: str = "mnist",
              data_dir: Path | None = None, seed: int = 0, num_seeds: int = 1,
              limit_train: int | None = None, limit_test: int | None = None,
              presets: Sequence[str] = TUTORIAL_PRESETS, beyond: bool = False,
              overwrite: bool = False, progress: bool = True, resume: bool = False,
              parallel: bool = False, address: str | None = None) -> dict:
    """Run the tutorial end to end and write its report; returns the summary.

    Each preset becomes a run directory `out_dir/<preset>`; `report.html` (self-contained),
    `report.md` and `summary.json` sit beside them, `summary.json` written last: a
    reproduction without it is unfinished. `beyond=True` appends the neural presets of
    `BEYOND_PRESETS`. With `num_seeds` above 1, every preset is also trained with the
    seeds after `seed` (`out_dir/<preset>-seed<k>`) and the report gives the spread of test
    accuracy beside the tutorial's single number.

    An interrupted reproduction keeps the runs it finished; `resume=True` (with the same
    `out_dir`; the other arguments are read from its `reproduce.json`) resumes the
    interrupted run and trains the missing ones.

    `parallel=True` trains the runs as trials on Ray Tune (`sweep.run_many`: a local Ray
    instance, one CPU and one TensorFlow thread per run, or the cluster at `address`) instead
    of one after another; each run's numbers are the same either way. A run that fails or is
    interrupted there stops the reproduction before its report, naming the run; the others
    are kept for `resume=True`.
    """
    from mnistlab.config import make_config
    from mnistlab.report import ReportRow, write_reproduction_report
    from mnistlab.training.checkpoint import STOP, TrainingInterrupted

    if resume:
        if out_dir is None:
            raise ConfigError("name the reproduction to resume")
        out_dir = Path(out_dir)
        if (out_dir / SUMMARY_FILE).is_file():  # finished already: nothing left to do
            summary = read_json(out_dir / SUMMARY_FILE)
            if not isinstance(summary, dict) or not isinstance(summary.get("models"), list):
                raise RunError(f"{out_dir / SUMMARY_FILE} is damaged")
            return {**summary, "out_dir": str(out_dir)}
        arguments = read_json(out_dir / REPRODUCE_FILE)
        if not isinstance(arguments, dict):
            raise RunError(f"{out_dir / REPRODUCE_FILE} does not hold a JSON object")
        try:
            dataset_name, seed, num_seeds = (arguments["dataset"], arguments["seed"],
                                             arguments["num_seeds"])
            limit_train, limit_test = arguments["limit_train"], arguments["limit_test"]
            presets, beyond = tuple(arguments["presets"]), False
        except (KeyError, TypeError):
            raise RunError(f"{out_dir / REPRODUCE_FILE} is damaged") from None
    if isinstance(num_seeds, bool) or not isinstance(num_seeds, int) or num_seeds < 1:
        raise ConfigError(f"the number of seeds must be a positive whole number, "
                          f"got {num_seeds!r}")
    out_dir = Path(out_dir) if out_dir is not None else unique_run_dir("reproduce")
    presets = tuple(presets) + (BEYOND_PRESETS if beyond else ())
    configs = [make_config(preset=name, dataset=dataset_name, seed=seed,
                           limit_train=limit_train, limit_test=limit_test) for name in presets]
    if not resume:
        check_run_target(out_dir, overwrite, marker=REPRODUCE_FILE)
    # A signal from here on is a stop request, kept for the next safe point (the training
    # loop's next chunk boundary, or before the next run), never a half-written run.
    with STOP:
        dataset = _load_dataset(configs[0], data_dir, progress)
        if not resume:
            create_run_dir(out_dir, overwrite, marker=REPRODUCE_FILE)
            write_json(out_dir / REPRODUCE_FILE, {
                "dataset": dataset_name, "seed": seed, "num_seeds": num_seeds,
                "limit_train": limit_train, "limit_test": limit_test, "presets": list(presets)})

        # Per preset, its runs: (configuration with the seed, run directory).
        planned = [[(dataclasses.replace(config, seed=run_seed),
                     out_dir / (config.preset if run_seed == seed
                                else f"{config.preset}-seed{run_seed}"))
                    for run_seed in range(seed, seed + num_seeds)] for config in configs]
        if parallel:
            _reproduce_on_ray([pair for runs in planned for pair in runs], out_dir, dataset,
                              resume=resume, address=address, progress=progress)
        rows = []
        for config, runs in zip(configs, planned):
            seed_runs = []
            for run_config, path in runs:
                try:
                    if parallel:  # trained above; a failed run kept by `resume` is no result
                        if load_run(path).status != "completed":
                            raise RunError(f"{path} did not complete; resume it with: "
                                           f"mnistlab train --resume {path}")
                    else:
                        _reproduce_run(run_config, path, dataset, resume=resume,
                                       progress=progress)
                except TrainingInterrupted as error:
                    error.resume_command = f"mnistlab reproduce --resume {out_dir}"
                    raise
                seed_runs.append(load_run(path))
            rows.append(ReportRow(config.preset, seed_runs[0], seed_runs))
        summary = write_reproduction_report(
            out_dir, rows, dataset=dataset.name, seed=seed, num_seeds=num_seeds,
            limits={"limit_train": limit_train, "limit_test": limit_test})
    summary["out_dir"] = str(out_dir)
    return summary
