"""The version log (``index_versions``: one row per write of ``apply``, naming the run, the counts
and the manifest digest behind each chunks version) and the accepted evaluation baselines
(``eval_baselines``: one row per query set and metric)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mdp.store.chunks import ChunkTable
from mdp.store.lance import BASELINES, PK_META, VERSIONS, LanceTables, scan, sql_quote
from mdp.store.plan import ApplyResult, WriteContext

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


@dataclass(frozen=True)
class VersionInfo:
    version: int
    timestamp: datetime
    rows: int | None
    run_id: str | None = None
    source: str | None = None
    manifest_digest: str | None = None


class VersionLog:
    def __init__(self, tables: LanceTables):
        self._tables = tables

    def append(
        self,
        result: ApplyResult,
        context: WriteContext,
        *,
        chunks: int,
        documents_version: int,
        manifest_digest: str,
    ) -> None:
        """Record one write of ``apply``: what it did, the run, and the state it left."""
        row = {
            "version": result.version,
            "documents_version": documents_version,
            "run_id": context.run_id,
            "source": context.source,
            "model_id": context.model_id,
            "model_version": context.model_version,
            "chunks": chunks,
            "chunks_written": result.chunks_written,
            "chunks_deleted": result.chunks_deleted,
            "documents_written": result.documents_written,
            "documents_deleted": result.documents_deleted,
            "manifest_digest": manifest_digest,
            "timestamp": context.now,
        }
        self._tables.add(VERSIONS, pa.Table.from_pylist([row], schema=VERSIONS_SCHEMA))

    def frame(self) -> pd.DataFrame:
        table = self._tables.get(VERSIONS)
        return (VERSIONS_SCHEMA.empty_table() if table is None else scan(table)).to_pandas()

    def history(self, chunks: ChunkTable) -> list[VersionInfo]:
        """The chunks table's versions still on disk, with the run that wrote each (when known)."""
        table = chunks.table()
        if table is None:
            return []
        log: dict[int, dict[str, Any]] = {}
        vtable = self._tables.get(VERSIONS)
        if vtable is not None:
            for row in scan(vtable).to_pylist():
                log.setdefault(int(row["version"]), row)  # the run that produced the version
        out = []
        for v in table.list_versions():
            number = int(v["version"])
            row = log.get(number) or {}
            ts = v["timestamp"]
            if isinstance(ts, datetime) and ts.tzinfo is None:
                ts = ts.replace(tzinfo=UTC)
            rows = int(row["chunks"]) if row else chunks.count(number)
            digest = row.get("manifest_digest")
            out.append(VersionInfo(number, ts, rows, row.get("run_id"), row.get("source"), digest))
        return out

    def rows_changed_since(self, version: int) -> int:
        """Chunks written or deleted by the writes after ``version``: an upper bound on the rows
        that differ, read without touching the chunks table."""
        table = self._tables.get(VERSIONS)
        if table is None:
            return 0
        data = scan(table, ["chunks_written", "chunks_deleted"], f"version > {int(version)}")
        written = pc.sum(data["chunks_written"]).as_py() or 0
        return int(written) + int(pc.sum(data["chunks_deleted"]).as_py() or 0)


class Baselines:
    """The evaluation scores last accepted per key (a query set and metric)."""

    def __init__(self, tables: LanceTables):
        self._tables = tables

    def get(self, key: str) -> dict[str, Any] | None:
        table = self._tables.get(BASELINES)
        if table is None:
            return None
        rows = scan(table, ["values"], f"key = {sql_quote(key)}").to_pylist()
        return json.loads(rows[-1]["values"]) if rows else None

    def put(self, key: str, values: dict[str, Any]) -> None:
        """Record ``values`` for ``key`` (one row per key; the caller holds the writer lock)."""
        data = pa.table(
            {
                "key": [key],
                "values": [json.dumps(values, sort_keys=True)],
                "accepted_at": [datetime.now(UTC)],
            },
            schema=BASELINES_SCHEMA,
        )
        self._tables.upsert(BASELINES, "key", data)
