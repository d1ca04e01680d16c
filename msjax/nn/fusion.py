"""SaMoBal fusion module of ProMoBal (SPEC §3.2-§3.3).

The module owns no parameters: the class prototypes ``P [C, D]`` are passed
in. ProMoBal shares them between Pro-UCL, the fusion, Pro-FD and classifier
alignment, so they live in one :class:`msjax.nn.PrototypeBank` owned by the
method's model; the fusion only reads them. Gradients reach the prototypes
through the per-dimension scores in training.

* ``train=True``: :func:`msjax.kernels.selection.samobal_select`
  (per-dimension hard selection; in ``"straight_through"`` mode the Gumbel
  noise key comes from the Flax rng stream ``"gumbel"``).
* ``train=False``: :func:`msjax.kernels.selection.samobal_infer` (no labels,
  no noise).
"""

from typing import Literal

import flax.linen as nn
import jax

from msjax.kernels import selection

__all__ = ["SaMoBalFusion"]


class SaMoBalFusion(nn.Module):
  """Fuses unimodal embeddings ``z [M, B, D]`` into ``z_fus [B, D]``.

  Attributes:
    mode: train-time selection, ``"straight_through"`` (Gumbel, default),
      ``"soft"`` or ``"hard"`` (SPEC §3.2).
    tau_g: Gumbel-softmax temperature.
    score_scale: multiplies the training selection scores (SPEC: 1; see
      :func:`msjax.kernels.selection.samobal_select`).
    score: inference candidate score, ``"own"`` or ``"bank_max"`` (§3.3).
  """

  mode: Literal["straight_through", "soft", "hard"] = "straight_through"
  tau_g: float = 1.0
  score_scale: float = 1.0
  score: Literal["own", "bank_max"] = "own"

  @nn.compact
  def __call__(
    self,
    z: jax.Array,
    prototypes: jax.Array,
    labels: jax.Array | None = None,
    *,
    train: bool,
  ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Selects per dimension and fuses.

    Args:
      z: unimodal embeddings ``[M, B, D]`` (normalised).
      prototypes: class prototypes ``[C, D]`` (normalised rows).
      labels: ``int [B]`` ground-truth classes; required when ``train``.
      train: training selection (True) or label-free inference (False).

    Returns:
      ``(z_fus [B, D], aux)``. Training aux: ``hard, soft, w [B, M, D]``,
      ``sel_rate [M]``. Inference aux: ``logits, r [B, C]``, ``cls [B]``,
      ``cand [B, C, D]``.
    """
    if z.ndim != 3:
      raise ValueError(f"z must have shape [M, B, D], got shape {z.shape}.")
    if prototypes.ndim != 2 or prototypes.shape[-1] != z.shape[-1]:
      raise ValueError(
        f"prototypes must have shape [C, D={z.shape[-1]}], got shape "
        f"{prototypes.shape}."
      )
    if train:
      if labels is None:
        raise ValueError("labels [B] are required when train=True.")
      key = self.make_rng("gumbel") if self.mode == "straight_through" else None
      out = selection.samobal_select(
        z,
        prototypes,
        labels,
        mode=self.mode,
        tau_g=self.tau_g,
        score_scale=self.score_scale,
        key=key,
      )
      aux = {
        "hard": out.hard,
        "soft": out.soft,
        "w": out.w,
        "sel_rate": out.sel_rate,
      }
      return out.z_fus, aux
    out = selection.samobal_infer(z, prototypes, score=self.score)
    aux = {"logits": out.logits, "r": out.r, "cls": out.cls, "cand": out.cand}
    return out.z_fus, aux
