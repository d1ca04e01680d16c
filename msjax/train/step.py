"""The train state, its sharded creation and the one jitted train step.

The state is a plain dict pytree ``{"step", "params", "model_state",
"opt_state"}``; no PRNG key lives in it: the step key is
``fold_in(key(seed), step)``, so a resumed run equals an uninterrupted one.
The seed is an argument of the compiled programs (``TrainSetup.seed``), not
a constant inside them, so runs that differ only in ``config.seed`` (a
multi-seed sweep, the claims suite) share one compiled init and step (and
the persistent compilation cache's entries).
"""

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh

from msjax.methods.interface import Method
from msjax.train import optim, sharding, step_export

__all__ = [
  "TrainSetup",
  "init_variables",
  "seed_array",
  "step_key",
  "train_step",
  "tree_norms",
]

State = dict[str, Any]


def seed_array(seed: int) -> np.int32:
  """``config.seed`` as the int32 scalar the compiled programs take.

  ``key(seed_array(s))`` equals ``key(s)`` for every ``0 <= s < 2**31``.

  Raises:
    ValueError: if ``seed`` is not an int in ``[0, 2**31)``.
  """
  if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
    raise ValueError(f"seed must be an int, got {seed!r}.")
  if not 0 <= seed < 2**31:
    raise ValueError(f"seed must be in [0, 2**31), got {seed}.")
  return np.int32(seed)


def step_key(seed: int | jax.Array, step: jax.Array) -> jax.Array:
  """The PRNG key of one train step: ``fold_in(key(seed), step)``."""
  return jax.random.fold_in(jax.random.key(seed), step)


def init_variables(
  method: Method,
  config: ml_collections.ConfigDict,
  example_batch: dict,
  seed: int | jax.Array | None = None,
) -> dict:
  """Initial variables from the seed (``fold_in(key(seed), 2**31 - 1)``).

  ``seed`` (int or traced int32 scalar) defaults to ``config.seed``.
  """
  seed = config.seed if seed is None else seed
  init_key = jax.random.fold_in(jax.random.key(seed), 2**31 - 1)
  return method.init(init_key, config, example_batch)


def _split_variables(variables: dict) -> tuple[Any, dict]:
  params = variables["params"]
  model_state = {k: v for k, v in variables.items() if k != "params"}
  return params, model_state


class TrainSetup:
  """What the loop needs besides the state: optimiser, shardings, step fn.

  Attributes:
    optimizer: the combined optax transformation.
    schedules: learning-rate schedules by group label.
    state_sharding: shardings of the state pytree.
    abstract_state: the state's ``ShapeDtypeStruct`` tree (with shardings).
    seed: ``config.seed`` as an int32 scalar (:func:`seed_array`), the
      argument the programs below take.
    init_fn: jitted ``(seed) -> state`` producing the state born sharded.
    step_fn: jitted ``(state, batch, seed) -> (state, metrics)`` (an
      :class:`~msjax.train.step_export.ExportedStep` given ``export_dir``).
  """

  def __init__(
    self,
    method: Method,
    config: ml_collections.ConfigDict,
    mesh: Mesh,
    example_batch: dict,
    init_params: Callable[[Any], Any] | None = None,
    export_dir: str | None = None,
  ) -> None:
    """Traces the initialisation abstractly and jits init and step.

    Args:
      method: the method.
      config: the experiment config.
      mesh: the device mesh.
      example_batch: a host batch (numpy) with the global batch shape.
      init_params: optional ``params -> params`` applied after ``init``
        (e.g. loading stage-1 weights).
      export_dir: where the step is stored once traced and found by later
        runs (:class:`msjax.train.step_export.ExportedStep`); ``None``, or
        a multi-process run: the step is traced in every process.
    """
    zeros = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), example_batch
    )

    self.seed = seed_array(config.seed)

    def init(seed: jax.Array) -> State:
      example = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), zeros)
      variables = init_variables(method, config, example, seed)
      params, model_state = _split_variables(variables)
      if init_params is not None:
        params = init_params(params)
      return {
        "step": jnp.zeros((), jnp.int32),
        "params": params,
        "model_state": model_state,
        "opt_state": self.optimizer.init(params),
      }

    abstract_variables = jax.eval_shape(
      lambda: init_variables(
        method,
        config,
        jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), zeros),
      )
    )
    labels = method.param_labels(abstract_variables["params"], config)
    self.optimizer, self.schedules = optim.make_optimizer(config, labels)
    abstract = jax.eval_shape(init, self.seed)
    self.state_sharding = sharding.state_shardings(
      abstract, mesh, min_size=config.train.mesh.fsdp_min_size
    )
    self.abstract_state = jax.tree.map(
      lambda leaf, shard: jax.ShapeDtypeStruct(
        leaf.shape, leaf.dtype, sharding=shard
      ),
      abstract,
      self.state_sharding,
    )
    replicated = sharding.replicated(mesh)
    self.init_fn = jax.jit(
      init, in_shardings=replicated, out_shardings=self.state_sharding
    )
    step = functools.partial(
      train_step,
      method=method,
      config=config,
      optimizer=self.optimizer,
      schedules=self.schedules,
    )
    self.step_fn = jax.jit(
      step,
      in_shardings=(
        self.state_sharding,
        sharding.batch_sharding(mesh),
        replicated,
      ),
      out_shardings=(self.state_sharding, replicated),
      donate_argnums=0,
    )
    if export_dir is not None and jax.process_count() == 1:
      self.step_fn = step_export.ExportedStep(
        self.step_fn,
        export_dir,
        functools.partial(step_export.fingerprint, method, config),
        self.state_sharding,
        sharding.batch_sharding(mesh),
        replicated,
      )


def tree_norms(*trees: Any) -> jax.Array:
  """``[T]`` global L2 norms of ``T`` trees of one structure.

  One reduction per leaf position over the stacked leaves ``[T, *shape]``
  rather than one per tree and leaf: ``optax.tree.norm`` three times made
  InfoMAE stage 2's smoke step 852 reductions and 29 % of its compile time
  at the suite's XLA settings (11.8 s -> 10.1 s with this form).
  """
  per_leaf = [
    jnp.sum(jnp.square(jnp.stack(xs)), axis=tuple(range(1, xs[0].ndim + 1)))
    for xs in zip(*(jax.tree.leaves(t) for t in trees), strict=True)
  ]
  return jnp.sqrt(sum(per_leaf))


def train_step(
  state: State,
  batch: dict,
  seed: jax.Array,
  *,
  method: Method,
  config: ml_collections.ConfigDict,
  optimizer: optax.GradientTransformation,
  schedules: dict[str, Callable],
) -> tuple[State, dict[str, jax.Array]]:
  """One optimisation step on a global batch.

  Args:
    state: the train state.
    batch: the global batch (sharded along its leading axis).
    seed: int32 scalar, the run's seed (:func:`seed_array`).
    method: the method (``loss_fn``, ``post_update``).
    config: the experiment config.
    optimizer: the optax transformation.
    schedules: learning-rate schedules by group, reported as ``lr/<group>``.

  Returns:
    ``(new_state, metrics)``: metrics is a flat dict of scalar global means
    plus ``grad_norm``, ``param_norm`` and ``update_norm``.
  """
  step = state["step"]
  key = step_key(seed, step)

  def objective(params: Any) -> tuple[jax.Array, tuple[dict, dict]]:
    variables = {"params": params, **state["model_state"]}
    return method.loss_fn(variables, batch, key, config, step)

  (loss, (model_state, metrics)), grads = jax.value_and_grad(
    objective, has_aux=True
  )(state["params"])
  updates, opt_state = optimizer.update(
    grads, state["opt_state"], state["params"]
  )
  params = optax.apply_updates(state["params"], updates)
  params = method.post_update(params, config, step)
  merged_state = {**state["model_state"], **model_state}
  norms = tree_norms(grads, params, updates)
  out = {
    "loss": loss,
    **metrics,
    "grad_norm": norms[0],
    "param_norm": norms[1],
    "update_norm": norms[2],
  }
  for label, schedule in schedules.items():
    out[f"lr/{label}"] = schedule(step)
  out = {k: jnp.asarray(v, jnp.float32) for k, v in out.items()}
  new_state = {
    "step": step + 1,
    "params": params,
    "model_state": merged_state,
    "opt_state": opt_state,
  }
  return new_state, out
