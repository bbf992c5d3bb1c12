"""Progress bars for long work, drawn with rich; quiet when asked to be.

A bar fits the terminal it is drawn on: its width is the terminal's (or 80 columns in a file),
and the latest metrics are shortened to what fits beside it. Until the first step has run
(while TensorFlow compiles the step) it says "compiling" instead of a count.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column
from rich.text import Text

# (step, total_steps, latest record or None) -> None
ProgressCallback = Callable[[int, int, "dict | None"], None]

# The width of a progress line written to a file or a pipe.
FILE_WIDTH = 80
# The record keys shown beside the bar, with their short names, most important first.
SHOWN_METRICS = (("train_loss", "loss"), ("train_accuracy", "acc"),
                 ("val_loss", "val_loss"), ("val_accuracy", "val_acc"))


def terminal_width(stream=None) -> int | None:
    """The width of the terminal `stream` (default standard error) is on, None if none."""
    stream = sys.stderr if stream is None else stream
    try:
        if stream is None or not stream.isatty():
            return None
        return os.get_terminal_size(stream.fileno()).columns or None
    except (AttributeError, OSError, ValueError):
        return None


def progress_console(stream=None) -> Console:
    """A console on `stream` (default standard error) as wide as its terminal, or
    `FILE_WIDTH` columns when it is not a terminal (whatever COLUMNS says)."""
    stream = sys.stderr if stream is None else stream
    return Console(file=stream, width=terminal_width(stream) or FILE_WIDTH)


class StepsColumn(ProgressColumn):
    """'1,200/4,000' once the first step has run; `waiting` ("compiling") before."""

    def __init__(self, waiting: str = "compiling"):
        super().__init__(table_column=Column(no_wrap=True))
        self.waiting = waiting

    def render(self, task: Task) -> Text:
        if task.total is None or not task.completed:
            return Text(self.waiting, style="progress.elapsed")
        return Text(f"{int(task.completed):,}/{int(task.total):,}", style="progress.download")


def format_metrics(record: dict | None, room: int) -> str:
    """The record's loss and accuracy (then validation ones) as 'loss 0.3012  acc 0.9100',
    as many as fit in `room` characters."""
    text = ""
    for key, name in SHOWN_METRICS:
        if not record or record.get(key) is None:
            continue
        candidate = f"{text}  {name} {record[key]:.4f}" if text else f"{name} {record[key]:.4f}"
        if len(candidate) > room:
            break
        text = candidate
    return text


@contextlib.contextmanager
def training_progress(description: str, enabled: bool = True, console: Console | None = None,
                      waiting: str = "compiling") -> Iterator[ProgressCallback]:
    """Yield a callback that advances a bar showing the latest loss and accuracy.

    With `enabled=False` the callback does nothing, so library code calls it regardless.
    `waiting` is shown instead of the step count until the first step has run.
    """
    if not enabled:
        yield lambda step, total, record: None
        return
    console = console or progress_console()
    width = console.width
    # name, bar, count, metrics, elapsed, "eta", remaining, one space apart: the bar takes
    # what is left of the line after the two loss/accuracy figures, from 10 to 40 columns.
    fixed = len(description) + len("99,999/99,999") + len("0:00:00 eta 0:00:00") + 4
    bar_width = max(10, min(40, width - fixed - len("loss 0.0000  acc 0.0000")))
    room = max(0, width - fixed - bar_width)
    progress = Progress(
        TextColumn("[bold]{task.description}", table_column=Column(no_wrap=True)),
        BarColumn(bar_width=bar_width), StepsColumn(waiting),
        TextColumn("{task.fields[metrics]}", table_column=Column(no_wrap=True)),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=console, transient=False)
    with progress:
        task = progress.add_task(description, total=None, metrics="")

        def update(step: int, total: int, record: dict | None) -> None:
            fields = {"metrics": format_metrics(record, room)} if record else {}
            progress.update(task, completed=step, total=total, **fields)

        yield update
