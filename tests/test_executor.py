"""The project's ``ingest_source`` job under Dagster's multiprocess executor.

``execute_job(reconstructable(...))`` against a persistent instance: each step runs in
its own child process that re-imports the Definitions, and the assets' values cross
process boundaries through the IO manager (pickled under DAGSTER_HOME). The tiny source
must come out exactly as it does in process, its blocking checks passing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ui_helpers import (
    ASSETS,
    INGEST_CHECKS,
    SOURCE_NAME,
    TINY_FILES,
    make_dagster_home,
    multiprocess_ingest_job,
    write_tiny_project,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TESTS = Path(__file__).resolve().parent


def test_ingest_source_under_multiprocess_executor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dagster as dg

    home = make_dagster_home(tmp_path / "dagster_home")
    config = write_tiny_project(tmp_path / "project")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("MDP_CONFIG", str(config))
    # Step processes re-import the job factory's module (ui_helpers) from the recorded working directory.
    monkeypatch.chdir(TESTS)

    job = dg.reconstructable(multiprocess_ingest_job)
    assert job.get_definition().executor_def.name == "multiprocess"

    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("mdp_sources", [SOURCE_NAME])
        with dg.execute_job(job, instance=instance, tags={"dagster/partition": SOURCE_NAME}) as result:
            failures = [e.message for e in result.all_events if e.is_failure]
            assert result.success, failures
            run_id = result.run_id
            starts = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START]
            step_pids = {e.step_key: e.pid for e in starts}
            materialized = {
                e.asset_key.to_user_string()
                for e in result.all_events
                if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION and e.asset_key
            }

        # Every asset step ran, each in a process of its own, none in this one.
        assert materialized == set(ASSETS) - {"retrieval_eval"}
        assert set(step_pids) >= materialized
        pids = [step_pids[step] for step in materialized]
        assert all(pid is not None and pid != os.getpid() for pid in pids), step_pids
        assert len(set(pids)) == len(pids), step_pids

        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags["dagster/partition"] == SOURCE_NAME

        event = instance.get_latest_materialization_event(dg.AssetKey("vector_index"))
        assert event is not None and event.asset_materialization is not None
        meta = {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}
        assert event.asset_materialization.partition == SOURCE_NAME
        assert meta["discovered"] == len(TINY_FILES)
        assert meta["chunked_documents"] == len(TINY_FILES)
        assert meta["quarantined"] == 0
        assert meta["chunks"] >= len(TINY_FILES)
        assert meta["index_rows_total"] == meta["chunks"]
        assert meta["index_version"] >= 1

        for asset, names in INGEST_CHECKS.items():
            for name in names:
                records = instance.event_log_storage.get_asset_check_execution_history(
                    dg.AssetCheckKey(dg.AssetKey(asset), name), limit=1
                )
                assert records and records[0].run_id == run_id, (asset, name)
                assert records[0].status.value == "SUCCEEDED", (asset, name, records[0].status)

    # The step outputs crossed processes through the filesystem IO manager under DAGSTER_HOME.
    storage = home / "storage"
    assert storage.is_dir() and any(p.is_file() for p in storage.rglob("*")), "no pickled step outputs"
