"""raw_documents: the source's files, hashed and compared with the index manifest."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from mdp.config import MdpConfig, SourceConfig
from mdp.ids import relpath_from_storable
from mdp.schemas import QuarantineRecord, SourceFile

if TYPE_CHECKING:
    from mdp.store import VectorStore


class DiscoveryPlan(BaseModel):
    """What a run must do for one source: which files changed, which documents vanished."""

    source: str
    files: list[SourceFile]
    to_parse: list[SourceFile]
    unchanged: list[SourceFile]
    refused: list[QuarantineRecord]
    deleted_document_ids: list[str]
    stale_document_ids: dict[str, list[str]] = Field(default_factory=dict)  # relpath -> ids before this run

    def summary(self) -> dict[str, int]:
        return {
            "files": len(self.files),
            "to_parse": len(self.to_parse),
            "unchanged": len(self.unchanged),
            "refused": len(self.refused),
            "deleted_documents": len(self.deleted_document_ids),
        }


def discover_stage(
    config: MdpConfig, source: SourceConfig, store: VectorStore, retry_quarantined: bool = False
) -> DiscoveryPlan:
    """Find the source's files, hash them and diff against the index manifest.

    ``retry_quarantined`` re-parses unchanged files whose documents are all quarantined: after a fix
    outside the file (a password added, OCR installed, a parser plugin installed).
    """
    from mdp.sources import discover

    found = discover(source, config.parsing)
    known_hash: dict[str, str] = {}
    ids_by_relpath: dict[str, list[str]] = {}
    chunked_relpaths: set[str] = set()
    # four columns of this source's manifest rows, not whole entries: a source can hold many documents
    columns = ["document_id", "relpath", "file_hash", "status"]
    for row in store.manifest_table(source.name, columns).to_pylist():
        relpath = relpath_from_storable(row["relpath"] or "")
        ids_by_relpath.setdefault(relpath, []).append(row["document_id"])
        known_hash[relpath] = row["file_hash"]
        if row["status"] == "chunked":
            chunked_relpaths.add(relpath)

    to_parse: list[SourceFile] = []
    unchanged: list[SourceFile] = []
    for file in found.files:
        retry = retry_quarantined and file.relpath in known_hash and file.relpath not in chunked_relpaths
        if known_hash.get(file.relpath) == file.content_hash and not retry:
            unchanged.append(file)
        else:
            to_parse.append(file)

    present = {f.relpath for f in found.files}
    refused_paths = {r.relpath for r in found.refused}
    deleted = sorted(
        doc_id
        for relpath, ids in ids_by_relpath.items()
        if relpath not in present and relpath not in refused_paths
        for doc_id in ids
    )
    return DiscoveryPlan(
        source=source.name,
        files=found.files,
        to_parse=to_parse,
        unchanged=unchanged,
        refused=found.refused,
        deleted_document_ids=deleted,
        stale_document_ids={f.relpath: ids_by_relpath.get(f.relpath, []) for f in to_parse},
    )
