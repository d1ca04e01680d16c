#!/usr/bin/env bash
# The CPU-independent part of the suite on one GPU (the 8-device sharding
# tests need the CPU backend), at full float32 precision and at JAX's default
# (TF32 on Hopper/Ampere). Needs ../shared copied to .shared/.
cd "$(dirname "$0")/../.." && . benchmarks/gpu/env.sh
export MSJAX_TEST_XLA_OPT=1 JAX_PLATFORMS=cuda MSJAX_SHARED=$PWD/.shared
skip="--deselect tests/kernels/test_sinkhorn_sharding.py
  --deselect tests/kernels/test_contrastive_sharding.py"
echo "== highest"
timeout 250 python3 -m pytest -q -p no:cacheprovider -n 8 tests/kernels \
  tests/nn $skip 2>&1 | tee "$OUT/tests_highest.log" | tail -25
echo "== default"
MSJAX_TEST_MATMUL_PRECISION=default timeout 200 python3 -m pytest -q \
  -p no:cacheprovider -n 8 tests/kernels $skip 2>&1 \
  | tee "$OUT/tests_default.log" | tail -25
