"""The generative model behind :mod:`msjax.data.synthetic` (numpy, vectorised).

Three latent factors evolve per window as independent "sticky" Markov chains
(each window keeps the previous window's state with probability
``persistence``, otherwise it draws a state uniformly at random):

* ``exertion`` in {rest, walk, run} -- shared: raises heart rate (PPG) and
  motion amplitude and step cadence (ACC).
* ``stress`` in {calm, stressed} -- private to PPG: sharper pulses with a weak
  dicrotic wave and reduced heart-rate variability; no effect on motion.
* ``posture`` in {upright, reclined, lying} -- private to ACC: the direction
  of gravity in the sensor frame; no effect on the pulse.

Per-session "subject" factors (baseline heart rate, gain, pulse amplitude,
respiration rate, sensor orientation, motion axis mix and gain, cadence) and
state-independent gesture bursts in the motion stream make the tasks
non-trivial. Per-window states are expanded to the sample rate and smoothed
over ~1 s, so one continuous session signal is generated and cut into
consecutive, non-overlapping windows.

Here ``S`` is the number of sessions, ``W`` windows per session and ``T`` the
samples per window of one modality.
"""

import numpy as np

__all__ = [
  "EXERTION_LEVELS",
  "HR_STEP_HZ",
  "POSTURE_LEVELS",
  "STRESS_LEVELS",
  "acc_stream",
  "markov_states",
  "ppg_stream",
  "session_factors",
]

EXERTION_LEVELS = 3
STRESS_LEVELS = 2
POSTURE_LEVELS = 3

# Gravity direction per posture (unit vectors in the nominal sensor frame).
_GRAVITY = np.array(
  [[0.0, 0.0, 1.0], [0.0, 0.71, 0.71], [0.71, 0.0, 0.71]], dtype=np.float64
)
_GRAVITY /= np.linalg.norm(_GRAVITY, axis=1, keepdims=True)
# Motion amplitude (g) and step cadence (Hz) per exertion level.
_MOTION_AMP = np.array([0.04, 0.25, 0.55])
_CADENCE_HZ = np.array([0.3, 1.7, 2.6])
# Probability that a window contains a state-independent gesture burst.
_GESTURE_PROB = 0.3
# Heart-rate increase per exertion level (Hz above baseline).
HR_STEP_HZ = 0.45


def markov_states(
  rng: np.random.Generator,
  num_sessions: int,
  num_windows: int,
  num_states: int,
  persistence: float,
) -> np.ndarray:
  """Sticky Markov chain of discrete states, one chain per session.

  Args:
    rng: numpy generator.
    num_sessions: ``S``.
    num_windows: ``W``.
    num_states: number of discrete states.
    persistence: probability that a window keeps the previous state.

  Returns:
    ``int64 [S, W]`` states in ``0..num_states-1``.
  """
  fresh = rng.integers(0, num_states, size=(num_sessions, num_windows))
  change = rng.random((num_sessions, num_windows)) >= persistence
  change[:, 0] = True
  last_change = np.where(change, np.arange(num_windows)[None, :], 0)
  last_change = np.maximum.accumulate(last_change, axis=1)
  return np.take_along_axis(fresh, last_change, axis=1)


def session_factors(rng: np.random.Generator, num_sessions: int) -> dict:
  """Per-session subject and device factors.

  Args:
    rng: numpy generator.
    num_sessions: ``S``.

  Returns:
    Dict of ``[S]`` (or ``[S, 3]``, ``[S, 3, 3]``) float64 arrays.
  """
  s = num_sessions
  angle = rng.uniform(-0.45, 0.45, size=(s, 3))  # orientation jitter (rad)
  mix = rng.normal(size=(s, 3)) + np.array([0.0, 0.0, 1.5])
  return {
    "base_hr": rng.uniform(0.95, 1.35, s),
    "hr_gain": rng.uniform(0.75, 1.25, s),
    "pulse_amp": rng.uniform(0.7, 1.3, s),
    "dicrotic_offset": rng.uniform(-0.08, 0.08, s),
    "resp_hz": rng.uniform(0.2, 0.35, s),
    "resp_phase": rng.uniform(0, 2 * np.pi, s),
    "mayer_phase": rng.uniform(0, 2 * np.pi, s),
    "rotation": _rotations(angle),
    "motion_mix": mix / np.linalg.norm(mix, axis=1, keepdims=True),
    "cadence_factor": rng.uniform(0.85, 1.15, s),
    "motion_gain": rng.uniform(0.7, 1.4, s),
    "motion_phase": rng.uniform(0, 2 * np.pi, s),
  }


def _rotations(angle: np.ndarray) -> np.ndarray:
  """``[S, 3]`` xyz Euler angles -> ``[S, 3, 3]`` rotation matrices."""
  cos, sin = np.cos(angle), np.sin(angle)
  one, zero = np.ones_like(cos[:, 0]), np.zeros_like(cos[:, 0])
  rx = np.stack(
    [one, zero, zero, zero, cos[:, 0], -sin[:, 0], zero, sin[:, 0], cos[:, 0]],
    -1,
  ).reshape(-1, 3, 3)
  ry = np.stack(
    [cos[:, 1], zero, sin[:, 1], zero, one, zero, -sin[:, 1], zero, cos[:, 1]],
    -1,
  ).reshape(-1, 3, 3)
  rz = np.stack(
    [cos[:, 2], -sin[:, 2], zero, sin[:, 2], cos[:, 2], zero, zero, zero, one],
    -1,
  ).reshape(-1, 3, 3)
  return rz @ ry @ rx


def _expand(
  per_window: np.ndarray, samples_per_window: int, smooth_samples: int
) -> np.ndarray:
  """``[S, W, ...]`` -> ``[S, W*T, ...]``: repeated, then moving-averaged."""
  x = np.repeat(per_window.astype(np.float64), samples_per_window, axis=1)
  if smooth_samples <= 1:
    return x
  half = smooth_samples // 2
  pad = [(0, 0)] * x.ndim
  pad[1] = (half + 1, smooth_samples - half - 1)
  padded = np.pad(x, pad, mode="edge")
  csum = np.cumsum(padded, axis=1)
  return (csum[:, smooth_samples:] - csum[:, :-smooth_samples]) / float(
    smooth_samples
  )


def ppg_stream(
  rng: np.random.Generator,
  exertion: np.ndarray,
  stress: np.ndarray,
  factors: dict,
  *,
  rate_hz: float,
  samples_per_window: int,
  dominance: float,
  noise_std: float,
) -> np.ndarray:
  """Continuous pulse stream of every session.

  Args:
    rng: numpy generator (per-window heart-rate jitter and sensor noise).
    exertion: ``[S, W]`` shared states.
    stress: ``[S, W]`` PPG-private states.
    factors: output of :func:`session_factors`.
    rate_hz: sample rate.
    samples_per_window: ``T``.
    dominance: scale of the exertion effect on heart rate (0 hides it).
    noise_std: white sensor-noise standard deviation (pulse height ~1).

  Returns:
    ``float64 [S, W*T]``.
  """
  s, w = exertion.shape
  t = np.arange(w * samples_per_window) / rate_hz
  smooth = int(round(rate_hz))
  col = lambda v: v[:, None]  # noqa: E731
  hr_window = (
    col(factors["base_hr"])
    + dominance * col(factors["hr_gain"]) * HR_STEP_HZ * exertion
    + rng.normal(0, 0.07, (s, w))
  )
  hr = _expand(hr_window, samples_per_window, smooth)
  stressed = _expand(stress, samples_per_window, smooth)
  hrv_amp = 0.14 - 0.11 * stressed
  hr = hr + hrv_amp * (
    np.sin(2 * np.pi * 0.1 * t + col(factors["mayer_phase"]))
    + 0.6 * np.sin(2 * np.pi * col(factors["resp_hz"]) * t)
  )
  phase = np.cumsum(hr, axis=1) / rate_hz + rng.uniform(0, 1, (s, 1))
  frac = phase % 1.0
  sys_width = 0.085 - 0.035 * stressed
  dicrotic = np.clip(
    0.5 + col(factors["dicrotic_offset"]) - 0.4 * stressed, 0.0, None
  )
  pulse = _wrapped_bump(frac, 0.2, sys_width) + dicrotic * _wrapped_bump(
    frac, 0.5, 0.09
  )
  wander = 0.25 * np.sin(
    2 * np.pi * col(factors["resp_hz"]) * t + col(factors["resp_phase"])
  )
  noise = noise_std * rng.normal(size=pulse.shape)
  return col(factors["pulse_amp"]) * pulse + wander + noise


def _wrapped_bump(
  frac: np.ndarray, centre: float, width: np.ndarray | float
) -> np.ndarray:
  """Periodic Gaussian bump on the unit phase circle."""
  dist = (frac - centre + 0.5) % 1.0 - 0.5
  return np.exp(-0.5 * (dist / width) ** 2)


def acc_stream(
  rng: np.random.Generator,
  exertion: np.ndarray,
  posture: np.ndarray,
  factors: dict,
  *,
  rate_hz: float,
  samples_per_window: int,
  dominance: float,
  noise_std: float,
) -> np.ndarray:
  """Continuous 3-axis acceleration stream (in g) of every session.

  Args:
    rng: numpy generator (motion texture and sensor noise).
    exertion: ``[S, W]`` shared states.
    posture: ``[S, W]`` ACC-private states.
    factors: output of :func:`session_factors`.
    rate_hz: sample rate.
    samples_per_window: ``T``.
    dominance: scale of the exertion effect on motion (0 hides it).
    noise_std: white sensor-noise standard deviation (g).

  Returns:
    ``float64 [S, 3, W*T]``.
  """
  s, w = exertion.shape
  smooth = int(round(rate_hz))
  rest_amp, rest_cad = _MOTION_AMP[0], _CADENCE_HZ[0]
  amp_w = rest_amp + dominance * (_MOTION_AMP[exertion] - rest_amp)
  cad_w = rest_cad + dominance * (_CADENCE_HZ[exertion] - rest_cad)
  cad_w = cad_w * factors["cadence_factor"][:, None]
  amp_w = amp_w * factors["motion_gain"][:, None]
  amp_w = amp_w * rng.uniform(0.8, 1.2, (s, w))
  amp = _expand(amp_w, samples_per_window, smooth)
  cadence = _expand(cad_w, samples_per_window, smooth)
  step_phase = 2 * np.pi * np.cumsum(cadence, axis=1) / rate_hz
  step_phase = step_phase + factors["motion_phase"][:, None]
  stride = np.sin(step_phase) + 0.5 * np.sin(2 * step_phase + 0.7)
  # [S, 3, L]: a session-specific axis mix plus band-limited texture.
  length = w * samples_per_window
  coarse = rng.normal(size=(s, -(-length // 4), 3))
  texture = _expand(coarse, 4, max(smooth // 4, 1))[:, :length]
  texture = np.moveaxis(texture, -1, 1)
  motion = amp[:, None] * (
    factors["motion_mix"][:, :, None] * stride[:, None] + 0.6 * texture
  )
  # Nuisance: sporadic state-independent arm gestures (broadband bursts).
  gesture_w = (rng.random((s, w)) < _GESTURE_PROB) * rng.uniform(
    0.1, 0.45, (s, w)
  )
  gesture_amp = _expand(gesture_w, samples_per_window, max(smooth // 2, 1))
  coarse = rng.normal(size=(s, -(-length // 2), 3))
  burst = _expand(coarse, 2, max(smooth // 8, 1))[:, :length]
  motion = motion + gesture_amp[:, None] * np.moveaxis(burst, -1, 1)
  gravity_w = _GRAVITY[posture]  # [S, W, 3]
  gravity = _expand(gravity_w, samples_per_window, smooth)  # [S, L, 3]
  gravity = np.einsum("sij,slj->sil", factors["rotation"], gravity)
  noise = noise_std * rng.normal(size=motion.shape)
  return gravity + motion + noise
