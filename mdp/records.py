"""The named records the stages hand each other (and the store writes): a document with its chunks,
or a document in quarantine with its reason. Each carries the hash of the file it came from, which
decides whether the file must be read again next run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from mdp.ids import document_id
from mdp.schemas import Chunk, Document, QuarantineRecord, sha256_bytes


@dataclass(frozen=True)
class ChunkedDocument:
    """A document and its chunks, ready to be embedded and indexed."""

    document: Document
    chunks: list[Chunk] = field(default_factory=list)
    file_hash: str = ""  # sha256 of the containing file (a JSONL record's file, not the record)

    @property
    def document_id(self) -> str:
        return self.document.id


@dataclass(frozen=True)
class QuarantinedDocument:
    """A document (or a whole file) that did not become chunks, and why."""

    record: QuarantineRecord  # its ``document_id`` is always set (mdp/ids.py)
    file_hash: str = ""
    document: Document | None = None  # set when a parsed document failed a later stage

    @property
    def document_id(self) -> str:
        if self.document is not None:
            return self.document.id
        if not self.record.document_id:
            raise ValueError(f"quarantine record for {self.record.path} has no document id")
        return self.record.document_id


def text_document(
    source: str,
    relpath: str,
    texts: Sequence[str],
    *,
    format: str = "text",
    external_id: str | None = None,
) -> ChunkedDocument:
    """A document whose chunk texts are given (benchmarks and tests that skip parsing), with the
    ids the pipeline would give it: the document's from mdp.ids, its chunks' from ``Chunk.make_id``."""
    doc_id = document_id(source, relpath)
    document = Document(
        id=doc_id,
        source=source,
        uri=f"file:///{source}/{relpath}",
        path=f"/{source}/{relpath}",
        external_id=relpath if external_id is None else external_id,
        content_hash=sha256_bytes("\n".join(texts).encode()),
        format=format,
    )
    chunks = [
        Chunk(id=Chunk.make_id(doc_id, i), document_id=doc_id, text=t, position=i, token_count=len(t.split()))
        for i, t in enumerate(texts)
    ]
    return ChunkedDocument(document, chunks)
