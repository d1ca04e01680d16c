"""Where the time of msjax's Sinkhorn goes on a GPU: variants, one process.

    python benchmarks/gpu/sinkhorn_variants.py

Times (median of interleaved blocked calls) the full kernel, its fast path
alone (no ``lax.cond``), the log-domain path alone, and the two combined by
``jnp.where`` instead of ``lax.cond`` (both always computed: no predicate
read back to the host), at the benchmark shapes.
"""

import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from msjax.kernels import ot

EPS, ITERS = 0.05, 3


def fast_only(s):
  kernel, out = ot.equipartition_scalings(s, epsilon=EPS, num_iters=ITERS)
  return kernel * out.u[..., None, :] / out.col_den[..., :, None]


def log_only(s):
  col, row_max, row_sum = ot.equipartition_potentials(
    s, epsilon=EPS, num_iters=ITERS
  )
  return jnp.exp(s / EPS + col - row_max) / row_sum


def where_both(s):
  kernel, out = ot.equipartition_scalings(s, epsilon=EPS, num_iters=ITERS)
  ok = out.ok
  col, row_max, row_sum = ot.equipartition_potentials(
    s, epsilon=EPS, num_iters=ITERS
  )
  scaled = kernel * out.u[..., None, :] / out.col_den[..., :, None]
  logits = s / EPS + col - row_max
  return jnp.where(ok, scaled, jnp.exp(jnp.where(ok, 0.0, logits)) / row_sum)


def main():
  variants = {
    "msjax": functools.partial(ot.equipartition, epsilon=EPS, num_iters=ITERS),
    "fast_only": fast_only,
    "log_only": log_only,
    "where_both": where_both,
    "copy_x2": lambda s: s * 2.0,
  }
  fns = {k: jax.jit(v) for k, v in variants.items()}
  for b, k in ((256, 512), (1024, 3000), (4096, 3000)):
    s = jnp.asarray(
      np.random.default_rng(0).uniform(-1, 1, (b, k)), jnp.float32
    )
    ref = fns["msjax"](s)
    for name, f in fns.items():
      jax.block_until_ready(f(s))
      if name != "copy_x2":
        err = float(jnp.max(jnp.abs(f(s) - ref)))
        assert err < 1e-5, (name, err)
    samples = {n: [] for n in fns}
    for _ in range(300):
      for name, f in fns.items():
        t0 = time.perf_counter()
        jax.block_until_ready(f(s))
        samples[name].append(time.perf_counter() - t0)
    cells = "  ".join(
      f"{n} {statistics.median(v) * 1e3:.3f}" for n, v in samples.items()
    )
    print(f"B={b} K={k}: {cells} (ms)")


if __name__ == "__main__":
  main()
