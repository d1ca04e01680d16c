"""Configuration of the synthetic source: defaults and validation.

The ``config.data`` section read by :mod:`msjax.data.synthetic`; per-modality
settings are dicts keyed by modality name.
"""

import ml_collections

from msjax.data import synthetic_model as model
from msjax.data.loader import loader_options

__all__ = ["MODALITIES", "TASKS", "default_config", "validate_config"]

MODALITIES = {"ppg": 1, "acc": 3}  # name -> channels
TASKS = {
  "shared": model.EXERTION_LEVELS,
  "private_ppg": model.STRESS_LEVELS,
  "private_acc": model.POSTURE_LEVELS,
  "combined": model.STRESS_LEVELS * model.POSTURE_LEVELS,
}
_STFT_OUTPUTS = ("real_imag", "magnitude", "log_magnitude")


def default_config(smoke: bool = False) -> ml_collections.ConfigDict:
  """The ``config.data`` section for the synthetic source.

  Args:
    smoke: a tiny dataset for CI (4 sessions x 16 windows of 2 s).

  Returns:
    A ConfigDict; per-modality settings are keyed by modality name.
  """
  c = ml_collections.ConfigDict()
  c.source = "synthetic"
  c.modalities = ("ppg", "acc")  # any distinct subset of MODALITIES, ordered
  c.sample_rate_hz = {"ppg": 64, "acc": 32}
  c.window_s = 2.0 if smoke else 4.0  # window_s * rate must be an integer
  c.num_sessions = 4 if smoke else 32
  c.windows_per_session = 16 if smoke else 64
  c.noise_std = {"ppg": 0.3, "acc": 0.05}  # white sensor noise per modality
  c.dominance = {"ppg": 1.0, "acc": 1.0}  # shared-factor strength, 0..2
  c.persistence = 0.85  # P(keep the state; else redraw it uniformly)
  c.task = "shared"  # which labels become batch["label"]: a key of TASKS
  c.seed = 0
  c.test_fraction = 0.25  # fraction of sessions in the test split
  c.representation = "raw"  # or "stft"
  c.stft = ml_collections.ConfigDict(
    dict(segment_s=1.0, hop_s=0.5, output="real_imag")
  )
  c.update(loader_options())
  return c


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ``ValueError`` naming the first bad setting of ``config``."""
  mods = tuple(config.modalities)
  if (
    not mods or len(set(mods)) != len(mods) or not set(mods) <= set(MODALITIES)
  ):
    raise ValueError(
      f"data.modalities must be distinct names from "
      f"{tuple(MODALITIES)}, got {mods}."
    )
  for name in MODALITIES:
    rate = config.sample_rate_hz[name]
    samples = rate * config.window_s
    if rate <= 0 or abs(samples - round(samples)) > 1e-9 or samples < 8:
      raise ValueError(
        f"data.window_s * data.sample_rate_hz[{name!r}] must be an integer "
        f">= 8, got {config.window_s} * {rate}."
      )
    if config.noise_std[name] < 0:
      raise ValueError(f"data.noise_std[{name!r}] must be >= 0.")
    if not 0.0 <= config.dominance[name] <= 2.0:
      raise ValueError(f"data.dominance[{name!r}] must be in [0, 2].")
  if config.num_sessions < 2 or config.windows_per_session < 1:
    raise ValueError(
      "data.num_sessions must be >= 2 and data.windows_per_session >= 1."
    )
  if not 0.0 <= config.persistence < 1.0:
    raise ValueError(
      f"data.persistence must be in [0, 1), got {config.persistence}."
    )
  if config.task not in TASKS:
    raise ValueError(
      f"data.task must be one of {tuple(TASKS)}, got {config.task!r}."
    )
  if not 0.0 < config.test_fraction < 1.0:
    raise ValueError("data.test_fraction must be in (0, 1).")
  if config.representation not in ("raw", "stft"):
    raise ValueError(
      "data.representation must be 'raw' or 'stft', got "
      f"{config.representation!r}."
    )
  if config.stft.output not in _STFT_OUTPUTS:
    raise ValueError(
      f"data.stft.output must be one of {_STFT_OUTPUTS}, got "
      f"{config.stft.output!r}."
    )
  if config.representation != "stft":
    return
  for name in config.modalities:
    rate = config.sample_rate_hz[name]
    segment = config.stft.segment_s * rate
    hop = config.stft.hop_s * rate
    if segment != round(segment) or hop != round(hop) or hop < 1:
      raise ValueError(
        f"data.stft.segment_s and hop_s times sample_rate_hz[{name!r}] must "
        f"be positive integers, got {segment} and {hop}."
      )
    if not 2 <= segment <= config.window_s * rate:
      raise ValueError(
        f"data.stft.segment_s={config.stft.segment_s} must fit inside "
        f"data.window_s={config.window_s} (>= 2 samples)."
      )
