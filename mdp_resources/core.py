"""Resources over the plain-Python core.

``MdpSettings`` is the one configuration: the project's ``mdp.toml``, parsed once per process. The
encoder and store resources build their objects from it; their own fields are explicit overrides
(empty means "as mdp.toml says"), never a second set of defaults. Built objects are cached per
process, so every asset of a run, and every run in one process, shares one encoder and one store
handle.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from dagster import ConfigurableResource
from pydantic import Field

from mdp.config import MdpConfig, ModelConfig, StoreConfig, load_config

if TYPE_CHECKING:
    from mdp.encoder import SentenceEncoder
    from mdp.store import VectorStore

_LOCK = threading.Lock()
_ENCODERS: dict[str, SentenceEncoder] = {}


class MdpSettings(ConfigurableResource):
    """The project's mdp.toml: sources, parsing budgets, chunking, model, store, retrieval, eval."""

    config_file: str = Field(
        default="", description="Path to mdp.toml; empty uses MDP_CONFIG or the repo's file"
    )

    def load(self) -> MdpConfig:
        return load_config(self.config_file or None)


class MLXEncoderResource(ConfigurableResource):
    """The sentence encoder that ``[model]`` in mdp.toml names, run on MLX."""

    settings: MdpSettings
    model_path: str = Field(default="", description="Override of [model] path; empty: as mdp.toml says")
    batch_tokens: int = Field(default=0, ge=0, description="Override of [model] batch_tokens; 0: as mdp.toml")
    dtype: str = Field(default="", description="Override of [model] dtype; empty: as mdp.toml says")
    device: str = Field(default="", description="Override of [model] device; empty: as mdp.toml says")

    def model_settings(self) -> ModelConfig:
        """``[model]`` with this resource's overrides applied."""
        model = self.settings.load().model
        update: dict[str, object] = {}
        if self.model_path:
            update["path"] = Path(self.model_path).expanduser().resolve()
        if self.batch_tokens:
            update["batch_tokens"] = self.batch_tokens
        if self.dtype:
            update["dtype"] = self.dtype
        if self.device:
            update["device"] = self.device
        return ModelConfig.model_validate({**model.model_dump(), **update})

    def get_encoder(self) -> SentenceEncoder:
        from mdp.encoder import SentenceEncoder

        model = self.model_settings()
        key = model.model_dump_json()
        with _LOCK:
            encoder = _ENCODERS.get(key)
            if encoder is None:
                encoder = _ENCODERS[key] = SentenceEncoder.from_config(model)
            return encoder


class VectorStoreResource(ConfigurableResource):
    """The LanceDB store that ``[store]`` in mdp.toml names."""

    settings: MdpSettings
    uri: str = Field(default="", description="Override of [store] uri; empty: as mdp.toml says")

    def store_config(self) -> StoreConfig:
        store = self.settings.load().store
        return store.model_copy(update={"uri": self.uri}) if self.uri else store

    def open(self, read_only: bool = False) -> VectorStore:
        """The store handle of this process (one per store and mode, shared by every asset)."""
        from mdp.store import VectorStore

        return VectorStore.shared(self.store_config(), read_only=read_only)
