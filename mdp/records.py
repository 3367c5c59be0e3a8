"""The named records the stages hand each other (and the store writes): a document with its chunks,
or a document in quarantine with its reason. Each carries the hash of the file it came from, which
decides whether the file must be read again next run."""

from __future__ import annotations

from dataclasses import dataclass, field

from mdp.schemas import Chunk, Document, QuarantineRecord


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
