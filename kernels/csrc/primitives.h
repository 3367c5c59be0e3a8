// MLX operations backed by mdp_kernels' fused CPU kernels (inference only: no vjp/jvp/vmap).
#pragma once

#include <optional>

#include "mlx/array.h"

namespace mdpk {

namespace mx = mlx::core;

// Exact-erf GELU of a float32 array, of x + bias when a bias (last axis) is given.
mx::array gelu(const mx::array& x, const std::optional<mx::array>& bias);

// layer_norm(x + input_bias + residual) * weight + bias over the last axis. residual is either x's
// shape or (rows, dim) with x's row count a multiple of rows (broadcast over leading axes);
// input_bias is (dim,); an empty optional means none.
mx::array add_layer_norm(
    const mx::array& x,
    const std::optional<mx::array>& residual,
    const mx::array& weight,
    const mx::array& bias,
    float eps,
    const std::optional<mx::array>& input_bias);

// layer_norm(table[ids] + positions) * weight + bias; ids (B, L) int32, positions (L, dim).
mx::array embed_layer_norm(
    const mx::array& ids,
    const mx::array& table,
    const mx::array& positions,
    const mx::array& weight,
    const mx::array& bias,
    float eps);

// Multi-head softmax attention from a fused projection: qkv (B, L, 3 * H * D) holds Q, K, V
// (Q already scaled), key_mask (B, L) is 1 to keep a key and 0 to drop it; qkv_bias (3 * H * D,)
// is added to the projection first when given. Returns (B, L, H * D) with the heads merged. Rows
// whose keys are all masked are zero.
mx::array attention(
    const mx::array& qkv, const mx::array& key_mask, int num_heads, const std::optional<mx::array>& qkv_bias);

}  // namespace mdpk
