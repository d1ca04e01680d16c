"""SaMoBal fusion module: hard forward, gradients to every modality."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msjax.kernels import selection
from msjax.kernels.norms import l2_normalize
from msjax.nn import SaMoBalFusion

M, B, D, C = 3, 5, 8, 4


@pytest.fixture
def inputs(key):
  k1, k2, k3 = jax.random.split(key, 3)
  z = l2_normalize(jax.random.normal(k1, (M, B, D)))
  protos = l2_normalize(jax.random.normal(k2, (C, D)))
  labels = jax.random.randint(k3, (B,), 0, C)
  return z, protos, labels


def test_train_forward_is_hard_selection_with_gradients_everywhere(inputs):
  z, protos, labels = inputs
  fusion = SaMoBalFusion()
  rngs = {"gumbel": jax.random.key(11)}

  @jax.jit
  def fused(z):
    return fusion.apply({}, z, protos, labels, train=True, rngs=rngs)

  z_fus, aux = fused(z)
  assert z_fus.shape == (B, D)
  assert aux["hard"].shape == aux["soft"].shape == aux["w"].shape == (B, M, D)
  assert aux["sel_rate"].shape == (M,)
  np.testing.assert_array_equal(aux["w"], aux["hard"])
  np.testing.assert_array_equal(aux["hard"].sum(1), 1.0)
  want = l2_normalize(jnp.einsum("bmd,mbd->bd", aux["hard"], z))
  np.testing.assert_allclose(z_fus, want, rtol=1e-6, atol=1e-6)
  # Gradients reach every modality, also where it was not selected.
  probe = jax.random.normal(jax.random.key(5), (B, D))
  grad = jax.grad(lambda z: jnp.sum(fused(z)[0] * probe))(z)
  unselected = jnp.transpose(aux["hard"], (1, 0, 2)) == 0  # [M, B, D]
  for m in range(M):
    assert float(jnp.abs(grad[m]).sum()) > 0
    assert float(jnp.abs(jnp.where(unselected[m], grad[m], 0.0)).sum()) > 0
  # The noise comes from the "gumbel" stream: another key, another draw.
  _, aux2 = fusion.apply(
    {}, z, protos, labels, train=True, rngs={"gumbel": jax.random.key(12)}
  )
  assert not np.array_equal(aux2["soft"], aux["soft"])


def test_eval_is_label_free_inference(inputs):
  z, protos, _ = inputs
  fusion = SaMoBalFusion(score="bank_max")
  z_fus, aux = fusion.apply({}, z, protos, train=False)
  want = selection.samobal_infer(z, protos, score="bank_max")
  np.testing.assert_array_equal(z_fus, want.z_fus)
  np.testing.assert_array_equal(aux["logits"], want.logits)
  assert aux["cand"].shape == (B, C, D)


def test_noiseless_modes_and_errors(inputs):
  z, protos, labels = inputs
  z_fus, aux = SaMoBalFusion(mode="hard").apply(
    {}, z, protos, labels, train=True
  )
  want = selection.samobal_select(z, protos, labels, mode="hard")
  np.testing.assert_array_equal(z_fus, want.z_fus)
  with pytest.raises(ValueError, match="labels"):
    SaMoBalFusion().apply(
      {}, z, protos, train=True, rngs={"gumbel": jax.random.key(0)}
    )
  with pytest.raises(ValueError, match=r"\[M, B, D\]"):
    SaMoBalFusion().apply({}, z[0], protos, train=False)
