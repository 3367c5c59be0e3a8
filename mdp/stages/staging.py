"""What one asset hands the next through Dagster: a small reference, the payload kept in the store.

Dagster's IO manager stores only a :class:`StageRef` (a few hundred bytes of JSON). The stage's
output itself (the discovery plan, the parsed or validated documents) is written once to the store's
staging table, one payload per (source, stage), replaced by the next run; vectors are never staged:
the embedding cache holds them. So a multi-process or per-pod executor needs no shared disk beyond the
store, and no document text or vector is pickled into ``$DAGSTER_HOME/storage``.

The in-process path (``run_ingest``) passes the objects directly and stages nothing.
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from mdp.records import ChunkedDocument, QuarantinedDocument
from mdp.schemas import Chunk, Document, QuarantineRecord
from mdp.stages.batches import ChunkedBatch
from mdp.stages.discover import DiscoveryPlan
from mdp.stages.embed import EmbeddedBatch
from mdp.stages.parse import ParsedBatch
from mdp.stages.validate import ValidatedBatch

if TYPE_CHECKING:
    from mdp.store import VectorStore

STAGES: dict[str, type[Any]] = {
    "discovered": DiscoveryPlan,
    "parsed": ParsedBatch,
    "validated": ValidatedBatch,
    "embedded": EmbeddedBatch,
}
SCHEMAS = {"document": Document, "chunk": Chunk, "quarantine_record": QuarantineRecord}
B = TypeVar("B")


class StaleStageError(LookupError):
    """The staged output a reference names was replaced by a later run, or never written."""


class StageRef(BaseModel):
    """A stage's output, by reference: where its payload is, and counts for the UI."""

    source: str
    stage: str
    run_id: str
    documents: int = 0
    chunks: int = 0
    quarantined: int = 0
    base: StageRef | None = None  # the stage whose documents this one shares (embedded -> validated)


def save(store: VectorStore, stage: str, output: Any, run_id: str, base: StageRef | None = None) -> StageRef:
    """Stage ``output`` (a plan or a batch) for the next asset; returns the reference to hand over.
    With ``base``, the batch's documents are those of ``base`` and are not written again."""
    if isinstance(output, DiscoveryPlan):
        payload: dict[str, Any] = {"plan": output.model_dump(mode="json")}
        ref = StageRef(source=output.source, stage=stage, run_id=run_id, documents=len(output.files))
    else:
        payload = {"header": _header(output), "schemas": schema_versions()}
        if base is None:
            payload["documents"] = [_chunked_json(d) for d in output.documents]
            payload["quarantine"] = [_quarantined_json(q) for q in output.quarantine]
        ref = StageRef(
            source=output.source,
            stage=stage,
            run_id=run_id,
            documents=len(output.documents),
            chunks=output.chunk_count,
            quarantined=len(output.quarantine),
            base=base,
        )
    store.put_staged(ref.source, stage, run_id, json.dumps(payload, ensure_ascii=False))
    return ref


def load(store: VectorStore, ref: StageRef, kind: type[B]) -> B:
    """The output a reference names, as ``kind`` (DiscoveryPlan, ParsedBatch, ...)."""
    payload = _payload(store, ref.source, ref.stage, ref.run_id)
    if kind is DiscoveryPlan:
        return DiscoveryPlan.model_validate(payload["plan"])  # type: ignore[return-value]
    if ref.base is not None:
        shared = _payload(store, ref.base.source, ref.base.stage, ref.base.run_id)
        payload = {**payload, "documents": shared["documents"], "quarantine": shared["quarantine"]}
    return kind(  # type: ignore[call-arg]
        **payload["header"],
        documents=[_chunked(d) for d in payload["documents"]],
        quarantine=[_quarantined(q) for q in payload["quarantine"]],
    )


def staged_schema_versions(store: VectorStore, ref: StageRef) -> dict[str, str]:
    """The schema versions the staged records were written with (for the schema version check)."""
    origin = ref.base or ref
    return dict(_payload(store, origin.source, origin.stage, origin.run_id).get("schemas", {}))


def schema_versions() -> dict[str, str]:
    return {name: model.schema_version for name, model in SCHEMAS.items()}


# -- payloads ---------------------------------------------------------------------------------


def _payload(store: VectorStore, source: str, stage: str, run_id: str) -> dict[str, Any]:
    text = store.get_staged(source, stage, run_id)
    if text is None:
        raise StaleStageError(
            f"the {stage} output of source {source!r} from run {run_id} is no longer staged (a later run "
            "replaced it): materialize the source again from raw_documents"
        )
    return json.loads(text)


def _header(batch: ChunkedBatch) -> dict[str, Any]:
    """The batch's scalar fields (counts, model, settings): everything but its documents."""
    skip = {"documents", "quarantine", "vectors"}
    return {f.name: getattr(batch, f.name) for f in fields(batch) if f.name not in skip}


def _chunked_json(item: ChunkedDocument) -> dict[str, Any]:
    return {
        "document": item.document.model_dump(mode="json"),
        "chunks": [c.model_dump(mode="json", exclude={"text_hash"}) for c in item.chunks],
        "file_hash": item.file_hash,
    }


def _chunked(data: dict[str, Any]) -> ChunkedDocument:
    return ChunkedDocument(
        Document.model_validate(data["document"]),
        [Chunk.model_validate(c) for c in data["chunks"]],
        data["file_hash"],
    )


def _quarantined_json(item: QuarantinedDocument) -> dict[str, Any]:
    document = item.document.model_dump(mode="json") if item.document is not None else None
    return {"record": item.record.model_dump(mode="json"), "file_hash": item.file_hash, "document": document}


def _quarantined(data: dict[str, Any]) -> QuarantinedDocument:
    document = Document.model_validate(data["document"]) if data["document"] is not None else None
    return QuarantinedDocument(QuarantineRecord.model_validate(data["record"]), data["file_hash"], document)
