#!/usr/bin/env bash
# Kernel and encoder benchmarks on one GPU; JSON and logs under $OUT.
#   bash benchmarks/gpu/bench.sh [kernels] [models] [train_step]
cd "$(dirname "$0")/../.." && . benchmarks/gpu/env.sh
phases=${*:-kernels models}
kind=$(python3 -c "import sys; sys.path.insert(0, 'benchmarks'); import _devices; print(_devices.device_slug())")
for phase in $phases; do
  case $phase in
    kernels) timeout 280 python3 benchmarks/kernels.py \
      --out "$OUT/kernels_gpu_$kind.json" 2>&1 | tee "$OUT/kernels.log" ;;
    models) timeout 300 python3 benchmarks/models.py --repeats 30 --warmup 3 \
      --out "$OUT/models_gpu_$kind.json" 2>&1 | tee "$OUT/models.log" ;;
    train_step) timeout 400 python3 benchmarks/train_step.py --batch 64 \
      --steps 20 --out "$OUT/train_step_gpu_$kind.json" 2>&1 \
      | tee "$OUT/train_step.log" ;;
  esac
done
