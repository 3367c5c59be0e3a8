"""A hostile corpus, generated here, through the real stages (issue 12).

Symlink swaps between discovery and parsing, symlinks out of the root, duplicate JSONL ids, '#',
'%', '@', newlines and undecodable bytes in file names, whitespace-free megabyte files, deep HTML,
invalid UTF-8, NUL bytes, truncated and fake PDFs, beside ordinary documents. The assertions are
the invariants, not the details of each case:

- discovered = chunked + quarantined, in the report and in the manifest, with one row per id;
- every quarantine reason is readable: one line saying what is wrong, naming no internal path;
- no garbage chunk: no NUL, control character, U+FFFD, (cid:N) run or text the encoder cannot see;
- no byte from outside the root anywhere in the store, in any version;
- once the corpus holds still, a re-run is a no-op: nothing parsed or embedded, no new version.
"""

from __future__ import annotations

import datetime
import json
import os
import random
import re
import string
from pathlib import Path

import pytest

from mdp.chunking import unknown_share
from mdp.config import MdpConfig, SourceConfig
from mdp.ids import parse_document_id
from mdp.reports import source_totals
from mdp.stages import (
    discover_stage,
    embed_stage,
    index_stage,
    parse_stage,
    run_ingest,
    validate_stage,
)
from mdp.store import VectorStore
from mdp.tokenizer import load_tokenizer

SECRET = "OUTSIDE-THE-ROOT-7f3a9c"
GARBAGE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]|\(cid:\d+\)|Ã.|â€|‚Ä")


def _blob(n: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))


def _pdf(path: Path, text: str) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_creation_date(datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC))
    pdf.set_font("helvetica", size=12)
    for page in range(3):
        pdf.add_page()
        pdf.multi_cell(0, 8, f"Page {page + 1}. {text} " * 8)
    return bytes(pdf.output())


def build(tmp_path: Path) -> tuple[Path, Path]:
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    for path in (outside / "secret.txt", outside / "sub" / "inner.md", outside / "victim.txt"):
        path.write_text(f"{SECRET} " * 50 + "\n")

    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "guide.md").write_text("# Guide\n\nLanceDB keeps every version of the index on disk.\n")
    (root / "sub" / "inner.md").write_text("# Inner\n\nA note in a folder that will be swapped.\n")
    (root / "victim.txt").write_text("A harmless note about spring weather.\n")
    # names that ids must carry intact
    for name in ("a#b.md", "50% off.md", "mail@host.md", "line\nbreak.md", "ünï©ødé ✓.md"):
        (root / name).write_text(f"# {name!r}\n\nA note whose file name is {name!r}, about rivers.\n")
    fd = os.open(os.fsencode(root) + b"/undecodable-\xff-name.txt", os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"A note whose name is not UTF-8, about mountains.\n")
    os.close(fd)
    # symlinks present at discovery
    (root / "link-out.txt").symlink_to(outside / "secret.txt")
    (root / "link-dir").symlink_to(outside, target_is_directory=True)
    (root / "broken.md").symlink_to(tmp_path / "nowhere.md")
    # records
    rows = [
        {"_id": "r1", "text": "Glaciers carve valleys."},
        {"_id": "r1", "text": "A duplicate that claims r1."},
        {"_id": "r2", "text": "Espresso is strong coffee."},
        "not json at all",
        {"_id": "huge", "text": _blob(1_200_000, 1)},
        {"_id": "nul", "text": "raw \x00 byte"},
        {"_id": "r3", "text": "Volcanoes erupt lava."},
    ]
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    lines[5] = '{"_id": "nul", "text": "raw \x00 byte"}'
    (root / "rows.jsonl").write_text("\n".join(lines) + "\n")
    # text that is not what it claims
    (root / "blob.md").write_text("# Attachment\n\n" + _blob(2_000_000, 2) + "\n")
    (root / "nul.txt").write_bytes(b"Text with a NUL\x00 byte in the middle.\n" * 5)
    quoted = "It’s a “quoted” text. " * 30
    (root / "damaged.txt").write_bytes(quoted.encode() + b"\xff and then more.")
    (root / "empty.md").write_text("")
    deep = "<html><body>" + "<div>" * 300 + "<p>Deep but fine.</p>" + "</div>" * 300 + "</body></html>"
    (root / "deep.html").write_text(deep)
    (root / "abyss.html").write_text("<html><body>" + "<div>" * 5000 + "<p>Too deep.</p></body></html>")
    # PDFs: a good one, a truncated one, one that is not a PDF
    good = _pdf(root / "good.pdf", "Ice sheets melt into the ocean.")
    (root / "good.pdf").write_bytes(good)
    (root / "truncated.pdf").write_bytes(good[: len(good) // 3])
    (root / "fake.pdf").write_bytes(
        b"%PDF-1.7\n" + bytes(random.Random(3).randrange(256) for _ in range(4000))
    )
    return root, outside


def swap(root: Path, outside: Path) -> None:
    """Between discovery and parsing: a file and a folder become symlinks out of the root."""
    (root / "victim.txt").unlink()
    (root / "victim.txt").symlink_to(outside / "victim.txt")
    (root / "sub").rename(root / "sub-moved")
    (root / "sub").symlink_to(outside / "sub", target_is_directory=True)


def everything_stored(store: VectorStore) -> str:
    parts = []
    for info in store.versions():
        frame = store.chunks_frame(version=info.version)
        parts += frame["text"].tolist() + frame["path"].tolist() + frame["metadata"].tolist()
    parts += [json.dumps(row, default=str) for row in store.manifest_table().to_pylist()]
    return "\n".join(parts)


def check_invariants(report: dict, store: VectorStore, tokenizer) -> None:
    assert report["discovered"] == report["chunked_documents"] + report["quarantined"]
    frame = store.manifest_table("hostile").to_pandas()
    assert frame["document_id"].is_unique
    totals = source_totals(store, "hostile")
    assert totals["discovered"] == report["discovered"] == len(frame)
    for doc_id, entry in store.manifest("hostile").items():
        assert parse_document_id(doc_id).relpath == entry.relpath
    for record in report["quarantine"]:
        reason = record["reason"]
        assert reason.strip() and "\n" not in reason and len(reason) > 20, record
        assert re.match(r"[a-z][\w ()'-]*:", reason), record  # "<what is wrong>: <detail, fix>"
        assert "/proc/" not in reason and "Traceback" not in reason, record
    chunks = store.chunks_frame(columns=["text"])["text"].tolist()
    assert len(chunks) == report["chunks"] > 0
    for text in chunks:
        assert not GARBAGE.search(text), repr(text[:200])
        assert unknown_share(tokenizer, [text]) < 0.5, repr(text[:200])


@pytest.mark.slow
def test_hostile_corpus_keeps_the_invariants(tmp_path: Path, encoder) -> None:
    root, outside = build(tmp_path)
    source = SourceConfig(name="hostile", root=root)
    config = MdpConfig(sources=[source])
    config.store.uri = str(tmp_path / "store")
    config.parsing.workers = 2
    store = VectorStore(config.store.uri)
    tokenizer = load_tokenizer()

    # run 1, stage by stage, with the swap between discovery and parsing
    plan = discover_stage(config, source, store)
    swap(root, outside)
    parsed = parse_stage(config, plan)
    embedded = embed_stage(validate_stage(parsed, config.chunking), encoder, store)
    index_stage(store, plan, embedded, "hostile-1")
    changed = {
        q.record.relpath: q.record.reason for q in parsed.quarantine if "changed between" in q.record.reason
    }
    assert set(changed) == {"victim.txt", "sub/inner.md"}, changed

    second = run_ingest(config, encoder=encoder, store=store).as_dict()  # sees the corpus as it is now
    check_invariants(second, store, tokenizer)
    chunked = {
        parse_document_id(i).relpath for i in store.chunks_frame(columns=["document_id"])["document_id"]
    }
    for name in ("guide.md", "a#b.md", "50% off.md", "mail@host.md", "line\nbreak.md", "ünï©ødé ✓.md"):
        assert name in chunked, (name, sorted(chunked))
    assert "undecodable-\udcff-name.txt" in chunked and "deep.html" in chunked and "good.pdf" in chunked
    rows = {
        parse_document_id(i).record_id for i in store.chunks_frame(columns=["document_id"])["document_id"]
    }
    assert {"r1", "r2", "r3"} <= rows and "huge" not in rows
    quarantined = {q["document_id"] for q in second["quarantine"]}
    assert {"hostile:rows.jsonl@2", "hostile:blob.md", "hostile:abyss.html", "hostile:nul.txt"} <= quarantined
    assert {
        "hostile:truncated.pdf",
        "hostile:fake.pdf",
        "hostile:damaged.txt",
        "hostile:empty.md",
    } <= quarantined
    assert {"hostile:link-out.txt", "hostile:link-dir", "hostile:victim.txt", "hostile:sub"} <= quarantined

    blob = everything_stored(store)
    assert "rivers" in blob  # the search below looks at real content
    assert SECRET not in blob

    versions, digest = len(store.versions()), store.manifest_digest("hostile")
    third = run_ingest(config, encoder=encoder, store=store).as_dict()
    check_invariants(third, store, tokenizer)
    assert (third["parsed_files"], third["embedded"], third["deleted_documents"]) == (0, 0, 0)
    assert third["index_version"] == second["index_version"] and len(store.versions()) == versions
    assert store.manifest_digest("hostile") == digest
    assert {k: third[k] for k in ("discovered", "chunked_documents", "quarantined", "chunks")} == {
        k: second[k] for k in ("discovered", "chunked_documents", "quarantined", "chunks")
    }
