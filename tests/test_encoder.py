"""The MLX sentence encoder against sentence-transformers (the reference implementation)."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _varied_texts() -> list[str]:
    """>= 100 texts: short, long (> 256 tokens, so truncation matters), scripts, code, numbers."""
    texts = [
        "hello",
        "Hi!",
        "a",
        "?",
        "...",
        "!!! ??? ;;; ---",
        "()[]{}<>",
        "12345",
        "3.14159 2.71828 1.41421",
        "Call +1 (555) 010-9999 before 2024-12-31T23:59:59Z.",
        "the the the the the the the the the the",
        "buffalo " * 60,
        "Ünïcödé àccents: café, naïve, Straße, façade.",
        "Москва — столица России и крупнейший город страны.",
        "東京は日本の首都であり、世界最大の都市圏の一つです。",
        "数学是研究数量、结构以及空间等概念的一门学科。",
        "مرحبا بالعالم، هذه جملة باللغة العربية.",
        "שלום עולם, זה משפט בעברית.",
        "नमस्ते दुनिया, यह हिंदी में एक वाक्य है।",
        "Γεια σου κόσμε, αυτή είναι μια ελληνική πρόταση.",
        "안녕하세요 세계, 이것은 한국어 문장입니다.",
        "emoji 🚀🔥💡 and symbols ∑∫√∞ ≠ ≤ ≥",
        "def add(a: int, b: int) -> int:\n    return a + b\n",
        "SELECT id, name FROM users WHERE created_at > NOW() - INTERVAL '7 days' ORDER BY id;",
        "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; } // dot product",
        '{"key": [1, 2, 3], "nested": {"ok": true, "value": null}}',
        "<html><body><p class='x'>Hello</p></body></html>",
        "https://example.com/path?query=1&other=two#fragment",
        "   leading and trailing whitespace   ",
        "line one\nline two\n\nline four\ttabbed",
        "ALL CAPS SENTENCE ABOUT PROTEIN FOLDING",
        "MixedCase CamelCaseIdentifiers and snake_case_names",
        "",
        " ",
    ]
    topics = [
        "Vector databases store embeddings for similarity search",
        "Mitochondria are the powerhouse of the cell",
        "The central bank raised interest rates by a quarter point",
        "Photosynthesis converts light energy into chemical energy",
        "Transformers use self-attention to model long-range dependencies",
        "The river flooded the village after three days of rain",
        "Quantum entanglement links the states of two particles",
        "A recipe for sourdough bread needs flour, water and salt",
        "The patient was treated with a course of antibiotics",
        "Dagster schedules materialise assets on a cron",
    ]
    for i, topic in enumerate(topics):
        texts.append(topic + ".")
        texts.append(f"{topic}, as reported in study #{i * 17 + 3} (n={100 + i * 11}, p<0.0{i % 5 + 1}).")
        texts.append(" ".join([topic.lower()] * (3 + i)))
        # Long: well past 256 tokens so truncation at max_tokens decides the result.
        texts.append(" ".join(f"{topic} in paragraph {j} with detail {j * i}." for j in range(40 + i)))
        texts.append(" ".join(reversed(topic.split())) + " " + str(i) * (i + 1))
        texts.append("Question: what does the following mean? " + topic + "? Answer briefly.")
        texts.append(f"{i}. {topic.upper()} — {topic.split()[0]}: {' '.join(topic.split()[1:])}")
    return texts


TEXTS = _varied_texts()


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    from mdp.tokenizer import default_model_path

    model = SentenceTransformer(str(default_model_path()), device="cpu")
    return np.asarray(model.encode(TEXTS, batch_size=32, normalize_embeddings=True), dtype=np.float32)


@pytest.fixture(scope="module")
def ours(encoder) -> np.ndarray:
    return encoder.encode(TEXTS)


def test_corpus_is_varied(encoder) -> None:
    lengths = [len(ids) for ids in encoder.tokenizer.encode_batch(TEXTS)]
    assert len(TEXTS) >= 100
    assert sum(n > encoder.max_tokens for n in lengths) >= 5  # truncation is exercised
    assert min(lengths) <= 3


def test_parity_with_sentence_transformers(ours: np.ndarray, reference: np.ndarray) -> None:
    assert ours.shape == reference.shape == (len(TEXTS), 384)
    assert ours.dtype == np.float32
    cosine = (ours * reference).sum(axis=1)
    worst = int(np.argmin(cosine))
    assert cosine.min() >= 0.999, f"text {worst} {TEXTS[worst][:60]!r}: cosine {cosine[worst]:.6f}"


def test_parity_with_and_without_fused_kernels(encoder, ours: np.ndarray, reference: np.ndarray) -> None:
    """The default CPU encoder uses mdp_kernels (built by make setup); MLX ops alone agree too."""
    import os

    from mdp.encoder import SentenceEncoder

    on_cpu = "cpu" in str(encoder.info()["device"])  # on a GPU machine the default encoder is there
    if on_cpu and os.environ.get("MDP_KERNELS") != "mlx":
        assert encoder.info()["kernels"] == "mdp_kernels", encoder.info()["kernels_reason"]
    plain = SentenceEncoder(kernels="mlx", device="cpu")
    assert plain.info()["kernels"] == "mlx"
    cosine = (plain.encode(TEXTS) * reference).sum(axis=1)
    assert cosine.min() >= 0.999
    assert (plain.encode(TEXTS[:20]) * ours[:20]).sum(axis=1).min() >= 0.99999


def test_truncation_matches_sentence_transformers(encoder) -> None:
    from sentence_transformers import SentenceTransformer

    from mdp.tokenizer import default_model_path

    st = SentenceTransformer(str(default_model_path()), device="cpu")
    long_texts = [t for t in TEXTS if len(encoder.tokenizer.encode(t).ids) > encoder.max_tokens][:4]
    features = st.tokenize(long_texts)
    for text, row in zip(long_texts, features["input_ids"].tolist(), strict=True):
        assert encoder.token_ids([text])[0] == row
        assert len(row) == encoder.max_tokens


def test_normalised_and_ordered(encoder, ours: np.ndarray) -> None:
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # Reversing the input reverses the output (batches are length-sorted internally).
    subset = TEXTS[:40]
    forward = encoder.encode(subset)
    backward = encoder.encode(subset[::-1])
    np.testing.assert_allclose(forward, backward[::-1], atol=1e-5)
    np.testing.assert_allclose(forward, ours[:40], atol=1e-5)


def test_padding_invariance(encoder, ours: np.ndarray) -> None:
    # Texts encoded alone (no padding) equal the same texts encoded in mixed-length batches.
    for i in (0, 3, 12, 14, 22, len(TEXTS) - 4):
        alone = encoder.encode([TEXTS[i]])[0]
        assert float(alone @ ours[i]) >= 0.9999, TEXTS[i][:60]


def test_small_batches_equal_large(ours: np.ndarray) -> None:
    from mdp.encoder import SentenceEncoder

    small = SentenceEncoder(batch_tokens=512)
    subset = TEXTS[:30]
    cosine = (small.encode(subset) * ours[:30]).sum(axis=1)
    assert cosine.min() >= 0.9999


def test_empty_input(encoder) -> None:
    empty = encoder.encode([])
    assert empty.shape == (0, encoder.dim)
    assert empty.dtype == np.float32
    with pytest.raises(TypeError):
        encoder.encode("not a list")  # type: ignore[arg-type]


def test_info_is_scalar(encoder) -> None:
    info = encoder.info()
    assert info["model_id"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert info["dim"] == 384 and info["max_tokens"] == 256
    assert len(str(info["model_version"])) == 12
    assert info["blas"]
    assert all(isinstance(v, str | int | float | bool) for v in info.values())


def test_fast_kernels_match_exact_ops() -> None:
    import mlx.core as mx
    import mlx.nn as nn

    from mdp.models.bert import attention_fast, exp_neg, gelu_rational

    # the CPU path's kernels (on a GPU, matmuls run in TF32 and miss these tolerances)
    with mx.stream(mx.cpu):
        x = mx.random.normal((20000,), key=mx.random.key(0)) * 6
        assert mx.abs(gelu_rational(x) - nn.gelu(x)).max().item() < 1e-5
        d = mx.abs(x) * 13
        d = mx.where(d < 80, d, 80.0)
        exact = np.exp(-np.array(d).astype(np.float64))
        assert (np.abs(np.array(exp_neg(d)) - exact) / exact).max() < 3e-5  # rounding x 2^7 squarings
        assert np.array(exp_neg(mx.array([200.0, 1e9, mx.inf]))).max() < 1e-30  # far-off scores vanish

        # Attention with padded keys equals the exact float64 softmax attention.
        q, k, v = (mx.random.normal((4, 3, 40, 32), key=mx.random.key(i)) * 2 for i in (1, 2, 3))
        lengths = np.array([40, 31, 17, 2])
        key_mask = (np.arange(40)[None, :] < lengths[:, None]).astype(np.float32)[:, None, None, :]
        out = np.array(attention_fast(q, k, v, mx.array(key_mask)))
        qn, kn, vn = (np.array(a).astype(np.float64) for a in (q, k, v))
        scores = qn @ kn.swapaxes(-1, -2) + (key_mask - 1.0) * 1e9
        weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
        expected = (weights / weights.sum(axis=-1, keepdims=True)) @ vn
        assert np.abs(out - expected).max() < 1e-4
