"""Named PRNG streams of a step key (``augment``, ``dropout``, ``gumbel``)."""

import jax

__all__ = ["STREAMS", "rng_streams"]

#: Stream name -> the ``fold_in`` index that derives it from the step key.
STREAMS = {"augment": 0, "dropout": 1, "gumbel": 2}


def rng_streams(rng: jax.Array) -> dict[str, jax.Array]:
  """``{name: fold_in(rng, index)}`` for every stream of :data:`STREAMS`."""
  return {name: jax.random.fold_in(rng, i) for name, i in STREAMS.items()}
