"""Encoder choice: the :data:`ENCODERS` table and per-modality encoders.

``config.model.encoder`` names a row of :data:`ENCODERS`, the one explicit
dict of encoders a method may use; :class:`ModalityEncoders` builds one
encoder per modality (no weight sharing) from that row, and
:func:`encoder_model` gives the ``model`` keys that choose and size it, and
:class:`EncoderModel` is the base of the methods' models built on it.
"""

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import ml_collections

from msjax.methods.config_checks import check_size, modalities
from msjax.nn import (
  ResNet1DTiny,
  ResNet2DTiny,
  ResNet18,
  ResNet26_1D,
  SpectrogramSwin,
  SwinEncoder,
)

__all__ = [
  "ENCODERS",
  "EncoderModel",
  "EncoderSpec",
  "ModalityEncoders",
  "ProjectorModel",
  "encoder_fields",
  "encoder_model",
  "encoder_options",
  "projector_fields",
]


class EncoderSpec(NamedTuple):
  """One row of :data:`ENCODERS`.

  Attributes:
    constructor: the Flax module class.
    input_rank: rank of one example without the batch axis (2: raw windows
      ``[C, T]``; 3: spectrograms ``[C, F, N]``).
    has_head: the encoder ends in its own ``Dense(embed_dim)`` (it takes
      ``embed_dim=``); without one, :class:`ModalityEncoders` adds a
      ``Dense(feature_dim)``.
  """

  constructor: Callable[..., nn.Module]
  input_rank: int
  has_head: bool


#: Encoder names for ``config.model.encoder``. 1-D encoders take raw windows
#: ``[C, T]``; 2-D encoders take spectrograms ``[C, F, N]`` (ProMoBal's
#: audio-video setting uses ``"resnet18"``). ``"swin"`` is InfoMAE's SWIN
#: encoder without masking (:class:`msjax.nn.SpectrogramSwin`), sized by
#: ``model.swin``, ``model.patch_size`` and ``model.input_compression``
#: (:func:`encoder_options`).
ENCODERS: dict[str, EncoderSpec] = {
  "resnet1d_tiny": EncoderSpec(ResNet1DTiny, 2, has_head=True),
  "resnet1d26": EncoderSpec(ResNet26_1D, 2, has_head=True),
  "resnet2d_tiny": EncoderSpec(ResNet2DTiny, 3, has_head=False),
  "resnet18": EncoderSpec(ResNet18, 3, has_head=False),
  "swin": EncoderSpec(SpectrogramSwin, 3, has_head=False),
}

#: SwinEncoder fields that ``model.swin`` may not set for ``"swin"``: the
#: patch size has its own key, and the pooled features go through the
#: ``Dense(feature_dim)`` head of :class:`ModalityEncoders`.
_SWIN_FIXED = ("patch_size", "pool", "out_dim", "parent", "name")


def encoder_model(
  size: str, *, projector: bool = False, **extra: Any
) -> dict[str, Any]:
  """The ``model`` keys of an encoder-based method.

  Args:
    size: ``"tiny"`` (tests, smoke runs) or ``"paper"``.
    projector: add ``projector_hidden`` and ``embed_dim`` (an MLP projector
      after each encoder).
    **extra: the method's own ``model`` keys, added (or overriding) last.

  Returns:
    ``{"encoder", "encoder_width", "feature_dim", ["projector_hidden",
    "embed_dim"], ...}`` (``encoder_width`` 0: the row's own widths, see
    :func:`encoder_options`).
  """
  check_size(size)
  tiny = size == "tiny"
  model: dict[str, Any] = dict(
    encoder="resnet1d_tiny" if tiny else "resnet1d26",
    encoder_width=0,
    feature_dim=16 if tiny else 512,
  )
  if projector:
    model.update(
      projector_hidden=(32,) if tiny else (512,),
      embed_dim=16 if tiny else 128,
    )
  model.update(extra)
  return model


class EncoderModel(nn.Module):
  """Base of a method's model over per-modality encoders.

  Subclasses add their own attributes and build
  ``ModalityEncoders(self.modalities, self.encoder, self.feature_dim)``.

  Attributes:
    modalities: modality names, in ``config.data.modalities`` order.
    encoder: a key of :data:`ENCODERS`.
    feature_dim: ``F``, the per-modality feature width.
    encoder_options: keyword arguments of the encoder's constructor as
      ``(name, value)`` pairs (:func:`encoder_options`; empty for every row
      but ``"swin"``). Keyword-only.
  """

  modalities: tuple[str, ...]
  encoder: str
  feature_dim: int
  encoder_options: tuple[tuple[str, Any], ...] = dataclasses.field(
    default=(), kw_only=True
  )


class ProjectorModel(EncoderModel):
  """An :class:`EncoderModel` with an MLP projector after its encoders.

  Attributes:
    projector_hidden: hidden widths of the projector MLP(s).
    embed_dim: the projection width.
  """

  projector_hidden: tuple[int, ...]
  embed_dim: int


class ModalityEncoders(EncoderModel):
  """One encoder per modality: ``{m: [B, C_m, ...]} -> {m: [B, F]}``.

  1-D encoders end in their own ``Dense(feature_dim)`` head; 2-D encoders
  (no head of their own) are followed by a ``Dense(feature_dim)``.
  """

  @nn.compact
  def __call__(
    self, signals: Mapping[str, jax.Array], *, train: bool
  ) -> dict[str, jax.Array]:
    """Encodes every modality.

    Args:
      signals: ``{m: [B, C_m, T_m]}`` (1-D) or ``{m: [B, C_m, F_m, N_m]}``.
      train: BatchNorm batch statistics (True) or running averages (False).

    Returns:
      ``{m: [B, F]}`` features.
    """
    spec = ENCODERS[self.encoder]
    options = dict(self.encoder_options)
    out = {}
    for m in self.modalities:
      if spec.has_head:
        enc = spec.constructor(
          embed_dim=self.feature_dim, name=f"encoder_{m}", **options
        )
        out[m], _ = enc(signals[m], train=train)
      else:
        enc = spec.constructor(name=f"encoder_{m}", **options)
        h, _ = enc(signals[m], train=train)
        out[m] = nn.Dense(self.feature_dim, name=f"head_{m}")(h)
    return out


def _frozen(value: Any) -> Any:
  """Lists (from a config) as tuples, so module attributes hash."""
  if isinstance(value, list | tuple):
    return tuple(_frozen(v) for v in value)
  return value


def _row_widths(name: str) -> tuple[tuple[int, ...], int] | None:
  """``(stage_widths, stem_width)`` of a ResNet row; None for other rows."""
  constructor = ENCODERS[name].constructor
  if not isinstance(constructor, functools.partial):
    return None
  fields = {
    f.name: f.default
    for f in dataclasses.fields(constructor.func)
    if f.default is not dataclasses.MISSING
  }
  fields.update(constructor.keywords)
  if "stage_widths" not in fields or "stem_width" not in fields:
    return None
  return tuple(int(w) for w in fields["stage_widths"]), int(
    fields["stem_width"]
  )


def _scaled_widths(name: str, width: int) -> tuple[tuple[str, Any], ...]:
  """A ResNet row's widths scaled so that its first stage is ``width``."""
  widths = _row_widths(name)
  if widths is None:
    raise ValueError(
      f"model.encoder_width sizes the ResNet encoders; {name!r} is sized by"
      " its own keys: set model.encoder_width=0."
    )
  stages, stem = widths
  scale = width / stages[0]
  return (
    ("stage_widths", tuple(max(1, round(w * scale)) for w in stages)),
    ("stem_width", max(1, round(stem * scale))),
  )


def encoder_options(
  config: ml_collections.ConfigDict,
) -> tuple[tuple[str, Any], ...]:
  """The ``encoder_options`` of ``model.encoder``'s row.

  The ResNet rows read ``model.encoder_width`` (absent or 0: the row's own
  widths): ``w > 0`` makes the first stage ``w`` channels wide and scales
  every stage width and the stem width by the same factor, keeping the
  row's depth (``resnet1d_tiny`` at 16: stages 16, 32, stem 32;
  ``resnet1d26`` at 32: stages 32, 64, 128, 256, stem 32), so an encoder
  can sit anywhere between the tiny and the paper size.

  ``"swin"`` reads ``model.swin`` (:class:`msjax.nn.SwinEncoder` fields,
  as in InfoMAE's config; ``out_dim`` is ignored: the features go through
  the ``Dense(feature_dim)`` head), ``model.patch_size`` and
  ``model.input_compression`` (default ``"log1p"``).

  Raises:
    ValueError: a negative ``model.encoder_width``, or a positive one for
      ``"swin"``; ``"swin"`` without ``model.swin`` / ``model.patch_size``,
      or a ``model.swin`` field SwinEncoder does not have.
  """
  model = config.model
  width = int(model.get("encoder_width", 0))
  if width < 0:
    raise ValueError(f"model.encoder_width must be >= 0, got {width}.")
  if model.encoder not in ENCODERS:
    return ()  # the method's own checks name the unknown encoder
  if model.encoder != "swin":
    return _scaled_widths(model.encoder, width) if width else ()
  if width:
    raise ValueError(
      "model.encoder_width sizes the ResNet encoders; 'swin' is sized by"
      " model.swin.embed_dim: set model.encoder_width=0."
    )
  for key in ("swin", "patch_size"):
    if key not in model:
      raise ValueError(
        f"model.encoder='swin' needs model.{key} (InfoMAE's SWIN fields:"
        " see msjax.methods.infomae.default_config)."
      )
  allowed = {f.name for f in dataclasses.fields(SwinEncoder)}
  swin = {k: _frozen(v) for k, v in model.swin.items() if k != "out_dim"}
  unknown = sorted(k for k in swin if k not in allowed or k in _SWIN_FIXED)
  if unknown:
    raise ValueError(
      f"model.swin has fields {unknown} that the 'swin' encoder does not take."
    )
  return (
    ("compression", model.get("input_compression", "log1p")),
    ("patch_size", tuple(int(p) for p in model.patch_size)),
    ("swin", tuple(sorted(swin.items()))),
  )


def encoder_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """:class:`EncoderModel`'s attributes from ``config`` (data and model)."""
  return dict(
    modalities=modalities(config),
    encoder=config.model.encoder,
    feature_dim=int(config.model.feature_dim),
    encoder_options=encoder_options(config),
  )


def projector_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """:class:`ProjectorModel`'s attributes from ``config`` (data and model)."""
  return dict(
    **encoder_fields(config),
    projector_hidden=tuple(int(w) for w in config.model.projector_hidden),
    embed_dim=int(config.model.embed_dim),
  )
