"""Query latency: our in-memory Retriever against LanceDB's native search on the same table.

A synthetic index (normalised clustered vectors, Zipf-distributed pseudo-word texts) is written
through ``VectorStore.apply``; then, in one process, per query and excluding query embedding:

- ours: exact numpy dot product (``vector``), bm25s (``bm25``), weighted fusion (``hybrid``, with
  each candidate's best sentence as a third list: every chunk has 3-11 sentences of 15 words
  with their own synthetic vectors, as ingest stores them; ``hybrid_without_sentences`` too);
- LanceDB native: flat vector search, FTS (its own BM25 index), and native hybrid (vector + FTS, RRF).

Queries alternate between the systems so that load from other processes hits both alike.
Run: ``python -m mdp.bench.query [--quick]``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mdp.records import text_document
from mdp.retrieval import RetrievalConfig, Retriever, clear_index_cache
from mdp.schemas import text_hash
from mdp.sentences import chunk_sentences
from mdp.store import CHUNKS, VectorStore

DIM = 384
CHUNKS_PER_DOC = 10
SENTENCE_WORDS = 15
SENTENCE_MODEL_KEY = "bench-synthetic@1"
SYLLABLES = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "de", "va", "zu", "fe", "go", "hi", "ju", "xo"]


def _vocabulary(size: int, rng: np.random.Generator) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        n = int(rng.integers(2, 5))
        words.add("".join(SYLLABLES[i] for i in rng.integers(0, len(SYLLABLES), n)))
    return sorted(words)


def synthetic_corpus(n_chunks: int, seed: int = 0) -> tuple[list[str], np.ndarray, list[str]]:
    """Texts, normalised float32 vectors, and the vocabulary (ranked by frequency)."""
    rng = np.random.default_rng(seed)
    vocab = _vocabulary(20_000, rng)
    ranks = np.arange(1, len(vocab) + 1)
    p = 1.0 / ranks**1.07
    p /= p.sum()
    lengths = rng.integers(40, 160, n_chunks)
    words = rng.choice(len(vocab), size=int(lengths.sum()), p=p)
    vocab_arr = np.array(vocab, dtype=object)
    texts = []
    start = 0
    for length in lengths.tolist():
        chunk_words = vocab_arr[words[start : start + length]].tolist()
        sentences = []  # sentences of 15 words, so that chunks carry sentence vectors like real ones
        while chunk_words:
            take, chunk_words = chunk_words[:SENTENCE_WORDS], chunk_words[SENTENCE_WORDS:]
            sentences.append(" ".join(take).capitalize() + ".")
        texts.append(" ".join(sentences))
        start += length
    centroids = rng.normal(size=(512, DIM)).astype(np.float32)
    vectors = centroids[rng.integers(0, 512, n_chunks)] + rng.normal(scale=0.8, size=(n_chunks, DIM)).astype(
        np.float32
    )
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return texts, vectors, vocab


def build_store(uri: str, texts: list[str], vectors: np.ndarray) -> VectorStore:
    store = VectorStore(uri)
    documents = []
    for start in range(0, len(texts), CHUNKS_PER_DOC):
        name = f"doc{start // CHUNKS_PER_DOC}.txt"
        documents.append(text_document("bench", name, texts[start : start + CHUNKS_PER_DOC]))
    model_id, model_version = SENTENCE_MODEL_KEY.split("@")
    by_hash = dict(zip((text_hash(t) for t in texts), vectors, strict=True))
    store.apply(
        "bench", documents, model_id=model_id, model_version=model_version, run_id="bench", vectors=by_hash
    )
    return store


def add_sentence_vectors(store: VectorStore, texts: list[str], vectors: np.ndarray, seed: int = 2) -> int:
    """Synthetic sentence vectors (near their chunk's) in the embedding cache, as ingest would store."""
    rng = np.random.default_rng(seed)
    hashes: list[str] = []
    rows: list[np.ndarray] = []
    for text, vector in zip(texts, vectors, strict=True):
        sentences = chunk_sentences(text)
        if not sentences:
            continue
        noisy = vector + rng.normal(scale=0.05, size=(len(sentences), DIM)).astype(np.float32)
        rows.append(noisy / np.linalg.norm(noisy, axis=1, keepdims=True))
        hashes += [text_hash(s) for s in sentences]
    return store.put_cached(SENTENCE_MODEL_KEY, hashes, np.concatenate(rows)) if rows else 0


def _percentiles(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 3),
        "p95_ms": round(float(np.percentile(values, 95)), 3),
    }


def run_query_bench(
    quick: bool = False, n_queries: int | None = None, native_queries: int | None = None
) -> dict[str, Any]:
    n_chunks = 20_000 if quick else 100_000
    n_queries = n_queries or (100 if quick else 200)
    native_queries = native_queries or (30 if quick else 40)
    rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    texts, vectors, vocab = synthetic_corpus(n_chunks)
    with tempfile.TemporaryDirectory(prefix="mdp-bench-query-") as tmp:
        store = build_store(str(Path(tmp) / "store"), texts, vectors)
        sentence_vectors = add_sentence_vectors(store, texts, vectors)
        build_s = time.perf_counter() - t0

        # queries: 2-6 mid-frequency words; vectors near a random chunk's
        mid = vocab[50:5000]
        queries = [" ".join(rng.choice(mid, size=int(rng.integers(2, 7)))) for _ in range(n_queries)]
        targets = rng.integers(0, n_chunks, n_queries)
        qv = vectors[targets] + rng.normal(scale=0.05, size=(n_queries, DIM)).astype(np.float32)
        qv /= np.linalg.norm(qv, axis=1, keepdims=True)

        clear_index_cache()
        t1 = time.perf_counter()
        retriever = Retriever(store, model_key=SENTENCE_MODEL_KEY)
        len(retriever)  # loads the index, sentence vectors included
        load_s = time.perf_counter() - t1
        chunks_only = Retriever(store, config=RetrievalConfig(sentence_share=0.0))
        len(chunks_only)
        # every sentence searched, whatever the index size: the reference for the bounded default
        exact_sentences = Retriever(
            store, model_key=SENTENCE_MODEL_KEY, config=RetrievalConfig(sentence_exact_limit=10**12)
        )

        table = store.lance_table(CHUNKS)
        t2 = time.perf_counter()
        table.create_fts_index("text", replace=True)
        fts_index_s = time.perf_counter() - t2

        names = ("vector", "bm25", "hybrid", "hybrid_without_sentences")
        ours: dict[str, list[float]] = {name: [] for name in names}
        searchers = {"hybrid_without_sentences": (chunks_only, "hybrid")}
        native: dict[str, list[float]] = {"vector": [], "fts": [], "hybrid": []}
        # warm-up
        for name in ours:
            searcher, strategy = searchers.get(name, (retriever, name))
            searcher.search_vectors([queries[0]], qv[:1], strategy, k=10)
        table.search(qv[0]).limit(10).to_arrow()
        table.search(queries[0], query_type="fts").limit(10).to_arrow()

        recall_hits = 0
        sentence_agreement = 0
        for i, (query, vector) in enumerate(zip(queries, qv, strict=True)):
            for name in ours:
                searcher, strategy = searchers.get(name, (retriever, name))
                start = time.perf_counter()
                hits = searcher.search_vectors([query], vector[None, :], strategy, k=10)[0]
                ours[name].append((time.perf_counter() - start) * 1000)
                if name == "vector" and i < native_queries:
                    ours_ids = {h.chunk_id for h in hits}
                if name == "hybrid" and i < native_queries:
                    exact = exact_sentences.search_vectors([query], vector[None, :], "hybrid", k=10)[0]
                    sentence_agreement += len({h.chunk_id for h in hits} & {h.chunk_id for h in exact})
            if i >= native_queries:
                continue
            start = time.perf_counter()
            native_rows = table.search(vector).select(["id"]).limit(10).to_arrow()
            native["vector"].append((time.perf_counter() - start) * 1000)
            recall_hits += len(ours_ids & set(native_rows["id"].to_pylist()))
            start = time.perf_counter()
            table.search(query, query_type="fts").select(["id"]).limit(10).to_arrow()
            native["fts"].append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            table.search(query_type="hybrid").vector(vector).text(query).select(["id"]).limit(10).to_arrow()
            native["hybrid"].append((time.perf_counter() - start) * 1000)

    result: dict[str, Any] = {
        "n_chunks": n_chunks,
        "sentence_vectors": sentence_vectors,
        "dim": DIM,
        "n_queries": n_queries,
        "native_queries": native_queries,
        "build_store_s": round(build_s, 2),
        "retriever_load_s": round(load_s, 2),
        "native_fts_index_s": round(fts_index_s, 2),
        "vector_top10_agreement_with_native": round(recall_hits / (10 * native_queries), 4),
        "sentence_search": "exact"
        if sentence_vectors <= RetrievalConfig().sentence_exact_limit
        else "candidates of the other lists",
        "hybrid_top10_agreement_with_exact_sentences": round(sentence_agreement / (10 * native_queries), 4),
    }
    for name, values in ours.items():
        result[f"ours_{name}"] = _percentiles(values)
    for name, values in native.items():
        result[f"lancedb_{name}"] = _percentiles(values)
    for ours_name, native_name in (("vector", "vector"), ("bm25", "fts"), ("hybrid", "hybrid")):
        result[f"speedup_{ours_name}_p50"] = round(
            result[f"lancedb_{native_name}"]["p50_ms"] / max(result[f"ours_{ours_name}"]["p50_ms"], 1e-9), 1
        )
    result["target_hybrid_p50_le_10ms"] = result["ours_hybrid"]["p50_ms"] <= 10.0
    return result


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    print(json.dumps(run_query_bench(quick="--quick" in args), indent=2))


if __name__ == "__main__":
    main()
