"""Retrieval over one version of the store: exact vectors, BM25 and their fusion.

The chunks of a store version are loaded once into memory: a float32 matrix of the (normalised)
vectors, searched by exact dot product, and a bm25s index over the chunk texts (English Snowball
stemming from PyStemmer, bm25s' English stop words). Both are cached per (store uri, version, BM25
settings), so every Retriever on the same version shares them; a Retriever that follows the latest
version reloads when the store's version changes.

Hybrid search fuses the two candidate lists (``candidate_depth`` each):

- ``rrf``: reciprocal rank fusion, ``sum 1 / (rrf_k + rank)``.
- ``weighted``: each list min-max normalised over its candidates, then
  ``vector_weight * v + bm25_weight * b`` (a candidate missing from a list scores 0 there).

Defaults and how they were chosen (label-free, not tuned on SciFact's test queries): docs/retrieval.md.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import bm25s
import numpy as np
import Stemmer
from bm25s.stopwords import STOPWORDS_EN

from mdp.config import MdpConfig, RetrievalConfig
from mdp.schemas import text_hash
from mdp.sentences import chunk_sentences
from mdp.store import VectorStore

Strategy = Literal["vector", "bm25", "hybrid", "hybrid_rrf", "hybrid_weighted"]
STRATEGIES: tuple[str, ...] = ("vector", "bm25", "hybrid", "hybrid_rrf", "hybrid_weighted")
_TOKEN = re.compile(r"(?u)\b\w\w+\b")


class Encoder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray: ...


def retrieval_config(config: MdpConfig) -> RetrievalConfig:
    """``[retrieval]`` for an index built with ``config``: the best-sentence list only where ingest
    embeds sentences (a cache may hold sentence vectors from other settings)."""
    if config.embeds_sentences():
        return config.retrieval
    return config.retrieval.model_copy(update={"sentence_share": 0.0})


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    document_id: str
    external_id: str
    path: str
    text: str
    score: float


class Analyzer:
    """Lower-case word tokens (2+ characters), stop words removed, Snowball-stemmed."""

    def __init__(self, stemmer: str | None = "english", stopwords: bool = True):
        self._stemmer = Stemmer.Stemmer(stemmer) if stemmer else None
        self._stop = frozenset(STOPWORDS_EN) if stopwords else frozenset()

    def __call__(self, text: str) -> list[str]:
        tokens = [t for t in _TOKEN.findall(text.lower()) if t not in self._stop]
        return self._stemmer.stemWords(tokens) if self._stemmer is not None else tokens

    def to_ids(self, texts: Sequence[str], vocab: dict[str, int]) -> list[list[int]]:
        """Token ids of many texts, growing ``vocab``; each distinct word is stemmed once."""
        seen: dict[str, int] = {}  # word -> term id, -1 for a stop word
        out = []
        for text in texts:
            row = []
            for word in _TOKEN.findall(text.lower()):
                tid = seen.get(word)
                if tid is None:
                    if word in self._stop:
                        tid = -1
                    else:
                        term = self._stemmer.stemWord(word) if self._stemmer is not None else word
                        tid = vocab.setdefault(term, len(vocab))
                    seen[word] = tid
                if tid >= 0:
                    row.append(tid)
            out.append(row)
        return out


class _Index:
    """One store version in memory."""

    def __init__(
        self, store: VectorStore, version: int, config: RetrievalConfig, model_key: str | None = None
    ):
        columns = ["id", "document_id", "external_id", "path", "text", "vector"]
        data = store.chunks_arrow(version, columns) if version else None
        self.version = version
        self.analyzer = Analyzer(config.stemmer, config.stopwords)
        if data is None or data.num_rows == 0:
            self.ids: list[str] = []
            self.document_ids: list[str] = []
            self.external_ids: list[str] = []
            self.paths: list[str] = []
            self.texts: list[str] = []
            self.matrix = np.zeros((0, 1), dtype=np.float32)
            self.bm25: bm25s.BM25 | None = None
            self.vocab: dict[str, int] = {}
            self._no_sentences()
            return
        self.ids = data["id"].to_pylist()
        self.document_ids = data["document_id"].to_pylist()
        self.external_ids = data["external_id"].to_pylist()
        self.paths = data["path"].to_pylist()
        self.texts = data["text"].to_pylist()
        vectors = data["vector"].combine_chunks()
        dim = vectors.type.list_size
        flat = vectors.flatten().to_numpy(zero_copy_only=False)
        self.matrix = np.ascontiguousarray(flat.reshape(len(self.ids), dim), dtype=np.float32)
        self.vocab = {}
        corpus_ids = self.analyzer.to_ids(self.texts, self.vocab)
        self.bm25 = bm25s.BM25(k1=config.bm25_k1, b=config.bm25_b, method=config.bm25_method)
        if not self.vocab:
            self.vocab[""] = 0
        self.bm25.index(bm25s.tokenization.Tokenized(ids=corpus_ids, vocab=self.vocab), show_progress=False)
        if model_key and config.sentence_share > 0:
            self._load_sentences(store, model_key)
        else:
            self._no_sentences()

    def _no_sentences(self) -> None:
        self.sentence_matrix = np.zeros((0, max(1, self.matrix.shape[1])), dtype=np.float32)
        self.sentence_offsets = np.zeros(len(self.ids) + 1, dtype=np.int64)
        self.sentence_rows = np.zeros(0, dtype=np.int64)

    def all_best_sentence_scores(self, query: np.ndarray, chunk_scores: np.ndarray) -> np.ndarray:
        """Every chunk's best sentence score (exact); chunks without sentences keep their own score."""
        out = chunk_scores.astype(np.float32, copy=True)
        if len(self.sentence_rows):
            scores = _matvec(self.sentence_matrix, query)
            out[self.sentence_rows] = np.maximum.reduceat(scores, self.sentence_offsets[self.sentence_rows])
        return out

    def _load_sentences(self, store: VectorStore, model_key: str) -> None:
        """Each chunk's sentence vectors from the embedding cache (CSR layout: chunk i owns rows
        ``sentence_offsets[i]:sentence_offsets[i+1]``); a chunk without any keeps its own vector."""
        rows: list[np.ndarray] = []
        offsets = np.zeros(len(self.ids) + 1, dtype=np.int64)
        wanted = [[text_hash(s) for s in chunk_sentences(text)] for text in self.texts]
        cached = store.get_cached(model_key, {h for hashes in wanted for h in hashes})
        for i, hashes in enumerate(wanted):
            found = [cached[h] for h in hashes if h in cached]
            rows += found
            offsets[i + 1] = offsets[i] + len(found)
        self.sentence_offsets = offsets
        self.sentence_rows = np.flatnonzero(offsets[1:] > offsets[:-1])  # chunks that have sentences
        dim = self.matrix.shape[1]
        self.sentence_matrix = (
            np.ascontiguousarray(np.stack(rows), dtype=np.float32) if rows else np.zeros((0, dim), np.float32)
        )

    @property
    def has_sentences(self) -> bool:
        return len(self.sentence_matrix) > 0

    def best_sentence_scores(
        self, rows: np.ndarray, query: np.ndarray, chunk_scores: np.ndarray
    ) -> np.ndarray:
        """For the chunks ``rows``: the best dot product of ``query`` with one of their sentences,
        or the chunk's own score when it has no sentence vectors."""
        starts, ends = self.sentence_offsets[rows], self.sentence_offsets[rows + 1]
        out = chunk_scores[rows].astype(np.float32, copy=True)
        has = ends > starts
        if not has.any():
            return out
        lengths = (ends - starts)[has]
        bounds = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        # the sentence rows of every candidate, one run after another
        picked = np.repeat(starts[has] - bounds, lengths) + np.arange(int(lengths.sum()))
        scores = _matvec(self.sentence_matrix[picked], query)
        out[has] = np.maximum.reduceat(scores, bounds)
        return out

    def __len__(self) -> int:
        return len(self.ids)

    def query_token_ids(self, text: str) -> list[int]:
        return [self.vocab[t] for t in self.analyzer(text) if t in self.vocab]

    def bm25_scores(self, text: str) -> np.ndarray:
        """BM25 of every chunk for ``text`` (a query term that occurs twice counts twice)."""
        ids = self.query_token_ids(text)
        if self.bm25 is None or not ids:
            return np.zeros(len(self.ids), dtype=np.float32)
        return np.asarray(self.bm25.get_scores(ids), dtype=np.float32)


def _top(scores: np.ndarray, k: int, positive_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the k best, best first (ties broken by row order)."""
    n = scores.shape[0]
    if n == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    if positive_only:  # BM25 rows are mostly 0: select among the matching rows only
        rows = np.flatnonzero(scores > 0)
        best, values = _top(scores[rows], k)
        return rows[best], values
    part = np.argpartition(scores, n - k)[n - k :] if k < n else np.arange(n)
    order = part[np.lexsort((part, -scores[part]))]
    return order, scores[order]


def rrf_fuse(lists: Sequence[tuple[np.ndarray, np.ndarray]], rrf_k: float) -> dict[int, float]:
    fused: dict[int, float] = {}
    for indices, _ in lists:
        for rank, idx in enumerate(indices.tolist()):
            fused[idx] = fused.get(idx, 0.0) + 1.0 / (rrf_k + rank + 1)
    return fused


_SPLIT_ROWS = 32_768  # a matrix-vector product over more rows than this is split across threads
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:  # concurrent first queries must not each start a pool
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mdp-matvec")
        return _POOL


def _matvec(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """``matrix @ vector`` with numpy's own SIMD loop (einsum), which on a busy machine is steadier
    than a multi-threaded BLAS gemv (7 ms vs 0.3 ms at 5k x 384 under load). A large matrix is cut
    into one block of rows per core, computed in threads (einsum releases the GIL): the product
    is bound by memory bandwidth, which one core does not saturate (1.5-1.7x at 100k x 384)."""
    rows = matrix.shape[0]
    workers = min(os.cpu_count() or 1, 4)
    if rows < _SPLIT_ROWS or workers < 2:
        return np.einsum("ij,j->i", matrix, vector)
    out = np.empty(rows, dtype=np.result_type(matrix.dtype, vector.dtype))
    bounds = np.linspace(0, rows, workers + 1, dtype=np.int64)

    def block(i: int) -> None:
        lo, hi = bounds[i], bounds[i + 1]
        np.einsum("ij,j->i", matrix[lo:hi], vector, out=out[lo:hi])

    list(_pool(workers).map(block, range(workers)))
    return out


def _dot(matrix: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """(queries, rows) dot products: one query by :func:`_matvec`, several by a BLAS matrix product."""
    if len(vectors) == 1:
        return _matvec(matrix, vectors[0])[None, :]
    return vectors @ matrix.T


def weighted_fuse(
    lists: Sequence[tuple[np.ndarray, np.ndarray]], weights: Sequence[float]
) -> dict[int, float]:
    """Min-max normalise each list over its candidates, then a weighted sum (a candidate missing from a
    list scores 0 there)."""
    fused: dict[int, float] = {i: 0.0 for indices, _ in lists for i in indices.tolist()}
    for (indices, scores), weight in zip(lists, weights, strict=True):
        if len(indices) == 0 or weight == 0:
            continue
        lo, hi = float(scores.min()), float(scores.max())
        norm = (scores - lo) / (hi - lo if hi > lo else 1.0)
        for idx, value in zip(indices.tolist(), norm.tolist(), strict=True):
            fused[idx] += weight * value
    return fused


def _check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")


_CACHE: OrderedDict[tuple[Any, ...], _Index] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 2


def _load_index(
    store: VectorStore, version: int, config: RetrievalConfig, model_key: str | None = None
) -> _Index:
    model_key = model_key if config.sentence_share > 0 else None
    key = (
        store.uri,
        version,
        model_key,
        config.bm25_k1,
        config.bm25_b,
        config.bm25_method,
        config.stemmer,
        config.stopwords,
    )
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    index = _Index(store, version, config, model_key)
    with _CACHE_LOCK:
        _CACHE[key] = index
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return index


def clear_index_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


class Retriever:
    """Search one version of a store (``version=None``: the latest, followed as it changes)."""

    def __init__(
        self,
        store: VectorStore,
        encoder: Encoder | None = None,
        version: int | None = None,
        config: RetrievalConfig | None = None,
        model_key: str | None = None,
    ):
        """``model_key`` names the vectors' model in the embedding cache (where sentence vectors
        are found); by default it comes from the encoder."""
        self.store = store
        self.encoder = encoder
        self.model_key = model_key
        self.pinned_version = version
        self.config = config or RetrievalConfig()
        self._index: _Index | None = None
        self._checked = 0.0

    # ------------------------------------------------------------------ index
    @property
    def version(self) -> int:
        return self._current().version

    def refresh(self) -> int:
        """Reload if the store moved on (only when following the latest version); returns the version."""
        self._checked = 0.0
        return self._current().version

    def _current(self) -> _Index:
        now = time.monotonic()
        if self._index is not None and (
            self.pinned_version is not None or now - self._checked < self.config.refresh_interval_s
        ):
            return self._index
        version = self.pinned_version if self.pinned_version is not None else self.store.version()
        self._checked = now
        if self._index is None or self._index.version != version:
            self._index = _load_index(self.store, version, self.config, self._model_key())
        return self._index

    def __len__(self) -> int:
        return len(self._current())

    def _model_key(self) -> str | None:
        """The embedding-cache key of the encoder's vectors, where sentence vectors are found."""
        if self.model_key:
            return self.model_key
        model_id = getattr(self.encoder, "model_id", None)
        model_version = getattr(self.encoder, "model_version", None)
        return f"{model_id}@{model_version}" if model_id and model_version else None

    # ------------------------------------------------------------------ search
    def encode_queries(self, queries: list[str]) -> np.ndarray:
        """Query vectors; an encoder with ``encode_queries`` (instruction prefixes) is asked for that."""
        if self.encoder is None:
            raise ValueError("vector and hybrid search need an encoder: Retriever(store, encoder=...)")
        encode = getattr(self.encoder, "encode_queries", None) or self.encoder.encode
        vectors = np.asarray(encode(queries), dtype=np.float32)
        return vectors.reshape(len(queries), -1)

    def _vector_scores(self, index: _Index, vectors: np.ndarray) -> np.ndarray:
        """Dot products of every query with every chunk, shape (queries, chunks)."""
        if len(index) == 0:
            return np.zeros((len(vectors), 0), dtype=np.float32)
        if vectors.shape[1] != index.matrix.shape[1]:
            raise ValueError(
                f"query vectors have dimension {vectors.shape[1]} but the index holds "
                f"{index.matrix.shape[1]}: use the model that built the store"
            )
        return _dot(index.matrix, vectors)

    def _ranked(
        self, index: _Index, strategy: str, queries: list[str], vectors: np.ndarray | None, k: int
    ) -> list[list[tuple[int, float]]]:
        cfg = self.config
        _check_strategy(strategy)
        if strategy == "bm25":
            out = []
            for q in queries:
                idx, sc = _top(index.bm25_scores(q), k, positive_only=True)
                out.append(list(zip(idx.tolist(), sc.tolist(), strict=True)))
            return out
        if vectors is None:
            raise ValueError(f"strategy {strategy!r} needs query vectors")
        vector_scores = self._vector_scores(index, vectors)
        if strategy == "vector":
            return [list(zip(*(a.tolist() for a in _top(row, k)), strict=True)) for row in vector_scores]
        depth = max(cfg.candidate_depth, k)
        method = cfg.fusion if strategy == "hybrid" else strategy.removeprefix("hybrid_")
        out = []
        share = cfg.sentence_share if index.has_sentences else 0.0
        for q, vec_row, q_vec in zip(queries, vector_scores, vectors, strict=True):
            bm_row = index.bm25_scores(q)
            vec_list = _top(vec_row, depth)
            bm_list = _top(bm_row, depth, positive_only=True)
            lists = [vec_list, bm_list]
            weights = [cfg.vector_weight, cfg.bm25_weight]
            if share:
                if len(index.sentence_matrix) <= cfg.sentence_exact_limit:
                    # each chunk's best sentence, searched exactly like the other lists
                    sentence_row = index.all_best_sentence_scores(q_vec, vec_row)
                    lists.append(_top(sentence_row, depth))
                else:  # large index: score the best sentence of the other lists' candidates only
                    candidates = np.union1d(vec_list[0], bm_list[0])
                    scores = index.best_sentence_scores(candidates, q_vec, vec_row)
                    order = np.lexsort((candidates, -scores))  # best first, like _top
                    lists.append((candidates[order], scores[order]))
                weights = [cfg.vector_weight * (1 - share), cfg.bm25_weight, cfg.vector_weight * share]
            fused = rrf_fuse(lists, cfg.rrf_k) if method == "rrf" else weighted_fuse(lists, weights)
            out.append(sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k])
        return out

    def _hits(self, index: _Index, ranked: list[tuple[int, float]]) -> list[Hit]:
        return [
            Hit(
                chunk_id=index.ids[i],
                document_id=index.document_ids[i],
                external_id=index.external_ids[i],
                path=index.paths[i],
                text=index.texts[i],
                score=float(s),
            )
            for i, s in ranked
        ]

    def search(self, query: str, strategy: Strategy | str = "hybrid", k: int = 10) -> list[Hit]:
        return self.search_batch([query], strategy, k)[0]

    def search_batch(
        self, queries: Sequence[str], strategy: Strategy | str = "hybrid", k: int = 10
    ) -> list[list[Hit]]:
        queries = list(queries)
        _check_strategy(strategy)
        if k < 1:
            raise ValueError(f"k must be >= 1 (how many chunks to return), got {k}")
        if not queries:
            return []
        index = self._current()
        vectors = self.encode_queries(queries) if strategy != "bm25" else None
        return [self._hits(index, r) for r in self._ranked(index, strategy, queries, vectors, k)]

    def search_vectors(
        self, queries: Sequence[str], vectors: np.ndarray, strategy: Strategy | str = "hybrid", k: int = 10
    ) -> list[list[Hit]]:
        """Like search_batch with the query vectors already computed (benchmarks, cached encoders)."""
        index = self._current()
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(queries), -1)
        return [self._hits(index, r) for r in self._ranked(index, strategy, list(queries), vectors, k)]

    def rank_documents(
        self,
        queries: Mapping[str, str],
        strategy: Strategy | str = "hybrid",
        k: int = 100,
        vectors: np.ndarray | None = None,
    ) -> dict[str, dict[str, float]]:
        """``{qid: {external_id: score}}``: chunk hits aggregated to documents by their best chunk."""
        _check_strategy(strategy)
        qids = list(queries)
        texts = [queries[q] for q in qids]
        index = self._current()
        if strategy != "bm25" and vectors is None:
            vectors = self.encode_queries(texts)
        if vectors is not None:
            vectors = np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)
        chunks_per_doc = max(1.0, len(index) / max(1, len(set(index.document_ids)))) if len(index) else 1.0
        depth = int(k * min(4.0, chunks_per_doc)) + 1 if chunks_per_doc > 1 else k
        run: dict[str, dict[str, float]] = {}
        for qid, ranked in zip(qids, self._ranked(index, strategy, texts, vectors, depth), strict=True):
            docs: dict[str, float] = {}
            for i, score in ranked:
                ext = index.external_ids[i]
                if ext not in docs or score > docs[ext]:
                    docs[ext] = float(score)
            run[qid] = dict(sorted(docs.items(), key=lambda item: -item[1])[:k])
        return run
