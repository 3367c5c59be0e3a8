"""A BERT encoder in MLX that loads Hugging Face ``BertModel`` safetensors.

Written for inference speed on every MLX backend, and in particular on the Linux CPU backend,
where transcendental elementwise ops (``erf``, ``exp``) run as scalar loops and cost more than
the matmuls (see docs/encoder.md). With ``fast_elementwise`` (the default on CPU):

* GELU uses a rational approximation of ``erf`` built from multiply/add/divide only
  (|error| < 2e-6 against exact GELU), compiled into one vectorised kernel;
* attention computes its exponentials the same way, folds the key mask into K and V and gets
  the softmax denominator from the same matmul as the weighted sum;
* Q, K and V are one fused projection, and the 1/sqrt(d) scale is folded into Q's weights.

On the CPU, when the ``mdp_kernels`` extension is built (see :mod:`mdp.kernels`), the forward pass
goes through :meth:`Bert._forward_kernels` instead: fused C++ primitives for the attention core,
GELU, residual + layer norm and the embeddings, with the matmuls left to MLX (BLAS).

Elsewhere (CUDA, Metal) the *compiled* path runs (:meth:`Bert._forward_compiled`, see
docs/encoder.md, "GPU"): one ``mx.compile``-d function per encoder layer, shared by all layers and
traced once per batch shape, with ``mx.fast.layer_norm``, exact GELU fused into one kernel, and
``mx.fast.scaled_dot_product_attention`` given the padding mask as an additive bias (cuDNN's fused
attention on CUDA in bf16/fp16). ``Bert.__call__`` is the one dispatch point between the three.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import mlx.core as mx
import mlx.nn as nn

# ---------------------------------------------------------------------------------------------
# Elementwise kernels made of cheap ops (vectorised by the CPU backend)
# ---------------------------------------------------------------------------------------------

# erf(x) ~= x * P(x^2) / Q(x^2) on [-4, 4] (erf(4) = 1 - 1.5e-8). Coefficients of the single
# precision rational approximation used by Eigen/XLA; checked in tests against mx.erf.
_ERF_P = (
    -2.72614225801306e-10,
    2.77068142495902e-08,
    -2.10102402082508e-06,
    -5.69250639462346e-05,
    -7.34990630326855e-04,
    -2.95459980854025e-03,
    -1.60960333262415e-02,
)
_ERF_Q = (
    -1.45660718464996e-05,
    -2.13374055278905e-04,
    -1.68282697438203e-03,
    -7.37332916720468e-03,
    -1.42647390514189e-02,
)
_SQRT1_2 = 0.7071067811865476


def _horner(x: mx.array, coefficients: tuple[float, ...]) -> mx.array:
    acc = x * coefficients[0] + coefficients[1]
    for c in coefficients[2:]:
        acc = acc * x + c
    return acc


def _clamp4(z: mx.array) -> mx.array:
    """clip(z, -4, 4) from abs/add only: min/max/where stop the CPU JIT from vectorising a kernel."""
    return 0.5 * (mx.abs(z + 4.0) - mx.abs(z - 4.0))


def _gelu_rational(x: mx.array) -> mx.array:
    z = _clamp4(x * _SQRT1_2)
    z2 = z * z
    erf = z * _horner(z2, _ERF_P) / _horner(z2, _ERF_Q)
    return 0.5 * x * (1.0 + erf)


# Shape-specialised compile: with shapeless=True the JIT emits a strided (scalar) loop, ~5x slower.
gelu_rational = mx.compile(_gelu_rational)


# Attention weights: exp(-d) for d = rowmax - score >= 0, as 1 / exp(d / 128) ** 128 with exp of
# the small positive argument from its degree-9 Taylor series (relative error < 2e-5 for d <= 80,
# mostly float32 rounding amplified by the squarings; beyond 80 the weight is < e^-80 next to the
# row maximum's weight of 1, and the formula tends to 0 as it should).
# Multiply/add and one division, one contiguous input: the CPU JIT vectorises such a kernel,
# whereas min/max/where or broadcast (strided) inputs make it fall back to scalar code.
_EXP_SMALL = tuple(1.0 / math.factorial(k) for k in range(9, -1, -1))


def _exp_neg(d: mx.array) -> mx.array:
    e = _horner(d * (1.0 / 128.0), _EXP_SMALL)
    for _ in range(7):
        e = e * e
    return 1.0 / e


exp_neg = mx.compile(_exp_neg)


def attention_fast(q: mx.array, k: mx.array, v: mx.array, key_mask: mx.array) -> mx.array:
    """softmax(q k^T + mask) v for (B, H, L, D) inputs; key_mask (B, 1, 1, L) is 1 keep / 0 drop.

    Padded keys get zero K rows (score 0) and zero V rows; V gets an extra column holding the key
    mask, so one matmul yields both the weighted sum and the softmax denominator.
    """
    column_mask = key_mask.swapaxes(-1, -2)  # (B, 1, L, 1)
    k = k * column_mask
    scores = q @ k.swapaxes(-1, -2)
    weights = exp_neg(mx.max(scores, axis=-1, keepdims=True) - scores)
    v_ext = mx.concatenate([v * column_mask, mx.broadcast_to(column_mask, (*v.shape[:-1], 1))], axis=-1)
    out = weights @ v_ext
    return out[..., :-1] / out[..., -1:]


# ---------------------------------------------------------------------------------------------
# Fused path (CUDA, Metal): pure functions over a layer's parameter tree, compiled per shape
# ---------------------------------------------------------------------------------------------

Params = dict[str, Any]


def _linear(p: Params, x: mx.array) -> mx.array:
    return mx.addmm(p["bias"], x, p["weight"].T)


def _layer_norm(p: Params, x: mx.array, eps: float) -> mx.array:
    return mx.fast.layer_norm(x, p["weight"], p["bias"], eps)


def padding_bias(attention_mask: mx.array, dtype: mx.Dtype) -> mx.array:
    """(B, L) 1/0 mask -> (B, 1, 1, L) additive attention bias: 0 keep, very negative drop.
    Finite, so that even a row of padding only (batch rows added to round shapes) stays finite."""
    big = 6e4 if dtype == mx.float16 else 1e9
    return ((attention_mask[:, None, None, :].astype(mx.float32) - 1.0) * big).astype(dtype)


def _compiled_layer(p: Params, x: mx.array, bias: mx.array, num_heads: int, eps: float) -> mx.array:
    batch, length, hidden = x.shape
    qkv = _linear(p["qkv"], x).reshape(batch, length, 3, num_heads, hidden // num_heads)
    qkv = qkv.transpose(2, 0, 3, 1, 4)  # strided views; the scale is folded into Q's weights
    context = mx.fast.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], scale=1.0, mask=bias)
    context = context.transpose(0, 2, 1, 3).reshape(batch, length, hidden)
    x = _layer_norm(p["attn_norm"], x + _linear(p["attn_out"], context), eps)
    return _layer_norm(p["ffn_norm"], x + _linear(p["ffn_out"], nn.gelu(_linear(p["ffn_in"], x))), eps)


def _compiled_embed(p: Params, input_ids: mx.array, eps: float) -> mx.array:
    length = input_ids.shape[1]
    positions = p["position_embeddings"]["weight"][:length] + p["token_type_embeddings"]["weight"][0]
    return _layer_norm(p["norm"], p["word_embeddings"]["weight"][input_ids] + positions, eps)


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


@dataclass
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BertConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_file(cls, path: str | Path) -> BertConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def flops_per_token(self, seq_len: int) -> float:
        """Multiply-add FLOPs (2 per MAC) of one token's forward pass at sequence length seq_len."""
        h, i = self.hidden_size, self.intermediate_size
        dense = 2 * (4 * h * h + 2 * h * i)  # QKV + output projection + FFN
        attention = 2 * 2 * seq_len * h  # scores and weighted sum
        return float(self.num_hidden_layers * (dense + attention))


class Embeddings(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def __call__(self, input_ids: mx.array) -> mx.array:
        length = input_ids.shape[1]
        # Single-segment input: token type 0 everywhere, folded into the position table.
        positions = self.position_embeddings.weight[:length] + self.token_type_embeddings.weight[0]
        return self.norm(self.word_embeddings(input_ids) + positions)


class EncoderLayer(nn.Module):
    """One encoder layer's weights; run as a module by the CPU path with MLX ops (the other paths
    read its parameters: the compiled GPU function and the fused CPU kernels)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        h = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = h // self.num_heads
        self.qkv = nn.Linear(h, 3 * h)  # Q rows pre-scaled by 1/sqrt(head_dim) at load time
        self.attn_out = nn.Linear(h, h)
        self.attn_norm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.ffn_in = nn.Linear(h, config.intermediate_size)
        self.ffn_out = nn.Linear(config.intermediate_size, h)
        self.ffn_norm = nn.LayerNorm(h, eps=config.layer_norm_eps)

    def attention(self, x: mx.array, key_mask: mx.array) -> mx.array:
        batch, length, hidden = x.shape
        qkv = self.qkv(x).reshape(batch, length, 3, self.num_heads, self.head_dim).transpose(2, 0, 3, 1, 4)
        context = attention_fast(qkv[0], qkv[1], qkv[2], key_mask)
        return context.transpose(0, 2, 1, 3).reshape(batch, length, hidden)

    def feed_forward(self, x: mx.array) -> mx.array:
        # The bias is added by the GEMM (addmm), so the GELU kernel's only input is contiguous.
        return self.ffn_out(gelu_rational(self.ffn_in(x)))

    def __call__(self, x: mx.array, key_mask: mx.array) -> mx.array:
        x = self.attn_norm(x + self.attn_out(self.attention(x, key_mask)))
        return self.ffn_norm(x + self.feed_forward(x))


class Bert(nn.Module):
    """BERT encoder returning the last hidden states (no pooler).

    ``fused_kernels``: the ``mdp_kernels`` module (CPU only) to run the forward pass with, or None
    for MLX ops; :func:`mdp.kernels.resolve` picks it.
    """

    def __init__(
        self,
        config: BertConfig,
        fast_elementwise: bool | None = None,
        fused_kernels: ModuleType | None = None,
    ) -> None:
        super().__init__()
        if config.hidden_act not in {"gelu", "gelu_python"}:
            raise ValueError(f"hidden_act {config.hidden_act!r} is not supported (only exact 'gelu')")
        if fast_elementwise is None:
            fast_elementwise = mx.default_device() == mx.cpu
        self.config = config
        self.fused_kernels = fused_kernels
        self.fast_elementwise = fast_elementwise
        self.embeddings = Embeddings(config)
        self.layers = [EncoderLayer(config) for _ in range(config.num_hidden_layers)]
        eps = config.layer_norm_eps
        # One compiled function serves every layer (the weights are inputs, not constants).
        self._layer_step = mx.compile(partial(_compiled_layer, num_heads=config.num_attention_heads, eps=eps))
        self._embed_step = mx.compile(partial(_compiled_embed, eps=eps))

    def __call__(self, input_ids: mx.array, attention_mask: mx.array) -> mx.array:
        """input_ids, attention_mask: (batch, length) ints; returns (batch, length, hidden)."""
        if self.fused_kernels is not None:
            return self._forward_kernels(input_ids, attention_mask)
        if not self.fast_elementwise:
            return self._forward_compiled(input_ids, attention_mask)
        x = self.embeddings(input_ids)
        # Key mask broadcast over heads and query positions: 1 keep, 0 padding.
        key_mask = attention_mask[:, None, None, :].astype(x.dtype)
        for layer in self.layers:
            x = layer(x, key_mask)
        return x

    def _forward_kernels(self, input_ids: mx.array, attention_mask: mx.array) -> mx.array:
        """The same forward pass with mdp_kernels' fused CPU primitives around MLX's matmuls.

        The matmuls run without their bias (a bias makes MLX copy it into the output first); each
        bias is added inside the fused kernel that consumes the product.
        """
        kernels, eps = self.fused_kernels, self.config.layer_norm_eps
        emb = self.embeddings
        positions = emb.position_embeddings.weight + emb.token_type_embeddings.weight[0]
        x = kernels.embed_layer_norm(
            input_ids, emb.word_embeddings.weight, positions, emb.norm.weight, emb.norm.bias, eps
        )
        for layer in self.layers:
            qkv = x @ layer.qkv.weight.T
            context = kernels.attention(qkv, attention_mask, layer.num_heads, layer.qkv.bias)
            out, norm = layer.attn_out, layer.attn_norm
            x = kernels.add_layer_norm(context @ out.weight.T, x, norm.weight, norm.bias, eps, out.bias)
            hidden = kernels.gelu(x @ layer.ffn_in.weight.T, layer.ffn_in.bias)
            out, norm = layer.ffn_out, layer.ffn_norm
            x = kernels.add_layer_norm(hidden @ out.weight.T, x, norm.weight, norm.bias, eps, out.bias)
        return x

    def _forward_compiled(self, input_ids: mx.array, attention_mask: mx.array) -> mx.array:
        x = self._embed_step(self.embeddings.parameters(), input_ids)
        bias = padding_bias(attention_mask, x.dtype)
        for layer in self.layers:
            x = self._layer_step(layer.parameters(), x, bias)
        return x

    # -- weights ----------------------------------------------------------------------------

    def load_hf_weights(self, path: str | Path, dtype: mx.Dtype = mx.float32) -> None:
        """Load Hugging Face BertModel safetensors (prefix ``bert.`` allowed, pooler ignored)."""
        raw = mx.load(str(path))
        assert isinstance(raw, dict)
        self.load_weights(list(convert_hf_weights(raw, self.config).items()), strict=True)
        if dtype != mx.float32:
            self.set_dtype(dtype)
        mx.eval(self.parameters())


def convert_hf_weights(raw: dict[str, mx.array], config: BertConfig) -> dict[str, mx.array]:
    """Map HF key names onto :class:`Bert`, fusing Q/K/V and folding the attention scale into Q."""
    weights = {}
    for key, value in raw.items():
        key = key.removeprefix("bert.")
        if key.endswith("position_ids") or key.startswith(("pooler.", "cls.")):
            continue
        weights[key] = value.astype(mx.float32)
    out: dict[str, mx.array] = {}
    emb = "embeddings."
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        out[f"{emb}{name}.weight"] = weights.pop(f"{emb}{name}.weight")
    out["embeddings.norm.weight"] = weights.pop("embeddings.LayerNorm.weight")
    out["embeddings.norm.bias"] = weights.pop("embeddings.LayerNorm.bias")
    scale = 1.0 / math.sqrt(config.hidden_size // config.num_attention_heads)
    for i in range(config.num_hidden_layers):
        src, dst = f"encoder.layer.{i}.", f"layers.{i}."
        for part in ("weight", "bias"):
            q = weights.pop(f"{src}attention.self.query.{part}") * scale
            k = weights.pop(f"{src}attention.self.key.{part}")
            v = weights.pop(f"{src}attention.self.value.{part}")
            out[f"{dst}qkv.{part}"] = mx.concatenate([q, k, v], axis=0)
            out[f"{dst}attn_out.{part}"] = weights.pop(f"{src}attention.output.dense.{part}")
            out[f"{dst}attn_norm.{part}"] = weights.pop(f"{src}attention.output.LayerNorm.{part}")
            out[f"{dst}ffn_in.{part}"] = weights.pop(f"{src}intermediate.dense.{part}")
            out[f"{dst}ffn_out.{part}"] = weights.pop(f"{src}output.dense.{part}")
            out[f"{dst}ffn_norm.{part}"] = weights.pop(f"{src}output.LayerNorm.{part}")
    if weights:
        raise ValueError(f"unexpected weights in checkpoint: {sorted(weights)[:5]}")
    return out
