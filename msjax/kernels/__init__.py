"""Pure JAX loss kernels of SPEC.md (no Flax, no numpy at trace time).

Every function here is ``jit``/``vmap``/``grad``-able; arrays are positional,
hyperparameters keyword-only; shapes are documented in SPEC letters. Users
write ``msjax.kernels.sinkhorn_knopp`` etc.; the submodules hold one concept
each.
"""

from msjax.kernels.contrastive import info_nce, nt_xent, pro_ucl
from msjax.kernels.density_ratio import (
  discriminator_bce,
  infomae_private_loss,
  infomae_shared_loss,
  marginal_permutations,
  product_of_marginals,
)
from msjax.kernels.distillation import ProFDAux, pro_fd
from msjax.kernels.geometry import ca_loss, fc_rs
from msjax.kernels.masking import (
  PatchMask,
  masked_mse,
  num_kept,
  patchify,
  random_patch_mask,
  restore_order,
  take_visible,
  unpatchify,
)
from msjax.kernels.norms import l2_normalize
from msjax.kernels.ot import OTOut, batched_entropic_ot, entropic_ot
from msjax.kernels.prototypes import MPPAux, mpp_loss
from msjax.kernels.selection import (
  InferOut,
  SelectOut,
  gumbel_noise,
  samobal_infer,
  samobal_select,
)
from msjax.kernels.sinkhorn import sinkhorn_knopp
from msjax.kernels.temporal import temporal_locality

__all__ = [
  "InferOut",
  "MPPAux",
  "OTOut",
  "PatchMask",
  "ProFDAux",
  "SelectOut",
  "batched_entropic_ot",
  "ca_loss",
  "discriminator_bce",
  "entropic_ot",
  "fc_rs",
  "gumbel_noise",
  "info_nce",
  "l2_normalize",
  "infomae_private_loss",
  "infomae_shared_loss",
  "marginal_permutations",
  "masked_mse",
  "mpp_loss",
  "nt_xent",
  "num_kept",
  "patchify",
  "pro_fd",
  "pro_ucl",
  "product_of_marginals",
  "random_patch_mask",
  "restore_order",
  "samobal_infer",
  "samobal_select",
  "sinkhorn_knopp",
  "take_visible",
  "temporal_locality",
  "unpatchify",
]
