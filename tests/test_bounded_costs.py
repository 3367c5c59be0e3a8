"""Chunking costs grow linearly with the input (issue 12, defect 10).

Text without whitespace used to be re-tokenised whole each time a piece was folded into the chunk
before it, so a 2 MB Markdown file or a JSONL file with one 5 MB line ran into the 60 s budget and
the good records beside it were lost with it. The cost is measured here as characters handed to the
tokenizer (deterministic), not as time.
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path
from typing import Any

import pytest
from unstructured.documents.elements import NarrativeText, Title

from mdp.chunking import chunk_elements
from mdp.config import ChunkingConfig, MdpConfig, SourceConfig
from mdp.tokenizer import count_tokens, load_tokenizer


class CountingTokenizer:
    """The real tokenizer, counting the characters it is asked to tokenise."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.chars = 0

    def encode(self, text: str, *args: Any, **kwargs: Any) -> Any:
        self.chars += len(text)
        return self.inner.encode(text, *args, **kwargs)

    def encode_batch(self, texts: list[str], *args: Any, **kwargs: Any) -> Any:
        self.chars += sum(len(t) for t in texts)
        return self.inner.encode_batch(texts, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _blob(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits
    return "".join(rng.choice(alphabet) for _ in range(n))


def _squash(text: str) -> str:
    return "".join(text.split())


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return load_tokenizer()


@pytest.mark.parametrize("strategy", ["by_title", "basic"])
def test_tokenised_characters_grow_linearly_without_whitespace(tokenizer: Any, strategy: str) -> None:
    config = ChunkingConfig(strategy=strategy)
    cost = {}
    for size in (100_000, 400_000):
        text = _blob(size)
        counting = CountingTokenizer(tokenizer)
        drafts = chunk_elements([Title(text="A blob"), NarrativeText(text=text)], counting, config)
        cost[size] = counting.chars / size
        assert _squash("".join(d.text for d in drafts)) == _squash("A blob" + text)  # nothing lost
        limit = config.max_tokens * 8  # chunking.MAX_CHARS_PER_TOKEN: the encoder sees no more
        assert all(len(d.text) <= limit for d in drafts), max(len(d.text) for d in drafts)
        assert all(d.token_count == count_tokens(tokenizer, [d.text])[0] <= config.max_tokens for d in drafts)
    # each character is tokenised a bounded number of times, whatever the input's size
    assert cost[400_000] < 8 and cost[400_000] < 1.5 * cost[100_000], cost


def test_prose_is_not_cut_by_the_character_cap(tokenizer: Any) -> None:
    words = "Glaciers carve deep valleys while rivers shape the plains below them. " * 400
    config = ChunkingConfig()
    drafts = chunk_elements([NarrativeText(text=words)], tokenizer, config)
    assert len(drafts) > 1
    assert all(config.target_tokens // 2 < d.token_count <= config.max_tokens for d in drafts[:-1])


@pytest.mark.slow
def test_megabyte_runs_without_whitespace_finish_and_keep_their_neighbours(tmp_path: Path) -> None:
    """Through the real workers under the default budget: the good records survive, and the blobs
    are chunked or quarantined with a reason, never lost to the timeout."""
    from mdp.isolation import process_files
    from mdp.sources import discover

    root = tmp_path / "root"
    root.mkdir()
    (root / "blob.md").write_text("# Attachment\n\n" + _blob(2_000_000, 1) + "\n")
    rows = [
        {"_id": "good-1", "text": "Glaciers carve valleys over thousands of years."},
        {"_id": "huge", "text": _blob(5_000_000, 2)},
        {"_id": "good-2", "text": "Espresso is brewed by forcing hot water through coffee."},
    ]
    (root / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    source = SourceConfig(name="big", root=root)
    config = MdpConfig(sources=[source])
    config.parsing.workers = 2
    outcomes = {o.file.relpath: o for o in process_files(discover(source).files, config)}

    reasons = [q.reason for o in outcomes.values() for q in o.quarantine]
    assert not [r for r in reasons if "timeout" in r or "memory" in r], reasons
    rows_outcome = outcomes["rows.jsonl"]
    kept = {d.document.external_id for d in rows_outcome.documents}
    assert {"good-1", "good-2"} <= kept
    assert rows_outcome.discovered == 3 and outcomes["blob.md"].discovered == 1
    for record in (q for o in outcomes.values() for q in o.quarantine):
        assert "unknown to the encoder" in record.reason and "—" in record.reason, record.reason
