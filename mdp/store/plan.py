"""The pure half of ``VectorStore.apply``: what a write must do, decided from the manifest entries
of the documents it touches and the incoming records. No I/O here: the store reads the entries,
calls :func:`plan_apply`, and commits the plan (chunks first, then the manifest)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mdp.ids import parse_document_id, storable_text
from mdp.records import ChunkedDocument, QuarantinedDocument
from mdp.store.chunks import chunks_digest
from mdp.store.manifest import STATUS_CHUNKED, STATUS_QUARANTINED, ManifestEntry, unchanged


@dataclass(frozen=True)
class ApplyResult:
    """What one ``apply`` did; ``version`` is the chunks table's version after it."""

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


def touched_ids(
    documents: Sequence[ChunkedDocument],
    quarantined: Sequence[QuarantinedDocument],
    deleted_document_ids: Sequence[str],
) -> list[str]:
    """The documents whose manifest entries the plan needs."""
    ids = [d.document_id for d in documents] + [q.document_id for q in quarantined]
    return list(dict.fromkeys(ids + list(deleted_document_ids)))


def check_records(
    source: str, documents: Sequence[ChunkedDocument], quarantined: Sequence[QuarantinedDocument]
) -> None:
    """Refuse a batch the store cannot write consistently, before anything is read or written."""
    for item in documents:
        document = item.document
        if document.source != source:
            raise ValueError(f"document {document.id} belongs to source {document.source!r}, not {source!r}")
        for chunk in item.chunks:
            if chunk.document_id != document.id:
                raise ValueError(f"chunk {chunk.id} does not belong to document {document.id}")
    keys = [d.document_id for d in documents] + [q.document_id for q in quarantined]
    repeated = sorted(key for key, n in Counter(keys).items() if n > 1)
    if repeated:
        shown = ", ".join(repr(key) for key in repeated[:5])
        raise ValueError(
            f"document id(s) {shown} appear more than once in one apply; nothing was written "
            "(each document must be chunked or quarantined exactly once)"
        )


def _relpath(recorded: str, doc_id: str) -> str:
    """The relpath the record carries; for records from before it did, the id's exact inverse."""
    if recorded:
        return recorded
    try:
        return parse_document_id(doc_id).relpath
    except ValueError:
        return ""


@dataclass(frozen=True)
class WriteContext:
    """What every manifest row and the version log row of one write share."""

    source: str
    model_id: str
    model_version: str
    run_id: str
    now: datetime

    def chunked(self, item: ChunkedDocument) -> ManifestEntry:
        d = item.document
        return self._row(
            d.id,
            d.path,
            d.relpath,
            external_id=storable_text(d.external_id),
            content_hash=d.content_hash,
            file_hash=item.file_hash or d.content_hash,
            format=d.format,
            status=STATUS_CHUNKED,
            n_chunks=len(item.chunks),
            chunks_digest=chunks_digest(item.chunks),
        )

    def quarantined(self, item: QuarantinedDocument) -> ManifestEntry:
        d, record = item.document, item.record
        return self._row(
            item.document_id,
            (d or record).path,
            (d or record).relpath,
            external_id=storable_text(d.external_id) if d is not None else "",
            content_hash=(d.content_hash if d is not None else record.content_hash) or "",
            file_hash=item.file_hash,
            format=d.format if d is not None else record.format,
            status=STATUS_QUARANTINED,
            reason=storable_text(record.reason),
            stage=record.stage,
            line=record.line,
        )

    def _row(self, doc_id: str, path: str, relpath: str, **fields: Any) -> ManifestEntry:
        return ManifestEntry(
            document_id=doc_id,
            source=self.source,
            path=storable_text(path),
            relpath=_relpath(relpath, doc_id),
            model_id=self.model_id,
            model_version=self.model_version,
            run_id=self.run_id,
            updated_at=self.now,
            **fields,
        )


@dataclass(frozen=True)
class ApplyPlan:
    """What one ``apply`` writes. Empty when every record matches the manifest and nothing that
    the manifest holds is deleted: then nothing is committed and the version stays the same."""

    context: WriteContext
    rows: tuple[ManifestEntry, ...] = ()  # manifest rows to upsert
    chunk_parts: tuple[ChunkedDocument, ...] = ()  # documents whose chunks are written
    replace_ids: tuple[str, ...] = ()  # documents whose chunks in the table are replaced or removed
    deleted_ids: tuple[str, ...] = ()  # manifest rows to remove

    @property
    def empty(self) -> bool:
        return not self.rows and not self.deleted_ids

    @property
    def chunks_written(self) -> int:
        return sum(len(part.chunks) for part in self.chunk_parts)

    def text_hashes(self) -> list[str]:
        """The distinct text hashes of the chunks written: the only vectors the commit needs."""
        return list(dict.fromkeys(c.text_hash for part in self.chunk_parts for c in part.chunks))


def plan_apply(
    manifest: Mapping[str, ManifestEntry],
    documents: Sequence[ChunkedDocument],
    quarantined: Sequence[QuarantinedDocument] = (),
    deleted_document_ids: Sequence[str] = (),
    *,
    source: str,
    model_id: str,
    model_version: str,
    run_id: str,
    now: datetime,
) -> ApplyPlan:
    """What to write, given ``manifest`` (the entries of at least the touched documents).

    A document whose new row is :func:`unchanged` against its entry is skipped. A written chunked
    document's chunks are replaced (a crash after the chunks commit leaves chunks the manifest does
    not know yet, so even a new document's id is checked); a newly quarantined or deleted document
    loses the chunks its entry says it has. A deleted id that is also among the records (written or
    unchanged: the records win), or that the manifest does not hold, is not deleted."""
    write = WriteContext(source, model_id, model_version, run_id, now)
    rows: list[ManifestEntry] = []
    parts: list[ChunkedDocument] = []
    replace: list[str] = []
    for item in documents:
        row = write.chunked(item)
        if unchanged(manifest.get(row.document_id), row):
            continue
        rows.append(row)
        replace.append(row.document_id)
        if item.chunks:
            parts.append(item)
    for q in quarantined:
        row = write.quarantined(q)
        old = manifest.get(row.document_id)
        if unchanged(old, row):
            continue
        rows.append(row)
        if old is not None and old.n_chunks:
            replace.append(row.document_id)
    incoming = {d.document_id for d in documents} | {q.document_id for q in quarantined}
    deleted = [d for d in dict.fromkeys(deleted_document_ids) if d in manifest and d not in incoming]
    replace += [d for d in deleted if manifest[d].n_chunks]
    return ApplyPlan(write, tuple(rows), tuple(parts), tuple(dict.fromkeys(replace)), tuple(deleted))
