"""What a run reports: per source and in total, every count adding up (discovered = chunked +
quarantined), from the manifest after the run."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from mdp.store import VectorStore


@dataclass
class SourceReport:
    source: str
    discovered: int
    chunked_documents: int
    quarantined: int
    chunks: int
    embedded: int
    cache_hits: int
    parsed_files: int
    unchanged_files: int
    deleted_documents: int
    index_version: int | None
    quarantine: list[dict[str, str]]
    by_format: dict[str, dict[str, int]] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage of this run

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


_COUNT_KEYS = ("discovered", "chunked_documents", "quarantined")


def source_totals(store: VectorStore, source: str) -> dict[str, Any]:
    """The source's state after a run, from the manifest: every document is chunked or quarantined.
    Counted in Arrow; only the quarantined documents become Python objects."""
    data = store.manifest_table(source, ["document_id", "path", "format", "status", "n_chunks", "reason"])
    if not data.num_rows:
        return {
            "discovered": 0,
            "chunked_documents": 0,
            "quarantined": 0,
            "chunks": 0,
            "by_format": {},
            "quarantine": [],
        }
    chunked = pc.equal(data["status"], "chunked")
    formats = pc.fill_null(pc.if_else(pc.equal(data["format"], ""), None, data["format"]), "unknown")
    by_format: dict[str, dict[str, int]] = {}
    groups = pa.table({"format": formats, "chunked": chunked}).group_by(["format", "chunked"])
    for row in groups.aggregate([("chunked", "count")]).to_pylist():  # one row per (format, status)
        counts = by_format.setdefault(row["format"], dict.fromkeys(_COUNT_KEYS, 0))
        counts["discovered"] += row["chunked_count"]
        counts["chunked_documents" if row["chunked"] else "quarantined"] += row["chunked_count"]
    quarantined = data.filter(pc.equal(data["status"], "quarantined")).sort_by("document_id")
    n_chunked = int(pc.sum(chunked.cast("int64")).as_py() or 0)
    return {
        "discovered": data.num_rows,
        "chunked_documents": n_chunked,
        "quarantined": quarantined.num_rows,
        "chunks": int(pc.sum(pc.if_else(chunked, data["n_chunks"], 0)).as_py() or 0),
        "by_format": dict(sorted(by_format.items())),
        "quarantine": [
            {"path": r["path"], "reason": r["reason"], "document_id": r["document_id"]}
            for r in quarantined.select(["path", "reason", "document_id"]).to_pylist()
        ],
    }


@dataclass
class IngestReport:
    run_id: str
    store: str
    sources: list[SourceReport]
    index_version: int | None
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        total = lambda key: sum(getattr(s, key) for s in self.sources)  # noqa: E731
        by_format: dict[str, dict[str, int]] = {}
        for source in self.sources:
            for fmt, counts in source.by_format.items():
                into = by_format.setdefault(fmt, dict.fromkeys(_COUNT_KEYS, 0))
                for key in _COUNT_KEYS:
                    into[key] += counts[key]
        return {
            "run_id": self.run_id,
            "store": self.store,
            "discovered": total("discovered"),
            "chunked_documents": total("chunked_documents"),
            "quarantined": total("quarantined"),
            "chunks": total("chunks"),
            "embedded": total("embedded"),
            "cache_hits": total("cache_hits"),
            "parsed_files": total("parsed_files"),
            "unchanged_files": total("unchanged_files"),
            "deleted_documents": total("deleted_documents"),
            "by_format": dict(sorted(by_format.items())),
            "index_version": self.index_version,
            "stages": {
                stage: round(sum(s.stages.get(stage, 0.0) for s in self.sources), 3)
                for stage in dict.fromkeys(k for s in self.sources for k in s.stages)
            },
            "quarantine": [q for s in self.sources for q in s.quarantine],
            "sources": {s.source: s.as_dict() for s in self.sources},
            "seconds": round(self.seconds, 3),
        }


class StageClock:
    """Wall-clock seconds per stage, for reports ({"parse": 1.234, ...})."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + now - self._last, 3)
        self._last = now
