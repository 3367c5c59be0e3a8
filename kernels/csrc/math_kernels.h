// Row kernels of mdp_kernels: plain loops over raw float pointers, no MLX types.
//
// Each function works on a slice of rows so that the caller can split the work over threads.
// On x86-64 Linux with GCC they are compiled several times (baseline, AVX2+FMA, AVX-512) and
// the best version for the running CPU is chosen when the library loads (see MDPK_CLONES).
#pragma once

#include <cstddef>

namespace mdpk::rows {

// Rows [row_begin, row_end) of y = gelu(x + bias) over `dim` columns (exact-erf GELU, |error| <
// 2e-6 against float64); bias (dim floats) may be null.
void gelu(const float* x, const float* bias, float* y, size_t dim, size_t row_begin, size_t row_end);

// Rows [row_begin, row_end) of out = layer_norm(x + x_bias + residual) * weight + bias over `dim`
// columns. x_bias (dim floats) and residual may be null; row r of x is paired with row
// (r % residual_rows) of residual, so a (L, dim) table can be broadcast over a (B, L, dim) input.
void add_layer_norm(
    const float* x,
    const float* x_bias,
    const float* residual,
    size_t residual_rows,
    const float* weight,
    const float* bias,
    float eps,
    float* out,
    size_t dim,
    size_t row_begin,
    size_t row_end);

// Same, with rows of x gathered from an embedding table: x row r = table[ids[r]].
// Ids outside [0, table_rows) give a zero embedding row.
void embed_layer_norm(
    const int* ids,
    const float* table,
    size_t table_rows,
    const float* residual,
    size_t residual_rows,
    const float* weight,
    const float* bias,
    float eps,
    float* out,
    size_t dim,
    size_t row_begin,
    size_t row_end);

// One (batch row, head) of softmax(q k^T) v with a key mask, reading q, k and v in place from
// a fused projection. Row i of q is q + i * in_stride (same for k, v); keep[j] > 0 keeps key j.
// q_bias, k_bias, v_bias (head_dim floats each, or all null) are added to q, k and v.
// The result row i is written to out + i * out_stride (head_dim floats). A row whose keys are all
// masked gets zeros. scratch must hold attention_scratch_floats(length, head_dim) floats.
void attention_head(
    const float* q,
    const float* k,
    const float* v,
    size_t in_stride,
    const float* q_bias,
    const float* k_bias,
    const float* v_bias,
    const float* keep,
    size_t length,
    size_t head_dim,
    float* out,
    size_t out_stride,
    float* scratch);

size_t attention_scratch_floats(size_t length, size_t head_dim);

// Name of the instruction set the dispatcher picked for these kernels ("avx512", "avx2", ...).
const char* kernel_isa();

} // namespace mdpk::rows
