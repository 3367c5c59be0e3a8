"""The manifest (``documents`` table): one row per document, chunked or quarantined, with the
hashes that decide whether the next run must touch it. The row is :class:`ManifestEntry`; the
table's Arrow schema is derived from its fields, and :func:`unchanged` is the skip rule."""

from __future__ import annotations

import hashlib
import typing
from collections.abc import Iterable, Sequence
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mdp.ids import relpath_from_storable, storable_relpath
from mdp.store.lance import DOCUMENTS, PK_META, LanceTables, batched, empty, in_filter, scan, sql_quote

STATUS_CHUNKED = "chunked"
STATUS_QUARANTINED = "quarantined"


@dataclass(frozen=True, kw_only=True)
class ManifestEntry:
    """One manifest row. Text columns hold what :mod:`mdp.ids` makes storable; ``relpath`` is held
    decoded here and escaped on the way to the table (``storable_relpath``)."""

    document_id: str = field(metadata={"key": True})
    source: str
    path: str
    relpath: str
    external_id: str = ""
    content_hash: str
    file_hash: str  # sha256 of the containing file: discovery compares it to skip unchanged files
    format: str
    status: str
    n_chunks: int = 0
    reason: str = ""  # why it is quarantined (readable, with the fix)
    model_id: str
    model_version: str
    run_id: str
    updated_at: datetime
    chunks_digest: str = ""  # chunks_digest() of its chunks (vectors excluded)
    stage: str = ""  # the stage that quarantined it
    line: int | None = None  # the JSONL line it came from, for a quarantined line


_ARROW_TYPES: dict[object, pa.DataType] = {
    str: pa.string(),
    int: pa.int32(),
    int | None: pa.int32(),
    datetime: pa.timestamp("us", tz="UTC"),
}


def _schema_of(row_type: type) -> pa.Schema:
    hints = typing.get_type_hints(row_type)
    return pa.schema(
        [
            pa.field(
                f.name,
                _ARROW_TYPES[hints[f.name]],
                nullable=not f.metadata.get("key"),
                metadata=PK_META if f.metadata.get("key") else None,
            )
            for f in fields(row_type)
        ]
    )


DOCUMENTS_SCHEMA = _schema_of(ManifestEntry)
_NAMES = tuple(f.name for f in fields(ManifestEntry))
_DEFAULTS = {f.name: f.default for f in fields(ManifestEntry) if f.default is not MISSING}


def unchanged(old: ManifestEntry | None, new: ManifestEntry) -> bool:
    """Whether ``new`` may be skipped because the manifest already holds ``old`` for it.

    - ``status``: a document that moved between chunked and quarantined gains or loses chunks.
    - ``content_hash``: the document's own bytes (or canonical record) changed.
    - ``file_hash``: the containing file changed (say, another line of a JSONL file); discovery
      compares it to skip unchanged files, so a stale one would re-parse the file every run.
    - ``chunks_digest``: same content, other chunks (chunking settings or tokenizer changed).
    - ``model_id``, ``model_version``: the vectors came from another model. Chunked only: a
      quarantined document has no vectors, so a new model does not rewrite the quarantine.
    - ``reason``: a quarantined document now fails for another reason, which the user must see.
    """
    if old is None or old.status != new.status:
        return False
    same = (old.content_hash, old.file_hash, old.chunks_digest, old.reason) == (
        new.content_hash,
        new.file_hash,
        new.chunks_digest,
        new.reason,
    )
    if new.status == STATUS_QUARANTINED:
        return same
    return same and (old.model_id, old.model_version) == (new.model_id, new.model_version)


def entries_to_arrow(rows: Sequence[ManifestEntry]) -> pa.Table:
    columns = {name: [getattr(row, name) for row in rows] for name in _NAMES}
    columns["relpath"] = [storable_relpath(r) for r in columns["relpath"]]
    return pa.table(columns, schema=DOCUMENTS_SCHEMA)


def entries_from_arrow(data: pa.Table) -> dict[str, ManifestEntry]:
    out = {}
    for row in data.to_pylist():
        values = {name: row.get(name, _DEFAULTS.get(name)) for name in _NAMES}
        values["relpath"] = relpath_from_storable(values["relpath"] or "")  # see mdp.ids
        out[row["document_id"]] = ManifestEntry(**values)
    return out


class Manifest:
    """Reads and writes of the ``documents`` table."""

    def __init__(self, tables: LanceTables):
        self._tables = tables

    def version(self) -> int:
        table = self._tables.get(DOCUMENTS)
        return 0 if table is None else int(table.version)

    def arrow(self, source: str | None = None, columns: Sequence[str] | None = None) -> pa.Table:
        table = self._tables.get(DOCUMENTS)
        if table is None:
            return empty(DOCUMENTS_SCHEMA, columns)
        return scan(table, columns, None if source is None else f"source = {sql_quote(source)}")

    def entries(self, source: str | None = None) -> dict[str, ManifestEntry]:
        return entries_from_arrow(self.arrow(source))

    def lookup(self, document_ids: Iterable[str]) -> dict[str, ManifestEntry]:
        """Entries of these documents only (``document_id IN (...)`` in batches)."""
        table = self._tables.get(DOCUMENTS)
        wanted = list(dict.fromkeys(document_ids))
        out: dict[str, ManifestEntry] = {}
        if table is not None:
            for part in batched(wanted):
                out.update(entries_from_arrow(scan(table, None, in_filter("document_id", part))))
        return out

    def count(self, status: str) -> int:
        table = self._tables.get(DOCUMENTS)
        return 0 if table is None else int(table.count_rows(f"status = {sql_quote(status)}"))

    def quarantine(self, source: str | None = None) -> pd.DataFrame:
        data = self.arrow(source)
        return data.filter(pc.equal(data["status"], STATUS_QUARANTINED)).to_pandas()

    def digest(self, source: str | None = None) -> str:
        """sha256 over the sorted (document_id, content_hash) pairs, one ``id<TAB>hash<LF>`` line
        each; computed in Arrow (no Python object per document)."""
        data = self.arrow(source, ["document_id", "content_hash"])
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

    def write(self, rows: Sequence[ManifestEntry], deleted_ids: Sequence[str]) -> None:
        """Upsert ``rows`` by document id, then remove the rows of ``deleted_ids``."""
        if rows:
            self._tables.upsert(DOCUMENTS, "document_id", entries_to_arrow(rows))
        table = self._tables.get(DOCUMENTS)
        if deleted_ids and table is not None:
            table.delete(in_filter("document_id", deleted_ids))
