"""InfoMAE stage-1 and stage-2 objectives (private to :mod:`infomae`).

See :mod:`msjax.methods.infomae.method` for the method itself. To keep
the compiled graph small, each modality's encoder runs once on the batch of
both views ``concat(x, x_aug)`` (``2B`` rows, each row with its own random
patch mask), and each discriminator scores joint and product tuples in one
call (``2B`` rows).
"""

import jax
import jax.numpy as jnp
import ml_collections

from msjax.kernels.contrastive import nt_xent
from msjax.kernels.density_ratio import (
  discriminator_bce,
  infomae_private_loss,
  infomae_shared_loss,
  product_of_marginals,
)
from msjax.kernels.masking import masked_mse, random_patch_mask
from msjax.kernels.norms import l2_normalize
from msjax.kernels.temporal import temporal_locality
from msjax.methods.infomae import parts
from msjax.methods.views import augment_batch

__all__ = [
  "DISC_GROUP",
  "encode",
  "paired_info_nce",
  "stage1_loss",
  "stage2_loss",
]

DISC_GROUP = "discriminators"


def encode(
  params: dict,
  m: str,
  x: jax.Array,
  ids_keep: jax.Array | None,
  config: ml_collections.ConfigDict,
  rng: jax.Array | None,
) -> tuple[jax.Array, dict]:
  """Encoder of modality ``m``; training mode iff ``rng`` is given."""
  train = rng is not None
  rngs = {"dropout": rng} if train else {}
  return parts.encoder(config).apply(
    {"params": params[f"encoder_{m}"]}, x, ids_keep, train=train, rngs=rngs
  )


def _masked_pass(
  params: dict,
  m: str,
  x: jax.Array,
  target_map: jax.Array,
  rng: jax.Array,
  config: ml_collections.ConfigDict,
):
  """Random mask, encoder on visible patches: ``(mask, target, feat, aux)``.

  ``target_map`` (:func:`parts.reconstruction_map`) has the rows of ``x``
  or its first rows only (the target of the first view).
  """
  k_mask, k_drop = jax.random.split(rng)
  target = parts.patch_targets(target_map, config)
  mask = random_patch_mask(
    k_mask, x.shape[0], target.shape[1], mask_ratio=config.loss.mask_ratio
  )
  feat, aux = encode(params, m, x, mask.ids_keep, config, k_drop)
  return mask, target, feat, aux


def _decode(
  params: dict,
  m: str,
  latent: jax.Array,
  ids_keep: jax.Array,
  patch_dim: int,
  config: ml_collections.ConfigDict,
) -> jax.Array:
  return parts.decoder(config, patch_dim).apply(
    {"params": params[f"decoder_{m}"]}, latent, ids_keep, train=True
  )


def stage1_loss(
  params: dict,
  xs: dict,
  targets: dict,
  rng: jax.Array,
  config: ml_collections.ConfigDict,
) -> tuple[jax.Array, dict]:
  """``sum_i L_i``, ``L_i`` = masked MSE of modality ``i``'s MAE."""
  metrics, total = {}, 0.0
  for k, (m, x) in enumerate(xs.items()):
    mask, target, _, aux = _masked_pass(
      params, m, x, targets[m], jax.random.fold_in(rng, k), config
    )
    pred = _decode(
      params, m, aux["patch_latent"], mask.ids_keep, target.shape[-1], config
    )
    rec = masked_mse(
      target, pred, mask.mask, norm_pix_loss=config.loss.norm_pix_loss
    )
    metrics[f"loss/rec/{m}"] = rec
    total = total + rec
  metrics["loss/rec"] = total
  metrics["loss/total"] = total
  return total, metrics


def _augment(
  key: jax.Array, x: jax.Array, config: ml_collections.ConfigDict
) -> jax.Array:
  return augment_batch(key, x, config.loss.augment)


def _views(
  params: dict,
  m: str,
  x: jax.Array,
  target_map: jax.Array,
  rng: jax.Array,
  config: ml_collections.ConfigDict,
  running_mean: jax.Array,
) -> dict:
  """Both views of modality ``m``.

  Returns ``u, v, h`` (view 1), ``h2``, ``rec`` and ``mean``, the new running
  feature mean (:func:`parts.centered`).
  """
  k_aug, k_pass = jax.random.split(rng)
  b = x.shape[0]
  both = jnp.concatenate([x, _augment(k_aug, x, config)], axis=0)
  mask, target, feat, aux = _masked_pass(
    params, m, both, target_map, k_pass, config
  )
  if config.model.freeze_encoders:
    feat, aux = jax.lax.stop_gradient((feat, aux))
  feat, mean = parts.centered(feat, running_mean, config, train=True)
  u = parts.project(params, "shared", m, feat, config, train=True)
  v = parts.project(params, "private", m, feat, config, train=True)
  h = jnp.concatenate([u, v], axis=-1)
  grid = aux["patch_latent"].shape[1:3]
  latent = jnp.broadcast_to(h[:b, None, None, :], (b,) + grid + h.shape[-1:])
  pred = _decode(params, m, latent, mask.ids_keep[:b], target.shape[-1], config)
  rec = masked_mse(
    target, pred, mask.mask[:b], norm_pix_loss=config.loss.norm_pix_loss
  )
  return {
    "u": u[:b],
    "v": v[:b],
    "h": h[:b],
    "h2": h[b:],
    "rec": rec,
    "mean": mean,
  }


def _temporal(h: jax.Array, config: ml_collections.ConfigDict) -> jax.Array:
  seq_len = config.loss.seq_len
  b = h.shape[0]
  if b % seq_len or b // seq_len < 2:
    raise ValueError(
      f"batch size {b} must be a multiple of loss.seq_len={seq_len} with at"
      " least 2 sequences (a sequence-major batch of S sequences of L"
      " consecutive windows)."
    )
  if config.loss.temporal_normalize:
    h = l2_normalize(h)
  loss, _ = temporal_locality(
    h.reshape(b // seq_len, seq_len, h.shape[-1]),
    margin=config.loss.margin,
    eta=config.loss.temp_weight,
    exclude_self_pairs=config.loss.exclude_self_pairs,
  )
  return loss


def _row_mean(per_row: jax.Array, weight: jax.Array) -> jax.Array:
  """``sum_b w_b x_b / max(sum_b w_b, 1)``: the mean over the weighted rows."""
  return jnp.sum(per_row * weight) / jnp.maximum(jnp.sum(weight), 1.0)


def paired_info_nce(
  u1: jax.Array, u2: jax.Array, weight: jax.Array, tau: float
) -> jax.Array:
  """Symmetric InfoNCE between ``u1`` and ``u2`` over the weighted rows.

  ``0.5 * (CE(n(u1) n(u2)^T / tau) + CE(n(u2) n(u1)^T / tau))`` with the
  diagonal as positives, where only rows of weight 1 are anchors and
  candidates (``weight`` in {0, 1}); with every row weighted it is
  :func:`msjax.kernels.contrastive.info_nce`. No weighted row: 0.

  Args:
    u1: ``[B, E]`` shared representation of modality 1.
    u2: ``[B, E]`` shared representation of modality 2.
    weight: ``[B]`` float, 1 for synchronized rows, 0 otherwise.
    tau: temperature (> 0).

  Returns:
    ``[]`` mean over the weighted anchors of both directions.
  """
  a, b = l2_normalize(u1), l2_normalize(u2)
  # Full float32 products on accelerators too, as the contrastive kernels.
  logits = jnp.matmul(a, b.T, precision=jax.lax.Precision.HIGHEST) / tau
  # Unpaired rows are neither anchors nor candidates in either direction.
  both = (weight[:, None] > 0) & (weight[None, :] > 0)
  logits = jnp.where(both, logits, -jnp.inf)
  diag = jnp.diagonal(logits)
  ce_ab = jax.nn.logsumexp(logits, axis=1) - diag
  ce_ba = jax.nn.logsumexp(logits, axis=0) - diag
  # Unpaired anchors have a -inf diagonal: zero them before the weighting.
  per_row = jnp.where(weight > 0, 0.5 * (ce_ab + ce_ba), 0.0)
  return _row_mean(per_row, weight)


def _disc_loss(
  disc_params: dict,
  raw: tuple,
  vectors: dict,
  paired: jax.Array,
  rng: jax.Array,
  config: ml_collections.ConfigDict,
) -> tuple[jax.Array, dict]:
  """``L_D``: sum of the discriminators' BCE on ``sg`` representations.

  Joint tuples are the synchronized rows only (``paired``); product tuples
  permute each argument over the whole batch (any row is a draw from the
  marginal), scored on as many rows.
  """
  vectors = jax.lax.stop_gradient(vectors)
  metrics, total, accuracy = {}, 0.0, 0.0
  weight = paired.astype(jnp.float32)
  for k, spec in enumerate(parts.DISCRIMINATORS):
    args = [raw[i] for i in spec.raw]
    args += [vectors[kind][i] for kind, i in spec.vectors]
    shuffled = product_of_marginals(jax.random.fold_in(rng, k), *args)
    both = [
      jnp.concatenate([a, s], axis=0)
      for a, s in zip(args, shuffled, strict=True)
    ]
    n_raw = len(spec.raw)
    logits = parts.discriminator(config, spec).apply(
      {"params": disc_params[spec.name]}, both[:n_raw], both[n_raw:]
    )
    b = args[0].shape[0]
    t_joint, t_product = logits[:b], logits[b:]
    bce = discriminator_bce(t_joint, t_product, weights=weight)
    metrics[f"disc/{spec.name}"] = bce
    total = total + bce
    accuracy = accuracy + 0.5 * (
      _row_mean((t_joint > 0).astype(jnp.float32), weight)
      + _row_mean((t_product < 0).astype(jnp.float32), weight)
    )
  metrics["disc/accuracy"] = accuracy / len(parts.DISCRIMINATORS)
  # A batch without synchronized rows scores no discriminator (its BCE and
  # accuracy above read 0): 1 where it did, so a mean over steps of
  # disc/<name> divided by the mean of disc/measured is the mean over the
  # steps that measured it.
  metrics["disc/measured"] = (jnp.sum(weight) > 0).astype(jnp.float32)
  return total, metrics


def stage2_loss(
  params: dict,
  xs: dict,
  targets: dict,
  paired: jax.Array,
  rng: jax.Array,
  config: ml_collections.ConfigDict,
  feature_means: dict,
) -> tuple[jax.Array, dict, dict]:
  """``L_main + L_D`` (SPEC §4.2-4.3), its metrics, new feature means.

  ``feature_means``: ``{m: [E]}`` running means of the encoder features
  (used and updated only with ``model.center_features``).

  ``paired`` (bool ``[B]``): which rows are synchronized multimodal samples.
  The cross-modal terms (``L_shared``, ``L_private``, ``L_D``) are means over
  those rows only; the unimodal terms (``L_rec``, ``L_aug``, ``L_temp``) use
  every row. With every row paired this is exactly SPEC §4.
  """
  cfg = config.loss
  mods = tuple(xs)
  weight = paired.astype(jnp.float32)
  views = [
    _views(
      params,
      m,
      xs[m],
      targets[m],
      jax.random.fold_in(rng, k),
      config,
      feature_means[m],
    )
    for k, m in enumerate(mods)
  ]
  rec = sum(v["rec"] for v in views)
  aug = sum(nt_xent(v["h"], v["h2"], tau=cfg.tau) for v in views)
  temp = jnp.zeros((), jnp.float32)
  if cfg.seq_len > 1:
    temp = sum(_temporal(v["h"], config) for v in views)
  raw = tuple(xs[m] for m in mods)
  vectors = {
    "u": tuple(v["u"] for v in views),
    "v": tuple(v["v"] for v in views),
  }
  fixed = jax.lax.stop_gradient(params[DISC_GROUP])
  t = {
    spec.name: parts.disc_logits(config, spec, fixed[spec.name], raw, vectors)
    for spec in parts.DISCRIMINATORS
  }
  # "maximize" flips the pairwise terms' sign (loss.pairwise_mi).
  sign = -1.0 if parts.pairwise_mi(config) == "maximize" else 1.0
  info_nce = parts.alignment(config) == "info_nce"
  shared = infomae_shared_loss(
    vectors["u"][0],
    vectors["u"][1],
    jnp.stack([t["x1x2u1"], t["x1x2u2"]]),
    sign * jnp.stack([t["x1u1"], t["x2u2"]]),
    sign * jnp.stack([t["x2u1"], t["x1u2"]]),
    alpha=0.0 if info_nce else cfg.alpha,
    beta=cfg.beta,
    weights=weight,
  )
  if info_nce:
    shared = shared + cfg.alpha * paired_info_nce(
      vectors["u"][0], vectors["u"][1], weight, parts.align_tau(config)
    )
  private = infomae_private_loss(
    sign * jnp.stack([t["x1v1"], t["x2v2"]]),
    jnp.stack([t["v1u1"], t["v2u2"]]),
    gamma=cfg.gamma,
    eps=cfg.vu_weight,
    weights=weight,
  )
  main = shared + private + cfg.delta * rec + cfg.aug_weight * aug + temp
  disc, metrics = _disc_loss(
    params[DISC_GROUP],
    raw,
    vectors,
    paired,
    jax.random.fold_in(rng, len(mods)),
    config,
  )
  for m, v in zip(mods, views, strict=True):
    metrics[f"loss/rec/{m}"] = v["rec"]
  metrics.update(
    {
      "loss/shared": shared,
      "loss/private": private,
      "loss/rec": cfg.delta * rec,
      "loss/aug": cfg.aug_weight * aug,
      "loss/temp": temp,
      "loss/main": main,
      "loss/disc": disc,
      "loss/total": main + disc,
      "data/paired_fraction": jnp.mean(weight),
    }
  )
  return (
    main + disc,
    metrics,
    {m: v["mean"] for m, v in zip(mods, views, strict=True)},
  )
