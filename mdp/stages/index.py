"""vector_index: the source's changes committed to the store, and search kept in step."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mdp.config import MdpConfig
from mdp.stages.discover import DiscoveryPlan
from mdp.stages.embed import EmbeddedBatch

if TYPE_CHECKING:
    from mdp.store import ApplyResult, VectorStore


def index_stage(
    store: VectorStore,
    plan: DiscoveryPlan,
    batch: EmbeddedBatch,
    run_id: str,
    config: MdpConfig | None = None,
) -> ApplyResult:
    """Apply the source's changes to the store in one commit per table (vectors from the embedding
    cache, or this run's in memory); with ``config``, keep the search structures in step (ANN index,
    BM25 base, scalar indexes: mdp/search_index.py)."""
    produced = {d.document_id for d in batch.documents} | {q.document_id for q in batch.quarantine}
    vanished_in_changed_files = {
        doc_id for ids in plan.stale_document_ids.values() for doc_id in ids if doc_id not in produced
    }
    result = store.apply(
        plan.source,
        batch.documents,
        batch.quarantine,
        sorted(set(plan.deleted_document_ids) | vanished_in_changed_files),
        model_id=batch.model_id,
        model_version=batch.model_version,
        run_id=run_id,
        vectors=batch.vectors or None,
    )
    if config is not None:
        search_upkeep(store, config, batch.model_key)
    return result


def search_upkeep(
    store: VectorStore, config: MdpConfig, model_key: str | None, compacted: bool = False
) -> dict[str, Any]:
    """Bring the search structures up to date after a write or a compaction."""
    from mdp.retrieval import retrieval_config
    from mdp.search_index import maintain

    search = retrieval_config(config)
    return maintain(store, search, model_key if search.sentence_share > 0 else None, compacted=compacted)
