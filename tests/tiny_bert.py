"""Build a tiny random BERT in the sentence-transformers folder format, offline.

The folder has what mdp's encoder and sentence-transformers read: ``config.json``,
``model.safetensors`` (Hugging Face ``BertModel`` key names), the all-MiniLM-L6-v2 tokenizer files,
``modules.json``, ``1_Pooling/config.json``, ``sentence_bert_config.json`` and
``config_sentence_transformers.json`` (prompts). Weights are random, so vectors carry no meaning:
tests check which model was used and how the folder's settings are read, never what it understood.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def _bert_weights(rng: np.random.Generator, vocab: int, hidden: int, layers: int, inner: int) -> dict:
    def dense(rows: int, cols: int, prefix: str) -> dict[str, np.ndarray]:
        return {
            f"{prefix}.weight": rng.normal(0, 0.2, (rows, cols)).astype(np.float32),
            f"{prefix}.bias": rng.normal(0, 0.05, rows).astype(np.float32),
        }

    def norm(prefix: str) -> dict[str, np.ndarray]:
        return {
            f"{prefix}.weight": (1 + rng.normal(0, 0.1, hidden)).astype(np.float32),
            f"{prefix}.bias": rng.normal(0, 0.05, hidden).astype(np.float32),
        }

    weights = {
        "embeddings.word_embeddings.weight": rng.normal(0, 0.5, (vocab, hidden)).astype(np.float32),
        "embeddings.position_embeddings.weight": rng.normal(0, 0.1, (512, hidden)).astype(np.float32),
        "embeddings.token_type_embeddings.weight": rng.normal(0, 0.1, (2, hidden)).astype(np.float32),
        **norm("embeddings.LayerNorm"),
    }
    for i in range(layers):
        layer = f"encoder.layer.{i}"
        for part in ("query", "key", "value"):
            weights.update(dense(hidden, hidden, f"{layer}.attention.self.{part}"))
        weights.update(dense(hidden, hidden, f"{layer}.attention.output.dense"))
        weights.update(norm(f"{layer}.attention.output.LayerNorm"))
        weights.update(dense(inner, hidden, f"{layer}.intermediate.dense"))
        weights.update(dense(hidden, inner, f"{layer}.output.dense"))
        weights.update(norm(f"{layer}.output.LayerNorm"))
    return weights


def build_tiny_bert(
    dest: Path,
    prompts: dict[str, str] | None = None,
    default_prompt_name: str | None = None,
    include_prompt: bool = True,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    seed: int = 0,
    max_seq_length: int = 128,
) -> Path:
    """Write the folder and return it. ``prompts``/``default_prompt_name`` go into
    config_sentence_transformers.json; ``include_prompt`` into the mean Pooling's config."""
    from mdp.tokenizer import default_model_path

    minilm = default_model_path()
    dest.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copyfile(minilm / name, dest / name)
    vocab = json.loads((minilm / "config.json").read_text())["vocab_size"]
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": 2 * hidden,
        "hidden_act": "gelu",
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "pad_token_id": 0,
    }
    (dest / "config.json").write_text(json.dumps(config, indent=2))
    weights = _bert_weights(np.random.default_rng(seed), vocab, hidden, layers, 2 * hidden)
    save_file(weights, str(dest / "model.safetensors"))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (dest / "modules.json").write_text(json.dumps(modules, indent=2))
    (dest / "1_Pooling").mkdir(exist_ok=True)
    pooling: dict[str, Any] = {"word_embedding_dimension": hidden, "pooling_mode_mean_tokens": True}
    pooling["include_prompt"] = include_prompt
    (dest / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2))
    (dest / "2_Normalize").mkdir(exist_ok=True)
    (dest / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False})
    )
    st_config: dict[str, Any] = {"prompts": prompts or {}, "default_prompt_name": default_prompt_name}
    (dest / "config_sentence_transformers.json").write_text(json.dumps(st_config, indent=2))
    (dest / "README.md").write_text(
        f"# mdp-tests/tiny-bert-{hidden}d-seed{seed}\n\nRandom weights, for tests.\n"
    )
    return dest
