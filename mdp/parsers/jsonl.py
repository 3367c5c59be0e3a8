"""JSON Lines: one document per non-blank line.

A bad line (invalid JSON, not an object, missing or blank text, wrong types, duplicate
id) becomes a :class:`ParseFailure` with its 1-based line number; the good lines go
through. A duplicate id's failure carries no record id, so it is quarantined under its
line's own document id, never under the first record's. Lines are split on ``\\n`` in
the raw bytes, so a broken line never hides its neighbours. UTF-8 (with or without BOM)
is read as is; UTF-16/32 with a BOM are decoded first; a file in a legacy encoding is
decoded with charset-normalizer's guess when one fits. Lines that are not UTF-8 in a file
that otherwise is, or when no encoding fits, are reported one by one.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdp.config import JsonlOptions
from mdp.parsers.base import ParseContext, ParsedDocument, ParseFailure, detect_encoding, mostly_utf8
from mdp.schemas import canonical_json_hash

if TYPE_CHECKING:
    from unstructured.documents.elements import Element

_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_BLANK = b" \t\r\n\x0b\x0c"


def split_lines(data: bytes) -> tuple[list[bytes | str], str]:
    """The file's lines (bytes, or str for UTF-16/32 files) and the encoding used."""
    for bom, name in _WIDE_BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(name)
            except UnicodeDecodeError:
                break
            return list(text.split("\n")), name
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    return list(data.split(b"\n")), "utf-8"


def _is_blank(line: bytes | str) -> bool:
    if isinstance(line, bytes):
        return not line.strip(_BLANK)
    return not line.strip(_BLANK.decode())


def _fallback_encoding(data: bytes) -> str | None:
    """charset-normalizer's guess for a file that is not UTF-8, if any fits the whole file."""
    encoding = detect_encoding(data)
    if encoding is None or encoding in ("utf_8", "utf-8", "ascii"):
        return None
    return encoding


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if isinstance(value, int | float) else type(value).__name__
    )


class JsonlParser:
    name = "mdp-jsonl"
    formats = ("jsonl",)
    extensions = (".jsonl", ".ndjson")

    def warmup(self) -> None:
        import unstructured.documents.elements  # noqa: F401 - import cost paid before the first file

    def parse(self, path: Path, context: ParseContext) -> Iterator[ParsedDocument | ParseFailure]:
        yield from self.parse_bytes(path.read_bytes(), context.parsing.jsonl)

    def parse_bytes(self, data: bytes, options: JsonlOptions) -> Iterator[ParsedDocument | ParseFailure]:
        lines, encoding = split_lines(data)
        fallback: str | None = None
        fallback_checked = damaged = False
        seen: dict[str, int] = {}
        for number, raw in enumerate(lines, start=1):
            if _is_blank(raw):
                continue
            line_encoding = encoding
            if isinstance(raw, bytes):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    if not fallback_checked:  # damaged UTF-8 lines are reported, never decoded as a guess
                        damaged, fallback_checked = mostly_utf8(data), True
                        fallback = None if damaged else _fallback_encoding(data)
                    try:
                        if fallback is None:
                            raise exc
                        text, line_encoding = raw.decode(fallback), fallback
                    except (UnicodeDecodeError, LookupError):
                        why = "the rest of the file is UTF-8" if damaged else "no other encoding fits"
                        yield ParseFailure(
                            f"line {number}: not valid UTF-8 (byte {raw[exc.start]:#04x} "
                            f"at column {exc.start + 1}; {why}) — fix that byte or re-save the file as UTF-8",
                            line=number,
                        )
                        continue
            else:
                text = raw
            yield self._record(number, text, options, seen, line_encoding)

    def _record(
        self, number: int, text: str, options: JsonlOptions, seen: dict[str, int], encoding: str
    ) -> ParsedDocument | ParseFailure:
        def fail(reason: str, record_id: str | None = None, content_hash: str | None = None) -> ParseFailure:
            return ParseFailure(
                f"line {number}: {reason}", external_id=record_id, line=number, content_hash=content_hash
            )

        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            return fail(f"invalid JSON: {exc.msg.removesuffix(' at')} at column {exc.colno}")
        except RecursionError:
            return fail("invalid JSON: nested too deeply")
        if not isinstance(record, dict):
            return fail(f"expected a JSON object, got {_type_name(record)}")
        try:
            content_hash = canonical_json_hash(record)
        except (ValueError, RecursionError) as exc:  # e.g. lone surrogates from \\ud800 escapes
            return fail(f"record cannot be hashed: {exc}")

        raw_id = record.get(options.id_field)
        if raw_id is None:
            record_id = f"line-{number}"
        elif isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
            return fail(
                f"id field {options.id_field!r} must be a string or an integer, got {_type_name(raw_id)}",
                content_hash=content_hash,
            )
        else:
            record_id = str(raw_id)
            if not record_id.strip():
                return fail(f"id field {options.id_field!r} is blank", content_hash=content_hash)
        if record_id in seen:  # no record id: its own line's id, never the first record's (mdp/ids.py)
            return fail(
                f"duplicate id {record_id!r} (first seen on line {seen[record_id]}) — give each record "
                f"a unique {options.id_field!r}",
                content_hash=content_hash,
            )
        seen[record_id] = number  # taken even if this record fails below: a later one is a duplicate

        parts: list[tuple[str, str]] = []
        for field_name in options.text_fields:
            value = record.get(field_name)
            if value is None:
                continue
            if not isinstance(value, str):
                return fail(
                    f"text field {field_name!r} must be a string, got {_type_name(value)}",
                    record_id,
                    content_hash,
                )
            if value.strip():
                parts.append((field_name, value))
        if not parts:
            fields = ", ".join(repr(f) for f in options.text_fields)
            return fail(
                f"no text: field(s) {fields} missing or blank — set [parsing.jsonl] text_fields",
                record_id,
                content_hash,
            )

        excluded = {options.id_field, *options.text_fields}
        if options.metadata_fields is None:
            metadata = {k: v for k, v in record.items() if k not in excluded}
        else:
            metadata = {k: record[k] for k in options.metadata_fields if k in record}
        if encoding not in ("utf-8",):
            metadata["source_encoding"] = encoding
        return ParsedDocument(
            record_id, _elements(parts, options.title_field), content_hash, metadata, line=number
        )


def _elements(parts: list[tuple[str, str]], title_field: str | None) -> list[Element]:
    """A Title for the title field, NarrativeText per paragraph of the other fields."""
    from unstructured.documents.elements import NarrativeText, Title

    elements: list[Element] = []
    for field_name, value in parts:
        if field_name == title_field:
            elements.append(Title(text=value.strip()))
            continue
        for paragraph in value.replace("\r\n", "\n").split("\n\n"):
            if paragraph.strip():
                elements.append(NarrativeText(text=paragraph.strip()))
    return elements
