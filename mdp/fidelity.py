"""Text fidelity: is extracted text readable, or garbage that an extractor produced?

Extractors fail quietly. A PDF font without a Unicode map comes out of pdfminer as
``(cid:28)(cid:20)…``; pdfium gives control characters for the same glyphs; bytes decoded with
the wrong code page give mojibake (``Ã¤`` for ``ä``); a font with a private encoding gives
letters of the wrong script (``ϲΒϴΒ`` inside Arabic). Every such chunk would get a vector and
pollute search, so text is scored before it is chunked.

:func:`measure` counts, over the visible characters of a text:

- **unmapped glyphs**: ``(cid:N)`` runs (one glyph each), U+FFFD, control characters (other than
  tab and line breaks), private-use and non-characters: places where the extractor had a glyph
  but no character for it;
- **mojibake**: ftfy's count of sequences that look like UTF-8 read as a single-byte code page;
- **script plausibility**: charset-normalizer's *mess ratio* over the text's letters (digits,
  punctuation and symbols blanked out, so formulas, tables and dot leaders do not count): the
  share of letters in implausible company (letters of unrelated scripts in one word, accent runs
  that no language writes); 0 for clean text in any language, CJK included.

``score = 1 - (unmapped share + mojibake share + mess)``, floored at 0. A text is readable when
its score reaches ``[parsing] min_text_fidelity``. A readable text is then *cleaned*: unmapped
glyphs are removed (they carry no meaning a reader or an encoder could use) and repairable
mojibake is repaired with ftfy; both are counted in the document's metadata.

Plain functions over strings, free of any parser: the PDF parser uses them to choose between
extractors page by page, and the parse workers use :func:`screen_elements` as the last gate
for every format before chunking.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import regex

# A glyph the extractor could not map. pdfminer writes "(cid:N)"; pdfium and decoders give
# U+FFFD, C0/C1 controls or private-use code points. Tab, LF, VT, FF and CR are layout.
CID_RUN = re.compile(r"\(cid:\d+\)")
UNMAPPED_CHAR = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x9f\ufffd\ufffe\uffff\ue000-\uf8ff\ud800-\udfff\U000f0000-\U0010ffff]"
)
_UNMAPPED = re.compile(rf"{CID_RUN.pattern}|{UNMAPPED_CHAR.pattern}")
_SPACE = re.compile(r"\s+")
# the mess ratio of short texts is noisy: below this many letters it is not used
MESS_MIN_CHARS = 80
# mess ratio is computed on windows of this size spread over long texts (cost stays bounded)
MESS_SAMPLE_CHARS = 48_000
MESS_WINDOWS = 8
DEFAULT_MIN_FIDELITY = 0.9


@dataclass(frozen=True)
class Fidelity:
    """What :func:`measure` found in one text."""

    characters: int  # visible (non-space) characters; a (cid:N) run counts as one
    cid_runs: int
    unmapped: int  # cid runs + U+FFFD + control + private-use characters
    mojibake: int  # ftfy's count of mojibake sequences
    mess: float  # charset-normalizer's mess ratio (0 = plausible)
    sample: str = ""  # a short excerpt around the first problem, for reasons

    @property
    def unmapped_share(self) -> float:
        return self.unmapped / self.characters if self.characters else 0.0

    @property
    def mojibake_share(self) -> float:
        return self.mojibake / self.characters if self.characters else 0.0

    @property
    def score(self) -> float:
        """1 for clean text, towards 0 as the share of garbage grows."""
        return max(0.0, 1.0 - (self.unmapped_share + self.mojibake_share + self.mess))

    @property
    def flawless(self) -> bool:
        return self.unmapped == 0 and self.mojibake == 0 and self.mess < 0.01

    def readable(self, min_fidelity: float = DEFAULT_MIN_FIDELITY) -> bool:
        return self.characters > 0 and self.score >= min_fidelity

    def problem(self) -> str:
        """The main problem, in words, with the numbers behind it."""
        parts = sorted(
            [
                (self.unmapped_share, "unmapped"),
                (self.mojibake_share, "mojibake"),
                (self.mess, "mess"),
            ],
            reverse=True,
        )
        kind = parts[0][1]
        if kind == "unmapped":
            what = (
                f"{self.unmapped_share:.0%} of its characters are glyphs without a Unicode mapping "
                f"({self.cid_runs} (cid:N) runs, {self.unmapped - self.cid_runs} U+FFFD, control or "
                "private-use characters)"
            )
        elif kind == "mojibake":
            what = f"mojibake: {self.mojibake} sequences of text decoded with the wrong code page"
        else:
            what = f"implausible text: letters of unrelated scripts mixed (mess ratio {self.mess:.2f})"
        if self.sample:
            what += f", e.g. {self.sample!r}"
        return f"{what}; fidelity score {self.score:.2f}"


EMPTY = Fidelity(characters=0, cid_runs=0, unmapped=0, mojibake=0, mess=0.0)


def _sample_for_mess(text: str) -> str:
    if len(text) <= MESS_SAMPLE_CHARS:
        return text
    window = MESS_SAMPLE_CHARS // MESS_WINDOWS
    step = (len(text) - window) / (MESS_WINDOWS - 1)
    return "\n".join(text[int(i * step) : int(i * step) + window] for i in range(MESS_WINDOWS))


def _excerpt(text: str, position: int, width: int = 24) -> str:
    start = max(0, position - width // 2)
    return _SPACE.sub(" ", text[start : start + width]).strip()


_NOT_LETTERS = regex.compile(r"[^\p{L}\p{M}]+")
# scientific writing glues Greek to Latin letters (TNFα, IKKβ, αβT cells): not a script clash
_LATIN_GREEK_SEAM = regex.compile(r"(?<=\p{Latin})(?=\p{Greek})|(?<=\p{Greek})(?=\p{Latin})")


def measure(text: str) -> Fidelity:
    """Score one text (see the module docstring). Linear in its length, and cheap."""
    from charset_normalizer.md import mess_ratio
    from ftfy.badness import badness

    cid_runs = len(CID_RUN.findall(text))
    without_cid = CID_RUN.sub("\ufffd", text) if cid_runs else text
    characters = len(without_cid) - sum(len(m) for m in _SPACE.findall(without_cid))
    if characters <= 0:
        return EMPTY
    unmapped = len(UNMAPPED_CHAR.findall(without_cid))
    mojibake = badness(without_cid)
    visible = UNMAPPED_CHAR.sub("", without_cid) if unmapped else without_cid
    letters = _LATIN_GREEK_SEAM.sub(" ", _NOT_LETTERS.sub(" ", visible))
    mess = 0.0
    if len(letters) - letters.count(" ") >= MESS_MIN_CHARS:
        mess = float(mess_ratio(_sample_for_mess(letters), maximum_threshold=1.0))
    sample = ""
    if unmapped:
        first = _UNMAPPED.search(text)
        sample = _excerpt(text, first.start()) if first else ""
    elif mojibake or mess >= 0.05:
        sample = _excerpt(text, _first_odd(visible))
    return Fidelity(characters, cid_runs, unmapped, mojibake, round(mess, 4), sample)


def _first_odd(text: str) -> int:
    """Position of the first character outside letters, digits, spaces and common punctuation."""
    for index, char in enumerate(text):
        if not (char.isalnum() or char.isspace() or char in ".,;:!?'\"()[]{}-–—/%&*+=<>#@$€£¥°§"):
            return index
    return 0


@dataclass(frozen=True)
class Cleaned:
    """A text after :func:`clean`: unmapped glyphs removed, repairable mojibake repaired."""

    text: str
    removed_glyphs: int
    repaired_mojibake: bool


def clean(text: str) -> Cleaned:
    """Remove unmapped glyphs and repair mojibake (ftfy's ``fix_encoding``) where it helps."""
    removed = 0
    if _UNMAPPED.search(text):
        text, removed = _UNMAPPED.subn("", text)
    repaired = False
    from ftfy.badness import is_bad

    if is_bad(text):
        from ftfy import fix_encoding
        from ftfy.badness import badness

        fixed = fix_encoding(text)
        if fixed != text and badness(fixed) < badness(text):
            text, repaired = fixed, True
    return Cleaned(text, removed, repaired)


def better(candidate: Fidelity, incumbent: Fidelity, margin: float = 0.005) -> bool:
    """Whether ``candidate`` text should replace ``incumbent`` (a clear score gain, or more text
    at a score that is no worse)."""
    if incumbent.characters == 0:
        return candidate.characters > 0
    if candidate.characters == 0:
        return False
    if candidate.score > incumbent.score + margin:
        return True
    return candidate.score >= incumbent.score and candidate.characters > 1.5 * incumbent.characters


# -- the gate every document passes before chunking -------------------------------------------


@dataclass(frozen=True)
class Screening:
    """The verdict on a document's elements: a quarantine reason, or metadata to record."""

    reason: str | None
    metadata: dict[str, Any]


UNREADABLE_FIX = "re-save the file as UTF-8 text, or export it again from its source application"


def element_text(elements: Iterable[Any]) -> str:
    return "\n".join(t for e in elements if (t := getattr(e, "text", None)))


def screen_elements(elements: Sequence[Any], min_fidelity: float, fix: str = UNREADABLE_FIX) -> Screening:
    """Score a document's elements; quarantine garbage, clean what is readable (in place).

    Element texts are cleaned one by one (an element that was only garbage becomes empty and
    is dropped by the chunker). Returns the reason when the whole is unreadable.
    """
    fidelity = measure(element_text(elements))
    if fidelity.characters == 0:
        return Screening(None, {})
    if not fidelity.readable(min_fidelity):
        return Screening(f"unreadable text: {fidelity.problem()} — {fix}", {})
    metadata: dict[str, Any] = {"text_fidelity": round(fidelity.score, 3)}
    if fidelity.flawless:
        return Screening(None, metadata)
    removed = 0
    repaired = False
    for element in elements:
        text = getattr(element, "text", None)
        if not text:
            continue
        cleaned = clean(text)
        if cleaned.text != text:
            element.text = cleaned.text
        removed += cleaned.removed_glyphs
        repaired = repaired or cleaned.repaired_mojibake
    if removed:
        metadata["unmapped_glyphs_removed"] = removed
    if repaired:
        metadata["mojibake_repaired"] = True
    return Screening(None, metadata)


def chunk_extractor(document_metadata: Mapping[str, Any], pages: Sequence[int], default: str) -> str:
    """The extractor(s) a chunk's text came from, for its metadata: ``"pdfium"``, ``"pdfminer+ocr"``.

    Documents whose pages came from several extractors record ``extractor_pages``
    (extractor -> page numbers); others record one ``extractor``; else the parser's name.
    """
    by_page = document_metadata.get("extractor_pages")
    if isinstance(by_page, Mapping) and pages:
        wanted = set(pages)
        used = sorted(name for name, numbers in by_page.items() if wanted & set(numbers or ()))
        if used:
            return "+".join(used)
    extractor = document_metadata.get("extractor")
    return extractor if isinstance(extractor, str) and extractor else default
