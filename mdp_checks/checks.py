"""Asset checks on the pipeline's stages.

The checks on ``validated_samples`` and ``embeddings`` guard the index: they are blocking, so a
failure stops ``vector_index`` from being written (``mdp ingest`` runs the same blocking rules, see
``mdp.stages.blocking_rules``). The check on ``vector_index`` blocks ``retrieval_eval``. The rules
themselves are plain functions (``mdp.quality``), testable without Dagster; a check loads what its
asset staged (``StageRef``) and calls one rule.
"""

import dagster as dg

from mdp import quality as rules
from mdp.evaluation import EvalResult
from mdp.stages import DiscoveryPlan, EmbeddedBatch, ValidatedBatch, staging
from mdp.stages.embed import batch_vectors
from mdp.stages.staging import StageRef
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
    description="The staged records were written with the schema versions this code reads (a hand-over "
    "between code versions, e.g. a step run by a pod with older code, fails here).",
)
def schema_version(store: VectorStoreResource, validated_samples: StageRef) -> dg.AssetCheckResult:
    return _result(rules.schema_versions(staging.staged_schema_versions(store.open(), validated_samples)))


@dg.asset_check(
    asset="validated_samples",
    partitions_def=SOURCES_PARTITIONS,
    blocking=True,
    additional_ins={"raw_documents": dg.AssetIn("raw_documents")},
    description="Accounting: every discovered file ends as chunks or a quarantine record with a reason.",
)
def documents_accounted_for(
    store: VectorStoreResource, validated_samples: StageRef, raw_documents: StageRef
) -> dg.AssetCheckResult:
    db = store.open()
    plan = staging.load(db, raw_documents, DiscoveryPlan)
    return _result(rules.documents_accounted_for(plan, staging.load(db, validated_samples, ValidatedBatch)))


@dg.asset_check(
    asset="embeddings",
    partitions_def=SOURCES_PARTITIONS,
    blocking=True,
    description="Embedding sanity: the model's dimension, finite values, unit norm, and no chunk "
    "longer than the encoder's window (it would be truncated, losing text).",
)
def embeddings_are_sane(store: VectorStoreResource, embeddings: StageRef) -> dg.AssetCheckResult:
    db = store.open()
    batch = staging.load(db, embeddings, EmbeddedBatch)
    return _result(rules.embeddings_are_sane(batch, batch_vectors(db, batch)))


@dg.asset_check(
    asset="vector_index",
    partitions_def=SOURCES_PARTITIONS,
    blocking=True,
    description="Index rows for the source equal its validated chunks in the manifest; ids are unique.",
)
def index_matches_manifest(
    context: dg.AssetCheckExecutionContext, store: VectorStoreResource
) -> dg.AssetCheckResult:
    return _result(rules.index_matches_manifest(store.open(read_only=True), context.partition_key))


@dg.asset_check(
    asset="vector_index",
    partitions_def=SOURCES_PARTITIONS,
    description="Quarantine rate of the source: a warning over [quality] quarantine_warn_rate, an error over "
    "quarantine_error_rate; the commonest reasons are listed.",
)
def quarantine_rate(
    context: dg.AssetCheckExecutionContext, settings: MdpSettings, store: VectorStoreResource
) -> dg.AssetCheckResult:
    quality = settings.load().quality
    db = store.open(read_only=True)
    return _result(
        rules.quarantine_rate(
            db, context.partition_key, quality.quarantine_warn_rate, quality.quarantine_error_rate
        )
    )


@dg.asset_check(
    asset="validated_samples",
    partitions_def=SOURCES_PARTITIONS,
    description="Language and encoding sanity: scripts in the text, and damaged characters (U+FFFD, "
    "control characters) that betray a wrong encoding.",
)
def text_is_sane(
    settings: MdpSettings, store: VectorStoreResource, validated_samples: StageRef
) -> dg.AssetCheckResult:
    batch = staging.load(store.open(), validated_samples, ValidatedBatch)
    return _result(rules.text_sanity(batch, settings.load().quality.max_replacement_char_rate))


@dg.asset_check(
    asset="validated_samples",
    partitions_def=SOURCES_PARTITIONS,
    description="Chunk length distribution (token percentiles); warns when too many chunks are fragments.",
)
def chunk_lengths(
    settings: MdpSettings, store: VectorStoreResource, validated_samples: StageRef
) -> dg.AssetCheckResult:
    quality = settings.load().quality
    batch = staging.load(store.open(), validated_samples, ValidatedBatch)
    return _result(
        rules.chunk_length_distribution(batch, quality.min_chunk_tokens, quality.max_fragment_rate)
    )


@dg.asset_check(
    asset="embeddings",
    partitions_def=SOURCES_PARTITIONS,
    description="Near-duplicate documents among this run's documents (cosine of mean chunk vectors).",
)
def near_duplicates(
    settings: MdpSettings, store: VectorStoreResource, embeddings: StageRef
) -> dg.AssetCheckResult:
    db = store.open()
    batch = staging.load(db, embeddings, EmbeddedBatch)
    threshold = settings.load().quality.near_duplicate_cosine
    return _result(rules.near_duplicate_documents(batch, batch_vectors(db, batch), threshold))


@dg.asset_check(
    asset="retrieval_eval",
    blocking=True,
    description="Regression guard: the primary strategy's metric may not fall more than the configured "
    "margin below the last accepted evaluation on the same queries; a failure blocks anything that "
    "publishes the index downstream and fails the run.",
)
def retrieval_quality_no_regression(
    settings: MdpSettings, store: VectorStoreResource, retrieval_eval: EvalResult
) -> dg.AssetCheckResult:
    config = settings.load()
    key = rules.baseline_key(
        retrieval_eval.queries_source,
        retrieval_eval.n_queries,
        config.eval.primary,
        config.eval.regression_metric,
    )
    db = store.open()
    outcome = rules.no_quality_regression(
        retrieval_eval.strategies,
        retrieval_eval.queries_source,
        retrieval_eval.n_queries,
        primary=config.eval.primary,
        metric=config.eval.regression_metric,
        margin=config.eval.regression_margin,
        accepted=db.accepted_baseline(key),
    )
    if outcome.passed and "value" in outcome.metadata:  # the new accepted value, kept with the index
        values = {"value": outcome.metadata["value"], "index_version": retrieval_eval.index_version}
        db.accept_baseline(key, values)
    return _result(outcome)


ALL_CHECKS = [
    quarantine_rate,
    text_is_sane,
    chunk_lengths,
    near_duplicates,
    retrieval_quality_no_regression,
    schema_version,
    documents_accounted_for,
    embeddings_are_sane,
    index_matches_manifest,
]
