"""MoCo v3: momentum contrast with a momentum encoder, per modality.

Reference: Chen, Xie, He, "An Empirical Study of Training Self-Supervised
Vision Transformers" (MoCo v3), ICCV 2021; He, Fan, Wu, Xie, Girshick,
"Momentum Contrast for Unsupervised Visual Representation Learning", CVPR
2020.

A unimodal baseline: every modality is trained on its own (no cross-modal
term; unpaired rows are accepted). Per modality ``m``: a query encoder
(``config.model.encoder``, features ``[B, F]``), a projector (``-> E``) and
a predictor (``E -> E``), trained by gradient; a key (momentum) encoder and
projector whose parameters ``xi`` are an exponential moving average of the
query's ``theta``, held in the train state as the non-params variable
collection ``"momentum"`` (``variables["momentum"]["params"]``, the query
tree without the predictors) and updated through ``loss_fn``'s
``new_model_state``, like BatchNorm statistics::

  xi_{t+1} = mu * xi_t + (1 - mu) * theta_t           (xi_0 = theta_0)

(``theta_t``: the parameters the step's loss is computed with, i.e. before
that step's optimiser update -- the key encoder lags one update behind
MoCo's, which averages the updated query).

Objective, two augmented views ``x1, x2`` of a batch ``[B, ...]``:
``q_v = n(pred(proj(f(x_v)))) [B, E]`` from the query branch,
``k_v = stop_gradient(n(proj_xi(f_xi(x_v)))) [B, E]`` from the key branch::

  ctr(q, k) = 2 tau * mean_i -log( exp(q_i . k_i / tau)
                                   / sum_j exp(q_i . k_j / tau) )
  L_m = ctr(q_1, k_2) + ctr(q_2, k_1)
  L   = mean_m L_m

(MoCo v3's large-batch form: the other samples of the batch are the
negatives, no queue.) The key branch runs BatchNorm in training mode on its
own batch; its running statistics are not kept (it is never evaluated).

:func:`embed`: the query encoder features ``[B, F]`` per modality,
``"fused"`` their concatenation ``[B, M * F]``.

Metrics: ``loss/moco``, ``loss/moco/<m>``.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from msjax.kernels._util import lse
from msjax.kernels.norms import l2_normalize
from msjax.methods import encoders, forward
from msjax.methods.batch_checks import check_batch
from msjax.methods.interface import Method, never_paired
from msjax.methods.key_streams import rng_streams
from msjax.methods.views import augment_config, make_views
from msjax.nn import MLPProjector

__all__ = [
  "METHOD",
  "MOMENTUM",
  "MoCoModel",
  "default_config",
  "embed",
  "init",
  "loss_fn",
  "moco_contrastive",
]

#: The variable collection holding the momentum (key) parameters.
MOMENTUM = "momentum"
_PREDICTOR = "predictor_"


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
    projector_hidden=(32,) if tiny else (4096,),
    predictor_hidden=(32,) if tiny else (4096,),
    embed_dim=16 if tiny else 256,
  )
  loss = dict(
    # MoCo v3's temperature for ResNet encoders (0.2 is its ViT setting).
    tau=1.0,
    momentum=0.99,
    augment=augment_config(
      ("jitter", "negation", "channel_shuffle", "time_mask")
    ),
  )
  return ml_collections.ConfigDict(dict(model=model, loss=loss))


class MoCoModel(encoders.ProjectorModel):
  """Encoders, projectors and (query branch only) predictors.

  Attributes:
    projector_hidden: hidden widths of each projector.
    predictor_hidden: hidden widths of each predictor.
    embed_dim: ``E``.
  """

  predictor_hidden: tuple[int, ...]

  @nn.compact
  def __call__(
    self, signals: dict[str, jax.Array], *, train: bool, predict: bool = True
  ) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """Returns ``(features {m: [N, F]}, outputs {m: [N, E]})``.

    Args:
      signals: ``{m: [N, C_m, ...]}``.
      train: BatchNorm batch statistics (True) or running averages.
      predict: query branch (projector + predictor); ``False``: key branch
        (projector only; the predictor parameters are not touched).
    """
    h = encoders.ModalityEncoders(
      self.modalities,
      self.encoder,
      self.feature_dim,
      encoder_options=self.encoder_options,
      name="encoders",
    )(signals, train=train)
    out = {}
    for m in self.modalities:
      p = MLPProjector(
        tuple(self.projector_hidden),
        self.embed_dim,
        use_bn=True,
        name=f"projector_{m}",
      )(h[m], train=train)
      if predict:
        p = MLPProjector(
          tuple(self.predictor_hidden),
          self.embed_dim,
          use_bn=True,
          name=f"{_PREDICTOR}{m}",
        )(p, train=train)
      out[m] = p
    return h, out


def _model(config: ml_collections.ConfigDict) -> MoCoModel:
  c = config.model
  return MoCoModel(
    **encoders.projector_fields(config),
    predictor_hidden=tuple(int(w) for w in c.predictor_hidden),
  )


def _key_params(params: dict[str, Any]) -> dict[str, Any]:
  """The query parameters the key branch mirrors (no predictors)."""
  return {k: v for k, v in params.items() if not k.startswith(_PREDICTOR)}


def _check_loss_config(config: ml_collections.ConfigDict) -> None:
  if not 0.0 <= config.loss.momentum <= 1.0:
    raise ValueError(
      f"loss.momentum must be in [0, 1], got {config.loss.momentum}."
    )
  if not config.loss.tau > 0:
    raise ValueError(f"loss.tau must be > 0, got {config.loss.tau}.")


def moco_contrastive(q: jax.Array, k: jax.Array, *, tau: float) -> jax.Array:
  """MoCo v3's ``ctr(q, k)``: ``2 tau`` x InfoNCE, keys' gradient stopped.

  Args:
    q: ``[B, E]`` queries (normalised inside).
    k: ``[B, E]`` keys, row ``i`` the positive of ``q[i]`` (normalised
      inside, gradient stopped).
    tau: temperature (> 0).

  Returns:
    ``[]`` ``2 tau * mean_i (lse_j(q_i . k_j / tau) - q_i . k_i / tau)``.
  """
  if q.ndim != 2 or q.shape != k.shape:
    raise ValueError(
      f"q and k must be [B, E] of one shape, got {q.shape} and {k.shape}."
    )
  q = l2_normalize(q)
  k = jax.lax.stop_gradient(l2_normalize(k))
  logits = jnp.matmul(q, k.T, precision=jax.lax.Precision.HIGHEST) / tau
  positive = jnp.sum(q * k, axis=-1) / tau
  return 2.0 * tau * jnp.mean(lse(logits, axis=1)[:, 0] - positive)


def init(
  rng: jax.Array, config: ml_collections.ConfigDict, example_batch: dict
) -> dict[str, Any]:
  """Variables ``{"params", "batch_stats", "momentum": {"params"}}``.

  The momentum parameters start equal to the query's (predictors excluded).
  """
  _check_loss_config(config)
  variables = forward.init_variables(_model(config), rng, example_batch, config)
  key = jax.tree.map(jnp.copy, _key_params(variables["params"]))
  return {**variables, MOMENTUM: {"params": key}}


def loss_fn(
  variables: dict[str, Any],
  batch: dict,
  rng: jax.Array,
  config: ml_collections.ConfigDict,
  step: jax.Array,
) -> tuple[jax.Array, tuple[dict[str, Any], dict[str, jax.Array]]]:
  """MoCo v3 loss of two augmented views; updates the momentum parameters.

  Args:
    variables: ``{"params", "batch_stats", "momentum": {"params"}}``.
    batch: ``{"signals": {m: [B, ...]}, ...}`` (labels unused).
    rng: the step key (streams ``augment``, ``dropout``).
    config: the experiment config.
    step: traced int32 step (unused).

  Returns:
    ``(loss, (new_model_state, metrics))``; ``new_model_state`` holds the
    query's new ``batch_stats`` and the averaged ``momentum`` parameters.
  """
  del step
  _check_loss_config(config)
  mods = check_batch(batch, config)
  streams = rng_streams(rng)
  views = make_views(
    streams["augment"],
    {m: batch["signals"][m] for m in mods},
    config.loss.augment,
    2,
  )
  model = _model(config)
  query_vars = {k: v for k, v in variables.items() if k != MOMENTUM}
  (_, q), state = forward.run_model(
    model,
    query_vars,
    views,
    train=True,
    rngs={"dropout": streams["dropout"]},
  )
  key_vars = {**query_vars, "params": variables[MOMENTUM]["params"]}
  (_, k), _ = forward.run_model(
    model,
    key_vars,
    views,
    train=True,
    predict=False,
    rngs={"dropout": streams["dropout"]},
  )
  tau = config.loss.tau
  per_mod = {}
  for m in mods:
    q1, q2 = jnp.split(q[m], 2)
    k1, k2 = jnp.split(k[m], 2)
    per_mod[m] = moco_contrastive(q1, k2, tau=tau) + moco_contrastive(
      q2, k1, tau=tau
    )
  loss = jnp.mean(jnp.stack(list(per_mod.values())))
  mu = config.loss.momentum
  online = jax.lax.stop_gradient(_key_params(variables["params"]))
  averaged = jax.tree.map(
    lambda xi, theta: mu * xi + (1.0 - mu) * theta,
    variables[MOMENTUM]["params"],
    online,
  )
  state = {**state, MOMENTUM: {"params": averaged}}
  metrics = {f"loss/moco/{m}": v for m, v in per_mod.items()}
  return loss, (state, {"loss/moco": loss, **metrics})


def embed(
  variables: dict[str, Any], batch: dict, config: ml_collections.ConfigDict
) -> dict[str, jax.Array]:
  """Eval-mode query features ``{m: [B, F]}`` and ``"fused" [B, M * F]``."""
  query_vars = {k: v for k, v in variables.items() if k != MOMENTUM}
  mods, (h, _) = forward.apply_eval(_model(config), query_vars, batch, config)
  return forward.with_fused(h, mods)


#: The method record (:class:`msjax.methods.interface.Method`).
METHOD = Method(
  default_config, init, loss_fn, embed, requires_paired_rows=never_paired
)
