"""The CNNs against what the CPU allows, and the accuracy-time frontier of trained runs.

    .venv/bin/python benchmarks/bench_cnn.py --data-dir ../shared/datasets/mnist
    .venv/bin/python benchmarks/bench_cnn.py --frontier runs/frontier   # no training

1. **Speed** (skipped with `--no-speed`): for the `cnn-fast` and `cnn` presets, training
   milliseconds per step and images per second over `--steps` steps after the first chunk
   (which includes tracing), as the preset runs (batch norm on TensorFlow's fused kernel),
   with Keras' own batch norm, without batch norm, and for `cnn` without augmentation and
   with elastic distortion added to it (`--elastic 34`, which resamples by gathering); beside
   them the convolutions' and dense layers' FLOPs per training image (forward, weight
   gradient and input gradient: 3 x 2 x multiply-adds, the first layer's input gradient
   left out), the FLOP rate reached, and its fraction of this machine's matrix-multiply rate
   (a 2048 x 2048 float32 product, measured in the same run). Batch norm, ReLU, pooling,
   augmentation and the optimizer count no FLOPs here: the fraction says how much of the
   step's time goes to the arithmetic that matters. Each row runs in its own subprocess.
2. **Frontier** (`--frontier DIR...`): every completed `cnn` run under the directories,
   grouped by preset and options (seeds together): test accuracy mean, sd, min over seeds,
   training seconds, images per second, and whether the group is on the accuracy-time
   frontier (no other group is both faster and more accurate on average).

The machine is shared and noisy: compare the rows of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# (row name, preset, option overrides, use Keras' own batch norm)
SPEED_ROWS = [
    ("cnn-fast", "cnn-fast", {}, False),
    ("cnn-fast, Keras batch norm", "cnn-fast", {}, True),
    ("cnn-fast, no batch norm", "cnn-fast", {"batch_norm": False}, False),
    ("cnn-fast, pooling after batch norm", "cnn-fast", {"pool_first": False}, False),
    ("cnn-fast, pooling after Keras batch norm", "cnn-fast", {"pool_first": False}, True),
    ("cnn", "cnn", {}, False),
    ("cnn, Keras batch norm", "cnn", {}, True),
    ("cnn, no batch norm", "cnn", {"batch_norm": False}, False),
    ("cnn, no augmentation", "cnn", {"augment": False}, False),
    ("cnn, elastic distortion 34", "cnn", {"elastic": 34.0}, False),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="directory holding the four MNIST IDX files")
    parser.add_argument("--steps", type=int, default=300,
                        help="timed training steps per speed row (default 300)")
    parser.add_argument("--no-speed", action="store_true", help="leave out the speed table")
    parser.add_argument("--frontier", type=Path, nargs="*", default=[],
                        help="directories of completed cnn runs for the frontier table")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------ in a child


def training_flops(network) -> float:
    """FLOPs of one training image in the network's convolutions and dense layers."""
    import numpy as np

    total, first = 0.0, True
    for layer in network.layers:
        kind = type(layer).__name__
        if kind not in ("Conv2D", "Dense"):
            continue
        kernel = layer.kernel.shape
        outputs = int(np.prod(layer.output.shape[1:-1])) if kind == "Conv2D" else 1
        forward = 2.0 * outputs * int(np.prod(kernel))
        total += forward * (2 if first else 3)  # the first layer needs no input gradient
        first = False
    return total


def matmul_rate() -> float:
    """This machine's float32 matrix-multiply rate in FLOP/s (median of 5 products)."""
    import tensorflow as tf

    a = tf.random.normal((2048, 2048))
    product = tf.function(lambda x: tf.matmul(x, x))
    product(a).numpy()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        product(a).numpy()
        times.append(time.perf_counter() - start)
    return 2 * 2048 ** 3 / statistics.median(times)


def child(arguments: dict) -> dict:
    import mnistlab
    from mnistlab.models.neural import CNN
    from mnistlab.training.seeding import enable_determinism

    if arguments.get("matmul"):
        return {"flops": matmul_rate()}
    enable_determinism()
    dataset = mnistlab.load_dataset("mnist", data_dir=arguments["data_dir"], progress=False)
    options = {**mnistlab.PRESETS[arguments["preset"]].options, **arguments["options"],
               "num_steps": arguments["steps"] + 50, "num_epochs": None, "log_every": 50}
    CNN._fused_batch_norm = not arguments["keras_batch_norm"]
    model = CNN(**options)
    stamps = []
    model.fit(dataset.train_images, dataset.train_labels,
              callback=lambda step, total, record: stamps.append((step, time.perf_counter())))
    (first_step, first_time), (last_step, last_time) = stamps[1], stamps[-1]
    seconds = (last_time - first_time) / (last_step - first_step)
    return {"ms_per_step": 1000 * seconds, "images_per_second": model.batch_size / seconds,
            "flops_per_image": training_flops(model.network_)}


def in_child(arguments: dict) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", json.dumps(arguments)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"a measurement failed: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------ the tables


def speed_table(data_dir: Path | None, steps: int) -> None:
    rate = in_child({"matmul": True})["flops"]
    print(f"matrix-multiply rate (2048 x 2048 float32): {rate / 1e9:,.0f} GFLOP/s\n")
    print("| network | ms per step | images/s | MFLOP per image | GFLOP/s | of the matmul rate |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, preset, options, keras_bn in SPEED_ROWS:
        row = in_child({"data_dir": str(data_dir) if data_dir else None, "preset": preset,
                        "options": options, "keras_batch_norm": keras_bn, "steps": steps})
        achieved = row["images_per_second"] * row["flops_per_image"]
        print(f"| {name} | {row['ms_per_step']:.2f} | {row['images_per_second']:,.0f} | "
              f"{row['flops_per_image'] / 1e6:.1f} | {achieved / 1e9:,.0f} | "
              f"{achieved / rate:.0%} |", flush=True)


def frontier_table(directories: list[Path]) -> None:
    groups: dict[str, list[dict]] = {}
    for directory in directories:
        for metrics_path in sorted(directory.rglob("metrics.json")):
            run_dir = metrics_path.parent
            try:
                info = json.loads((run_dir / "run.json").read_text())
                config = json.loads((run_dir / "config.json").read_text())
                metrics = json.loads(metrics_path.read_text())
            except (OSError, ValueError):
                continue
            if info.get("status") != "completed" or config.get("model") != "cnn" \
                    or config.get("limit_train") or config.get("limit_test"):
                continue
            options = {key: value for key, value in config["model_config"].items()
                       if key != "seed"}
            key = f"{config.get('preset') or 'cnn'} {json.dumps(options, sort_keys=True)}"
            groups.setdefault(key, []).append({
                "preset": config.get("preset") or "cnn", "seed": config.get("seed"),
                "accuracy": metrics["test_accuracy"], "seconds": metrics["train_seconds"],
                "rate": metrics.get("train_examples_per_second") or 0.0, "options": options})
    rows = []
    for runs in groups.values():
        accuracies = [run["accuracy"] for run in runs]
        seconds = statistics.mean(run["seconds"] for run in runs)
        rows.append({"preset": runs[0]["preset"], "options": runs[0]["options"],
                     "seeds": sorted(run["seed"] for run in runs),
                     "mean": statistics.mean(accuracies),
                     "sd": statistics.stdev(accuracies) if len(runs) > 1 else 0.0,
                     "min": min(accuracies), "seconds": seconds,
                     "rate": statistics.mean(run["rate"] for run in runs)})
    for row in rows:
        row["frontier"] = not any(other["mean"] > row["mean"] and
                                  other["seconds"] < row["seconds"] for other in rows)
    rows.sort(key=lambda row: row["seconds"])
    print("| preset | options (differing from the preset) | seeds | mean | sd | min | "
          "train s | images/s | frontier |")
    print("|---|---|---|---:|---:|---:|---:|---:|---|")
    from mnistlab.config import PRESETS, make_config

    for row in rows:
        # The preset's whole configuration (model defaults and the preset's own options).
        defaults = dict(make_config(preset=row["preset"]).model_config) \
            if row["preset"] in PRESETS else {}
        differing = {key: value for key, value in row["options"].items()
                     if defaults.get(key, value) != value}
        print(f"| {row['preset']} | {json.dumps(differing) if differing else ''} | "
              f"{','.join(map(str, row['seeds']))} | {row['mean']:.4f} | {row['sd']:.4f} | "
              f"{row['min']:.4f} | {row['seconds']:.0f} | {row['rate']:,.0f} | "
              f"{'yes' if row['frontier'] else ''} |")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(json.loads(args.child))))
        return
    if not args.no_speed:
        speed_table(args.data_dir, args.steps)
    if args.frontier:
        print()
        frontier_table(args.frontier)


if __name__ == "__main__":
    main()
