"""Device choice, per-device batching, the GPU model path, reduced precision and prompts, on the CPU.

CI has no GPU: the code that picks and configures a device is tested here with the GPU's presence as
a parameter, and the compiled GPU path of mdp/models/bert.py runs on MLX's CPU backend. GPU speed is a
benchmark (`mdp bench --only embed` on a GPU), never a test.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from tiny_bert import build_tiny_bert

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TEXTS = [
    "Mitochondria are the powerhouse of the cell.",
    "The central bank raised interest rates by a quarter point after the meeting.",
    "a",
    "",
    "Transformers use self-attention to model long-range dependencies " * 12,
    "東京は日本の首都であり、世界最大の都市圏の一つです。",
]


# ------------------------------------------------------------------ device choice and batch sizing
@pytest.mark.parametrize(
    ("requested", "has_gpu", "expected"),
    [
        ("auto", True, "gpu"),
        ("auto", False, "cpu"),
        ("cpu", True, "cpu"),
        ("cpu", False, "cpu"),
        ("gpu", True, "gpu"),
    ],
)
def test_pick_device(requested: str, has_gpu: bool, expected: str) -> None:
    from mdp.encoder import pick_device

    assert pick_device(requested, has_gpu) == expected


def test_gpu_without_a_gpu_names_the_fix() -> None:
    from mdp.encoder import pick_device

    with pytest.raises(RuntimeError, match="make setup-cuda"):
        pick_device("gpu", False)
    with pytest.raises(ValueError, match="auto, cpu, gpu"):
        pick_device("cuda", True)


def test_device_profiles() -> None:
    from mdp.encoder import CPU_BATCH_TOKENS, GPU_BATCH_TOKENS, GPU_PAD_MULTIPLE, device_profile

    cpu = device_profile("cpu", None, 256)
    assert (cpu.batch_tokens, cpu.pad_multiple, cpu.compiled) == (CPU_BATCH_TOKENS, 1, False)
    assert device_profile("cpu", 8192, 256).batch_tokens == CPU_BATCH_TOKENS  # capped: cache-sized
    assert device_profile("cpu", 512, 256).batch_tokens == 512
    assert device_profile("cpu", 256, 512).batch_tokens == 512  # never below one full-length text
    gpu = device_profile("gpu", None, 256)
    assert (gpu.batch_tokens, gpu.pad_multiple, gpu.compiled) == (GPU_BATCH_TOKENS, GPU_PAD_MULTIPLE, True)
    assert device_profile("gpu", 16384, 256).batch_tokens == 16384  # a configured budget is kept


def test_round_rows_gives_few_shapes() -> None:
    from mdp.encoder import round_rows

    assert [round_rows(n) for n in (1, 2, 3, 5, 33, 64, 65, 200, 256)] == [1, 2, 4, 8, 64, 64, 128, 256, 256]
    assert len({round_rows(n) for n in range(1, 1025)}) == 7 + 15  # powers of two to 64, then steps of 64


def test_config_device_settings() -> None:
    from mdp.config import MdpConfig

    model = MdpConfig.model_validate({"model": {"device": "gpu", "dtype": "bfloat16"}}).model
    assert (model.device, model.dtype, model.batch_tokens) == ("gpu", "bfloat16", None)
    with pytest.raises(ValueError, match="device"):
        MdpConfig.model_validate({"model": {"device": "cuda"}})


@pytest.mark.skipif("os.environ.get('MDP_TEST_HAS_GPU')")
def test_encoder_on_a_machine_without_gpu() -> None:
    from mdp.encoder import SentenceEncoder, gpu_available

    if gpu_available():
        pytest.skip("this machine's MLX has a GPU")
    with pytest.raises(RuntimeError, match="no GPU backend"):
        SentenceEncoder(device="gpu")
    encoder = SentenceEncoder(device="auto")
    info = encoder.info()
    assert (info["device"], info["model_path"], info["gpu_name"]) == ("Device(cpu, 0)", "cpu", "")
    assert info["device_batch_tokens"] == 1024


# ------------------------------------------------------------------ the compiled (GPU) path on the CPU
@pytest.fixture(scope="module")
def compiled_encoder():
    from mdp.encoder import SentenceEncoder

    return SentenceEncoder(compiled=True)


@pytest.mark.slow
def test_compiled_batches_have_few_shapes_and_keep_every_text(compiled_encoder, monkeypatch) -> None:
    texts = [("word " * n).strip() for n in range(0, 300, 7)]
    ids = compiled_encoder.token_ids(texts)
    batches: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    real_rows = compiled_encoder._rows

    def recording_rows(batch):
        batches.append(real_rows(batch))
        return batches[-1]

    monkeypatch.setattr(compiled_encoder, "_rows", recording_rows)
    vectors = compiled_encoder._encode_ids(ids, compiled_encoder.model)
    seen: list[int] = []
    for input_ids, mask, index in batches:
        rows, width = input_ids.shape
        assert width % compiled_encoder.profile.pad_multiple == 0 or width == compiled_encoder.max_tokens
        assert rows in {1, 2, 4, 8, 16, 32, 64} or rows % 64 == 0
        for row, i in zip(mask, index, strict=True):
            if i < 0:
                assert row.sum() == 0  # padding rows carry no tokens and are dropped
            else:
                assert row.sum() == len(ids[i]) and row[: len(ids[i])].all()
        seen += [int(i) for i in index if i >= 0]
    assert sorted(seen) == list(range(len(texts)))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_compiled_path_matches_the_cpu_kernels(encoder, compiled_encoder) -> None:
    from test_encoder import TEXTS as VARIED

    cosine = (encoder.encode(VARIED) * compiled_encoder.encode(VARIED)).sum(axis=1)
    assert cosine.min() >= 0.9999, VARIED[int(np.argmin(cosine))][:60]


@pytest.mark.slow
def test_pipelined_chunks_equal_one_chunk(compiled_encoder, monkeypatch) -> None:
    import mdp.encoder as encoder_module

    texts = [f"Sentence {i} about {'rivers ' * (i % 9)}and glaciers." for i in range(90)]
    whole = compiled_encoder.encode(texts)
    monkeypatch.setattr(encoder_module, "TOKENIZE_SLICE", 8)
    monkeypatch.setattr(encoder_module, "PIPELINE_TEXTS", 16)
    assert (compiled_encoder.encode(texts) * whole).sum(axis=1).min() >= 0.9999


# ------------------------------------------------------------------ reduced precision
def test_reduced_precision_is_checked_and_recorded(tmp_path) -> None:
    from mdp.encoder import SentenceEncoder

    folder = build_tiny_bert(tmp_path / "tiny")
    encoder = SentenceEncoder(folder, dtype="bfloat16")
    info = encoder.info()
    assert info["dtype"] == "bfloat16" and info["dtype_requested"] == "bfloat16"
    assert info["parity_min_cosine"] >= 0.999 and info["parity_texts"] >= 32
    reference = SentenceEncoder(folder).encode(TEXTS)
    assert (encoder.encode(TEXTS) * reference).sum(axis=1).min() >= 0.99


def test_reduced_precision_falls_back_when_parity_fails(tmp_path, monkeypatch) -> None:
    import mdp.encoder as encoder_module

    folder = build_tiny_bert(tmp_path / "tiny")
    monkeypatch.setattr(encoder_module, "MIN_PARITY_COSINE", 1.5)  # nothing can pass
    with pytest.warns(RuntimeWarning, match="fell back to float32"):
        encoder = encoder_module.SentenceEncoder(folder, dtype="float16")
    info = encoder.info()
    assert (info["dtype"], info["dtype_requested"]) == ("float32", "float16")
    assert "below 1.5" in str(info["dtype_note"])


# ------------------------------------------------------------------ prompts
def _st(folder):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu")


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.asarray(a) * np.asarray(b)).sum(axis=1).min())


@pytest.mark.parametrize("include_prompt", [True, False])
def test_prompts_follow_sentence_transformers(tmp_path, include_prompt: bool) -> None:
    from mdp.encoder import SentenceEncoder

    prompts = {"query": "query: ", "passage": "passage: "}
    folder = build_tiny_bert(tmp_path / "tiny", prompts=prompts, include_prompt=include_prompt)
    encoder = SentenceEncoder(folder)
    assert (encoder.query_prompt, encoder.document_prompt) == ("query: ", "passage: ")
    st = _st(folder)
    queries = st.encode(TEXTS, prompt_name="query", normalize_embeddings=True)
    passages = st.encode(TEXTS, prompt_name="passage", normalize_embeddings=True)
    bare = st.encode(TEXTS, prompt="", normalize_embeddings=True)
    assert _cosine(encoder.encode_queries(TEXTS), queries) >= 0.999
    assert _cosine(encoder.encode(TEXTS), passages) >= 0.999
    assert _cosine(encoder.encode(TEXTS, prompt=""), bare) >= 0.999
    assert _cosine(encoder.encode_queries(TEXTS), passages) < 0.99  # the prompts do change the vectors


def test_default_prompt_name_and_overrides(tmp_path) -> None:
    from mdp.encoder import SentenceEncoder

    folder = build_tiny_bert(
        tmp_path / "tiny",
        prompts={"query": "query: ", "classification": "classify: "},
        default_prompt_name="classification",
    )
    encoder = SentenceEncoder(folder)
    # No document prompt declared: sentence-transformers' default prompt applies, as in st.encode(texts).
    assert (encoder.query_prompt, encoder.document_prompt) == ("query: ", "classify: ")
    assert _cosine(encoder.encode(TEXTS), _st(folder).encode(TEXTS, normalize_embeddings=True)) >= 0.999
    plain = SentenceEncoder(folder, query_prompt="", document_prompt="")
    assert (plain.query_prompt, plain.document_prompt) == ("", "")
    # Documents embedded with another prompt are other vectors: the cache key (model_version) differs.
    assert plain.model_version != encoder.model_version and "-p" in encoder.model_version
    assert len(plain.model_version) == 12


def test_prompt_overrides_from_config(tmp_path) -> None:
    from mdp.config import ModelConfig
    from mdp.encoder import SentenceEncoder

    folder = build_tiny_bert(tmp_path / "tiny", prompts={"query": "query: "})
    model = ModelConfig(path=folder, query_prompt="search_query: ", document_prompt="search_document: ")
    encoder = SentenceEncoder.from_config(model)
    assert (encoder.query_prompt, encoder.document_prompt) == ("search_query: ", "search_document: ")
    info = encoder.info()
    assert (info["query_prompt"], info["document_prompt"]) == ("search_query: ", "search_document: ")


def test_unknown_default_prompt_name_is_a_clear_error(tmp_path) -> None:
    from mdp.encoder import SentenceEncoder

    folder = build_tiny_bert(tmp_path / "tiny", prompts={"query": "q: "}, default_prompt_name="passage")
    with pytest.raises(ValueError, match="default_prompt_name 'passage'"):
        SentenceEncoder(folder)


def test_minilm_declares_no_prompts(encoder) -> None:
    assert (encoder.query_prompt, encoder.document_prompt) == ("", "")
    assert len(encoder.model_version) == 12


def test_doctor_names_the_backend_and_cuda_libraries() -> None:
    from mdp.doctor import CUDA_LIBRARIES, check_mlx, cuda_libraries
    from mdp.encoder import gpu_available

    check = check_mlx()
    assert check["ok"]
    backend = "backend cuda" if "cuda" in check["detail"] else "backend"
    assert backend in check["detail"] and "GPU: " in check["detail"]
    if not gpu_available():
        assert "backend cpu" in check["detail"] and "GPU: none" in check["detail"]
    found = cuda_libraries()
    assert list(found) == list(CUDA_LIBRARIES) and all(isinstance(v, bool) for v in found.values())
