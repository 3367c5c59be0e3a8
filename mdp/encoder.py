"""Sentence encoder on MLX: a sentence-transformers folder in, L2-normalised float32 vectors out.

No torch at inference. Texts are tokenized with the model's fast tokenizer, truncated the way
sentence-transformers truncates, grouped by length with ``mlx.data``'s dynamic batching (so a
batch holds about ``batch_tokens`` padded tokens and padding is minimal), run through
:class:`mdp.models.bert.Bert` on ``mx.default_device()`` and pooled as the folder says.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from mdp.blas import activate_openblas, blas_info
from mdp.config import ModelConfig

_BLAS = activate_openblas()  # must precede the first `import mlx.core` (see mdp/blas.py)

import mlx.core as mx  # noqa: E402
import mlx.data as dx  # noqa: E402

from mdp.kernels import resolve as resolve_kernels  # noqa: E402
from mdp.models.bert import Bert, BertConfig  # noqa: E402
from mdp.tokenizer import (  # noqa: E402
    default_model_path,
    load_tokenizer,
    max_seq_length,
    resolve_model_path,
)

DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
# On the CPU backend a batch's intermediates (attention scores: batch x heads x L x L floats) must
# stay in the last-level cache: 1024 padded tokens per batch measured 1.3-1.75x faster than 8192
# (docs/encoder.md). GPUs take the configured batch_tokens as is.
CPU_BATCH_TOKENS = int(os.environ.get("MDP_CPU_BATCH_TOKENS", "1024"))
_DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}


@lru_cache(maxsize=16)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(path: Path) -> str:
    """sha256 of a weights file; computed once per (path, size, mtime) in this process."""
    stat = path.stat()
    return _file_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


class SentenceEncoder:
    """Encode texts with a sentence-transformers BERT folder on MLX.

    ``batch_tokens`` bounds padded tokens per batch; ``dtype`` is the compute dtype
    (float32 by default; reduced precision must pass the parity test before use).
    ``kernels``: ``auto`` (default, or ``MDP_KERNELS``), ``mdp_kernels`` or ``mlx``; see
    :mod:`mdp.kernels`. The fused kernels are float32 only, so other dtypes use MLX ops.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        batch_tokens: int = 8192,
        dtype: str = "float32",
        kernels: str | None = None,
    ) -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"dtype {dtype!r} not supported; use one of {', '.join(_DTYPES)}")
        self.model_dir = resolve_model_path(path)
        self.is_default = path is None or self.model_dir.resolve() == default_model_path().resolve()
        weights = self.model_dir / "model.safetensors"
        if not weights.exists():
            raise FileNotFoundError(f"{weights} missing: the encoder needs safetensors weights (no torch)")
        self.batch_tokens = int(batch_tokens)
        on_cpu = mx.default_device() == mx.cpu
        self.device_batch_tokens = self.batch_tokens
        if on_cpu:
            self.device_batch_tokens = min(self.batch_tokens, CPU_BATCH_TOKENS)
        self.dtype = dtype
        self.config = BertConfig.from_file(self.model_dir / "config.json")
        self.max_tokens = max_seq_length(self.model_dir)
        if self.max_tokens > self.config.max_position_embeddings:
            raise ValueError(f"max_seq_length {self.max_tokens} exceeds the model's position table")
        if self.batch_tokens < self.max_tokens:
            raise ValueError(f"batch_tokens ({batch_tokens}) must be >= max_tokens ({self.max_tokens})")
        self.device_batch_tokens = max(self.device_batch_tokens, self.max_tokens)
        self.pooling, self.normalize_module = self._read_modules()
        self.tokenizer = load_tokenizer(self.model_dir)
        if dtype != "float32" and kernels == "mdp_kernels":
            raise ValueError(f"mdp_kernels are float32-only; dtype {dtype!r} needs kernels='mlx' or 'auto'")
        fused, self.kernels = resolve_kernels("mlx" if dtype != "float32" else kernels)
        if dtype != "float32":
            reason = f"MLX ops: mdp_kernels are float32-only (dtype {dtype})"
            self.kernels = replace(self.kernels, reason=reason)
        self.model = Bert(self.config, fused_kernels=fused)
        self.model.load_hf_weights(weights, dtype=_DTYPES[dtype])
        self.dim = self.config.hidden_size
        self.model_id = self._model_id()
        self.model_version = weights_sha256(weights)[:12]

    @classmethod
    def from_config(cls, model: ModelConfig) -> SentenceEncoder:
        """The encoder that ``[model]`` in mdp.toml names."""
        return cls(model.path, batch_tokens=model.batch_tokens, dtype=model.dtype)

    # -- metadata ----------------------------------------------------------------------------

    def _read_modules(self) -> tuple[str, bool]:
        modules = _read_json(self.model_dir / "modules.json") or []
        pooling_dir = next(
            (m.get("path", "") for m in modules if str(m.get("type", "")).endswith(".Pooling")), "1_Pooling"
        )
        pooling_cfg = _read_json(self.model_dir / pooling_dir / "config.json")
        pooling_cfg = pooling_cfg or {"pooling_mode_mean_tokens": True}
        if pooling_cfg.get("pooling_mode_cls_token"):
            mode = "cls"
        elif pooling_cfg.get("pooling_mode_mean_tokens"):
            mode = "mean"
        else:
            enabled = [k for k, v in pooling_cfg.items() if k.startswith("pooling_mode") and v]
            raise ValueError(f"{self.model_dir}: pooling {enabled} not supported (mean or cls only)")
        normalize = any(str(m.get("type", "")).endswith(".Normalize") for m in modules)
        return mode, normalize

    def _model_id(self) -> str:
        if self.is_default:
            return DEFAULT_MODEL_ID
        readme = self.model_dir / "README.md"
        if readme.exists():
            for line in readme.read_text(errors="replace").splitlines():
                if line.startswith("# ") and "/" in line:
                    return line[2:].strip()
        return self.model_dir.name

    def info(self) -> dict[str, str | int | float | bool]:
        """Scalars describing the encoder (for Dagster metadata and the embedding cache key)."""
        out: dict[str, str | int | float | bool] = {
            "model_id": self.model_id,
            "model_version": self.model_version,
            "dim": self.dim,
            "max_tokens": self.max_tokens,
            "dtype": self.dtype,
            "device": str(mx.default_device()),
            "pooling": self.pooling,
            "normalize": True,
            "batch_tokens": self.batch_tokens,
            "device_batch_tokens": self.device_batch_tokens,
        }
        out.update(blas_info())
        out.update(self.kernels.as_metadata())
        return out

    # -- encoding ----------------------------------------------------------------------------

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text as the model sees them: special tokens added, truncated like
        sentence-transformers (keep the first max_tokens - 1 tokens, then the final [SEP])."""
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=True)
        limit = self.max_tokens
        out = []
        for enc in encodings:
            ids = enc.ids
            if len(ids) > limit:
                ids = ids[: limit - 1] + ids[-1:] if enc.special_tokens_mask[-1] else ids[:limit]
            out.append(ids)
        return out

    def _batches(self, ids: list[list[int]]) -> dx.Stream:
        samples = [
            {
                "input_ids": np.asarray(seq, dtype=np.int32),
                "mask": np.ones(len(seq), dtype=np.int32),
                "index": np.array([i], dtype=np.int64),
            }
            for i, seq in enumerate(ids)
        ]
        return (
            dx.buffer_from_vector(samples)
            .to_stream()
            .dynamic_batch(
                len(samples),
                "input_ids",
                max_data_size=self.device_batch_tokens,
                pad={"input_ids": 0, "mask": 0},
            )
            .prefetch(2, 1)
        )

    def _embed_batch(self, input_ids: np.ndarray, mask: np.ndarray) -> mx.array:
        ids = mx.array(input_ids)
        attention = mx.array(mask)
        hidden = self.model(ids, attention).astype(mx.float32)
        if self.pooling == "cls":
            pooled = hidden[:, 0, :]
        else:
            weights = attention[..., None].astype(mx.float32)
            pooled = (hidden * weights).sum(axis=1) / mx.maximum(weights.sum(axis=1), 1e-9)
        norm = mx.sqrt((pooled * pooled).sum(axis=-1, keepdims=True))
        return pooled / mx.maximum(norm, 1e-12)

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """(len(texts), dim) float32, L2-normalised, in input order."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of strings, not a string")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        ids = self.token_ids(list(texts))
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(texts), desc="embed", unit="text", file=sys.stderr)
        try:
            for batch in self._batches(ids):
                index = batch["index"].reshape(-1)
                vectors = self._embed_batch(batch["input_ids"], batch["mask"])
                out[index] = np.asarray(vectors)
                if bar is not None:
                    bar.update(len(index))
        finally:
            if bar is not None:
                bar.close()
        return out

    def flops_per_text(self, tokens: float) -> float:
        """Forward-pass FLOPs for one text of ``tokens`` tokens (matmuls only)."""
        return self.config.flops_per_token(int(round(tokens))) * tokens
