"""Sweeps on Ray against a plain loop, and the per-fit time with and without the persistent
XLA compilation cache, on real MNIST.

    .venv/bin/python benchmarks/bench_sweep.py --data-dir ../shared/datasets/mnist

1. Eight small trials (tutorial-v3 on the first 3,000 training images, four learning rates
   times two seeds, validation split 0.1): a plain loop over `train_and_evaluate` in one
   process, against `mnistlab sweep` on a local Ray instance with 2 CPUs (one CPU and one
   TensorFlow thread per trial), each with the compilation cache off, empty (cold) and
   filled by an identical earlier run (warm). Every row is a fresh process, timed whole, as
   a user would run it; the ways alternate, `--repeats` times, and the table gives medians.
2. The per-fit time of the same small fit, twice in one process, in fresh processes: without
   the cache, with an empty one, and with a warm one; and without the cache and without
   reusing the compiled loop in the process (every fit traces and compiles its own, as
   before mnistlab kept them). A fit's time is mostly tracing and XLA compiling (its 90
   steps take about 0.03 s).

The loops of part 1 run with and without that reuse too (its trials differ in seed and
learning rate, which a reused loop takes as variables).

The machine is shared and noisy: compare the rows of one run, not numbers across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PRESET = "tutorial-v3"
LEARNING_RATES = (0.01, 0.003, 0.03, 0.001)
SEEDS = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="example: .venv/bin/python benchmarks/bench_sweep.py --data-dir "
               "../shared/datasets/mnist")
    parser.add_argument("--data-dir", type=Path, required=True,
                        help="directory holding the four MNIST IDX files (.gz or raw)")
    parser.add_argument("--limit-train", type=int, default=3000, metavar="N",
                        help="training images per trial (default 3000)")
    parser.add_argument("--limit-test", type=int, default=1000, metavar="N",
                        help="test images per trial (default 1000)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the Ray instance (2)")
    parser.add_argument("--processes", type=int, default=3, metavar="N",
                        help="fresh processes per way of fitting in part 2 (default 3)")
    parser.add_argument("--repeats", type=int, default=2, metavar="N",
                        help="runs of each way in part 1, alternating (default 2)")
    parser.add_argument("--skip-sweeps", action="store_true", help="only part 2")
    parser.add_argument("--child", choices=("loop", "fit"), help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--fits", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--no-reuse", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def trial_configs(args: argparse.Namespace) -> list:
    from mnistlab.sweep import make_plan

    plan = make_plan(None, preset=PRESET, grid={"learning_rate": list(LEARNING_RATES)},
                     seeds=SEEDS, limit_train=args.limit_train, limit_test=args.limit_test)
    return [plan.config(trial) for trial in plan.trials]


def child(args: argparse.Namespace) -> int:
    """In a fresh process: fit (part 2) or loop over the trials (part 1); print JSON."""
    started = time.perf_counter()
    cache = None
    if args.cache_dir is not None:
        from mnistlab.sweep import CompileCache

        cache = CompileCache(args.cache_dir)
        if not cache.start():
            raise SystemExit("the compile cache could not be started")
    from mnistlab.data import load_dataset
    from mnistlab.experiment import train_and_evaluate
    from mnistlab.models.softmax import SoftmaxRegression

    SoftmaxRegression._reuse_loops = not args.no_reuse

    dataset = load_dataset("mnist", data_dir=args.data_dir, progress=False)
    configs = trial_configs(args)
    if args.child == "fit":
        configs = [configs[0]] * args.fits
    fits, wholes = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for index, config in enumerate(configs):
            begin = time.perf_counter()
            result = train_and_evaluate(config, Path(scratch) / f"run-{index}",
                                        dataset=dataset, progress=False)
            wholes.append(time.perf_counter() - begin)
            fits.append(result.metrics["train_seconds"])
    if cache is not None:
        cache.publish()
    print(json.dumps({"fits": fits, "wholes": wholes,
                      "seconds": time.perf_counter() - started}))
    return 0


def run_child(args: argparse.Namespace, kind: str, cache_dir: Path | None,
              fits: int = 2, reuse: bool = True) -> dict:
    command = [sys.executable, __file__, "--child", kind, "--data-dir", str(args.data_dir),
               "--limit-train", str(args.limit_train), "--limit-test", str(args.limit_test),
               "--fits", str(fits)]
    if cache_dir is not None:
        command += ["--cache-dir", str(cache_dir)]
    if not reuse:
        command.append("--no-reuse")
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True, check=True)
    result = json.loads(finished.stdout.strip().splitlines()[-1])
    result["process"] = time.perf_counter() - started
    return result


def run_sweep(args: argparse.Namespace, out: Path, cache_root: Path | None) -> dict:
    grid = ",".join(f"{rate:g}" for rate in LEARNING_RATES)
    command = [sys.executable, "-m", "mnistlab", "sweep", "--preset", PRESET,
               "--grid", f"learning-rate={grid}", "--seeds", str(SEEDS),
               "--limit-train", str(args.limit_train), "--limit-test", str(args.limit_test),
               "--data-dir", str(args.data_dir), "--cpus", str(args.cpus), "--out", str(out),
               "--quiet"]
    environment = dict(os.environ)
    if cache_root is None:
        command.append("--no-compile-cache")
    else:
        environment["MNISTLAB_CACHE_DIR"] = str(cache_root)
    started = time.perf_counter()
    subprocess.run(command, capture_output=True, text=True, check=True, env=environment)
    seconds = time.perf_counter() - started
    document = json.loads((out / "sweep.json").read_text())
    statuses = {row["status"] for row in document["trials"]}
    if statuses != {"completed"}:
        raise SystemExit(f"the sweep in {out} did not complete: {statuses}")
    fits = [row["train_seconds"] for row in document["trials"]]
    return {"process": seconds, "inside": document["session"]["wall_seconds"], "fits": fits}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(args)
    from rich.console import Console
    from rich.table import Table

    console = Console()
    trials = len(LEARNING_RATES) * SEEDS
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as scratch:
        scratch = Path(scratch)
        if not args.skip_sweeps:
            ways = {("loop, 1 process, no loop reuse", "off"): [],
                    ("loop, 1 process", "off"): [], ("loop, 1 process", "warm"): [],
                    (f"sweep, Ray, {args.cpus} CPUs", "off"): [],
                    (f"sweep, Ray, {args.cpus} CPUs", "cold"): [],
                    (f"sweep, Ray, {args.cpus} CPUs", "warm"): []}
            loop_cache, sweep_cache = scratch / "loop-cache", scratch / "sweep-cache"
            run_child(args, "loop", loop_cache)  # fills the warm caches
            run_sweep(args, scratch / "sweep-fill", sweep_cache)
            for index in range(args.repeats):
                for (how, cache), results in ways.items():
                    if how.startswith("loop"):
                        results.append(run_child(args, "loop",
                                                 loop_cache if cache == "warm" else None,
                                                 reuse="no loop reuse" not in how))
                        continue
                    root = {"off": None, "warm": sweep_cache,
                            "cold": scratch / f"cold-cache-{index}"}[cache]
                    results.append(run_sweep(args, scratch / f"sweep-{cache}-{index}", root))
            table = Table(title=f"{trials} trials: {PRESET} on {args.limit_train:,} images, "
                                f"{len(LEARNING_RATES)} learning rates x {SEEDS} seeds "
                                f"(median of {args.repeats})")
            for column in ("how", "cache", "wall s", "s/trial", "fit s", "vs loop"):
                table.add_column(column, justify="left" if column == "how" else "right")
            base = statistics.median(
                r["process"] for r in ways[("loop, 1 process, no loop reuse", "off")])
            for (how, cache), results in ways.items():
                seconds = statistics.median(r["process"] for r in results)
                fit = statistics.median(f for r in results for f in r["fits"])
                table.add_row(how, cache, f"{seconds:.1f}", f"{seconds / trials:.2f}",
                              f"{fit:.2f}", f"{base / seconds:.2f}x")
            console.print(table)
            console.print("wall s: the whole command (Python, data, Ray's start and stop); "
                          "fit s: the median fit of a trial (tracing and compiling included)")
        fits = {"off, no loop reuse": [], "off": [], "cold": [], "warm": []}
        warm = scratch / "fit-cache"
        run_child(args, "fit", warm)  # fills the warm cache
        for index in range(args.processes):
            fits["off, no loop reuse"].append(run_child(args, "fit", None, reuse=False))
            fits["off"].append(run_child(args, "fit", None))
            fits["cold"].append(run_child(args, "fit", scratch / f"cold-{index}"))
            fits["warm"].append(run_child(args, "fit", warm))
        table = Table(title=f"one fit of {PRESET} on {args.limit_train:,} images, in fresh "
                            f"processes (median of {args.processes})")
        for column in ("cache", "1st fit s", "2nd fit s", "1st run s", "2nd run s"):
            table.add_column(column, justify="left" if column == "cache" else "right")
        for cache, results in fits.items():
            table.add_row(cache, *(f"{statistics.median(r[key][k] for r in results):.2f}"
                                   for key, k in (("fits", 0), ("fits", 1), ("wholes", 0),
                                                  ("wholes", 1))))
        console.print(table)
        console.print("fit: the model's fit; run: the whole train_and_evaluate (fit, test, "
                      "figures, model files); 1st/2nd: in the same process")
    return 0


if __name__ == "__main__":
    sys.exit(main())
