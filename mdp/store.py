"""The on-disk vector store: chunks, the documents manifest, the embedding cache and version log.

LanceDB embedded, one folder (or an object-store URI) with four tables:

- ``chunks``: one row per chunk, its text and vector. ``id`` carries the field metadata
  ``lance-schema:unenforced-primary-key`` so concurrent ``merge_insert`` calls cannot duplicate keys.
- ``documents``: the manifest, one row per document (chunked or quarantined) with its hashes.
- ``embedding_cache``: ``(model_key, text_hash) -> vector``, so unchanged texts are never re-encoded.
- ``index_versions``: one row per write of ``apply``: chunks version, run id, counts, manifest digest.

Writes go through :meth:`VectorStore.apply`, which replaces every changed document's chunks in one
commit on ``chunks`` and then updates the manifest. One writer at a time: a file lock in the store
folder is held during ``apply``, ``put_cached`` and ``optimize``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
from filelock import FileLock, Timeout

from mdp.config import StoreConfig
from mdp.ids import document_id, parse_document_id, relpath_from_storable, storable_relpath, storable_text
from mdp.schemas import Chunk, Document, QuarantineRecord

CHUNKS = "chunks"
DOCUMENTS = "documents"
CACHE = "embedding_cache"
VERSIONS = "index_versions"
BASELINES = "eval_baselines"
PK_META = {b"lance-schema:unenforced-primary-key": b"true"}
LOCK_NAME = ".mdp-writer.lock"
STATUS_CHUNKED = "chunked"
STATUS_QUARANTINED = "quarantined"
LOOKUP_BATCH = 1_000  # keys per `col IN (...)` query
SCALAR_INDEX_MIN_ROWS = 10_000  # below this a scan is as fast as an index
# (table, column) pairs that the store looks rows up by
SCALAR_INDEXES = ((CHUNKS, "id"), (CHUNKS, "document_id"), (DOCUMENTS, "document_id"), (CACHE, "text_hash"))


_SHARED: dict[tuple[Any, ...], VectorStore] = {}
_SHARED_LOCK = threading.Lock()


class StoreLockedError(RuntimeError):
    """Another writer holds the store's lock."""


class ReadOnlyStoreError(RuntimeError):
    """A write was attempted on a store opened with ``read_only=True``."""


class StoreNotFoundError(FileNotFoundError):
    """A store opened read-only does not exist (reading never creates one)."""


class NotAStoreError(NotADirectoryError):
    """The store path names something that is not a folder."""


@dataclass(frozen=True)
class ApplyResult:
    version: int
    chunks_written: int
    chunks_deleted: int
    documents_written: int
    documents_deleted: int

    @property
    def changed(self) -> bool:
        return bool(
            self.chunks_written or self.chunks_deleted or self.documents_written or self.documents_deleted
        )


@dataclass(frozen=True)
class ManifestEntry:
    document_id: str
    source: str
    path: str
    relpath: str
    external_id: str
    content_hash: str
    file_hash: str
    format: str
    status: str
    n_chunks: int
    reason: str
    model_id: str
    model_version: str
    run_id: str
    updated_at: datetime
    chunks_digest: str


@dataclass(frozen=True)
class VersionInfo:
    version: int
    timestamp: datetime
    rows: int | None
    run_id: str | None = None
    source: str | None = None
    manifest_digest: str | None = None


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


DOCUMENTS_SCHEMA = pa.schema(
    [
        pa.field("document_id", pa.string(), nullable=False, metadata=PK_META),
        pa.field("source", pa.string()),
        pa.field("path", pa.string()),
        pa.field("relpath", pa.string()),
        pa.field("external_id", pa.string()),
        pa.field("content_hash", pa.string()),
        pa.field("file_hash", pa.string()),
        pa.field("format", pa.string()),
        pa.field("status", pa.string()),
        pa.field("n_chunks", pa.int32()),
        pa.field("reason", pa.string()),
        pa.field("model_id", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("updated_at", pa.timestamp("us", tz="UTC")),
        pa.field("chunks_digest", pa.string()),
        pa.field("stage", pa.string()),
        pa.field("line", pa.int32()),
    ]
)

CACHE_SCHEMA = pa.schema(
    [
        pa.field("model_key", pa.string(), nullable=False),
        pa.field("text_hash", pa.string(), nullable=False),
        pa.field("vector", pa.list_(pa.float32())),
    ]
)

VERSIONS_SCHEMA = pa.schema(
    [
        pa.field("version", pa.int64()),
        pa.field("documents_version", pa.int64()),
        pa.field("run_id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("model_id", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("chunks", pa.int64()),
        pa.field("chunks_written", pa.int64()),
        pa.field("chunks_deleted", pa.int64()),
        pa.field("documents_written", pa.int64()),
        pa.field("documents_deleted", pa.int64()),
        pa.field("manifest_digest", pa.string()),
        pa.field("timestamp", pa.timestamp("us", tz="UTC")),
    ]
)


BASELINES_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False, metadata=PK_META),
        pa.field("values", pa.string()),
        pa.field("accepted_at", pa.timestamp("us", tz="UTC")),
    ]
)


def _sql_escape(value: str) -> str:
    return value.replace("'", "''")


def _sql_list(values: Iterable[str]) -> str:
    return ", ".join("'" + _sql_escape(v) + "'" for v in values)


def _entries(data: pa.Table) -> dict[str, ManifestEntry]:
    fields = ManifestEntry.__dataclass_fields__
    rows = data.to_pylist()
    for row in rows:  # undecodable file-name bytes are stored escaped (mdp.ids)
        row["relpath"] = relpath_from_storable(row["relpath"] or "")
    return {r["document_id"]: ManifestEntry(**{k: r[k] for k in fields}) for r in rows}


def _in_filter(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({_sql_list(values)})"


def chunks_digest(chunks: Sequence[Chunk]) -> str:
    """What decides whether a document's stored chunks must be rewritten (vectors excluded)."""
    h = hashlib.sha256()
    for c in sorted(chunks, key=lambda c: c.position):
        item = [c.id, c.position, c.text_hash, c.pages, c.element_types, c.token_count, c.metadata]
        h.update(json.dumps(item, sort_keys=True, default=str).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def quarantine_document_id(record: QuarantineRecord) -> str:
    if record.document_id:
        return record.document_id
    return document_id(record.source, record.relpath or record.path, line=record.line)


def _relpath(recorded: str, doc_id: str) -> str:
    """The relpath the record carries; for records from before it did, the id's exact inverse."""
    if recorded:
        return recorded
    try:
        return parse_document_id(doc_id).relpath
    except ValueError:
        return ""


def _check_unique_keys(
    upserts: Sequence[tuple[Document, Sequence[Chunk], np.ndarray]],
    quarantined: Sequence[tuple[Document | None, QuarantineRecord, str]],
) -> None:
    """One manifest row per document id: a batch that would write two is refused before any commit."""
    keys = [document.id for document, _, _ in upserts]
    keys += [doc.id if doc is not None else quarantine_document_id(rec) for doc, rec, _ in quarantined]
    repeated = sorted(key for key, n in Counter(keys).items() if n > 1)
    if repeated:
        shown = ", ".join(repr(key) for key in repeated[:5])
        raise ValueError(
            f"document id(s) {shown} appear more than once in one apply; nothing was written "
            "(each document must be chunked or quarantined exactly once)"
        )


def _scan(table: Any, columns: Sequence[str] | None = None, where: str | None = None) -> pa.Table:
    """Read rows of a LanceDB table (no pylance needed): optional projection and SQL filter."""
    if columns is None and where is None:
        return table.to_arrow()
    query = table.search()
    if where:
        query = query.where(where)
    if columns:
        query = query.select(list(columns))
    return query.limit(None).to_arrow()


def _fault_point(name: str) -> None:
    """Crash-safety tests kill the process here (MDP_FAULT_POINT=<name>): the worst moment to die."""
    if os.environ.get("MDP_FAULT_POINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def _local_path(uri: str) -> Path:
    return Path(uri[len("file://") :] if uri.startswith("file://") else uri)


class VectorStore:
    """LanceDB-backed store of chunks, manifest, embedding cache and version log."""

    def __init__(
        self,
        uri: str | os.PathLike[str],
        *,
        read_only: bool = False,
        lock_timeout_s: float = 60.0,
        storage_options: dict[str, str] | None = None,
    ):
        self.uri = str(uri)
        self.read_only = read_only
        self.lock_timeout_s = lock_timeout_s
        if _is_local(self.uri):
            root = _local_path(self.uri)
            if root.exists() and not root.is_dir():
                raise NotAStoreError(
                    f"store {root} is a file, not a folder: point --store (or [store] uri in mdp.toml) "
                    "at a store folder"
                )
            if read_only and not root.exists():  # lancedb.connect would create the folder
                raise StoreNotFoundError(
                    f"store {root} does not exist: build it with `mdp ingest PATH --store {root}`, or point "
                    "--store (or [store] uri in mdp.toml) at an existing store"
                )
            if not read_only:
                root.mkdir(parents=True, exist_ok=True)
            self.lock_path = root / LOCK_NAME
        else:
            digest = hashlib.sha256(self.uri.encode()).hexdigest()[:16]
            self.lock_path = Path(tempfile.gettempdir()) / f"mdp-store-{digest}.lock"
        # Strong consistency: every read checks for commits made by other processes.
        self._db = lancedb.connect(
            self.uri, read_consistency_interval=timedelta(0), storage_options=storage_options or None
        )
        self._tables: dict[str, Any] = {}

    @classmethod
    def from_config(cls, store: StoreConfig, *, read_only: bool = False) -> VectorStore:
        """The store a project's ``[store]`` table names, object-store options included."""
        return cls(store.uri, read_only=read_only, storage_options=store.resolved_storage_options())

    @classmethod
    def shared(cls, store: StoreConfig, *, read_only: bool = False) -> VectorStore:
        """One handle per (store, mode) and process, reused by every asset of a run: opening
        tables again per asset costs time, and each handle caches its own table objects."""
        options = store.resolved_storage_options()
        key = (store.uri, read_only, tuple(sorted(options.items())))
        with _SHARED_LOCK:
            handle = _SHARED.get(key)
            if handle is None:
                handle = _SHARED[key] = cls(store.uri, read_only=read_only, storage_options=options)
            return handle

    # ------------------------------------------------------------------ plumbing
    def __repr__(self) -> str:
        return f"VectorStore({self.uri!r}, read_only={self.read_only})"

    def _table(self, name: str) -> Any | None:
        table = self._tables.get(name)
        if table is not None:
            return table
        try:
            table = self._db.open_table(name)
        except (ValueError, FileNotFoundError):
            return None
        self._tables[name] = table
        return table

    def _create(self, name: str, data: pa.Table) -> Any:
        table = self._db.create_table(name, data=data, exist_ok=True)
        self._tables[name] = table
        if data.num_rows and table.count_rows() == 0:
            # exist_ok returned a table another writer created empty; add our rows.
            table.add(data)
        return table

    def _writer_lock(self) -> FileLock:
        if self.read_only:
            raise ReadOnlyStoreError(f"store {self.uri} was opened read-only")
        return FileLock(str(self.lock_path), timeout=self.lock_timeout_s)

    def _locked(self) -> _LockContext:
        return _LockContext(self._writer_lock(), self.lock_path)

    # ------------------------------------------------------------------ reading
    def version(self) -> int:
        """Version of the chunks table; 0 while the store has no chunks table."""
        table = self._table(CHUNKS)
        return 0 if table is None else int(table.version)

    def count_chunks(self, version: int | None = None) -> int:
        table = self._table(CHUNKS)
        if table is None:
            return 0
        if version is None:
            return int(table.count_rows())
        return int(self._checkout(version).count_rows())

    def lance_table(self, name: str = CHUNKS) -> Any:
        """The underlying LanceDB table (native search, benchmarks); raises if it does not exist yet."""
        table = self._table(name)
        if table is None:
            raise LookupError(f"store {self.uri} has no {name!r} table yet: apply some documents first")
        return table

    def _checkout(self, version: int) -> Any:
        table = self._db.open_table(CHUNKS)
        table.checkout(int(version))
        return table

    def checkout(self, version: int) -> Any:
        """A LanceDB handle on ``version`` of the chunks table (read-only, its own object)."""
        return self._checkout(version)

    def chunks_arrow(self, version: int | None = None, columns: Sequence[str] | None = None) -> pa.Table:
        table = self._table(CHUNKS)
        if table is None:
            return chunks_schema(1).empty_table() if columns is None else pa.table({c: [] for c in columns})
        if version is not None:
            table = self._checkout(version)
        return _scan(table, columns)

    def chunks_frame(self, version: int | None = None, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Chunks as a DataFrame, at ``version`` (time travel) or the latest."""
        return self.chunks_arrow(version, columns).to_pandas()

    def _documents_arrow(self, source: str | None = None, columns: Sequence[str] | None = None) -> pa.Table:
        table = self._table(DOCUMENTS)
        if table is None:
            schema = DOCUMENTS_SCHEMA
            return schema.empty_table() if columns is None else pa.table({c: [] for c in columns})
        where = None if source is None else f"source = '{_sql_escape(source)}'"
        return _scan(table, columns, where)

    def manifest(self, source: str | None = None) -> dict[str, ManifestEntry]:
        return _entries(self._documents_arrow(source))

    def manifest_table(self, source: str | None = None, columns: Sequence[str] | None = None) -> pa.Table:
        """The manifest (one source's, and only ``columns`` when given) as an Arrow table."""
        return self._documents_arrow(source, columns)

    def manifest_entries(self, document_ids: Iterable[str]) -> dict[str, ManifestEntry]:
        """Manifest entries of these documents only (``document_id IN (...)`` in batches)."""
        table = self._table(DOCUMENTS)
        wanted = list(dict.fromkeys(document_ids))
        if table is None or not wanted:
            return {}
        out: dict[str, ManifestEntry] = {}
        for start in range(0, len(wanted), LOOKUP_BATCH):
            part = wanted[start : start + LOOKUP_BATCH]
            out.update(_entries(_scan(table, None, _in_filter("document_id", part))))
        return out

    def count_documents(self, status: str = STATUS_CHUNKED) -> int:
        table = self._table(DOCUMENTS)
        return 0 if table is None else int(table.count_rows(f"status = '{status}'"))

    def quarantine(self, source: str | None = None) -> pd.DataFrame:
        data = self._documents_arrow(source)
        data = data.filter(pc.equal(data["status"], STATUS_QUARANTINED))
        return data.to_pandas()

    def manifest_digest(self, source: str | None = None) -> str:
        """sha256 over the sorted (document_id, content_hash) pairs of the manifest, one
        ``id<TAB>hash<LF>`` line each; computed in Arrow (no Python object per document)."""
        data = self._documents_arrow(source, ["document_id", "content_hash"])
        h = hashlib.sha256()
        if data.num_rows:
            data = data.take(pc.sort_indices(data, sort_keys=[("document_id", "ascending")]))
            lines = pc.binary_join_element_wise(
                data["document_id"], pc.fill_null(data["content_hash"], "None"), "\t"
            ).combine_chunks()
            lines = pc.binary_join_element_wise(lines, pa.scalar(""), "\n").cast(pa.large_string())
            lines = lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines
            offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)
            offsets = offsets[lines.offset : lines.offset + len(lines) + 1]
            h.update(memoryview(lines.buffers()[2])[int(offsets[0]) : int(offsets[-1])])
        return h.hexdigest()

    def versions(self) -> list[VersionInfo]:
        """Versions of the chunks table still on disk, with the run that wrote each (when known)."""
        table = self._table(CHUNKS)
        if table is None:
            return []
        log: dict[int, dict[str, Any]] = {}
        vtable = self._table(VERSIONS)
        if vtable is not None:
            for row in _scan(vtable).to_pylist():
                log.setdefault(int(row["version"]), row)  # the run that produced the version
        out = []
        for v in table.list_versions():
            number = int(v["version"])
            row = log.get(number)
            rows = int(row["chunks"]) if row else self._checkout(number).count_rows()
            ts = v["timestamp"]
            if isinstance(ts, datetime) and ts.tzinfo is None:
                ts = ts.replace(tzinfo=UTC)
            out.append(
                VersionInfo(
                    version=number,
                    timestamp=ts,
                    rows=rows,
                    run_id=row["run_id"] if row else None,
                    source=row["source"] if row else None,
                    manifest_digest=row["manifest_digest"] if row else None,
                )
            )
        return out

    def rows_changed_since(self, version: int) -> int:
        """Chunks written or deleted by the writes after ``version`` (from the version log: an upper
        bound on the rows that differ, read without touching the chunks table)."""
        table = self._table(VERSIONS)
        if table is None:
            return 0
        data = _scan(table, ["chunks_written", "chunks_deleted"], f"version > {int(version)}")
        written = pc.sum(data["chunks_written"]).as_py() or 0
        return int(written) + int(pc.sum(data["chunks_deleted"]).as_py() or 0)

    def version_log(self) -> pd.DataFrame:
        table = self._table(VERSIONS)
        if table is None:
            return VERSIONS_SCHEMA.empty_table().to_pandas()
        return _scan(table).to_pandas()

    def size_bytes(self) -> int:
        if _is_local(self.uri):
            root = _local_path(self.uri)
            return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        fs, path = pafs.FileSystem.from_uri(self.uri)
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
        return sum(i.size or 0 for i in infos if i.type == pafs.FileType.File)

    # ------------------------------------------------------------------ embedding cache
    def cache_version(self) -> int:
        """A version of the embedding cache's content: its row count. The cache only grows (rows
        are added, never changed or removed), so the count moves exactly when vectors are added;
        the table's own version also moves on index builds and compaction."""
        table = self._table(CACHE)
        return 0 if table is None else int(table.count_rows())

    def _cache_rows(
        self, model_key: str, text_hashes: Sequence[str], columns: list[str]
    ) -> Iterable[pa.Table]:
        """Cache rows of these hashes, ``LOOKUP_BATCH`` hashes per query (a BTREE index on
        ``text_hash`` answers them once the cache is large; see ensure_scalar_indexes)."""
        table = self._table(CACHE)
        if table is None:
            return
        model = f"model_key = '{_sql_escape(model_key)}'"
        for start in range(0, len(text_hashes), LOOKUP_BATCH):
            part = text_hashes[start : start + LOOKUP_BATCH]
            yield _scan(table, columns, f"{_in_filter('text_hash', part)} AND {model}")

    def get_cached(self, model_key: str, text_hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """Vectors already computed by ``model_key`` for these text hashes (missing ones left out).
        Only the rows asked for are read, never the whole cache."""
        out: dict[str, np.ndarray] = {}
        for data in self._cache_rows(model_key, list(dict.fromkeys(text_hashes)), ["text_hash", "vector"]):
            if not data.num_rows:
                continue
            flat = data["vector"].combine_chunks()
            values = flat.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
            matrix = values.reshape(data.num_rows, len(values) // data.num_rows)
            out.update(zip(data["text_hash"].to_pylist(), matrix, strict=True))
        return out

    def put_cached(self, model_key: str, text_hashes: Sequence[str], vectors: np.ndarray) -> int:
        """Store vectors for text hashes not cached yet; returns how many rows were written."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(text_hashes) != len(vectors):
            raise ValueError(f"{len(text_hashes)} text hashes but {len(vectors)} vectors")
        if not len(text_hashes):
            return 0
        with self._locked():
            first: dict[str, int] = {}
            for i, h in enumerate(text_hashes):
                first.setdefault(h, i)
            existing: set[str] = set()
            for data in self._cache_rows(model_key, list(first), ["text_hash"]):
                existing.update(data["text_hash"].to_pylist())
            keep = [i for h, i in first.items() if h not in existing]
            if not keep:
                return 0
            sub = vectors[keep]
            data = pa.table(
                {
                    "model_key": pa.array([model_key] * len(keep), pa.string()),
                    "text_hash": pa.array([text_hashes[i] for i in keep], pa.string()),
                    "vector": pa.FixedSizeListArray.from_arrays(pa.array(sub.reshape(-1)), sub.shape[1]).cast(
                        pa.list_(pa.float32())
                    ),
                },
                schema=CACHE_SCHEMA,
            )
            table = self._table(CACHE)
            if table is None:
                self._create(CACHE, data)
            else:
                table.add(data)
            return len(keep)

    # ------------------------------------------------------------------ writing
    def apply(
        self,
        source: str,
        upserts: Sequence[tuple[Document, Sequence[Chunk], np.ndarray]],
        quarantined: Sequence[tuple[Document | None, QuarantineRecord, str]] = (),
        deleted_document_ids: Sequence[str] = (),
        *,
        file_hashes: dict[str, str] | None = None,
        run_id: str = "",
        model_id: str = "",
        model_version: str = "",
    ) -> ApplyResult:
        """Bring the store in line with one source's changes.

        Every upserted document's chunks are replaced, and deleted or newly quarantined documents'
        chunks removed, in ONE commit on the chunks table; the manifest is updated after it. A crash
        between the two leaves the manifest behind the chunks, so the next run re-applies those
        documents (apply is idempotent). Documents whose manifest entry already matches are skipped;
        when nothing differs nothing is written and the version stays the same.
        """
        file_hashes = file_hashes or {}
        for document, chunks, vectors in upserts:
            if document.source != source:
                raise ValueError(
                    f"document {document.id} belongs to source {document.source!r}, not {source!r}"
                )
            if len(chunks) != len(vectors):
                raise ValueError(f"document {document.id}: {len(chunks)} chunks but {len(vectors)} vectors")
            for chunk in chunks:
                if chunk.document_id != document.id:
                    raise ValueError(f"chunk {chunk.id} does not belong to document {document.id}")
        _check_unique_keys(upserts, quarantined)
        with self._locked():
            return self._apply_locked(
                source,
                upserts,
                quarantined,
                deleted_document_ids,
                file_hashes,
                run_id,
                model_id,
                model_version,
            )

    def _apply_locked(
        self,
        source: str,
        upserts: Sequence[tuple[Document, Sequence[Chunk], np.ndarray]],
        quarantined: Sequence[tuple[Document | None, QuarantineRecord, str]],
        deleted_document_ids: Sequence[str],
        file_hashes: dict[str, str],
        run_id: str,
        model_id: str,
        model_version: str,
    ) -> ApplyResult:
        now = datetime.now(UTC)
        manifest = self.manifest_entries(
            [d.id for d, _, _ in upserts]
            + [d.id if d is not None else quarantine_document_id(r) for d, r, _ in quarantined]
            + list(deleted_document_ids)
        )
        doc_rows: list[dict[str, Any]] = []
        chunk_parts: list[tuple[Document, Sequence[Chunk], np.ndarray]] = []
        replace_ids: list[str] = []  # documents whose chunks are replaced or removed
        chunks_written = 0

        for document, chunks, vectors in upserts:
            digest = chunks_digest(chunks)
            fhash = file_hashes.get(document.id, document.content_hash)
            old = manifest.get(document.id)
            if (
                old is not None
                and old.status == STATUS_CHUNKED
                and old.content_hash == document.content_hash
                and old.file_hash == fhash
                and old.chunks_digest == digest
                and old.model_id == model_id
                and old.model_version == model_version
            ):
                continue
            replace_ids.append(document.id)
            if chunks:
                chunk_parts.append((document, chunks, vectors))
                chunks_written += len(chunks)
            doc_rows.append(
                {
                    "document_id": document.id,
                    "source": source,
                    "path": storable_text(document.path),
                    "relpath": storable_relpath(_relpath(document.relpath, document.id)),
                    "external_id": storable_text(document.external_id),
                    "content_hash": document.content_hash,
                    "file_hash": fhash,
                    "format": document.format,
                    "status": STATUS_CHUNKED,
                    "n_chunks": len(chunks),
                    "reason": "",
                    "model_id": model_id,
                    "model_version": model_version,
                    "run_id": run_id,
                    "updated_at": now,
                    "chunks_digest": digest,
                    "stage": "",
                    "line": None,
                }
            )

        for document, record, fhash in quarantined:
            doc_id = document.id if document is not None else quarantine_document_id(record)
            content_hash = (document.content_hash if document is not None else record.content_hash) or ""
            old = manifest.get(doc_id)
            if (
                old is not None
                and old.status == STATUS_QUARANTINED
                and old.reason == storable_text(record.reason)
                and old.content_hash == content_hash
                and old.file_hash == fhash
            ):
                continue
            if old is not None and old.n_chunks:
                replace_ids.append(doc_id)
            relpath = _relpath(document.relpath if document is not None else record.relpath, doc_id)
            doc_rows.append(
                {
                    "document_id": doc_id,
                    "source": source,
                    "path": storable_text(document.path if document is not None else record.path),
                    "relpath": storable_relpath(relpath),
                    "external_id": storable_text(document.external_id) if document is not None else "",
                    "content_hash": content_hash,
                    "file_hash": fhash,
                    "format": document.format if document is not None else record.format,
                    "status": STATUS_QUARANTINED,
                    "n_chunks": 0,
                    "reason": storable_text(record.reason),
                    "model_id": model_id,
                    "model_version": model_version,
                    "run_id": run_id,
                    "updated_at": now,
                    "chunks_digest": "",
                    "stage": record.stage,
                    "line": record.line,
                }
            )

        deleted = [d for d in dict.fromkeys(deleted_document_ids) if d in manifest]
        written_ids = {r["document_id"] for r in doc_rows}
        deleted = [d for d in deleted if d not in written_ids]
        chunk_deletes = [d for d in deleted if manifest[d].n_chunks]
        if not doc_rows and not deleted:
            return ApplyResult(self.version(), 0, 0, 0, 0)

        # ---- one commit on the chunks table
        affected = list(dict.fromkeys(replace_ids + chunk_deletes))
        chunks_deleted = 0
        chunks_table = self._table(CHUNKS)
        if affected:
            old_ids: set[str] = set()
            with_chunks: list[str] = []  # affected documents that have chunks in the table now
            if chunks_table is not None:
                for start in range(0, len(affected), LOOKUP_BATCH):
                    part = affected[start : start + LOOKUP_BATCH]
                    old = _scan(chunks_table, ["id", "document_id"], _in_filter("document_id", part))
                    old_ids.update(old["id"].to_pylist())
                    with_chunks += pc.unique(old["document_id"]).to_pylist()
            data = self._chunk_rows(chunk_parts) if chunk_parts else None
            new_ids = set(data["id"].to_pylist()) if data is not None else set()
            chunks_deleted = len(old_ids - new_ids)
            if data is not None:
                if chunks_table is None:
                    chunks_table = self._create(CHUNKS, data)
                elif not with_chunks:  # only new documents: an append, no join against the table
                    self._check_dim(chunks_table, data)
                    chunks_table.add(data)
                else:
                    self._check_dim(chunks_table, data)
                    upsert = chunks_table.merge_insert("id").when_matched_update_all()
                    upsert = upsert.when_not_matched_insert_all()
                    if old_ids - new_ids:  # some chunks must go in the same commit
                        # LanceDB evaluates this clause over the whole table (0.5 s at 100k rows)
                        gone = _in_filter("document_id", with_chunks)
                        upsert = upsert.when_not_matched_by_source_delete(gone)
                    # otherwise a plain upsert, joined through the BTREE index on id (0.05 s at 100k)
                    upsert.execute(data)
            elif chunks_table is not None and old_ids:
                chunks_table.delete(_in_filter("document_id", with_chunks))

        _fault_point("after_chunks_commit")

        # ---- manifest
        docs_table = self._table(DOCUMENTS)
        if doc_rows:
            data = pa.Table.from_pylist(doc_rows, schema=DOCUMENTS_SCHEMA)
            if docs_table is None:
                docs_table = self._create(DOCUMENTS, data)
            else:
                (
                    docs_table.merge_insert("document_id")
                    .when_matched_update_all()
                    .when_not_matched_insert_all()
                    .execute(data)
                )
        if deleted and docs_table is not None:
            docs_table.delete(_in_filter("document_id", deleted))

        version = self.version()
        result = ApplyResult(version, chunks_written, chunks_deleted, len(doc_rows), len(deleted))
        self._log_version(result, docs_table, source, run_id, model_id, model_version, now)
        return result

    def _log_version(
        self,
        result: ApplyResult,
        docs_table: Any,
        source: str,
        run_id: str,
        model_id: str,
        model_version: str,
        now: datetime,
    ) -> None:
        row = {
            "version": result.version,
            "documents_version": int(docs_table.version) if docs_table is not None else 0,
            "run_id": run_id,
            "source": source,
            "model_id": model_id,
            "model_version": model_version,
            "chunks": self.count_chunks(),
            "chunks_written": result.chunks_written,
            "chunks_deleted": result.chunks_deleted,
            "documents_written": result.documents_written,
            "documents_deleted": result.documents_deleted,
            "manifest_digest": self.manifest_digest(),
            "timestamp": now,
        }
        data = pa.Table.from_pylist([row], schema=VERSIONS_SCHEMA)
        table = self._table(VERSIONS)
        if table is None:
            self._create(VERSIONS, data)
        else:
            table.add(data)

    @staticmethod
    def _check_dim(table: Any, data: pa.Table) -> None:
        want = table.schema.field("vector").type.list_size
        got = data.schema.field("vector").type.list_size
        if want != got:
            raise ValueError(
                f"vectors have dimension {got} but the store holds dimension {want}: "
                "a different model needs a new store (or re-embed everything into a fresh one)"
            )

    @staticmethod
    def _chunk_rows(parts: Sequence[tuple[Document, Sequence[Chunk], np.ndarray]]) -> pa.Table:
        cols: dict[str, list[Any]] = {name: [] for name in chunks_schema(1).names if name != "vector"}
        matrices = []
        for document, chunks, vectors in parts:
            matrix = np.asarray(vectors, dtype=np.float32)
            if matrix.ndim != 2:
                raise ValueError(f"document {document.id}: vectors must be 2-D, got shape {matrix.shape}")
            matrices.append(matrix)
            for c in chunks:
                cols["id"].append(c.id)
                cols["document_id"].append(document.id)
                cols["source"].append(document.source)
                cols["external_id"].append(storable_text(document.external_id))
                cols["path"].append(storable_text(document.path))
                cols["text"].append(c.text)
                cols["text_hash"].append(c.text_hash)
                cols["position"].append(c.position)
                cols["pages"].append(c.pages)
                cols["element_types"].append(c.element_types)
                cols["token_count"].append(c.token_count)
                cols["metadata"].append(json.dumps(c.metadata, sort_keys=True, ensure_ascii=False))
        dims = {m.shape[1] for m in matrices}
        if len(dims) != 1:
            raise ValueError(f"vectors of different dimensions in one apply: {sorted(dims)}")
        dim = dims.pop()
        matrix = np.ascontiguousarray(np.concatenate(matrices))
        schema = chunks_schema(dim)
        arrays = [pa.array(cols[f.name], f.type) for f in schema if f.name != "vector"]
        arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), pa.float32()), dim))
        return pa.Table.from_arrays(arrays, schema=schema)

    # ------------------------------------------------------------------ evaluation baselines
    def accepted_baseline(self, key: str) -> dict[str, Any] | None:
        """The evaluation scores last accepted for ``key`` (a query set and metric), if any."""
        table = self._table(BASELINES)
        if table is None:
            return None
        rows = _scan(table, ["values"], f"key = {_sql_list([key])}").to_pylist()
        return json.loads(rows[-1]["values"]) if rows else None

    def accept_baseline(self, key: str, values: dict[str, Any]) -> None:
        """Record ``values`` as the accepted evaluation for ``key`` (one row per key)."""
        data = pa.table(
            {
                "key": [key],
                "values": [json.dumps(values, sort_keys=True)],
                "accepted_at": [datetime.now(UTC)],
            },
            schema=BASELINES_SCHEMA,
        )
        with self._locked():
            table = self._table(BASELINES)
            if table is None:
                self._create(BASELINES, data)
            else:
                table.merge_insert("key").when_matched_update_all().when_not_matched_insert_all().execute(
                    data
                )

    # ------------------------------------------------------------------ maintenance
    def ensure_scalar_indexes(self) -> list[str]:
        """BTREE indexes on the columns the store looks rows up by, for tables past
        ``SCALAR_INDEX_MIN_ROWS``; returns the ones created now. Rows written after an index was
        built are scanned until the next ``optimize`` folds them in."""
        if self.read_only:
            return []
        created = []
        for name, column in SCALAR_INDEXES:
            table = self._table(name)
            if table is None or table.count_rows() < SCALAR_INDEX_MIN_ROWS:
                continue
            if any(list(index.columns) == [column] for index in table.list_indices()):
                continue
            with self._locked():
                table.create_scalar_index(column, index_type="BTREE", replace=False)
            created.append(f"{name}.{column}")
        return created

    def optimize_table(self, name: str = CHUNKS) -> None:
        """Compact one table and fold new rows into its indexes, keeping its versions (a large write
        leaves many unindexed rows; the nightly :meth:`optimize` also removes old versions)."""
        with self._locked():
            table = self._table(name)
            if table is not None:
                table.optimize(cleanup_older_than=timedelta(days=36500))

    def optimize(self, retention_days: float = 7.0) -> dict[str, int]:
        """Compact every table and delete versions older than ``retention_days``; returns versions kept."""
        kept: dict[str, int] = {}
        with self._locked():
            for name in (CHUNKS, DOCUMENTS, CACHE, VERSIONS, BASELINES):
                table = self._table(name)
                if table is None:
                    continue
                with warnings.catch_warnings():
                    # retention 0 is an explicit request to keep only the latest version
                    warnings.filterwarnings("ignore", message=r"optimize\(cleanup_older_than=0\)")
                    table.optimize(
                        cleanup_older_than=timedelta(days=retention_days),
                        delete_unverified=retention_days <= 0,
                    )
                kept[name] = len(table.list_versions())
        return kept


class _LockContext:
    """Acquire the writer lock with a readable error naming the lock file."""

    def __init__(self, lock: FileLock, path: Path):
        self._lock = lock
        self._path = path
        self._t0 = 0.0

    def __enter__(self) -> _LockContext:
        self._t0 = time.monotonic()
        try:
            self._lock.acquire()
        except Timeout:
            raise StoreLockedError(
                f"store is locked by another writer: {self._path}; "
                "wait or remove it if no mdp process is running"
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
