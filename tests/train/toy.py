"""A tiny method and data source that follow the msjax contracts.

The toy method exercises everything the loop must handle: a loss with
global-batch statistics (batch centring), a per-step random key, a non-params
collection updated every step, three optimiser groups ("main",
"discriminators", "frozen") and a ``post_update``.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from msjax.methods import Method
from msjax.train import config_lib

MODALITIES = ("a", "b")


def default_config(size: str = "tiny") -> ml_collections.ConfigDict:
  del size
  return ml_collections.ConfigDict(
    dict(
      model=dict(width=8, num_prototypes=4, input_length=0),
      loss=dict(tau=0.5, noise=0.01, nan_step=-1),
    )
  )


def init(rng, config, example_batch):
  keys = jax.random.split(rng, 5)
  for name in config.data.modalities:
    length = example_batch["signals"][name].shape[-1]
    if config.model.input_length and length != config.model.input_length:
      raise ValueError(
        f"model.input_length={config.model.input_length}, got {length}"
      )
  width = config.model.width
  encoders = {
    name: jax.random.normal(
      jax.random.fold_in(keys[0], i),
      (int(np.prod(example_batch["signals"][name].shape[1:])), width),
    )
    * 0.3
    for i, name in enumerate(config.data.modalities)
  }
  params = {
    "encoders": encoders,
    "prototypes": jax.random.normal(
      keys[1], (config.model.num_prototypes, width)
    ),
    "discriminator": {"w": jax.random.normal(keys[2], (width,))},
    "frozen": {"w": jax.random.normal(keys[3], (width,))},
  }
  return {"params": params, "stats": {"mean": jnp.zeros((width,))}}


def _encode(params, batch, config):
  out = {}
  for name in config.data.modalities:
    x = batch["signals"][name]
    z = x.reshape(x.shape[0], -1) @ params["encoders"][name]
    out[name] = z / jnp.linalg.norm(z, axis=-1, keepdims=True)
  return out


def loss_fn(variables, batch, rng, config, step):
  params = variables["params"]
  z = _encode(params, batch, config)
  names = config.data.modalities
  za = z[names[0]] + config.loss.noise * jax.random.normal(
    rng, z[names[0]].shape
  )
  zb = z[names[1]]
  proto = params["prototypes"]
  scores_a = za @ proto.T / config.loss.tau
  scores_b = zb @ proto.T / config.loss.tau
  targets = jax.nn.softmax(
    jax.lax.stop_gradient(scores_b - scores_b.mean(axis=0)), axis=-1
  )
  main = -jnp.mean(jnp.sum(targets * jax.nn.log_softmax(scores_a), axis=-1))
  main = main + jnp.where(step == config.loss.nan_step, jnp.nan, 0.0)
  disc = jnp.mean(
    (jax.lax.stop_gradient(za) @ params["discriminator"]["w"]) ** 2
  )
  frozen = jnp.mean(za @ params["frozen"]["w"])
  mean = 0.9 * variables["stats"]["mean"] + 0.1 * za.mean(axis=0)
  metrics = {
    "loss/main": main,
    "loss/disc": disc,
    "step_seen": step.astype(jnp.float32),
  }
  return main + disc + 0.0 * frozen, ({"stats": {"mean": mean}}, metrics)


def embed(variables, batch, config):
  z = _encode(variables["params"], batch, config)
  return {"fused": sum(z.values()) / len(z), **z}


def align(variables, batch, config):
  return _encode(variables["params"], batch, config)


def param_labels(params, config):
  del config
  return {
    "encoders": jax.tree.map(lambda _: "main", params["encoders"]),
    "prototypes": "main",
    "discriminator": {"w": "discriminators"},
    "frozen": {"w": "frozen"},
  }


def post_update(params, config, step):
  del config, step
  proto = params["prototypes"]
  proto = proto / jnp.linalg.norm(proto, axis=-1, keepdims=True)
  return {**params, "prototypes": proto}


#: The toy functions as a method.
METHOD = Method(
  default_config=default_config,
  init=init,
  loss_fn=loss_fn,
  embed=embed,
  param_labels=param_labels,
  post_update=post_update,
  align=align,
)


class ToySource:
  """Two modalities whose labels depend on a shared latent."""

  def __init__(self, data_config, split):
    num = data_config.num_examples
    rng = np.random.default_rng([data_config.seed, split == "test"])
    labels = rng.integers(0, 3, num)
    centres = np.random.default_rng(99).normal(size=(3, 2, 8))
    self.signals = {
      name: (
        centres[labels][:, :, :] * (i + 1) + 0.3 * rng.normal(size=(num, 2, 8))
      ).astype(np.float32)
      for i, name in enumerate(MODALITIES)
    }
    if data_config.nan_sample >= 0 and split == "train":
      self.signals["b"][data_config.nan_sample, 1, 3] = np.nan
    self.labels = labels.astype(np.int32)
    self.modalities = tuple(data_config.modalities)
    self.num_examples = num
    self.num_classes = 3

  def element_shapes(self):
    return {m: self.signals[m].shape[1:] for m in self.modalities}

  def get(self, indices):
    indices = np.asarray(indices)
    return {
      "signals": {m: self.signals[m][indices] for m in self.modalities},
      "label": self.labels[indices],
    }


def make_source(data_config, split):
  if data_config.source != "toy":
    raise FileNotFoundError(f"no data for {data_config.source}")
  return ToySource(data_config, split)


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=True)
  sections = default_config()
  optim = config_lib.optim_config(learning_rate=0.05, warmup_steps=2)
  optim.groups.discriminators = config_lib.optim_group(
    optim, optimizer="sgd", learning_rate=0.01, schedule="constant"
  )
  return config_lib.make_config(
    seed=0,
    method="toy",
    data=ml_collections.ConfigDict(
      dict(
        source="toy",
        modalities=MODALITIES,
        num_examples=64,
        seed=0,
        nan_sample=-1,
        num_workers=0,
        prefetch=2,
      )
    ),
    model=sections.model,
    loss=sections.loss,
    optim=optim,
    train=config_lib.train_config(
      batch_size=16, total_steps=6, log_every=2, progress="log"
    ),
    checkpoint=config_lib.checkpoint_config(every_steps=2, keep=2),
    eval=config_lib.eval_config(
      protocol="linear_probe", probe_steps=20, random_baseline=True
    ),
  )
