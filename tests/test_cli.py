"""The `mdp` command line: JSON shapes, errors that name the problem, BEIR eval against ranx."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # whole `mdp` runs in child processes

MDP = [sys.executable, "-m", "mdp_cli"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MDP, *args], capture_output=True, text=True, timeout=900, cwd=cwd, env=os.environ.copy()
    )


def test_missing_path_is_a_clear_error(tmp_path):
    out = run("ingest", str(tmp_path / "nope"), "--store", str(tmp_path / "s"), "--json")
    assert out.returncode != 0
    assert "nope" in out.stderr and "no such file or folder" in out.stderr


def test_schema_export_and_list(tmp_path):
    out = run("schema", "export", str(tmp_path))
    assert out.returncode == 0, out.stderr
    names = {p.name for p in tmp_path.iterdir()}
    assert {"chunk.schema.json", "document.schema.json", "quarantine_record.schema.json"} <= names
    listing = run("schema", "list").stdout
    assert "chunk\t1.0" in listing


def test_doctor_reports_every_part(tmp_path):
    out = run("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(out.stdout)}
    for name in ("config", "mlx", "blas", "kernels", "model", "spacy-model", "store", "dagster-home"):
        assert name in checks and checks[name]["detail"]
    assert checks["model"]["ok"] and checks["spacy-model"]["ok"] and checks["mlx"]["ok"]


def _tiny_beir(root: Path) -> Path:
    beir = root / "tinybeir"
    (beir / "qrels").mkdir(parents=True)
    docs = {
        "d1": ("Glaciers", "Glaciers carve valleys as the ice slowly moves downhill."),
        "d2": ("Coffee", "Espresso is brewed by pushing hot water through finely ground coffee."),
        "d3": ("Volcanoes", "Lava is molten rock that erupts from a volcano."),
        "d4": ("Bread", "Sourdough rises thanks to wild yeast and lactic bacteria."),
        "d5": ("Tides", "The moon's gravity pulls the oceans and causes tides."),
        "d6": ("Bees", "Honey bees communicate the location of flowers with a waggle dance."),
    }
    with (beir / "corpus.jsonl").open("w") as fh:
        for doc_id, (title, text) in docs.items():
            fh.write(json.dumps({"_id": doc_id, "title": title, "text": text, "metadata": {}}) + "\n")
    queries = {
        "q1": "how do glaciers shape valleys",
        "q2": "what makes bread rise",
        "q3": "why are there tides",
        "q4": "how do bees tell each other where flowers are",
    }
    with (beir / "queries.jsonl").open("w") as fh:
        for qid, text in queries.items():
            fh.write(json.dumps({"_id": qid, "text": text}) + "\n")
    (beir / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\r\nq1\td1\t1\r\nq2\td4\t1\r\nq3\td5\t1\r\nq4\td6\t2\r\nq4\td3\t1\r\n"
    )
    return beir


def test_ingest_query_and_beir_eval(tmp_path, tiny_corpus):
    store = tmp_path / "store"
    out = run("ingest", str(tiny_corpus), "--store", str(store), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    for key in (
        "discovered",
        "chunked_documents",
        "quarantined",
        "chunks",
        "embedded",
        "index_version",
        "quarantine",
    ):
        assert key in report
    assert all(set(q) >= {"path", "reason"} for q in report["quarantine"])

    hits = json.loads(run("query", "potassium in bananas", "--store", str(store), "--json", "-k", "3").stdout)
    top = hits["hits"][0]
    assert top["document_id"].endswith("notes.txt") and top["path"].endswith("notes.txt")
    assert {"rank", "score", "document_id", "chunk_id", "path", "text"} <= set(top)

    beir = _tiny_beir(tmp_path)
    out = run("eval", "--beir", str(beir), "--store", str(tmp_path / "beir-store"), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    for strategy in ("vector", "bm25", "hybrid"):
        scores = result["strategies"][strategy]
        assert {"ndcg@10", "recall@10", "recall@100", "mrr@10"} <= set(scores)
        assert 0.0 <= scores["ndcg@10"] <= 1.0
    assert result["strategies"]["vector"]["recall@10"] == 1.0  # six documents, every one is retrieved
    assert result["protocol"] == "passages"
    assert run("eval", "--beir", str(beir), "--protocol", "chunks").returncode == 2  # names the choices


def test_beir_protocols_passages_and_pipeline(tmp_path, encoder):
    """passages: one passage per document, however long (the encoder truncates, as in BEIR);
    pipeline: the configured chunking."""
    from mdp.config import MdpConfig
    from mdp.evaluation import evaluate_beir
    from mdp.store import VectorStore

    beir = _tiny_beir(tmp_path)
    long_text = "Glacial ice grinds the bedrock beneath it into fine flour. " * 60  # ~700 tokens
    with (beir / "corpus.jsonl").open("a") as fh:
        fh.write(json.dumps({"_id": "d7", "title": "Ice", "text": long_text, "metadata": {}}) + "\n")
    counts = {}
    for protocol in ("passages", "pipeline"):
        config = MdpConfig()
        config.store.uri = str(tmp_path / protocol)
        result = evaluate_beir(config, beir, protocol=protocol)
        assert result["protocol"] == protocol and result["ingest"]["quarantined"] == 0
        frame = VectorStore(config.store.uri, read_only=True).chunks_frame(columns=["external_id", "text"])
        counts[protocol] = frame["external_id"].value_counts().to_dict()
        if protocol == "passages":
            (text,) = frame.loc[frame["external_id"] == "d7", "text"]
            assert text.startswith("Ice") and "".join(text.split()) == "".join(("Ice" + long_text).split())
    assert set(counts["passages"].values()) == {1} and len(counts["passages"]) == 7
    assert counts["pipeline"]["d7"] > 1 and counts["pipeline"]["d1"] == 1


@pytest.mark.parametrize("strategy", ["vector", "bm25", "hybrid"])
def test_eval_metrics_equal_ranx_on_the_same_run(tmp_path, encoder, strategy):
    """Our metrics over a real run of the real pipeline equal ranx's on the same run."""
    from ranx import Qrels, Run, evaluate

    from mdp.config import MdpConfig
    from mdp.evaluation import evaluate_beir, load_beir
    from mdp.metrics import evaluate_run
    from mdp.retrieval import Retriever
    from mdp.store import VectorStore

    beir = _tiny_beir(tmp_path)
    config = MdpConfig()
    config.store.uri = str(tmp_path / "store")
    evaluate_beir(config, beir)
    data = load_beir(beir)
    retriever = Retriever(VectorStore(config.store.uri, read_only=True), encoder)
    run_ = retriever.rank_documents(data.queries, strategy, k=100)
    metrics = ["ndcg@10", "recall@10", "recall@100", "mrr@10"]
    ours = evaluate_run(run_, data.qrels, metrics)
    theirs = evaluate(Qrels(data.qrels), Run(run_), metrics)
    for metric in metrics:
        assert ours[metric] == pytest.approx(float(theirs[metric]), abs=1e-9), metric
