"""Asset checks on the pipeline's stages.

The checks on ``validated_samples`` and ``embeddings`` guard the index: they are
blocking, so a failure stops ``vector_index`` from being written. The check on
``vector_index`` blocks ``retrieval_eval``. The check functions themselves are
plain functions over the stage outputs (``mdp.quality``), testable without Dagster.
"""

import dagster as dg

from mdp import quality as rules
from mdp.pipeline import DiscoveryPlan, EmbeddedBatch, ValidatedBatch
from mdp_resources import SOURCES_PARTITIONS, MdpSettings, VectorStoreResource


def _result(outcome: rules.RuleOutcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR if outcome.error else dg.AssetCheckSeverity.WARN,
        description=outcome.summary,
        metadata=outcome.metadata,
    )


@dg.asset_check(
    asset="validated_samples",
    partitions_def=SOURCES_PARTITIONS,
    blocking=True,
    description="Every chunk and quarantine record validates against its versioned schema.",
)
def schema_validity(validated_samples: ValidatedBatch) -> dg.AssetCheckResult:
    return _result(rules.schema_validity(validated_samples))


@dg.asset_check(
    asset="validated_samples",
    partitions_def=SOURCES_PARTITIONS,
    blocking=True,
    description="No blank chunk and no repeated chunk id; repeated texts across documents are reported.",
)
def no_empty_or_duplicate_chunks(validated_samples: ValidatedBatch) -> dg.AssetCheckResult:
    return _result(rules.no_empty_or_duplicate_chunks(validated_samples))


@dg.asset_check(
    asset="validated_samples",
    partitions_def=SOURCES_PARTITIONS,
    blocking=True,
    additional_ins={"raw_documents": dg.AssetIn("raw_documents")},
    description="Accounting: every discovered file ends as chunks or a quarantine record with a reason.",
)
def documents_accounted_for(
    validated_samples: ValidatedBatch, raw_documents: DiscoveryPlan
) -> dg.AssetCheckResult:
    return _result(rules.documents_accounted_for(raw_documents, validated_samples))


@dg.asset_check(
    asset="embeddings",
    partitions_def=SOURCES_PARTITIONS,
    blocking=True,
    description="Embedding sanity: the model's dimension, finite values, unit norm, and no chunk "
    "longer than the encoder's window (it would be truncated, losing text).",
)
def embeddings_are_sane(embeddings: EmbeddedBatch) -> dg.AssetCheckResult:
    return _result(rules.embeddings_are_sane(embeddings))


@dg.asset_check(
    asset="vector_index",
    partitions_def=SOURCES_PARTITIONS,
    blocking=True,
    description="Index rows for the source equal its validated chunks in the manifest; ids are unique.",
)
def index_matches_manifest(
    context: dg.AssetCheckExecutionContext, settings: MdpSettings, store: VectorStoreResource
) -> dg.AssetCheckResult:
    config = settings.load()
    return _result(rules.index_matches_manifest(store.open(config, read_only=True), context.partition_key))


ALL_CHECKS = [
    schema_validity,
    no_empty_or_duplicate_chunks,
    documents_accounted_for,
    embeddings_are_sane,
    index_matches_manifest,
]
