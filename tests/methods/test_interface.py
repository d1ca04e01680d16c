"""The Method record's default hooks (msjax/methods/interface.py)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msjax.methods import METHODS, Method, interface


def _bare() -> Method:
  return Method(lambda size="tiny": None, None, None, None)


def test_defaults_fill_every_optional_hook():
  method = _bare()
  params = {"a": jnp.ones((2,)), "b": {"c": jnp.zeros((3, 1))}}
  assert method.param_labels(params, None) == {"a": "main", "b": {"c": "main"}}
  assert method.post_update(params, None, jnp.int32(3)) is params
  assert method.requires_paired_rows(None) is True
  assert method.predict is None
  with pytest.raises(TypeError):  # optional hooks are keyword-only
    Method(None, None, None, None, interface.all_main_labels)
  with pytest.raises(dataclasses.FrozenInstanceError):
    method.post_update = interface.identity_post_update


def test_copy_matching_takes_equal_path_and_shape_cast_to_fresh_dtype():
  fresh = {
    "enc": {"w": jnp.zeros((2, 3), jnp.float32), "b": jnp.zeros((3,))},
    "head": {"w": jnp.zeros((3, 4))},
  }
  pretrained = {
    "enc": {"w": np.full((2, 3), 2.5, np.float64), "b": np.ones((5,))},
    "other": {"w": np.ones((3, 4))},
  }
  out = _bare().init_from_pretrained(fresh, pretrained, None)
  assert out["enc"]["w"].dtype == jnp.float32
  np.testing.assert_array_equal(out["enc"]["w"], np.full((2, 3), 2.5))
  # enc.b: the shape differs; head.w: the path is absent.
  np.testing.assert_array_equal(out["enc"]["b"], np.zeros((3,)))
  np.testing.assert_array_equal(out["head"]["w"], np.zeros((3, 4)))
  assert jax.tree.structure(out) == jax.tree.structure(fresh)


def test_every_registered_method_is_a_method_record():
  assert all(isinstance(m, Method) for m in METHODS.values())


def test_every_method_builds_its_config_at_each_declared_size_only():
  assert _bare().sizes == ("tiny", "paper")
  for name, method in METHODS.items():
    widths = set()
    for size in method.sizes:
      sections = method.default_config(size)
      assert sorted(sections) == ["loss", "model"], (name, size)
      widths.add(repr(sections.model.to_dict()))
    # the sizes are different models, not aliases of one
    assert len(widths) == len(method.sizes), name
  with pytest.raises(ValueError, match="'tiny' or 'base'"):
    METHODS["infomae"].default_config("paper")
