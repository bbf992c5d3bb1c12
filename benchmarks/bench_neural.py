"""Neural models: our compiled loop against Keras `model.fit` and `model.predict`.

    .venv/bin/python benchmarks/bench_neural.py --data-dir ../shared/datasets/mnist
    .venv/bin/python benchmarks/bench_neural.py --data-dir ../shared/datasets/mnist --quick

For the `mlp` and `cnn` presets' networks (built by the same `build_network`, same batch
size, AdamW, no augmentation, EMA or label smoothing so that both sides do the same work):

1. Training images per second over a fixed number of steps after a warm-up (the first
   chunk, which includes tracing, is not timed): ours (`MLP`/`CNN.fit`) against Keras
   `model.compile(...)` + `model.fit` on the same arrays, each with and without XLA, both
   under op determinism as our runs are (except the CNN with XLA: XLA has no deterministic
   max-pool gradient, so that row runs both sides without it).
2. Test-set inference images per second (10,000 images, batches of 1,000, after one warm
   call; the median of five passes): our `predict_proba` against `model.predict`.
3. TensorFlow's thread settings (intra-op / inter-op parallelism), set before TensorFlow
   initialises, for our loop.

Every measurement runs in its own subprocess, so thread settings and XLA caches do not leak
between them. The machine is shared and noisy: compare the rows of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Inference over the test set is timed this many times; the median counts.
PREDICT_REPEATS = 5

# The presets' networks, stripped of what model.fit would not do the same way.
PLAIN = {"augment": False, "ema_decay": 0.0, "label_smoothing": 0.0, "weight_decay": 0.0,
         "schedule": "constant", "warmup_fraction": 0.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="example: .venv/bin/python benchmarks/bench_neural.py --data-dir "
               "../shared/datasets/mnist --quick")
    parser.add_argument("--data-dir", type=Path, required=False,
                        help="directory holding the four MNIST IDX files (.gz or raw)")
    parser.add_argument("--quick", action="store_true", help="fewer steps (50 instead of 200)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed training steps per measurement (default 200, quick 50)")
    parser.add_argument("--models", default="mlp,cnn", help="comma-separated: mlp, cnn")
    parser.add_argument("--skip-threads", action="store_true",
                        help="leave out the thread-setting comparison")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------ in a child
def child(spec: dict) -> dict:
    """Run one measurement in this process and return its numbers."""
    import tensorflow as tf

    if spec.get("threads"):
        intra, inter = spec["threads"]
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    import keras
    import numpy as np

    from mnistlab.config import make_config
    from mnistlab.data import load_dataset
    from mnistlab.models import build_model
    from mnistlab.training.seeding import enable_determinism

    dataset = load_dataset("mnist", data_dir=spec["data_dir"], progress=False)
    config = make_config(preset=spec["preset"])
    options = {**config.model_config, **PLAIN}
    warmup, steps = spec["warmup"], spec["steps"]
    batch_size = options["batch_size"]
    options.update(num_steps=warmup + steps, num_epochs=None, log_every=warmup)
    model = build_model(config.model, options, seed=0)
    model._jit_compile = spec["jit"]  # a private switch of the loop, set to time both ways
    result = {"batch_size": batch_size, "steps": steps}
    x_train, y_train = dataset.train_images, dataset.train_labels
    x_test = dataset.test_images

    # Op determinism as a run turns it on (`train_and_evaluate`), for both sides. XLA has no
    # deterministic max-pool gradient: the CNN's XLA rows run without it.
    if spec["deterministic"]:
        enable_determinism()
    if spec["impl"] == "ours":
        times = {}

        def note(step, total, record):
            times[step] = time.perf_counter()

        model.fit(x_train, y_train, callback=note)
        result["train_images_per_second"] = steps * batch_size / (times[warmup + steps]
                                                                  - times[warmup])
        model.predict_proba(x_test[:1000])
        result["predict_images_per_second"] = len(x_test) / median_seconds(
            lambda: model.predict_proba(x_test))
        return result

    # Keras: the same network, compiled and fitted on the same scaled arrays, under the same
    # op determinism as ours. The network is built for what `fit` would learn from MNIST.
    keras.utils.set_random_seed(0)
    model.classes_, model.image_shape_ = np.arange(10), (28, 28)
    network = model.build_network()
    network.compile(optimizer=keras.optimizers.AdamW(learning_rate=options["learning_rate"],
                                                     weight_decay=0.0),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["accuracy"], jit_compile=spec["jit"])
    count = (warmup + steps) * batch_size
    repeats = -(-count // len(x_train))
    x = np.concatenate([x_train] * repeats)[:count].astype(np.float32)[..., None] / 255.0
    y = np.concatenate([y_train] * repeats)[:count].astype(np.int32)

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = {}

        def on_train_batch_end(self, batch, logs=None):
            self.times[batch + 1] = time.perf_counter()

    timer = Timer()
    network.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0,
                callbacks=[timer])
    result["train_images_per_second"] = steps * batch_size / (timer.times[warmup + steps]
                                                              - timer.times[warmup])
    x_test = x_test.astype(np.float32)[..., None] / 255.0
    network.predict(x_test[:1000], batch_size=1000, verbose=0)
    result["predict_images_per_second"] = len(x_test) / median_seconds(
        lambda: network.predict(x_test, batch_size=1000, verbose=0))
    return result


def median_seconds(call, repeats: int = PREDICT_REPEATS) -> float:
    """The median wall time of `repeats` calls of `call()`."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


# ------------------------------------------------------------------------------ the parent
def measure(spec: dict) -> dict | None:
    """Run `child(spec)` in a fresh Python; None (and a note) if it fails."""
    command = [sys.executable, __file__, "--child", json.dumps(spec)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        print(f"measurement {spec} failed:\n{completed.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1])


def _rate(result: dict | None, key: str) -> str:
    return "-" if result is None else f"{result[key]:,.0f}"


def _ratio(ours: dict | None, theirs: dict | None, key: str) -> str:
    if ours is None or theirs is None:
        return "-"
    return f"{ours[key] / theirs[key]:.2f}x"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    steps = args.steps or (50 if args.quick else 200)
    warmup = 20 if args.quick else 50
    presets = {"mlp": "mlp", "cnn": "cnn"}
    chosen = [name.strip() for name in args.models.split(",") if name.strip()]
    base = {"data_dir": str(args.data_dir) if args.data_dir else None, "warmup": warmup,
            "steps": steps,
            "threads": None}
    # Our CNN under XLA is many times slower: fewer steps keep that row short.
    xla_cnn_steps = max(10, steps // 10)

    speed = Table(title=f"training and inference, images per second ({steps} timed steps "
                        f"after {warmup} warm-up steps; 10,000 test images)")
    for column in ("model", "XLA", "ours train", "model.fit", "ours / fit",
                   "ours predict", "model.predict", "ours / predict"):
        speed.add_column(column, justify="left" if column in ("model", "XLA") else "right")
    for name in chosen:
        for jit in (False, True):
            spec = {**base, "preset": presets[name], "jit": jit, "deterministic": True}
            if jit and name == "cnn":
                spec.update(steps=xla_cnn_steps, warmup=min(warmup, 10), deterministic=False)
            ours = measure({**spec, "impl": "ours"})
            theirs = measure({**spec, "impl": "keras"})
            speed.add_row(name, "on" if jit else "off",
                          _rate(ours, "train_images_per_second"),
                          _rate(theirs, "train_images_per_second"),
                          _ratio(ours, theirs, "train_images_per_second"),
                          _rate(ours, "predict_images_per_second"),
                          _rate(theirs, "predict_images_per_second"),
                          _ratio(ours, theirs, "predict_images_per_second"))
            console.print(f"measured {name} with XLA {'on' if jit else 'off'}", style="dim")
    if "cnn" in chosen:
        speed.caption = (f"cnn with XLA: {xla_cnn_steps} timed steps after {min(warmup, 10)}, "
                         "without op determinism on both sides")
    console.print(speed)
    if not args.skip_threads:
        threads = Table(title="our loop under TensorFlow's thread settings "
                              "(intra-op, inter-op; 0 = TensorFlow's choice)")
        for column in ("model", "XLA", "threads", "train img/s", "predict img/s"):
            threads.add_column(column, justify="left" if column in ("model", "XLA")
                               else "right")
        for name in chosen:
            jit = False  # both models' default
            for setting in ((1, 1), (2, 1), (2, 2), (0, 0)):
                result = measure({**base, "preset": presets[name], "jit": jit,
                                  "impl": "ours", "threads": list(setting),
                                  "deterministic": True})
                threads.add_row(name, "on" if jit else "off", f"{setting[0]}, {setting[1]}",
                                _rate(result, "train_images_per_second"),
                                _rate(result, "predict_images_per_second"))
        console.print(threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
