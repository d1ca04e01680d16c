"""Optimisers from the ``optim`` config section.

One optax transformation per parameter group (the method's optional
``param_labels``, default every leaf ``"main"``), combined with
``optax.multi_transform``; the label ``"frozen"`` gets ``optax.set_to_zero``.
"""

from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import optax

from msjax.train.errors import ConfigError

__all__ = [
  "FROZEN",
  "MAIN",
  "group_section",
  "make_optimizer",
  "make_schedule",
  "make_transform",
]

MAIN = "main"
FROZEN = "frozen"


def make_schedule(
  section: ml_collections.ConfigDict, total_steps: int
) -> optax.Schedule:
  """The learning-rate schedule of one optimiser section.

  Args:
    section: ``config.optim`` or one of its ``groups``.
    total_steps: the run length (cosine decays over it after warm-up).

  Returns:
    A function step -> learning rate.
  """
  peak = section.learning_rate
  warmup = section.warmup_steps
  if section.schedule == "constant":
    main = optax.constant_schedule(peak)
  elif section.schedule == "cosine":
    main = optax.cosine_decay_schedule(
      peak, max(total_steps - warmup, 1), alpha=section.end_factor
    )
  elif section.schedule == "step":
    main = optax.piecewise_constant_schedule(
      peak,
      {int(b) - warmup: section.step_factor for b in section.step_boundaries},
    )
  else:
    raise ConfigError(
      f"unknown optim.schedule {section.schedule!r}; use constant, cosine"
      " or step"
    )
  if warmup <= 0:
    return main
  ramp = optax.linear_schedule(0.0, peak, warmup)
  return optax.join_schedules([ramp, main], [warmup])


def make_transform(
  section: ml_collections.ConfigDict, total_steps: int
) -> optax.GradientTransformation:
  """Clipping, weight decay and the optimiser of one section."""
  schedule = make_schedule(section, total_steps)
  parts = []
  if section.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(section.grad_clip_norm))
  if section.optimizer == "adamw":
    parts.append(
      optax.adamw(
        schedule,
        b1=section.b1,
        b2=section.b2,
        eps=section.eps,
        weight_decay=section.weight_decay,
      )
    )
  elif section.optimizer in ("adam", "sgd"):
    if section.weight_decay > 0:
      parts.append(optax.add_decayed_weights(section.weight_decay))
    if section.optimizer == "adam":
      parts.append(
        optax.adam(schedule, b1=section.b1, b2=section.b2, eps=section.eps)
      )
    else:
      parts.append(
        optax.sgd(
          schedule, momentum=section.momentum, nesterov=section.nesterov
        )
      )
  else:
    raise ConfigError(
      f"unknown optim.optimizer {section.optimizer!r}; use adamw, adam or sgd"
    )
  return optax.chain(*parts)


def group_section(
  optim: ml_collections.ConfigDict, label: str
) -> ml_collections.ConfigDict:
  """The section for ``label``: ``optim.groups.<label>`` or ``optim``."""
  if label != MAIN and label in optim.groups:
    return optim.groups[label]
  return optim


def make_optimizer(
  config: ml_collections.ConfigDict, labels: Any
) -> tuple[optax.GradientTransformation, dict[str, Callable]]:
  """The optimiser for a labelled parameter tree.

  Args:
    config: the experiment config (reads ``optim`` and ``train.total_steps``).
    labels: a pytree of group labels shaped like the parameters.

  Returns:
    ``(optimizer, schedules)``, schedules keyed by trainable group label.
  """
  used = sorted(set(jax.tree.leaves(labels)))
  unknown = [
    label
    for label in used
    if label not in (MAIN, FROZEN) and label not in config.optim.groups
  ]
  if unknown:
    raise ConfigError(
      f"parameter groups {unknown} have no optim.groups.<label> section"
    )
  total = config.train.total_steps
  transforms = {}
  schedules = {}
  for label in used:
    if label == FROZEN:
      transforms[label] = optax.set_to_zero()
      continue
    section = group_section(config.optim, label)
    transforms[label] = make_transform(section, total)
    schedules[label] = make_schedule(section, total)
  return optax.multi_transform(transforms, labels), schedules
