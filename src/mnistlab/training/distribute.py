"""Data-parallel training on `tf.distribute`: one hand-written loop, several replicas.

`make_strategy` builds the strategy a run asks for: `default` (none: the ordinary,
XLA-compiled single-process loop), `mirrored` (`MirroredStrategy` over the local GPUs, or
over N logical CPU devices with `devices=N`, which is how it is tested on a CPU machine) or
`multi-worker` (`MultiWorkerMirroredStrategy` across processes and hosts, configured by the
standard `TF_CONFIG` or by `workers` and `worker_index`).

`build_distributed_chunk` runs a chunk of steps with `strategy.run`: every replica takes its
own disjoint slice of each global batch (so the examples seen are those of one process), the
model's replica step returns sums over its slice, and the sums are reduced across replicas.
The loss each replica differentiates is its slice's share of the global batch's mean
(`sum / global count`), so the summed gradients are those of the global mean, as
`tf.nn.compute_average_loss` makes them. XLA cannot compile CPU collectives, so the
distributed chunk is not XLA-compiled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence

from mnistlab._lazy import tf
from mnistlab.errors import ConfigError

STRATEGIES = ("default", "mirrored", "multi-worker")
# Seconds a collective may wait for the other workers before the run fails: a worker that
# dies makes the others stop with an error instead of hanging (MNISTLAB_COLLECTIVE_TIMEOUT
# changes it).
COLLECTIVE_TIMEOUT_SECONDS = float(os.environ.get("MNISTLAB_COLLECTIVE_TIMEOUT", "60"))
# TensorFlow's errors when another worker is gone or too slow.
LOST_WORKER_ERRORS = ("UnavailableError", "DeadlineExceededError", "CancelledError",
                      "AbortedError", "InternalError")


def configure_workers(workers: Sequence[str], worker_index: int) -> None:
    """Set `TF_CONFIG` for worker `worker_index` of the cluster `workers` (HOST:PORT)."""
    if not 0 <= worker_index < len(workers):
        raise ConfigError(f"--worker-index must be from 0 to {len(workers) - 1}, "
                          f"got {worker_index}")
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": list(workers)},
                                          "task": {"type": "worker", "index": worker_index}})


def worker_role() -> tuple[int, int]:
    """(this worker's index, the number of workers) from `TF_CONFIG`; (0, 1) without it."""
    try:
        config = json.loads(os.environ.get("TF_CONFIG", "") or "{}")
        return int(config["task"]["index"]), len(config["cluster"]["worker"])
    except (ValueError, KeyError, TypeError):
        return 0, 1


def make_strategy(name: str, devices: int | None = None):
    """The `tf.distribute` strategy named `name`, or None for `default`.

    `mirrored` with `devices=N` splits the CPU into N logical devices; that must happen
    before TensorFlow starts its runtime, so it is for a fresh process (the command line).
    """
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r} (known: {', '.join(STRATEGIES)})")
    if name == "default":
        if devices:
            raise ConfigError("--devices goes with --strategy mirrored")
        return None
    if name == "mirrored":
        if devices:
            cpus = tf.config.list_physical_devices("CPU")
            try:
                tf.config.set_logical_device_configuration(
                    cpus[0], [tf.config.LogicalDeviceConfiguration()] * devices)
            except RuntimeError:
                raise ConfigError("--devices must be set before TensorFlow starts (use it "
                                  "from the command line, in a fresh process)") from None
            return tf.distribute.MirroredStrategy(
                [device.name for device in tf.config.list_logical_devices("CPU")])
        return tf.distribute.MirroredStrategy()
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING,
        timeout_seconds=COLLECTIVE_TIMEOUT_SECONDS)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def stop_agreement(strategy) -> Callable[[int | None], int | None] | None:
    """For workers in several processes, a function that makes a stop request (Ctrl-C,
    SIGTERM) reach every worker at the same chunk boundary; None otherwise.

    A signal reaches each worker process on its own, so they would see it at different
    chunks, and the ones that went on would wait for the others' collectives until the
    timeout. The loop calls `agree(signal_number_or_None)` at every chunk boundary, on every
    worker (a sum of one number per replica, a collective); when any worker was asked to
    stop, every worker gets a signal number back (its own, else SIGINT's) and they checkpoint
    and stop together.
    """
    if strategy is None or worker_role()[1] < 2:
        return None
    import signal

    @tf.function
    def count(flag):
        per_replica = strategy.run(lambda: tf.identity(flag))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    def agree(signal_number: int | None) -> int | None:
        asked = float(count(tf.constant(0.0 if signal_number is None else 1.0)))
        return (signal_number or int(signal.SIGINT)) if asked > 0 else None

    return agree


def replica_slice(global_size: int):
    """(start, stop) of this replica's slice of a global batch of `global_size` rows."""
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync
    local = global_size // replicas
    start = context.replica_id_in_sync_group * local
    return start, start + local


def check_batch(batch_size: int, strategy) -> None:
    """The global batch must split evenly over the replicas."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ConfigError(f"the batch size ({batch_size}) must be a multiple of the "
                          f"{replicas} replicas")


def slice_sums(labels: tf.Tensor, logits: tf.Tensor, mask: tf.Tensor) -> tuple:
    """A replica step's record sums over its slice: the cross-entropy and the correct
    predictions of the real rows (`mask` 1), as `build_distributed_chunk` reduces them."""
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
    correct = tf.cast(tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), labels),
                      tf.float32)
    return tf.reduce_sum(cross_entropy * mask), tf.reduce_sum(correct * mask)


def build_distributed_chunk(strategy, chunk_steps: int, batch_size: int, num_values: int,
                            replica_step: Callable) -> Callable:
    """A compiled chunk of `chunk_steps` steps run on every replica of `strategy`.

    `replica_step(X_local, y_local, mask_local, global_count, step, slice_start)` trains on
    the replica's slice of the global batch and returns `num_values` scalars, each a sum
    over its slice (the first the loss sum, which must be finite); the chunk reduces them
    across replicas and divides by the global batch's real examples. Returns rows
    (chunk_steps, num_values), the first non-finite step (0 if none) and its loss, as the
    single-process chunks do.
    """
    sum_op = tf.distribute.ReduceOp.SUM

    @tf.function
    def chunk(X, y, batch_indices, batch_sizes, start, count):
        rows = tf.zeros([chunk_steps, num_values])
        bad_step = tf.constant(0)
        bad_loss = tf.constant(0.0)
        i = tf.constant(0)
        while i < count:
            indices, size = batch_indices[i], batch_sizes[i]
            step = start + i + 1

            def on_replica(indices, size, step):
                first, stop = replica_slice(batch_size)
                mine = indices[first:stop]
                mask = tf.cast(tf.range(first, stop) < size, tf.float32)
                return replica_step(tf.gather(X, mine), tf.gather(y, mine), mask,
                                    tf.cast(size, tf.float32), step, first)

            sums = strategy.run(on_replica, args=(indices, size, step))
            values = tf.stack([strategy.reduce(sum_op, value, axis=None) for value in sums])
            values = values / tf.cast(size, tf.float32)
            rows = tf.tensor_scatter_nd_update(rows, [[i]], [values])
            if not tf.math.is_finite(values[0]):
                bad_step = step
                bad_loss = values[0]
                break
            i += 1
        return rows, bad_step, bad_loss

    return chunk
