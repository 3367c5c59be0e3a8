"""parsed_chunks: the new or changed files parsed and chunked, each in a worker with a budget."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from mdp.config import MdpConfig
from mdp.ids import document_id
from mdp.records import QuarantinedDocument
from mdp.stages.batches import ChunkedBatch
from mdp.stages.discover import DiscoveryPlan

Progress = Callable[[int, int], None]


@dataclass
class ParsedBatch(ChunkedBatch):
    """Parse results for the files that changed; every input is accounted for."""

    files_parsed: int = 0
    pages: int = 0
    seconds: float = 0.0


def parse_stage(config: MdpConfig, plan: DiscoveryPlan, progress: Progress | None = None) -> ParsedBatch:
    """Parse and chunk the plan's files in isolated worker processes; files refused at discovery join
    the quarantine as they are."""
    from mdp.isolation import process_files

    started = time.perf_counter()
    batch = ParsedBatch(source=plan.source, files_parsed=len(plan.to_parse))
    for record in plan.refused:
        record = record.model_copy(
            update={"document_id": record.document_id or document_id(plan.source, record.relpath)}
        )
        batch.quarantine.append(QuarantinedDocument(record, record.content_hash or ""))
    for outcome in process_files(plan.to_parse, config, tokenizer_dir=config.model.path, progress=progress):
        batch.pages += outcome.pages
        batch.documents += outcome.documents
        # the worker gave every record its id (mdp/ids.py)
        batch.quarantine += [QuarantinedDocument(r, outcome.file.content_hash) for r in outcome.quarantine]
    batch.seconds = time.perf_counter() - started
    return batch
