"""Tests of msjax.kernels.selection: SaMoBal fusion (SPEC §3.2, §3.3)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msjax.kernels.selection import (
  gumbel_noise,
  samobal_infer,
  samobal_select,
)
from tests.conftest import load_vectors
from tests.kernels import _vectors
from tests.kernels._vectors import assert_vectors, central_fd, suffix, unit

precision = _vectors.precision  # The shared f32/f64 fixture.

_select = jax.jit(
  samobal_select, static_argnames=("mode", "tau_g", "score_scale")
)
_infer = jax.jit(samobal_infer, static_argnames=("score",))

SELECT_FILES = {
  "straight_through": "samobal_train_st",
  "soft": "samobal_train_soft",
  "hard": "samobal_train_hard",
}


def _random(seed, num_mod=3, batch=5, num_classes=4, dim=6):
  rng = np.random.default_rng(seed)
  z = unit(rng.normal(size=(num_mod, batch, dim)))
  protos = unit(rng.normal(size=(num_classes, dim)))
  labels = rng.integers(0, num_classes, batch).astype(np.int32)
  return z, protos, labels


# ----------------------------------------------------------------- vectors


@pytest.mark.parametrize("mode", list(SELECT_FILES))
def test_select_vectors(precision, mode):
  name = SELECT_FILES[mode]
  vec = load_vectors(name)
  sfx = suffix(precision)
  kwargs = dict(mode=mode, tau_g=float(vec["hp_tau_g"]))
  if mode == "straight_through":
    kwargs["noise"] = vec["x_gumbel" + sfx]

  def fused(z, protos):
    out = _select(z, protos, vec["x_y"], **kwargs)
    return jnp.sum(vec["r_z_fus"] * out.z_fus), out

  (_, out), grads = jax.value_and_grad(fused, argnums=(0, 1), has_aux=True)(
    vec["x_z" + sfx], vec["x_P" + sfx]
  )
  actual = {f"out_{k}": v for k, v in out._asdict().items()}
  actual.update(grad_z=grads[0], grad_P=grads[1])  # inputs used as given
  assert_vectors(name, precision, actual)


@pytest.mark.parametrize("score", ["own", "bank_max"])
def test_infer_vectors(precision, score):
  name = f"samobal_infer_{score}"
  vec = load_vectors(name)
  sfx = suffix(precision)

  def logits(z, protos):
    out = _infer(z, protos, score=score)
    return jnp.sum(vec["r_logits"] * out.logits), out

  (_, out), grads = jax.value_and_grad(logits, argnums=(0, 1), has_aux=True)(
    vec["x_z" + sfx], vec["x_P" + sfx]
  )
  assert out.cls.dtype == jnp.int32
  actual = {f"out_{k}": v for k, v in out._asdict().items()}
  actual.update(grad_z=grads[0], grad_P=grads[1])
  assert_vectors(name, precision, actual)


# -------------------------------------------------------------- invariants


def test_straight_through_forward_is_exactly_hard():
  vec = load_vectors("samobal_train_st")
  z, protos, labels = vec["x_z_f32"], vec["x_P_f32"], vec["x_y"]
  out = _select(z, protos, labels, noise=vec["x_gumbel_f32"])
  np.testing.assert_array_equal(out.w, out.hard)
  manual = np.einsum("bmd,mbd->bd", np.asarray(out.hard), z)
  manual /= np.linalg.norm(manual, axis=-1, keepdims=True)
  np.testing.assert_allclose(out.z_fus, manual, rtol=1e-6, atol=1e-7)
  # with zero noise straight-through and hard mode select the same entries
  zero = np.zeros_like(vec["x_gumbel_f32"])
  st = _select(z, protos, labels, noise=zero)
  hard = _select(z, protos, labels, mode="hard")
  np.testing.assert_array_equal(st.hard, hard.hard)
  np.testing.assert_array_equal(st.z_fus, hard.z_fus)


def test_straight_through_gradient_reaches_every_modality(key):
  z, protos, labels = _random(1)
  noise = gumbel_noise(key, (5, 3, 6))
  out = _select(z, protos, labels, noise=noise)
  cotangent = np.random.default_rng(0).normal(size=out.z_fus.shape)
  grad_z, grad_p = jax.grad(
    lambda z, p: jnp.sum(cotangent * _select(z, p, labels, noise=noise).z_fus),
    argnums=(0, 1),
  )(z, protos)
  unselected = np.transpose(np.asarray(out.hard), (1, 0, 2)) == 0  # [M,B,D]
  for m in range(3):
    assert unselected[m].any()
    # every modality gets gradient, also where it was not selected
    assert np.count_nonzero(np.asarray(grad_z)[m][unselected[m]]) > 0
  assert np.count_nonzero(grad_p) > 0
  # hard mode: not-selected entries get no gradient, P gets none
  grad_z_hard, grad_p_hard = jax.grad(
    lambda z, p: jnp.sum(cotangent * _select(z, p, labels, mode="hard").z_fus),
    argnums=(0, 1),
  )(z, protos)
  hard = np.transpose(
    np.asarray(_select(z, protos, labels, mode="hard").hard), (1, 0, 2)
  )
  np.testing.assert_array_equal(np.asarray(grad_z_hard)[hard == 0], 0.0)
  np.testing.assert_array_equal(grad_p_hard, 0.0)


@pytest.mark.parametrize("mode", list(SELECT_FILES))
def test_sel_rate_sums_to_one_and_soft_is_a_distribution(mode, key):
  z, protos, labels = _random(2)
  extra = {"key": key} if mode == "straight_through" else {}
  out = _select(z, protos, labels, mode=mode, **extra)
  np.testing.assert_allclose(np.sum(out.sel_rate), 1.0, rtol=1e-6)
  np.testing.assert_allclose(np.sum(out.soft, axis=1), 1.0, rtol=1e-6)
  np.testing.assert_array_equal(np.sum(out.hard, axis=1), 1.0)
  np.testing.assert_allclose(np.linalg.norm(out.z_fus, axis=-1), 1.0, rtol=1e-6)


def test_key_path_equals_explicit_noise(key):
  z, protos, labels = _random(3)
  by_key = _select(z, protos, labels, key=key)
  by_noise = _select(z, protos, labels, noise=gumbel_noise(key, (5, 3, 6)))
  # Same values up to float rounding: inside one program XLA may fuse the
  # drawn noise into the softmax differently (1-ulp differences on a GPU).
  for a, b in zip(by_key, by_noise, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=0)


def test_score_scale_multiplies_the_scores_before_the_noise(key):
  z, protos, labels = _random(4, dim=64)
  noise = np.asarray(gumbel_noise(key, (5, 3, 64)))
  for scale in (1.0, 64.0):
    out = _select(z, protos, labels, noise=noise, score_scale=scale)
    # independent: s = scale * z[m, b, d] * P[y_b, d], argmax_m(s + g)
    s = scale * np.transpose(z, (1, 0, 2)) * protos[labels][:, None, :]
    picked = np.argmax(s + noise, axis=1)  # [B, D]
    np.testing.assert_array_equal(np.argmax(out.hard, axis=1), picked)
    soft = np.exp(s + noise - np.max(s + noise, axis=1, keepdims=True))
    np.testing.assert_allclose(
      out.soft, soft / soft.sum(1, keepdims=True), rtol=1e-5, atol=1e-6
    )
  # At unit rows and D = 64 the scores (~1 / D) barely move the draw: with
  # M = 3 the selection agrees with the score's argmax about as often as
  # chance (1 / 3) at scale 1, and clearly more often at scale D.
  best = np.argmax(np.transpose(z, (1, 0, 2)) * protos[labels][:, None], 1)
  agree = {
    scale: np.mean(
      np.argmax(
        _select(z, protos, labels, noise=noise, score_scale=scale).hard, 1
      )
      == best
    )
    for scale in (1.0, 64.0)
  }
  assert abs(agree[1.0] - 1 / 3) < 0.05 and agree[64.0] > 0.45, agree
  # the noiseless modes' selection does not depend on the scale
  for mode in ("soft", "hard"):
    a = _select(z, protos, labels, mode=mode)
    b = _select(z, protos, labels, mode=mode, score_scale=8.0)
    np.testing.assert_array_equal(a.hard, b.hard)


def test_argmax_ties_go_to_lowest_index():
  z = np.ones((3, 2, 4), np.float32) / 2.0  # all modalities identical
  protos = np.ones((2, 4), np.float32) / 2.0
  out = _select(z, protos, np.array([0, 1], np.int32), mode="hard")
  np.testing.assert_array_equal(out.sel_rate, [1.0, 0.0, 0.0])
  infer = _infer(z, protos)
  np.testing.assert_array_equal(infer.cls, [0, 0])


def _np_infer(z, protos, score):
  """Per-sample, per-class float64 loop over SPEC §3.3."""
  num_mod, batch, dim = z.shape
  num_classes = protos.shape[0]
  cand = np.zeros((batch, num_classes, dim))
  for b in range(batch):
    for c in range(num_classes):
      for d in range(dim):
        best = max(
          range(num_mod), key=lambda m: (z[m, b, d] * protos[c, d], -m)
        )
        cand[b, c, d] = z[best, b, d]
      cand[b, c] /= np.linalg.norm(cand[b, c])
  if score == "own":
    r = np.einsum("bcd,cd->bc", cand, protos)
  else:
    r = np.einsum("bcd,kd->bck", cand, protos).max(axis=2)
  cls = r.argmax(axis=1)
  z_fus = cand[np.arange(batch), cls]
  return z_fus, z_fus @ protos.T, r, cls, cand


@pytest.mark.parametrize("score", ["own", "bank_max"])
def test_infer_matches_loop(x64, score):
  z, protos, _ = _random(4)
  out = _infer(z, protos, score=score)
  for got, ref in zip(out, _np_infer(z, protos, score), strict=True):
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)


def test_gumbel_noise_statistics(key):
  noise = gumbel_noise(key, (200_000,))
  assert noise.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(noise)))
  # Gumbel(0, 1): mean = Euler-Mascheroni, variance = pi^2 / 6
  np.testing.assert_allclose(np.mean(noise), 0.5772157, atol=0.01)
  np.testing.assert_allclose(np.var(noise), np.pi**2 / 6, rtol=0.02)
  np.testing.assert_array_equal(noise, gumbel_noise(key, (200_000,)))
  other = gumbel_noise(jax.random.fold_in(key, 1), (200_000,))
  assert not np.array_equal(noise, other)
  assert gumbel_noise(key, (3,), jnp.bfloat16).dtype == jnp.bfloat16


# ------------------------------------------------------ finite differences


@pytest.mark.parametrize("argnum", [0, 1])
def test_soft_mode_finite_differences(x64, argnum):
  z, protos, labels = _random(5)
  cotangent = np.random.default_rng(1).normal(size=(5, 6))
  central_fd(
    lambda z, p: jnp.sum(
      cotangent * _select(z, p, labels, mode="soft", tau_g=0.5).z_fus
    ),
    [z, protos],
    argnum,
  )


def test_hard_mode_finite_differences_away_from_ties(x64):
  z, protos, labels = _random(6)
  cotangent = np.random.default_rng(2).normal(size=(5, 6))
  central_fd(
    lambda z: jnp.sum(
      cotangent * _select(z, protos, labels, mode="hard").z_fus
    ),
    [z],
    0,
  )


@pytest.mark.parametrize("argnum", [0, 1])
def test_infer_finite_differences_away_from_ties(x64, argnum):
  z, protos, _ = _random(7)
  cotangent = np.random.default_rng(3).normal(size=(5, 4))
  central_fd(
    lambda z, p: jnp.sum(cotangent * _infer(z, p).logits), [z, protos], argnum
  )


# ------------------------------------------------------- dtypes, errors


def test_bfloat16_inputs_give_finite_float32(key):
  z, protos, labels = _random(8)
  z16, p16 = jnp.asarray(z, jnp.bfloat16), jnp.asarray(protos, jnp.bfloat16)
  for out in (_select(z16, p16, labels, key=key), _infer(z16, p16)):
    for field in out:
      if jnp.issubdtype(field.dtype, jnp.floating):
        assert field.dtype == jnp.float32
        assert bool(jnp.all(jnp.isfinite(field)))


_Z = np.ones((2, 4, 3), np.float32)
_P = np.ones((5, 3), np.float32)
_Y = np.zeros(4, np.int32)


@pytest.mark.parametrize(
  ("call", "match"),
  [
    (lambda: samobal_select(_Z, _P, _Y), "key= .* noise="),
    (
      lambda: samobal_select(
        _Z, _P, _Y, key=jax.random.key(0), noise=np.zeros((4, 2, 3))
      ),
      "exactly one",
    ),
    (
      lambda: samobal_select(_Z, _P, _Y, noise=np.zeros((2, 4, 3))),
      "noise must have shape",
    ),
    (lambda: samobal_select(_Z, _P, _Y, mode="gumbel"), "mode"),
    (
      lambda: samobal_select(
        _Z, _P, _Y, mode="soft", noise=np.zeros((4, 2, 3))
      ),
      "noise",
    ),
    (lambda: samobal_select(_Z[0], _P, _Y, mode="soft"), "z must have shape"),
    (lambda: samobal_select(_Z, _P[:, :2], _Y, mode="soft"), "prototypes"),
    (lambda: samobal_select(_Z, _P, _Y[:3], mode="soft"), "labels"),
    (lambda: samobal_select(_Z, _P, _Y * 1.0, mode="soft"), "integer"),
    (lambda: samobal_select(_Z, _P, _Y, mode="soft", tau_g=0.0), "tau_g"),
    (
      lambda: samobal_select(_Z, _P, _Y, mode="soft", score_scale=-1.0),
      "score_scale",
    ),
    (lambda: samobal_infer(_Z, _P, score="max"), "score"),
    (lambda: samobal_infer(_Z, _P[None]), "prototypes must have shape"),
    (lambda: gumbel_noise(jax.random.key(0), (2,), jnp.int32), "dtype"),
  ],
)
def test_bad_inputs_raise(call, match):
  with pytest.raises(ValueError, match=match):
    call()
