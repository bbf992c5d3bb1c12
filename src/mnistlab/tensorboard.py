"""TensorBoard event files from a run's records, so `tensorboard --logdir runs` shows every
run side by side.

The run directory's JSON and CSV stay the record of truth; the events repeat them: each
history record's training and validation loss and accuracy, the test metrics at the end,
and (when the `tensorboard` package is installed, `pip install 'mnistlab[tensorboard]'`)
the run's hyperparameters for the HParams view. Scalars are written with `tf.summary.write`
and the scalars plugin's metadata, which needs no extra package.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

EVENTS_DIR = "tensorboard"
# history record key -> TensorBoard tag
RECORD_TAGS = {"train_loss": "train/loss", "train_accuracy": "train/accuracy",
               "val_loss": "validation/loss", "val_accuracy": "validation/accuracy",
               "learning_rate": "train/learning_rate"}


class EventWriter:
    """Writes scalars for one run into `<run_dir>/tensorboard/`, created on first use."""

    def __init__(self, run_dir: Path):
        self.directory = Path(run_dir) / EVENTS_DIR
        self._writer = None

    def _summary(self):
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.directory))
        return tf, self._writer

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Write `{tag: value}` at `step`."""
        from tensorflow.core.framework import summary_pb2

        tf, writer = self._summary()
        metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
        with writer.as_default():
            for tag, value in values.items():
                tf.summary.write(tag, tf.constant(float(value), tf.float32), step=int(step),
                                 metadata=metadata)

    def record(self, record: Mapping[str, Any]) -> None:
        """One history record."""
        values = {tag: record[key] for key, tag in RECORD_TAGS.items()
                  if record.get(key) is not None}
        if values:
            self.scalars(record["step"], values)

    def hyperparameters(self, options: Mapping[str, Any], name: str) -> bool:
        """The run's options for TensorBoard's HParams view (beside the test metrics
        written as scalars); False when the `tensorboard` package is not installed."""
        try:
            from tensorboard.plugins.hparams import api as hp
        except ImportError:
            return False
        _, writer = self._summary()
        values = {key: value if isinstance(value, (bool, int, float, str)) else str(value)
                  for key, value in options.items()}
        with writer.as_default():
            hp.hparams(values, trial_id=name)
        return True

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None
