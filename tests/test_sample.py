"""The bundled sample corpus: written completely, deterministic, and labelled consistently."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
from pypdf import PdfReader

from mdp.sample import SampleCorpus, render_handbook, sample_corpus_files, write_sample_corpus

DATA = Path(__file__).resolve().parent.parent / "mdp" / "sample_corpus"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> SampleCorpus:
    return write_sample_corpus(tmp_path_factory.mktemp("sample"))


def _tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _qrels(path: Path) -> list[tuple[str, str, int]]:
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    assert rows[0] == ["query-id", "corpus-id", "score"]
    return [(q, c, int(s)) for q, c, s in rows[1:]]


def _faq_ids(corpus: SampleCorpus) -> list[str]:
    lines = (corpus.corpus_root / "faq.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["_id"] for line in lines if line.strip()]


def test_layout(corpus: SampleCorpus) -> None:
    assert corpus.corpus_root == corpus.root / "corpus"
    assert corpus.queries == corpus.root / "eval" / "queries.jsonl"
    assert corpus.qrels == corpus.root / "eval" / "qrels.tsv"
    written = sorted(p.relative_to(corpus.corpus_root).as_posix() for p in corpus.corpus_root.rglob("*"))
    written = [p for p in written if (corpus.corpus_root / p).is_file()]
    assert written == sample_corpus_files()
    assert corpus.queries.is_file() and corpus.qrels.is_file()
    assert not corpus.queries.is_relative_to(corpus.corpus_root), "eval files must not be indexed"


def test_docs(corpus: SampleCorpus) -> None:
    docs = sorted((corpus.corpus_root / "docs").glob("*.md"))
    assert 14 <= len(docs) <= 18
    for doc in docs:
        text = doc.read_text(encoding="utf-8")
        assert text.isascii(), doc.name
        assert text.startswith("# "), doc.name
        assert 250 <= len(text.split()) <= 700, doc.name
    assert any("|---" in doc.read_text(encoding="utf-8") for doc in docs), "at least one table"


def test_handbook_pdf(corpus: SampleCorpus) -> None:
    reader = PdfReader(corpus.corpus_root / "handbook.pdf")
    assert len(reader.pages) >= 3
    for number, page in enumerate(reader.pages, 1):
        assert page.extract_text().strip(), f"page {number} has no text layer"
    chapters = sorted((DATA / "handbook").glob("*.md"))
    assert 4 <= len(chapters) <= 6
    assert len(reader.pages) >= len(chapters) + 1  # title page, then one new page per chapter
    everything = "\n".join(page.extract_text() for page in reader.pages)
    for chapter in chapters:
        heading = chapter.read_text(encoding="utf-8").splitlines()[0].removeprefix("# ")
        assert heading in everything


def test_render_is_deterministic() -> None:
    chapters = [("a.md", "# One\n\nSome text.\n\n- a bullet\n"), ("b.md", "# Two\n\n## Part\n\nMore text.\n")]
    assert render_handbook(chapters) == render_handbook(chapters)


def test_render_rejects_non_ascii() -> None:
    with pytest.raises(ValueError, match="non-ASCII"):
        render_handbook([("a.md", "# Caf\u00e9\n")])


def test_rewrite_is_byte_identical_and_untouched(corpus: SampleCorpus, tmp_path: Path) -> None:
    before = _tree(corpus.root)
    mtimes = {p: p.stat().st_mtime_ns for p in corpus.root.rglob("*") if p.is_file()}
    again = write_sample_corpus(corpus.root)
    assert again.changed == []
    assert _tree(corpus.root) == before
    assert {p: p.stat().st_mtime_ns for p in corpus.root.rglob("*") if p.is_file()} == mtimes
    # a fresh location gives the very same bytes
    other = write_sample_corpus(tmp_path / "other")
    assert _tree(other.root) == before


def test_rewrites_only_changed_files(tmp_path: Path) -> None:
    corpus = write_sample_corpus(tmp_path)
    target = corpus.corpus_root / "docs" / "chunking.md"
    original = target.read_bytes()
    target.write_bytes(b"edited")
    stray = corpus.corpus_root / "docs" / "stray.md"
    stray.write_text("# Stray\n", encoding="utf-8")
    assert write_sample_corpus(tmp_path).changed == ["corpus/docs/chunking.md"]
    assert target.read_bytes() == original
    assert stray.exists(), "nothing is deleted without prune"
    assert write_sample_corpus(tmp_path, prune=True).changed == ["corpus/docs/stray.md"]
    assert not stray.exists()


def test_faq(corpus: SampleCorpus) -> None:
    records = [json.loads(line) for line in (corpus.corpus_root / "faq.jsonl").read_text().splitlines()]
    assert 30 <= len(records) <= 40
    assert len({r["_id"] for r in records}) == len(records)
    assert len({r["title"].lower() for r in records}) == len(records), "questions are distinct"
    for record in records:
        assert set(record) == {"_id", "title", "text", "metadata"}
        assert record["title"].endswith("?") or record["title"].endswith(".")
        assert record["text"].strip() and record["metadata"]["topic"]


def test_queries_and_qrels(corpus: SampleCorpus) -> None:
    raw = corpus.qrels.read_bytes()
    assert b"\r" not in raw
    queries = [json.loads(line) for line in corpus.queries.read_text(encoding="utf-8").splitlines()]
    ids = [q["_id"] for q in queries]
    assert len(ids) >= 20 and len(set(ids)) == len(ids)
    assert all(q["text"].strip() for q in queries)
    assert len({q["text"].lower() for q in queries}) == len(queries)

    known = set(sample_corpus_files()) | set(_faq_ids(corpus))
    relevant: dict[str, dict[str, int]] = {}
    for qid, cid, score in _qrels(corpus.qrels):
        assert qid in ids, qid
        assert cid in known, f"{qid}: unknown corpus-id {cid}"
        assert score in (1, 2)
        assert cid not in relevant.setdefault(qid, {}), f"{qid}: {cid} judged twice"
        relevant[qid][cid] = score
    for qid in ids:
        assert 1 <= len(relevant.get(qid, {})) <= 3, qid
        assert max(relevant[qid].values()) == 2, f"{qid}: no best document"
