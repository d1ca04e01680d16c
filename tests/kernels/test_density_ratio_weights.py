"""Row weights of the InfoMAE density-ratio kernels (pair-ratio training).

A weighted kernel must equal the plain kernel on the rows with weight 1
(the synchronized pairs), whatever the other rows hold, and reduce to the
plain mean when every weight is 1.
"""

import jax
import numpy as np
import pytest

from msjax.kernels.density_ratio import (
  discriminator_bce,
  infomae_private_loss,
  infomae_shared_loss,
)

B, E = 10, 4
PAIRED = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1, 1], bool)


def _arrays(seed):
  rng = np.random.default_rng(seed)
  return {
    "u1": rng.normal(size=(B, E)),
    "u2": rng.normal(size=(B, E)),
    "t": [rng.normal(size=(2, B)) for _ in range(5)],
    "tj": rng.normal(size=B),
    "tp": rng.normal(size=B),
  }


def _softplus(x):
  return np.logaddexp(0.0, x)


def test_weighted_bce_is_the_numpy_bce_of_the_paired_rows():
  a = _arrays(0)
  got = discriminator_bce(a["tj"], a["tp"], weights=PAIRED)
  want = _softplus(-a["tj"][PAIRED]).mean() + _softplus(a["tp"][PAIRED]).mean()
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_weighted_shared_and_private_equal_the_kernel_on_paired_rows():
  a = _arrays(1)
  t1, t2, t3, t4, t5 = a["t"]
  got = infomae_shared_loss(
    a["u1"], a["u2"], t1, t2, t3, alpha=0.7, beta=0.3, weights=PAIRED
  )
  sub = infomae_shared_loss(
    a["u1"][PAIRED],
    a["u2"][PAIRED],
    t1[:, PAIRED],
    t2[:, PAIRED],
    t3[:, PAIRED],
    alpha=0.7,
    beta=0.3,
  )
  # Independent numpy form of SPEC §4.2 on the paired rows.
  p = PAIRED
  want = 0.7 * np.sum((a["u1"][p] - a["u2"][p]) ** 2, -1).mean() + np.sum(
    (t1[:, p] + 0.7 * t2[:, p] + t3[:, p]).mean(1)
  )
  np.testing.assert_allclose(got, sub, rtol=1e-6)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  got_p = infomae_private_loss(t4, t5, gamma=0.2, eps=0.3, weights=PAIRED)
  want_p = np.sum((0.2 * t4[:, p] + 0.3 * t5[:, p]).mean(1))
  np.testing.assert_allclose(got_p, want_p, rtol=1e-6)


def test_unit_weights_are_the_plain_mean_and_unpaired_rows_get_no_gradient():
  a = _arrays(2)
  t1, t2, t3, _, _ = a["t"]
  ones = np.ones(B, bool)
  np.testing.assert_allclose(
    infomae_shared_loss(a["u1"], a["u2"], t1, t2, t3, weights=ones),
    infomae_shared_loss(a["u1"], a["u2"], t1, t2, t3),
    rtol=1e-6,
  )
  grad = jax.grad(
    lambda u: infomae_shared_loss(u, a["u2"], t1, t2, t3, weights=PAIRED)
  )(a["u1"])
  assert np.all(np.asarray(grad)[~PAIRED] == 0)
  assert np.all(np.abs(np.asarray(grad)[PAIRED]).sum(-1) > 0)


def test_bad_weight_shape_rejected():
  a = _arrays(3)
  with pytest.raises(ValueError, match="weights must have shape"):
    discriminator_bce(a["tj"], a["tp"], weights=np.ones(B + 1))
