"""Shared by the operations tests: a tiny project, a real Dagster webserver, GraphQL, job loaders.

Nothing here is mocked: the webserver is the installed ``dagster-webserver``, runs go
through the project's own ``Definitions`` against a real ``DAGSTER_HOME``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SOURCE_NAME = "tiny"
ASSETS = (
    "raw_documents",
    "parsed_chunks",
    "validated_samples",
    "embeddings",
    "vector_index",
    "retrieval_eval",
)
# Each asset's direct upstream assets, as declared in mdp_assets/assets.py.
EDGES: dict[str, set[str]] = {
    "raw_documents": set(),
    "parsed_chunks": {"raw_documents"},
    "validated_samples": {"parsed_chunks"},
    "embeddings": {"validated_samples"},
    "vector_index": {"raw_documents", "embeddings"},
    "retrieval_eval": {"vector_index"},
}
CHECKS: dict[str, set[str]] = {
    "validated_samples": {
        "schema_version",
        "documents_accounted_for",
        "text_is_sane",
        "chunk_lengths",
    },
    "embeddings": {"embeddings_are_sane", "near_duplicates"},
    "vector_index": {"index_matches_manifest", "quarantine_rate"},
    "retrieval_eval": {"retrieval_quality_no_regression"},
}
# The checks an ingest_source run evaluates (retrieval_eval's runs in evaluate_index).
INGEST_CHECKS = {asset: names for asset, names in CHECKS.items() if asset != "retrieval_eval"}
# The checks that guard what comes after them block downstream assets; the others report.
BLOCKING_CHECKS = {
    "schema_version",
    "documents_accounted_for",
    "embeddings_are_sane",
    "index_matches_manifest",
    "retrieval_quality_no_regression",
}
TINY_FILES: dict[str, str] = {
    "guide/install.md": "# Installing\n\nRun make setup once. It creates a virtual environment and installs "
    "every dependency, including the MLX encoder.\n",
    "guide/store.md": "# Vector store\n\nChunks and their embeddings live in LanceDB. Every write makes a "
    "new table version that can be checked out later.\n",
    "notes/bananas.txt": "Bananas are rich in potassium and grow in tropical climates.\n",
    "notes/glaciers.txt": "Glaciers are slow rivers of ice that carve valleys over thousands of years.\n",
}
TINY_QUERIES: dict[str, tuple[str, str]] = {
    "q1": ("which fruit is rich in potassium", "notes/bananas.txt"),
    "q2": ("where are embeddings stored", "guide/store.md"),
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_tiny_project(base: Path, store_uri: str | None = None) -> Path:
    """A corpus of four small Markdown/text files, two labelled queries and an mdp.toml; returns the toml."""
    corpus = base / "corpus"
    for rel, text in TINY_FILES.items():
        path = corpus / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    eval_dir = base / "eval"
    eval_dir.mkdir(parents=True, exist_ok=True)
    (eval_dir / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": qid, "text": text}) + "\n" for qid, (text, _) in TINY_QUERIES.items())
    )
    (eval_dir / "qrels.tsv").write_text(
        "query-id\tcorpus-id\tscore\n"
        + "".join(f"{qid}\t{doc}\t1\n" for qid, (_, doc) in TINY_QUERIES.items())
    )
    toml = base / "mdp.toml"
    toml.write_text(
        f'[[sources]]\nname = "{SOURCE_NAME}"\nroot = "corpus"\ninclude = ["**/*"]\n\n'
        "[parsing]\nworkers = 1\ntimeout_s = 120\n\n"
        f'[store]\nuri = "{store_uri or "store"}"\n\n'
        '[eval]\nqueries = "eval/queries.jsonl"\n'
        'strategies = ["vector", "bm25", "hybrid"]\nprimary = "hybrid"\n'
    )
    return toml


def make_dagster_home(path: Path, dagster_yaml: Path | None = None) -> Path:
    """A DAGSTER_HOME holding a copy of the repo's dagster.yaml (or the given one)."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(dagster_yaml or REPO / "dagster.yaml", path / "dagster.yaml")
    return path


def project_env(dagster_home: Path, config: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DAGSTER_HOME": str(dagster_home),
            "MDP_CONFIG": str(config),
            "DO_NOT_TRACK": "true",
            "SCARF_NO_ANALYTICS": "true",
            "UNSTRUCTURED_DISABLE_NOTICE": "1",
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
        }
    )
    env.update(extra)
    return env


RUN_ALL = (
    "import json, sys\n"
    "from mdp_assets.runner import run_all\n"
    "out = run_all()\n"
    "json.dump({'sources': out['sources'], 'eval': out['eval']}, sys.stdout, default=str)\n"
)


def run_pipeline(env: dict[str, str], timeout: float = 600) -> dict[str, Any]:
    """``mdp_assets.runner.run_all`` in a child process against env's DAGSTER_HOME and MDP_CONFIG."""
    proc = subprocess.run(
        [sys.executable, "-c", RUN_ALL], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise AssertionError(f"run_all failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    last = proc.stdout.strip().splitlines()[-1]
    return dict(json.loads(last))


class WebServer:
    """``dagster-webserver -w workspace.yaml`` on 127.0.0.1, in its own process group."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "dagster-webserver"), "-w", "workspace.yaml"]
            + ["-h", "127.0.0.1", "-p", str(self.port)],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 120) -> None:
        """Poll /server_info, then wait until the code location has loaded (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                raise RuntimeError(f"dagster-webserver exited with {code}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"no /server_info after {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.5)
        query = "{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus "
        query += "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
        while True:
            data = self.graphql(query)["workspaceOrError"]
            entries = data.get("locationEntries", [])
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                errors = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
                if errors:
                    raise RuntimeError(f"code location failed to load: {errors}")
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"code location not loaded after {timeout:.0f} s: {data}\n{self.log_tail()}"
                )
            time.sleep(0.5)

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=60) as resp:
            payload = json.loads(resp.read())
        if payload.get("errors"):
            raise AssertionError(f"GraphQL errors: {payload['errors']}")
        return dict(payload["data"])

    def stop(self) -> None:
        """SIGTERM the server's process group (it starts a code server child), then SIGKILL if needed."""
        if self._log.closed:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers in the group (gRPC code server)
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)
        self._log.close()


METADATA_VALUE_FIELDS = ("intRepr", "floatValue", "text", "mdStr", "path", "jsonString", "boolValue")


METADATA_FRAGMENT = """
fragment Meta on MetadataEntry {
  label
  ... on IntMetadataEntry { intRepr }
  ... on FloatMetadataEntry { floatValue }
  ... on TextMetadataEntry { text }
  ... on MarkdownMetadataEntry { mdStr }
  ... on PathMetadataEntry { path }
  ... on JsonMetadataEntry { jsonString }
  ... on BoolMetadataEntry { boolValue }
}
"""


def metadata_values(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """GraphQL metadataEntries (label + typed value fields) as {label: value}."""
    out: dict[str, Any] = {}
    for entry in entries:
        for field in METADATA_VALUE_FIELDS:
            if field in entry and entry[field] is not None:
                value = entry[field]
                out[entry["label"]] = int(value) if field == "intRepr" else value
                break
        else:
            out[entry["label"]] = None
    return out


def multiprocess_ingest_job() -> Any:
    """``ingest_source`` of the project's ``defs`` under the multiprocess executor (for reconstructable)."""
    import dagster as dg

    from mdp_assets.definitions import defs

    executor = dg.multiprocess_executor.configured({"max_concurrent": 2})
    return dg.Definitions.merge(defs, dg.Definitions(executor=executor)).resolve_job_def("ingest_source")


@dataclass
class UiProject:
    """A tiny project, its DAGSTER_HOME and a webserver reading it; ``materialize()`` runs the graph once."""

    base: Path
    config: Path
    home: Path
    env: dict[str, str]
    server: WebServer
    run: dict[str, Any] | None = None

    def materialize(self) -> dict[str, Any]:
        if self.run is None:
            self.run = run_pipeline(self.env)
        return self.run


_UI_PROJECT: UiProject | None = None


def start_ui_project(base: Path) -> UiProject:
    """One webserver per test process, shared by test_ui and test_browser (started on first use)."""
    global _UI_PROJECT
    if _UI_PROJECT is None or _UI_PROJECT.server.proc.poll() is not None:
        config = write_tiny_project(base)
        home = make_dagster_home(base / "dagster_home")
        env = project_env(home, config)
        server = WebServer(env, base / "webserver.log")
        try:
            server.wait_ready()
        except BaseException:
            server.stop()
            raise
        _UI_PROJECT = UiProject(base, config, home, env, server)
        atexit.register(server.stop)  # a second guard if the session ends without finalizers
    return _UI_PROJECT


def stop_ui_project() -> None:
    global _UI_PROJECT
    if _UI_PROJECT is not None:
        _UI_PROJECT.server.stop()
        _UI_PROJECT = None
