"""Learning checks over several seeds that compile once (method tests only).

:func:`train_seeds` trains one method from ``len(seeds)`` initialisations
with :func:`tests.methods._multiseed.train_seeds` (one jitted init and one
jitted step for every seed; each seed has its own initialisation, step keys
and batch stream), then probes the random and the trained encoders with one
jitted ``embed``: three seeds cost one compilation, not three.
"""

from typing import Any, NamedTuple

import ml_collections
import numpy as np

from msjax.data import pipeline, sequence_index_for
from msjax.methods import Method
from tests.methods import _multiseed as ms
from tests.methods import _train_util as tu

__all__ = [
  "OPTIMIZED",
  "SEEDS",
  "SeedRun",
  "batch_stream",
  "learning_config",
  "train_seeds",
]

#: The seeds every learning test runs (:data:`_multiseed.SEEDS`).
SEEDS = ms.SEEDS
#: XLA's default optimisation for long runs (:data:`_multiseed.OPTIMIZED`).
OPTIMIZED = ms.OPTIMIZED


def learning_config(method: Method) -> ml_collections.ConfigDict:
  """:func:`tu.experiment_config` on 64 sessions (1024 windows).

  Twice the sessions of the default test data: 256 test windows, so one
  probe accuracy carries about 0.03 of sampling noise instead of 0.04 and a
  margin measured over three seeds means something.
  """
  config = tu.experiment_config(method)
  config.data.num_sessions = 64
  return config


class SeedRun(NamedTuple):
  """One seed's outcome.

  Attributes:
    seed: the seed (init key, step keys and batch order).
    random_acc: linear-probe test accuracy of the initial encoder.
    trained_acc: the same after training.
    first_loss: mean training loss over the first 10 steps.
    last_loss: mean training loss over the last 10 steps.
    initial: the initial variables.
    variables: the trained variables.
    losses: ``[steps]`` training losses, one per step.
  """

  seed: int
  random_acc: float
  trained_acc: float
  first_loss: float
  last_loss: float
  initial: dict[str, Any]
  variables: dict[str, Any]
  losses: np.ndarray

  @property
  def margin(self) -> float:
    """``trained_acc - random_acc``."""
    return self.trained_acc - self.random_acc


def batch_stream(
  source: Any, batch_size: int, seed: int, sequence_length: int = 1
) -> Any:
  """``step -> host batch``: uniform rows, or sequence-major sequences."""
  if sequence_length > 1:
    sequences = sequence_index_for(source, sequence_length)
    return lambda step: pipeline.batch_at(
      source,
      step,
      batch_size=batch_size,
      seed=seed,
      sequences=sequences,
      process_index=0,
      process_count=1,
    )
  rng = np.random.default_rng(seed)
  return lambda step: source.get(
    rng.choice(source.num_examples, batch_size, replace=False)
  )


def train_seeds(
  method: Method,
  config: ml_collections.ConfigDict,
  *,
  seeds: tuple[int, ...] = SEEDS,
  steps: int,
  probed: str,
  batch_size: int = 32,
  learning_rate: float = 1e-2,
  sequence_length: int = 1,
  optimizer: Any = None,
  compiler_options: dict[str, Any] | None = None,
  vmap_seeds: bool = False,
) -> list[SeedRun]:
  """Trains one model per seed with Adam (one step compile); probes ``probed``.

  Args:
    method: a :class:`msjax.methods.Method`.
    config: the experiment config (``config.seed`` is not read).
    seeds: one run per seed: init key ``key(seed)``, step keys
      ``fold_in(key(seed), step)``, its own batch stream.
    steps: updates per run.
    probed: the ``embed`` key given to the linear probe.
    batch_size: rows per batch.
    learning_rate: Adam learning rate.
    sequence_length: > 1: sequence-major batches of consecutive windows.
    optimizer: an optax transformation instead of ``adam(learning_rate)``.
    compiler_options: XLA options of the jitted step.
    vmap_seeds: one vmapped step for the stacked seeds instead of one
      single-seed step called per seed (:mod:`tests.methods._multiseed`).

  Returns:
    One :class:`SeedRun` per seed.
  """
  train_src, test_src = tu.sources(config)
  streams = {
    s: batch_stream(train_src, batch_size, s, sequence_length) for s in seeds
  }
  runs = ms.train_seeds(
    method,
    config,
    train_src,
    tuple(seeds),
    steps=steps,
    batch_size=batch_size,
    learning_rate=learning_rate,
    batch_fn=lambda source, seed, step, size: streams[seed](step),
    step_key_offset=0,
    optimizer=optimizer,
    compiler_options=compiler_options,
    vmap_seeds=vmap_seeds,
  )
  num = len(seeds)
  accs = tu.probe_accuracies(
    method, runs.initial + runs.final, config, train_src, test_src, key=probed
  )
  print(
    f"probe margins ({probed}), seeds {seeds}:",
    [round(accs[num + i] - accs[i], 3) for i in range(num)],
  )
  return [
    SeedRun(
      seed=seed,
      random_acc=accs[i],
      trained_acc=accs[num + i],
      first_loss=float(np.mean(runs.losses[i, :10])),
      last_loss=float(np.mean(runs.losses[i, -10:])),
      initial=runs.initial[i],
      variables=runs.final[i],
      losses=runs.losses[i],
    )
    for i, seed in enumerate(seeds)
  ]
