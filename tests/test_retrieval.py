"""Retriever on a real store: the three strategies, fusion, deletes, versions, document ranking."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from mdp.records import ChunkedDocument, text_document
from mdp.retrieval import RetrievalConfig, Retriever, rrf_fuse, weighted_fuse
from mdp.store import ApplyResult, VectorStore

DIM = 256
STOP = {"the", "and", "why", "are", "that", "they", "from", "has", "into", "most", "around", "for"}
SOURCE = "kb"

CORPUS = {
    "cats.md": ["Cats are small domesticated felines that purr and hunt mice.", "A kitten grows into a cat."],
    "dogs.md": ["Dogs are loyal canines; they bark and fetch sticks.", "Puppies need training and walks."],
    "rockets.md": [
        "Rockets burn propellant to reach orbit around the Earth.",
        "The launch vehicle has two stages.",
    ],
    "bread.md": ["Bread is baked from flour, water, yeast and salt.", "Sourdough uses a wild yeast starter."],
    "ocean.md": ["The ocean covers most of the planet; whales swim in deep water."],
}


class HashEncoder:
    """A deterministic bag-of-words encoder: content words hash into buckets, the vector is normalised.

    Texts sharing words get similar vectors, which is all these tests need from an encoder.
    """

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z]{3,}", text.lower()):
                if word in STOP:
                    continue
                word = word.removesuffix("s")
                bucket = int(hashlib.md5(word.encode()).hexdigest(), 16) % DIM
                out[row, bucket] += 1.0
            norm = np.linalg.norm(out[row])
            out[row] = out[row] / norm if norm else 1.0 / np.sqrt(DIM)
        return out


ENCODER = HashEncoder()


def doc_entry(name: str, parts: list[str]) -> ChunkedDocument:
    return text_document(SOURCE, name, parts, format="markdown")


def index(store: VectorStore, documents: list[ChunkedDocument], deleted: Sequence[str] = ()) -> ApplyResult:
    """Apply ``documents`` (and ``deleted``) with the HashEncoder's vectors of their chunks."""
    texts = {c.text_hash: c.text for d in documents for c in d.chunks}
    vectors = dict(zip(texts, ENCODER.encode(list(texts.values())), strict=True))
    return store.apply(SOURCE, documents, [], deleted, model_id="hash", model_version="1", vectors=vectors)


@pytest.fixture
def store(tmp_path: Path) -> VectorStore:
    s = VectorStore(str(tmp_path / "store"))
    index(s, [doc_entry(n, p) for n, p in CORPUS.items()])
    return s


@pytest.mark.parametrize("strategy", ["vector", "bm25", "hybrid", "hybrid_rrf", "hybrid_weighted"])
def test_each_strategy_finds_the_obvious_document(store: VectorStore, strategy: str) -> None:
    retriever = Retriever(store, ENCODER)
    hits = retriever.search("why do cats purr", strategy, k=3)
    assert hits and hits[0].external_id == "cats.md"
    assert hits[0].chunk_id == "kb:cats.md::0"
    assert hits[0].path == "/kb/cats.md" and "purr" in hits[0].text
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    batch = retriever.search_batch(["sourdough yeast starter", "rocket propellant orbit"], strategy, k=2)
    assert [b[0].external_id for b in batch] == ["bread.md", "rockets.md"]


def test_bm25_stems_and_drops_stop_words(store: VectorStore) -> None:
    retriever = Retriever(store)  # bm25 needs no encoder
    assert retriever.search("baking", "bm25", k=1)[0].external_id == "bread.md"  # baked ~ baking
    assert retriever.search("the and of", "bm25", k=5) == []  # only stop words: no match at all
    with pytest.raises(ValueError, match="need an encoder"):
        retriever.search("cats", "vector")
    with pytest.raises(ValueError, match="unknown strategy"):
        retriever.search("cats", "bogus")


def test_delete_removes_from_every_strategy(store: VectorStore) -> None:
    retriever = Retriever(store, ENCODER, config=RetrievalConfig(refresh_interval_s=0))
    assert retriever.search("whales deep ocean", "bm25", k=1)[0].external_id == "ocean.md"
    old_version = store.version()
    index(store, [], [f"{SOURCE}:ocean.md"])
    for strategy in ("vector", "bm25", "hybrid", "hybrid_rrf"):
        hits = retriever.search("whales deep ocean", strategy, k=10)
        assert all(h.external_id != "ocean.md" for h in hits), strategy
    # a retriever pinned to the old version still sees it
    pinned = Retriever(store, ENCODER, version=old_version)
    assert pinned.search("whales deep ocean", "bm25", k=1)[0].external_id == "ocean.md"
    assert pinned.version == old_version and retriever.version == store.version()


def test_changed_document_is_searched_by_its_new_text(store: VectorStore) -> None:
    retriever = Retriever(store, ENCODER, config=RetrievalConfig(refresh_interval_s=0))
    index(store, [doc_entry("dogs.md", ["Wolves howl at the moon."])])
    assert retriever.search("wolves howl", "hybrid", k=1)[0].external_id == "dogs.md"
    assert retriever.search("puppies training walks", "bm25", k=5) == []
    assert len(retriever) == 8


def test_rank_documents_aggregates_chunks_by_max(store: VectorStore) -> None:
    retriever = Retriever(store, ENCODER)
    run = retriever.rank_documents({"q1": "kitten cat", "q2": "launch vehicle stages"}, "hybrid", k=3)
    assert next(iter(run["q1"])) == "cats.md" and next(iter(run["q2"])) == "rockets.md"
    assert all(len(docs) <= 3 for docs in run.values())
    chunk_hits = retriever.search("kitten cat", "hybrid", k=10)
    best_cat_chunk = max(h.score for h in chunk_hits if h.external_id == "cats.md")
    assert run["q1"]["cats.md"] == pytest.approx(best_cat_chunk)


def test_fusion_functions() -> None:
    a = (np.array([0, 1, 2]), np.array([0.9, 0.5, 0.1], dtype=np.float32))
    b = (np.array([2, 3]), np.array([10.0, 5.0], dtype=np.float32))
    rrf = rrf_fuse([a, b], rrf_k=60)
    assert rrf[2] == pytest.approx(1 / 63 + 1 / 61)
    assert rrf[0] == pytest.approx(1 / 61)
    w = weighted_fuse([a, b], [0.5, 0.5])
    assert w[0] == pytest.approx(0.5) and w[2] == pytest.approx(0.5) and w[3] == pytest.approx(0.0)
    assert w[1] == pytest.approx(0.25)


def test_empty_store_returns_nothing(tmp_path: Path) -> None:
    retriever = Retriever(VectorStore(str(tmp_path / "empty")), ENCODER)
    assert retriever.search("anything", "hybrid") == []
    assert retriever.search("anything", "bm25") == []
    assert retriever.rank_documents({"q": "anything"}, "vector") == {"q": {}}
