"""embeddings: chunk vectors from the MLX encoder, through the embedding cache.

Vectors are written to the store's embedding cache once; the index stage and the checks read them
from there (``EmbeddedBatch.vectors`` keeps this run's in memory for the in-process path).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mdp.sentences import sentences_by_hash
from mdp.stages.batches import ChunkedBatch
from mdp.stages.validate import ValidatedBatch

if TYPE_CHECKING:  # heavy imports stay lazy: parse workers must not load MLX or LanceDB
    from mdp.encoder import SentenceEncoder
    from mdp.store import VectorStore


@dataclass
class EmbeddedBatch(ChunkedBatch):
    """A validated batch whose chunk texts all have a vector in the embedding cache."""

    model_id: str = ""
    model_version: str = ""
    dim: int = 0
    embedded: int = 0  # chunk vectors computed in this run
    cache_hits: int = 0
    seconds: float = 0.0
    encoder_max_tokens: int = 0  # the encoder truncates beyond this; chunks over it would lose text
    truncation_expected: bool = False  # whole documents as passages (the BEIR protocol)
    sentences: int = 0  # distinct sentences with their own vector (beside the chunks')
    sentences_embedded: int = 0  # of which computed in this run
    vectors: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # chunk text hash -> vector

    @property
    def model_key(self) -> str:
        return model_key(self.model_id, self.model_version)


def model_key(model_id: str, model_version: str) -> str:
    """The embedding cache's key for a model's vectors."""
    return f"{model_id}@{model_version}"


def embed_through_cache(
    store: VectorStore, encoder: SentenceEncoder, texts: dict[str, str], progress: bool = False
) -> tuple[dict[str, np.ndarray], set[str]]:
    """Vectors for ``{text hash: text}``: cached ones reused, the rest encoded and cached.
    Returns the vectors and the hashes that had to be encoded."""
    key = model_key(encoder.model_id, encoder.model_version)
    cached = store.get_cached(key, sorted(texts))
    missing = {h: text for h, text in texts.items() if h not in cached}
    if missing:
        vectors = encoder.encode(list(missing.values()), progress=progress)
        fresh = dict(zip(missing.keys(), vectors, strict=True))
        store.put_cached(key, list(fresh.keys()), np.stack(list(fresh.values())))
        cached.update(fresh)
    return cached, set(missing)


def backfill_sentence_vectors(store: VectorStore, encoder: SentenceEncoder, progress: bool = False) -> int:
    """Embed the sentences of the latest version's chunks that have no vector yet (an index built
    before sentence vectors existed, or with them off); returns how many were embedded."""
    texts = sentences_by_hash(store.chunks_frame(columns=["text"])["text"].tolist())
    return len(embed_through_cache(store, encoder, texts, progress)[1])


def embed_stage(
    batch: ValidatedBatch,
    encoder: SentenceEncoder,
    store: VectorStore,
    progress: bool = False,
    sentence_vectors: bool = True,
) -> EmbeddedBatch:
    """Embed chunk texts (and, with ``sentence_vectors``, the sentences of multi-sentence chunks),
    reusing cached vectors for text the model has embedded before. Sentence vectors live only in
    the embedding cache, where search finds them by text (mdp/sentences.py)."""
    chunks = [chunk for d in batch.documents for chunk in d.chunks]
    hashes = {chunk.text_hash for chunk in chunks}
    texts = {chunk.text_hash: chunk.text for chunk in chunks}
    if sentence_vectors:
        texts = {**sentences_by_hash(chunk.text for chunk in chunks), **texts}
    started = time.perf_counter()
    cached, missing = embed_through_cache(store, encoder, texts, progress)
    return EmbeddedBatch(
        source=batch.source,
        documents=batch.documents,
        quarantine=batch.quarantine,
        model_id=encoder.model_id,
        model_version=encoder.model_version,
        dim=encoder.dim,
        embedded=len(missing & hashes),
        cache_hits=sum(1 for c in chunks if c.text_hash not in missing),
        seconds=time.perf_counter() - started,
        encoder_max_tokens=encoder.max_tokens,
        truncation_expected=batch.whole_documents,
        sentences=len(texts) - len(hashes),
        sentences_embedded=len(missing - hashes),
        vectors={h: cached[h] for h in hashes},
    )


def batch_vectors(store: VectorStore, batch: EmbeddedBatch) -> dict[str, np.ndarray]:
    """The batch's chunk vectors: this run's in memory, else read back from the embedding cache."""
    if batch.vectors or not batch.documents:
        return batch.vectors
    return store.get_cached(batch.model_key, {c.text_hash for d in batch.documents for c in d.chunks})
