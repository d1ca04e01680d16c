"""Learning tests over several seeds that compile one step for all of them.

Each seed has its own initialisation, step keys and batch stream. Two forms,
the same mathematics: the seeds' models stacked on a leading axis and
trained by one vmapped step (``vmap_seeds=True``), or one single-seed step
called once per seed and step (the default). Convolutional encoders run
the second form 1.3-4x faster on CPU: vmapping over the seeds' kernels
turns every convolution into a grouped one, which XLA:CPU runs far below
its plain convolution speed (one ProtoMM step, 3 seeds x 64 rows,
optimised: 146 ms vmapped, 3 x 23 ms looped; SimCLR 59 / 3 x 18 ms; TNC
34 / 3 x 5.4 ms). The SWIN encoders run the vmapped form faster (MAE 240
/ 3 x 103 ms). Used by every learning test that must hold for three
seeds.
"""

import os
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
  "SEEDS",
  "SeedRuns",
  "sequence_batches",
  "train_seeds",
  "uniform_batches",
]

BatchFn = Callable[[Any, int, int, int], dict]

#: The seeds every learning test trains: 0, 1, 2, or the comma-separated
#: list in ``MSJAX_TEST_SEEDS`` (e.g. ``3,4,5`` to see whether a margin is
#: the method's or seeds 0-2's; docs/claims.md, "The learning tests on
#: other seeds").
SEEDS = tuple(
  int(s) for s in os.environ.get("MSJAX_TEST_SEEDS", "0,1,2").split(",")
)

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


def _unstack(tree: Any, num: int) -> list[Any]:
  return [jax.tree.map(lambda x, i=i: x[i], tree) for i in range(num)]


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
  vmap_seeds: bool = False,
) -> SeedRuns:
  """Trains one model per seed with Adam; one compiled step for every seed.

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
    compiler_options: XLA options of the jitted step (e.g. :data:`OPTIMIZED`
      where running it dominates). The looped form's init, run once per
      seed, compiles with the suite's flags; the vmapped form's with these
      options (as every learning test compiled it before session 23, so
      that form rounds as their measured margins did).
    vmap_seeds: stack the seeds and train them with one vmapped step;
      otherwise one single-seed step is called per seed (module docstring).

  Returns:
    A :class:`SeedRuns`.
  """
  if optimizer is None:
    optimizer = optax.adam(learning_rate)
  example = batch_fn(source, seeds[0], 0, batch_size)
  init_keys = [jax.random.key(s) for s in seeds]
  step_keys = [jax.random.key(s + step_key_offset) for s in seeds]

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

  def split(variables):
    params = variables["params"]
    return params, {k: v for k, v in variables.items() if k != "params"}

  init = lambda key: method.init(key, config, example)  # noqa: E731
  if vmap_seeds:
    stacked = jax.jit(jax.vmap(init), compiler_options=compiler_options)(
      jnp.stack(init_keys)
    )
    initial = _unstack(stacked, len(seeds))
    step_fn = jax.jit(
      jax.vmap(one, in_axes=(0, 0, 0, 0, 0, None)),
      compiler_options=compiler_options,
    )
    params, model_state = split(stacked)
    opt_state = jax.vmap(optimizer.init)(params)
    keys = jnp.stack(step_keys)
    losses = []
    for step in range(steps):
      batch = _stack([batch_fn(source, s, step, batch_size) for s in seeds])
      params, model_state, opt_state, loss = step_fn(
        params, model_state, opt_state, batch, keys, jnp.int32(step)
      )
      losses.append(loss)
    final = _unstack({"params": params, **model_state}, len(seeds))
    losses = np.asarray(jax.device_get(losses)).T
  else:
    init = jax.jit(init)
    initial = [init(key) for key in init_keys]
    step_fn = jax.jit(one, compiler_options=compiler_options)
    states = []
    for variables in initial:
      params, model_state = split(variables)
      states.append((params, model_state, optimizer.init(params)))
    per_seed = [[] for _ in seeds]
    for step in range(steps):
      for i, s in enumerate(seeds):
        params, model_state, opt_state, loss = step_fn(
          *states[i],
          batch_fn(source, s, step, batch_size),
          step_keys[i],
          jnp.int32(step),
        )
        states[i] = (params, model_state, opt_state)
        per_seed[i].append(loss)
    final = [{"params": p, **state} for p, state, _ in states]
    losses = np.asarray(jax.device_get(per_seed))
  return SeedRuns(initial=initial, final=final, losses=losses)
