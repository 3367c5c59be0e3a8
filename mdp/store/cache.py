"""The embedding cache (``embedding_cache``): ``(model_key, text_hash) -> vector``, so a text a
model has embedded once is never encoded again. Rows are only ever added."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa

from mdp.store.lance import CACHE, LanceTables, batched, in_filter, scan, sql_quote

CACHE_SCHEMA = pa.schema(
    [
        pa.field("model_key", pa.string(), nullable=False),
        pa.field("text_hash", pa.string(), nullable=False),
        pa.field("vector", pa.list_(pa.float32())),
    ]
)


class EmbeddingCache:
    def __init__(self, tables: LanceTables):
        self._tables = tables

    def version(self) -> int:
        """A version of the cache's content: its row count. The cache only grows, so the count moves
        exactly when vectors are added (the table's own version also moves on index builds)."""
        table = self._tables.get(CACHE)
        return 0 if table is None else int(table.count_rows())

    def _rows(self, model_key: str, text_hashes: Sequence[str], columns: list[str]) -> Iterator[pa.Table]:
        """Rows of these hashes, ``LOOKUP_BATCH`` hashes per query (a BTREE index on ``text_hash``
        answers them once the cache is large; see ``VectorStore.ensure_scalar_indexes``)."""
        table = self._tables.get(CACHE)
        if table is None:
            return
        model = f"model_key = {sql_quote(model_key)}"
        for part in batched(text_hashes):
            yield scan(table, columns, f"{in_filter('text_hash', part)} AND {model}")

    def get(self, model_key: str, text_hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """Vectors of these hashes (missing ones left out); only the rows asked for are read."""
        out: dict[str, np.ndarray] = {}
        for data in self._rows(model_key, list(dict.fromkeys(text_hashes)), ["text_hash", "vector"]):
            if not data.num_rows:
                continue
            flat = data["vector"].combine_chunks()
            values = flat.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
            matrix = values.reshape(data.num_rows, len(values) // data.num_rows)
            out.update(zip(data["text_hash"].to_pylist(), matrix, strict=True))
        return out

    def put(self, model_key: str, text_hashes: Sequence[str], vectors: np.ndarray) -> int:
        """Add the vectors of hashes not cached yet (the caller holds the writer lock); returns how
        many rows were written."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(text_hashes) != len(vectors):
            raise ValueError(f"{len(text_hashes)} text hashes but {len(vectors)} vectors")
        first: dict[str, int] = {}
        for i, h in enumerate(text_hashes):
            first.setdefault(h, i)
        existing: set[str] = set()
        for data in self._rows(model_key, list(first), ["text_hash"]):
            existing.update(data["text_hash"].to_pylist())
        keep = [i for h, i in first.items() if h not in existing]
        if not keep:
            return 0
        sub = vectors[keep]
        flat = pa.FixedSizeListArray.from_arrays(pa.array(sub.reshape(-1)), sub.shape[1])
        data = pa.table(
            {
                "model_key": pa.array([model_key] * len(keep), pa.string()),
                "text_hash": pa.array([text_hashes[i] for i in keep], pa.string()),
                "vector": flat.cast(pa.list_(pa.float32())),
            },
            schema=CACHE_SCHEMA,
        )
        self._tables.add(CACHE, data)
        return len(keep)
