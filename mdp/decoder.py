"""Decoder-only text embeddings on mlx-lm (Qwen3-Embedding style).

A causal language model embeds a text as the final hidden state of its last real
token (last-token pooling), L2-normalised. Queries may carry an instruction
(``Instruct: {task}\\nQuery:{text}``); documents are embedded as they are.

Batches are right-padded. Under a causal mask no real token attends to a later
pad token, so the hidden state at each text's last real token is the same as
when the text is encoded alone (a test checks this).

Qwen3-Embedding checkpoints name their weights like the bare transformer
(``layers.0...``, ``embed_tokens.weight``, ``norm.weight``), without the
``model.`` prefix mlx-lm's ``Model`` uses, and ship no ``lm_head`` even when the
config says the head is untied. ``load_decoder`` renames the keys on load and,
when the head is missing, ties it to the input embeddings (embedding never uses it).
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from mdp.blas import activate_openblas

activate_openblas()  # before the first `import mlx.core` (mdp/blas.py); entry points did it already

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import numpy as np  # noqa: E402
from mlx_lm.utils import _get_classes, load_model  # noqa: E402
from transformers import AutoTokenizer, PreTrainedTokenizerBase  # noqa: E402

# Top-level names of the bare transformer's weights, which mlx-lm keeps under ``model.``.
_BARE_PREFIXES = ("embed_tokens.", "layers.", "norm.")
_DTYPES: dict[str, mx.Dtype] = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
POOLING = "last-token"


def format_query(text: str, instruction: str) -> str:
    """Qwen3-Embedding's query format; the text alone when there is no instruction."""
    if not instruction:
        return text
    return f"Instruct: {instruction}\nQuery:{text}"


def safetensors_keys(path: Path) -> list[str]:
    """Tensor names of a safetensors file, read from its header only."""
    with path.open("rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        header: dict[str, Any] = json.loads(handle.read(size))
    return [key for key in header if key != "__metadata__"]


def weight_files(path: Path) -> list[Path]:
    files = sorted(path.glob("model*.safetensors"))
    if not files:
        raise FileNotFoundError(
            f"{path} has no model*.safetensors; point the model path at an mlx-lm / Hugging Face "
            "model folder (config.json, model.safetensors, tokenizer.json), downloaded beforehand"
        )
    return files


def remap_bare_keys(weights: dict[str, mx.array]) -> dict[str, mx.array]:
    """``layers.0.x`` -> ``model.layers.0.x`` (and embed_tokens, norm); other keys unchanged."""
    if any(key.startswith("model.") for key in weights):
        return weights
    return {
        (f"model.{key}" if key.startswith(_BARE_PREFIXES) else key): value for key, value in weights.items()
    }


def _with_remap(get_classes: Callable[..., tuple[type[nn.Module], type]]) -> Callable[..., Any]:
    """Wrap mlx-lm's architecture lookup so the model's ``sanitize`` first renames bare keys."""

    def get_model_classes(config: dict[str, Any]) -> tuple[type[nn.Module], type]:
        model_class, args_class = get_classes(config=config)

        def sanitize(self: nn.Module, weights: dict[str, mx.array]) -> dict[str, mx.array]:
            weights = remap_bare_keys(weights)
            parent = getattr(model_class, "sanitize", None)
            return parent(self, weights) if parent is not None else weights

        remapped = type(f"Remapped{model_class.__name__}", (model_class,), {"sanitize": sanitize})
        return remapped, args_class

    return get_model_classes


def load_decoder(path: str | Path) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """Load an mlx-lm model folder, fixing Qwen3-Embedding key names.

    Returns ``(model, config, load_info)``; ``load_info`` says what was fixed.
    """
    folder = Path(path)
    files = weight_files(folder)
    keys = [key for file in files for key in safetensors_keys(file)]
    bare = bool(keys) and not any(key.startswith("model.") for key in keys)
    has_head = any(key.startswith("lm_head.") for key in keys)
    overrides: dict[str, Any] = {}
    if not has_head:
        # No output head in the checkpoint: build the model with a tied head so loading is strict and
        # complete; embeddings only read the transformer's hidden states.
        overrides["tie_word_embeddings"] = True
    model, config = load_model(
        folder,
        model_config=overrides or None,
        get_model_classes=_with_remap(_get_classes) if bare else _get_classes,
    )
    return model, config, {"remapped_bare_keys": bare, "tied_missing_lm_head": not has_head}


def weights_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    for file in weight_files(Path(path)):
        digest.update(file.name.encode())
        with file.open("rb") as handle:
            while block := handle.read(1 << 22):
                digest.update(block)
    return digest.hexdigest()


class DecoderEmbedder:
    """Last-token-pooled, L2-normalised embeddings from a local mlx-lm model folder.

    ``encode(texts)`` embeds documents; ``encode_queries(texts)`` prefixes the instruction first.
    ``eos_token``: a token appended when the tokenizer does not already end texts with it (older
    Qwen3-Embedding snapshots need ``"<|endoftext|>"``; current ones add it themselves).
    ``dtype``: cast floating weights (e.g. ``"float32"`` for bf16 checkpoints on CPU); None keeps them.
    """

    def __init__(
        self,
        path: str | Path,
        instruction: str = "",
        max_tokens: int = 512,
        batch_size: int = 16,
        *,
        eos_token: str | None = None,
        dtype: str | None = None,
    ) -> None:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.path = Path(path)
        self.instruction = instruction
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.model, self.config, self.load_info = load_decoder(self.path)
        if dtype is not None:
            if dtype not in _DTYPES:
                raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
            self.model.set_dtype(_DTYPES[dtype])
        self.dtype = dtype
        self.tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(str(self.path))
        self.eos_token = eos_token
        self.eos_token_id: int | None = None
        if eos_token is not None:
            token_id = self.tokenizer.convert_tokens_to_ids(eos_token)
            if not isinstance(token_id, int) or token_id == self.tokenizer.unk_token_id:
                raise ValueError(f"eos_token {eos_token!r} is not a token of the tokenizer in {self.path}")
            self.eos_token_id = token_id
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else 0
        self.model_id = str(self.config.get("_name_or_path") or self.path.name)
        self.dimension = int(self.config["hidden_size"])

    @cached_property
    def weights_sha256(self) -> str:
        return weights_sha256(self.path)

    @cached_property
    def model_version(self) -> str:
        """Short hash of the weights and of the settings that change document vectors."""
        recipe = json.dumps(
            {
                "weights": self.weights_sha256,
                "pooling": POOLING,
                "max_tokens": self.max_tokens,
                "eos_token": self.eos_token,
                "dtype": self.dtype,
            },
            sort_keys=True,
        )
        return hashlib.sha256(recipe.encode()).hexdigest()[:16]

    def info(self) -> dict[str, str | int | bool]:
        return {
            "model_id": self.model_id,
            "model_version": self.model_version,
            "model_type": str(self.config.get("model_type", "")),
            "dimension": self.dimension,
            "pooling": POOLING,
            "normalised": True,
            "max_tokens": self.max_tokens,
            "batch_size": self.batch_size,
            "instruction": self.instruction,
            "eos_token": self.eos_token or "",
            "dtype": self.dtype or "checkpoint",
            "remapped_bare_keys": bool(self.load_info["remapped_bare_keys"]),
            "tied_missing_lm_head": bool(self.load_info["tied_missing_lm_head"]),
        }

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, special tokens included, cut to ``max_tokens`` (the end token kept)."""
        if not texts:
            return []
        encoded = self.tokenizer(
            list(texts), add_special_tokens=True, truncation=True, max_length=self.max_tokens
        )["input_ids"]
        out: list[list[int]] = []
        for index, ids in enumerate(encoded):
            ids = [int(i) for i in ids]
            if self.eos_token_id is not None and (not ids or ids[-1] != self.eos_token_id):
                ids = ids[: self.max_tokens - 1] + [self.eos_token_id]
            if not ids:
                raise ValueError(f"text {index} encodes to no tokens; drop empty texts before embedding")
            out.append(ids)
        return out

    def _embed_batch(self, batch: list[list[int]]) -> np.ndarray:
        lengths = [len(ids) for ids in batch]
        width = max(lengths)
        padded = np.full((len(batch), width), self.pad_id, dtype=np.int32)
        for row, ids in enumerate(batch):
            padded[row, : len(ids)] = ids
        hidden = self.model.model(mx.array(padded))  # (batch, width, hidden), final norm applied
        last = hidden[mx.arange(len(batch)), mx.array(lengths, dtype=mx.int32) - 1].astype(mx.float32)
        last = last / mx.maximum(mx.linalg.norm(last, axis=-1, keepdims=True), 1e-12)
        mx.eval(last)
        return np.array(last, dtype=np.float32)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed documents as they are: float32 array (len(texts), hidden), unit rows."""
        ids = self.tokenize(texts)
        out = np.zeros((len(ids), self.dimension), dtype=np.float32)
        # Longest first, so each batch pads little; rows go back to the callers' order.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            out[chunk] = self._embed_batch([ids[i] for i in chunk])
        return out

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed queries with the instruction prefix (none when ``instruction`` is empty)."""
        return self.encode([format_query(text, self.instruction) for text in texts])
