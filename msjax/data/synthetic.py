"""Embedded synthetic multimodal sensing dataset (pulse + 3-axis motion).

Generative model (details and constants in
:mod:`msjax.data.synthetic_model`). Each of ``S`` sessions is one continuous
recording of ``W * window_s`` seconds, cut into ``W`` consecutive,
non-overlapping windows (``time_index`` 0..W-1). Three latent factors follow
independent sticky Markov chains over windows (a window keeps the previous
state with probability ``persistence``), so neighbouring windows usually share
their states:

* ``exertion`` (shared, 3 levels: rest/walk/run) drives both streams: heart
  rate rises by ~0.45 Hz per level (scaled by ``dominance["ppg"]``); motion
  amplitude and step cadence rise (scaled by ``dominance["acc"]``). A
  dominance of 0 hides the shared factor from that modality.
* ``stress`` (private to PPG, 2 levels): sharper systolic peak, a weaker
  dicrotic wave and lower heart-rate variability. Motion does not depend on it.
* ``posture`` (private to ACC, 3 levels): direction of gravity in the sensor
  frame. The pulse does not depend on it.

Streams, with per-session subject factors (baseline heart rate, gains, pulse
amplitude, respiration, sensor orientation, motion axis mix):

* ``"ppg"`` ``[N, 1, T]``: periodic pulse template (systolic + dicrotic
  Gaussian bumps) driven by the integrated instantaneous heart rate, plus
  respiratory baseline wander and white noise (``noise_std["ppg"]``).
* ``"acc"`` ``[N, 3, T]`` (g): rotated gravity + cadence-locked stride
  oscillation mixed over the axes + band-limited motion texture + sporadic
  state-independent gesture bursts (a nuisance, in ~30% of windows) + white
  noise (``noise_std["acc"]``).

Tasks (``config.task`` selects ``batch["label"]``):

* ``"shared"``: exertion (3 classes), visible in both modalities.
* ``"private_ppg"``: stress (2 classes), visible in PPG only.
* ``"private_acc"``: posture (3 classes), visible in ACC only.
* ``"combined"``: ``stress * 3 + posture`` (6 classes), needs both modalities.

Representation: ``"raw"`` windows ``[N, C, T]``, or ``"stft"``
spectrograms from :func:`msjax.data.signal.stft` (Hann frames of
``stft.segment_s`` every ``stft.hop_s`` seconds, no padding): ``[N, 2C, F,
N_f]`` real/imag interleaved per channel for ``stft.output="real_imag"``, or
``[N, C, F, N_f]`` for ``"magnitude"`` / ``"log_magnitude"``.

Everything is a deterministic function of ``config.seed`` (each component has
its own numpy stream, so e.g. the latent states do not depend on the
modalities requested). Splits hold whole sessions: ``test_fraction`` of the
sessions, chosen by the seed, form ``"test"``; the rest ``"train"``. Inside a
split examples are ordered session-major by ``time_index``.
"""

import ml_collections
import numpy as np

from msjax.data import signal
from msjax.data import synthetic_model as model
from msjax.data.sources import ArraySource
from msjax.data.synthetic_config import (
  MODALITIES,
  TASKS,
  default_config,
  validate_config,
)

__all__ = [
  "MODALITIES",
  "TASKS",
  "SyntheticSource",
  "default_config",
  "generate",
  "split_sessions",
  "validate_config",
]

_STREAMS = {"latents": 0, "factors": 1, "ppg": 2, "acc": 3, "split": 4}


def _rng(config: ml_collections.ConfigDict, stream: str) -> np.random.Generator:
  return np.random.default_rng([int(config.seed), _STREAMS[stream]])


def _windows(stream: np.ndarray, samples: int) -> np.ndarray:
  """``[S, ..., W*T]`` -> ``[S*W, C, T]`` float32."""
  if stream.ndim == 2:
    stream = stream[:, None]
  s, ch, length = stream.shape
  w = length // samples
  out = stream.reshape(s, ch, w, samples).transpose(0, 2, 1, 3)
  return np.ascontiguousarray(out.reshape(s * w, ch, samples), np.float32)


def generate(config: ml_collections.ConfigDict) -> dict:
  """Generates the whole dataset (all sessions, both splits).

  Args:
    config: the data section (see :func:`default_config`).

  Returns:
    Dict with ``N = num_sessions * windows_per_session`` rows, session-major:
    ``"signals"`` ``{modality: float32 [N, C, T]}`` (or ``[N, C', F, N_f]``
    for ``representation="stft"``), ``"labels"`` ``{task: int32 [N]}``,
    ``"session"`` and ``"time_index"`` ``int32 [N]``, ``"latents"``
    ``{"exertion", "stress", "posture": int32 [N], "heart_rate_hz": float32
    [N]}`` (the window's mean instantaneous heart rate without variability).
  """
  validate_config(config)
  s, w = int(config.num_sessions), int(config.windows_per_session)
  rng = _rng(config, "latents")
  p = float(config.persistence)
  exertion = model.markov_states(rng, s, w, model.EXERTION_LEVELS, p)
  stress = model.markov_states(rng, s, w, model.STRESS_LEVELS, p)
  posture = model.markov_states(rng, s, w, model.POSTURE_LEVELS, p)
  factors = model.session_factors(_rng(config, "factors"), s)
  signals = {}
  for name in config.modalities:
    rate = float(config.sample_rate_hz[name])
    samples = int(round(rate * config.window_s))
    kwargs = dict(
      rate_hz=rate,
      samples_per_window=samples,
      dominance=float(config.dominance[name]),
      noise_std=float(config.noise_std[name]),
    )
    if name == "ppg":
      stream = model.ppg_stream(
        _rng(config, name), exertion, stress, factors, **kwargs
      )
    else:
      stream = model.acc_stream(
        _rng(config, name), exertion, posture, factors, **kwargs
      )
    signals[name] = _windows(stream, samples)
    if config.representation == "stft":
      segment = int(round(config.stft.segment_s * rate))
      signals[name] = signal.stft(
        signals[name],
        nfft=segment,
        hop=int(round(config.stft.hop_s * rate)),
        output=config.stft.output,
      )
  flat = lambda a: a.reshape(-1).astype(np.int32)  # noqa: E731
  heart = factors["base_hr"][:, None] + float(config.dominance["ppg"]) * (
    factors["hr_gain"][:, None] * model.HR_STEP_HZ * exertion
  )
  return {
    "signals": signals,
    "labels": {
      "shared": flat(exertion),
      "private_ppg": flat(stress),
      "private_acc": flat(posture),
      "combined": flat(stress * model.POSTURE_LEVELS + posture),
    },
    "session": flat(np.repeat(np.arange(s)[:, None], w, axis=1)),
    "time_index": flat(np.repeat(np.arange(w)[None, :], s, axis=0)),
    "latents": {
      "exertion": flat(exertion),
      "stress": flat(stress),
      "posture": flat(posture),
      "heart_rate_hz": heart.reshape(-1).astype(np.float32),
    },
  }


def split_sessions(config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """Session ids of each split: ``{"train": [...], "test": [...]}`` sorted."""
  s = int(config.num_sessions)
  num_test = min(max(1, int(round(config.test_fraction * s))), s - 1)
  order = _rng(config, "split").permutation(s)
  return {"train": np.sort(order[num_test:]), "test": np.sort(order[:num_test])}


class SyntheticSource:
  """In-memory Source (docs/architecture.md) over one split.

  Attributes:
    modalities: modality names, in config order.
    num_examples: windows in the split.
    num_classes: classes of ``config.task``.
  """

  def __init__(self, config: ml_collections.ConfigDict, split: str):
    """Generates the data and keeps the rows of ``split``.

    Args:
      config: the data section (see :func:`default_config`).
      split: ``"train"``, ``"test"`` or ``"all"``.
    """
    if split not in ("train", "test", "all"):
      raise ValueError(
        f"split must be 'train', 'test' or 'all', got {split!r}."
      )
    data = generate(config)
    if split == "all":
      rows = np.arange(data["session"].shape[0])
    else:
      keep = split_sessions(config)[split]
      rows = np.flatnonzero(np.isin(data["session"], keep))
    self.modalities = tuple(config.modalities)
    self.num_examples = int(rows.shape[0])
    self.num_classes = TASKS[config.task]
    self.task = str(config.task)
    self._signals = {m: data["signals"][m][rows] for m in self.modalities}
    self._labels = {t: v[rows] for t, v in data["labels"].items()}
    self._latents = {k: v[rows] for k, v in data["latents"].items()}
    self._session = data["session"][rows]
    self._time_index = data["time_index"][rows]

  def element_shapes(self) -> dict[str, tuple[int, ...]]:
    """Per-modality window shape without the batch axis."""
    return {m: tuple(self._signals[m].shape[1:]) for m in self.modalities}

  def get(self, indices: np.ndarray) -> dict:
    """A host batch of the rows ``indices`` (``[B]`` ints in the split)."""
    idx = np.asarray(indices)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
      raise ValueError(
        f"indices must be a 1-D integer array, got {idx.dtype} "
        f"of shape {idx.shape}."
      )
    if idx.size and (idx.min() < 0 or idx.max() >= self.num_examples):
      raise ValueError(f"indices must be in [0, {self.num_examples}).")
    return {
      "signals": {m: self._signals[m][idx] for m in self.modalities},
      "label": self._labels[self.task][idx],
      "session": self._session[idx],
      "time_index": self._time_index[idx],
    }

  def subset(self, indices: np.ndarray) -> ArraySource:
    """The rows ``indices`` as an in-memory source (config task's labels).

    Used for the synchronized pairs of a pair-ratio split.
    """
    idx = np.asarray(indices, dtype=np.int64)
    return ArraySource(
      {m: self._signals[m][idx] for m in self.modalities},
      modalities=self.modalities,
      label=self._labels[self.task][idx],
      session=self._session[idx],
      time_index=self._time_index[idx],
      num_classes=self.num_classes,
      name="synthetic subset",
    )

  def labels(self, task: str | None = None) -> np.ndarray:
    """``int32 [num_examples]`` labels of ``task`` (default: config task)."""
    task = self.task if task is None else task
    if task not in TASKS:
      raise ValueError(f"task must be one of {tuple(TASKS)}, got {task!r}.")
    return self._labels[task]

  def latents(self) -> dict[str, np.ndarray]:
    """Latent states of every row (see :func:`generate`)."""
    return dict(self._latents)
