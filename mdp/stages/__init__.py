"""The pipeline's stages as plain functions, one module per asset.

Each Dagster asset calls exactly one stage, and ``run_ingest`` chains them for the CLI and for
Python users, so the UI, the command line and library calls do the same work (and gate on the same
blocking rules). Work is incremental per source: files whose bytes did not change since the index's
manifest are neither parsed nor embedded again.
"""

from mdp.stages.batches import ChunkedBatch
from mdp.stages.discover import DiscoveryPlan, discover_stage
from mdp.stages.embed import EmbeddedBatch, backfill_sentence_vectors, embed_stage, model_key
from mdp.stages.index import index_stage, search_upkeep
from mdp.stages.ingest import IngestBlocked, blocking_rules, ingest_source, new_run_id, run_ingest
from mdp.stages.parse import ParsedBatch, parse_stage
from mdp.stages.validate import ValidatedBatch, validate_stage

__all__ = [
    "ChunkedBatch",
    "DiscoveryPlan",
    "EmbeddedBatch",
    "IngestBlocked",
    "ParsedBatch",
    "ValidatedBatch",
    "backfill_sentence_vectors",
    "blocking_rules",
    "discover_stage",
    "embed_stage",
    "index_stage",
    "ingest_source",
    "model_key",
    "new_run_id",
    "parse_stage",
    "run_ingest",
    "search_upkeep",
    "validate_stage",
]
