"""The Dagster layer on real components: definitions, a full materialization, blocking checks."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pytest
from ui_helpers import ASSETS, BLOCKING_CHECKS

from mdp_resources import SOURCES_PARTITIONS


def _write_config(tmp_path: Path, corpus: Path, extra: str = "") -> Path:
    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    (eval_dir / "queries.jsonl").write_text(
        '{"_id": "q1", "text": "which fruit has potassium"}\n{"_id": "q2", "text": "how does lava form"}\n'
    )
    (eval_dir / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tnotes.txt\t1\nq2\tr3\t1\n")
    config = tmp_path / "mdp.toml"
    config.write_text(
        f"""
[[sources]]
name = "tiny"
root = "{corpus}"

[parsing]
workers = 2

[store]
uri = "{tmp_path / "store"}"

[eval]
queries = "{eval_dir / "queries.jsonl"}"
{extra}
"""
    )
    return config


@pytest.fixture()
def instance(tmp_path: Path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as inst:
        inst.add_dynamic_partitions(SOURCES_PARTITIONS.name, ["tiny"])
        yield inst


def _defs(config: Path, **overrides):
    from mdp_assets.definitions import defs, project_resources
    from mdp_resources import MdpSettings

    settings = MdpSettings(config_file=str(config))
    resources = {**project_resources(settings), **{k: make(settings) for k, make in overrides.items()}}
    return dg.Definitions(
        assets=defs.assets, asset_checks=defs.asset_checks, jobs=defs.jobs, resources=resources
    )


def test_definitions_hold_the_graph_checks_schedules_and_sensor():
    from mdp_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == set(ASSETS)
    parents = {
        k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys}
        for k in graph.get_all_asset_keys()
    }
    assert parents["parsed_chunks"] == {"raw_documents"}
    assert parents["vector_index"] == {"raw_documents", "embeddings"}
    assert parents["retrieval_eval"] == {"vector_index"}
    checks = {k.name: k for k in graph.asset_check_keys}
    assert {
        "schema_version",
        "documents_accounted_for",
        "embeddings_are_sane",
        "index_matches_manifest",
    } <= set(checks)
    blocking = {
        spec.name for checks_def in defs.asset_checks for spec in checks_def.check_specs if spec.blocking
    }
    assert blocking == BLOCKING_CHECKS  # the guards of what comes after them; the others only report
    assert {s.name for s in defs.schedules} == {"nightly_reindex", "nightly_compaction", "nightly_eval"}
    assert {s.name for s in defs.sensors} == {"source_changes"}


def test_full_materialization_records_metadata_and_passes_checks(tmp_path, tiny_corpus, instance):
    config = _write_config(tmp_path, tiny_corpus)
    defs = _defs(config)
    ingest = defs.resolve_job_def("ingest_source").execute_in_process(partition_key="tiny", instance=instance)
    assert ingest.success
    checks = ingest.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks), [
        (c.check_name, c.description) for c in checks if not c.passed
    ]
    meta = {
        e.asset_key.to_user_string(): e.materialization.metadata
        for e in ingest.get_asset_materialization_events()
    }
    index = meta["vector_index"]
    assert index["discovered"].value == index["chunked_documents"].value + index["quarantined"].value == 9
    assert index["model_id"].value == "sentence-transformers/all-MiniLM-L6-v2"
    assert index["index_version"].value >= 1
    assert meta["embeddings"]["embedded"].value == index["chunks"].value

    evaluation = defs.resolve_job_def("evaluate_index").execute_in_process(instance=instance)
    assert evaluation.success
    (mat,) = [e.materialization for e in evaluation.get_asset_materialization_events()]
    for strategy in ("vector", "bm25", "hybrid"):
        assert 0.0 <= mat.metadata[f"{strategy}/ndcg@10"].value <= 1.0
    assert mat.metadata["vector/recall@10"].value == 1.0  # two easy queries over nine documents
    assert Path(mat.metadata["ndcg_history_plot"].value).stat().st_size > 1000
    assert "| version |" in meta["vector_index"]["version_history"].value
    assert meta["vector_index"]["store_size_mb"].value > 0
    # Assets hand each other references: what Dagster stores per output is a small JSON record.
    outputs = [p for p in Path(instance.storage_directory()).rglob("*.json") if p.is_file()]
    assert {p.parent.name for p in outputs} >= {"raw_documents", "parsed_chunks", "embeddings"}
    assert max(p.stat().st_size for p in outputs) < 4096, sorted((p.stat().st_size, p.name) for p in outputs)

    # A no-op re-run: nothing embedded, same data version for the index.
    again = defs.resolve_job_def("ingest_source").execute_in_process(partition_key="tiny", instance=instance)
    meta2 = {
        e.asset_key.to_user_string(): e.materialization for e in again.get_asset_materialization_events()
    }
    assert meta2["embeddings"].metadata["embedded"].value == 0
    first_version = [
        e for e in ingest.get_asset_materialization_events() if e.asset_key.path == ["vector_index"]
    ]
    assert (
        meta2["vector_index"].tags["dagster/data_version"]
        == first_version[0].materialization.tags["dagster/data_version"]
    )


def test_a_failing_blocking_check_keeps_the_index_unwritten(tmp_path, tiny_corpus, instance):
    """The encoder resource is pointed at a model with a 128-token window while mdp.toml chunks for 256:
    the encoder would truncate chunks and silently lose text, so the blocking check stops the index."""
    from mdp.tokenizer import default_model_path
    from mdp_resources import MLXEncoderResource

    short_window = tmp_path / "minilm-128"
    short_window.mkdir()
    for item in default_model_path().iterdir():
        if item.name != "sentence_bert_config.json":
            (short_window / item.name).symlink_to(item)
    (short_window / "sentence_bert_config.json").write_text('{"max_seq_length": 128, "do_lower_case": false}')
    long_text = " ".join(f"Sentence number {i} talks about glaciers and rivers." for i in range(60))
    (tiny_corpus / "long.md").write_text("# Long\n\n" + long_text + "\n")
    config = _write_config(tmp_path, tiny_corpus)
    defs = _defs(
        config, encoder=lambda settings: MLXEncoderResource(settings=settings, model_path=str(short_window))
    )
    result = defs.resolve_job_def("ingest_source").execute_in_process(
        partition_key="tiny", instance=instance, raise_on_error=False
    )
    failed = [c for c in result.get_asset_check_evaluations() if not c.passed]
    assert [c.check_name for c in failed] == ["embeddings_are_sane"]
    assert "longer than the encoder" in (failed[0].description or "")
    written = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "embeddings" in written and "vector_index" not in written
    from mdp.store import VectorStore

    assert VectorStore(str(tmp_path / "store")).count_chunks() == 0


def test_sensor_adds_new_sources_and_requests_changed_ones(tmp_path, tiny_corpus, instance, monkeypatch):
    """The sensor reads the settings resource's config file (MDP_CONFIG pointing elsewhere is ignored)."""
    from mdp_assets.definitions import source_changes
    from mdp_resources import MdpSettings

    config = _write_config(tmp_path, tiny_corpus)
    monkeypatch.setenv("MDP_CONFIG", str(tmp_path / "no-such-mdp.toml"))
    resources = {"settings": MdpSettings(config_file=str(config))}
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        first = source_changes(context)
    assert [r.partition_key for r in first.run_requests] == ["tiny"]
    with dg.build_sensor_context(instance=instance, cursor=first.cursor, resources=resources) as context:
        quiet = source_changes(context)
    assert quiet.run_requests == []
    (tiny_corpus / "new.md").write_text("# New\n\nA new document appears.\n")
    os.utime(tiny_corpus / "new.md")
    with dg.build_sensor_context(instance=instance, cursor=first.cursor, resources=resources) as context:
        changed = source_changes(context)
    assert [r.partition_key for r in changed.run_requests] == ["tiny"]


@pytest.mark.slow
def test_eval_regression_check_blocks_publishing(tmp_path, tiny_corpus, instance):
    """A drop in the primary strategy's nDCG@10 fails the blocking check: downstream is skipped."""
    config = _write_config(tmp_path, tiny_corpus)
    published: list[int] = []

    @dg.asset(deps=["retrieval_eval"])
    def published_index() -> None:  # stands for whatever a team runs after a good evaluation
        published.append(1)

    base = _defs(config)
    defs = dg.Definitions(
        assets=[*base.assets, published_index],
        asset_checks=base.asset_checks,
        jobs=[
            *base.jobs,
            dg.define_asset_job("evaluate_and_publish", selection=["retrieval_eval", "published_index"]),
        ],
        resources=base.resources,
    )
    ingest = defs.resolve_job_def("ingest_source")
    publish = defs.resolve_job_def("evaluate_and_publish")
    assert ingest.execute_in_process(partition_key="tiny", instance=instance).success
    first = publish.execute_in_process(instance=instance)
    assert first.success and published == [1]
    (check,) = [
        c for c in first.get_asset_check_evaluations() if c.check_name == "retrieval_quality_no_regression"
    ]
    assert check.passed

    # The documents that answer both queries disappear from the source: quality falls.
    (tiny_corpus / "notes.txt").unlink()
    facts = tiny_corpus / "facts.jsonl"
    facts.write_text("\n".join(line for line in facts.read_text().splitlines() if '"r3"' not in line) + "\n")
    assert ingest.execute_in_process(partition_key="tiny", instance=instance).success
    second = publish.execute_in_process(instance=instance, raise_on_error=False)
    (check,) = [
        c for c in second.get_asset_check_evaluations() if c.check_name == "retrieval_quality_no_regression"
    ]
    assert not check.passed and "fell to" in (check.description or "")
    assert published == [1]  # not published again
    assert not second.success
    # Evaluated again without a fix: still measured against the last good value, not the failed one.
    third = publish.execute_in_process(instance=instance, raise_on_error=False)
    (check,) = [
        c for c in third.get_asset_check_evaluations() if c.check_name == "retrieval_quality_no_regression"
    ]
    assert not check.passed and published == [1]


def test_eval_writes_its_own_queries_with_mlx_lm_when_none_are_labelled(tmp_path, tiny_corpus, instance):
    """No labelled queries configured: retrieval_eval asks a local mlx-lm model (a tiny random one here,
    so the questions are gibberish; the plumbing is what is under test) and scores the result."""
    from tiny_lm import build_tiny_lm

    from mdp_resources.language_models import QueryGeneratorResource

    model = build_tiny_lm(tmp_path / "tiny-lm", seed=5)
    config = _write_config(tmp_path, tiny_corpus)
    config.write_text(config.read_text().replace("[eval]\nqueries", "[eval]\n# queries"))
    generator = QueryGeneratorResource(model_path=str(model), sample_chunks=4, temperature=1.0, max_tokens=24)
    defs = _defs(config, query_generator=lambda _settings: generator)
    assert (
        defs.resolve_job_def("ingest_source")
        .execute_in_process(partition_key="tiny", instance=instance)
        .success
    )
    result = defs.resolve_job_def("evaluate_index").execute_in_process(instance=instance)
    (mat,) = [e.materialization for e in result.get_asset_materialization_events()]
    assert mat.metadata["queries_source"].value.startswith("generated by")
    assert mat.metadata["queries"].value >= 1
    assert 0.0 <= mat.metadata["hybrid/ndcg@10"].value <= 1.0


@pytest.mark.slow
def test_nightly_compaction_keeps_the_index_readable_and_drops_old_versions(tmp_path, tiny_corpus, instance):
    from mdp.store import VectorStore

    config = _write_config(tmp_path, tiny_corpus)
    config.write_text(config.read_text().replace("[store]\n", "[store]\nretention_days = 0\n"))
    defs = _defs(config)
    ingest = defs.resolve_job_def("ingest_source")
    assert ingest.execute_in_process(partition_key="tiny", instance=instance).success
    (tiny_corpus / "notes.txt").write_text("Bananas are rich in potassium; plantains too.\n")
    assert ingest.execute_in_process(partition_key="tiny", instance=instance).success
    store = VectorStore(str(tmp_path / "store"), read_only=True)
    rows = store.count_chunks()
    assert len(store.versions()) >= 2
    assert defs.resolve_job_def("compact_index").execute_in_process(instance=instance).success
    after = VectorStore(str(tmp_path / "store"), read_only=True)
    assert after.count_chunks() == rows
    assert len(after.versions()) == 1
