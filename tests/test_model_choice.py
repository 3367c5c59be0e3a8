"""[model] path chooses the model everywhere: make run, a UI materialization and `mdp query`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from tiny_bert import build_tiny_bert

pytestmark = pytest.mark.slow  # make run, a UI materialization and mdp query with another model

TINY_ID = "mdp-tests/tiny-bert-32d-seed0"


def _corpus(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "glaciers.md").write_text(
        "# Glaciers\n\nGlaciers are slow rivers of ice that carve valleys over thousands of years.\n"
    )
    (root / "bread.md").write_text("# Bread\n\nSourdough rises with a wild yeast starter and flour.\n")
    return root


def _config(tmp_path: Path, model: Path) -> Path:
    corpus = _corpus(tmp_path / "corpus")
    config = tmp_path / "mdp.toml"
    config.write_text(
        f"""
[[sources]]
name = "docs"
root = "{corpus}"

[model]
path = "{model}"

[store]
uri = "{tmp_path / "store"}"

[eval]
queries = "{tmp_path / "none" / "queries.jsonl"}"
"""
    )
    return config


@pytest.fixture()
def tiny_model(tmp_path: Path) -> Path:
    return build_tiny_bert(tmp_path / "tiny-bert")


def test_configured_model_is_used_by_run_ui_and_query(tmp_path, tiny_model, monkeypatch):
    from mdp.store import VectorStore
    from mdp_assets.definitions import project_definitions
    from mdp_assets.runner import run_all
    from mdp_resources import SOURCES_PARTITIONS, MdpSettings

    config = _config(tmp_path, tiny_model)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))

    # make run
    summary = run_all(config)
    source = summary["sources"]["docs"]
    assert source["model_id"] == TINY_ID
    store = VectorStore(str(tmp_path / "store"), read_only=True)
    frame = store.chunks_frame(columns=["vector", "token_count"])
    assert len(frame) == 2 and {len(v) for v in frame["vector"]} == {32}
    assert max(frame["token_count"]) <= 128  # chunked with the configured model's window

    # a UI materialization of the same definitions, with the settings resource naming the file
    (tmp_path / "corpus" / "tea.md").write_text("# Tea\n\nGreen tea is steamed, black tea is oxidised.\n")
    (tmp_path / "ui_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "ui_home")) as instance:
        instance.add_dynamic_partitions(SOURCES_PARTITIONS.name, ["docs"])
        ui = project_definitions(MdpSettings(config_file=str(config)))
        result = ui.resolve_job_def("ingest_source").execute_in_process(
            partition_key="docs", instance=instance
        )
        assert result.success
        metadata = {
            e.asset_key.to_user_string(): e.materialization.metadata
            for e in result.get_asset_materialization_events()
        }
        assert metadata["embeddings"]["model/model_id"].value == TINY_ID
        assert metadata["vector_index"]["model_id"].value == TINY_ID
    assert {len(v) for v in store.chunks_frame(columns=["vector"])["vector"]} == {32}

    # mdp query: a 384-dimensional MiniLM query vector would not even fit this index
    out = subprocess.run(
        [sys.executable, "-m", "mdp_cli", "query", "ice valleys", "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    hits = json.loads(out.stdout)["hits"]
    assert len(hits) == 3 and all(h["document_id"].startswith("docs:") for h in hits)
