"""The chunk table (``chunks``): one row per chunk with its text and vector. ``id`` carries
``lance-schema:unenforced-primary-key``, so concurrent ``merge_insert`` calls cannot duplicate
keys. :meth:`ChunkTable.commit` replaces or removes documents' chunks in ONE commit; every
earlier version stays readable (time travel) until ``optimize`` removes it."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mdp.ids import storable_text
from mdp.records import ChunkedDocument
from mdp.schemas import Chunk
from mdp.store.lance import CHUNKS, PK_META, LanceTables, batched, empty, in_filter, scan


def chunks_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False, metadata=PK_META),
            pa.field("document_id", pa.string(), nullable=False),
            pa.field("source", pa.string()),
            pa.field("external_id", pa.string()),
            pa.field("path", pa.string()),
            pa.field("text", pa.string()),
            pa.field("text_hash", pa.string()),
            pa.field("position", pa.int32()),
            pa.field("pages", pa.list_(pa.int32())),
            pa.field("element_types", pa.list_(pa.string())),
            pa.field("token_count", pa.int32()),
            pa.field("metadata", pa.string()),
            pa.field("vector", pa.list_(pa.float32(), dim)),
        ]
    )


def chunks_digest(chunks: Sequence[Chunk]) -> str:
    """What decides whether a document's stored chunks must be rewritten (vectors excluded)."""
    h = hashlib.sha256()
    for c in sorted(chunks, key=lambda c: c.position):
        item = [c.id, c.position, c.text_hash, c.pages, c.element_types, c.token_count, c.metadata]
        h.update(json.dumps(item, sort_keys=True, default=str).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def _matrix(vectors: list[np.ndarray]) -> np.ndarray:
    shapes = {np.shape(v) for v in vectors}
    if any(len(shape) != 1 for shape in shapes):
        raise ValueError(f"each chunk's vector must be 1-D, got shapes {sorted(shapes)}")
    if len(shapes) != 1:
        raise ValueError(f"vectors of different dimensions in one apply: {sorted(s[0] for s in shapes)}")
    return np.ascontiguousarray(np.stack(vectors), dtype=np.float32)


class MissingVectorsError(LookupError):
    """Some chunks an apply would write have no vector."""


def _refuse_missing(missing: Counter[str], where: str) -> None:
    shown = ", ".join(f"{doc_id!r} ({n})" for doc_id, n in sorted(missing.items())[:5])
    more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    raise MissingVectorsError(
        f"no vector in {where} for {sum(missing.values())} chunk(s) of {len(missing)} document(s): "
        f"{shown}{more}; nothing was written. Embed them first (the embeddings stage caches every "
        "chunk's vector under the model's key) or pass them as vectors={text_hash: vector}"
    )


def chunk_rows(parts: Sequence[ChunkedDocument], vectors: Mapping[str, np.ndarray], where: str) -> pa.Table:
    """The rows of these documents' chunks, each with the vector of its text hash; refuses chunks
    that have none in ``vectors`` (``where`` says where they were looked up), naming the documents."""
    cols: dict[str, list[Any]] = {name: [] for name in chunks_schema(1).names if name != "vector"}
    found: list[np.ndarray] = []
    missing: Counter[str] = Counter()
    for part in parts:
        document = part.document
        external_id, path = storable_text(document.external_id), storable_text(document.path)
        for c in part.chunks:
            text_hash = c.text_hash  # computed on each access: once here
            vector = vectors.get(text_hash)
            if vector is None:
                missing[document.id] += 1
                continue
            found.append(vector)
            cols["id"].append(c.id)
            cols["document_id"].append(document.id)
            cols["source"].append(document.source)
            cols["external_id"].append(external_id)
            cols["path"].append(path)
            cols["text"].append(c.text)
            cols["text_hash"].append(text_hash)
            cols["position"].append(c.position)
            cols["pages"].append(c.pages)
            cols["element_types"].append(c.element_types)
            cols["token_count"].append(c.token_count)
            cols["metadata"].append(json.dumps(c.metadata, sort_keys=True, ensure_ascii=False))
    if missing:
        _refuse_missing(missing, where)
    matrix = _matrix(found)
    dim = matrix.shape[1]
    schema = chunks_schema(dim)
    arrays = [pa.array(cols[f.name], f.type) for f in schema if f.name != "vector"]
    arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), pa.float32()), dim))
    return pa.Table.from_arrays(arrays, schema=schema)


def _check_dim(table: Any, data: pa.Table) -> None:
    want = table.schema.field("vector").type.list_size
    got = data.schema.field("vector").type.list_size
    if want != got:
        raise ValueError(
            f"vectors have dimension {got} but the store holds dimension {want}: "
            "a different model needs a new store (or re-embed everything into a fresh one)"
        )


class ChunkTable:
    """Reads of the ``chunks`` table (latest or any kept version) and its one commit per apply."""

    def __init__(self, tables: LanceTables):
        self._tables = tables

    def table(self) -> Any | None:
        return self._tables.get(CHUNKS)

    def version(self) -> int:
        table = self.table()
        return 0 if table is None else int(table.version)

    def checkout(self, version: int) -> Any:
        return self._tables.checkout(CHUNKS, version)

    def count(self, version: int | None = None) -> int:
        table = self.table()
        if table is None:
            return 0
        return int((table if version is None else self.checkout(version)).count_rows())

    def arrow(self, version: int | None = None, columns: Sequence[str] | None = None) -> pa.Table:
        table = self.table()
        if table is None:
            return empty(chunks_schema(1), columns)
        return scan(table if version is None else self.checkout(version), columns)

    def _current(self, table: Any, document_ids: Sequence[str]) -> tuple[set[str], list[str]]:
        """The chunk ids these documents have in the table now, and which of them have any."""
        ids: set[str] = set()
        with_chunks: list[str] = []
        for part in batched(document_ids):
            rows = scan(table, ["id", "document_id"], in_filter("document_id", part))
            ids.update(rows["id"].to_pylist())
            with_chunks += pc.unique(rows["document_id"]).to_pylist()
        return ids, with_chunks

    def commit(self, affected: Sequence[str], data: pa.Table | None) -> int:
        """Write ``data`` and remove every other chunk of the ``affected`` documents, in one commit
        (none when there is nothing to do); returns how many chunks were removed."""
        table = self.table()
        old_ids, with_chunks = self._current(table, affected) if table is not None else (set(), [])
        new_ids = set(data["id"].to_pylist()) if data is not None else set()
        gone = old_ids - new_ids
        if data is None:
            if gone:
                table.delete(in_filter("document_id", with_chunks))
            return len(gone)
        if table is None:
            self._tables.create(CHUNKS, data)
            return 0
        _check_dim(table, data)
        if not with_chunks:  # only new documents: an append, no join against the table
            table.add(data)
            return 0
        upsert = table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
        if gone:  # some chunks must go in the same commit
            # LanceDB evaluates this clause over the whole table (0.5 s at 100k rows)
            upsert = upsert.when_not_matched_by_source_delete(in_filter("document_id", with_chunks))
        # otherwise a plain upsert, joined through the BTREE index on id (0.05 s at 100k)
        upsert.execute(data)
        return len(gone)
