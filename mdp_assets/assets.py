"""The six software-defined assets. Each one calls one stage of ``mdp.stages``.

The first five are partitioned by source (one dynamic partition per configured source root);
``retrieval_eval`` scores the whole index. Assets hand each other references (``StageRef``, a few
hundred bytes of JSON through ``JsonRecordIOManager``); the payload is staged in the store
(mdp/stages/staging.py), and vectors live only in the store's embedding cache.
"""

import hashlib
import json
import subprocess
from functools import lru_cache
from pathlib import Path

import dagster as dg

from mdp import __version__ as mdp_version
from mdp.evaluation import eval_stage, generated_queries
from mdp.reports import source_totals
from mdp.retrieval import retrieval_config
from mdp.schemas import Chunk
from mdp.search_index import vector_index_info, vector_mode
from mdp.stages import (
    DiscoveryPlan,
    EmbeddedBatch,
    ParsedBatch,
    ValidatedBatch,
    discover_stage,
    embed_stage,
    index_stage,
    parse_stage,
    staging,
    validate_stage,
)
from mdp.stages.staging import StageRef
from mdp_assets.views import eval_history, plot_history, version_history_md
from mdp_resources import SOURCES_PARTITIONS, MdpSettings, MLXEncoderResource, VectorStoreResource
from mdp_resources.language_models import QueryGeneratorResource

GROUP = "mdp"
CODE_VERSION = mdp_version


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@lru_cache(maxsize=1)
def code_revision() -> str:
    """The git commit of this checkout (recorded so an index can be rebuilt from the same code)."""
    commit = _git("rev-parse", "--short=12", "HEAD")
    if commit is None:
        return "unknown"
    return commit + ("+dirty" if _git("status", "--porcelain", "--untracked-files=no") else "")


def _quarantine_preview(records: list[dict[str, str]], limit: int = 10) -> str:
    if not records:
        return "No document is quarantined."
    lines = ["| path | reason |", "|---|---|"]
    for rec in records[:limit]:
        lines.append(f"| `{Path(rec['path']).name}` | {rec['reason'].replace('|', '/')} |")
    if len(records) > limit:
        lines.append(f"| … | {len(records) - limit} more (see `mdp quarantine`) |")
    return "\n".join(lines)


class DiscoveryConfig(dg.Config):
    retry_quarantined: bool = False  # re-parse unchanged files that were quarantined (after a fix elsewhere)


@dg.asset(
    partitions_def=SOURCES_PARTITIONS,
    group_name=GROUP,
    code_version=CODE_VERSION,
    kinds={"python"},
    description="Files under the source root, hashed and diffed against the index manifest.",
)
def raw_documents(
    context: dg.AssetExecutionContext,
    config: DiscoveryConfig,
    settings: MdpSettings,
    store: VectorStoreResource,
) -> dg.MaterializeResult:
    project = settings.load()
    source = project.source(context.partition_key)
    db = store.open()
    plan = discover_stage(project, source, db, retry_quarantined=config.retry_quarantined)
    context.log.info(f"source {source.name}: {plan.summary()}")
    return dg.MaterializeResult(
        value=staging.save(db, "discovered", plan, context.run.run_id),
        metadata={
            "source_root": dg.MetadataValue.path(str(source.root)),
            "dagster/row_count": len(plan.files),
            **plan.summary(),
        },
    )


@dg.asset(
    partitions_def=SOURCES_PARTITIONS,
    group_name=GROUP,
    code_version=CODE_VERSION,
    kinds={"python"},
    description="New or changed files parsed by their format's parser and chunked, each in a worker "
    "process with a time and memory budget. Failures become quarantine records with a reason.",
)
def parsed_chunks(
    context: dg.AssetExecutionContext,
    settings: MdpSettings,
    store: VectorStoreResource,
    raw_documents: StageRef,
) -> dg.MaterializeResult:
    config = settings.load()
    db = store.open()
    plan = staging.load(db, raw_documents, DiscoveryPlan)

    def progress(done: int, total: int) -> None:
        if done == total or done % 10 == 0:
            context.log.info(f"parsed {done}/{total} files")

    batch = parse_stage(config, plan, progress=progress)
    return dg.MaterializeResult(
        value=staging.save(db, "parsed", batch, context.run.run_id),
        metadata={
            "files_parsed": batch.files_parsed,
            "documents": batch.document_count,
            "quarantined": len(batch.quarantine),
            "chunks": batch.chunk_count,
            "pages": batch.pages,
            "parse_seconds": round(batch.seconds, 3),
            "pdf_strategy": config.parsing.pdf_strategy,
        },
    )


@dg.asset(
    partitions_def=SOURCES_PARTITIONS,
    group_name=GROUP,
    code_version=CODE_VERSION,
    kinds={"pydantic"},
    description="Chunks re-validated against the versioned schemas; rejects go to quarantine.",
)
def validated_samples(
    context: dg.AssetExecutionContext,
    settings: MdpSettings,
    store: VectorStoreResource,
    parsed_chunks: StageRef,
) -> dg.MaterializeResult:
    db = store.open()
    batch = validate_stage(staging.load(db, parsed_chunks, ParsedBatch), settings.load().chunking)
    return dg.MaterializeResult(
        value=staging.save(db, "validated", batch, context.run.run_id),
        metadata={
            "documents": len(batch.documents),
            "quarantined": len(batch.quarantine),
            "chunks": batch.chunk_count,
            "rejected_chunks": batch.rejected_chunks,
            "duplicate_chunks_dropped": batch.duplicate_chunks_dropped,
            "schema_version": f"chunk@{Chunk.schema_version}",
            "dagster/row_count": batch.chunk_count,
        },
    )


@dg.asset(
    partitions_def=SOURCES_PARTITIONS,
    group_name=GROUP,
    code_version=CODE_VERSION,
    kinds={"mlx"},
    description="Chunk embeddings from the MLX encoder; unchanged text comes from the embedding cache.",
)
def embeddings(
    context: dg.AssetExecutionContext,
    settings: MdpSettings,
    encoder: MLXEncoderResource,
    store: VectorStoreResource,
    validated_samples: StageRef,
) -> dg.MaterializeResult:
    config = settings.load()
    db = store.open()
    model = encoder.get_encoder()
    validated = staging.load(db, validated_samples, ValidatedBatch)
    batch = embed_stage(validated, model, db, sentence_vectors=config.embeds_sentences())
    computed = batch.embedded + batch.sentences_embedded
    rate = computed / batch.seconds if batch.seconds > 0 and computed else 0.0
    info = {k: v for k, v in model.info().items() if isinstance(v, str | int | float | bool)}
    return dg.MaterializeResult(  # the vectors are in the embedding cache; only counts travel on
        value=staging.save(db, "embedded", batch, context.run.run_id, base=validated_samples),
        metadata={
            "embedded": batch.embedded,
            "sentence_vectors": batch.sentences,
            "sentences_embedded": batch.sentences_embedded,
            "cache_hits": batch.cache_hits,
            "chunks": batch.chunk_count,
            "texts_per_s": round(rate, 2),
            **{f"model/{k}": v for k, v in info.items()},
            **_latest_embed_bench(),
        },
    )


def _latest_embed_bench() -> dict[str, float | str]:
    """The last `mdp bench` embed numbers (ratios against sentence-transformers), if any were run."""
    from mdp.bench import latest_results

    results = latest_results()
    section = results.get("embed") or {}
    keep = (
        "ratio",
        "mlx_texts_per_s",
        "st_texts_per_s",
        "max_cosine_gap",
        "roofline_texts_per_s",
        "kernels",
        "ratio_without_kernels",
        "kernel_speedup",
    )
    out = {f"bench/{k}": section[k] for k in keep if k in section}
    gpu = results.get("embed_gpu") or {}
    keep_gpu = (
        "device", "ratio_fp32", "ratio_bf16", "mlx_fp32_texts_per_s", "mlx_bf16_texts_per_s",
        "max_cosine_gap", "roofline_fraction_mlx_bf16", "scifact_build_s",
    )  # fmt: skip
    out.update({f"bench_gpu/{k}": gpu[k] for k in keep_gpu if k in gpu})
    return out


@dg.asset(
    partitions_def=SOURCES_PARTITIONS,
    group_name=GROUP,
    code_version=CODE_VERSION,
    kinds={"lancedb"},
    pool="mdp_index_writer",
    description="The source's changes committed to the LanceDB store: changed documents' chunks "
    "replaced atomically, vanished documents deleted. One writer at a time (pool mdp_index_writer).",
)
def vector_index(
    context: dg.AssetExecutionContext,
    settings: MdpSettings,
    store: VectorStoreResource,
    raw_documents: StageRef,
    embeddings: StageRef,
) -> dg.MaterializeResult:
    config = settings.load()
    db = store.open()
    batch = staging.load(db, embeddings, EmbeddedBatch)  # its vectors come from the embedding cache
    result = index_stage(
        db, staging.load(db, raw_documents, DiscoveryPlan), batch, context.run.run_id, config
    )
    totals = source_totals(db, context.partition_key)
    digest = db.manifest_digest(context.partition_key)
    data_version = json.dumps(
        [digest, batch.model_id, batch.model_version, CODE_VERSION], separators=(",", ":")
    )
    return dg.MaterializeResult(
        data_version=dg.DataVersion(hashlib.sha256(data_version.encode()).hexdigest()[:16]),
        metadata={
            "index_version": result.version or 0,
            "chunks_written": result.chunks_written,
            "chunks_deleted": result.chunks_deleted,
            "discovered": totals["discovered"],
            "chunked_documents": totals["chunked_documents"],
            "quarantined": totals["quarantined"],
            "chunks": totals["chunks"],
            "by_format": dg.MetadataValue.json(totals["by_format"]),
            "index_rows_total": db.count_chunks(),
            "manifest_digest": digest,
            "model_id": batch.model_id,
            "model_version": batch.model_version,
            "code_version": CODE_VERSION,
            "code_revision": code_revision(),
            "store_uri": store.store_config().uri,
            "quarantine": dg.MetadataValue.md(_quarantine_preview(totals["quarantine"])),
            "store_size_mb": round(db.size_bytes() / 1e6, 2),
            "vector_search": vector_mode(retrieval_config(config), db.count_chunks()),
            "vector_index": dg.MetadataValue.json(vector_index_info(db) or {}),
            "version_history": dg.MetadataValue.md(version_history_md(db.versions())),
        },
    )


@dg.asset(
    deps=[vector_index],
    group_name=GROUP,
    code_version=CODE_VERSION,
    kinds={"python"},
    description="Retrieval quality of the whole index: vector, BM25 and hybrid, scored with nDCG@10, "
    "Recall@10, Recall@100 and MRR@10 on the labelled queries.",
)
def retrieval_eval(
    context: dg.AssetExecutionContext,
    settings: MdpSettings,
    encoder: MLXEncoderResource,
    store: VectorStoreResource,
    query_generator: QueryGeneratorResource,
) -> dg.MaterializeResult:
    config = settings.load()
    db = store.open(read_only=True)
    queries = qrels = None
    labelled = config.eval.queries is not None and Path(config.eval.queries).exists()
    if not labelled and query_generator.enabled and db.count_chunks():
        # No labelled queries: a local model writes them from sampled chunks (mlx-lm).
        context.log.info(f"no labelled queries; generating them with {query_generator.model_path}")
        queries, qrels = generated_queries(db, query_generator.generate)
    report = eval_stage(config, db, encoder.get_encoder(), queries=queries, qrels=qrels)
    if queries is not None:
        report.queries_source = f"generated by {query_generator.model_path}"
    metadata: dict[str, object] = {
        "index_version": report.index_version or 0,
        "queries": report.n_queries,
        "queries_source": report.queries_source or "none",
    }
    for strategy, scores in report.strategies.items():
        for metric, value in scores.items():
            metadata[f"{strategy}/{metric}"] = round(float(value), 4)
    metadata["table"] = dg.MetadataValue.md(report.markdown())
    store_uri = store.store_config().uri
    if report.strategies and "://" not in store_uri:
        history = eval_history(context.instance, list(report.strategies))
        history.append((report.index_version or 0, {s: v["ndcg@10"] for s, v in report.strategies.items()}))
        plot = plot_history(history, Path(store_uri).parent / "reports" / "retrieval_eval_ndcg.png")
        if plot is not None:
            metadata["ndcg_history_plot"] = dg.MetadataValue.path(str(plot))
    if report.note:
        metadata["note"] = report.note
    return dg.MaterializeResult(value=report, metadata=metadata)  # type: ignore[arg-type]
