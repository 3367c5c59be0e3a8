"""run_ingest: every stage up to the index, for the CLI and Python, gated like the Dagster UI."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from mdp import quality
from mdp.config import MdpConfig, SourceConfig
from mdp.reports import IngestReport, SourceReport, StageClock, source_totals
from mdp.stages.discover import DiscoveryPlan, discover_stage
from mdp.stages.embed import EmbeddedBatch, embed_stage
from mdp.stages.index import index_stage
from mdp.stages.parse import Progress, parse_stage
from mdp.stages.validate import validate_stage

if TYPE_CHECKING:  # heavy imports stay lazy: parse workers must not load MLX or LanceDB
    from mdp.encoder import SentenceEncoder
    from mdp.store import VectorStore

Log = Callable[[str], None]
# A progress display for one source's parse: (total files, description) -> (callback, close).
ProgressFactory = Callable[[int, str], tuple[Progress, Callable[[], None]]]


class IngestBlocked(RuntimeError):
    """A blocking data-quality rule failed: nothing of this source was written to the index."""


def blocking_rules(
    plan: DiscoveryPlan, batch: EmbeddedBatch, store: VectorStore
) -> list[quality.RuleOutcome]:
    """The rules that guard the index (the blocking asset checks in the UI): run before it is written."""
    from mdp.stages.embed import batch_vectors

    return [
        quality.documents_accounted_for(plan, batch),
        quality.embeddings_are_sane(batch, batch_vectors(store, batch)),
    ]


def new_run_id() -> str:
    return f"cli-{uuid.uuid4().hex[:12]}"


def ingest_source(
    config: MdpConfig,
    source: SourceConfig,
    store: VectorStore,
    encoder: SentenceEncoder,
    run_id: str,
    *,
    progress: ProgressFactory | None = None,
    show_embed_progress: bool = False,
    log: Log | None = None,
    retry_quarantined: bool = False,
) -> SourceReport:
    """All stages up to the index, for one source. Raises :class:`IngestBlocked` (and writes nothing)
    when a blocking rule fails, as the UI's blocking checks would."""
    say = log or (lambda _msg: None)
    clock = StageClock()
    plan = discover_stage(config, source, store, retry_quarantined=retry_quarantined)
    clock.lap("discover")
    say(f"[{source.name}] {plan.summary()}")
    report, close = (
        progress(len(plan.to_parse), f"parse {source.name}") if progress and plan.to_parse else (None, None)
    )
    parsed = parse_stage(config, plan, progress=report)
    if close:
        close()
    clock.lap("parse")
    validated = validate_stage(parsed, config.chunking)
    clock.lap("validate")
    embedded = embed_stage(
        validated, encoder, store, progress=show_embed_progress, sentence_vectors=config.embeds_sentences()
    )
    clock.lap("embed")
    failed = [rule for rule in blocking_rules(plan, embedded, store) if not rule.passed and rule.error]
    if failed:
        raise IngestBlocked(
            f"source {source.name!r}: nothing indexed: " + "; ".join(r.summary for r in failed)
        )
    result = index_stage(store, plan, embedded, run_id, config)
    totals = source_totals(store, source.name)
    clock.lap("index")
    say(f"[{source.name}] stages (s): {clock.seconds}")
    return SourceReport(
        source=source.name,
        discovered=totals["discovered"],
        chunked_documents=totals["chunked_documents"],
        quarantined=totals["quarantined"],
        chunks=totals["chunks"],
        embedded=embedded.embedded,
        cache_hits=embedded.cache_hits,
        parsed_files=parsed.files_parsed,
        unchanged_files=len(plan.unchanged),
        deleted_documents=result.documents_deleted,
        index_version=result.version,
        quarantine=totals["quarantine"],
        by_format=totals["by_format"],
        stages=clock.seconds,
    )


def run_ingest(
    config: MdpConfig,
    sources: Iterable[SourceConfig] | None = None,
    *,
    encoder: SentenceEncoder | None = None,
    store: VectorStore | None = None,
    progress: ProgressFactory | None = None,
    show_embed_progress: bool = False,
    log: Log | None = None,
    retry_quarantined: bool = False,
) -> IngestReport:
    """Ingest the given (default: all configured) sources into the configured store."""
    import time

    from mdp.encoder import SentenceEncoder
    from mdp.store import VectorStore

    started = time.perf_counter()
    store = store or VectorStore.from_config(config.store)
    encoder = encoder or SentenceEncoder.from_config(config.model)
    run_id = new_run_id()
    reports = [
        ingest_source(
            config,
            source,
            store,
            encoder,
            run_id,
            progress=progress,
            show_embed_progress=show_embed_progress,
            log=log,
            retry_quarantined=retry_quarantined,
        )
        for source in (list(sources) if sources is not None else config.sources)
    ]
    return IngestReport(
        run_id=run_id,
        store=config.store.uri,
        sources=reports,
        index_version=store.version(),
        seconds=time.perf_counter() - started,
    )
