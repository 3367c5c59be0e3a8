"""The real Dagster UI: ``dagster-webserver -w workspace.yaml`` serves the project's graph over GraphQL.

A tiny source (four Markdown/text files, two labelled queries) gets its own DAGSTER_HOME
and store; the webserver reads that instance while ``mdp_assets.runner.run_all``
materializes the graph in a separate process, and the runs, check results and
materialization metadata are read back through the webserver's GraphQL endpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ui_helpers import (
    ASSETS,
    BLOCKING_CHECKS,
    CHECKS,
    EDGES,
    INGEST_CHECKS,
    METADATA_FRAGMENT,
    SOURCE_NAME,
    TINY_FILES,
    TINY_QUERIES,
    UiProject,
    metadata_values,
    start_ui_project,
    stop_ui_project,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="session")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiProject]:
    project = start_ui_project(tmp_path_factory.mktemp("ui"))
    yield project
    stop_ui_project()


def test_graph_checks_and_automation_are_served(ui: UiProject) -> None:
    data = ui.server.graphql(
        """{ assetNodes { assetKey { path } dependencyKeys { path } groupName isPartitioned pools
              assetChecksOrError { __typename ... on AssetChecks { checks { name blocking } } } } }"""
    )
    nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    assert set(nodes) == set(ASSETS)
    for name, upstream in EDGES.items():
        assert {"/".join(d["path"]) for d in nodes[name]["dependencyKeys"]} == upstream, name
        assert nodes[name]["groupName"] == "mdp"
        assert nodes[name]["isPartitioned"] is (name != "retrieval_eval"), name
        checks = nodes[name]["assetChecksOrError"]
        assert checks["__typename"] == "AssetChecks", checks
        assert {c["name"] for c in checks["checks"]} == CHECKS.get(name, set()), name
        for check in checks["checks"]:
            assert check["blocking"] is (check["name"] in BLOCKING_CHECKS), check
    assert nodes["vector_index"]["pools"] == ["mdp_index_writer"]

    repos = ui.server.graphql(
        """{ repositoriesOrError { __typename ... on RepositoryConnection { nodes {
              location { name }
              jobs { name }
              schedules { name cronSchedule executionTimezone pipelineName }
              sensors { name minIntervalSeconds targets { pipelineName } } } } } }"""
    )["repositoriesOrError"]
    assert repos["__typename"] == "RepositoryConnection", repos
    (repo,) = repos["nodes"]
    assert repo["location"]["name"] == "mdp"
    assert {"ingest_source", "evaluate_index"} <= {j["name"] for j in repo["jobs"]}
    schedules = {s["name"]: s for s in repo["schedules"]}
    assert set(schedules) == {"nightly_reindex", "nightly_compaction", "nightly_eval"}
    assert schedules["nightly_compaction"]["pipelineName"] == "compact_index"
    assert schedules["nightly_reindex"]["pipelineName"] == "ingest_source"
    assert schedules["nightly_reindex"]["cronSchedule"] == "0 2 * * *"
    assert schedules["nightly_eval"]["pipelineName"] == "evaluate_index"
    assert schedules["nightly_eval"]["cronSchedule"] == "30 3 * * *"
    assert {s["executionTimezone"] for s in schedules.values()} == {"UTC"}
    sensors = {s["name"]: s for s in repo["sensors"]}
    assert set(sensors) == {"source_changes"}
    assert [t["pipelineName"] for t in sensors["source_changes"]["targets"]] == ["ingest_source"]


def _latest_metadata(ui: UiProject, asset: str, partition: str | None = None) -> dict[str, Any]:
    query = (
        """query Latest($path: [String!]!, $partitions: [String!]) {
          assetOrError(assetKey: { path: $path }) {
            __typename
            ... on Asset { assetMaterializations(partitions: $partitions, limit: 1) {
                runId partition metadataEntries { ...Meta } } } } }"""
        + METADATA_FRAGMENT
    )
    variables: dict[str, Any] = {"path": [asset], "partitions": [partition] if partition else None}
    result = ui.server.graphql(query, variables)["assetOrError"]
    assert result["__typename"] == "Asset", result
    materializations = result["assetMaterializations"]
    assert materializations, f"no materialization of {asset} visible in the UI"
    assert materializations[0]["partition"] == partition
    return metadata_values(materializations[0]["metadataEntries"])


def test_materializations_runs_and_checks_are_visible(ui: UiProject) -> None:
    summary = ui.materialize()  # run_all in another process, same DAGSTER_HOME
    assert set(summary["sources"]) == {SOURCE_NAME}

    partitions = ui.server.graphql(
        '{ assetNodeOrError(assetKey: { path: ["raw_documents"] }) { ... on AssetNode { partitionKeys } } }'
    )["assetNodeOrError"]["partitionKeys"]
    assert partitions == [SOURCE_NAME]

    runs = ui.server.graphql(
        """{ runsOrError(filter: { pipelineName: "ingest_source" }) { __typename
              ... on Runs { results { runId status tags { key value } } } } }"""
    )["runsOrError"]
    assert runs["__typename"] == "Runs", runs
    (run,) = runs["results"]
    assert run["status"] == "SUCCESS"
    assert {"key": "dagster/partition", "value": SOURCE_NAME} in run["tags"]

    for asset, names in INGEST_CHECKS.items():
        for name in names:
            executions = ui.server.graphql(
                """query Check($path: [String!]!, $name: String!) {
                     assetCheckExecutions(assetKey: { path: $path }, checkName: $name, limit: 1) {
                       runId status partition evaluation { success } } }""",
                {"path": [asset], "name": name},
            )["assetCheckExecutions"]
            assert executions, f"no execution of check {asset}:{name}"
            assert executions[0]["runId"] == run["runId"]
            assert executions[0]["status"] == "SUCCEEDED", (asset, name, executions[0])
            assert executions[0]["evaluation"]["success"] is True

    raw = _latest_metadata(ui, "raw_documents", SOURCE_NAME)
    assert raw["dagster/row_count"] == len(TINY_FILES)
    index = _latest_metadata(ui, "vector_index", SOURCE_NAME)
    assert index["discovered"] == len(TINY_FILES)
    assert index["chunked_documents"] == len(TINY_FILES)
    assert index["quarantined"] == 0
    assert index["chunks"] >= len(TINY_FILES)
    assert index["index_rows_total"] == index["chunks"]
    assert index["index_version"] >= 1
    assert isinstance(index["model_id"], str) and index["model_id"]
    assert index["store_uri"] == str(Path(ui.config).parent / "store")
    # The UI shows what the runner returned: same numbers through both paths.
    returned = summary["sources"][SOURCE_NAME]
    for key in ("discovered", "chunks", "index_version", "model_id"):
        assert index[key] == returned[key], key

    evaluation = _latest_metadata(ui, "retrieval_eval")
    assert evaluation["queries"] == len(TINY_QUERIES)
    assert evaluation["index_version"] == index["index_version"]
    for strategy in ("vector", "bm25", "hybrid"):
        for metric in ("ndcg@10", "recall@10", "mrr@10"):
            value = evaluation[f"{strategy}/{metric}"]
            assert 0.0 <= value <= 1.0, (strategy, metric, value)
    assert "table" in evaluation
