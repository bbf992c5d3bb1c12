"""Progress bars for long work, drawn with rich; quiet when asked to be."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# (step, total_steps, latest record or None) -> None
ProgressCallback = Callable[[int, int, "dict | None"], None]


@contextlib.contextmanager
def training_progress(description: str, enabled: bool = True,
                      console: Console | None = None) -> Iterator[ProgressCallback]:
    """Yield a callback that advances a bar showing the latest loss and accuracy.

    With `enabled=False` the callback does nothing, so library code calls it regardless.
    """
    if not enabled:
        yield lambda step, total, record: None
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[metrics]}"), TimeElapsedColumn(), TextColumn("eta"),
        TimeRemainingColumn(), console=console or Console(stderr=True), transient=False)
    with progress:
        task = progress.add_task(description, total=None, metrics="")

        def update(step: int, total: int, record: dict | None) -> None:
            fields = {}
            if record:
                parts = [f"{name} {record[key]:.4f}" for key, name in (
                    ("train_loss", "loss"), ("train_accuracy", "acc"),
                    ("val_loss", "val_loss"), ("val_accuracy", "val_acc"))
                    if record.get(key) is not None]
                fields["metrics"] = "  ".join(parts)
            progress.update(task, completed=step, total=total, **fields)

        yield update
