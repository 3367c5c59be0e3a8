"""Inputs at the edges (issue 12, defect 11): deep HTML is parsed fully or refused with a reason,
invalid bytes in a UTF-8 file are not decoded as a guessed code page, and refusals under a
symlinked source root keep one record per file."""

from __future__ import annotations

import json
from pathlib import Path

from mdp.config import MdpConfig, ParsingConfig, SourceConfig
from mdp.parsers import ParseContext, ParsedDocument, ParseFailure, format_for_path, get_parser


def parse(path: Path) -> list[ParsedDocument | ParseFailure]:
    fmt = format_for_path(path)
    assert fmt is not None
    return list(get_parser(fmt).parse(path, ParseContext("t", path.parent, path.name, ParsingConfig())))


def texts(items: list[ParsedDocument | ParseFailure]) -> str:
    return " ".join(e.text for item in items if isinstance(item, ParsedDocument) for e in item.elements)


def nested_html(depth: int) -> str:
    return (
        "<html><body><p>BEFORE the nest.</p>"
        + "<div>" * depth
        + "<p>DEEPEST text of the page.</p>"
        + "</div>" * depth
        + "<p>AFTER the nest.</p></body></html>"
    )


def test_html_nested_past_lxmls_default_limit_is_parsed_fully(tmp_path: Path) -> None:
    for depth in (256, 300, 600):
        path = tmp_path / f"deep-{depth}.html"
        path.write_text(nested_html(depth))
        found = texts(parse(path))
        for word in ("BEFORE", "DEEPEST", "AFTER"):
            assert word in found, (depth, found)


def test_html_too_deep_to_parse_is_refused_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "abyss.html"
    path.write_text(nested_html(5000))
    (item,) = parse(path)
    assert isinstance(item, ParseFailure), item
    assert "5,00" in item.reason and "deep" in item.reason and "—" in item.reason, item.reason


def test_markdown_nested_deeply_is_parsed_fully(tmp_path: Path) -> None:
    path = tmp_path / "quotes.md"
    path.write_text("Intro line.\n\n" + "> " * 300 + "DEEPEST quoted line.\n\nOUTRO line.\n")
    found = texts(parse(path))
    assert "DEEPEST" in found and "OUTRO" in found, found


QUOTED = "It’s a “quoted” text. " * 30


def test_invalid_byte_in_a_utf8_file_is_not_decoded_as_a_code_page(tmp_path: Path) -> None:
    """Before: charset-normalizer guessed mac_iceland and 'It’s' was indexed as 'It‚Äôs'."""
    data = QUOTED.encode() + b"\xff one stray byte at the end."
    path = tmp_path / "damaged.txt"
    path.write_bytes(data)
    (item,) = parse(path)
    assert isinstance(item, ParseFailure), texts([item])[:200]
    offset = len(QUOTED.encode())
    assert f"offset {offset:,}" in item.reason and "UTF-8" in item.reason and "—" in item.reason, item.reason


def test_a_whole_file_in_a_legacy_code_page_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "legacy.txt"
    path.write_bytes("Don’t panic: the café serves crème brûlée. ".encode("cp1252") * 10)
    found = texts(parse(path))
    assert "Don’t panic: the café serves crème brûlée." in found


def test_jsonl_line_with_invalid_utf8_is_quarantined_and_the_rest_read_as_utf8(tmp_path: Path) -> None:
    good = [{"_id": f"r{i}", "text": f"Record {i}: it’s a “quoted” text. " * 3} for i in range(5)]
    lines = [json.dumps(r, ensure_ascii=False).encode() for r in good]
    lines.insert(2, b'{"_id": "bad", "text": "one stray \xff byte"}')
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    items = parse(path)
    docs = [i for i in items if isinstance(i, ParsedDocument)]
    (failure,) = [i for i in items if isinstance(i, ParseFailure)]
    assert failure.line == 3 and "UTF-8" in failure.reason and "—" in failure.reason, failure.reason
    assert len(docs) == 5 and "Record 4: it’s a “quoted” text." in texts(docs)
    assert all("source_encoding" not in d.metadata for d in docs)


def test_refusals_under_a_symlinked_root_keep_one_record_per_file(tmp_path: Path, encoder) -> None:
    from mdp.stages import run_ingest
    from mdp.store import VectorStore

    real = tmp_path / "real"
    for folder in ("a", "b", "c"):
        (real / folder).mkdir(parents=True)
        (real / folder / "tool.exe").write_bytes(b"MZ\x90\x00")
    (real / "c" / "notes.md").write_text("# Notes\n\nThe only document that parses.\n")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    config = MdpConfig(sources=[SourceConfig(name="linked", root=link)])
    config.store.uri = str(tmp_path / "store")
    config.parsing.workers = 1
    store = VectorStore(config.store.uri)

    report = run_ingest(config, encoder=encoder, store=store).as_dict()
    assert (report["discovered"], report["chunked_documents"], report["quarantined"]) == (4, 1, 3)
    refused = sorted(q["document_id"] for q in report["quarantine"])
    assert refused == ["linked:a/tool.exe", "linked:b/tool.exe", "linked:c/tool.exe"]
    again = run_ingest(config, encoder=encoder, store=store).as_dict()
    assert again["discovered"] == 4 and again["index_version"] == report["index_version"]
