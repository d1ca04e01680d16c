"""SaMoBal per-dimension modality selection (SPEC §3.2, §3.3) and Gumbel noise.

* :func:`gumbel_noise`: ``-log(-log(u))``, ``u ~ U(tiny, 1)`` (SPEC §5).
* :func:`samobal_select`: train-time fusion, per dimension one modality is
  selected against the ground-truth prototype (Gumbel straight-through,
  soft or hard).
* :func:`samobal_infer`: inference-time fusion, one candidate per class,
  the best-scoring candidate is the fused vector.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike, DTypeLike

from msjax.kernels._explicit import take_rows
from msjax.kernels._util import (
  DOT_PRECISION,
  as_float,
  check_labels,
  check_rank,
)
from msjax.kernels.norms import l2_normalize

__all__ = [
  "InferOut",
  "SelectOut",
  "gumbel_noise",
  "samobal_infer",
  "samobal_select",
]

_SELECT_MODES = ("straight_through", "soft", "hard")
_INFER_SCORES = ("own", "bank_max")


class SelectOut(NamedTuple):
  """Result of :func:`samobal_select` (SPEC §3.2).

  Attributes:
    z_fus: ``[B, D]`` fused unit vectors ``n(sum_m w[:, m] * z[m])``.
    hard: ``[B, M, D]`` one-hot selection over ``m`` (no gradient).
    soft: ``[B, M, D]`` softmax over ``m`` of the (noisy) scores.
    w: ``[B, M, D]`` fusion weights (forward value: ``hard`` for
      straight-through and hard modes, ``soft`` for soft mode).
    sel_rate: ``[M]`` selection rate per modality, ``mean(hard[:, m, :])``.
  """

  z_fus: jax.Array
  hard: jax.Array
  soft: jax.Array
  w: jax.Array
  sel_rate: jax.Array


class InferOut(NamedTuple):
  """Result of :func:`samobal_infer` (SPEC §3.3).

  Attributes:
    z_fus: ``[B, D]`` fused vectors ``cand[b, cls[b]]``.
    logits: ``[B, C]`` fused prediction ``z_fus @ P.T``.
    r: ``[B, C]`` class scores of the candidates.
    cls: ``[B]`` int32 ``argmax_c r`` (ties: lowest index).
    cand: ``[B, C, D]`` per-class candidate fused vectors (unit rows).
  """

  z_fus: jax.Array
  logits: jax.Array
  r: jax.Array
  cls: jax.Array
  cand: jax.Array


def gumbel_noise(
  key: jax.Array, shape: tuple[int, ...], dtype: DTypeLike = jnp.float32
) -> jax.Array:
  """Standard Gumbel(0, 1) noise ``-log(-log(u))``, ``u ~ U(tiny, 1)`` (§5).

  Args:
    key: PRNG key (``jax.random.key``); the result is deterministic given it.
    shape: output shape.
    dtype: floating output dtype.

  Returns:
    ``shape`` array of finite Gumbel samples.

  Raises:
    ValueError: if ``dtype`` is not floating.

  Example:
    >>> g = gumbel_noise(jax.random.key(0), (2, 3))
    >>> g.shape
    (2, 3)
  """
  dtype = jnp.dtype(dtype)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(f"dtype must be floating, got {dtype}.")
  tiny = jnp.finfo(dtype).tiny
  u = jax.random.uniform(key, shape, dtype, minval=tiny, maxval=1.0)
  return -jnp.log(-jnp.log(u))


def _one_hot_argmax(x: jax.Array, axis: int) -> jax.Array:
  """One-hot of ``argmax`` along ``axis`` (ties: lowest index), no grad."""
  index = jnp.argmax(jax.lax.stop_gradient(x), axis=axis)
  return jax.nn.one_hot(index, x.shape[axis], dtype=x.dtype, axis=axis)


def _check_z_prototypes(
  z: ArrayLike, prototypes: ArrayLike
) -> tuple[jax.Array, jax.Array]:
  z = as_float(z, "z")
  prototypes = as_float(prototypes, "prototypes")
  check_rank(z, 3, "z", "[M, B, D]")
  check_rank(prototypes, 2, "prototypes", "[C, D]")
  if prototypes.shape[1] != z.shape[2]:
    raise ValueError(
      f"z [M, B, D] and prototypes [C, D] must agree on D, got shapes"
      f" {tuple(z.shape)} and {tuple(prototypes.shape)}."
    )
  dtype = jnp.result_type(z, prototypes)
  return z.astype(dtype), prototypes.astype(dtype)


def samobal_select(
  z: ArrayLike,
  prototypes: ArrayLike,
  labels: ArrayLike,
  *,
  mode: str = "straight_through",
  tau_g: float = 1.0,
  score_scale: float = 1.0,
  key: jax.Array | None = None,
  noise: ArrayLike | None = None,
) -> SelectOut:
  """SaMoBal train-time per-dimension modality selection (SPEC §3.2).

  With scores ``s[b, m, d] = score_scale * z[m, b, d] * P[y[b], d]``::

    straight_through: soft = softmax_m((s + g) / tau_g), g ~ Gumbel
                      hard = one_hot(argmax_m soft)
                      w    = hard + (soft - sg(soft))  # forward: hard
    soft:             soft = w = softmax_m(s / tau_g)
                      hard = one_hot(argmax_m s)
    hard:             soft = softmax_m(s / tau_g)
                      w = hard = one_hot(argmax_m s)
    z_fus = n(sum_m w[:, m, :] * z[m])

  The forward value of straight-through is exactly ``hard``; its gradient
  flows through ``soft`` to every modality (and to ``P``). Argmax ties go
  to the lowest modality index.

  Args:
    z: ``[M, B, D]`` unimodal embeddings (unit rows; any float dtype).
    prototypes: ``[C, D]`` class prototypes ``P`` (unit rows).
    labels: ``[B]`` integer labels in ``0..C-1``.
    mode: ``"straight_through"`` (default), ``"soft"`` or ``"hard"``.
    tau_g: selection temperature (> 0).
    score_scale: multiplies the scores (> 0; SPEC: 1). With unit rows the
      scores are about ``1 / D`` against Gumbel noise of std 1.28, so at
      SPEC's 1 the straight-through selection is a fair coin per dimension;
      ``D`` makes the scores O(1) and the draw leans towards them (an msjax
      option, docs/claims.md). The noiseless modes' argmax does not depend
      on it (soft mode's weights do).
    key: PRNG key for the Gumbel noise (straight-through only; ignored by
      the noiseless modes).
    noise: explicit ``[B, M, D]`` Gumbel noise instead of ``key``
      (straight-through only).

  Returns:
    :class:`SelectOut` ``(z_fus [B, D], hard [B, M, D], soft [B, M, D],
    w [B, M, D], sel_rate [M])`` (float32 for 16-bit inputs).

  Raises:
    ValueError: on bad shapes or dtypes, an unknown ``mode``, ``tau_g <= 0``,
      ``score_scale <= 0``, straight-through without exactly one of
      ``key``/``noise``, or ``noise`` given to a noiseless mode.

  Example:
    >>> z = jnp.stack([jnp.eye(2), -jnp.eye(2)])
    >>> out = samobal_select(z, jnp.eye(2), jnp.array([0, 1]), mode="hard")
    >>> out.sel_rate.tolist()
    [0.5, 0.5]

  References:
    ProMoBal, "SaMoBal" sample-adaptive modality balancing; Jang et al.,
    "Categorical Reparameterization with Gumbel-Softmax", ICLR 2017.
  """
  z, prototypes = _check_z_prototypes(z, prototypes)
  num_mod, batch, dim = z.shape
  labels = check_labels(labels, batch)
  if mode not in _SELECT_MODES:
    raise ValueError(f"mode must be one of {_SELECT_MODES}, got {mode!r}.")
  if not float(tau_g) > 0:
    raise ValueError(f"tau_g must be > 0, got {tau_g}.")
  if not float(score_scale) > 0:
    raise ValueError(f"score_scale must be > 0, got {score_scale}.")

  z_bmd = jnp.transpose(z, (1, 0, 2))  # [B, M, D]
  scores = z_bmd * take_rows(prototypes, labels)[:, None, :]  # [B, M, D]
  if float(score_scale) != 1.0:
    scores = scores * jnp.asarray(score_scale, scores.dtype)
  if mode == "straight_through":
    if (key is None) == (noise is None):
      raise ValueError(
        "mode='straight_through' needs exactly one of key= (a PRNG key for"
        " the Gumbel noise) or noise= (explicit [B, M, D] noise)."
      )
    if noise is None:
      noise = gumbel_noise(key, (batch, num_mod, dim), z.dtype)
    else:
      noise = as_float(noise, "noise")
      if noise.shape != (batch, num_mod, dim):
        raise ValueError(
          f"noise must have shape [B, M, D] = {(batch, num_mod, dim)}, got"
          f" {tuple(noise.shape)}."
        )
      noise = jax.lax.stop_gradient(noise.astype(z.dtype))
    soft = jax.nn.softmax((scores + noise) / tau_g, axis=1)
    hard = _one_hot_argmax(soft, axis=1)
    weights = hard + (soft - jax.lax.stop_gradient(soft))
  else:
    if noise is not None:
      raise ValueError(
        f"noise= is only used by mode='straight_through', not {mode!r}."
      )
    soft = jax.nn.softmax(scores / tau_g, axis=1)
    hard = _one_hot_argmax(scores, axis=1)
    weights = soft if mode == "soft" else hard
  z_fus = l2_normalize(
    jnp.einsum("bmd,bmd->bd", weights, z_bmd, precision=DOT_PRECISION)
  )
  sel_rate = jnp.mean(hard, axis=(0, 2))
  return SelectOut(
    z_fus=z_fus, hard=hard, soft=soft, w=weights, sel_rate=sel_rate
  )


def samobal_infer(
  z: ArrayLike,
  prototypes: ArrayLike,
  *,
  score: str = "own",
) -> InferOut:
  """SaMoBal inference-time fusion without labels (SPEC §3.3).

  For every class ``c`` a candidate is built by per-dimension selection
  against ``P[c]`` (no noise)::

    cand[b, c] = n(sum_m one_hot(argmax_m z[m, b] * P[c])[m] * z[m, b])
    r[b, c]    = P[c] . cand[b, c]            ("own")
               | max_k P[k] . cand[b, c]      ("bank_max")
    cls = argmax_c r;  z_fus = cand[b, cls[b]];  logits = z_fus @ P.T

  Gradients flow through the selected entries of ``z`` and through ``P`` in
  the final logits (the selections are piecewise constant).

  Args:
    z: ``[M, B, D]`` unimodal embeddings (unit rows; any float dtype).
    prototypes: ``[C, D]`` class prototypes ``P`` (unit rows).
    score: ``"own"`` (default) or ``"bank_max"``.

  Returns:
    :class:`InferOut` ``(z_fus [B, D], logits [B, C], r [B, C], cls [B],
    cand [B, C, D])`` (float32 for 16-bit inputs; ``cls`` int32).

  Raises:
    ValueError: on bad shapes or dtypes or an unknown ``score``.

  Example:
    >>> z = jnp.stack([jnp.eye(2), -jnp.eye(2)])
    >>> samobal_infer(z, jnp.eye(2)).cls.tolist()
    [0, 1]
  """
  z, prototypes = _check_z_prototypes(z, prototypes)
  if score not in _INFER_SCORES:
    raise ValueError(f"score must be one of {_INFER_SCORES}, got {score!r}.")
  products = z[:, :, None, :] * prototypes[None, None]  # [M, B, C, D]
  select = _one_hot_argmax(products, axis=0)  # [M, B, C, D]
  cand = l2_normalize(
    jnp.einsum("mbcd,mbd->bcd", select, z, precision=DOT_PRECISION)
  )  # [B, C, D]
  if score == "own":
    r = jnp.einsum("bcd,cd->bc", cand, prototypes, precision=DOT_PRECISION)
  else:
    r = jnp.max(
      jnp.einsum("bcd,kd->bck", cand, prototypes, precision=DOT_PRECISION),
      axis=2,
    )
  cls = jnp.argmax(jax.lax.stop_gradient(r), axis=1).astype(jnp.int32)
  z_fus = jnp.take_along_axis(cand, cls[:, None, None], axis=1)[:, 0]
  logits = jnp.matmul(z_fus, prototypes.T, precision=DOT_PRECISION)
  return InferOut(z_fus=z_fus, logits=logits, r=r, cls=cls, cand=cand)
