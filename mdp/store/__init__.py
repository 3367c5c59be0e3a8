"""The on-disk vector store: LanceDB embedded, one folder (or an object-store URI).

Callers use :class:`VectorStore`; behind it each part owns one job:

=====================  ===============================================================
``lance.py``           LanceDB plumbing: the connection, table handles opened once,
                       creation, scans with SQL filters, batched ``IN`` lookups
``chunks.py``          ``chunks``: schema, rows from chunks + vectors, the one commit that
                       replaces or removes documents' chunks, reads and time travel
``manifest.py``        ``documents``: ``ManifestEntry`` (the Arrow schema derived from it),
                       the skip rule ``unchanged``, lookups, digest, quarantine
``cache.py``           ``embedding_cache``: ``(model_key, text_hash) -> vector``
``versions.py``        ``index_versions`` (one row per write) and ``eval_baselines``
``staging.py``         ``staging``: one asset's output for the next, per (source, stage)
``lock.py``            the writer lock (one writer per store)
``plan.py``            the pure half of ``apply``: from manifest entries and records to
                       an ``ApplyPlan`` (no I/O)
``vector_store.py``    the facade: the parts on one connection, the lock, plan + commit
=====================  ===============================================================

Writes go through :meth:`VectorStore.apply`, which replaces every changed document's chunks in one
commit on ``chunks`` and then updates the manifest. One writer at a time: a file lock in the store
folder is held during ``apply``, ``put_cached``, ``accept_baseline`` and ``optimize``.
"""

from mdp.store.cache import CACHE_SCHEMA
from mdp.store.chunks import MissingVectorsError, chunks_digest, chunks_schema
from mdp.store.lance import (
    BASELINES,
    CACHE,
    CHUNKS,
    DOCUMENTS,
    LOOKUP_BATCH,
    PK_META,
    SCALAR_INDEX_MIN_ROWS,
    SCALAR_INDEXES,
    STAGING,
    VERSIONS,
    NotAStoreError,
    StoreNotFoundError,
)
from mdp.store.lock import LOCK_NAME, ReadOnlyStoreError, StoreLockedError
from mdp.store.manifest import DOCUMENTS_SCHEMA, STATUS_CHUNKED, STATUS_QUARANTINED, ManifestEntry, unchanged
from mdp.store.plan import ApplyPlan, ApplyResult, plan_apply
from mdp.store.vector_store import VectorStore
from mdp.store.versions import BASELINES_SCHEMA, VERSIONS_SCHEMA, VersionInfo

__all__ = [
    "BASELINES",
    "BASELINES_SCHEMA",
    "CACHE",
    "CACHE_SCHEMA",
    "CHUNKS",
    "DOCUMENTS",
    "DOCUMENTS_SCHEMA",
    "LOCK_NAME",
    "LOOKUP_BATCH",
    "PK_META",
    "SCALAR_INDEXES",
    "SCALAR_INDEX_MIN_ROWS",
    "STATUS_CHUNKED",
    "STATUS_QUARANTINED",
    "STAGING",
    "VERSIONS",
    "VERSIONS_SCHEMA",
    "ApplyPlan",
    "ApplyResult",
    "ManifestEntry",
    "MissingVectorsError",
    "NotAStoreError",
    "ReadOnlyStoreError",
    "StoreLockedError",
    "StoreNotFoundError",
    "VectorStore",
    "VersionInfo",
    "chunks_digest",
    "chunks_schema",
    "plan_apply",
    "unchanged",
]
