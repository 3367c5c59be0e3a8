"""Markdown, HTML and plain text through unstructured, so elements carry their types."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdp.parsers.base import (
    ParseContext,
    ParsedDocument,
    ParseFailure,
    decode_text,
    encoding_error_reason,
    ensure_unstructured_ready,
)

if TYPE_CHECKING:
    from unstructured.documents.elements import Element


# libxml2 stops at 256 levels of nesting by default and drops the rest without an error; with its
# huge-tree option it follows 2,048, and unstructured's own recursion stops near 1,000.
_DEEP_NESTING_NOTE = "deeper than the HTML parser can follow (about 1,000 levels)"
_deep_html_ready = False


def _allow_deep_html() -> None:
    """Give unstructured's HTML partitioner (Markdown goes through it too) the same lxml parser it
    builds, with libxml2's huge-tree option, so nesting past 255 levels is parsed instead of cut."""
    global _deep_html_ready
    if _deep_html_ready:
        return
    try:
        import unstructured.partition.html.parser as parser_module
        import unstructured.partition.html.partition as partition_module
        from lxml import etree

        parser = etree.HTMLParser(remove_comments=True, remove_pis=True, huge_tree=True)
        parser.set_element_class_lookup(parser_module.element_class_lookup)
        if hasattr(partition_module, "html_parser"):
            partition_module.html_parser = parser
    except (ImportError, AttributeError):  # another unstructured layout: _nesting_truncated still guards
        pass
    _deep_html_ready = True


def _nesting_truncated() -> bool:
    """Whether the last HTML parse stopped at libxml2's depth limit (it drops the rest silently)."""
    try:
        import unstructured.partition.html.partition as partition_module

        log = partition_module.html_parser.error_log
    except (ImportError, AttributeError):
        return False
    return any("Excessive depth" in entry.message for entry in log)


def _html_depth(text: str) -> int:
    """Deepest element nesting of an HTML text, counted from its tags (void elements excluded)."""
    void = {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "source",
        "track",
        "wbr",
    }
    depth = deepest = 0
    for closing, name, self_closing in re.findall(r"<(/?)([A-Za-z][\w:-]*)[^>]*?(/?)>", text):
        if name.lower() in void or self_closing:
            continue
        depth = max(0, depth - 1) if closing else depth + 1
        deepest = max(deepest, depth)
    return deepest


class _UnstructuredTextParser:
    """Shared flow: read bytes, decode (BOM, UTF-16, detected legacy encodings), partition."""

    name = "unstructured-text"
    formats: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()
    through_html = True  # unstructured partitions Markdown by way of HTML

    def _partitioner(self) -> Callable[..., list[Element]]:
        raise NotImplementedError

    def warmup(self) -> None:
        ensure_unstructured_ready()
        self._partitioner()

    def _too_deep(self, text: str) -> str:
        return (
            f"nested too deeply: the markup is {_DEEP_NESTING_NOTE}, so part of it would be lost — "
            "flatten the nesting (unclosed tags, quotes or lists inside each other)"
        )

    def parse(self, path: Path, context: ParseContext) -> Iterator[ParsedDocument | ParseFailure]:
        ensure_unstructured_ready(context.parsing.sentence_splitter)
        data = path.read_bytes()
        content_hash = context.file_hash(path)
        try:
            text, encoding = decode_text(data)
        except UnicodeDecodeError as exc:
            yield ParseFailure(
                encoding_error_reason(exc), external_id=context.relpath, content_hash=content_hash
            )
            return
        if not text.strip():
            yield ParseFailure(
                "no text extracted: the file is empty", external_id=context.relpath, content_hash=content_hash
            )
            return
        try:
            elements = self._partitioner()(text=text, languages=list(context.parsing.languages))
            too_deep = self.through_html and _nesting_truncated()
        except RecursionError:
            too_deep = True
        except Exception as exc:  # unstructured raises many types for malformed markup
            yield ParseFailure(
                f"corrupt: {type(exc).__name__}: {exc}",
                external_id=context.relpath,
                content_hash=content_hash,
            )
            return
        if too_deep:  # what lies deeper would be missing: refuse rather than index a part silently
            yield ParseFailure(self._too_deep(text), external_id=context.relpath, content_hash=content_hash)
            return
        metadata: dict[str, Any] = {}
        if encoding not in ("utf-8", "utf-8-sig", "ascii"):
            metadata["source_encoding"] = encoding
        yield ParsedDocument(context.relpath, list(elements), content_hash, metadata)


class MarkdownParser(_UnstructuredTextParser):
    name = "unstructured-markdown"
    formats = ("markdown",)
    extensions = (".md", ".markdown")

    def _partitioner(self) -> Callable[..., list[Element]]:
        try:
            from unstructured.partition.md import partition_md
        except ImportError as exc:
            from mdp.parsers.base import ParserSetupError

            raise ParserSetupError(
                f"markdown parsing needs the 'markdown' package ({exc}): `.venv/bin/pip install markdown` "
                "(or unstructured[md])"
            ) from exc
        _allow_deep_html()
        return partition_md


class HtmlParser(_UnstructuredTextParser):
    name = "unstructured-html"
    formats = ("html",)
    extensions = (".html", ".htm")

    def _partitioner(self) -> Callable[..., list[Element]]:
        from unstructured.partition.html import partition_html

        _allow_deep_html()
        return partition_html

    def _too_deep(self, text: str) -> str:
        return (
            f"nested too deeply: the HTML is nested {_html_depth(text):,} levels deep, {_DEEP_NESTING_NOTE}, "
            "so part of it would be lost — flatten the nesting (often unclosed tags)"
        )


class TextParser(_UnstructuredTextParser):
    name = "unstructured-text"
    formats = ("text",)
    extensions = (".txt", ".text")
    through_html = False

    def _partitioner(self) -> Callable[..., list[Element]]:
        from unstructured.partition.text import partition_text

        return partition_text
