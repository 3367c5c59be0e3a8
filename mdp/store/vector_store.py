"""``VectorStore``: the facade over the store's parts that every caller uses (see the package
docstring for the parts). It opens them on one LanceDB connection, holds the writer lock around
writes, and runs ``apply`` as a pure plan followed by its commit."""

from __future__ import annotations

import os
import signal
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mdp.config import StoreConfig
from mdp.records import ChunkedDocument, QuarantinedDocument
from mdp.store.cache import EmbeddingCache
from mdp.store.chunks import ChunkTable, chunk_rows
from mdp.store.lance import CHUNKS, SCALAR_INDEX_MIN_ROWS, SCALAR_INDEXES, TABLES, LanceTables
from mdp.store.lock import WriterLock
from mdp.store.manifest import STATUS_CHUNKED, Manifest, ManifestEntry
from mdp.store.plan import ApplyPlan, ApplyResult, check_records, plan_apply, touched_ids
from mdp.store.staging import StagingArea
from mdp.store.versions import Baselines, VersionInfo, VersionLog

_SHARED: dict[tuple[Any, ...], VectorStore] = {}
_SHARED_LOCK = threading.Lock()


def _fault_point(name: str) -> None:
    """Crash-safety tests kill the process here (MDP_FAULT_POINT=<name>): the worst moment to die."""
    if os.environ.get("MDP_FAULT_POINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


class VectorStore:
    """The store's one entry point: chunk table, manifest, embedding cache, version log and
    baselines (a part each, on one LanceDB connection) behind one writer lock."""

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
        self._tables = LanceTables(self.uri, read_only=read_only, storage_options=storage_options)
        self._lock = WriterLock(self.uri, read_only=read_only, timeout_s=lock_timeout_s)
        self.lock_path = self._lock.path
        self._chunks = ChunkTable(self._tables)
        self._manifest = Manifest(self._tables)
        self._cache = EmbeddingCache(self._tables)
        self._log = VersionLog(self._tables)
        self._baselines = Baselines(self._tables)
        self._staging = StagingArea(self._tables)

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

    def __repr__(self) -> str:
        return f"VectorStore({self.uri!r}, read_only={self.read_only})"

    # ------------------------------------------------------------------ chunks
    def version(self) -> int:
        """Version of the chunks table; 0 while the store has no chunks table."""
        return self._chunks.version()

    def count_chunks(self, version: int | None = None) -> int:
        return self._chunks.count(version)

    def lance_table(self, name: str = CHUNKS) -> Any:
        """The underlying LanceDB table (native search, benchmarks); raises if it does not exist yet."""
        table = self._tables.get(name)
        if table is None:
            raise LookupError(f"store {self.uri} has no {name!r} table yet: apply some documents first")
        return table

    def checkout(self, version: int) -> Any:
        """A LanceDB handle on ``version`` of the chunks table (read-only, its own object)."""
        return self._chunks.checkout(version)

    def chunks_arrow(self, version: int | None = None, columns: Sequence[str] | None = None) -> pa.Table:
        return self._chunks.arrow(version, columns)

    def chunks_frame(self, version: int | None = None, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Chunks as a DataFrame, at ``version`` (time travel) or the latest."""
        return self.chunks_arrow(version, columns).to_pandas()

    # ------------------------------------------------------------------ manifest
    def manifest(self, source: str | None = None) -> dict[str, ManifestEntry]:
        return self._manifest.entries(source)

    def manifest_table(self, source: str | None = None, columns: Sequence[str] | None = None) -> pa.Table:
        """The manifest (one source's, and only ``columns`` when given) as an Arrow table."""
        return self._manifest.arrow(source, columns)

    def manifest_entries(self, document_ids: Iterable[str]) -> dict[str, ManifestEntry]:
        """Manifest entries of these documents only (``document_id IN (...)`` in batches)."""
        return self._manifest.lookup(document_ids)

    def count_documents(self, status: str = STATUS_CHUNKED) -> int:
        return self._manifest.count(status)

    def quarantine(self, source: str | None = None) -> pd.DataFrame:
        return self._manifest.quarantine(source)

    def manifest_digest(self, source: str | None = None) -> str:
        """sha256 over the sorted (document_id, content_hash) pairs of the manifest."""
        return self._manifest.digest(source)

    # ------------------------------------------------------------------ version log
    def versions(self) -> list[VersionInfo]:
        """Versions of the chunks table still on disk, with the run that wrote each (when known)."""
        return self._log.history(self._chunks)

    def rows_changed_since(self, version: int) -> int:
        """Chunks written or deleted by the writes after ``version`` (an upper bound, from the log)."""
        return self._log.rows_changed_since(version)

    def version_log(self) -> pd.DataFrame:
        return self._log.frame()

    def size_bytes(self) -> int:
        return self._tables.size_bytes()

    # ------------------------------------------------------------------ embedding cache
    def cache_version(self) -> int:
        """A version of the embedding cache's content (its row count; the cache only grows)."""
        return self._cache.version()

    def get_cached(self, model_key: str, text_hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """Vectors already computed by ``model_key`` for these text hashes (missing ones left out).
        Only the rows asked for are read, never the whole cache."""
        return self._cache.get(model_key, text_hashes)

    def put_cached(self, model_key: str, text_hashes: Sequence[str], vectors: np.ndarray) -> int:
        """Store vectors for text hashes not cached yet; returns how many rows were written."""
        if not len(text_hashes):
            return self._cache.put(model_key, text_hashes, vectors)  # nothing to add: no lock needed
        with self._lock.held():
            return self._cache.put(model_key, text_hashes, vectors)

    # ------------------------------------------------------------------ writing
    def apply(
        self,
        source: str,
        documents: Sequence[ChunkedDocument],
        quarantined: Sequence[QuarantinedDocument] = (),
        deleted_document_ids: Sequence[str] = (),
        *,
        model_id: str,
        model_version: str,
        run_id: str = "",
        vectors: Mapping[str, np.ndarray] | None = None,
    ) -> ApplyResult:
        """Bring the store in line with one source's changes.

        Every changed document's chunks are replaced, and deleted or newly quarantined documents'
        chunks removed, in ONE commit on the chunks table; the manifest is updated after it. A crash
        between the two leaves the manifest behind the chunks, so the next run re-applies those
        documents (apply is idempotent). Documents whose manifest entry already matches are skipped
        (``manifest.unchanged``); when nothing differs nothing is written and the version stays.

        ``vectors`` maps a chunk's text hash to its vector. Without it the vectors of the chunks
        actually written are read from the embedding cache under ``f"{model_id}@{model_version}"``
        (unchanged documents need none); a chunk without a vector is refused before any commit.
        """
        check_records(source, documents, quarantined)
        with self._lock.held():
            manifest = self._manifest.lookup(touched_ids(documents, quarantined, deleted_document_ids))
            plan = plan_apply(
                manifest,
                documents,
                quarantined,
                deleted_document_ids,
                source=source,
                model_id=model_id,
                model_version=model_version,
                run_id=run_id,
                now=datetime.now(UTC),
            )
            if plan.empty:
                return ApplyResult(self.version(), 0, 0, 0, 0)
            return self._commit(plan, vectors)

    def _commit(self, plan: ApplyPlan, vectors: Mapping[str, np.ndarray] | None) -> ApplyResult:
        """Execute ``plan``: one commit on the chunks table, then the manifest, then the log."""
        data = self._chunk_rows(plan, vectors) if plan.chunk_parts else None
        chunks_deleted = self._chunks.commit(plan.replace_ids, data) if plan.replace_ids else 0
        _fault_point("after_chunks_commit")
        self._manifest.write(plan.rows, plan.deleted_ids)
        result = ApplyResult(
            self.version(), plan.chunks_written, chunks_deleted, len(plan.rows), len(plan.deleted_ids)
        )
        self._log.append(
            result,
            plan.context,
            chunks=self.count_chunks(),
            documents_version=self._manifest.version(),
            manifest_digest=self.manifest_digest(),
        )
        return result

    def _chunk_rows(self, plan: ApplyPlan, vectors: Mapping[str, np.ndarray] | None) -> pa.Table:
        """The rows of the chunks ``plan`` writes, their vectors from ``vectors`` or else from the
        embedding cache (only these chunks' hashes are looked up); refuses chunks without one."""
        where = "the vectors passed to apply"
        if vectors is None:
            model_key = f"{plan.context.model_id}@{plan.context.model_version}"
            vectors = self._cache.get(model_key, plan.text_hashes())
            where = f"the embedding cache ({model_key})"
        return chunk_rows(plan.chunk_parts, vectors, where)

    # ------------------------------------------------------------------ evaluation baselines
    def accepted_baseline(self, key: str) -> dict[str, Any] | None:
        """The evaluation scores last accepted for ``key`` (a query set and metric), if any."""
        return self._baselines.get(key)

    def accept_baseline(self, key: str, values: dict[str, Any]) -> None:
        """Record ``values`` as the accepted evaluation for ``key`` (one row per key)."""
        with self._lock.held():
            self._baselines.put(key, values)

    # ------------------------------------------------------------------ staging
    def put_staged(self, source: str, stage: str, run_id: str, payload: str) -> None:
        """Stage one asset's output for the next (replaces the previous run's for this source and stage)."""
        with self._lock.held():
            self._staging.put(source, stage, run_id, payload)

    def get_staged(self, source: str, stage: str, run_id: str) -> str | None:
        """The payload ``run_id`` staged for (source, stage); None once a later run replaced it."""
        return self._staging.get(source, stage, run_id)

    # ------------------------------------------------------------------ maintenance
    def ensure_scalar_indexes(self) -> list[str]:
        """BTREE indexes on the columns the store looks rows up by, for tables past
        ``SCALAR_INDEX_MIN_ROWS``; returns the ones created now. Rows written after an index was
        built are scanned until the next ``optimize`` folds them in."""
        if self.read_only:
            return []
        created = []
        for name, column in SCALAR_INDEXES:
            table = self._tables.get(name)
            if table is None or table.count_rows() < SCALAR_INDEX_MIN_ROWS:
                continue
            if any(list(index.columns) == [column] for index in table.list_indices()):
                continue
            with self._lock.held():
                table.create_scalar_index(column, index_type="BTREE", replace=False)
            created.append(f"{name}.{column}")
        return created

    def optimize_table(self, name: str = CHUNKS) -> None:
        """Compact one table and fold new rows into its indexes, keeping its versions (a large write
        leaves many unindexed rows; the nightly :meth:`optimize` also removes old versions)."""
        with self._lock.held():
            table = self._tables.get(name)
            if table is not None:
                table.optimize(cleanup_older_than=timedelta(days=36500))

    def optimize(self, retention_days: float = 7.0) -> dict[str, int]:
        """Compact every table and delete versions older than ``retention_days``; returns versions kept."""
        kept: dict[str, int] = {}
        with self._lock.held():
            for name in TABLES:
                table = self._tables.get(name)
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
