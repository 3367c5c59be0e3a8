"""LanceDB plumbing shared by the store's parts: one connection, table handles opened once per
store handle, table creation that tolerates a concurrent creator, and scans with SQL filters."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

CHUNKS = "chunks"
DOCUMENTS = "documents"
CACHE = "embedding_cache"
VERSIONS = "index_versions"
BASELINES = "eval_baselines"
STAGING = "staging"
TABLES = (CHUNKS, DOCUMENTS, CACHE, VERSIONS, BASELINES, STAGING)
# Field metadata that makes concurrent merge_insert calls unable to duplicate keys (lance#4585).
PK_META = {b"lance-schema:unenforced-primary-key": b"true"}
LOOKUP_BATCH = 1_000  # keys per `col IN (...)` query
SCALAR_INDEX_MIN_ROWS = 10_000  # below this a scan is as fast as an index
# (table, column) pairs that the store looks rows up by
SCALAR_INDEXES = ((CHUNKS, "id"), (CHUNKS, "document_id"), (DOCUMENTS, "document_id"), (CACHE, "text_hash"))


class StoreNotFoundError(FileNotFoundError):
    """A store opened read-only does not exist (reading never creates one)."""


class NotAStoreError(NotADirectoryError):
    """The store path names something that is not a folder."""


def sql_quote(value: str) -> str:
    """``value`` as a SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def in_filter(column: str, values: Iterable[str]) -> str:
    return f"{column} IN ({', '.join(sql_quote(v) for v in values)})"


def batched(values: Sequence[str], size: int = LOOKUP_BATCH) -> Iterator[Sequence[str]]:
    """``values`` in slices of ``size``: a ``col IN (...)`` filter stays short and its result small."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def scan(table: Any, columns: Sequence[str] | None = None, where: str | None = None) -> pa.Table:
    """Read rows of a LanceDB table (no pylance needed): optional projection and SQL filter."""
    if columns is None and where is None:
        return table.to_arrow()
    query = table.search()
    if where:
        query = query.where(where)
    if columns:
        query = query.select(list(columns))
    return query.limit(None).to_arrow()


def empty(schema: pa.Schema, columns: Sequence[str] | None = None) -> pa.Table:
    """What a scan of a table that does not exist yet returns."""
    return schema.empty_table() if columns is None else pa.table({c: [] for c in columns})


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def local_path(uri: str) -> Path:
    return Path(uri[len("file://") :] if uri.startswith("file://") else uri)


class LanceTables:
    """One LanceDB connection and the table handles opened on it (each opened once: reopening a
    table per read costs time, and every handle caches its own metadata)."""

    def __init__(self, uri: str, *, read_only: bool, storage_options: dict[str, str] | None = None):
        self.uri = uri
        if is_local(uri):
            root = local_path(uri)
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
        import lancedb  # here, not at import: the plan and its tests need no LanceDB

        # Strong consistency: every read checks for commits made by other processes.
        self._db = lancedb.connect(
            uri, read_consistency_interval=timedelta(0), storage_options=storage_options or None
        )
        self._open: dict[str, Any] = {}

    def get(self, name: str) -> Any | None:
        """The table ``name``, or None while it does not exist."""
        table = self._open.get(name)
        if table is not None:
            return table
        try:
            table = self._db.open_table(name)
        except (ValueError, FileNotFoundError):
            return None
        self._open[name] = table
        return table

    def create(self, name: str, data: pa.Table) -> Any:
        table = self._db.create_table(name, data=data, exist_ok=True)
        self._open[name] = table
        if data.num_rows and table.count_rows() == 0:
            # exist_ok returned a table another writer created empty; add our rows.
            table.add(data)
        return table

    def add(self, name: str, data: pa.Table) -> Any:
        """Append ``data``, creating the table on the first write."""
        table = self.get(name)
        if table is None:
            return self.create(name, data)
        table.add(data)
        return table

    def upsert(self, name: str, key: str, data: pa.Table) -> Any:
        """Insert or replace ``data`` by ``key``, creating the table on the first write."""
        table = self.get(name)
        if table is None:
            return self.create(name, data)
        table.merge_insert(key).when_matched_update_all().when_not_matched_insert_all().execute(data)
        return table

    def checkout(self, name: str, version: int) -> Any:
        """A handle of its own on ``version`` of table ``name`` (the shared handle stays at the latest)."""
        table = self._db.open_table(name)
        table.checkout(int(version))
        return table

    def size_bytes(self) -> int:
        if is_local(self.uri):
            root = local_path(self.uri)
            return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        fs, path = pafs.FileSystem.from_uri(self.uri)
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
        return sum(i.size or 0 for i in infos if i.type == pafs.FileType.File)
