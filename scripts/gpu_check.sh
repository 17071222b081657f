#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one run: the GPU tests, the registered spaces end to end, and the
# image-indexing benchmark on the GPU beside the same machine's CPU. For a machine whose Python already has
# torch with CUDA (PYTHON=..., default python3); wheels in .whl/ (for a machine that reaches no package index)
# are installed to a scratch folder first. Logs go to $OUT (default ./gpu-check).
#   bash scripts/gpu_check.sh [quick|full]   # quick: the GPU tests and one benchmark run; full: and two more
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-check}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/mmr-site .whl/*.whl \
    || exit 1
  export PYTHONPATH="/tmp/mmr-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
step() { echo; echo "== $1 ($(date +%T))"; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/machine.txt"
echo "cpus: $(nproc)" | tee -a "$OUT/machine.txt"
$PY -c "import torch, open_clip, faiss; print('torch', torch.__version__, 'cuda', torch.version.cuda,
  torch.cuda.is_available(), 'open_clip', open_clip.__version__, 'faiss', faiss.__version__)" 2>&1 | tee -a "$OUT/machine.txt"

step "GPU tests"
timeout 300 $PY -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py 2>&1 | tee "$OUT/tests.log"

# 40 generated files (32 12-MP JPEGs, 8 1-MP PNGs) x 24: a GPU indexes them in seconds; the naive loop, serial,
# is timed on 80 of them (one of each, twice) and its rate taken for all.
BENCH=(scripts/bench/index_images.py --jpegs 32 --pngs 8 --copies 24 --naive-files 80)
step "image indexing on the GPU (auto precision: fp16)"
timeout 300 $PY "${BENCH[@]}" --device cuda --repeats 2 2>&1 | grep -v "^WARNING:root" | tee "$OUT/bench_cuda.log"
[ "${1:-}" = quick ] && exit 0

step "a registered space with an audio tower, end to end through the CLI (index takes the GPU by itself)"
timeout 240 $PY -m pytest -q -p no:cacheprovider tests/test_first_run.py -k "end_to_end and wav2clip" 2>&1 \
  | tee "$OUT/first_run.log"

step "image indexing on this machine's CPU, for comparison"
timeout 200 $PY "${BENCH[@]}" --device cpu --repeats 1 --copies 2 --naive-files 40 2>&1 | grep -v "^WARNING:root" \
  | tee "$OUT/bench_cpu.log"
[ "${1:-}" = full ] || exit 0

step "image indexing on this machine's CPU with every core decoding"
timeout 200 $PY "${BENCH[@]}" --device cpu --repeats 1 --copies 2 --naive-files 40 --workers "$(nproc)" 2>&1 \
  | grep -v "^WARNING:root" | tee "$OUT/bench_cpu_all_workers.log"

step "image indexing on the GPU, torch with one CPU thread (the decode threads' own tensor ops)"
timeout 200 $PY "${BENCH[@]}" --device cuda --repeats 1 --torch-threads 1 2>&1 | grep -v "^WARNING:root" \
  | tee "$OUT/bench_cuda_1thread.log"
