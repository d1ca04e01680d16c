"""TS-TCC: temporal and contextual contrasting, per modality.

Reference: Eldele, Ragab, Chen, Wu, Kwoh, Li, Guan, "Time-Series
Representation Learning via Temporal and Contextual Contrasting", IJCAI 2021.

A unimodal baseline: every modality is trained on its own (no cross-modal
term; unpaired rows are accepted). Per modality ``m``, two views of the batch
``x [B, C, T]``: a weak one (``loss.weak_augment``: scaling and jitter) and a
strong one (``loss.strong_augment``: segment permutation and jitter). A 1-D
encoder's last stage, mapped per time step by a ``Dense(F)``, gives latent
sequences ``z^s, z^w [B, T', F]`` (``T'`` the encoder's output length).

Temporal contrasting: ``K = max(1, floor(loss.timestep_fraction T'))``
future steps, a time step ``t`` drawn uniformly from ``[0, T' - K)`` (one per
modality and step, from the step key), a Transformer with a class token over
``z_{0..t}`` (later tokens are masked out as keys) gives the context
``c_t [B, D]``, and ``K`` linear maps ``W_k: D -> F`` predict the *other*
view's future: ``p_k = W_k c_t [B, F]``. With ``s_k = p_k (z'_{t+k})^T
[B, B]`` (rows: predictions, columns: every sample's true future)::

  TC(p, z') = -1/(K B) sum_k sum_i log softmax_j(s_k)_{i i}
  L_TC = TC(p^s, z^w) + TC(p^w, z^s)

Contextual contrasting: a projection head ``g`` (Dense -> BN -> ReLU ->
Dense) of the contexts, ``L_CC = NT-Xent(g(c^s), g(c^w); tau)`` (SPEC §4.3,
``2B`` vectors, cosine similarity). Per modality ``L_m = lambda_1 L_TC +
lambda_2 L_CC`` (``lambda_1 = 1``, ``lambda_2 = 0.7``, ``tau = 0.2`` in the
paper); ``L = mean_m L_m``.

The temporal structure TS-TCC contrasts is the encoder's sequence inside a
window, as in the paper; the batch needs no consecutive windows.

:func:`embed`: the time-averaged latent ``mean_t z_t`` of the unaugmented
input per modality ``[B, F]``, ``"fused"`` their concatenation
``[B, M * F]``. Metrics: ``loss/tstcc``, ``loss/tstcc/<m>``,
``loss/tc/<m>``, ``loss/cc/<m>``.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from msjax.kernels.contrastive import nt_xent
from msjax.methods import encoders
from msjax.methods.batch_checks import check_batch
from msjax.methods.forward import run_model, with_fused
from msjax.methods.interface import Method, never_paired
from msjax.methods.key_streams import rng_streams
from msjax.methods.views import augment_config, make_views
from msjax.nn import MLPProjector

__all__ = [
  "METHOD",
  "ContextTransformer",
  "TSTCCModel",
  "default_config",
  "embed",
  "init",
  "loss_fn",
  "temporal_contrast",
  "tstcc_objective",
]


def default_config(size: str = "tiny") -> ml_collections.ConfigDict:
  """The ``model`` and ``loss`` sections.

  Args:
    size: ``"tiny"`` (tests, smoke runs) or ``"paper"``.

  Returns:
    ``ConfigDict(model=..., loss=...)`` with every key declared.
  """
  tiny = size == "tiny"
  model = encoders.encoder_model(
    size,
    feature_dim=16 if tiny else 128,
    context_dim=16 if tiny else 100,
    context_depth=1 if tiny else 4,
    context_heads=2 if tiny else 4,
    context_mlp_dim=32 if tiny else 64,
    projector_hidden=8 if tiny else 50,
    embed_dim=8 if tiny else 25,
  )
  loss = dict(
    timestep_fraction=0.4,
    lambda_tc=1.0,
    lambda_cc=0.7,
    tau=0.2,
    weak_augment=augment_config(
      ("scaling", "jitter"),
      probability=1.0,
      scaling=dict(sigma=0.2),
      jitter=dict(sigma=0.03),
    ),
    strong_augment=augment_config(
      ("permutation", "jitter"),
      probability=1.0,
      permutation=dict(num_segments=5),
      jitter=dict(sigma=0.1),
    ),
  )
  return ml_collections.ConfigDict(dict(model=model, loss=loss))


class ContextTransformer(nn.Module):
  """Class-token Transformer over ``z_{0..t}``: ``[B, T, F] -> [B, D]``.

  Attributes:
    dim: ``D``.
    depth: number of pre-LayerNorm blocks.
    heads: attention heads.
    mlp_dim: hidden width of each block's MLP.
  """

  dim: int
  depth: int
  heads: int
  mlp_dim: int

  @nn.compact
  def __call__(self, z: jax.Array, t: jax.Array) -> jax.Array:
    """Context ``c_t [B, D]`` of the steps ``0..t`` of ``z [B, T, F]``."""
    h = nn.Dense(self.dim, name="embed")(z)
    token = self.param(
      "class_token", nn.initializers.normal(0.02), (1, 1, self.dim)
    )
    h = jnp.concatenate([jnp.broadcast_to(token, h[:, :1].shape), h], 1)
    # Keys: the class token and z_0..z_t (token positions 0..t + 1).
    visible = jnp.arange(h.shape[1]) <= t + 1
    mask = jnp.broadcast_to(visible, (h.shape[0], 1, h.shape[1], h.shape[1]))
    for i in range(self.depth):
      y = nn.LayerNorm(name=f"norm{i}_attn")(h)
      h = h + nn.MultiHeadDotProductAttention(
        num_heads=self.heads, name=f"attn{i}"
      )(y, y, mask=mask)
      y = nn.LayerNorm(name=f"norm{i}_mlp")(h)
      y = nn.Dense(self.mlp_dim, name=f"mlp{i}_in")(y)
      h = h + nn.Dense(self.dim, name=f"mlp{i}_out")(nn.gelu(y))
    return nn.LayerNorm(name="norm_out")(h[:, 0])


class _SequenceEncoder(nn.Module):
  """A 1-D encoder's last stage per step: ``[B, C, T] -> [B, T', F]``.

  Attributes:
    encoder: a 1-D key of :data:`msjax.methods.encoders.ENCODERS`.
    feature_dim: ``F``.
    encoder_options: the row's keyword arguments
      (:func:`msjax.methods.encoders.encoder_options`).
  """

  encoder: str
  feature_dim: int
  encoder_options: tuple[tuple[str, Any], ...] = ()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    constructor = encoders.ENCODERS[self.encoder].constructor
    _, aux = constructor(
      embed_dim=None, name="backbone", **dict(self.encoder_options)
    )(x, train=train)
    last = max(int(k[len("stage") :]) for k in aux if k.startswith("stage"))
    return nn.Dense(self.feature_dim, name="step_proj")(aux[f"stage{last}"])


class TSTCCModel(encoders.EncoderModel):
  """Per modality: encoder, context Transformer, predictors, projector.

  Attributes:
    context_dim: ``D``.
    context_depth: Transformer blocks.
    context_heads: attention heads.
    context_mlp_dim: Transformer MLP width.
    projector_hidden: hidden width of the projection head.
    embed_dim: ``E``, the projection head's output.
    timestep_fraction: ``K = max(1, floor(fraction T'))``.
  """

  context_dim: int
  context_depth: int
  context_heads: int
  context_mlp_dim: int
  projector_hidden: int
  embed_dim: int
  timestep_fraction: float

  @nn.compact
  def __call__(
    self,
    signals: dict[str, jax.Array],
    *,
    train: bool,
    steps: dict[str, jax.Array] | None = None,
  ) -> dict[str, dict[str, jax.Array]]:
    """Encodes every modality; with ``steps`` also the context branch.

    Args:
      signals: ``{m: [N, C, T]}``.
      train: BatchNorm batch statistics (True) or running averages.
      steps: ``{m: t}`` traced context time steps (None: encoder only).

    Returns:
      ``{m: {"z": [N, T', F], "features": [N, F]}}`` plus, with ``steps``,
      ``"context" [N, D]``, ``"predictions" [N, K, F]`` and
      ``"projection" [N, E]``.
    """
    out = {}
    for m in self.modalities:
      z = _SequenceEncoder(
        self.encoder,
        self.feature_dim,
        self.encoder_options,
        name=f"encoder_{m}",
      )(signals[m], train=train)
      entry = {"z": z, "features": jnp.mean(z, axis=1)}
      if steps is not None:
        k = num_future_steps(z.shape[1], self.timestep_fraction)
        c = ContextTransformer(
          self.context_dim,
          self.context_depth,
          self.context_heads,
          self.context_mlp_dim,
          name=f"context_{m}",
        )(z, steps[m])
        pred = nn.Dense(k * self.feature_dim, name=f"predictors_{m}")(c)
        entry["context"] = c
        entry["predictions"] = pred.reshape(c.shape[0], k, self.feature_dim)
        entry["projection"] = MLPProjector(
          (self.projector_hidden,),
          self.embed_dim,
          use_bn=True,
          name=f"projector_{m}",
        )(c, train=train)
      out[m] = entry
    return out


def num_future_steps(length: int, fraction: float) -> int:
  """``K = max(1, floor(fraction T'))``, checked against ``T' >= K + 1``."""
  k = max(1, int(fraction * length))
  if length < k + 1:
    raise ValueError(
      f"the encoder's output has {length} time steps, too few for "
      f"K={k} future steps plus one context step; use longer windows."
    )
  return k


def _model(config: ml_collections.ConfigDict) -> TSTCCModel:
  c = config.model
  if encoders.ENCODERS[c.encoder].input_rank != 2:
    raise ValueError(
      f"TS-TCC needs a 1-D encoder over raw windows [B, C, T], got "
      f"model.encoder={c.encoder!r}."
    )
  return TSTCCModel(
    **encoders.encoder_fields(config),
    context_dim=int(c.context_dim),
    context_depth=int(c.context_depth),
    context_heads=int(c.context_heads),
    context_mlp_dim=int(c.context_mlp_dim),
    projector_hidden=int(c.projector_hidden),
    embed_dim=int(c.embed_dim),
    timestep_fraction=float(config.loss.timestep_fraction),
  )


def init(
  rng: jax.Array, config: ml_collections.ConfigDict, example_batch: dict
) -> dict[str, Any]:
  """Initial variables ``{"params", "batch_stats"}`` for ``example_batch``."""
  model = _model(config)
  mods = check_batch(example_batch, config)
  signals = {m: jnp.asarray(example_batch["signals"][m]) for m in mods}
  steps = {m: jnp.zeros((), jnp.int32) for m in mods}
  return dict(model.init(rng, signals, train=False, steps=steps))


def temporal_contrast(predictions: jax.Array, future: jax.Array) -> jax.Array:
  """``TC(p, z')``: InfoNCE of each prediction against the batch's futures.

  Args:
    predictions: ``p [B, K, F]``.
    future: ``z' [B, K, F]``, the true ``z'_{t+1..t+K}``.

  Returns:
    Scalar ``-1/(K B) sum_k sum_i log softmax_j(p_k z'_k^T)_{i i}``.
  """
  scores = jnp.einsum("ikf,jkf->kij", predictions, future)
  scores = scores.astype(jnp.promote_types(scores.dtype, jnp.float32))
  log_probs = jax.nn.log_softmax(scores, axis=-1)
  return -jnp.mean(jnp.diagonal(log_probs, axis1=1, axis2=2))


def tstcc_objective(
  strong: dict[str, jax.Array],
  weak: dict[str, jax.Array],
  *,
  lambda_tc: float,
  lambda_cc: float,
  tau: float,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """One modality's ``(L_m, L_TC, L_CC)``.

  Args:
    strong: the strong view's ``"predictions" [B, K, F]``, ``"future"
      [B, K, F]`` and ``"projection" [B, E]``.
    weak: the same for the weak view.
    lambda_tc: ``lambda_1``.
    lambda_cc: ``lambda_2``.
    tau: NT-Xent temperature.

  Returns:
    Scalars ``(lambda_1 L_TC + lambda_2 L_CC, L_TC, L_CC)``.
  """
  tc = temporal_contrast(strong["predictions"], weak["future"])
  tc = tc + temporal_contrast(weak["predictions"], strong["future"])
  cc = nt_xent(strong["projection"], weak["projection"], tau=tau)
  return lambda_tc * tc + lambda_cc * cc, tc, cc


def loss_fn(
  variables: dict[str, Any],
  batch: dict,
  rng: jax.Array,
  config: ml_collections.ConfigDict,
  step: jax.Array,
) -> tuple[jax.Array, tuple[dict[str, Any], dict[str, jax.Array]]]:
  """TS-TCC's loss on one (unlabelled) batch.

  Args:
    variables: ``{"params", "batch_stats"}``.
    batch: ``{"signals": {m: [B, C, T]}, ...}`` (labels unused).
    rng: the step key (streams ``augment`` for the views and the context
      time steps, ``dropout``).
    config: the experiment config.
    step: traced int32 step (unused).

  Returns:
    ``(loss, (new_model_state, metrics))``.
  """
  del step
  model = _model(config)
  mods = check_batch(batch, config)
  streams = rng_streams(rng)
  signals = {m: batch["signals"][m] for m in mods}
  key_strong, key_weak, key_time = jax.random.split(streams["augment"], 3)
  strong = make_views(key_strong, signals, config.loss.strong_augment, 1)
  weak = make_views(key_weak, signals, config.loss.weak_augment, 1)
  views = {m: jnp.concatenate([strong[m], weak[m]]) for m in mods}
  steps = {}
  out_shapes = jax.eval_shape(
    lambda v, s: model.apply(v, s, train=False), variables, signals
  )
  for i, m in enumerate(mods):
    length = out_shapes[m]["z"].shape[1]
    k = num_future_steps(length, model.timestep_fraction)
    steps[m] = jax.random.randint(
      jax.random.fold_in(key_time, i), (), 0, length - k
    )
  out, state = run_model(
    model,
    variables,
    views,
    train=True,
    rngs={"dropout": streams["dropout"]},
    steps=steps,
  )
  per_mod, metrics = [], {}
  for m in mods:
    o = out[m]
    k = o["predictions"].shape[1]
    future = jax.lax.dynamic_slice_in_dim(o["z"], steps[m] + 1, k, axis=1)
    halves = [
      {
        "predictions": p,
        "future": f,
        "projection": g,
      }
      for p, f, g in zip(
        jnp.split(o["predictions"], 2),
        jnp.split(future, 2),
        jnp.split(o["projection"], 2),
        strict=True,
      )
    ]
    loss_m, tc, cc = tstcc_objective(
      halves[0],
      halves[1],
      lambda_tc=float(config.loss.lambda_tc),
      lambda_cc=float(config.loss.lambda_cc),
      tau=float(config.loss.tau),
    )
    per_mod.append(loss_m)
    metrics[f"loss/tstcc/{m}"] = loss_m
    metrics[f"loss/tc/{m}"] = tc
    metrics[f"loss/cc/{m}"] = cc
  loss = jnp.mean(jnp.stack(per_mod))
  return loss, (state, {"loss/tstcc": loss, **metrics})


def embed(
  variables: dict[str, Any], batch: dict, config: ml_collections.ConfigDict
) -> dict[str, jax.Array]:
  """Eval-mode ``{m: mean_t z_t [B, F]}`` and ``"fused" [B, M * F]``."""
  model = _model(config)
  mods = check_batch(batch, config)
  out, _ = run_model(
    model,
    variables,
    {m: jnp.asarray(batch["signals"][m]) for m in mods},
    train=False,
  )
  return with_fused({m: out[m]["features"] for m in mods}, mods)


#: The method record (:class:`msjax.methods.interface.Method`).
METHOD = Method(
  default_config, init, loss_fn, embed, requires_paired_rows=never_paired
)
