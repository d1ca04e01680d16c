"""Learning tests over several seeds at once (one vmapped, jitted step).

The seeds' models are stacked on a leading axis and trained together, so a
method compiles its step once for every seed; each seed has its own
initialisation, step keys and batch stream. Used by the baseline tests whose
learning test must hold for three seeds.
"""

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from msjax.data import pipeline
from msjax.methods import Method
from tests.methods import _train_util as tu

__all__ = [
  "OPTIMIZED",
  "SeedRuns",
  "sequence_batches",
  "train_seeds",
  "uniform_batches",
]

BatchFn = Callable[[Any, int, int, int], dict]

#: ``compiler_options`` restoring XLA's default CPU optimisation for a long
#: learning run. The suite compiles without backend optimisation
#: (tests/conftest.py), which suits programs that run a few times; a
#: learning test runs its step hundreds of times, and there the optimised
#: step repays its longer compile: 6 seeds x 300 steps, fresh compilation
#: cache, ProtoMM (batch 64) 113 -> 57 s, SimCLR 57 -> 35 s, SLIP 57 -> 38
#: s. The margins move with the rounding (docs/claims.md, "The learning
#: tests on other seeds").
OPTIMIZED = {
  "xla_backend_optimization_level": 2,
  "xla_llvm_disable_expensive_passes": False,
  "xla_cpu_use_fusion_emitters": True,
}


class SeedRuns(NamedTuple):
  """Output of :func:`train_seeds`.

  Attributes:
    initial: per seed, the initial variables.
    final: per seed, the trained variables.
    losses: ``[S, steps]`` training losses.
  """

  initial: list[dict[str, Any]]
  final: list[dict[str, Any]]
  losses: np.ndarray

  def probe_margins(
    self,
    method: Method,
    config: ml_collections.ConfigDict,
    train_source: Any,
    test_source: Any,
    key: str = "fused",
  ) -> np.ndarray:
    """Per seed, trained minus random-encoder linear-probe test accuracy."""
    accs = tu.probe_accuracies(
      method,
      self.initial + self.final,
      config,
      train_source,
      test_source,
      key=key,
    )
    num = len(self.initial)
    return np.asarray(accs[num:]) - np.asarray(accs[:num])


def uniform_batches(source: Any, seed: int, step: int, batch_size: int) -> dict:
  """``batch_size`` distinct random rows, a function of ``(seed, step)``."""
  rng = np.random.default_rng([seed, step])
  return source.get(rng.choice(source.num_examples, batch_size, replace=False))


def sequence_batches(seq_len: int) -> BatchFn:
  """A batch stream of ``B / seq_len`` runs of ``seq_len`` windows.

  The data pipeline's sequence sampler (sequence-major rows; runs of one
  session at least ``2 seq_len`` windows apart), seeded by ``(seed, step)``.
  """
  indices: dict[int, Any] = {}

  def batches(source: Any, seed: int, step: int, batch_size: int) -> dict:
    if id(source) not in indices:
      indices[id(source)] = pipeline.sequence_index_for(source, seq_len)
    rows = pipeline.sequence_batch_indices(
      indices[id(source)],
      num_sequences=batch_size // seq_len,
      seed=seed,
      step=step,
    )
    return source.get(rows)

  return batches


def _stack(trees: list[Any]) -> Any:
  return jax.tree.map(lambda *xs: np.stack(xs), *trees)


def train_seeds(
  method: Method,
  config: ml_collections.ConfigDict,
  source: Any,
  seeds: tuple[int, ...],
  *,
  steps: int,
  batch_size: int = 32,
  learning_rate: float = 1e-2,
  batch_fn: BatchFn = uniform_batches,
  step_key_offset: int = 1000,
  optimizer: optax.GradientTransformation | None = None,
  compiler_options: dict[str, Any] | None = None,
) -> SeedRuns:
  """Trains one model per seed with Adam, all seeds in one vmapped step.

  Args:
    method: a :class:`msjax.methods.Method`.
    config: the experiment config (its ``seed`` is not read).
    source: the training source.
    seeds: the seeds (init key ``key(seed)``, step key ``fold_in(key(seed +
      step_key_offset), step)``, batches ``batch_fn(source, seed, step,
      batch_size)``, first called for seed ``seeds[0]`` at step 0 to get the
      example batch of ``init``).
    steps: updates per seed.
    batch_size: rows per batch.
    learning_rate: Adam learning rate.
    batch_fn: the batch stream.
    step_key_offset: added to the seed for the step keys.
    optimizer: replaces ``adam(learning_rate)`` (e.g. a method's
      per-group ``optax.multi_transform``).
    compiler_options: XLA options of the jitted init and step (e.g.
      ``{"xla_backend_optimization_level": 0}`` where compiling dominates).

  Returns:
    A :class:`SeedRuns`.
  """
  if optimizer is None:
    optimizer = optax.adam(learning_rate)
  example = batch_fn(source, seeds[0], 0, batch_size)
  init_keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
  step_keys = jax.vmap(jax.random.key)(jnp.asarray(seeds) + step_key_offset)

  @functools.partial(jax.jit, compiler_options=compiler_options)
  def init(keys):
    return jax.vmap(lambda k: method.init(k, config, example))(keys)

  def one(params, model_state, opt_state, batch, key, step):
    def objective(p):
      return method.loss_fn(
        {"params": p, **model_state},
        batch,
        jax.random.fold_in(key, step),
        config,
        step,
      )

    (loss, (new_state, _)), grads = jax.value_and_grad(objective, has_aux=True)(
      params
    )
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    params = method.post_update(params, config, step)
    return params, {**model_state, **new_state}, opt_state, loss

  step_fn = jax.jit(
    jax.vmap(one, in_axes=(0, 0, 0, 0, 0, None)),
    compiler_options=compiler_options,
  )
  variables = init(init_keys)
  params = variables["params"]
  model_state = {k: v for k, v in variables.items() if k != "params"}
  opt_state = jax.vmap(optimizer.init)(params)
  losses = []
  for step in range(steps):
    batch = _stack([batch_fn(source, s, step, batch_size) for s in seeds])
    params, model_state, opt_state, loss = step_fn(
      params, model_state, opt_state, batch, step_keys, jnp.int32(step)
    )
    losses.append(loss)
  final = {"params": params, **model_state}
  unstack = lambda tree, i: jax.tree.map(lambda x: x[i], tree)
  return SeedRuns(
    initial=[unstack(variables, i) for i in range(len(seeds))],
    final=[unstack(final, i) for i in range(len(seeds))],
    losses=np.asarray(jax.device_get(losses)).T,
  )
