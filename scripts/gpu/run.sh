#!/usr/bin/env bash
# On a Linux machine with an NVIDIA GPU, Python 3.12, torch (CUDA 13) and sentence-transformers:
# install the wheels from scripts/gpu/wheels.sh into a scratch folder, then run mdp's GPU benchmark
# (`mdp bench --only embed`: MLX vs sentence-transformers in fp32 and bf16, then a whole SciFact
# BEIR build and eval with [model] device = "gpu", in bf16 and fp32).
#   usage: WHEELS=DIR SCIFACT=DIR OUT=DIR scripts/gpu/run.sh [probe|smoke|bench|scifact|all]  (repo root)
# Within a 10-minute limit per command: MDP_BENCH_SCIFACT=0 ... bench, then ... scifact.
# Results: $OUT/bench.json, $OUT/results.json and $OUT/RESULTS.md (the repo's files, updated), logs.
set -uo pipefail
step=${1:-all}
OUT=${OUT:-$PWD/gpu-out}
SITE=${SITE:-/tmp/mdp-gpu-site}
mkdir -p "$OUT"
python=${PYTHON:-python3}
site_packages=$($python -c 'import site; print(site.getsitepackages()[0])')
# mlx-cuda-13 finds the CUDA 13 libraries through its RPATH (site-packages/nvidia/...) only when it is
# installed beside them; installed elsewhere, it needs the torch environment's copies on the path.
for lib in cu13 cudnn nccl cublas cuda_nvrtc cufft cusolver; do
  [ -d "$site_packages/nvidia/$lib/lib" ] && LD_LIBRARY_PATH="$site_packages/nvidia/$lib/lib:${LD_LIBRARY_PATH:-}"
done
export LD_LIBRARY_PATH
if [ -n "${WHEELS:-}" ] && [ ! -f "$SITE/.installed" ]; then
  $python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$WHEELS"/*.whl && touch "$SITE/.installed" || { echo "wheel install failed" >&2; exit 1; }
fi
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
[ -n "${SCIFACT:-}" ] && export MDP_SCIFACT_DIR=$SCIFACT

probe() {
  {
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
    $python -V; ldd --version | head -1; nproc
    echo "site-packages: $site_packages"; echo "LD_LIBRARY_PATH: $LD_LIBRARY_PATH"
    $python -m pip list 2>/dev/null | grep -iE '^(torch|sentence|transformers|tokenizers|numpy|pandas|pyarrow|click|typer) '
    $python -m mdp_cli doctor --json
  } 2>&1 | tee "$OUT/probe.txt"
}

smoke() {  # the GPU path against sentence-transformers on a few real texts, before the long runs
  $python - <<'PY' 2>&1 | tee "$OUT/smoke.txt"
import numpy as np, torch
from sentence_transformers import SentenceTransformer
from mdp.encoder import SentenceEncoder
from mdp.bench.embed_gpu import scifact_texts
from mdp.tokenizer import default_model_path
texts = scifact_texts(256) + ["a", "", "short text"]
reference = SentenceTransformer(str(default_model_path()), device="cuda").encode(texts, normalize_embeddings=True)
for dtype in ("float32", "bfloat16"):
    encoder = SentenceEncoder(device="gpu", dtype=dtype)
    cosine = (encoder.encode(texts) * reference).sum(axis=1)
    print(dtype, encoder.info()["device"], encoder.info()["gpu_name"], "min cosine", float(cosine.min()),
          "parity check", encoder.info().get("parity_min_cosine"))
PY
}

bench() {
  $python -m mdp_cli bench --only embed --json > "$OUT/bench.json" 2> "$OUT/bench.log"
  cp benchmarks/results.json benchmarks/RESULTS.md "$OUT/" 2>/dev/null
  tail -5 "$OUT/bench.log"
}

scifact() {  # one SciFact build + eval per precision, each in a fresh process (also part of `bench`)
  for dtype in bfloat16 float32; do
    $python -m mdp.bench.embed_gpu --scifact-only $dtype > "$OUT/scifact_$dtype.json" 2> "$OUT/scifact_$dtype.log"
    tail -3 "$OUT/scifact_$dtype.log"; grep -A4 '"ndcg@10"' "$OUT/scifact_$dtype.json"
  done
}

profile() {  # where the time goes; remembers the fastest bf16 batch budget for later steps
  $python scripts/gpu/profile_encoder.py 2>&1 | grep -v "Loading weights" | tee "$OUT/profile.txt"
  sed -n 's/^best_batch_tokens=//p' "$OUT/profile.txt" > /tmp/mdp-best-batch-tokens
}

[ -s /tmp/mdp-best-batch-tokens ] && [ -z "${MDP_GPU_BATCH_TOKENS:-}" ] && export MDP_GPU_BATCH_TOKENS=$(cat /tmp/mdp-best-batch-tokens)

case $step in
  probe) probe ;;
  profile) profile ;;
  tuned) probe; profile; export MDP_GPU_BATCH_TOKENS=$(cat /tmp/mdp-best-batch-tokens); bench ;;
  smoke) smoke ;;
  bench) bench ;;
  scifact) scifact ;;
  all) probe; smoke; bench ;;
  *) echo "unknown step $step (probe, smoke, profile, bench, scifact, tuned, all)" >&2; exit 2 ;;
esac
