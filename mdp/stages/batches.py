"""What the stages hand each other: a source's documents as chunks or in quarantine."""

from __future__ import annotations

from dataclasses import dataclass, field

from mdp.records import ChunkedDocument, QuarantinedDocument


@dataclass
class ChunkedBatch:
    """One source's documents after a stage: each either chunked or in quarantine with a reason."""

    source: str
    documents: list[ChunkedDocument] = field(default_factory=list)
    quarantine: list[QuarantinedDocument] = field(default_factory=list)

    @property
    def chunk_count(self) -> int:
        return sum(len(d.chunks) for d in self.documents)

    @property
    def document_count(self) -> int:
        return len(self.documents) + len(self.quarantine)
