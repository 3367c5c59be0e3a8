"""Dagster resources for the mlx-lm models: decoder embeddings and query generation.

Loading weights is slow, so loaded models live in a module-level cache keyed by their
settings: every resource instance (and every run in the same process) with the same
config shares one model.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from dagster import ConfigurableResource
from pydantic import Field

from mdp.decoder import DecoderEmbedder
from mdp.querygen import GeneratedQuery, QueryGenerator

_LOCK = threading.Lock()
_EMBEDDERS: dict[tuple[str, str, int], DecoderEmbedder] = {}
_GENERATORS: dict[tuple[str, int, int, float, int], QueryGenerator] = {}


class QueryGenerationDisabled(RuntimeError):
    """Raised when a query generator is asked for but no model path is configured."""


class DecoderEmbedderResource(ConfigurableResource):
    """A decoder-only embedding model (e.g. Qwen3-Embedding) in a local mlx-lm folder."""

    model_path: str = Field(description="Local folder with config.json, model*.safetensors, tokenizer.json")
    instruction: str = Field(
        default="",
        description="Task instruction prefixed to queries (Qwen3-Embedding format); empty = none",
    )
    max_tokens: int = Field(default=512, ge=1, description="Tokens per text, the end token included")

    def get_embedder(self) -> DecoderEmbedder:
        key = (self.model_path, self.instruction, self.max_tokens)
        with _LOCK:
            embedder = _EMBEDDERS.get(key)
            if embedder is None:
                embedder = DecoderEmbedder(
                    self.model_path, instruction=self.instruction, max_tokens=self.max_tokens
                )
                _EMBEDDERS[key] = embedder
            return embedder


class QueryGeneratorResource(ConfigurableResource):
    """Local question generation for retrieval evaluation; disabled until ``model_path`` is set."""

    model_path: str = Field(
        default="",
        description="Local mlx-lm instruct model folder (e.g. a Qwen3 from mlx-community); empty = disabled",
    )
    questions_per_chunk: int = Field(default=2, ge=1)
    sample_chunks: int = Field(default=50, ge=0, description="Chunks sampled per run; 0 = every chunk")
    max_tokens: int = Field(default=64, ge=1, description="Generated tokens per chunk")
    temperature: float = Field(default=0.0, ge=0.0)
    seed: int = 0

    @property
    def enabled(self) -> bool:
        return bool(self.model_path.strip())

    def get_generator(self) -> QueryGenerator:
        if not self.enabled:
            raise QueryGenerationDisabled(
                "query generation is disabled: QueryGeneratorResource.model_path is empty. Set `model_path` "
                "in the resource config to a local mlx-lm instruct model folder (downloaded beforehand, "
                "e.g. mlx-community/Qwen3-1.7B-4bit) to generate evaluation queries; see docs/mlx-lm.md"
            )
        key = (self.model_path, self.questions_per_chunk, self.max_tokens, self.temperature, self.seed)
        with _LOCK:
            generator = _GENERATORS.get(key)
            if generator is None:
                generator = QueryGenerator(
                    self.model_path,
                    questions_per_chunk=self.questions_per_chunk,
                    max_tokens=self.max_tokens,
                    temperature=self.temperature,
                    seed=self.seed,
                )
                _GENERATORS[key] = generator
            return generator

    def generate(self, chunks: Sequence[tuple[str, str]]) -> list[GeneratedQuery]:
        """Questions for ``sample_chunks`` of ``chunks`` (chunk_id, text) pairs."""
        return self.get_generator().generate(chunks, sample=self.sample_chunks or None)
