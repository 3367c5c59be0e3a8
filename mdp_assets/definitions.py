"""The Dagster Definitions: ``dagster dev -w workspace.yaml`` loads ``defs`` from here."""

from mdp.runtime import configure_process

configure_process()  # every Dagster process that loads the definitions starts here: telemetry off, BLAS

import json

import dagster as dg

from mdp.search_index import sentence_model_key
from mdp.stages import search_upkeep
from mdp.watch import source_fingerprint
from mdp_assets.assets import (
    embeddings,
    parsed_chunks,
    raw_documents,
    retrieval_eval,
    validated_samples,
    vector_index,
)
from mdp_checks import ALL_CHECKS
from mdp_resources import SOURCES_PARTITIONS, MdpSettings, MLXEncoderResource, VectorStoreResource
from mdp_resources.io import JsonRecordIOManager
from mdp_resources.language_models import QueryGeneratorResource

INGEST_ASSETS = [raw_documents, parsed_chunks, validated_samples, embeddings, vector_index]

ingest_job = dg.define_asset_job(
    "ingest_source",
    selection=dg.AssetSelection.assets(*INGEST_ASSETS),
    description="Bring one source's documents into the index; work scales with what changed.",
)

eval_job = dg.define_asset_job(
    "evaluate_index",
    selection=dg.AssetSelection.assets(retrieval_eval),
    description="Score the whole index on the labelled queries.",
)


@dg.op(
    description="Compact the store's tables and delete index versions older than [store] retention_days "
    "(LanceDB optimize); without it versions and fragments pile up.",
    pool="mdp_index_writer",
)
def compact_store(context: dg.OpExecutionContext, settings: MdpSettings, store: VectorStoreResource) -> None:
    config = settings.load()
    db = store.open()
    before = len(db.versions())
    kept = db.optimize(retention_days=config.store.retention_days)
    context.log.info(f"compacted {config.store.uri}: {before} chunk versions before, kept {kept}")
    # compaction moved rows: the search index's base is rebuilt, the ANN index was folded in
    upkeep = search_upkeep(db, config, sentence_model_key(db), compacted=True)
    context.log.info(f"search index after compaction: {upkeep}")


@dg.job(description="Nightly upkeep of the vector store: compaction and version cleanup.")
def compact_index() -> None:
    compact_store()


@dg.sensor(
    job=ingest_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Adds a partition for each new configured source and requests a run for each source "
    "whose files were added, changed or removed (stat-only fingerprint, no file is read).",
)
def source_changes(context: dg.SensorEvaluationContext, settings: MdpSettings) -> dg.SensorResult:
    config = settings.load()
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    existing = set(context.instance.get_dynamic_partitions(SOURCES_PARTITIONS.name or ""))
    new_keys = [s.name for s in config.sources if s.name not in existing]
    requests = []
    fingerprints: dict[str, str] = {}
    for source in config.sources:
        fingerprint = source_fingerprint(source)
        fingerprints[source.name] = fingerprint
        if seen.get(source.name) != fingerprint:
            requests.append(dg.RunRequest(partition_key=source.name, run_key=f"{source.name}:{fingerprint}"))
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[SOURCES_PARTITIONS.build_add_request(new_keys)] if new_keys else [],
        cursor=json.dumps(fingerprints, sort_keys=True),
    )


@dg.schedule(
    job=ingest_job,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Nightly re-index of every configured source (cheap when nothing changed).",
)
def nightly_reindex(context: dg.ScheduleEvaluationContext, settings: MdpSettings) -> list[dg.RunRequest]:
    config = settings.load()
    date = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return [dg.RunRequest(partition_key=s.name, run_key=f"nightly:{date}:{s.name}") for s in config.sources]


nightly_compaction = dg.ScheduleDefinition(
    name="nightly_compaction",
    job=compact_index,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Compacts the store after the nightly re-index, before the nightly eval.",
)

nightly_eval = dg.ScheduleDefinition(
    name="nightly_eval",
    job=eval_job,
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Re-scores the index after the nightly re-index.",
)


def project_resources(settings: MdpSettings | None = None) -> dict[str, object]:
    """Every resource, built from one configuration (``settings``: mdp.toml by default)."""
    settings = settings or MdpSettings()
    return {
        "settings": settings,
        "encoder": MLXEncoderResource(settings=settings),
        "store": VectorStoreResource(settings=settings),
        # assets hand each other small JSON records (references); payloads are staged in the store
        "io_manager": JsonRecordIOManager(),
        # Off until model_path names a local mlx-lm folder: then retrieval_eval writes its own queries
        # when the corpus has no labelled ones.
        "query_generator": QueryGeneratorResource(),
    }


def project_definitions(settings: MdpSettings | None = None) -> dg.Definitions:
    """The whole project (assets, checks, jobs, sensor, schedules) on one configuration."""
    return dg.Definitions(
        assets=[*INGEST_ASSETS, retrieval_eval],
        asset_checks=ALL_CHECKS,
        jobs=[ingest_job, eval_job, compact_index],
        sensors=[source_changes],
        schedules=[nightly_reindex, nightly_compaction, nightly_eval],
        resources=project_resources(settings),
    )


defs = project_definitions()
