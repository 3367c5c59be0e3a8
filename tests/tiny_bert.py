"""Build a tiny random BERT in the sentence-transformers folder format, offline.

The folder has what mdp's encoder and sentence-transformers read: ``config.json``,
``model.safetensors`` (Hugging Face ``BertModel`` key names), the all-MiniLM-L6-v2 tokenizer files,
``modules.json``, ``1_Pooling/config.json``, ``sentence_bert_config.json`` and, when asked,
``config_sentence_transformers.json`` with prompts. Weights are random, so vectors carry no meaning:
tests check which model was used and how, never what it understood.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def build_tiny_bert(
    dest: Path,
    seed: int = 0,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    max_seq_length: int = 128,
    prompts: dict[str, str] | None = None,
    default_prompt_name: str | None = None,
) -> Path:
    from mdp.tokenizer import default_model_path

    minilm = default_model_path()
    dest.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (minilm / name).exists():
            shutil.copyfile(minilm / name, dest / name)
    vocab = json.loads((minilm / "config.json").read_text())["vocab_size"]
    intermediate = 2 * hidden
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": intermediate,
        "hidden_act": "gelu",
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "pad_token_id": 0,
    }
    (dest / "config.json").write_text(json.dumps(config, indent=2))
    rng = np.random.default_rng(seed)

    def normal(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    weights = {
        "embeddings.word_embeddings.weight": normal(vocab, hidden),
        "embeddings.position_embeddings.weight": normal(512, hidden),
        "embeddings.token_type_embeddings.weight": normal(2, hidden),
        "embeddings.LayerNorm.weight": np.ones(hidden, np.float32),
        "embeddings.LayerNorm.bias": np.zeros(hidden, np.float32),
    }
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for name, (rows, cols) in {
            "attention.self.query": (hidden, hidden),
            "attention.self.key": (hidden, hidden),
            "attention.self.value": (hidden, hidden),
            "attention.output.dense": (hidden, hidden),
            "intermediate.dense": (intermediate, hidden),
            "output.dense": (hidden, intermediate),
        }.items():
            weights[f"{p}{name}.weight"] = normal(rows, cols)
            weights[f"{p}{name}.bias"] = normal(rows)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            weights[f"{p}{norm}.weight"] = np.ones(hidden, np.float32)
            weights[f"{p}{norm}.bias"] = np.zeros(hidden, np.float32)
    save_file(weights, str(dest / "model.safetensors"))
    (dest / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {
                    "idx": 2,
                    "name": "2",
                    "path": "2_Normalize",
                    "type": "sentence_transformers.models.Normalize",
                },
            ],
            indent=2,
        )
    )
    (dest / "1_Pooling").mkdir(exist_ok=True)
    (dest / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": hidden, "pooling_mode_mean_tokens": True})
    )
    (dest / "2_Normalize").mkdir(exist_ok=True)
    (dest / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False})
    )
    if prompts is not None:
        (dest / "config_sentence_transformers.json").write_text(
            json.dumps(
                {
                    "prompts": prompts,
                    "default_prompt_name": default_prompt_name,
                    "similarity_fn_name": "cosine",
                }
            )
        )
    (dest / "README.md").write_text(
        f"# mdp-tests/tiny-bert-{hidden}d-seed{seed}\n\nRandom weights, for tests.\n"
    )
    return dest
