"""Chunking with unstructured's chunkers and the encoder's tokenizer as the hard limit."""

from __future__ import annotations

import pytest
from unstructured.documents.elements import ElementMetadata, ListItem, NarrativeText, PageBreak, Title

from mdp.chunking import ChunkDraft, chunk_elements, special_token_count, split_to_limit
from mdp.config import ChunkingConfig
from mdp.tokenizer import count_tokens, load_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def on_page(element, page: int):
    element.metadata = ElementMetadata(page_number=page)
    return element


def squash(text: str) -> str:
    return "".join(text.split())


def check(drafts: list[ChunkDraft], tokenizer, max_tokens: int, source: str) -> None:
    assert drafts, "no chunks"
    for draft in drafts:
        assert draft.text.strip()
        assert draft.token_count == count_tokens(tokenizer, [draft.text])[0] <= max_tokens
    assert squash("".join(d.text for d in drafts)) == squash(source)


@pytest.mark.parametrize("strategy", ["by_title", "basic"])
def test_sections_pages_and_types(tokenizer, strategy: str) -> None:
    elements = [
        on_page(Title(text="Installation"), 1),
        on_page(NarrativeText(text="Download the archive and unpack it into a folder of your choice."), 1),
        on_page(ListItem(text="Run the installer."), 2),
        PageBreak(text=""),
        on_page(Title(text="Usage"), 3),
        on_page(NarrativeText(text="Start the program from the menu and open a document."), 3),
    ]
    config = ChunkingConfig(strategy=strategy, max_tokens=256, target_tokens=200, combine_under_chars=0)
    drafts = chunk_elements(elements, tokenizer, config)
    check(drafts, tokenizer, 256, "".join(e.text for e in elements))
    assert {p for d in drafts for p in d.pages} == {1, 2, 3}
    if strategy == "by_title":  # a new title starts a new chunk
        assert len(drafts) == 2
        assert drafts[0].pages == [1, 2] and drafts[0].element_types == ["Title", "NarrativeText", "ListItem"]
        assert drafts[1].text.startswith("Usage") and drafts[1].pages == [3]


def test_hard_limit_on_long_text_without_spaces(tokenizer) -> None:
    text = "supercalifragilistic" * 400 + " ordinary words follow here " * 50 + "日本語のテキスト" * 100
    elements = [NarrativeText(text=text)]
    for max_tokens in (16, 64, 256):
        config = ChunkingConfig(max_tokens=max_tokens, target_tokens=max_tokens)
        check(chunk_elements(elements, tokenizer, config), tokenizer, max_tokens, text)


def test_target_keeps_chunks_near_the_target(tokenizer) -> None:
    sentences = [
        NarrativeText(text=f"Sentence number {i} talks about vector search and chunking.") for i in range(300)
    ]
    config = ChunkingConfig(strategy="basic", max_tokens=128, target_tokens=100)
    drafts = chunk_elements(sentences, tokenizer, config)
    check(drafts, tokenizer, 128, "".join(e.text for e in sentences))
    mean = sum(d.token_count for d in drafts) / len(drafts)
    assert 50 <= mean <= 128


def test_blank_input_gives_no_chunks(tokenizer) -> None:
    assert chunk_elements([], tokenizer, ChunkingConfig()) == []
    blank = [NarrativeText(text="   "), PageBreak(text=""), Title(text="\n\t")]
    assert chunk_elements(blank, tokenizer, ChunkingConfig()) == []


def test_split_to_limit_prefers_word_boundaries(tokenizer) -> None:
    text = " ".join(f"word{i}" for i in range(500))
    pieces = split_to_limit(text, tokenizer, 20)
    assert all(n <= 20 for _, n in pieces)
    assert " ".join(p for p, _ in pieces) == text  # cuts only at spaces here
    assert special_token_count(tokenizer) == 2
    with pytest.raises(ValueError, match="no room"):
        split_to_limit(text, tokenizer, 2)


def test_document_strategy_keeps_each_document_whole(tokenizer) -> None:
    """The BEIR protocol: one passage per document, longer than the limit; the encoder truncates it."""
    body = "Cells divide when the signal arrives and the membrane responds. " * 40
    elements = [on_page(Title(text="Cell division"), 1), on_page(NarrativeText(text=body), 2)]
    config = ChunkingConfig(strategy="document", max_tokens=64, target_tokens=48)
    (draft,) = chunk_elements(elements, tokenizer, config)
    assert squash(draft.text) == squash("Cell division" + body)
    assert draft.token_count == count_tokens(tokenizer, [draft.text])[0] > 64
    assert draft.pages == [1, 2] and draft.element_types == ["Title", "NarrativeText"]
