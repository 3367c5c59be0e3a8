"""The partitioned assets with real small resources (the tiny corpus, a LanceDB store in tmp_path,
the bundled MiniLM) through ``dg.materialize`` and the project's JSON IO manager: what one asset
hands the next is a small ``StageRef``, and the stage output it names is read back from the store."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from conftest import TINY_DOCUMENTS, TINY_QUARANTINED

from mdp.stages.discover import DiscoveryPlan
from mdp.stages.staging import StageRef, StaleStageError, load
from mdp.stages.validate import ValidatedBatch
from mdp_assets.assets import (
    embeddings,
    parsed_chunks,
    raw_documents,
    validated_samples,
    vector_index,
)
from mdp_resources import SOURCES_PARTITIONS, MdpSettings, MLXEncoderResource, VectorStoreResource


@pytest.fixture()
def resources(tmp_path: Path, tiny_corpus: Path):
    config = tmp_path / "mdp.toml"
    config.write_text(
        f'[[sources]]\nname = "tiny"\nroot = "{tiny_corpus}"\n\n[parsing]\nworkers = 1\n\n'
        f'[store]\nuri = "{tmp_path / "store"}"\n'
    )
    settings = MdpSettings(config_file=str(config))
    return settings, VectorStoreResource(settings=settings), MLXEncoderResource(settings=settings)


@pytest.fixture()
def instance():
    with dg.instance_for_test() as inst:
        inst.add_dynamic_partitions(SOURCES_PARTITIONS.name, ["tiny"])
        yield inst


PARTITIONED = [raw_documents, parsed_chunks, validated_samples, embeddings, vector_index]


def _materialize(resources, instance, assets) -> dg.ExecuteInJobResult:
    from mdp_assets.definitions import project_resources

    settings = resources[0]
    result = dg.materialize(
        assets, partition_key="tiny", resources=project_resources(settings), instance=instance
    )
    assert result.success
    return result


def _ref(result: dg.ExecuteInJobResult, asset: str) -> StageRef:
    ref = result.output_for_node(asset)
    assert isinstance(ref, StageRef)
    assert len(ref.model_dump_json()) < 1024  # a reference, not the payload
    return ref


def test_each_asset_hands_the_next_a_reference_to_staged_output(resources, instance) -> None:
    settings, store, _ = resources
    result = _materialize(resources, instance, PARTITIONED)
    discovered = _ref(result, "raw_documents")
    parsed = _ref(result, "parsed_chunks")
    validated = _ref(result, "validated_samples")
    embedded = _ref(result, "embeddings")
    assert discovered.documents == 6  # files: two Markdown, text, HTML, JSONL, PDF
    assert parsed.documents + parsed.quarantined == TINY_DOCUMENTS
    assert parsed.quarantined == TINY_QUARANTINED and parsed.chunks > 0
    assert (validated.documents, validated.chunks) == (parsed.documents, parsed.chunks)
    assert embedded.base == validated  # the documents are staged once, not again with vectors

    db = store.open(read_only=True)
    index = result.asset_materializations_for_node("vector_index")[0].metadata
    assert index["chunks_written"].value == db.count_chunks() == parsed.chunks
    assert index["discovered"].value == TINY_DOCUMENTS
    batch = load(db, validated, ValidatedBatch)
    assert sum(len(d.chunks) for d in batch.documents) == parsed.chunks


def test_a_reference_from_a_replaced_run_is_refused_with_the_fix(resources, instance) -> None:
    settings, store, _ = resources
    first = _ref(_materialize(resources, instance, [raw_documents]), "raw_documents")
    second = _ref(_materialize(resources, instance, [raw_documents]), "raw_documents")
    assert first.run_id != second.run_id
    with pytest.raises(StaleStageError, match="materialize the source again"):
        load(store.open(read_only=True), first, DiscoveryPlan)
    assert load(store.open(read_only=True), second, DiscoveryPlan).source == "tiny"
