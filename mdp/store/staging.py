"""``staging``: what one Dagster asset hands the next, one payload per (source, stage), replaced by
the next run's (see mdp/stages/staging.py for what a payload holds)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow as pa

from mdp.store.lance import PK_META, STAGING, LanceTables, scan, sql_quote

STAGING_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False, metadata=PK_META),  # [source, stage] as JSON
        pa.field("source", pa.string()),
        pa.field("stage", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("payload", pa.large_string()),
        pa.field("staged_at", pa.timestamp("us", tz="UTC")),
    ]
)


def staging_key(source: str, stage: str) -> str:
    return json.dumps([source, stage], ensure_ascii=False)


class StagingArea:
    def __init__(self, tables: LanceTables):
        self._tables = tables

    def put(self, source: str, stage: str, run_id: str, payload: str) -> None:
        """Replace the staged payload of (source, stage) (the caller holds the writer lock)."""
        row = {
            "key": staging_key(source, stage),
            "source": source,
            "stage": stage,
            "run_id": run_id,
            "payload": payload,
            "staged_at": datetime.now(UTC),
        }
        self._tables.upsert(STAGING, "key", pa.Table.from_pylist([row], schema=STAGING_SCHEMA))

    def get(self, source: str, stage: str, run_id: str) -> str | None:
        """The payload staged for (source, stage) by ``run_id``; None when another run replaced it."""
        table = self._tables.get(STAGING)
        if table is None:
            return None
        where = f"key = {sql_quote(staging_key(source, stage))} AND run_id = {sql_quote(run_id)}"
        rows = scan(table, ["payload"], where).to_pylist()
        return rows[-1]["payload"] if rows else None
