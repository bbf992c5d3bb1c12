"""What checkpoints and tf.distribute cost: training time side by side, in one run.

Each row trains the same model on the same subset in a fresh `mnistlab train` process and
reads the run's own `train_seconds` and `train_examples_per_second`:

- without checkpoints, with the default checkpoints (every epoch, at least every 2 minutes),
  and with a checkpoint every 50 steps;
- in one process, mirrored over 2 logical CPU devices, and as 2 local worker processes
  (MultiWorkerMirroredStrategy on loopback); on a 2-core machine no speed-up is expected:
  the table shows what the communication costs, as the extra milliseconds per step over
  the first row (the whole fit's time, so tracing and evaluation between chunks count).

    .venv/bin/python benchmarks/bench_scale.py --data-dir ../shared/datasets/mnist
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

# Each model's command and its batch size (for the milliseconds per step).
MODELS = {
    "softmax": (["softmax", "--preset", "tutorial-v3", "--limit-train", "30000"], 300),
    "cnn-fast": (["cnn", "--preset", "cnn-fast", "--steps", "400", "--limit-train", "30000"],
                 64),
}
VARIANTS = {
    "1 process, no checkpoints": ["--no-checkpoints"],
    "1 process, default checkpoints": [],
    "1 process, checkpoint every 50 steps": ["--checkpoint-every", "50"],
    "mirrored, 2 CPU devices": ["--no-checkpoints", "--strategy", "mirrored", "--devices", "2"],
    "2 local workers": ["--no-checkpoints", "--strategy", "multi-worker", "--local-workers", "2"],
}


def train(arguments: list[str], data_dir: str, out: Path) -> dict:
    command = [sys.executable, "-m", "mnistlab", "train", *arguments, "--data-dir", data_dir,
               "--limit-test", "1000", "--seed", "0", "--quiet", "--out", str(out)]
    subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads((out / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--variants", default=None,
                        help="comma-separated row numbers (from 0) of the variants to run")
    args = parser.parse_args()
    chosen = (range(len(VARIANTS)) if args.variants is None
              else [int(number) for number in args.variants.split(",")])
    table = Table(title="checkpoints and tf.distribute, side by side")
    for column in ("model", "variant", "train s", "images/s", "ms per step",
                   "vs first row, ms per step", "test acc"):
        table.add_column(column, justify="left" if column in ("model", "variant") else "right")
    with tempfile.TemporaryDirectory() as scratch:
        for model in args.models.split(","):
            base = None
            for index, (name, extra) in enumerate(VARIANTS.items()):
                if index not in chosen:
                    continue
                command, batch_size = MODELS[model]
                metrics = train(command + extra, args.data_dir,
                                Path(scratch) / f"{model}-{index}")
                seconds = metrics["train_seconds"]
                rate = metrics["train_examples_per_second"]
                step_ms = 1000 * batch_size / rate
                base = base or (seconds, step_ms)
                table.add_row(model, name, f"{seconds:.2f}", f"{rate:,.0f}", f"{step_ms:.2f}",
                              f"{seconds / base[0]:.2f}x, {step_ms - base[1]:+.2f} ms",
                              f"{metrics['test_accuracy']:.4f}")
    Console().print(table)


if __name__ == "__main__":
    main()
