"""FOCAL: contrastive learning in a factorised orthogonal latent space.

Reference: Liu, Kimura, Liu, Wang, Li, Diggavi, Srivastava, Abdelzaher,
"FOCAL: Contrastive Learning for Multimodal Time-Series Sensing Signals in
Factorized Orthogonal Latent Space", NeurIPS 2023.

Model: per modality an encoder (``config.model.encoder``, features
``h_m [B, F]``) and a projector to ``2 D``, whose output ``e_m [B, 2D]`` is
split into a shared part ``s_m = e_m[:, :D]`` and a private part
``p_m = e_m[:, D:]``. Two augmented views ``v = 1, 2`` of the batch
(``loss.augment``). The batch is ``S`` sequences of ``L = loss.seq_len``
consecutive windows, sequence-major (``B = S * L``, row ``s * L + l``;
``config.train.sequence_length = L`` makes the feed sample them).

Objective (``C``: NT-Xent, ``tau``, between the ``S`` sequences at each
sequence position, averaged over the ``L`` positions; ``O``: orthogonality;
``R``: temporal ranking)::

  C(x, y)  = mean_l nt_xent(x[:, l], y[:, l])        x, y [S, L, D]
  O(x, y)  = mean_i max(0, cos(x_i, y_i))            x, y [B, D]
  d_st     = mean of ||e_i - e_j||_2 over rows i of sequence s and rows
             j != i of sequence t                     e [B, 2D]
  R(e)     = mean_{s != t} max(0, d_ss - d_st + margin)

  L_shared  = sum_v sum_{m < n} C(s_m^v, s_n^v)       (modality matching)
  L_private = sum_m C(p_m^1, p_m^2)                   (transformation
                                                       invariance)
  L_orth    = sum_v sum_m [O(s_m^v, p_m^v) + sum_{n > m} O(p_m^v, p_n^v)]
  L_temp    = sum_v sum_m R(e_m^v)                    (only when L > 1)
  L = w_s L_shared + w_p L_private + w_o L_orth + w_t L_temp

``O`` is a cosine-embedding loss with target -1 and margin 0 (it drives
positive cosines to 0); ``R`` asks the average distance between windows of
one sequence to be at least ``margin`` below that between sequences.

:func:`embed`: the encoder features ``h_m [B, F]`` per modality,
``"fused"`` their concatenation ``[B, M * F]``.

Metrics: ``loss/focal``, ``loss/shared``, ``loss/private``,
``loss/orthogonal``, ``loss/temporal``.
"""

import itertools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from msjax.kernels.contrastive import nt_xent
from msjax.kernels.norms import l2_normalize
from msjax.methods import encoders, forward
from msjax.methods.interface import Method
from msjax.methods.views import augment_config
from msjax.nn import MLPProjector

__all__ = [
  "METHOD",
  "FOCALModel",
  "FOCALTerms",
  "default_config",
  "embed",
  "focal_loss",
  "init",
  "loss_fn",
  "orthogonality",
  "sequence_contrast",
  "temporal_ranking",
]


def default_config(size: str = "tiny") -> ml_collections.ConfigDict:
  """The ``model`` and ``loss`` sections.

  Args:
    size: ``"tiny"`` (tests, smoke runs) or ``"paper"``.

  Returns:
    ``ConfigDict(model=..., loss=...)`` with every key declared.
  """
  model = encoders.encoder_model(size, projector=True)
  loss = dict(
    tau=0.1,
    seq_len=4,
    shared_weight=1.0,
    private_weight=1.0,
    orthogonal_weight=1.0,
    temporal_weight=1.0,
    rank_margin=1.0,
    augment=augment_config(
      ("jitter", "negation", "channel_shuffle", "time_mask")
    ),
  )
  return ml_collections.ConfigDict(dict(model=model, loss=loss))


class FOCALModel(encoders.ProjectorModel):
  """Per-modality encoders and projectors to the factorised space.

  Attributes:
    projector_hidden: hidden widths of each projector.
    embed_dim: ``D``, the width of the shared and of the private part.
  """

  @nn.compact
  def __call__(
    self, signals: dict[str, jax.Array], *, train: bool
  ) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """Returns ``(features {m: [N, F]}, e {m: [N, 2D]})``."""
    h = encoders.ModalityEncoders(
      self.modalities,
      self.encoder,
      self.feature_dim,
      encoder_options=self.encoder_options,
      name="encoders",
    )(signals, train=train)
    e = {
      m: MLPProjector(
        tuple(self.projector_hidden),
        2 * self.embed_dim,
        use_bn=True,
        name=f"projector_{m}",
      )(h[m], train=train)
      for m in self.modalities
    }
    return h, e


def _model(config: ml_collections.ConfigDict) -> FOCALModel:
  return FOCALModel(
    **encoders.projector_fields(config),
  )


def sequence_contrast(
  x: jax.Array, y: jax.Array, *, seq_len: int, tau: float
) -> jax.Array:
  """``C(x, y)``: NT-Xent across sequences, averaged over positions.

  Args:
    x: ``[B, D]`` rows, ``B = S * L`` sequence-major.
    y: ``[B, D]``, row ``i`` the positive of ``x[i]``.
    seq_len: ``L``.
    tau: temperature (> 0).

  Returns:
    ``[]`` ``mean_l nt_xent(x[:, l], y[:, l])`` over ``[S, L, D]`` views.
  """
  num_seq = x.shape[0] // seq_len
  xs = x.reshape(num_seq, seq_len, -1)
  ys = y.reshape(num_seq, seq_len, -1)
  per_position = jax.vmap(lambda a, b: nt_xent(a, b, tau=tau), in_axes=(1, 1))(
    xs, ys
  )
  return jnp.mean(per_position)


def orthogonality(x: jax.Array, y: jax.Array) -> jax.Array:
  """``O(x, y) = mean_i max(0, cos(x_i, y_i))`` for ``x, y [B, D]``."""
  cos = jnp.sum(l2_normalize(x) * l2_normalize(y), axis=-1)
  return jnp.mean(jnp.maximum(cos, 0.0))


def temporal_ranking(e: jax.Array, *, seq_len: int, margin: float) -> jax.Array:
  """``R(e)``: within-sequence distances below between-sequence ones.

  Args:
    e: ``[B, K]`` rows, ``B = S * L`` sequence-major, ``L >= 2``, ``S >= 2``.
    seq_len: ``L``.
    margin: ranking margin.

  Returns:
    ``[] mean_{s != t} max(0, d_ss - d_st + margin)`` (module docstring).
  """
  num = e.shape[0]
  num_seq = num // seq_len
  diff = e[:, None, :] - e[None, :, :]
  sq = jnp.sum(diff * diff, axis=-1)  # [B, B]
  positive = sq > 0
  dist = jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)
  not_self = ~jnp.eye(num, dtype=bool)
  blocks = lambda a: a.reshape(num_seq, seq_len, num_seq, seq_len).sum((1, 3))
  d = blocks(jnp.where(not_self, dist, 0.0)) / blocks(not_self.astype(e.dtype))
  intra = jnp.diagonal(d)  # [S]
  off = ~jnp.eye(num_seq, dtype=bool)
  hinge = jnp.maximum(intra[:, None] - d + margin, 0.0)
  return jnp.sum(jnp.where(off, hinge, 0.0)) / (num_seq * (num_seq - 1))


class FOCALTerms(NamedTuple):
  """The four FOCAL terms (unweighted), each ``[]``."""

  shared: jax.Array
  private: jax.Array
  orthogonal: jax.Array
  temporal: jax.Array


def focal_loss(
  e: jax.Array,
  *,
  seq_len: int,
  tau: float,
  margin: float,
  weights: tuple[float, float, float, float],
) -> tuple[jax.Array, FOCALTerms]:
  """FOCAL's objective on two views of ``M`` modalities.

  Args:
    e: ``[V=2, M, B, 2D]`` projections (shared part first), ``B = S * L``
      sequence-major.
    seq_len: ``L`` (1: no temporal term).
    tau: NT-Xent temperature.
    margin: temporal ranking margin.
    weights: ``(w_s, w_p, w_o, w_t)``.

  Returns:
    ``(loss [], FOCALTerms)``.
  """
  if e.ndim != 4 or e.shape[0] != 2 or e.shape[-1] % 2:
    raise ValueError(f"e must be [2, M, B, 2D], got {tuple(e.shape)}.")
  num_mod, num = e.shape[1], e.shape[2]
  if seq_len < 1 or num % seq_len or num // seq_len < 2:
    raise ValueError(
      f"batch size {num} must be a multiple of loss.seq_len={seq_len} with "
      "at least 2 sequences."
    )
  half = e.shape[-1] // 2
  shared, private = e[..., :half], e[..., half:]
  contrast = lambda a, b: sequence_contrast(a, b, seq_len=seq_len, tau=tau)
  pairs = list(itertools.combinations(range(num_mod), 2))
  zero = jnp.zeros((), e.dtype)
  l_shared = sum(
    (contrast(shared[v, a], shared[v, b]) for v in range(2) for a, b in pairs),
    zero,
  )
  l_private = sum(
    (contrast(private[0, m], private[1, m]) for m in range(num_mod)), zero
  )
  l_orth = sum(
    (
      orthogonality(shared[v, m], private[v, m])
      for v in range(2)
      for m in range(num_mod)
    ),
    zero,
  ) + sum(
    (
      orthogonality(private[v, a], private[v, b])
      for v in range(2)
      for a, b in pairs
    ),
    zero,
  )
  if seq_len > 1:
    l_temp = sum(
      (
        temporal_ranking(e[v, m], seq_len=seq_len, margin=margin)
        for v in range(2)
        for m in range(num_mod)
      ),
      zero,
    )
  else:
    l_temp = zero
  terms = FOCALTerms(l_shared, l_private, l_orth, l_temp)
  loss = sum((w * t for w, t in zip(weights, terms, strict=True)), zero)
  return loss, terms


def init(
  rng: jax.Array, config: ml_collections.ConfigDict, example_batch: dict
) -> dict[str, Any]:
  """Initial variables ``{"params", "batch_stats"}`` for ``example_batch``."""
  return forward.init_variables(
    _model(config), rng, example_batch, config, min_modalities=2
  )


def loss_fn(
  variables: dict[str, Any],
  batch: dict,
  rng: jax.Array,
  config: ml_collections.ConfigDict,
  step: jax.Array,
) -> tuple[jax.Array, tuple[dict[str, Any], dict[str, jax.Array]]]:
  """FOCAL's loss on one (unlabelled) sequence-major batch.

  Args:
    variables: ``{"params", "batch_stats"}``.
    batch: ``{"signals": {m: [B, ...]}, ...}``, ``B = S * loss.seq_len``
      sequence-major (labels unused).
    rng: the step key (streams ``augment``, ``dropout``).
    config: the experiment config.
    step: traced int32 step (unused).

  Returns:
    ``(loss, (new_model_state, metrics))``.
  """
  del step
  c = config.loss
  mods, (_, e), state = forward.apply_to_views(
    _model(config), variables, batch, rng, config, num_views=2, min_modalities=2
  )
  stacked = jnp.stack([jnp.stack(jnp.split(e[m], 2)) for m in mods], axis=1)
  loss, terms = focal_loss(
    stacked,
    seq_len=int(c.seq_len),
    tau=c.tau,
    margin=c.rank_margin,
    weights=(
      c.shared_weight,
      c.private_weight,
      c.orthogonal_weight,
      c.temporal_weight,
    ),
  )
  metrics = {
    "loss/focal": loss,
    "loss/shared": terms.shared,
    "loss/private": terms.private,
    "loss/orthogonal": terms.orthogonal,
    "loss/temporal": terms.temporal,
  }
  return loss, (state, metrics)


def embed(
  variables: dict[str, Any], batch: dict, config: ml_collections.ConfigDict
) -> dict[str, jax.Array]:
  """Eval-mode encoder features ``{m: [B, F]}`` and ``"fused" [B, M * F]``."""
  mods, (h, _) = forward.apply_eval(
    _model(config), variables, batch, config, min_modalities=2
  )
  return forward.with_fused(h, mods)


#: The method record (:class:`msjax.methods.interface.Method`).
METHOD = Method(default_config, init, loss_fn, embed)
