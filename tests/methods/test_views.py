"""Augmentation sections and views (msjax/methods/views.py)."""

import jax
import numpy as np

from msjax.data import augment as augment_lib
from msjax.methods import views


def test_augment_config_overrides_and_extends_the_default_table():
  aug = views.augment_config(
    ("permutation", "jitter"),
    probability=1.0,
    permutation=dict(num_segments=5),
    jitter=dict(sigma=0.1),
  )
  assert tuple(aug.ops) == ("permutation", "jitter")
  assert aug.probability == 1.0
  assert aug.params.permutation.num_segments == 5
  assert aug.params.jitter.sigma == 0.1
  assert aug.params.scaling.sigma == views.DEFAULT_PARAMS["scaling"]["sigma"]


def test_views_are_per_modality_per_view_augmentations_of_the_listed_ops():
  aug = views.augment_config(("jitter", "scaling"), probability=0.5)
  x = np.asarray(jax.random.normal(jax.random.key(1), (4, 3, 16)))
  signals = {"a": x, "b": 2 * x}
  key = jax.random.key(7)
  got = views.make_views(key, signals, aug, 2)
  params = {"jitter": {"sigma": 0.03}, "scaling": {"sigma": 0.2}}
  for i, (m, v) in enumerate(signals.items()):
    expected = np.concatenate(
      [
        augment_lib.augment(
          jax.random.fold_in(jax.random.fold_in(key, i), view),
          v,
          ops=("jitter", "scaling"),
          params=params,
          probability=0.5,
        )
        for view in range(2)
      ]
    )
    np.testing.assert_array_equal(got[m], expected)
  raw = views.make_views(key, signals, views.augment_config(()), 3)
  np.testing.assert_array_equal(raw["b"], np.concatenate([2 * x] * 3))
