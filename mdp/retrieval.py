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
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from mdp import search_index
from mdp.config import MdpConfig, RetrievalConfig
from mdp.search_index import Analyzer
from mdp.store import VectorStore

Strategy = Literal["vector", "bm25", "hybrid", "hybrid_rrf", "hybrid_weighted"]
STRATEGIES: tuple[str, ...] = ("vector", "bm25", "hybrid", "hybrid_rrf", "hybrid_weighted")
HIT_COLUMNS = ("id", "document_id", "external_id", "path", "text")


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


class _Index:
    """One store version, ready to search: a base on disk (memory-mapped) and the delta of rows
    written since it was built (mdp/search_index.py). Memory holds the delta, a mask over the
    base, and whatever pages of the base the queries touch; texts stay in the store and only the
    hits' rows are read."""

    def __init__(
        self,
        store: VectorStore,
        version: int,
        config: RetrievalConfig,
        model_key: str | None = None,
        previous: _Index | None = None,
    ):
        self.version = version
        self.config = config
        self.analyzer = Analyzer(config.stemmer, config.stopwords)
        self.model_key = model_key
        self.cache_version = 0
        self.rows = store.count_chunks(version) if version else 0
        self.mode = search_index.vector_mode(config, self.rows)
        self.opened_s = 0.0
        self.documents = store.count_documents() if self.rows else 0
        if not self.rows:
            self.base: search_index.Base | None = None
            self.table = None
            return
        started = time.perf_counter()
        self.table = store.checkout(version)
        previous_base = previous.base if previous is not None and previous.model_key == model_key else None
        base, live, new, _ = search_index.open_base(store, version, config, model_key, previous_base)
        self.base = base
        prior = previous.delta if previous is not None and previous.base is base else None
        self.delta = search_index.read_delta(self.table, new, prior, base, self.analyzer, store, model_key)
        self.live = live
        self.weight_mask = live.astype(np.float32)
        self.n_base = len(base)
        self.keys = np.concatenate([np.asarray(base.rowids), self.delta.rowids])
        self.delta_bm25 = None
        if len(self.delta):
            self.delta_bm25 = search_index.DeltaBM25(
                self.delta.rows(),
                len(base.vocab) + len(self.delta.extra_vocab),
                base.doc_freqs,
                base.bm25.scores["num_docs"],
                base.meta["avg_len"],
                config.bm25_k1,
                config.bm25_b,
                config.bm25_method,
            )
        # the best-sentence list only where real sentence vectors exist (as before the search index)
        meta = base.sentences_meta(model_key) if model_key is not None else None
        found = (meta or {}).get("found", 0) + self.delta.sentences_found
        self.has_sentences = base.sentence_vectors is not None and found > 0
        self.opened_s = time.perf_counter() - started

    def __len__(self) -> int:
        return 0 if self.base is None else int(self.live.sum()) + len(self.delta)

    def describe(self) -> dict[str, Any]:
        """How this version is searched (recorded in metadata)."""
        if self.base is None:
            return {"rows": 0, "vector_search": self.mode}
        return {
            "rows": len(self),
            "vector_search": self.mode,
            "ann_index": self.config.ann_index if self.mode == "approximate" else None,
            "base_version": self.base.version,
            "delta_rows": len(self.delta),
            "masked_rows": int(self.n_base - self.live.sum()),
            "sentence_vectors": self.has_sentences,
            "open_s": round(self.opened_s, 3),
        }

    # ------------------------------------------------------------------ positions and rows
    def positions(self, rowids: np.ndarray) -> np.ndarray:
        """Positions (base rows, then delta rows) of row ids; -1 for ids this version lacks."""
        out = np.full(len(rowids), -1, dtype=np.int64)
        for lo, keys in ((0, np.asarray(self.base.rowids)), (self.n_base, self.delta.rowids)):  # type: ignore[union-attr]
            if not len(keys):
                continue
            pos = np.searchsorted(keys, rowids)
            found = (pos < len(keys)) & (keys[np.minimum(pos, len(keys) - 1)] == rowids)
            out[found] = lo + pos[found]
        return out

    def fetch(self, positions: Sequence[int], columns: Sequence[str]) -> dict[int, dict[str, Any]]:
        """``columns`` of the rows at these positions, read from the store."""
        wanted = sorted(set(int(p) for p in positions))
        if not wanted or self.table is None:
            return {}
        rowids = [int(self.keys[p]) for p in wanted]
        by_rowid: dict[int, dict[str, Any]] = {}
        for start in range(0, len(rowids), 5_000):
            data = self.table.take_row_ids(rowids[start : start + 5_000]).with_row_id()
            for row in data.select(list(columns)).to_arrow().to_pylist():
                by_rowid[int(row.pop("_rowid"))] = row
        return {p: by_rowid[r] for p, r in zip(wanted, rowids, strict=True) if r in by_rowid}

    # ------------------------------------------------------------------ scores
    def query_token_ids(self, text: str) -> tuple[list[int], list[int]]:
        """Query term ids in the base's vocabulary, and in the base's plus the delta's."""
        vocab = self.base.vocab if self.base is not None else {}
        extra = self.delta.extra_vocab if self.base is not None else {}
        terms = self.analyzer(text)
        return [vocab[t] for t in terms if t in vocab], [
            vocab[t] if t in vocab else extra[t] for t in terms if t in vocab or t in extra
        ]

    def bm25_scores(self, text: str) -> np.ndarray:
        """BM25 of every row for ``text`` (a query term that occurs twice counts twice)."""
        if self.base is None:
            return np.zeros(0, dtype=np.float32)
        base_ids, all_ids = self.query_token_ids(text)
        if base_ids:
            base = np.asarray(self.base.bm25.get_scores(base_ids, weight_mask=self.weight_mask), np.float32)
        else:
            base = np.zeros(self.n_base, dtype=np.float32)
        if self.delta_bm25 is None:
            return base
        return np.concatenate([base, self.delta_bm25.scores(all_ids)])

    def exact_vector_scores(self, vectors: np.ndarray) -> np.ndarray:
        """(queries, rows) dot products; masked base rows score -inf."""
        assert self.base is not None
        if vectors.shape[1] != self.base.vectors.shape[1]:
            raise ValueError(
                f"query vectors have dimension {vectors.shape[1]} but the index holds "
                f"{self.base.vectors.shape[1]}: use the model that built the store"
            )
        base = _dot(self.base.vectors, vectors)
        base[:, ~self.live] = -np.inf
        return np.concatenate([base, vectors @ self.delta.vectors.T], axis=1) if len(self.delta) else base

    def approximate_vector_top(
        self, vector: np.ndarray, depth: int, cfg: RetrievalConfig
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``depth`` rows from LanceDB's ANN index, re-ranked exactly from the stored vectors."""
        query = (
            self.table.search(vector.astype(np.float32), vector_column_name="vector")  # type: ignore[union-attr]
            .distance_type("dot")
            .nprobes(cfg.ann_nprobes)
            .refine_factor(cfg.ann_refine_factor)
            .limit(depth)
            .with_row_id(True)
            .select(["_distance"])
        )
        if cfg.ann_index == "ivf_hnsw_sq":  # LanceDB wants ef >= the candidates it returns
            query = query.ef(max(cfg.ann_ef, depth * cfg.ann_refine_factor))
        data = query.to_arrow()
        positions = self.positions(data["_rowid"].to_numpy())
        scores = 1.0 - data["_distance"].to_numpy().astype(np.float32)
        keep = positions >= 0
        positions, scores = positions[keep], scores[keep]
        order = np.lexsort((positions, -scores))
        return positions[order], scores[order]

    def _sentence_source(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        assert self.base is not None
        parts = [(0, self.base.sentence_offsets, self.base.sentence_vectors)]
        if len(self.delta):
            parts.append((self.n_base, self.delta.sentence_offsets, self.delta.sentence_vectors))
        return parts  # type: ignore[return-value]

    @property
    def sentence_count(self) -> int:
        return sum(len(v) for _, _, v in self._sentence_source()) if self.has_sentences else 0

    def all_best_sentence_scores(self, query: np.ndarray) -> np.ndarray:
        """Every row's best sentence score (exact; a row without sentence vectors holds its own)."""
        out = []
        for lo, offsets, vectors in self._sentence_source():
            scores = _matvec(vectors, query)
            best = np.maximum.reduceat(scores, np.asarray(offsets[:-1])) if len(scores) else scores
            if lo == 0:
                best = np.where(self.live, best, -np.inf)
            out.append(best.astype(np.float32))
        return np.concatenate(out)

    def best_sentence_scores(self, positions: np.ndarray, query: np.ndarray) -> np.ndarray:
        """For the rows at ``positions``: the best dot product of ``query`` with one of their sentences."""
        out = np.zeros(len(positions), dtype=np.float32)
        for lo, offsets, vectors in self._sentence_source():
            hi = lo + len(offsets) - 1
            mine = np.flatnonzero((positions >= lo) & (positions < hi))
            if not len(mine):
                continue
            local = positions[mine] - lo
            starts, ends = np.asarray(offsets[local]), np.asarray(offsets[local + 1])
            lengths = ends - starts
            bounds = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            picked = np.repeat(starts - bounds, lengths) + np.arange(int(lengths.sum()))
            scores = _matvec(np.asarray(vectors[picked]), query)
            out[mine] = np.maximum.reduceat(scores, bounds)
        return out


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


def _finite(ranked: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Drop rows that scored -inf (masked: deleted or replaced since the base was built)."""
    keep = np.isfinite(ranked[1])
    return (ranked[0][keep], ranked[1][keep]) if not keep.all() else ranked


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
    store: VectorStore,
    version: int,
    config: RetrievalConfig,
    model_key: str | None = None,
    previous: _Index | None = None,
) -> _Index:
    model_key = model_key if config.sentence_share > 0 else None
    # sentence vectors come from the embedding cache: a backfill changes them without a new version
    cache_version = store.cache_version() if model_key else 0
    key = (
        store.uri,
        version,
        model_key,
        cache_version,
        search_index.analyzer_key(config),
        config.delta_rebuild_rows,
    )
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    index = _Index(store, version, config, model_key, previous)
    index.cache_version = cache_version
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
        model_key = self._model_key() if self.config.sentence_share > 0 else None
        cache_version = self.store.cache_version() if model_key else 0
        index = self._index
        if index is None or index.version != version or index.cache_version != cache_version:
            self._index = _load_index(self.store, version, self.config, model_key, previous=index)
        return self._index

    def __len__(self) -> int:
        return len(self._current())

    def describe(self) -> dict[str, Any]:
        """How the current version is searched: exact or approximate vectors, base and delta sizes."""
        index = self._current()
        info = index.describe()
        info["vector_search"] = search_index.vector_mode(self.config, index.rows)
        info["ann_index"] = self.config.ann_index if info["vector_search"] == "approximate" else None
        return info

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

    def _vector_lists(
        self, index: _Index, vectors: np.ndarray, depth: int
    ) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray | None]:
        """Each query's top ``depth`` rows by vector, and the exact score matrix when it was computed."""
        if search_index.vector_mode(self.config, index.rows) == "approximate":
            return [index.approximate_vector_top(v, depth, self.config) for v in vectors], None
        scores = index.exact_vector_scores(vectors)
        return [_finite(_top(row, depth)) for row in scores], scores

    def _ranked(
        self, index: _Index, strategy: str, queries: list[str], vectors: np.ndarray | None, k: int
    ) -> list[list[tuple[int, float]]]:
        cfg = self.config
        _check_strategy(strategy)
        if len(index) == 0:
            return [[] for _ in queries]
        if strategy == "bm25":
            out = []
            for q in queries:
                idx, sc = _top(index.bm25_scores(q), k, positive_only=True)
                out.append(list(zip(idx.tolist(), sc.tolist(), strict=True)))
            return out
        if vectors is None:
            raise ValueError(f"strategy {strategy!r} needs query vectors")
        if strategy == "vector":
            lists, _ = self._vector_lists(index, vectors, k)
            return [list(zip(*(a.tolist() for a in lst), strict=True)) for lst in lists]
        depth = max(cfg.candidate_depth, k)
        method = cfg.fusion if strategy == "hybrid" else strategy.removeprefix("hybrid_")
        vec_lists, _ = self._vector_lists(index, vectors, depth)
        out = []
        share = cfg.sentence_share if index.has_sentences else 0.0
        exhaustive = share and index.sentence_count <= cfg.sentence_exact_limit
        for q, vec_list, q_vec in zip(queries, vec_lists, vectors, strict=True):
            bm_list = _top(index.bm25_scores(q), depth, positive_only=True)
            lists = [vec_list, bm_list]
            weights = [cfg.vector_weight, cfg.bm25_weight]
            if share:
                if exhaustive:  # each row's best sentence, searched exactly like the other lists
                    lists.append(_finite(_top(index.all_best_sentence_scores(q_vec), depth)))
                else:  # large index: score the best sentence of the other lists' candidates only
                    candidates = np.union1d(vec_list[0], bm_list[0])
                    scores = index.best_sentence_scores(candidates, q_vec)
                    order = np.lexsort((candidates, -scores))  # best first, like _top
                    lists.append((candidates[order], scores[order]))
                weights = [cfg.vector_weight * (1 - share), cfg.bm25_weight, cfg.vector_weight * share]
            fused = rrf_fuse(lists, cfg.rrf_k) if method == "rrf" else weighted_fuse(lists, weights)
            out.append(sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k])
        return out

    def _hits(self, index: _Index, ranked: list[tuple[int, float]]) -> list[Hit]:
        rows = index.fetch([i for i, _ in ranked], HIT_COLUMNS)
        return [
            Hit(
                chunk_id=rows[i]["id"],
                document_id=rows[i]["document_id"],
                external_id=rows[i]["external_id"],
                path=rows[i]["path"],
                text=rows[i]["text"],
                score=float(s),
            )
            for i, s in ranked
            if i in rows
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
        chunks_per_doc = max(1.0, len(index) / max(1, index.documents)) if len(index) else 1.0
        depth = int(k * min(4.0, chunks_per_doc)) + 1 if chunks_per_doc > 1 else k
        ranked_all = self._ranked(index, strategy, texts, vectors, depth)
        rows = index.fetch([i for ranked in ranked_all for i, _ in ranked], ["external_id"])
        run: dict[str, dict[str, float]] = {}
        for qid, ranked in zip(qids, ranked_all, strict=True):
            docs: dict[str, float] = {}
            for i, score in ranked:
                ext = rows[i]["external_id"]
                if ext not in docs or score > docs[ext]:
                    docs[ext] = float(score)
            run[qid] = dict(sorted(docs.items(), key=lambda item: -item[1])[:k])
        return run
