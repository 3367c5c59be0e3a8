"""Pydantic schemas that guard every stage boundary (MDP-001).

Each model carries a ``schema_version``. A registry maps ``name -> model`` so a
user's own sample type can join (``register_schema``) and every registered
schema can be exported as JSON Schema (``mdp schema export``).
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue, computed_field, field_validator

SCHEMA_VERSION = "1.0"

Metadata = dict[str, JsonValue]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def normalise_text(text: str) -> str:
    """The form of a text that decides whether it must be embedded again."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def text_hash(text: str) -> str:
    return sha256_bytes(normalise_text(text).encode("utf-8"))


def canonical_json_hash(value: Any) -> str:
    return sha256_bytes(json.dumps(value, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8"))


class VersionedModel(BaseModel):
    """Base of every mdp schema: strict about unknown fields, versioned."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    schema_name: ClassVar[str] = "base"
    schema_version: ClassVar[str] = SCHEMA_VERSION


_REGISTRY: dict[str, type[VersionedModel]] = {}
M = TypeVar("M", bound=type[VersionedModel])


def register_schema(name: str, version: str = SCHEMA_VERSION) -> Callable[[M], M]:
    """Class decorator: add a model to the registry under ``name``.

    >>> @register_schema("qa_pair", version="1.0")
    ... class QAPair(VersionedModel):
    ...     question: str
    ...     answer: str
    """

    def wrap(cls: M) -> M:
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(
                f"schema name {name!r} is already registered by "
                f"{existing.__module__}.{existing.__qualname__}; "
                "choose another name"
            )
        cls.schema_name = name
        cls.schema_version = version
        _REGISTRY[name] = cls
        return cls

    return wrap


def schema_registry() -> dict[str, type[VersionedModel]]:
    return dict(_REGISTRY)


def get_schema(name: str) -> type[VersionedModel]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown schema {name!r}; registered: {', '.join(sorted(_REGISTRY))}") from None


def json_schema(name: str) -> dict[str, Any]:
    cls = get_schema(name)
    schema = cls.model_json_schema()
    schema["$id"] = f"mdp:{name}:{cls.schema_version}"
    schema["x-schema-version"] = cls.schema_version
    return schema


def export_json_schemas(directory: str | Path) -> list[Path]:
    """Write ``<name>.schema.json`` for every registered schema; returns the paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in sorted(_REGISTRY):
        path = out / f"{name}.schema.json"
        path.write_text(json.dumps(json_schema(name), indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


@register_schema("source_file", version="1.1")  # 1.1: device and inode
class SourceFile(VersionedModel):
    """A file found under a configured source root, before parsing.

    ``device``, ``inode``, ``size_bytes`` and ``mtime_ns`` are the identity of the file that was
    hashed; the parse worker opens the file again and refuses it unless all four still match.
    """

    source: str = Field(description="Name of the configured source (the Dagster partition key)")
    path: str = Field(description="Absolute path of the file")
    relpath: str = Field(description="Path relative to the source root, with forward slashes")
    format: str = Field(description="Parser format key, e.g. pdf, jsonl, markdown")
    size_bytes: int = Field(ge=0)
    content_hash: str = Field(description="sha256 of the file's bytes")
    mtime_ns: int = 0
    device: int = Field(default=0, description="st_dev of the hashed file (0: unknown)")
    inode: int = Field(default=0, description="st_ino of the hashed file (0: unknown)")


@register_schema("document", version="1.1")  # 1.1: relpath
class Document(VersionedModel):
    """One logical document: a file, or one record of a JSONL file."""

    id: str = Field(
        min_length=1,
        description="Stable id from mdp.ids.document_id: '<source>:<relpath>' or "
        "'<source>:<relpath>#<record id>', with reserved characters percent-encoded",
    )
    source: str
    uri: str = Field(description="file:// URI of the input, with '#<record id>' for records")
    path: str = Field(description="Absolute path of the input file")
    relpath: str = Field(default="", description="The input file's path relative to its source root")
    external_id: str = Field(description="The id relevance judgments use: the relpath, or the record id")
    content_hash: str = Field(min_length=16)
    format: str
    metadata: Metadata = Field(default_factory=dict)


@register_schema("chunk")
class Chunk(VersionedModel):
    """A piece of a document small enough for the encoder."""

    id: str = Field(min_length=1, description="'<document id>::<position>'")
    document_id: str = Field(min_length=1)
    text: str = Field(min_length=1)
    position: int = Field(ge=0)
    pages: list[int] = Field(default_factory=list)
    element_types: list[str] = Field(default_factory=list)
    token_count: int = Field(ge=1)
    metadata: Metadata = Field(default_factory=dict)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("chunk text is blank")
        return value

    @computed_field  # type: ignore[prop-decorator]
    @property
    def text_hash(self) -> str:
        return text_hash(self.text)

    @staticmethod
    def make_id(document_id: str, position: int) -> str:
        return f"{document_id}::{position}"


@register_schema("text_label_sample")
class TextLabelSample(VersionedModel):
    """A classification-style training sample."""

    text: str = Field(min_length=1)
    label: str | int
    metadata: Metadata = Field(default_factory=dict)


@register_schema("instruction_sample")
class InstructionSample(VersionedModel):
    """An instruction-tuning sample."""

    instruction: str = Field(min_length=1)
    response: str = Field(min_length=1)
    input: str = ""
    metadata: Metadata = Field(default_factory=dict)


@register_schema("quarantine_record", version="1.2")  # 1.1: format; 1.2: relpath
class QuarantineRecord(VersionedModel):
    """Why an input did not become chunks. Every input ends as chunks or as one of these."""

    source: str
    path: str = Field(description="The input file's path, as discovered")
    relpath: str = Field(default="", description="The input's path relative to its source root")
    reason: str = Field(min_length=1, description="Readable: what is wrong and, where known, how to fix it")
    stage: str = Field(description="discover | parse | validate | embed")
    parser: str = ""
    format: str = Field(default="", description="The input's format where known; empty when none matched")
    document_id: str | None = None
    content_hash: str | None = None
    line: int | None = Field(default=None, description="1-based line for JSONL records")


@register_schema("labelled_query")
class LabelledQuery(VersionedModel):
    """An evaluation query with graded relevance over documents' external ids."""

    id: str
    text: str = Field(min_length=1)
    relevant: dict[str, int] = Field(default_factory=dict)
