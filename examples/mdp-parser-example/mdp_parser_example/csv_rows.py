"""One document per CSV row: an example of a third-party mdp parser.

The row's ``id`` column (if any) is its record id, else ``row-<n>``; a ``title`` column
becomes a ``Title`` element and every other non-empty column a ``NarrativeText``
element ``"<column>: <value>"``. A row with no text, a duplicate id or a ragged
length becomes a ``ParseFailure`` with its line number; the other rows go through.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

from mdp.parsers.base import ParseContext, ParsedDocument, ParseFailure, decode_text, encoding_error_reason
from mdp.schemas import canonical_json_hash


class CsvRowsParser:
    name = "example-csv-rows"
    formats = ("csv",)
    extensions = (".csv",)
    id_column = "id"
    title_column = "title"

    def parse(self, path: Path, context: ParseContext) -> Iterator[ParsedDocument | ParseFailure]:
        from unstructured.documents.elements import Element, NarrativeText, Title

        try:
            text, _ = decode_text(path.read_bytes())
        except UnicodeDecodeError as exc:
            yield ParseFailure(encoding_error_reason(exc), external_id=context.relpath)
            return
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            yield ParseFailure("no text extracted: the CSV file is empty", external_id=context.relpath)
            return
        except csv.Error as exc:
            yield ParseFailure(f"corrupt: CSV header: {exc}", external_id=context.relpath)
            return
        seen: set[str] = set()
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield ParseFailure(f"line {reader.line_num}: {exc}", line=reader.line_num)
                continue
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue  # blank row: not a document
            if len(values) != len(header):
                yield ParseFailure(f"line {line}: {len(values)} fields, header has {len(header)}", line=line)
                continue
            row = dict(zip(header, values, strict=True))
            record_id = row.get(self.id_column, "").strip() or f"row-{line}"
            if record_id in seen:
                yield ParseFailure(
                    f"line {line}: duplicate id {record_id!r}", external_id=record_id, line=line
                )
                continue
            elements: list[Element] = []
            for column, value in row.items():
                if column == self.id_column or not value.strip():
                    continue
                if column == self.title_column:
                    elements.insert(0, Title(text=value.strip()))
                else:
                    elements.append(NarrativeText(text=f"{column}: {value.strip()}"))
            if not elements:
                yield ParseFailure(f"line {line}: row has no text", external_id=record_id, line=line)
                continue
            seen.add(record_id)
            yield ParsedDocument(
                record_id, elements, canonical_json_hash(row), {"columns": header}, line=line
            )
