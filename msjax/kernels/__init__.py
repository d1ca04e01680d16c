"""Pure JAX loss kernels of SPEC.md (no Flax, no numpy at trace time).

Every function here is ``jit``/``vmap``/``grad``-able; arrays are positional,
hyperparameters keyword-only; shapes are documented in SPEC letters.
"""

# --- sinkhorn.py / prototypes.py (SPEC §1, §2, §3.4 OT) ---
# --- selection.py / distillation.py / geometry.py (SPEC §3.2-§3.5, §3.7) ---
# --- contrastive.py / density_ratio.py / temporal.py / masking.py (§3.1, §4, §5) ---
