"""MAE: the unimodal masked-autoencoder baseline (InfoMAE's stage 1 alone).

References: He, Chen, Xie, Li, Dollar, Girshick, "Masked Autoencoders Are
Scalable Vision Learners", CVPR 2022; the per-modality SWIN MAE of InfoMAE
(SPEC §4, stage 1) and FOCAL (Liu et al., NeurIPS 2023).

A unimodal baseline row: per modality ``m`` a SWIN encoder sees the visible
patches of its spectrogram ``x_m [B, C, F, N]`` (a random ``mask_ratio``
share of the ``N_p`` patches hidden, per row), an MAE decoder predicts every
patch ``xhat_m [B, N_p, P]`` (``P = ph pw C``) from the encoder's patch
latents, and with the binary mask ``mask_m [B, N_p]`` (1 = hidden)::

  L_m = sum_{b, n} mask_m[b, n] mean_p (xhat_m[b, n, p] - x_m[b, n, p])^2
        / sum_{b, n} mask_m[b, n]
  L   = sum_m L_m

(``msjax.kernels.masking.masked_mse``; ``loss.norm_pix_loss`` normalises
each target patch first). No term relates two modalities, so unpaired rows
are accepted. Everything is :mod:`msjax.methods.infomae` with
``loss.stage = 1``: same config keys (the stage-2 ones are unused), same
parameter tree (``encoder_<m>``, ``decoder_<m>``), so an ``mae`` workdir can
start InfoMAE's stage 2 (``train.init_from``).

:func:`embed`: the encoder's mean-pooled features of the unmasked input
``{m: [B, E]}``, ``"fused"`` their concatenation. Metrics: ``loss/total``,
``loss/rec``, ``loss/rec/<m>``.
"""

from typing import Any

import jax
import ml_collections

from msjax.methods import infomae
from msjax.methods.config_checks import check_size
from msjax.methods.interface import Method, never_paired

__all__ = [
  "METHOD",
  "default_config",
  "embed",
  "init",
  "loss_fn",
  "param_labels",
]


def default_config(size: str = "tiny") -> ml_collections.ConfigDict:
  """The ``model`` and ``loss`` sections: InfoMAE's, with ``stage = 1``.

  Args:
    size: ``"tiny"`` (tests, smoke runs) or ``"paper"`` (InfoMAE's
      ``"base"`` SWIN).

  Returns:
    ``ConfigDict(model=..., loss=...)``; the inputs must be spectrograms
    (``data.representation = "stft"``).
  """
  check_size(size)
  config = infomae.default_config("tiny" if size == "tiny" else "base")
  config.loss.stage = 1
  config.loss.seq_len = 1
  return config


def _check(config: ml_collections.ConfigDict) -> None:
  if config.loss.stage != 1:
    raise ValueError(
      "the mae baseline is InfoMAE's stage 1: loss.stage must be 1, got"
      f" {config.loss.stage} (use method=infomae for stage 2)."
    )


def init(
  rng: jax.Array, config: ml_collections.ConfigDict, example_batch: dict
) -> dict[str, Any]:
  """``{"params": {"encoder_<m>", "decoder_<m>"}}`` (see :mod:`infomae`)."""
  _check(config)
  return infomae.init(rng, config, example_batch)


def loss_fn(
  variables: dict[str, Any],
  batch: dict,
  rng: jax.Array,
  config: ml_collections.ConfigDict,
  step: jax.Array,
) -> tuple[jax.Array, tuple[dict[str, Any], dict[str, jax.Array]]]:
  """``sum_m L_m`` on one batch (masks and dropout from ``rng``).

  Args:
    variables: ``{"params": ...}``.
    batch: ``{"signals": {m: [B, C, F, N]}, ...}``.
    rng: the step key.
    config: the experiment config.
    step: traced int32 step (unused).

  Returns:
    ``(loss, ({}, metrics))``.
  """
  _check(config)
  return infomae.loss_fn(variables, batch, rng, config, step)


def embed(
  variables: dict[str, Any], batch: dict, config: ml_collections.ConfigDict
) -> dict[str, jax.Array]:
  """Eval-mode ``{m: [B, E]}`` and ``"fused" [B, M * E]``."""
  _check(config)
  return infomae.embed(variables, batch, config)


def param_labels(params: Any, config: ml_collections.ConfigDict) -> Any:
  """Every leaf ``"main"``."""
  _check(config)
  return infomae.param_labels(params, config)


#: The method record (:class:`msjax.methods.interface.Method`).
METHOD = Method(
  default_config,
  init,
  loss_fn,
  embed,
  param_labels=param_labels,
  requires_paired_rows=never_paired,
)
