"""Page-level text sources for the PDF parser besides pdfminer: pdfium's text layer, form
field values (AcroForm and XFA), image detection and page rendering for OCR.

Everything here reads from a path or from bytes in memory (a decrypted PDF never touches the
disk) and returns plain strings per 1-based page number; :mod:`mdp.parsers.pdf` decides which
source each page's text comes from.
"""

from __future__ import annotations

import contextlib
import io
import re
import statistics
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pikepdf
    from unstructured.documents.elements import Element

# pdfium marks a hyphen that ended a line (the word goes on after it) with U+0002
_PDFIUM_HYPHEN = re.compile("\x02(?=(.)?)", re.DOTALL)
_SENTENCE_END = re.compile(r"[.!?:;。！？」』）)]$")
_CJK_EDGE = re.compile(r"[\u3000-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")
MAX_RENDER_PIXELS = 40_000_000  # a poster-sized page is scaled down rather than exhausting memory


# -- pdfium text ----------------------------------------------------------------------------


def open_pdfium(source: Path | bytes) -> Any:
    import pypdfium2 as pdfium

    return pdfium.PdfDocument(source if isinstance(source, bytes) else str(source))


def _unhyphenate(match: re.Match[str]) -> str:
    following = match.group(1)
    return "-" if following and following.isupper() else ""


def pdfium_text(document: Any, page_number: int) -> str:
    """The text of one page as pdfium reads it, line breaks normalised."""
    page = document[page_number - 1]
    try:
        textpage = page.get_textpage()
        try:
            text = textpage.get_text_bounded()
        finally:
            textpage.close()
    finally:
        page.close()
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _PDFIUM_HYPHEN.sub(_unhyphenate, text)


def paragraphs(text: str) -> list[str]:
    """Lines of a page grouped into paragraphs: a blank line, or a short line that ends a
    sentence, closes one. CJK lines join without a space."""
    lines = [line.strip() for line in text.split("\n")]
    lengths = [len(line) for line in lines if line]
    if not lengths:
        return []
    typical = statistics.median(lengths)
    out: list[str] = []
    current = ""
    for line in lines:
        if not line:
            if current:
                out.append(current)
            current = ""
            continue
        if not current:
            current = line
        elif _CJK_EDGE.match(current[-1]) and _CJK_EDGE.match(line[0]):
            current += line
        elif current.endswith("-") and line[:1].islower():
            current = current[:-1] + line
        else:
            current += " " + line
        if len(line) < 0.7 * typical and _SENTENCE_END.search(line):
            out.append(current)
            current = ""
    if current:
        out.append(current)
    return out


def field_lines(fields: Iterable[tuple[str, str]], page_text: str) -> list[str]:
    """``"label: value"`` lines not already in the page's text. unstructured reads some widget
    values but without their labels; "Applicant: Ada Lovelace" is what a search needs."""
    lines = [f"{name}: {value}" if name else value for name, value in fields]
    return [line for line in lines if line not in page_text]


def text_elements(texts: Iterable[str], page_number: int, kind: str = "narrative") -> list[Element]:
    """unstructured elements for text that did not come from unstructured itself."""
    from unstructured.documents.elements import ElementMetadata, NarrativeText, Text

    cls = Text if kind == "field" else NarrativeText
    return [cls(text=t, metadata=ElementMetadata(page_number=page_number)) for t in texts if t.strip()]


# -- images and rendering -------------------------------------------------------------------


def _resources_have_image(resources: Any, depth: int = 0) -> bool:
    """Any image XObject in a resource dictionary, looking into form XObjects (bounded depth)."""
    import pikepdf

    xobjects = resources.get("/XObject", {}) if resources is not None else {}
    for key in list(xobjects.keys()):
        xobj = xobjects[key]
        subtype = xobj.get("/Subtype")
        if subtype == pikepdf.Name.Image:
            return True
        if (
            subtype == pikepdf.Name.Form
            and depth < 3
            and _resources_have_image(xobj.get("/Resources"), depth + 1)
        ):
            return True
    return False


def page_has_image(page: pikepdf.Page) -> bool:
    import pikepdf

    try:
        if _resources_have_image(page.obj.get("/Resources"), 0):
            return True
        contents = page.obj.get("/Contents")
        if contents is None:
            return False
        streams = list(contents) if isinstance(contents, pikepdf.Array) else [contents]
        for stream in streams[:16]:  # inline images: BI ... ID ... EI
            data = stream.read_bytes()
            if b"BI" in data and b"EI" in data:
                return True
    except Exception:  # a malformed resource dictionary is not an image
        return False
    return False


def render_png(document: Any, page_number: int, dpi: int) -> bytes:
    """One page rendered in greyscale at ``dpi`` (capped at MAX_RENDER_PIXELS), as PNG bytes."""
    page = document[page_number - 1]
    try:
        width, height = page.get_size()
        scale = dpi / 72
        pixels = width * scale * height * scale
        if pixels > MAX_RENDER_PIXELS:
            scale *= (MAX_RENDER_PIXELS / pixels) ** 0.5
        image = page.render(scale=scale, grayscale=True).to_pil()
    finally:
        page.close()
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


# -- form fields ----------------------------------------------------------------------------


def _inherited(field: Any, key: str) -> Any:
    node, depth = field, 0
    while node is not None and depth < 32:
        value = node.get(key)
        if value is not None:
            return value
        node, depth = node.get("/Parent"), depth + 1
    return None


def _field_name(field: Any) -> str:
    label = str(_inherited(field, "/TU") or "").strip()
    if label:
        return label
    parts: list[str] = []
    node, depth = field, 0
    while node is not None and depth < 32:
        part = node.get("/T")
        if part is not None:
            parts.append(str(part))
        node, depth = node.get("/Parent"), depth + 1
    return ".".join(reversed(parts)).strip()


def _field_value(value: Any) -> str:
    import pikepdf

    if isinstance(value, pikepdf.Name):
        name = str(value).lstrip("/")
        return "" if name == "Off" else name
    if isinstance(value, pikepdf.Array):
        return ", ".join(v for v in (_field_value(item) for item in value) if v)
    if isinstance(value, pikepdf.String | str):
        return str(value).strip()
    return ""  # dictionaries (signatures), streams, numbers: no readable value


def acroform_values(pdf: pikepdf.Pdf) -> dict[int, list[tuple[str, str]]]:
    """Filled-in AcroForm values by 1-based page, as ``(label, value)`` pairs.

    pdfminer and pdfium read page content, not the values of form widgets; a filled-in form
    would lose exactly what was filled in. Signatures and push buttons have no text value.
    """
    form = pdf.Root.get("/AcroForm")
    if form is None or not form.get("/Fields"):
        return {}
    values: dict[int, list[tuple[str, str]]] = {}
    seen: set[tuple[str, str]] = set()
    for number, page in enumerate(pdf.pages, start=1):
        with contextlib.suppress(Exception):
            for annotation in page.obj.get("/Annots") or []:
                if annotation.get("/Subtype") != "/Widget":
                    continue
                kind = str(_inherited(annotation, "/FT") or "")
                if kind not in ("/Tx", "/Ch", "/Btn"):
                    continue
                value = _field_value(_inherited(annotation, "/V"))
                if not any(char.isalnum() for char in value):
                    continue
                name = _field_name(annotation)
                if (name, value) in seen:  # radio groups: one widget per option, one value
                    continue
                seen.add((name, value))
                values.setdefault(number, []).append((name, value))
    return values


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def xfa_values(pdf: pikepdf.Pdf) -> list[tuple[str, str]]:
    """Values of an XFA form's data set (``<xfa:datasets>``) as ``(name, value)`` pairs."""
    import pikepdf

    form = pdf.Root.get("/AcroForm")
    xfa = form.get("/XFA") if form is not None else None
    if xfa is None:
        return []
    try:
        if isinstance(xfa, pikepdf.Array):
            items = list(xfa)
            packets = {str(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}
            data = packets["datasets"].read_bytes() if "datasets" in packets else b""
        else:
            data = xfa.read_bytes()
        root = ET.fromstring(data)  # noqa: S314 - expat >= 2.4 bounds entity expansion
    except Exception:
        return []
    datasets = (
        root
        if _local(root.tag) == "datasets"
        else next((e for e in root.iter() if _local(e.tag) == "datasets"), None)
    )
    if datasets is None:
        return []
    lines: list[tuple[str, str]] = []

    def walk(element: ET.Element, path: list[str]) -> None:
        name = _local(element.tag)
        if name == "dataDescription":
            return
        children = list(element)
        text = (element.text or "").strip()
        if not children and text:
            lines.append((".".join([*path, name][-2:]), text))
        for child in children:
            walk(child, [*path, name])

    for child in datasets:
        walk(child, [])
    return lines
