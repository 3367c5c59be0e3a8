"""DecoderEmbedder on a tiny random Qwen3 model built offline (real mlx-lm, no mocks)."""

from __future__ import annotations

from pathlib import Path

import mlx_lm
import numpy as np
import pytest
from tiny_lm import EOS, build_tiny_lm, strip_model_prefix, weight_names

from mdp.decoder import DecoderEmbedder, format_query, remap_bare_keys, safetensors_keys
from mdp_resources.language_models import DecoderEmbedderResource

TEXTS = [
    "x",
    "What does the vector index store?",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen in green plants.",
    "Helicase",
    "Dagster materialises assets; LanceDB keeps versioned tables of vectors, one per chunk, "
    "and every write makes a new version that readers see as a snapshot.",
    "nDCG@10",
]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("decoder")
    untied = build_tiny_lm(root / "untied", seed=1, tie_word_embeddings=False, append_eos=True)
    return {
        "untied": untied,
        "bare": strip_model_prefix(untied, root / "bare"),
        "plain": build_tiny_lm(root / "plain", seed=2),
        "other": build_tiny_lm(root / "other", seed=3, tie_word_embeddings=False, append_eos=True),
    }


@pytest.fixture(scope="module")
def embedder(models: dict[str, Path]) -> DecoderEmbedder:
    return DecoderEmbedder(
        models["untied"], instruction="Find passages that answer the question", batch_size=4
    )


def test_shape_dtype_and_unit_norm(embedder: DecoderEmbedder) -> None:
    vectors = embedder.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), embedder.dimension) == (len(TEXTS), 64)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.encode([]).shape == (0, 64)


def test_right_padding_gives_the_unpadded_result(embedder: DecoderEmbedder) -> None:
    lengths = [len(ids) for ids in embedder.tokenize(TEXTS)]
    assert len(set(lengths)) > 2, "the texts must differ in length so batches are padded"
    batched = embedder.encode(TEXTS)  # batch_size=4: two padded batches
    alone = np.stack([embedder.encode([text])[0] for text in TEXTS])
    np.testing.assert_allclose(batched, alone, rtol=1e-5, atol=1e-6)
    # One batch holding everything, padded to the longest text, in another order.
    wide = DecoderEmbedder(embedder.path, batch_size=len(TEXTS))
    reordered = wide.encode(TEXTS[::-1])[::-1]
    np.testing.assert_allclose(reordered, alone, rtol=1e-5, atol=1e-6)
    # Different texts give different vectors (the pooled token is not a pad position).
    assert np.abs(alone[0] - alone[1]).max() > 1e-3


def test_texts_end_with_the_eos_token_and_truncation_keeps_it(models: dict[str, Path]) -> None:
    with_post = DecoderEmbedder(models["untied"], max_tokens=8)
    eos_id = with_post.tokenizer.convert_tokens_to_ids(EOS)
    ids = with_post.tokenize(TEXTS)
    assert all(row[-1] == eos_id for row in ids)
    assert max(len(row) for row in ids) == 8

    # A tokenizer that adds no end token: eos_token appends one (older Qwen3-Embedding snapshots).
    bare_tok = DecoderEmbedder(models["plain"])
    assert bare_tok.tokenize(["Helicase"])[0][-1] != eos_id
    appended = DecoderEmbedder(models["plain"], max_tokens=6, eos_token=EOS)
    rows = appended.tokenize(["Helicase", TEXTS[2]])
    assert [row[-1] for row in rows] == [eos_id, eos_id]
    assert len(rows[1]) == 6
    assert rows[0][:-1] == bare_tok.tokenize(["Helicase"])[0]
    with pytest.raises(ValueError, match="not a token"):
        DecoderEmbedder(models["plain"], eos_token="<|no-such-token|>")


def test_bare_qwen3_embedding_keys_are_remapped_on_load(models: dict[str, Path]) -> None:
    names = weight_names(models["bare"])
    assert "embed_tokens.weight" in names and "layers.0.self_attn.q_proj.weight" in names
    assert not any(n.startswith(("model.", "lm_head")) for n in names)
    assert sorted(safetensors_keys(models["bare"] / "model.safetensors")) == names

    # Plain mlx-lm refuses this folder ...
    with pytest.raises(ValueError):
        mlx_lm.load(str(models["bare"]))
    # ... the embedder loads it and embeds exactly like the original checkpoint.
    bare = DecoderEmbedder(models["bare"])
    original = DecoderEmbedder(models["untied"])
    assert bare.load_info == {"remapped_bare_keys": True, "tied_missing_lm_head": True}
    assert original.load_info == {"remapped_bare_keys": False, "tied_missing_lm_head": False}
    np.testing.assert_array_equal(bare.encode(TEXTS), original.encode(TEXTS))
    info = bare.info()
    assert info["remapped_bare_keys"] is True and info["tied_missing_lm_head"] is True


def test_remap_leaves_prefixed_checkpoints_alone() -> None:
    import mlx.core as mx

    one = mx.zeros((1,))
    bare = remap_bare_keys(
        {"layers.0.w": one, "embed_tokens.weight": one, "norm.weight": one, "lm_head.w": one}
    )
    assert sorted(bare) == ["lm_head.w", "model.embed_tokens.weight", "model.layers.0.w", "model.norm.weight"]
    prefixed = {"model.layers.0.w": one, "lm_head.weight": one}
    assert remap_bare_keys(prefixed) is prefixed


def test_instruction_prefix_changes_query_vectors(models: dict[str, Path], embedder: DecoderEmbedder) -> None:
    queries = ["What does the vector index store?", "Which enzyme unwinds DNA?"]
    assert format_query("q", "Find it") == "Instruct: Find it\nQuery:q"
    assert format_query("q", "") == "q"
    documents = embedder.encode(queries)
    with_instruction = embedder.encode_queries(queries)
    assert np.abs(with_instruction - documents).max() > 1e-3
    np.testing.assert_allclose(
        with_instruction, embedder.encode([format_query(q, embedder.instruction) for q in queries]), atol=1e-6
    )
    other = DecoderEmbedder(models["untied"], instruction="Retrieve scientific claims")
    assert np.abs(other.encode_queries(queries) - with_instruction).max() > 1e-3
    no_instruction = DecoderEmbedder(models["untied"])
    np.testing.assert_allclose(no_instruction.encode_queries(queries), documents, atol=1e-6)


def test_model_version_follows_the_weights(models: dict[str, Path], embedder: DecoderEmbedder) -> None:
    again = DecoderEmbedder(models["untied"], instruction="something else")
    assert again.model_version == embedder.model_version  # the query instruction does not touch documents
    assert DecoderEmbedder(models["other"]).model_version != embedder.model_version
    assert DecoderEmbedder(models["untied"], max_tokens=16).model_version != embedder.model_version
    assert len(embedder.weights_sha256) == 64
    info = embedder.info()
    assert all(isinstance(v, str | int | float | bool) for v in info.values())
    assert info["model_id"] == "untied" and info["dimension"] == 64 and info["pooling"] == "last-token"


def test_float32_cast_and_argument_checks(models: dict[str, Path]) -> None:
    cast = DecoderEmbedder(models["untied"], dtype="float32")
    assert cast.info()["dtype"] == "float32"
    with pytest.raises(ValueError, match="dtype"):
        DecoderEmbedder(models["untied"], dtype="float8")
    with pytest.raises(ValueError, match="max_tokens"):
        DecoderEmbedder(models["untied"], max_tokens=0)
    with pytest.raises(FileNotFoundError, match="safetensors"):
        DecoderEmbedder(models["untied"].parent)


def test_resource_caches_the_embedder(models: dict[str, Path]) -> None:
    resource = DecoderEmbedderResource(model_path=str(models["bare"]), instruction="Find passages")
    first = resource.get_embedder()
    assert first is resource.get_embedder()
    twin = DecoderEmbedderResource(model_path=str(models["bare"]), instruction="Find passages")
    assert first is twin.get_embedder()
    assert first.instruction == "Find passages" and first.max_tokens == 512
    assert first.encode(["hello"]).shape == (1, 64)
