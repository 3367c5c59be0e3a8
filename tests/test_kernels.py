"""mdp_kernels (kernels/): each fused CPU kernel against the exact operation in float64, and the
fallback to MLX ops when the extension cannot be used."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import numpy as np
import pytest
from scipy.special import erf

import mdp.kernels as kernels_module
from mdp.kernels import KernelsUnavailable, resolve

mx = pytest.importorskip("mlx.core")


@pytest.fixture(scope="module")
def ext():
    """The built extension. A missing build fails here (make setup builds it) unless MDP_KERNELS=mlx."""
    if os.environ.get("MDP_KERNELS") == "mlx":
        pytest.skip("MDP_KERNELS=mlx: mdp_kernels deliberately not used")
    module, reason = kernels_module._load()
    assert module is not None, reason
    return module


def _normal(shape: tuple[int, ...], seed: int, scale: float = 1.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def _gelu64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def _layer_norm64(v: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    v = v.astype(np.float64)
    mean = v.mean(axis=-1, keepdims=True)
    var = ((v - mean) ** 2).mean(axis=-1, keepdims=True)
    return (v - mean) / np.sqrt(var + eps) * w + b


def _attention64(qkv: np.ndarray, mask: np.ndarray, heads: int) -> np.ndarray:
    """softmax(q k^T) v per head in float64; rows with no kept key are zero."""
    batch, length, three_hidden = qkv.shape
    hidden = three_hidden // 3
    dim = hidden // heads
    split = qkv.astype(np.float64).reshape(batch, length, 3, heads, dim).transpose(2, 0, 3, 1, 4)
    q, k, v = split[0], split[1], split[2]
    scores = q @ k.swapaxes(-1, -2)
    keep = mask[:, None, None, :] > 0
    scores = np.where(keep, scores, -np.inf)
    row_max = scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores - np.where(np.isfinite(row_max), row_max, 0.0))
    sums = weights.sum(axis=-1, keepdims=True)
    out = np.where(sums > 0, (weights / np.where(sums > 0, sums, 1.0)) @ v, 0.0)
    return out.transpose(0, 2, 1, 3).reshape(batch, length, hidden)


# -- GELU ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (2, 3, 1537), (40000,), (0,), (4, 0, 3)])
def test_gelu_matches_exact_erf_gelu(ext, shape) -> None:
    x = _normal(shape, seed=sum(shape) + 1, scale=4.0)
    got = np.array(ext.gelu(mx.array(x)))
    assert got.shape == x.shape
    assert np.abs(got - _gelu64(x)).max(initial=0.0) < 2e-6 * max(1.0, float(np.abs(x).max(initial=1.0)))


def test_gelu_large_values_and_non_contiguous_input(ext) -> None:
    x = np.array([-1e4, -60.0, -8.0, -4.0, -1e-30, 0.0, 1e-30, 3.9, 4.0, 8.0, 60.0, 1e4, 3e38], np.float32)
    got = np.array(ext.gelu(mx.array(x)))
    expected = _gelu64(x)
    assert np.all(np.isfinite(got))
    assert np.allclose(got, expected, rtol=1e-6, atol=1e-6)
    grid = mx.array(_normal((64, 48), seed=3, scale=3.0))
    transposed = grid.T  # a strided view: the op makes it contiguous first
    assert np.abs(np.array(ext.gelu(transposed)) - _gelu64(np.array(transposed))).max() < 1e-5


@pytest.mark.parametrize("shape", [(3, 7), (2, 5, 1536), (1, 1)])
def test_gelu_with_bias_matches_exact(ext, shape) -> None:
    x, bias = _normal(shape, seed=31, scale=3.0), _normal(shape[-1:], seed=32)
    got = np.array(ext.gelu(mx.array(x), mx.array(bias)))
    assert np.abs(got - _gelu64(x + bias)).max() < 1e-5
    with pytest.raises(ValueError, match="gelu bias must be"):
        ext.gelu(mx.array(x), mx.zeros((shape[-1] + 1,)))


def test_gelu_leaves_its_input_alone(ext) -> None:
    x = mx.array(_normal((1000,), seed=4))
    before = np.array(x)
    mx.eval(ext.gelu(x))
    assert np.array_equal(np.array(x), before)  # the buffer is reused only when nothing else holds it


# -- layer norm ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1, 384), (3, 5, 7), (2, 17), (1000, 384), (2, 3, 33)])
@pytest.mark.parametrize("residual", ["none", "same", "table"])
@pytest.mark.parametrize("input_bias", [False, True])
def test_add_layer_norm_matches_exact(ext, shape, residual, input_bias) -> None:
    dim = shape[-1]
    x = _normal(shape, seed=dim, scale=3.0) + 5.0
    w, b = _normal((dim,), seed=1), _normal((dim,), seed=2)
    res = None
    if residual == "same":
        res = _normal(shape, seed=9)
    elif residual == "table":
        res = _normal((shape[-2], dim), seed=10)  # repeated over the leading axes
    x_bias = _normal((dim,), seed=3) if input_bias else None
    residual_arg = None if res is None else mx.array(res)
    bias_arg = None if x_bias is None else mx.array(x_bias)
    got = np.array(ext.add_layer_norm(mx.array(x), residual_arg, mx.array(w), mx.array(b), 1e-12, bias_arg))
    total = x.astype(np.float64) + (0.0 if res is None else res) + (0.0 if x_bias is None else x_bias)
    expected = _layer_norm64(total, w, b, 1e-12)
    assert np.abs(got - expected).max() < 2e-5


def test_layer_norm_constant_rows_and_large_offsets(ext) -> None:
    dim = 384
    x = np.full((3, dim), 7.5, np.float32)
    x[1] = 1e4 + _normal((dim,), seed=5)  # large mean, unit spread: two-pass variance stays exact
    x[2] = 0.0
    w, b = np.ones(dim, np.float32), np.linspace(-1, 1, dim, dtype=np.float32)
    got = np.array(ext.add_layer_norm(mx.array(x), None, mx.array(w), mx.array(b), 1e-12))
    expected = _layer_norm64(x, w, b, 1e-12)
    assert np.all(np.isfinite(got))
    assert np.abs(got - expected).max() < 2e-3  # row 1: float32 spacing at 1e4 is 1e-3
    assert np.allclose(got[0], b) and np.allclose(got[2], b)


def test_layer_norm_rejects_bad_shapes(ext) -> None:
    x = mx.zeros((2, 3, 8))
    with pytest.raises(ValueError, match=r"weight and bias must be \(8,\)"):
        ext.add_layer_norm(x, None, mx.ones((7,)), mx.zeros((8,)), 1e-5)
    with pytest.raises(ValueError, match="does not fit input"):
        ext.add_layer_norm(x, mx.zeros((4, 8)), mx.ones((8,)), mx.zeros((8,)), 1e-5)
    with pytest.raises(ValueError, match="float32"):
        ext.add_layer_norm(x.astype(mx.float16), None, mx.ones((8,)), mx.zeros((8,)), 1e-5)


def test_embed_layer_norm_matches_gather_add_norm(ext) -> None:
    vocab, dim, batch, length = 50, 24, 3, 9
    table, positions = _normal((vocab, dim), seed=11), _normal((12, dim), seed=12)
    w, b = _normal((dim,), seed=13), _normal((dim,), seed=14)
    ids = np.random.default_rng(15).integers(0, vocab, size=(batch, length)).astype(np.int32)
    tables = [mx.array(a) for a in (table, positions, w, b)]
    got = np.array(ext.embed_layer_norm(mx.array(ids), *tables, 1e-12))
    expected = _layer_norm64(table[ids] + positions[:length], w, b, 1e-12)
    assert got.shape == (batch, length, dim)
    assert np.abs(got - expected).max() < 2e-5
    with pytest.raises(ValueError, match="positions must be"):
        tables[1] = mx.array(positions[:4])
        ext.embed_layer_norm(mx.array(ids), *tables, 1e-12)


# -- attention ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lengths", "heads", "head_dim"),
    [
        ([40, 31, 17, 2], 3, 32),  # right padding, as the encoder's batches
        ([1], 2, 32),  # one token
        ([257, 256, 100], 2, 64),  # past the kernels' 16-key blocks, wider heads
        ([5, 0, 3], 2, 8),  # a row with no tokens at all gives zeros
        ([9, 4], 3, 12),  # head_dim not a multiple of 8 (scalar path)
    ],
)
@pytest.mark.parametrize("with_bias", [False, True])
def test_attention_matches_exact_softmax_attention(ext, lengths, heads, head_dim, with_bias) -> None:
    length = max(lengths)
    qkv = _normal((len(lengths), length, 3 * heads * head_dim), seed=length + heads, scale=1.5)
    mask = (np.arange(length)[None, :] < np.array(lengths)[:, None]).astype(np.int32)
    bias = _normal((3 * heads * head_dim,), seed=33) if with_bias else None
    bias_arg = None if bias is None else mx.array(bias)
    got = np.array(ext.attention(mx.array(qkv), mx.array(mask), heads, bias_arg))
    expected = _attention64(qkv if bias is None else qkv + bias, mask, heads)
    assert got.shape == (len(lengths), length, heads * head_dim)
    assert np.abs(got - expected).max() < 5e-5  # float32 scores of size ~10, rounded once each
    for row, n in enumerate(lengths):
        if n == 0:
            assert not got[row].any()


def test_attention_mask_with_holes_and_large_scores(ext) -> None:
    heads, head_dim, length = 2, 32, 37
    qkv = _normal((2, length, 3 * heads * head_dim), seed=21)
    qkv[..., : heads * head_dim] *= 40.0  # scores in the hundreds: softmax is nearly one-hot
    mask = np.ones((2, length), np.float32)
    mask[0, ::3] = 0.0  # dropped keys in the middle, not only at the end
    mask[1, 10:] = 0.0
    got = np.array(ext.attention(mx.array(qkv), mx.array(mask), heads))
    expected = _attention64(qkv, mask, heads)
    assert np.all(np.isfinite(got))
    assert np.abs(got - expected).max() < 1e-4


def test_attention_rejects_bad_shapes(ext) -> None:
    with pytest.raises(ValueError, match="key_mask must be"):
        ext.attention(mx.zeros((2, 5, 48)), mx.ones((2, 4)), 2)
    with pytest.raises(ValueError, match="3 x num_heads"):
        ext.attention(mx.zeros((2, 5, 50)), mx.ones((2, 5)), 2)
    with pytest.raises(ValueError, match="qkv_bias must be"):
        ext.attention(mx.zeros((2, 5, 48)), mx.ones((2, 5)), 2, mx.zeros((16,)))


# -- threads and processes ------------------------------------------------------------------------


def test_one_thread_gives_the_same_results(ext, tmp_path) -> None:
    script = (
        "import numpy as np, mlx.core as mx, mdp_kernels as k\n"
        "x = mx.array(np.random.default_rng(0).standard_normal((2, 64, 3 * 4 * 32)).astype(np.float32))\n"
        "out = k.attention(x, mx.ones((2, 64)), 4) + k.gelu(x)[..., :128]\n"
        "np.save('out.npy', np.array(out)); print(k.threads())\n"
    )
    results = []
    for threads in ("1", "4"):
        env = {**os.environ, "MDP_KERNEL_THREADS": threads}
        run = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == threads
        results.append(np.load(tmp_path / "out.npy"))
    assert np.array_equal(results[0], results[1])


# -- choice and fallback ------------------------------------------------------------------------


def test_auto_uses_the_extension_on_the_cpu(ext) -> None:
    module, status = resolve("auto", mx.cpu)
    assert module is ext and status.name == "mdp_kernels" and status.isa and status.threads >= 1
    assert resolve("mlx", mx.cpu)[0] is None
    with pytest.raises(ValueError, match="unknown"):
        resolve("fastest", mx.cpu)


@pytest.fixture
def without_extension(monkeypatch):
    """mdp_kernels made unimportable for this test (as on a machine where the build failed)."""
    monkeypatch.setitem(sys.modules, "mdp_kernels", None)
    kernels_module._load.cache_clear()
    yield
    kernels_module._load.cache_clear()


def test_fallback_when_the_extension_is_absent(without_extension, monkeypatch) -> None:
    monkeypatch.delenv("MDP_KERNELS", raising=False)
    module, status = resolve("auto", mx.cpu)
    assert module is None and status.name == "mlx" and status.fallback
    assert "not installed" in status.reason and "make setup" in status.reason
    with pytest.raises(KernelsUnavailable, match="make setup"):
        resolve("mdp_kernels", mx.cpu)
    from mdp.doctor import check_kernels

    check = check_kernels()
    assert not check["ok"] and "make setup" in check["detail"]
    from mdp.encoder import SentenceEncoder

    encoder = SentenceEncoder()
    info = encoder.info()
    assert info["kernels"] == "mlx" and "fallback" in str(info["kernels_reason"])
    assert encoder.model.fused_kernels is None
    vectors = encoder.encode(["the fallback still encodes", "two texts"])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_fallback_when_built_for_another_mlx(monkeypatch) -> None:
    stale = types.SimpleNamespace(built_for_mlx="0.0.1")
    monkeypatch.setitem(sys.modules, "mdp_kernels", stale)
    kernels_module._load.cache_clear()
    try:
        module, status = resolve("auto", mx.cpu)
    finally:
        kernels_module._load.cache_clear()
    assert module is None and status.fallback and "built for mlx 0.0.1" in status.reason


def test_gpu_devices_use_mlx_ops(ext) -> None:
    module, status = resolve("auto", mx.Device(mx.gpu, 0))
    assert module is None and status.name == "mlx" and not status.fallback
    with pytest.raises(KernelsUnavailable, match="CPU kernels only"):
        resolve("mdp_kernels", mx.Device(mx.gpu, 0))


def test_fused_forward_equals_mlx_ops_forward(ext, encoder) -> None:
    """The whole BERT forward pass through the fused kernels against the MLX-op path, padded batch."""
    from mdp.models.bert import Bert

    texts = ["a short one", "a somewhat longer sentence about protein folding and its energy landscape", ""]
    ids = encoder.token_ids(texts)
    length = max(len(s) for s in ids)
    input_ids = np.zeros((len(ids), length), np.int32)
    mask = np.zeros_like(input_ids)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    reference = Bert(encoder.config, fused_kernels=None)
    reference.update(encoder.model.parameters())
    assert encoder.model.fused_kernels is ext
    fused = np.array(encoder.model(mx.array(input_ids), mx.array(mask)))
    plain = np.array(reference(mx.array(input_ids), mx.array(mask)))
    keep = mask.astype(bool)
    assert np.abs(fused[keep] - plain[keep]).max() < 1e-3
    a, b = fused[keep], plain[keep]
    cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    assert cos.min() > 0.99999


# -- the build step -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("python", "path", "expected"),
    [
        ("/bin/false", "/usr/bin:/bin", "could not install the build requirements"),
        ("/bin/false", "/nonexistent", "no C++ compiler"),
    ],
)
def test_build_script_falls_back_instead_of_failing(python, path, expected) -> None:
    """scripts/build-kernels.sh must never fail make setup: it explains and exits 0."""
    from mdp.config import PROJECT_ROOT

    script = PROJECT_ROOT / "scripts" / "build-kernels.sh"
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/tmp")}
    command = ["/bin/bash", str(script), python]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert expected in run.stderr and "falls back to MLX ops" in run.stderr


@pytest.mark.slow
@pytest.mark.parametrize("flags", [[], ["-DMDPK_NO_CLONES"]], ids=["dispatched", "portable"])
def test_row_kernels_in_every_build_flavour(tmp_path, flags) -> None:
    """The C++ row kernels against float64 in C++: as dispatched on this CPU, and as the portable
    build (what arm64/macOS/Clang and the baseline x86-64 clone run), which Python never reaches here."""
    import shutil

    from mdp.config import PROJECT_ROOT

    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler (make setup installs g++)")
    kernels_dir = PROJECT_ROOT / "kernels"
    binary = tmp_path / "check"
    command = [compiler, "-std=c++20", "-O3", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=fast"]
    command += [*flags, f"-I{kernels_dir / 'csrc'}", str(kernels_dir / "tests" / "check_row_kernels.cpp")]
    command += [str(kernels_dir / "csrc" / "math_kernels.cpp"), "-o", str(binary)]
    build = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    run = subprocess.run([str(binary)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout
    assert "all ok" in run.stdout
