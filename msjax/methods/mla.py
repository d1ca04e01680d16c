"""MLA: alternating unimodal learning with a shared head.

Reference: Zhang, Latham, Yao, Ghasemzadeh, "Multimodal Representation
Learning by Alternating Unimodal Adaptation", CVPR 2024.

Model: per modality ``m`` an encoder ``h_m = f_m(x_m) [B, F]`` and one
linear head shared by every modality, ``z_m = h_m W + b [B, C]``
(``W [F, C]``).

Alternation: step ``t`` trains modality ``a = t mod M`` only (derived from
the traced ``step``, no extra state)::

  L_t = mean_i CE(z_a,i, y_i)

Gradient modification of the shared head (so that learning modality ``a``
does not erase what the head learnt from the others): each modality keeps a
projector ``P_m [F, F]`` (``P_m = I`` at init) updated, when ``m`` is
trained, with the batch-mean feature ``hbar = mean_i h_m,i [F]`` (recursive
least squares, orthogonal weight modification)::

  P_m <- P_m - (P_m hbar)(P_m hbar)^T / (beta + hbar^T P_m hbar)

and the head weight's gradient of ``L_t`` is projected as
``dW <- Q_a dW`` with ``Q_a = prod_{m != a} P_m`` (``[F, F]``), i.e. onto
the directions the other modalities' features barely span. The encoders'
gradients and the bias' are unchanged; ``loss.projection = False`` turns the
modification off, ``beta = loss.projection_beta``.

Inference (:func:`predict`, the model's own classifier): test-time
uncertainty fusion of the unimodal
predictions, ``e_m = -sum_c p_m,c log p_m,c`` (``p_m = softmax(z_m)``),
``w_m = softmax_m(max_k e_k - e_m)`` per row, ``p = sum_m w_m p_m [B, C]``.

State: the projectors ``P [M, F, F]`` live in the non-params collection
``"mla"`` (``variables["mla"]["projection"]``), updated through
``new_model_state``.

:func:`embed`: encoder features ``{m: [B, F]}``, ``"fused"`` their
concatenation ``[B, M * F]``. Metrics: ``loss/ce`` (the trained modality's),
``loss/ce/<m>`` (every modality's, for monitoring), ``mla/active``.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from msjax.methods import _balancing, encoders
from msjax.methods.batch_checks import check_batch
from msjax.methods.config_checks import modalities
from msjax.methods.forward import init_variables, run_model, with_fused
from msjax.methods.interface import Method
from msjax.methods.key_streams import rng_streams

__all__ = [
  "METHOD",
  "STATE",
  "MLAModel",
  "default_config",
  "embed",
  "init",
  "loss_fn",
  "predict",
  "projected_dense",
  "update_projector",
]

#: The variable collection holding the per-modality head projectors.
STATE = "mla"


def default_config(size: str = "tiny") -> ml_collections.ConfigDict:
  """The ``model`` and ``loss`` sections (set ``model.num_classes``).

  Args:
    size: ``"tiny"`` (tests, smoke runs) or ``"paper"``.

  Returns:
    ``ConfigDict(model=..., loss=...)``.
  """
  return _balancing.base_config(size, projection=True, projection_beta=1.0)


@jax.custom_vjp
def projected_dense(h: jax.Array, w: jax.Array, q: jax.Array) -> jax.Array:
  """``h @ w`` whose gradient w.r.t. ``w`` is ``q @ (h^T g)``.

  Args:
    h: ``[B, F]`` inputs.
    w: ``[F, C]`` weight.
    q: ``[F, F]`` projector (no gradient).

  Returns:
    ``[B, C]``.
  """
  del q
  return h @ w


def _projected_fwd(h, w, q):
  return h @ w, (h, w, q)


def _projected_bwd(res, g):
  h, w, q = res
  return g @ w.T, q @ (h.T @ g), jnp.zeros_like(q)


projected_dense.defvjp(_projected_fwd, _projected_bwd)


def update_projector(
  projector: jax.Array, mean_feature: jax.Array, *, beta: float
) -> jax.Array:
  """One recursive-least-squares step ``P - P h h^T P / (beta + h^T P h)``.

  Args:
    projector: ``P [F, F]`` (symmetric).
    mean_feature: ``hbar [F]``.
    beta: regulariser (> 0).

  Returns:
    ``[F, F]``.
  """
  ph = projector @ mean_feature
  return projector - jnp.outer(ph, ph) / (beta + mean_feature @ ph)


class MLAModel(encoders.EncoderModel):
  """Encoders and one head shared by every modality.

  Attributes:
    num_classes: ``C``.
  """

  num_classes: int

  @nn.compact
  def __call__(
    self,
    signals: dict[str, jax.Array],
    *,
    train: bool,
    head_projectors: dict[str, jax.Array] | None = None,
  ) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """Returns ``(features {m: [B, F]}, logits {m: [B, C]})``.

    ``head_projectors`` (``{m: Q_m [F, F]}``) project the head weight's
    gradient of modality ``m``'s logits (None: plain gradients).
    """
    features = encoders.ModalityEncoders(
      self.modalities,
      self.encoder,
      self.feature_dim,
      encoder_options=self.encoder_options,
      name="encoders",
    )(signals, train=train)
    weight = self.param(
      "head_weight",
      nn.initializers.lecun_normal(),
      (self.feature_dim, self.num_classes),
    )
    bias = self.param("head_bias", nn.initializers.zeros, (self.num_classes,))
    logits = {}
    for m in self.modalities:
      if head_projectors is None:
        logits[m] = features[m] @ weight + bias
      else:
        q = jax.lax.stop_gradient(head_projectors[m])
        logits[m] = projected_dense(features[m], weight, q) + bias
    return features, logits


def _model(config: ml_collections.ConfigDict) -> MLAModel:
  return MLAModel(
    **encoders.encoder_fields(config),
    num_classes=_balancing.check_classes(config),
  )


def init(
  rng: jax.Array, config: ml_collections.ConfigDict, example_batch: dict
) -> dict[str, Any]:
  """``{"params", "batch_stats", "mla": {"projection": I [M, F, F]}}``."""
  variables = init_variables(
    _model(config), rng, example_batch, config, min_modalities=2
  )
  num = len(modalities(config))
  dim = int(config.model.feature_dim)
  eye = jnp.broadcast_to(jnp.eye(dim, dtype=jnp.float32), (num, dim, dim))
  variables[STATE] = {"projection": eye}
  return variables


def _others_product(projection: jax.Array, a: int) -> jax.Array:
  """``prod_{m != a} P_m`` (in modality order) of ``P [M, F, F]``."""
  eye = jnp.eye(projection.shape[-1], dtype=projection.dtype)
  return functools.reduce(
    jnp.matmul,
    [projection[m] for m in range(projection.shape[0]) if m != a],
    eye,
  )


def loss_fn(
  variables: dict[str, Any],
  batch: dict,
  rng: jax.Array,
  config: ml_collections.ConfigDict,
  step: jax.Array,
) -> tuple[jax.Array, tuple[dict[str, Any], dict[str, jax.Array]]]:
  """The active modality's cross-entropy (module docstring).

  Args:
    variables: ``{"params", "batch_stats", "mla"}``.
    batch: ``{"signals": {m: [B, ...]}, "label": int [B] in 0..C-1}``.
    rng: the step key (stream ``dropout``).
    config: the experiment config.
    step: traced int32 step; modality ``step mod M`` is trained.

  Returns:
    ``(loss, (new_model_state, metrics))``; ``new_model_state`` holds the
    updated ``batch_stats`` and ``mla`` projectors.
  """
  mods = check_batch(batch, config, min_modalities=2, need_labels=True)
  labels = jnp.asarray(batch["label"], jnp.int32)
  streams = rng_streams(rng)
  projection = variables[STATE]["projection"]
  project = bool(config.loss.projection)
  projectors = (
    {m: _others_product(projection, i) for i, m in enumerate(mods)}
    if project
    else None
  )
  active = jnp.mod(jnp.asarray(step, jnp.int32), len(mods))
  select = jax.nn.one_hot(active, len(mods), dtype=jnp.float32)
  (features, logits), state = run_model(
    _model(config),
    {k: v for k, v in variables.items() if k != STATE},
    {m: batch["signals"][m] for m in mods},
    train=True,
    rngs={"dropout": streams["dropout"]},
    head_projectors=projectors,
  )
  per_mod = jnp.stack(
    [jnp.mean(_balancing.cross_entropy(logits[m], labels)) for m in mods]
  )
  loss = jnp.sum(select * per_mod)
  means = jnp.stack(
    [jax.lax.stop_gradient(jnp.mean(features[m], axis=0)) for m in mods]
  )
  beta = float(config.loss.projection_beta)
  updated = jnp.stack(
    [
      update_projector(projection[i], means[i], beta=beta)
      for i in range(len(mods))
    ]
  )
  keep = select[:, None, None]
  new_projection = keep * updated + (1.0 - keep) * projection
  metrics = {"loss/ce": loss, "mla/active": active.astype(jnp.float32)}
  for i, m in enumerate(mods):
    metrics[f"loss/ce/{m}"] = jax.lax.stop_gradient(per_mod[i])
  state = {**state, STATE: {"projection": new_projection}}
  return loss, (state, metrics)


def predict(
  variables: dict[str, Any], batch: dict, config: ml_collections.ConfigDict
) -> dict[str, jax.Array]:
  """The shared head's predictions in eval mode, ``[B, C]`` each.

  Returns:
    ``{"fused": p, m: p_m}``: the uncertainty-weighted fusion ``p`` (module
    docstring) and every modality's ``p_m = softmax(z_m)``.
  """
  mods = check_batch(batch, config, min_modalities=2)
  (_, logits), _ = run_model(
    _model(config),
    {k: v for k, v in variables.items() if k != STATE},
    {m: jnp.asarray(batch["signals"][m]) for m in mods},
    train=False,
  )
  probs = jnp.stack([jax.nn.softmax(logits[m], axis=-1) for m in mods])
  entropy = -jnp.sum(probs * jnp.log(jnp.maximum(probs, 1e-12)), axis=-1)
  weights = jax.nn.softmax(jnp.max(entropy, axis=0) - entropy, axis=0)
  fused = jnp.sum(weights[..., None] * probs, axis=0)
  return {"fused": fused, **{m: probs[i] for i, m in enumerate(mods)}}


def embed(
  variables: dict[str, Any], batch: dict, config: ml_collections.ConfigDict
) -> dict[str, jax.Array]:
  """Eval-mode ``{m: [B, F]}`` and ``"fused" [B, M * F]``."""
  mods = check_batch(batch, config, min_modalities=2)
  (features, _), _ = run_model(
    _model(config),
    {k: v for k, v in variables.items() if k != STATE},
    {m: jnp.asarray(batch["signals"][m]) for m in mods},
    train=False,
  )
  return with_fused(features, mods)


#: The method record (:class:`msjax.methods.interface.Method`).
METHOD = Method(default_config, init, loss_fn, embed, predict=predict)
