"""Side-by-side timings on real MNIST, printed as tables of ratios.

    .venv/bin/python benchmarks/bench.py --data-dir ../shared/datasets/mnist
    .venv/bin/python benchmarks/bench.py --data-dir ../shared/datasets/mnist --quick

1. The tutorial's own eager loop (tf.data pipeline, softmax + clip + cross-entropy,
   GradientTape, Adam, no tf.function), re-implemented version by version and timed over a
   limited number of steps, against mnistlab's `SoftmaxRegression` running the whole preset.
2. The ways to run mnistlab's loop: a Python loop over a compiled step, a compiled chunk of
   steps, and the same chunk compiled by XLA (the model's default).
3. The random forest's fit with one job against all cores.

The machine is shared and noisy: compare the rows of one run, not numbers across runs.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from rich.console import Console
from rich.table import Table

TUTORIAL = {  # preset -> (batch size, the tutorial's published test accuracy)
    "tutorial-v1": (32, 0.9031),
    "tutorial-v2": (32, 0.9149),
    "tutorial-v3": (300, 0.9103),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="example: .venv/bin/python benchmarks/bench.py --data-dir "
               "../shared/datasets/mnist --quick")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="directory holding the four MNIST IDX files (.gz or raw; "
                             "default: mnistlab's cache, fetched on first use)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer eager steps, shorter runs of ours, forest on 10,000 images")
    parser.add_argument("--eager-steps", type=int, default=None,
                        help="eager tutorial steps to time per preset (default 200, quick 40)")
    parser.add_argument("--skip-forest", action="store_true", help="leave out the forest")
    parser.add_argument("--skip-variants", action="store_true",
                        help="leave out the comparison of loop variants")
    return parser.parse_args(argv)


def machine_description() -> str:
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    devices = ", ".join(device.device_type for device in tf.config.list_physical_devices())
    return (f"{cpu}, {cores} cores usable; TensorFlow {tf.__version__}, devices: {devices}; "
            f"Python {platform.python_version()}")


# ------------------------------------------------------------------------------ the tutorial
def tutorial_eager_seconds_per_step(version: str, x_train: np.ndarray, y_train: np.ndarray,
                                    num_steps: int, warmup_steps: int = 5) -> float:
    """Run the tutorial's loop for `version` eagerly; return the seconds per step.

    The code follows the tutorial's cells (including v1's three cross-entropies, v2's new
    Adam at every step and v3's outer tape) so that the per-step cost is what it paid.
    `x_train` is float32 (N, 784) in [0, 1], `y_train` uint8, as the tutorial prepares them.
    """
    import tensorflow as tf

    num_classes, num_features, learning_rate = 10, 784, 0.01
    batch_size = TUTORIAL[version][0]
    W = tf.Variable(tf.random.normal([num_features, num_classes]))
    b = tf.Variable(tf.random.normal([num_classes]))
    train_data = tf.data.Dataset.from_tensor_slices((x_train, y_train))

    def logistic_regression(x):
        return tf.nn.softmax(tf.matmul(x, W) + b)

    def cross_entropy(y_pred, y_true):
        y_true = tf.one_hot(y_true, depth=num_classes)
        y_pred = tf.clip_by_value(y_pred, 1e-9, 1.)
        ce1 = tf.reduce_mean(-tf.reduce_sum(y_true * tf.math.log(y_pred), axis=1))
        tf.reduce_mean(-tf.reduce_sum(y_true * tf.math.log(y_pred)))  # the tutorial's ce0
        tf.reduce_mean(tf.losses.categorical_crossentropy(y_true, y_pred))  # its ce2
        return ce1

    def accuracy(y_pred, y_true):
        correct_prediction = tf.equal(tf.argmax(y_pred, 1), tf.cast(y_true, tf.int64))
        return tf.reduce_mean(tf.cast(correct_prediction, tf.float32))

    optimizer = tf.optimizers.Adam(learning_rate)

    def step_v1(batch_x, batch_y):
        with tf.GradientTape() as tape:
            loss = cross_entropy(logistic_regression(batch_x), batch_y)
        gradients = tape.gradient(loss, [W, b])
        optimizer.apply_gradients(zip(gradients, [W, b]))

    def step_v2(batch_x, batch_y):
        with tf.GradientTape() as tape:
            y_pred = tf.nn.softmax(tf.matmul(batch_x, W) + b)
            y_pred = tf.clip_by_value(y_pred, 1e-9, 1.)
            batch_y_ohe = tf.one_hot(batch_y, depth=10)
            loss = tf.reduce_mean(tf.losses.categorical_crossentropy(batch_y_ohe, y_pred))
        grads = tape.gradient(loss, [W, b])
        fresh_optimizer = tf.optimizers.Adam(learning_rate)  # as the tutorial's v2 does
        fresh_optimizer.apply_gradients(zip(grads, [W, b]))
        corr_predict = tf.equal(tf.argmax(y_pred, 1), tf.cast(batch_y, tf.int64))
        tf.reduce_mean(tf.cast(corr_predict, tf.float32))

    def step_v3(batch_x, batch_y):
        def loss_fn(y_pred, y_true):
            y_pred = tf.clip_by_value(y_pred, 1e-9, 1.)
            y_true_ohe = tf.one_hot(y_true, depth=10)
            return tf.reduce_mean(tf.losses.categorical_crossentropy(y_true_ohe, y_pred))

        with tf.GradientTape():  # v3 wraps its train_step in a second, unused tape
            with tf.GradientTape() as tape:
                loss = loss_fn(logistic_regression(batch_x), batch_y)
            grads = tape.gradient(loss, [W, b])
            optimizer.apply_gradients(zip(grads, [W, b]))

    if version == "tutorial-v1":
        batches = train_data.repeat().shuffle(5000).batch(batch_size)
    else:
        batches = train_data.shuffle(5000).batch(batch_size).repeat()  # epochs, back to back
    step = {"tutorial-v1": step_v1, "tutorial-v2": step_v2, "tutorial-v3": step_v3}[version]

    start = None
    for number, (batch_x, batch_y) in enumerate(batches.take(warmup_steps + num_steps), 1):
        if number == warmup_steps + 1:
            start = time.perf_counter()
        step(batch_x, batch_y)
        if number % 50 == 0:
            pred = logistic_regression(batch_x)
            float(cross_entropy(pred, batch_y))
            float(accuracy(pred, batch_y))
    float(W[0, 0])  # wait for the last update
    return (time.perf_counter() - start) / num_steps


# ------------------------------------------------------------------------------ ours
def time_ours(options: dict, x_train, y_train, x_test, y_test, *, jit_compile: bool = True,
              chunk_steps: int | None = None) -> dict:
    """Fit `SoftmaxRegression(**options)`; return the whole-fit and steady per-step times.

    Steady: from the end of the first compiled chunk to the end of the last, so tracing,
    compiling and data preparation are left out. The callback's last call for each chunk
    names the chunk's last step, a multiple of the chunk size (or the run's last step).
    """
    from mnistlab.models.softmax import SoftmaxRegression

    model = SoftmaxRegression(**options, seed=0)
    # Private switches of the loop, set on the instance to time the alternatives.
    model._jit_compile = jit_compile
    model._chunk_steps = chunk_steps
    chunk = chunk_steps or min(model.MAX_CHUNK_STEPS,
                               math.ceil(model.CHUNK_EXAMPLES / model.batch_size))
    chunk_ends: dict[int, float] = {}

    def note_chunk_end(step: int, total: int, record: dict | None) -> None:
        if step % chunk == 0 or step == total:
            chunk_ends[step] = time.perf_counter()

    start = time.perf_counter()
    model.fit(x_train, y_train, callback=note_chunk_end)
    fit_seconds = time.perf_counter() - start
    ends = sorted(chunk_ends.items())
    if len(ends) >= 2:
        steady = (ends[-1][1] - ends[0][1]) / (ends[-1][0] - ends[0][0])
    else:
        steady = fit_seconds / model.num_steps_
    return {"steps": model.num_steps_, "fit_seconds": fit_seconds,
            "seconds_per_step": fit_seconds / model.num_steps_,
            "steady_seconds_per_step": steady,
            "accuracy": model.score(x_test, y_test) if x_test is not None else None}


def preset_options(preset: str) -> dict:
    """The preset's full, resolved model options (the model's defaults plus the preset's
    differences), as a run of the preset trains with."""
    from mnistlab.config import make_config

    return dict(make_config(preset=preset).model_config)


def quick_options(options: dict) -> dict:
    """Shorter runs for --quick: 2000 steps of v1, 2 epochs of the others."""
    if options.get("num_steps"):
        return {**options, "num_steps": min(options["num_steps"], 2000)}
    return {**options, "num_epochs": min(options.get("num_epochs") or 10, 2)}


# ------------------------------------------------------------------------------ the forest
def forest_fit_seconds(x_train, y_train, n_jobs: int) -> float:
    from sklearn.ensemble import RandomForestClassifier

    start = time.perf_counter()
    RandomForestClassifier(n_estimators=50, n_jobs=n_jobs, random_state=0).fit(
        x_train.reshape(len(x_train), -1), y_train)
    return time.perf_counter() - start


# ------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 150)
    from mnistlab.data import load_dataset
    from mnistlab.training.seeding import enable_determinism

    # As a run does (`train_and_evaluate`): op determinism for the whole process, set once;
    # under it the tutorial's unseeded random ops need a global seed.
    enable_determinism()
    import keras

    keras.utils.set_random_seed(0)
    console.print(f"[bold]machine:[/] {machine_description()}")
    dataset = load_dataset("mnist", data_dir=args.data_dir, progress=False)
    train_images, train_labels = dataset.train_images, dataset.train_labels
    test_images, test_labels = dataset.test_images, dataset.test_labels
    eager_steps = args.eager_steps or (40 if args.quick else 200)

    # 1. The tutorial's eager loop against ours.
    x_float = np.asarray(train_images, np.float32).reshape(-1, 784) / 255.
    table = Table(title="softmax regression: the tutorial's eager loop against mnistlab's")
    for column in ("preset", "steps", "eager ms/step", "ours ms/step", "speed-up",
                   "eager, whole preset (est.)", "ours, whole fit", "speed-up, whole fit",
                   "test accuracy (tutorial)"):
        table.add_column(column, justify="right")
    for preset, (_, published) in TUTORIAL.items():
        eager = tutorial_eager_seconds_per_step(preset, x_float, train_labels, eager_steps)
        options = preset_options(preset)
        if args.quick:
            options = quick_options(options)
        ours = time_ours(options, train_images, train_labels, test_images, test_labels)
        table.add_row(
            preset, f"{ours['steps']}", f"{eager * 1e3:.2f}",
            f"{ours['steady_seconds_per_step'] * 1e3:.3f}",
            f"{eager / ours['steady_seconds_per_step']:.0f}x",
            f"{eager * ours['steps']:.1f} s", f"{ours['fit_seconds']:.2f} s",
            f"{eager * ours['steps'] / ours['fit_seconds']:.0f}x",
            f"{ours['accuracy']:.4f} ({published})")
    console.print(table)
    console.print(f"eager: {eager_steps} steps timed per preset after 5 warm-up steps, the "
                  "whole preset extrapolated. ours ms/step: steady, compiling and setup left "
                  "out; ours, whole fit: everything, compiling included."
                  + (" --quick: our runs are shortened, so their accuracies fall short of "
                     "the tutorial's." if args.quick else ""))
    del x_float

    # 2. Ways to run our loop, on one epoch of batch 32.
    if not args.skip_variants:
        # Quick: 2200 steps, enough for three chunks of the default size.
        options = {"num_steps": 2200 if args.quick else None,
                   "num_epochs": None if args.quick else 1, "batch_size": 32,
                   "init": "normal"}
        variants = [
            ("(a) Python loop over a compiled step", False, 1),
            ("(a') Python loop over an XLA-compiled step", True, 1),
            ("(b) chunk of steps in one tf.function (while loop)", False, None),
            ("(c) the same chunk with jit_compile=True (default)", True, None),
        ]
        length = "2200 steps" if args.quick else "one epoch"
        table = Table(title=f"mnistlab's loop: ways to run it, batch 32, {length}")
        for column in ("variant", "ms/step (steady)", "s/epoch (steady)", "whole fit",
                       "vs (c)"):
            table.add_column(column, justify="right")
        results = [(name, time_ours(options, train_images, train_labels, None, None,
                                    jit_compile=jit, chunk_steps=chunk))
                   for name, jit, chunk in variants]
        fastest = results[-1][1]["steady_seconds_per_step"]
        steps_per_epoch = -(-len(train_images) // 32)
        for name, result in results:
            steady = result["steady_seconds_per_step"]
            table.add_row(name, f"{steady * 1e3:.3f}", f"{steady * steps_per_epoch:.2f}",
                          f"{result['fit_seconds']:.2f} s", f"{steady / fastest:.1f}x")
        console.print(table)

    # 3. The forest, one job against all.
    if not args.skip_forest:
        count = 10000 if args.quick else len(train_images)
        cores = os.cpu_count() or 1
        one = forest_fit_seconds(train_images[:count], train_labels[:count], n_jobs=1)
        every = forest_fit_seconds(train_images[:count], train_labels[:count], n_jobs=-1)
        table = Table(title=f"RandomForestClassifier(50) fit on {count} images")
        for column in ("n_jobs", "fit", "speed-up"):
            table.add_column(column, justify="right")
        table.add_row("1", f"{one:.1f} s", "1.0x")
        table.add_row(f"-1 ({cores} cores)", f"{every:.1f} s", f"{one / every:.2f}x")
        console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
