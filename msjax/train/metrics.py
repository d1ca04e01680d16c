"""Scalar metrics to ``metrics.jsonl`` and TensorBoard event files.

Only process 0 writes; other processes get a writer that does nothing, so
callers never branch on the process index.
"""

import json
import math
import pathlib
from typing import Any

import jax

from msjax.train.tensorboard import EventFileWriter

__all__ = ["MetricWriter", "read_metrics"]

METRICS_FILE = "metrics.jsonl"


class MetricWriter:
  """``write_scalars(step, dict)`` to JSONL and TensorBoard (process 0)."""

  def __init__(self, workdir: str, *, enabled: bool | None = None) -> None:
    """Opens the writers.

    Args:
      workdir: the run's directory (``metrics.jsonl`` and ``tensorboard/``).
      enabled: whether to write (default: on process 0 only).
    """
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self._jsonl = None
    self._events = None
    if self.enabled:
      path = pathlib.Path(workdir)
      path.mkdir(parents=True, exist_ok=True)
      self._jsonl = open(path / METRICS_FILE, "a")  # noqa: SIM115
      self._events = EventFileWriter(str(path / "tensorboard"))

  def write_scalars(self, step: int, scalars: dict[str, Any]) -> None:
    """Appends one record ``{"step": step, **scalars}`` (floats)."""
    if not self.enabled:
      return
    values = {k: float(v) for k, v in scalars.items()}
    record = {
      "step": int(step),
      **{k: (v if math.isfinite(v) else str(v)) for k, v in values.items()},
    }
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    self._events.write_scalars(int(step), values)

  def close(self) -> None:
    """Closes the files."""
    if self.enabled:
      self._jsonl.close()
      self._events.close()


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """The records of ``metrics.jsonl``; a resumed run's repeats are dropped.

  When a run is restarted from a checkpoint it logs some steps again; for
  each step only the last record is kept, in step order.
  """
  path = pathlib.Path(workdir) / METRICS_FILE
  if not path.exists():
    return []
  by_step: dict[int, dict[str, Any]] = {}
  for line in path.read_text().splitlines():
    if line.strip():
      record = json.loads(line)
      by_step[record["step"]] = {**by_step.get(record["step"], {}), **record}
  return [by_step[step] for step in sorted(by_step)]
