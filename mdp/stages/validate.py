"""validated_samples: every chunk checked against the versioned schemas and the token limit."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from pydantic import ValidationError

from mdp.config import ChunkingConfig
from mdp.records import ChunkedDocument, QuarantinedDocument
from mdp.schemas import Chunk, Document, QuarantineRecord
from mdp.stages.batches import ChunkedBatch


@dataclass
class ValidatedBatch(ChunkedBatch):
    """Chunks that passed validation; documents left with none joined the quarantine."""

    rejected_chunks: int = 0
    duplicate_chunks_dropped: int = 0
    max_tokens: int = 0
    whole_documents: bool = False  # [chunking] strategy = "document": the encoder truncates, by design


def validate_stage(batch: ChunkedBatch, chunking: ChunkingConfig) -> ValidatedBatch:
    """Re-validate every document and chunk (a parser plugin may build them by hand); a document
    with no valid chunk is quarantined with the commonest problems as its reason."""
    out = ValidatedBatch(
        source=batch.source,
        quarantine=list(batch.quarantine),
        max_tokens=chunking.max_tokens,
        whole_documents=chunking.strategy == "document",
    )
    for chunked in batch.documents:
        try:
            document = Document.model_validate(chunked.document.model_dump())
        except ValidationError as exc:
            reason = f"document failed schema validation: {_first_error(exc)}"
            out.quarantine.append(QuarantinedDocument(_reject(chunked.document, reason), chunked.file_hash))
            continue
        kept, problems = _valid_chunks(chunked.chunks, document.id, out)
        if kept:
            out.documents.append(ChunkedDocument(document, kept, chunked.file_hash))
        else:
            detail = "; ".join(f"{reason} (x{n})" for reason, n in problems.most_common(3)) or "no chunks"
            record = _reject(document, f"no valid chunk after validation: {detail}")
            out.quarantine.append(QuarantinedDocument(record, chunked.file_hash, document))
    return out


def _valid_chunks(
    chunks: list[Chunk], document_id: str, out: ValidatedBatch
) -> tuple[list[Chunk], Counter[str]]:
    """The document's chunks that pass, without repeats; counts the rejects in ``out``."""
    problems: Counter[str] = Counter()
    kept: list[Chunk] = []
    seen_text: set[str] = set()
    for chunk in chunks:
        try:
            valid = Chunk.model_validate(chunk.model_dump(exclude={"text_hash"}))
        except ValidationError as exc:
            problems[_first_error(exc)] += 1
            continue
        if valid.token_count > out.max_tokens and not out.whole_documents:
            problems[f"chunk has {valid.token_count} tokens > limit {out.max_tokens}"] += 1
        elif valid.document_id != document_id:
            problems["chunk belongs to another document"] += 1
        elif valid.text_hash in seen_text:  # the same text twice in one document adds nothing
            out.duplicate_chunks_dropped += 1
        else:
            seen_text.add(valid.text_hash)
            kept.append(valid)
    out.rejected_chunks += sum(problems.values())
    return kept, problems


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "value"
    return f"{where}: {err.get('msg', 'invalid')}"


def _reject(document: Document, reason: str) -> QuarantineRecord:
    return QuarantineRecord(
        source=document.source,
        path=document.path,
        relpath=document.relpath,
        reason=reason,
        stage="validate",
        format=document.format,
        document_id=document.id,
        content_hash=document.content_hash,
    )
