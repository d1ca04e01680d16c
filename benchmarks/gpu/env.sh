# Sourced by the GPU scripts beside it: environment for a bare CUDA machine
# whose python3 already has jax[cuda], flax, optax, orbax, torch and pytest.
# Packages it lacks (ml-collections, ott-jax, jaxopt) travel as wheels in
# .whl/ (see benchmarks/results/README.md); msjax runs from the checkout.
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
export OUT=${OUT:-$PWD/benchmarks/results/gpu_run}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm \
  --format=csv | tee "$OUT/nvidia_smi.txt"
