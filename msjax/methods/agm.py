"""AGM: adaptive gradient modulation of each modality's response.

Reference: Li, Li, Hu, Lei, Li, Zhou, "Boosting Multi-modal Model Performance
with Adaptive Gradient Modulation", ICCV 2023.

Model: per modality ``m`` an encoder ``h_m = f_m(x_m) [B, F]`` and a late
linear fusion ``z = sum_m W_m h_m + b [B, C]`` (``W_m [F, C]``; equal to one
linear classifier on the concatenation). With a zero-feature baseline the
Shapley value of modality ``m`` in this linear fusion is exactly its
*mono-modal response* ``phi_m = W_m h_m [B, C]`` (AGM's Shapley
decomposition; the paper masks inputs, here features are masked, so no
BatchNorm sees an all-zero batch).

Per step ``t = step + 1``, with ``y [B]`` the labels:

* mono-modal scores ``s_m = mean_i min(-log softmax(phi_m)_i[y_i], -log
  1e-8)`` (a cross-entropy per modality, scalar);
* current ratios ``r_m = exp(2 (mean_k s_k - s_m))`` and running ratios
  ``rbar_m = exp(2 (mean_k S_k - S_m))`` from the running scores ``S [M]``
  (``S_m <- S_m (t - 1) / t + s_m / t``, the average of every step's
  score, updated after the coefficients are computed);
* coefficients ``kappa_m = exp(alpha (rbar_m - r_m))``: a modality whose
  response currently does better than its running level is slowed down.

Objective ``L = mean_i CE(z'_i, y_i)`` with ``z' = sum_m G(phi_m, kappa_m) +
b`` where ``G(v, k)`` is the identity whose gradient is multiplied by ``k``:
so ``dL/dtheta_m = kappa_m dCE/dtheta_m`` for encoder ``m`` and its fusion
weights ``W_m``, while the loss value is the plain fused cross-entropy.

State: the running scores ``S [M]`` live in the non-params collection
``"agm"`` (``variables["agm"]["running_score"]``), returned by
:func:`loss_fn` as part of ``new_model_state`` (checkpointed and resumed with
the train state; the train loop needs no change).

:func:`embed`: encoder features ``{m: [B, F]}``, ``"fused"`` their
concatenation ``[B, M * F]``. Metrics: ``loss/ce``, ``acc/fused``,
``agm/coeff/<m>``, ``agm/score/<m>``.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from msjax.methods import _balancing, encoders, forward
from msjax.methods.batch_checks import check_batch
from msjax.methods.config_checks import modalities
from msjax.methods.interface import Method
from msjax.methods.key_streams import rng_streams

__all__ = [
  "METHOD",
  "STATE",
  "AGMModel",
  "default_config",
  "embed",
  "init",
  "loss_fn",
  "modulation",
  "predict",
]

#: The variable collection holding the running mono-modal scores.
STATE = "agm"
_MIN_PROB = 1e-8


def default_config(size: str = "tiny") -> ml_collections.ConfigDict:
  """The ``model`` and ``loss`` sections (set ``model.num_classes``).

  Args:
    size: ``"tiny"`` (tests, smoke runs) or ``"paper"``.

  Returns:
    ``ConfigDict(model=..., loss=...)``; ``loss.alpha`` is the modulation
    strength (0 turns AGM into plain late fusion).
  """
  return _balancing.base_config(size, alpha=1.0)


class AGMModel(encoders.EncoderModel):
  """Encoders and a late linear fusion split into per-modality responses.

  Attributes:
    num_classes: ``C``.
  """

  num_classes: int

  @nn.compact
  def __call__(
    self, signals: dict[str, jax.Array], *, train: bool
  ) -> tuple[dict[str, jax.Array], dict[str, jax.Array], jax.Array]:
    """Returns ``(features {m: [B, F]}, responses {m: [B, C]}, b [C])``."""
    features = encoders.ModalityEncoders(
      self.modalities,
      self.encoder,
      self.feature_dim,
      encoder_options=self.encoder_options,
      name="encoders",
    )(signals, train=train)
    responses = {
      m: nn.Dense(self.num_classes, use_bias=False, name=f"fusion_{m}")(
        features[m]
      )
      for m in self.modalities
    }
    bias = self.param("fusion_bias", nn.initializers.zeros, (self.num_classes,))
    return features, responses, bias


def _model(config: ml_collections.ConfigDict) -> AGMModel:
  return AGMModel(
    **encoders.encoder_fields(config),
    num_classes=_balancing.check_classes(config),
  )


def init(
  rng: jax.Array, config: ml_collections.ConfigDict, example_batch: dict
) -> dict[str, Any]:
  """``{"params", "batch_stats", "agm": {"running_score": zeros [M]}}``."""
  variables = forward.init_variables(
    _model(config), rng, example_batch, config, min_modalities=2
  )
  num = len(modalities(config))
  variables[STATE] = {"running_score": jnp.zeros((num,), jnp.float32)}
  return variables


def modulation(
  scores: jax.Array, running: jax.Array, step: jax.Array, *, alpha: float
) -> tuple[jax.Array, jax.Array]:
  """AGM coefficients and updated running scores.

  Args:
    scores: ``s [M]``, this step's mono-modal scores.
    running: ``S [M]``, running scores before this step.
    step: the 0-based step ``t - 1``.
    alpha: modulation strength.

  Returns:
    ``(kappa [M], S' [M])`` with ``kappa_m = exp(alpha (rbar_m - r_m))``,
    ``r_m = exp(2 (mean s - s_m))``, ``rbar_m = exp(2 (mean S - S_m))`` and
    ``S' = S (t - 1) / t + s / t``.
  """
  ratio = jnp.exp(2.0 * (jnp.mean(scores) - scores))
  running_ratio = jnp.exp(2.0 * (jnp.mean(running) - running))
  kappa = jnp.exp(alpha * (running_ratio - ratio))
  t = jnp.asarray(step, jnp.float32) + 1.0
  return kappa, running * (t - 1.0) / t + scores / t


def loss_fn(
  variables: dict[str, Any],
  batch: dict,
  rng: jax.Array,
  config: ml_collections.ConfigDict,
  step: jax.Array,
) -> tuple[jax.Array, tuple[dict[str, Any], dict[str, jax.Array]]]:
  """Fused cross-entropy with AGM-modulated gradients (module docstring).

  Args:
    variables: ``{"params", "batch_stats", "agm"}``.
    batch: ``{"signals": {m: [B, ...]}, "label": int [B] in 0..C-1}``.
    rng: the step key (stream ``dropout``).
    config: the experiment config.
    step: traced int32 step (the running average's count).

  Returns:
    ``(loss, (new_model_state, metrics))``; ``new_model_state`` holds the
    updated ``batch_stats`` and ``agm`` running scores.
  """
  mods = check_batch(batch, config, min_modalities=2, need_labels=True)
  labels = jnp.asarray(batch["label"], jnp.int32)
  streams = rng_streams(rng)
  running = variables[STATE]["running_score"]
  model_vars = {k: v for k, v in variables.items() if k != STATE}
  (_, responses, bias), state = forward.run_model(
    _model(config),
    model_vars,
    {m: batch["signals"][m] for m in mods},
    train=True,
    rngs={"dropout": streams["dropout"]},
  )
  cap = -jnp.log(_MIN_PROB)
  scores = jnp.stack(
    [
      jnp.mean(
        jnp.minimum(
          _balancing.cross_entropy(jax.lax.stop_gradient(responses[m]), labels),
          cap,
        )
      )
      for m in mods
    ]
  )
  kappa, new_running = modulation(
    scores, running, step, alpha=float(config.loss.alpha)
  )
  logits = bias + sum(
    _balancing.scale_gradient(responses[m], kappa[i])
    for i, m in enumerate(mods)
  )
  loss = jnp.mean(_balancing.cross_entropy(logits, labels))
  hits = jnp.argmax(jax.lax.stop_gradient(logits), axis=-1) == labels
  metrics = {"loss/ce": loss, "acc/fused": jnp.mean(hits)}
  for i, m in enumerate(mods):
    metrics[f"agm/coeff/{m}"] = kappa[i]
    metrics[f"agm/score/{m}"] = scores[i]
  state = {**state, STATE: {"running_score": new_running}}
  return loss, (state, metrics)


def predict(
  variables: dict[str, Any], batch: dict, config: ml_collections.ConfigDict
) -> dict[str, jax.Array]:
  """The fusion's own logits in eval mode, ``[B, C]`` each.

  Returns:
    ``{"fused": z, m: phi_m}`` (the mono-modal responses).
  """
  model_vars = {k: v for k, v in variables.items() if k != STATE}
  mods, (_, responses, bias) = forward.apply_eval(
    _model(config), model_vars, batch, config, min_modalities=2
  )
  fused = bias + sum(responses[m] for m in mods)
  return {"fused": fused, **responses}


def embed(
  variables: dict[str, Any], batch: dict, config: ml_collections.ConfigDict
) -> dict[str, jax.Array]:
  """Eval-mode ``{m: [B, F]}`` and ``"fused" [B, M * F]``."""
  model_vars = {k: v for k, v in variables.items() if k != STATE}
  mods, (features, _, _) = forward.apply_eval(
    _model(config), model_vars, batch, config, min_modalities=2
  )
  return forward.with_fused(features, mods)


#: The method record (:class:`msjax.methods.interface.Method`).
METHOD = Method(default_config, init, loss_fn, embed, predict=predict)
