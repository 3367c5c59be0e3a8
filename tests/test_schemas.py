import json

import pytest
from pydantic import ValidationError

from mdp.schemas import (
    Chunk,
    Document,
    InstructionSample,
    QuarantineRecord,
    TextLabelSample,
    VersionedModel,
    export_json_schemas,
    get_schema,
    json_schema,
    register_schema,
    schema_registry,
    text_hash,
)


def _doc(**kw):
    base = dict(
        id="src:a.md",
        source="src",
        uri="file:///tmp/a.md",
        path="/tmp/a.md",
        external_id="a.md",
        content_hash="0" * 64,
        format="markdown",
    )
    return Document(**{**base, **kw})


def test_chunk_rejects_blank_text_and_bad_counts():
    with pytest.raises(ValidationError):
        Chunk(id="d::0", document_id="d", text="   \n", position=0, token_count=3)
    with pytest.raises(ValidationError):
        Chunk(id="d::0", document_id="d", text="hello", position=-1, token_count=3)
    with pytest.raises(ValidationError):
        Chunk(id="d::0", document_id="d", text="hello", position=0, token_count=0)


def test_unknown_fields_are_refused():
    with pytest.raises(ValidationError):
        _doc(colour="red")


def test_text_hash_ignores_whitespace_layout_only():
    assert text_hash("a  b\n c") == text_hash("a b c")
    assert text_hash("a b c") != text_hash("a b d")
    chunk = Chunk(id="d::0", document_id="d", text="a  b", position=0, token_count=4)
    assert chunk.text_hash == text_hash("a b")


def test_round_trip_through_json():
    chunk = Chunk(
        id="d::1",
        document_id="d",
        text="x",
        position=1,
        pages=[1, 2],
        element_types=["Title"],
        token_count=3,
        metadata={"k": [1, "two", None]},
    )
    again = Chunk.model_validate_json(chunk.model_dump_json(exclude={"text_hash"}))
    assert again == chunk
    assert _doc().model_dump() == Document.model_validate(_doc().model_dump()).model_dump()


def test_builtin_schemas_are_registered_with_versions():
    names = schema_registry()
    for name in ("document", "chunk", "text_label_sample", "instruction_sample", "quarantine_record"):
        assert name in names
        assert names[name].schema_version
    assert get_schema("chunk") is Chunk
    assert json_schema("chunk")["x-schema-version"] == Chunk.schema_version


def test_user_schema_joins_registry_and_exports(tmp_path):
    @register_schema("qa_pair_test", version="2.1")
    class QAPair(VersionedModel):
        question: str
        answer: str

    assert get_schema("qa_pair_test") is QAPair
    assert QAPair.schema_version == "2.1"
    paths = export_json_schemas(tmp_path)
    exported = {p.name: json.loads(p.read_text()) for p in paths}
    assert exported["qa_pair_test.schema.json"]["x-schema-version"] == "2.1"
    assert set(exported["qa_pair_test.schema.json"]["required"]) == {"question", "answer"}
    assert "chunk.schema.json" in exported

    with pytest.raises(ValueError, match="already registered"):

        @register_schema("qa_pair_test")
        class Other(VersionedModel):
            x: int


def test_training_samples_and_quarantine():
    assert TextLabelSample(text="t", label=1).label == 1
    assert InstructionSample(instruction="i", response="r").input == ""
    with pytest.raises(ValidationError):
        QuarantineRecord(source="s", path="/p", reason="", stage="parse")
    with pytest.raises(KeyError, match="unknown schema"):
        get_schema("nope")
