"""Commands that look at run directories: runs (list them) and compare (side by side)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mnistlab.cli.common import add_command
from mnistlab.errors import ConfigError
from mnistlab.runs import DamagedRun, load_run, scan_runs

# --sort KEY: the value a run is sorted on, and whether the largest comes first.
SORT_KEYS = {
    "name": ("name", False), "model": ("model_name", False), "status": ("status", False),
    "accuracy": ("test_accuracy", True), "loss": ("test_loss", False),
    "time": ("train_seconds", False), "params": ("parameters", False),
    "started": ("started", False),
}
# Settings of a run that `compare` shows when they differ, with their labels.
RUN_SETTINGS = (("preset", "preset"), ("dataset", "dataset"), ("seed", "seed"),
                ("limit_train", "limit train"), ("limit_test", "limit test"),
                ("validation_split", "validation split"), ("train_examples", "train images"),
                ("test_examples", "test images"))


def register(subparsers) -> None:
    """Add the commands that read run directories."""
    runs = add_command(
        subparsers, "runs", help="list runs and their key metrics", func=run_runs,
        description="List the run directories under DIRECTORY (default runs): name, model, "
                    "status, test accuracy and loss, training time, parameters, and the data "
                    "used when it was a subset. A table when it fits the terminal, one block "
                    "per run when it does not. Damaged runs are listed as such.",
        examples=["mnistlab runs", "mnistlab runs runs/reproduction --sort accuracy",
                  "mnistlab runs --filter tutorial-v   # name, model, preset or status",
                  "mnistlab runs --json                # for scripts"])
    runs.add_argument("directory", nargs="?", type=Path, default=Path("runs"),
                      help="where to look for runs, at any depth (default runs)")
    runs.add_argument("--sort", choices=tuple(SORT_KEYS), default="name", metavar="KEY",
                      help=f"order by {', '.join(SORT_KEYS)} (default name; accuracy: best "
                           "first)")
    runs.add_argument("--filter", default=None, metavar="TEXT",
                      help="only runs whose name, model, preset or status contains TEXT")
    runs.add_argument("--json", action="store_true", help="print the runs as a JSON list")

    compare = add_command(
        subparsers, "compare", help="compare runs side by side", func=run_compare,
        description="Compare runs side by side: the settings that differ between them (model "
                    "options, seed, data limits, dataset), then their metrics. --plot writes "
                    "one figure with their training curves overlaid and a bar chart of their "
                    "test accuracy.",
        examples=["mnistlab compare runs/reproduction/tutorial-v1 runs/reproduction/tutorial-v2",
                  "mnistlab compare runs/reproduction/tutorial-v1 runs/reproduction/tutorial-v3"
                  " --plot v1-v3.png"])
    compare.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR",
                         help="run directories to compare")
    compare.add_argument("--plot", type=Path, default=None, metavar="FILE.png",
                         help="also write a figure of their training curves and test accuracy")
    compare.add_argument("--json", action="store_true",
                         help="print the comparison as JSON")


# ------------------------------------------------------------------------------ formatting


def format_value(value: Any) -> str:
    """A setting or metric for people: 0.9123, 0.01, 77,193, on/off, '-' when missing."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(item) for item in value)
    return str(value)


def _fixed(value: Any, digits: int = 4) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.{digits}f}"


def _seconds(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{value:.2f} s" if value < 100 else f"{value:,.0f} s"


def _size(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value:.0f} B"


# ------------------------------------------------------------------------------ runs


def describe_run(run, root: Path) -> dict:
    """A run (or a damaged one) as JSON-ready data for the listing."""
    path = Path(run.path)
    name = path.relative_to(root).as_posix() if path != root else path.name
    if isinstance(run, DamagedRun):
        return {"name": name, "path": str(path), "status": "damaged", "problem": run.problem}
    info, config, metrics = run.info, run.config, run.metrics
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    limits = config.get("limit_train"), config.get("limit_test")
    step = info.get("step")
    if step is None and run.history:
        step = run.history[-1].get("step")
    return {
        "name": name, "path": str(path), "status": run.status,
        "step": None if run.status == "completed" else step,
        "model": info.get("model"), "preset": info.get("preset"),
        "model_name": info.get("preset") or info.get("model"),
        "dataset": data.get("name") or config.get("dataset"), "seed": config.get("seed"),
        "limit_train": limits[0], "limit_test": limits[1],
        "subset": None if not any(limits) else
        f"subset {format_value(limits[0]) if limits[0] else 'all'}/"
        f"{format_value(limits[1]) if limits[1] else 'all'}",
        "train_examples": data.get("train_examples"),
        "test_examples": metrics.get("test_examples", data.get("test_examples")),
        "test_accuracy": metrics.get("test_accuracy"), "test_loss": metrics.get("test_loss"),
        "train_seconds": metrics.get("train_seconds"), "parameters": metrics.get("parameters"),
        "started": info.get("started"), "finished": info.get("finished"),
        "error": info.get("error"),
    }


def status_text(item: dict) -> str:
    """'completed', 'interrupted at step 1,200', 'damaged', ..."""
    if item["status"] not in ("completed", "damaged") and item.get("step") is not None:
        return f"{item['status']} at step {item['step']:,}"
    return item["status"]


def select_runs(items: list[dict], sort: str = "name", text: str | None = None) -> list[dict]:
    """The runs whose name, model, preset or status contains `text` (any case), sorted by
    `sort` (a key of `SORT_KEYS`), runs without that value last."""
    if text:
        needle = text.lower()
        items = [item for item in items if any(
            needle in str(item.get(key) or "").lower()
            for key in ("name", "model", "preset", "status"))]
    key, descending = SORT_KEYS[sort]
    present = [item for item in items if item.get(key) is not None]
    missing = [item for item in items if item.get(key) is None]
    present.sort(key=lambda item: (item[key], item["name"]), reverse=descending)
    return present + sorted(missing, key=lambda item: item["name"])


def _runs_table(items: list[dict], title: str) -> Table:
    table = Table(title=title)
    for column in ("run", "model", "status", "test acc", "test loss", "train", "params",
                   "data"):
        table.add_column(column, no_wrap=True, justify="left" if column in (
            "run", "model", "status", "data") else "right")
    for item in items:
        if item["status"] == "damaged":
            table.add_row(escape(item["name"]), "", "[red]damaged[/red]", "", "", "", "", "")
            continue
        table.add_row(escape(item["name"]), escape(str(item["model_name"])),
                      escape(status_text(item)), _fixed(item["test_accuracy"]),
                      _fixed(item["test_loss"]), _seconds(item["train_seconds"]),
                      format_value(item["parameters"]), item["subset"] or "full")
    return table


def _run_block(item: dict) -> list[str]:
    """The narrow layout of one run: the lines under its name, indented."""
    if item["status"] == "damaged":
        return [f"  [red]damaged[/red]: {escape(item['problem'])}"]
    first = [str(item["model_name"]), status_text(item)]
    if item["subset"]:
        first.append(item["subset"])
    second = [f"test acc {_fixed(item['test_accuracy'])}", f"loss {_fixed(item['test_loss'])}",
              _seconds(item["train_seconds"])]
    if item["parameters"] is not None:
        second.append(f"{format_value(item['parameters'])} params")
    return ["  " + escape(", ".join(first)),
            "  " + escape(", ".join(value for value in second if value != "-"))]


def run_runs(args: argparse.Namespace) -> int:
    """`mnistlab runs`: the runs under a directory, as a table, blocks or JSON."""
    root = args.directory
    found = [describe_run(run, root) for run in scan_runs(root)]
    items = select_runs(found, args.sort, args.filter)
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    console = Console(highlight=False)
    if not items:
        console.print(f"no runs under {escape(str(root))} match {escape(repr(args.filter))}"
                      if found else f"no runs yet under {escape(str(root))}")
        return 0
    table = _runs_table(items, f"runs under {escape(str(root))}")
    natural = table.__rich_measure__(console, console.options.update_width(10_000)).maximum
    wide = natural <= console.width
    if wide:
        console.print(table)
    else:
        # One block per run, its name on a line of its own, never cut.
        console.print(f"runs under {escape(str(root))}")
        for item in items:
            console.print(f"[bold]{escape(item['name'])}[/bold]", soft_wrap=True)
            for line in _run_block(item):
                console.print(line)
    damaged = [item for item in items if item["status"] == "damaged"]
    if damaged:
        console.print(f"{len(damaged)} damaged run{'s' if len(damaged) > 1 else ''}: "
                      "files that cannot be read as a run")
        if wide:  # the blocks already said what is wrong
            for item in damaged:
                console.print(f"  {escape(item['name'])}: {escape(item['problem'])}")
    return 0


# ------------------------------------------------------------------------------ compare


# Metric rows of `compare`, with their labels and formats.
COMPARE_METRICS = {
    "test_accuracy": ("test accuracy", _fixed), "test_loss": ("test loss", _fixed),
    "train_seconds": ("train time", _seconds), "predict_seconds": ("predict time", _seconds),
    "train_examples_per_second": ("examples/s", lambda value: "-" if value is None
                                  else f"{value:,.0f}"),
    "parameters": ("parameters", format_value), "model_bytes": ("model size", _size),
}
_SETTING_LABELS = dict(RUN_SETTINGS)


def setting_label(key: str) -> str:
    """A setting's label: its own for run settings, the flag's name for model options
    (`n_estimators` -> `trees`)."""
    if key in _SETTING_LABELS or key == "model":
        return _SETTING_LABELS.get(key, key)
    from mnistlab.cli.common import option_flag

    return option_flag(key).lstrip("-")


def distinct_names(paths: Sequence[Path]) -> list[str]:
    """The shortest trailing parts of each path that tell the paths apart (the directory's
    own name when that is enough)."""
    parts = [Path(path).resolve().parts for path in paths]
    depth = 1
    while True:
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names) or depth >= max(len(p) for p in parts):
            return names
        depth += 1


def run_settings(run) -> dict[str, Any]:
    """A run's settings, flattened: its run options, then its model options by name."""
    config = run.config
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    settings = {"model": run.info.get("model")}
    for key, _ in RUN_SETTINGS:
        if key in ("dataset", "train_examples", "test_examples"):
            value = data.get("name" if key == "dataset" else key)
            settings[key] = config.get(key) if value is None else value
        else:
            settings[key] = config.get(key)
    for name, value in (config.get("model_config") or {}).items():
        settings[name] = value
    return settings


def compare_runs(runs: Sequence, names: Sequence[str]) -> dict:
    """Which settings differ between runs and which they share, and their metrics."""
    settings = [run_settings(run) for run in runs]
    keys = list(dict.fromkeys(key for item in settings for key in item))
    differ, same = {}, {}
    for key in keys:
        values = [item.get(key) for item in settings]
        if all(json.dumps(value) == json.dumps(values[0]) for value in values):
            same[key] = values[0]
        else:
            differ[key] = values
    metrics = {key: [run.metrics.get(key) for run in runs] for key in COMPARE_METRICS}
    return {"runs": [{"name": name, "path": str(run.path), "status": run.status}
                     for name, run in zip(names, runs)],
            "differences": differ, "same": same, "metrics": metrics}


def run_compare(args: argparse.Namespace) -> int:
    """`mnistlab compare`: what differs in the runs' settings, then their metrics."""
    if args.plot is not None and args.plot.suffix.lower() != ".png":
        raise ConfigError(f"--plot writes a PNG image: name a .png file, not {args.plot}")
    runs = [load_run(path) for path in args.run_dirs]
    names = distinct_names(args.run_dirs)
    comparison = compare_runs(runs, names)
    if args.plot is not None:
        _write_plot(runs, names, args.plot)
    if args.json:
        print(json.dumps(comparison, indent=2))
        return 0
    table = Table(title="comparison")
    table.add_column("")
    for name in names:
        table.add_column(escape(name), justify="right")
    table.add_row("model", *[escape(str(run.info.get("preset") or run.info.get("model", "?")))
                             for run in runs])
    table.add_row("status", *[escape(run.status) for run in runs])
    table.add_section()
    for key, values in comparison["differences"].items():
        if key in ("model", "preset"):
            continue  # shown above
        table.add_row(escape(setting_label(key)),
                      *[escape(format_value(value)) for value in values])
    table.add_section()
    for key, (label, show) in COMPARE_METRICS.items():
        table.add_row(label, *[show(value) for value in comparison["metrics"][key]])
    console = Console(highlight=False)
    console.print(table)
    if len(runs) > 1:
        same = ", ".join(f"{setting_label(key)} "
                         f"{format_value(value)}" for key, value in comparison["same"].items()
                         if value is not None)
        console.print(escape(f"same in all: {same}" if same else "no setting is the same"))
        if not comparison["differences"]:
            console.print("the runs' settings are identical")
    if args.plot is not None:
        console.print(f"figure: {escape(str(args.plot))}")
    return 0


def _write_plot(runs: Sequence, names: Sequence[str], path: Path) -> None:
    from mnistlab import plots
    from mnistlab.report import steps_per_epoch

    figure = plots.plot_run_comparison(
        {name: run.history for name, run in zip(names, runs)},
        {name: run.metrics.get("test_accuracy") for name, run in zip(names, runs)},
        {name: steps_per_epoch(run) for name, run in zip(names, runs)})
    plots.save_figure(figure, path)
