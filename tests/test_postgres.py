"""Dagster's run, event-log and schedule storage on a real PostgreSQL server (dagster-postgres).

The instance is ``deploy/dagster-postgres.yaml`` as shipped (connection settings from env
vars); the tiny source's graph is materialized through ``DagsterInstance.get()`` by the
project's runner, then the runs are read back from Postgres, both through a fresh
instance and with plain SQL. Each test gets its own database, dropped afterwards.

Server: ``eval "$(scripts/ci-services.sh)"`` starts one and exports MDP_TEST_PG_URL. Without
a reachable server the test is skipped, except under CI=true, where it fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from ui_helpers import INGEST_CHECKS, REPO, SOURCE_NAME, TINY_FILES, make_dagster_home, write_tiny_project

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DEFAULT_URL = "postgresql://mdp:mdp@127.0.0.1:55432/mdp"  # what scripts/ci-services.sh sets up
PG_YAML = REPO / "deploy" / "dagster-postgres.yaml"


def _connect(url: str) -> Any:
    import psycopg2

    return psycopg2.connect(url, connect_timeout=5)


@pytest.fixture()
def pg_database() -> Iterator[str]:
    """A fresh database on the test server; yields its URL."""
    pytest.importorskip("dagster_postgres", reason="needs dagster-postgres==0.29.27 (pip install it)")
    url = os.environ.get("MDP_TEST_PG_URL", DEFAULT_URL)
    try:
        admin = _connect(url)
    except Exception as exc:
        message = f'no PostgreSQL server at {url} ({exc}); start one with: eval "$(scripts/ci-services.sh)"'
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    admin.autocommit = True
    name = f"mdp_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(url)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_runs_events_and_partitions_live_in_postgres(
    pg_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster as dg

    parts = urlsplit(pg_database)
    monkeypatch.setenv("DAGSTER_PG_HOST", parts.hostname or "127.0.0.1")
    monkeypatch.setenv("DAGSTER_PG_PORT", str(parts.port or 5432))
    monkeypatch.setenv("DAGSTER_PG_DB", parts.path.lstrip("/"))
    monkeypatch.setenv("DAGSTER_PG_USERNAME", parts.username or "")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", parts.password or "")
    home = make_dagster_home(tmp_path / "dagster_home", PG_YAML)
    config = write_tiny_project(tmp_path / "project")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("MDP_CONFIG", str(config))

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"

    from mdp_assets.runner import run_all

    summary = run_all()  # DagsterInstance.get() inside: the env above
    assert summary["sources"][SOURCE_NAME]["discovered"] == len(TINY_FILES)

    # A fresh instance, as another process (webserver, daemon) would open it, sees the runs.
    with dg.DagsterInstance.get() as instance:
        runs = {r.job_name: r for r in instance.get_runs()}
        assert set(runs) == {"ingest_source", "evaluate_index"}
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs.values())
        assert runs["ingest_source"].tags.get("dagster/partition") == SOURCE_NAME
        assert instance.get_dynamic_partitions("mdp_sources") == [SOURCE_NAME]
        event = instance.get_latest_materialization_event(dg.AssetKey("vector_index"))
        assert event is not None and event.asset_materialization is not None
        meta = event.asset_materialization.metadata
        assert meta["discovered"].value == len(TINY_FILES)
        assert meta["chunks"].value >= len(TINY_FILES)
        assert event.run_id == runs["ingest_source"].run_id
        # The pool that keeps one index writer: its one slot lives in Postgres, for every machine.
        pool = instance.event_log_storage.get_concurrency_info("mdp_index_writer")
        assert (pool.slot_count, pool.limit, pool.claimed_slots) == (1, 1, []), pool
        for asset, names in INGEST_CHECKS.items():
            for name in names:
                records = instance.event_log_storage.get_asset_check_execution_history(
                    dg.AssetCheckKey(dg.AssetKey(asset), name), limit=1
                )
                assert records and records[0].run_id == runs["ingest_source"].run_id, (asset, name)
                assert records[0].status.value == "SUCCEEDED", (asset, name, records[0].status)

    # And plainly in the database, with nothing written to SQLite under DAGSTER_HOME.
    conn = _connect(pg_database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pipeline_name, status FROM runs ORDER BY pipeline_name")
            assert cur.fetchall() == [("evaluate_index", "SUCCESS"), ("ingest_source", "SUCCESS")]
            cur.execute("SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'")
            (materializations,) = cur.fetchone()
            assert materializations == 6  # five partitioned assets + retrieval_eval
            cur.execute("SELECT partition FROM dynamic_partitions WHERE partitions_def_name = 'mdp_sources'")
            assert cur.fetchall() == [(SOURCE_NAME,)]
    finally:
        conn.close()
    assert not list(home.rglob("*.db")), "SQLite storage was used although dagster.yaml says postgres"
