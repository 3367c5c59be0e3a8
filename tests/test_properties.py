"""Properties (hypothesis): JSONL never crashes or loses a line; chunks never exceed the limit
nor lose text; schemas round-trip."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from unstructured.documents.elements import ListItem, NarrativeText, Title

from mdp.chunking import chunk_elements
from mdp.config import ChunkingConfig, JsonlOptions
from mdp.parsers.base import ParsedDocument, ParseFailure
from mdp.parsers.jsonl import JsonlParser
from mdp.schemas import Chunk, Document, QuarantineRecord, SourceFile
from mdp.tokenizer import count_tokens, load_tokenizer

TOKENIZER = load_tokenizer()
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def non_blank_lines(data: bytes) -> list[int]:
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 BOM is not content
    return [n for n, line in enumerate(data.split(b"\n"), start=1) if line.strip()]


def check_jsonl(data: bytes) -> None:
    items = list(JsonlParser().parse_bytes(data, JsonlOptions()))
    expected = non_blank_lines(data)
    assert sorted(i.line for i in items) == expected  # every non-blank line, once, good or bad
    for item in items:
        assert isinstance(item, ParsedDocument | ParseFailure)
        if isinstance(item, ParseFailure):
            assert item.reason.startswith(f"line {item.line}: ")
        else:
            assert item.elements and item.content_hash


def _no_wide_bom(data: bytes) -> bool:  # UTF-16/32 files are decoded before splitting (tested apart)
    return not data.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff"))


@FAST
@given(st.binary(max_size=400))
def test_jsonl_arbitrary_bytes(data: bytes) -> None:
    assume(_no_wide_bom(data))
    check_jsonl(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
records = st.fixed_dictionaries(
    {},
    optional={
        "_id": st.one_of(st.text(max_size=6), st.integers(), st.booleans(), st.none()),
        "title": st.one_of(st.text(max_size=30), st.integers()),
        "text": st.one_of(st.text(max_size=80), st.none(), st.lists(st.text(max_size=3), max_size=2)),
        "meta": json_values,
    },
)
lines = st.one_of(
    records.map(lambda r: json.dumps(r, ensure_ascii=False)),
    json_values.map(json.dumps),
    st.text(max_size=30),
    st.sampled_from(["", "   ", "\r", "{", "[]", "null"]),
)


@FAST
@given(st.lists(lines, max_size=12), st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_jsonl_structured_lines(rows: list[str], newline: str, bom: bool) -> None:
    assume(all("\n" not in row for row in rows))
    data = (b"\xef\xbb\xbf" if bom else b"") + newline.join(rows).encode("utf-8", "surrogatepass")
    check_jsonl(data)
    items = list(JsonlParser().parse_bytes(data, JsonlOptions()))
    good_ids = [i.external_id for i in items if isinstance(i, ParsedDocument)]
    assert len(good_ids) == len(set(good_ids))  # ids unique within a file


element_text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"]), min_size=0, max_size=300
) | st.sampled_from(["x" * 700, "日本語" * 120, "word " * 150])
element = st.tuples(st.sampled_from([Title, NarrativeText, ListItem]), element_text)


@FAST
@given(
    st.lists(element, max_size=12),
    st.integers(min_value=8, max_value=96),
    st.sampled_from(["by_title", "basic"]),
    st.integers(min_value=0, max_value=300),
)
def test_chunks_respect_the_limit_and_keep_text(
    specs: list[tuple[type, str]], max_tokens: int, strategy: str, combine: int
) -> None:
    elements = [cls(text=text) for cls, text in specs]
    config = ChunkingConfig(
        strategy=strategy, max_tokens=max_tokens, target_tokens=max_tokens, combine_under_chars=combine
    )
    drafts = chunk_elements(elements, TOKENIZER, config)
    for draft in drafts:
        assert draft.text.strip()
        assert draft.token_count == count_tokens(TOKENIZER, [draft.text])[0] <= max_tokens
    source = "".join("".join(text.split()) for _, text in specs)
    assert "".join("".join(d.text.split()) for d in drafts) == source


ids = st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1, max_size=30)
metadata = st.dictionaries(
    st.text(max_size=8), st.one_of(st.none(), st.integers(), st.text(max_size=10)), max_size=4
)


@FAST
@given(
    ids,
    ids,
    st.text(min_size=1, max_size=60).filter(str.strip),
    st.integers(0, 50),
    st.lists(st.integers(1, 999)),
    metadata,
)
def test_schemas_round_trip(
    doc_id: str, source: str, text: str, position: int, pages: list[int], meta: dict
) -> None:
    file = SourceFile(
        source=source,
        path=f"/data/{doc_id}",
        relpath=doc_id,
        format="pdf",
        size_bytes=position,
        content_hash="0" * 64,
    )
    document = Document(
        id=doc_id,
        source=source,
        uri=f"file:///data/{doc_id}",
        path=file.path,
        external_id=doc_id,
        content_hash="f" * 64,
        format="pdf",
        metadata=meta,
    )
    chunk = Chunk(
        id=Chunk.make_id(doc_id, position),
        document_id=doc_id,
        text=text,
        position=position,
        pages=pages,
        element_types=["Title"],
        token_count=position + 1,
        metadata=meta,
    )
    record = QuarantineRecord(
        source=source, path=file.path, reason="corrupt: x", stage="parse", line=position
    )
    for model in (file, document, record):
        assert type(model).model_validate_json(model.model_dump_json()) == model
    dumped = chunk.model_dump(exclude={"text_hash"})
    again = Chunk.model_validate_json(json.dumps(dumped))
    assert again == chunk and again.text_hash == chunk.text_hash
