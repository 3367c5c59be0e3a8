"""QueryGenerator on a tiny random Qwen3 model (real mlx-lm batch_generate, no mocks).

The model's weights are random, so its questions are gibberish: these tests check the
plumbing (structure, counts, ids, determinism), never the content.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from tiny_lm import IM_START, build_tiny_lm

from mdp.querygen import (
    GeneratedQuery,
    QueryGenerator,
    parse_questions,
    query_id,
    sample_chunks,
    to_labelled_queries,
    write_labelled_queries,
)
from mdp_resources.language_models import QueryGenerationDisabled, QueryGeneratorResource

CHUNKS = [
    (f"src:doc{i // 2}.md::{i % 2}", f"Passage {i}: photosynthesis, helicase and vector indexes, part {i}.")
    for i in range(12)
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("querygen") / "chat", seed=5)


@pytest.fixture(scope="module")
def sampling(model_dir: Path) -> QueryGenerator:
    # Random weights at temperature 0 only emit newlines; sampling gives lines of text to parse.
    return QueryGenerator(model_dir, questions_per_chunk=3, max_tokens=32, temperature=1.0, seed=7)


def test_parse_questions_cleans_numbers_preambles_and_duplicates() -> None:
    reply = (
        "<think>\nlet me think\n</think>\n"
        "Here are three questions:\n"
        "1. What does helicase do?\n"
        "\n"
        "2) what does helicase do?\n"
        '- "Where is the vector index stored?"\n'
        "Question 4: Why does Q-learning need 3.5 million steps?\n"
        "* One too many?\n"
    )
    assert parse_questions(reply, 3) == [
        "What does helicase do?",
        "Where is the vector index stored?",
        "Why does Q-learning need 3.5 million steps?",
    ]
    assert parse_questions(reply, 1) == ["What does helicase do?"]
    assert parse_questions("\n \n\x04\n", 2) == []


def test_sampling_is_deterministic_and_ignores_input_order() -> None:
    picked = sample_chunks(CHUNKS, 5, seed=0)
    assert len(picked) == 5 and len({cid for cid, _ in picked}) == 5
    assert picked == sample_chunks(CHUNKS[::-1], 5, seed=0)
    assert any(sample_chunks(CHUNKS, 5, seed=s) != picked for s in range(1, 6))
    assert sample_chunks(CHUNKS, None, seed=0) == sorted(CHUNKS)
    assert sample_chunks(CHUNKS, 100, seed=0) == sorted(CHUNKS)
    assert sample_chunks([("a", "  "), ("b", "text")], None, seed=0) == [("b", "text")]


def test_generate_writes_at_most_n_questions_per_sampled_chunk(sampling: QueryGenerator) -> None:
    queries = sampling.generate(CHUNKS, sample=6)
    sampled = {cid for cid, _ in sample_chunks(CHUNKS, 6, seed=7)}
    assert queries, "the seeded sampler writes some text for these chunks"
    assert all(isinstance(q, GeneratedQuery) for q in queries)
    assert {q.chunk_id for q in queries} <= sampled
    per_chunk = Counter(q.chunk_id for q in queries)
    assert max(per_chunk.values()) <= 3
    assert len({q.id for q in queries}) == len(queries)
    for q in queries:
        assert q.text and q.text == q.text.strip() and "\n" not in q.text
        assert q.id.startswith(query_id(q.chunk_id, 0)[:-1])
    for chunk_id in per_chunk:
        texts = [q.text.casefold() for q in queries if q.chunk_id == chunk_id]
        assert len(texts) == len(set(texts))
    # Queries come out grouped by chunk, in the sampled order, numbered from 0.
    order = [cid for cid, _ in sample_chunks(CHUNKS, 6, seed=7) if cid in per_chunk]
    assert list(dict.fromkeys(q.chunk_id for q in queries)) == order
    assert [q.id for q in queries if q.chunk_id == order[0]] == [
        query_id(order[0], i) for i in range(per_chunk[order[0]])
    ]


def test_generation_is_deterministic_with_a_seed(sampling: QueryGenerator, model_dir: Path) -> None:
    first = sampling.generate(CHUNKS, sample=4)
    assert sampling.generate(CHUNKS, sample=4) == first
    again = QueryGenerator(model_dir, questions_per_chunk=3, max_tokens=32, temperature=1.0, seed=7)
    assert again.generate(CHUNKS[::-1], sample=4) == first
    greedy = QueryGenerator(model_dir, questions_per_chunk=2, max_tokens=16)
    passages = ["one passage", "another passage"]
    assert greedy.replies(passages) == greedy.replies(passages)


def test_prompt_uses_the_chat_template_when_there_is_one(sampling: QueryGenerator, tmp_path: Path) -> None:
    chat = sampling.tokenizer.decode(sampling.prompt("Helicase unwinds DNA."))
    assert chat.startswith(IM_START + "system") and chat.endswith(IM_START + "assistant\n")
    assert "Write 3 different questions" in chat and "Helicase unwinds DNA." in chat

    plain_dir = build_tiny_lm(tmp_path / "plain", seed=6, chat_template=False)
    plain = QueryGenerator(plain_dir, questions_per_chunk=2, max_tokens=8, max_passage_tokens=4)
    assert not plain.tokenizer.has_chat_template
    text = plain.tokenizer.decode(plain.prompt("Helicase unwinds DNA during replication."))
    assert IM_START not in text and "Write 2 different questions" in text
    assert text.endswith("Questions:\n") and "replication" not in text  # passage cut to 4 tokens
    assert plain.info()["chat_template"] is False


def test_labelled_queries_point_at_the_source_document(tmp_path: Path) -> None:
    queries = [
        GeneratedQuery(id="q0", text="What does helicase do?", chunk_id="src:doc0.md::1"),
        GeneratedQuery(id="q1", text="Where are vectors kept?", chunk_id="src:doc3.md::0"),
    ]
    external = {"src:doc0.md::1": "doc0.md", "src:doc3.md::0": "doc3.md"}
    labelled = to_labelled_queries(queries, external)
    assert [(lq.id, lq.text, lq.relevant) for lq in labelled] == [
        ("q0", "What does helicase do?", {"doc0.md": 1}),
        ("q1", "Where are vectors kept?", {"doc3.md": 1}),
    ]
    by_function = to_labelled_queries(queries, lambda cid: cid.split("::")[0])
    assert by_function[1].relevant == {"src:doc3.md": 1}

    path = write_labelled_queries(labelled, tmp_path / "generated")
    assert path.name == "queries.jsonl"
    assert (path.parent / "qrels.tsv").read_text().splitlines() == [
        "query-id\tcorpus-id\tscore",
        "q0\tdoc0.md\t1",
        "q1\tdoc3.md\t1",
    ]
    # The evaluation stage reads it back as labelled queries.
    from mdp.evaluation import load_labelled_queries

    loaded = load_labelled_queries(path)
    assert loaded.queries == {"q0": "What does helicase do?", "q1": "Where are vectors kept?"}
    assert loaded.qrels == {"q0": {"doc0.md": 1}, "q1": {"doc3.md": 1}}


def test_resource_is_disabled_until_model_path_is_set(model_dir: Path) -> None:
    disabled = QueryGeneratorResource()
    assert not disabled.enabled
    with pytest.raises(QueryGenerationDisabled, match="model_path"):
        disabled.get_generator()
    with pytest.raises(QueryGenerationDisabled, match="model_path"):
        QueryGeneratorResource(model_path="  ").generate(CHUNKS)

    resource = QueryGeneratorResource(
        model_path=str(model_dir), questions_per_chunk=2, sample_chunks=3, max_tokens=16, temperature=1.0
    )
    generator = resource.get_generator()
    assert generator is resource.get_generator()
    assert (generator.questions_per_chunk, generator.max_tokens) == (2, 16)
    queries = resource.generate(CHUNKS)
    assert {q.chunk_id for q in queries} <= {cid for cid, _ in sample_chunks(CHUNKS, 3, seed=0)}
    assert max(Counter(q.chunk_id for q in queries).values(), default=0) <= 2


def test_argument_checks(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="questions_per_chunk"):
        QueryGenerator(model_dir, questions_per_chunk=0)
    with pytest.raises(FileNotFoundError, match="config.json"):
        QueryGenerator(tmp_path)
    with pytest.raises(ValueError, match="sample"):
        sample_chunks(CHUNKS, -1, seed=0)
