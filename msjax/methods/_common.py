"""Pieces shared by the method modules (private to :mod:`msjax.methods`).

* encoder choice: :data:`ENCODERS`, the one explicit dict of encoder names a
  ``config.model.encoder`` may take, and :class:`ModalityEncoders` (one
  encoder per modality, no weight sharing);
* batch and config checks that fail early with a message naming the problem;
* PRNG streams (``augment``, ``dropout``, ``gumbel``) derived from the step key;
* augmented views made on device with :mod:`msjax.data.augment`;
* running a Flax module in training mode and returning its new non-param
  collections (``batch_stats``).
"""

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from msjax.data import augment as augment_lib
from msjax.nn import ResNet1DTiny, ResNet2DTiny, ResNet18, ResNet26_1D

__all__ = [
  "ENCODERS",
  "ModalityEncoders",
  "augment_config",
  "check_batch",
  "check_choice",
  "init_variables",
  "make_views",
  "modalities",
  "rng_streams",
  "run_model",
]

#: Encoder names for ``config.model.encoder``: name -> (constructor, input
#: rank without the batch axis). 1-D encoders take raw windows ``[C, T]``;
#: 2-D encoders take spectrograms ``[C, F, N]`` (ProMoBal's audio-video
#: setting uses ``"resnet18"``).
ENCODERS: dict[str, tuple[Callable[..., nn.Module], int]] = {
  "resnet1d_tiny": (ResNet1DTiny, 2),
  "resnet1d26": (ResNet26_1D, 2),
  "resnet2d_tiny": (ResNet2DTiny, 3),
  "resnet18": (ResNet18, 3),
}

_STREAMS = {"augment": 0, "dropout": 1, "gumbel": 2}


class ModalityEncoders(nn.Module):
  """One encoder per modality: ``{m: [B, C_m, ...]} -> {m: [B, F]}``.

  1-D encoders end in their own ``Dense(feature_dim)`` head; 2-D encoders
  (no head of their own) are followed by a ``Dense(feature_dim)``.

  Attributes:
    modalities: modality names, in ``config.data.modalities`` order.
    encoder: a key of :data:`ENCODERS`.
    feature_dim: ``F``, the per-modality feature width.
  """

  modalities: tuple[str, ...]
  encoder: str
  feature_dim: int

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
    constructor, _ = ENCODERS[self.encoder]
    out = {}
    for m in self.modalities:
      if self.encoder.startswith("resnet1d"):
        enc = constructor(embed_dim=self.feature_dim, name=f"encoder_{m}")
        out[m], _ = enc(signals[m], train=train)
      else:
        h, _ = constructor(name=f"encoder_{m}")(signals[m], train=train)
        out[m] = nn.Dense(self.feature_dim, name=f"head_{m}")(h)
    return out


def check_choice(value: Any, choices: Any, name: str) -> None:
  """Raises ``ValueError`` unless ``value`` is one of ``choices``."""
  if value not in choices:
    raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}.")


def modalities(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """``config.data.modalities`` as a tuple, checked (non-empty, distinct)."""
  mods = tuple(config.data.modalities)
  if not mods or len(set(mods)) != len(mods):
    raise ValueError(
      f"config.data.modalities must be distinct names, got {mods}."
    )
  return mods


def init_variables(
  model: nn.Module,
  rng: jax.Array,
  example_batch: Mapping[str, Any],
  config: ml_collections.ConfigDict,
  *,
  min_modalities: int = 1,
) -> dict[str, Any]:
  """Checks ``example_batch`` and returns ``model``'s initial variables.

  The one ``init`` body of the methods whose model maps the signal dict to
  its outputs (``model.init(rng, signals, train=False)``).

  Args:
    model: the method's Flax module, called as ``model(signals, train=...)``.
    rng: the init key.
    example_batch: ``{"signals": {m: [B, ...]}, ...}``.
    config: the experiment config.
    min_modalities: the method needs at least this many modalities.

  Returns:
    ``{"params", ...}`` (plus ``"batch_stats"`` when the model has BatchNorm).
  """
  mods = check_batch(example_batch, config, min_modalities=min_modalities)
  signals = {m: jnp.asarray(example_batch["signals"][m]) for m in mods}
  return dict(model.init(rng, signals, train=False))


def check_batch(
  batch: Mapping[str, Any],
  config: ml_collections.ConfigDict,
  *,
  min_modalities: int = 1,
  need_labels: bool = False,
) -> tuple[str, ...]:
  """Checks a batch against the config at trace time.

  Args:
    batch: ``{"signals": {m: [B, ...]}, "label": int [B], ...}``.
    config: the experiment config (``data.modalities``, ``model.encoder``).
    min_modalities: the method needs at least this many modalities.
    need_labels: the method reads ``batch["label"]``.

  Returns:
    The modality names, in config order.

  Raises:
    ValueError: naming the missing key, bad rank or batch-size mismatch.
  """
  mods = modalities(config)
  if len(mods) < min_modalities:
    raise ValueError(
      f"this method needs >= {min_modalities} modalities in "
      f"config.data.modalities, got {mods}."
    )
  check_choice(config.model.encoder, ENCODERS, "config.model.encoder")
  signals = batch.get("signals") if isinstance(batch, Mapping) else None
  if not isinstance(signals, Mapping):
    raise ValueError("batch must be a dict with a 'signals' dict.")
  missing = [m for m in mods if m not in signals]
  if missing:
    raise ValueError(
      f"batch['signals'] lacks modalities {missing} named in "
      f"config.data.modalities (has {sorted(signals)})."
    )
  rank = ENCODERS[config.model.encoder][1] + 1
  sizes = set()
  for m in mods:
    shape = jnp.shape(signals[m])
    if len(shape) != rank:
      raise ValueError(
        f"batch['signals'][{m!r}] must have rank {rank} for encoder "
        f"{config.model.encoder!r}, got shape {tuple(shape)}."
      )
    sizes.add(shape[0])
  if need_labels:
    if "label" not in batch:
      raise ValueError("this method is supervised: batch needs 'label' [B].")
    label_shape = jnp.shape(batch["label"])
    if len(label_shape) != 1:
      raise ValueError(f"batch['label'] must be [B], got {label_shape}.")
    sizes.add(label_shape[0])
  if len(sizes) != 1:
    raise ValueError(f"batch arrays disagree on the batch size: {sizes}.")
  return mods


def rng_streams(rng: jax.Array) -> dict[str, jax.Array]:
  """Named PRNG streams ``augment``, ``dropout``, ``gumbel`` of a step key."""
  return {name: jax.random.fold_in(rng, i) for name, i in _STREAMS.items()}


def augment_config(
  ops: tuple[str, ...] = ("jitter", "time_mask"),
) -> ml_collections.ConfigDict:
  """The ``loss.augment`` section: ops, per-op hyperparameters, probability.

  Args:
    ops: names of :data:`msjax.data.augment.OPS`, applied in order (``()``:
      views are the raw batch).

  Returns:
    ``ConfigDict(ops, params={op: {hyperparameter: value}}, probability)``.
  """
  return ml_collections.ConfigDict(
    dict(
      ops=tuple(ops),
      params=dict(
        jitter=dict(sigma=0.03),
        scaling=dict(sigma=0.2),
        time_mask=dict(max_fraction=0.2),
      ),
      probability=0.8,
    )
  )


def make_views(
  key: jax.Array,
  signals: Mapping[str, jax.Array],
  aug: ml_collections.ConfigDict,
  num_views: int,
) -> dict[str, jax.Array]:
  """``num_views`` augmented views per modality, stacked view-major.

  Args:
    key: the ``augment`` stream.
    signals: ``{m: [B, C, ...]}``.
    aug: the ``loss.augment`` section (see :func:`augment_config`).
    num_views: ``V`` (>= 1).

  Returns:
    ``{m: [V * B, C, ...]}``; rows ``v * B .. (v + 1) * B - 1`` are view
    ``v``. Every (modality, view) pair has its own key.
  """
  if num_views < 1:
    raise ValueError(f"num_views must be >= 1, got {num_views}.")
  params = {op: dict(p) for op, p in dict(aug.params).items()}
  params = {op: p for op, p in params.items() if op in tuple(aug.ops)}
  out = {}
  for i, (m, x) in enumerate(signals.items()):
    views = []
    for v in range(num_views):
      if not aug.ops:
        views.append(jnp.asarray(x))
        continue
      k = jax.random.fold_in(jax.random.fold_in(key, i), v)
      views.append(
        augment_lib.augment(
          k,
          x,
          ops=tuple(aug.ops),
          params=params,
          probability=aug.probability,
        )
      )
    out[m] = jnp.concatenate(views, axis=0)
  return out


def run_model(
  model: nn.Module,
  variables: Mapping[str, Any],
  *args: Any,
  train: bool,
  rngs: Mapping[str, jax.Array] | None = None,
  **kwargs: Any,
) -> tuple[Any, dict[str, Any]]:
  """Applies ``model``; in training returns the updated non-param state.

  Args:
    model: a Flax module.
    variables: ``{"params": ..., "batch_stats": ...}``.
    *args: positional call arguments.
    train: passed to the module; with ``True`` every non-params collection
      is mutable and returned updated.
    rngs: Flax rng streams (e.g. ``dropout``, ``gumbel``).
    **kwargs: keyword call arguments.

  Returns:
    ``(output, new_model_state)``; ``new_model_state`` is ``{}`` in eval mode
    or when the model has no state.
  """
  mutable = [c for c in variables if c != "params"] if train else False
  result = model.apply(
    dict(variables), *args, train=train, rngs=rngs, mutable=mutable, **kwargs
  )
  if not mutable:
    return result, {}
  out, state = result
  return out, dict(state)
