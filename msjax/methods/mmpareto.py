"""MMPareto: multimodal and unimodal objectives integrated per encoder.

Reference: Wei, Hu, "MMPareto: Boosting Multimodal Learning with Innocent
Unimodal Assistance", ICML 2024.

Model: per modality ``m`` an encoder ``h_m = f_m(x_m; theta_m) [B, F]``, a
fused linear classifier ``z = W concat_m(h_m) + b [B, C]`` and a unimodal
linear classifier ``z_m = W_m h_m + b_m [B, C]`` per modality. Losses (means
over the ``B`` rows): ``L_mm = CE(z, y)`` and ``L_m = CE(z_m, y)``.

Gradients: the heads get the uniform sum ``grad (L_mm + sum_m L_m)``. Each
encoder's parameters ``theta_m`` (all its leaves, flattened) see two
gradients, ``g = grad_theta_m L_mm`` and ``u = grad_theta_m L_m``; with
``c = cos(g, u)``::

  a = 1/2                                       if c > 0
  a = clip((u.u - g.u) / |g - u|^2, 1e-3, 1 - 1e-3)  otherwise
                                  (min-norm point of the segment [g, u])
  d = 2 a g + 2 (1 - a) u

and per parameter leaf ``l`` of ``theta_m`` the final gradient is
``gamma * max(1, |g_l + u_l| / |d_l|) * d_l`` (the direction common to both
objectives, its magnitude no smaller than the uniform sum's; ``gamma =
loss.gamma``, 1.5 in the paper).

Inside :func:`loss_fn` (the loop is unchanged): the ``1 + M`` per-objective
gradients come from one ``jax.vjp`` of the loss vector at
``stop_gradient(params)``; the returned loss is
``sg(L_mm + sum_m L_m) + <sg(G), params> - sg(<G, params>)``, whose value is
the uniform sum and whose gradient is the integrated ``G``.

:func:`embed`: encoder features ``{m: [B, F]}``, ``"fused"`` their
concatenation ``[B, M * F]``. Metrics: ``loss/ce`` (fused), ``loss/ce/<m>``,
``acc/fused``, ``pareto/cos/<m>``, ``pareto/weight/<m>`` (``a``, the weight
of the multimodal gradient).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from msjax.methods import _balancing, encoders, forward
from msjax.methods.batch_checks import check_batch
from msjax.methods.interface import Method
from msjax.methods.key_streams import rng_streams
from msjax.nn import LinearClassifier

__all__ = [
  "METHOD",
  "MMParetoModel",
  "default_config",
  "embed",
  "encoder_subtree",
  "init",
  "integrate",
  "loss_fn",
  "predict",
]

_MIN_WEIGHT = 1e-3
_TINY = 1e-30


def default_config(size: str = "tiny") -> ml_collections.ConfigDict:
  """The ``model`` and ``loss`` sections (set ``model.num_classes``).

  Args:
    size: ``"tiny"`` (tests, smoke runs) or ``"paper"``.

  Returns:
    ``ConfigDict(model=..., loss=...)``; ``loss.gamma`` scales the
    integrated encoder gradients.
  """
  return _balancing.base_config(size, gamma=1.5)


class MMParetoModel(encoders.EncoderModel):
  """Encoders, a fused classifier and one unimodal classifier per modality.

  Attributes:
    num_classes: ``C``.
  """

  num_classes: int

  @nn.compact
  def __call__(
    self, signals: dict[str, jax.Array], *, train: bool
  ) -> tuple[dict[str, jax.Array], jax.Array, dict[str, jax.Array]]:
    """Returns ``(features {m: [B, F]}, z [B, C], {m: z_m [B, C]})``."""
    features = encoders.ModalityEncoders(
      self.modalities,
      self.encoder,
      self.feature_dim,
      encoder_options=self.encoder_options,
      name="encoders",
    )(signals, train=train)
    fused = jnp.concatenate([features[m] for m in self.modalities], -1)
    logits = LinearClassifier(self.num_classes, name="classifier")(fused)
    unimodal = {
      m: LinearClassifier(self.num_classes, name=f"classifier_{m}")(features[m])
      for m in self.modalities
    }
    return features, logits, unimodal


def _model(config: ml_collections.ConfigDict) -> MMParetoModel:
  return MMParetoModel(
    **encoders.encoder_fields(config),
    num_classes=_balancing.check_classes(config),
  )


def init(
  rng: jax.Array, config: ml_collections.ConfigDict, example_batch: dict
) -> dict[str, Any]:
  """Initial variables ``{"params", "batch_stats"}`` for ``example_batch``."""
  return forward.init_variables(
    _model(config), rng, example_batch, config, min_modalities=2
  )


def encoder_subtree(params: dict, m: str) -> dict:
  """The parameter sub-trees of modality ``m``'s encoder ``theta_m``.

  ``params["encoders"]`` entries named ``encoder_<m>`` and (2-D encoders)
  ``head_<m>``.
  """
  names = (f"encoder_{m}", f"head_{m}")
  return {k: v for k, v in params["encoders"].items() if k in names}


def integrate(
  multimodal: Any, unimodal: Any, *, gamma: float
) -> tuple[Any, jax.Array, jax.Array]:
  """MMPareto's integration of one encoder's two gradients.

  Args:
    multimodal: ``g``, a pytree (the encoder's gradient of ``L_mm``).
    unimodal: ``u``, same structure (gradient of ``L_m``).
    gamma: the final scale.

  Returns:
    ``(G, cos, a)``: the integrated gradient (same structure), ``cos(g, u)``
    and the multimodal weight ``a`` (module docstring).
  """
  g_leaves, treedef = jax.tree.flatten(multimodal)
  u_leaves = jax.tree.leaves(unimodal)
  dot = lambda xs, ys: sum(jnp.vdot(x, y) for x, y in zip(xs, ys, strict=True))
  gg, uu, gu = (
    dot(g_leaves, g_leaves),
    dot(u_leaves, u_leaves),
    dot(g_leaves, u_leaves),
  )
  cos = gu / jnp.maximum(jnp.sqrt(gg * uu), _TINY)
  min_norm = (uu - gu) / jnp.maximum(gg + uu - 2.0 * gu, _TINY)
  min_norm = jnp.clip(min_norm, _MIN_WEIGHT, 1.0 - _MIN_WEIGHT)
  weight = jnp.where(cos > 0, 0.5, min_norm)
  out = []
  for g, u in zip(g_leaves, u_leaves, strict=True):
    direction = 2.0 * weight * g + 2.0 * (1.0 - weight) * u
    norm = jnp.sqrt(jnp.sum(direction**2))
    uniform = jnp.sqrt(jnp.sum((g + u) ** 2))
    boost = jnp.where(
      norm > 0, jnp.maximum(uniform / jnp.maximum(norm, _TINY), 1.0), 1.0
    )
    out.append(gamma * boost * direction)
  return jax.tree.unflatten(treedef, out), cos, weight


def loss_fn(
  variables: dict[str, Any],
  batch: dict,
  rng: jax.Array,
  config: ml_collections.ConfigDict,
  step: jax.Array,
) -> tuple[jax.Array, tuple[dict[str, Any], dict[str, jax.Array]]]:
  """``L_mm + sum_m L_m`` with MMPareto's integrated encoder gradients.

  Args:
    variables: ``{"params", "batch_stats"}``.
    batch: ``{"signals": {m: [B, ...]}, "label": int [B] in 0..C-1}``.
    rng: the step key (stream ``dropout``).
    config: the experiment config.
    step: traced int32 step (unused).

  Returns:
    ``(loss, (new_model_state, metrics))``; ``grad`` of ``loss`` w.r.t.
    ``variables["params"]`` is the integrated gradient (module docstring).
  """
  del step
  mods = check_batch(batch, config, min_modalities=2, need_labels=True)
  labels = jnp.asarray(batch["label"], jnp.int32)
  streams = rng_streams(rng)
  params = variables["params"]
  others = {k: v for k, v in variables.items() if k != "params"}
  signals = {m: batch["signals"][m] for m in mods}
  model = _model(config)

  def objectives(p: Any) -> tuple[jax.Array, tuple[dict, jax.Array]]:
    (_, logits, unimodal), state = forward.run_model(
      model,
      {"params": p, **others},
      signals,
      train=True,
      rngs={"dropout": streams["dropout"]},
    )
    losses = [jnp.mean(_balancing.cross_entropy(logits, labels))]
    losses += [
      jnp.mean(_balancing.cross_entropy(unimodal[m], labels)) for m in mods
    ]
    hits = jnp.argmax(logits, axis=-1) == labels
    return jnp.stack(losses), (state, jnp.mean(hits))

  frozen = jax.lax.stop_gradient(params)
  values, pullback, (state, accuracy) = jax.vjp(
    objectives, frozen, has_aux=True
  )
  # One batched backward pass: row k of the basis pulls back objective k.
  stacked = jax.vmap(pullback)(jnp.eye(len(mods) + 1, dtype=values.dtype))[0]
  grads = [
    jax.tree.map(lambda g, k=k: g[k], stacked) for k in range(len(mods) + 1)
  ]
  total = jax.tree.map(lambda g: jnp.sum(g, axis=0), stacked)
  encoder_grads = dict(total["encoders"])
  metrics = {"loss/ce": values[0], "acc/fused": accuracy}
  for i, m in enumerate(mods):
    combined, cos, weight = integrate(
      encoder_subtree(grads[0], m),
      encoder_subtree(grads[i + 1], m),
      gamma=float(config.loss.gamma),
    )
    encoder_grads.update(combined)
    metrics[f"loss/ce/{m}"] = values[i + 1]
    metrics[f"pareto/cos/{m}"] = cos
    metrics[f"pareto/weight/{m}"] = weight
  total = {**total, "encoders": encoder_grads}
  total = jax.lax.stop_gradient(total)
  surrogate = sum(
    jnp.vdot(g, p)
    for g, p in zip(
      jax.tree.leaves(total), jax.tree.leaves(params), strict=True
    )
  )
  loss = jnp.sum(values) + surrogate - jax.lax.stop_gradient(surrogate)
  return loss, (state, metrics)


def predict(
  variables: dict[str, Any], batch: dict, config: ml_collections.ConfigDict
) -> dict[str, jax.Array]:
  """The model's own classifiers in eval mode, ``[B, C]`` logits each.

  Returns:
    ``{"fused": z, m: z_m}``.
  """
  mods, (_, logits, unimodal) = forward.apply_eval(
    _model(config), variables, batch, config, min_modalities=2
  )
  return {"fused": logits, **unimodal}


def embed(
  variables: dict[str, Any], batch: dict, config: ml_collections.ConfigDict
) -> dict[str, jax.Array]:
  """Eval-mode ``{m: [B, F]}`` and ``"fused" [B, M * F]``."""
  mods, (features, _, _) = forward.apply_eval(
    _model(config), variables, batch, config, min_modalities=2
  )
  return forward.with_fused(features, mods)


#: The method record (:class:`msjax.methods.interface.Method`).
METHOD = Method(default_config, init, loss_fn, embed, predict=predict)
