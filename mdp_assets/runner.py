"""``make run`` / ``mdp run``: materialize the whole graph in the project's Dagster instance.

Runs go through the named jobs of ``defs`` against DAGSTER_HOME, so they show up
in the UI (``make ui``) with their metadata and check results.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import dagster as dg

from mdp.config import PROJECT_ROOT
from mdp_resources import SOURCES_PARTITIONS


def _instance() -> dg.DagsterInstance:
    """The project instance: DAGSTER_HOME, else .dagster_home in the repo with its dagster.yaml."""
    if not os.environ.get("DAGSTER_HOME"):
        home = PROJECT_ROOT / ".dagster_home"
        home.mkdir(exist_ok=True)
        if not (home / "dagster.yaml").exists() and (PROJECT_ROOT / "dagster.yaml").exists():
            shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
        os.environ["DAGSTER_HOME"] = str(home)
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    return dg.DagsterInstance.get()


def run_all(config_file: Path | None = None) -> dict[str, Any]:
    from mdp.sample import write_sample_corpus
    from mdp_assets.definitions import project_definitions
    from mdp_resources import MdpSettings

    settings = MdpSettings(config_file=str(Path(config_file).resolve()) if config_file else "")
    defs = project_definitions(settings)
    config = settings.load()
    sample_root = next((s.root for s in config.sources if s.name == "sample"), None)
    if sample_root is not None:  # the bundled corpus is generated (its PDF is built), not committed
        write_sample_corpus(Path(sample_root).parent)

    instance = _instance()
    keys = [s.name for s in config.sources]
    existing = set(instance.get_dynamic_partitions(SOURCES_PARTITIONS.name or ""))
    missing = [k for k in keys if k not in existing]
    if missing:
        instance.add_dynamic_partitions(SOURCES_PARTITIONS.name or "", missing)

    ingest = defs.resolve_job_def("ingest_source")
    evaluate = defs.resolve_job_def("evaluate_index")
    per_source: dict[str, dict[str, Any]] = {}
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    for key in keys:
        print(f"materializing source {key!r}: raw_documents → … → vector_index", flush=True)
        result = ingest.execute_in_process(
            partition_key=key, instance=instance, raise_on_error=True, run_config=quiet
        )
        meta = _metadata(result, "vector_index")
        per_source[key] = meta
    print("materializing retrieval_eval", flush=True)
    eval_result = evaluate.execute_in_process(instance=instance, raise_on_error=True, run_config=quiet)
    eval_meta = _metadata(eval_result, "retrieval_eval")
    return {"sources": per_source, "eval": eval_meta, "text": _summary(per_source, eval_meta)}


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey(asset):
            mat = event.materialization
            return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    return {}


def _summary(per_source: dict[str, dict[str, Any]], eval_meta: dict[str, Any]) -> str:
    total = lambda key: sum(int(m.get(key, 0) or 0) for m in per_source.values())  # noqa: E731
    version = max((int(m.get("index_version", 0) or 0) for m in per_source.values()), default=0)
    lines = [
        "mdp run: the whole graph is materialized",
        f"  documents:   {total('discovered')} discovered = {total('chunked_documents')} chunked"
        f" + {total('quarantined')} quarantined",
        f"  chunks:      {total('chunks')} in the index",
        f"  index:       version {version}",
    ]
    strategies = sorted({k.split("/")[0] for k in eval_meta if "/" in k})
    if strategies:
        lines.append(f"  eval:        {eval_meta.get('queries', 0)} labelled queries")
        for strategy in strategies:
            scores = ", ".join(
                f"{m} {eval_meta[f'{strategy}/{m}']:.3f}"
                for m in ("ndcg@10", "recall@10", "recall@100", "mrr@10")
                if f"{strategy}/{m}" in eval_meta
            )
            lines.append(f"    {strategy:<8} {scores}")
    elif eval_meta.get("note"):
        lines.append(f"  eval:        {eval_meta['note']}")
    lines += [
        "",
        "Open the UI:  make ui   (then http://127.0.0.1:3000 → Assets → Global asset lineage)",
        'Query it:     .venv/bin/mdp query "how are PDFs parsed?"',
    ]
    return "\n".join(lines)
