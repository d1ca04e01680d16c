"""TNC: temporal neighbourhood coding, per modality.

Reference: Tonekaboni, Eytan, Goldenberg, "Unsupervised Representation
Learning for Time Series with Temporal Neighborhood Coding", ICLR 2021.

A unimodal baseline: every modality is trained on its own (no cross-modal
term; unpaired rows are accepted). The batch is ``S`` sequences of ``L =
loss.seq_len`` consecutive windows, sequence-major (``B = S L``, row
``s L + l``; ``config.train.sequence_length = L`` makes the feed sample them,
with sequences of one session at least ``2 L`` windows apart).

Per modality ``m``: an encoder ``z = f_m(x_m) [B, F]`` and a discriminator
``D(z_i, z_j) = w_2^T relu(W_1 [z_i; z_j] + b_1) + b_2`` (a logit; ``W_1
[H, 2F]``). The temporal neighbourhood of window ``i`` is the other windows
of its sequence, ``N_i = {j != i : s(j) = s(i)}`` (``L - 1`` windows within
``L - 1`` steps; the paper sizes it by an ADF test, here it is fixed by
``seq_len``); the windows of the other sequences are its non-neighbours
``Nbar_i = {k : s(k) != s(i)}``. With ``sp(x) = log(1 + e^x)``
(``-log sigma(x) = sp(-x)``) and the positive-unlabelled weight ``w =
loss.weight``::

  L_m = mean_i [ mean_{j in N_i} sp(-D_ij)
                 + mean_{k in Nbar_i} ((1 - w) sp(D_ik) + w sp(-D_ik)) ]
  L   = mean_m L_m

(every pair of the batch is scored: ``D [B, B]`` per modality.)

:func:`embed`: encoder features ``{m: [B, F]}``, ``"fused"`` their
concatenation ``[B, M * F]``. Metrics: ``loss/tnc``, ``loss/tnc/<m>``,
``tnc/accuracy`` (the share of neighbour and non-neighbour pairs the
discriminator labels correctly).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from msjax.methods import encoders, forward
from msjax.methods.batch_checks import check_batch
from msjax.methods.interface import Method, never_paired
from msjax.methods.key_streams import rng_streams

__all__ = [
  "METHOD",
  "PairDiscriminator",
  "TNCModel",
  "default_config",
  "embed",
  "init",
  "loss_fn",
  "neighbour_masks",
  "tnc_loss",
]


def default_config(size: str = "tiny") -> ml_collections.ConfigDict:
  """The ``model`` and ``loss`` sections.

  Args:
    size: ``"tiny"`` (tests, smoke runs) or ``"paper"``.

  Returns:
    ``ConfigDict(model=..., loss=...)``; set ``train.sequence_length`` to
    ``loss.seq_len``.
  """
  tiny = size == "tiny"
  model = encoders.encoder_model(
    size,
    disc_hidden=32 if tiny else 2048,  # 4 F as in the paper
  )
  loss = dict(seq_len=8, radius=1, far=4, across_sequences=False, weight=0.05)
  return ml_collections.ConfigDict(dict(model=model, loss=loss))


class PairDiscriminator(nn.Module):
  """``D(z_i, z_j)`` for every pair: ``[B, F] -> [B, B]`` logits.

  ``W_1 [z_i; z_j] = W_a z_i + W_b z_j``, so the first layer runs once per
  row and the pairs are formed by broadcasting.

  Attributes:
    hidden: ``H``.
  """

  hidden: int

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    """Returns ``D [B, B]``, ``D[i, j] = D(z_i, z_j)``."""
    first = nn.Dense(self.hidden, use_bias=False, name="anchor")(z)
    second = nn.Dense(self.hidden, name="other")(z)
    hidden = nn.relu(first[:, None, :] + second[None, :, :])
    return nn.Dense(1, name="out")(hidden)[..., 0]


class TNCModel(encoders.EncoderModel):
  """Encoders and one pair discriminator per modality.

  Attributes:
    disc_hidden: ``H``.
  """

  disc_hidden: int

  @nn.compact
  def __call__(
    self, signals: dict[str, jax.Array], *, train: bool, pairs: bool = True
  ) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """Returns ``(features {m: [B, F]}, pair logits {m: [B, B]})``.

    ``pairs=False`` skips the discriminators (``{}`` logits; evaluation).
    """
    features = encoders.ModalityEncoders(
      self.modalities,
      self.encoder,
      self.feature_dim,
      encoder_options=self.encoder_options,
      name="encoders",
    )(signals, train=train)
    if not pairs:
      return features, {}
    logits = {
      m: PairDiscriminator(self.disc_hidden, name=f"discriminator_{m}")(
        features[m]
      )
      for m in self.modalities
    }
    return features, logits


def _model(config: ml_collections.ConfigDict) -> TNCModel:
  return TNCModel(
    **encoders.encoder_fields(config),
    disc_hidden=int(config.model.disc_hidden),
  )


def init(
  rng: jax.Array, config: ml_collections.ConfigDict, example_batch: dict
) -> dict[str, Any]:
  """Initial variables ``{"params", "batch_stats"}`` for ``example_batch``."""
  return forward.init_variables(_model(config), rng, example_batch, config)


def neighbour_masks(
  batch_size: int,
  seq_len: int,
  *,
  radius: int,
  far: int,
  across_sequences: bool,
) -> tuple[jax.Array, jax.Array]:
  """``(neighbours, non_neighbours)``, bool ``[B, B]`` each.

  Row ``i = s L + l`` is window ``l`` of sequence ``s``.

  Args:
    batch_size: ``B = S L``.
    seq_len: ``L``.
    radius: ``eta``: neighbours are ``0 < |l_i - l_j| <= eta`` apart.
    far: ``delta``: non-neighbours are ``|l_i - l_k| >= delta`` apart.
    across_sequences: also count every window of the other sequences as a
      non-neighbour.

  Returns:
    ``neighbours[i, j]``: same sequence, ``0 < |l_i - l_j| <= eta``;
    ``non_neighbours[i, k]``: same sequence and ``|l_i - l_k| >= delta``, or
    (``across_sequences``) a different sequence.

  Raises:
    ValueError: unless ``L`` divides ``B`` and ``1 <= eta < delta < L``.
  """
  if batch_size % seq_len or not 1 <= radius < far < seq_len:
    raise ValueError(
      "TNC needs a batch of sequences of loss.seq_len windows (set"
      " train.sequence_length = loss.seq_len) with 1 <= loss.radius <"
      f" loss.far < loss.seq_len; got batch size {batch_size},"
      f" seq_len={seq_len}, radius={radius}, far={far}."
    )
  rows = jnp.arange(batch_size)
  seq, pos = rows // seq_len, rows % seq_len
  same = seq[:, None] == seq[None, :]
  gap = jnp.abs(pos[:, None] - pos[None, :])
  near = same & (gap > 0) & (gap <= radius)
  distant = same & (gap >= far)
  if across_sequences:
    distant = distant | ~same
  return near, distant


def tnc_loss(
  logits: jax.Array,
  *,
  seq_len: int,
  weight: float,
  radius: int,
  far: int,
  across_sequences: bool = False,
) -> tuple[jax.Array, jax.Array]:
  """TNC's positive-unlabelled loss of all pair logits (module docstring).

  Args:
    logits: ``D [B, B]``, ``D[i, j]`` scores window ``j`` as a neighbour of
      anchor ``i``.
    seq_len: ``L``.
    weight: ``w``, the share of non-neighbours treated as neighbours.
    radius: ``eta`` (see :func:`neighbour_masks`).
    far: ``delta``.
    across_sequences: windows of other sequences are non-neighbours too.

  Returns:
    ``(loss, accuracy)`` scalars.
  """
  logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
  near, distant = neighbour_masks(
    logits.shape[0],
    seq_len,
    radius=radius,
    far=far,
    across_sequences=across_sequences,
  )
  positive = jax.nn.softplus(-logits)
  negative = (1.0 - weight) * jax.nn.softplus(logits) + weight * positive
  row_mean = lambda x, mask: (
    jnp.sum(jnp.where(mask, x, 0.0), 1) / jnp.sum(mask, 1)
  )
  loss = jnp.mean(row_mean(positive, near) + row_mean(negative, distant))
  hits = jnp.where(near, logits > 0, logits < 0)
  scored = near | distant
  accuracy = jnp.sum(jnp.where(scored, hits, False)) / jnp.sum(scored)
  return loss, accuracy


def loss_fn(
  variables: dict[str, Any],
  batch: dict,
  rng: jax.Array,
  config: ml_collections.ConfigDict,
  step: jax.Array,
) -> tuple[jax.Array, tuple[dict[str, Any], dict[str, jax.Array]]]:
  """TNC's loss on one batch of ``S`` sequences of ``L`` windows.

  Args:
    variables: ``{"params", "batch_stats"}``.
    batch: ``{"signals": {m: [B, ...]}, ...}``, sequence-major (labels
      unused).
    rng: the step key (stream ``dropout``).
    config: the experiment config.
    step: traced int32 step (unused).

  Returns:
    ``(loss, (new_model_state, metrics))``.
  """
  del step
  mods = check_batch(batch, config)
  streams = rng_streams(rng)
  (_, logits), state = forward.run_model(
    _model(config),
    variables,
    {m: batch["signals"][m] for m in mods},
    train=True,
    rngs={"dropout": streams["dropout"]},
  )
  per_mod, accs = {}, []
  for m in mods:
    per_mod[m], acc = tnc_loss(
      logits[m],
      seq_len=int(config.loss.seq_len),
      weight=float(config.loss.weight),
      radius=int(config.loss.radius),
      far=int(config.loss.far),
      across_sequences=bool(config.loss.across_sequences),
    )
    accs.append(acc)
  loss = jnp.mean(jnp.stack(list(per_mod.values())))
  metrics = {"loss/tnc": loss, "tnc/accuracy": jnp.mean(jnp.stack(accs))}
  metrics.update({f"loss/tnc/{m}": v for m, v in per_mod.items()})
  return loss, (state, metrics)


def embed(
  variables: dict[str, Any], batch: dict, config: ml_collections.ConfigDict
) -> dict[str, jax.Array]:
  """Eval-mode ``{m: [B, F]}`` and ``"fused" [B, M * F]``."""
  mods, (features, _) = forward.apply_eval(
    _model(config), variables, batch, config, pairs=False
  )
  return forward.with_fused(features, mods)


#: The method record (:class:`msjax.methods.interface.Method`).
METHOD = Method(
  default_config, init, loss_fn, embed, requires_paired_rows=never_paired
)
