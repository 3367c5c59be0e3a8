// Vectorisable row kernels. Written as simple loops over contiguous floats so that the compiler
// vectorises them (-O3); reductions go through a fixed number of partial "lanes" so that no
// floating-point reassociation flag (-ffast-math) is needed.
#include "math_kernels.h"

#include <cstdint>
#include <cstring>

// On x86-64 Linux, GCC builds each hot function for three instruction sets and picks one at load
// time (an ifunc resolver), so one build runs on any x86-64 CPU and uses AVX2/AVX-512 where the
// CPU has them. Elsewhere (arm64 has NEON as its baseline; clang; macOS) one portable version.
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(MDPK_NO_CLONES)
#define MDPK_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define MDPK_HAVE_CLONES 1
#else
#define MDPK_CLONES
#define MDPK_HAVE_CLONES 0
#endif

#define MDPK_INLINE static inline __attribute__((always_inline))

namespace mdpk::rows {
namespace {

constexpr size_t kLanes = 16;  // partial sums per reduction (one AVX-512 or two AVX2 registers)
constexpr size_t kRows = 4;  // query rows per attention block
constexpr float kMaskedScore = -1e30f;

MDPK_INLINE float min_f(float a, float b) {
  return a < b ? a : b;
}
MDPK_INLINE float max_f(float a, float b) {
  return a > b ? a : b;
}

MDPK_INLINE float bits_to_float(int32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// exp(x) for x <= 0 (softmax arguments): Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2,
// a degree-6 polynomial for exp(r) and 2^n from the exponent bits. Relative error ~2 ulp.
// Arguments below -87 are clamped (result ~1e-38, then multiplied by the key mask or tiny).
MDPK_INLINE float exp_nonpositive(float x) {
  x = max_f(x, -87.0f);
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  float t = x * 1.44269504088896341f + shifter;
  float n = t - shifter;
  float r = x - n * 0.693359375f;  // ln2 split in a high part exact in float ...
  r = r - n * -2.12194440e-4f;  // ... and the rest
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t exponent = static_cast<int32_t>(n) + 127;
  return p * bits_to_float(exponent << 23);
}

// erf(z) as z * P(z^2) / Q(z^2) on [-4, 4] (erf(4) = 1 - 1.5e-8): the single-precision rational
// approximation used by Eigen and XLA (coefficients are published figures).
MDPK_INLINE float erf_rational(float z) {
  z = min_f(max_f(z, -4.0f), 4.0f);
  float z2 = z * z;
  float p = -2.72614225801306e-10f;
  p = p * z2 + 2.77068142495902e-08f;
  p = p * z2 + -2.10102402082508e-06f;
  p = p * z2 + -5.69250639462346e-05f;
  p = p * z2 + -7.34990630326855e-04f;
  p = p * z2 + -2.95459980854025e-03f;
  p = p * z2 + -1.60960333262415e-02f;
  float q = -1.45660718464996e-05f;
  q = q * z2 + -2.13374055278905e-04f;
  q = q * z2 + -1.68282697438203e-03f;
  q = q * z2 + -7.37332916720468e-03f;
  q = q * z2 + -1.42647390514189e-02f;
  return z * p / q;
}

MDPK_INLINE float lanes_sum(const float* lanes) {
  float total = 0.0f;
  for (size_t l = 0; l < kLanes; ++l) {
    total += lanes[l];
  }
  return total;
}

// Normalise one row in place-or-out: out = (v - mean) / sqrt(var + eps) * w + b, v already in out.
MDPK_INLINE void normalise_row(float* row, const float* w, const float* b, float eps, size_t dim) {
  float lanes[kLanes] = {};
  size_t main = dim - dim % kLanes;
  for (size_t c = 0; c < main; c += kLanes) {
    for (size_t l = 0; l < kLanes; ++l) {
      lanes[l] += row[c + l];
    }
  }
  float sum = lanes_sum(lanes);
  for (size_t c = main; c < dim; ++c) {
    sum += row[c];
  }
  float mean = sum / static_cast<float>(dim);
  float sq[kLanes] = {};
  for (size_t c = 0; c < main; c += kLanes) {
    for (size_t l = 0; l < kLanes; ++l) {
      float d = row[c + l] - mean;
      sq[l] += d * d;
    }
  }
  float var = lanes_sum(sq);
  for (size_t c = main; c < dim; ++c) {
    float d = row[c] - mean;
    var += d * d;
  }
  var /= static_cast<float>(dim);
  // 1/sqrt in double once per row: exact enough and off the vectorised path.
  float inv = static_cast<float>(1.0 / __builtin_sqrt(static_cast<double>(var) + eps));
  for (size_t c = 0; c < dim; ++c) {
    row[c] = (row[c] - mean) * inv * w[c] + b[c];
  }
}

}  // namespace

MDPK_INLINE float gelu_one(float v) {
  return 0.5f * v * (1.0f + erf_rational(v * 0.70710678118654752f));
}

MDPK_CLONES void gelu(const float* x, const float* bias, float* y, size_t dim, size_t row_begin, size_t row_end) {
  if (bias == nullptr) {
    for (size_t i = row_begin * dim; i < row_end * dim; ++i) {
      y[i] = gelu_one(x[i]);
    }
    return;
  }
  for (size_t r = row_begin; r < row_end; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    for (size_t c = 0; c < dim; ++c) {
      yr[c] = gelu_one(xr[c] + bias[c]);
    }
  }
}

MDPK_CLONES void add_layer_norm(
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
    size_t row_end) {
  for (size_t r = row_begin; r < row_end; ++r) {
    const float* xr = x + r * dim;
    float* o = out + r * dim;
    const float* rr = residual != nullptr ? residual + (r % residual_rows) * dim : nullptr;
    if (rr != nullptr && x_bias != nullptr) {
      for (size_t c = 0; c < dim; ++c) {
        o[c] = xr[c] + x_bias[c] + rr[c];
      }
    } else if (rr != nullptr) {
      for (size_t c = 0; c < dim; ++c) {
        o[c] = xr[c] + rr[c];
      }
    } else if (x_bias != nullptr) {
      for (size_t c = 0; c < dim; ++c) {
        o[c] = xr[c] + x_bias[c];
      }
    } else if (o != xr) {
      std::memcpy(o, xr, dim * sizeof(float));
    }
    normalise_row(o, weight, bias, eps, dim);
  }
}

MDPK_CLONES void embed_layer_norm(
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
    size_t row_end) {
  for (size_t r = row_begin; r < row_end; ++r) {
    float* o = out + r * dim;
    int id = ids[r];
    bool valid = id >= 0 && static_cast<size_t>(id) < table_rows;
    const float* er = table + (valid ? static_cast<size_t>(id) : 0) * dim;
    const float* rr = residual != nullptr ? residual + (r % residual_rows) * dim : nullptr;
    for (size_t c = 0; c < dim; ++c) {
      o[c] = (valid ? er[c] : 0.0f) + (rr != nullptr ? rr[c] : 0.0f);
    }
    normalise_row(o, weight, bias, eps, dim);
  }
}

size_t attention_scratch_floats(size_t length, size_t head_dim) {
  size_t padded = (length + kLanes - 1) / kLanes * kLanes;
  // K transposed, V packed, score bias, key weights, kRows score rows, accumulators, query rows.
  return 2 * head_dim * padded + 2 * padded + kRows * padded + 2 * kRows * head_dim;
}

namespace {

// 8 floats: one AVX2 register; two SSE/NEON registers on narrower machines. GCC and Clang lower
// these vector-extension types to whatever the target has, so the code stays portable.
typedef float vf8 __attribute__((vector_size(32)));
typedef float vf8u __attribute__((vector_size(32), aligned(4), may_alias));

MDPK_INLINE vf8 load8(const float* p) {
  return *reinterpret_cast<const vf8u*>(p);
}
MDPK_INLINE void store8(float* p, vf8 v) {
  *reinterpret_cast<vf8u*>(p) = v;
}
MDPK_INLINE vf8 splat8(float x) {
  return vf8{x, x, x, x, x, x, x, x};  // one broadcast (0 + x would cost an add: signed zeros)
}

// scores[r][j] = bias[j] + sum_d q_r[d] * kt[d][j] for 4 query rows and all padded keys,
// 4 x 16 accumulators held in registers while d runs.
MDPK_INLINE void score_block(
    const float* const* q, const float* kt, const float* bias, size_t head_dim, size_t padded, float* scores) {
  for (size_t j = 0; j < padded; j += 16) {
    vf8 b0 = load8(bias + j), b1 = load8(bias + j + 8);
    vf8 a00 = b0, a01 = b1, a10 = b0, a11 = b1, a20 = b0, a21 = b1, a30 = b0, a31 = b1;
    const float* k = kt + j;
    for (size_t d = 0; d < head_dim; ++d, k += padded) {
      vf8 k0 = load8(k), k1 = load8(k + 8);
      vf8 q0 = splat8(q[0][d]), q1 = splat8(q[1][d]), q2 = splat8(q[2][d]), q3 = splat8(q[3][d]);
      a00 += q0 * k0;
      a01 += q0 * k1;
      a10 += q1 * k0;
      a11 += q1 * k1;
      a20 += q2 * k0;
      a21 += q2 * k1;
      a30 += q3 * k0;
      a31 += q3 * k1;
    }
    store8(scores + j, a00);
    store8(scores + j + 8, a01);
    store8(scores + padded + j, a10);
    store8(scores + padded + j + 8, a11);
    store8(scores + 2 * padded + j, a20);
    store8(scores + 2 * padded + j + 8, a21);
    store8(scores + 3 * padded + j, a30);
    store8(scores + 3 * padded + j + 8, a31);
  }
}

// acc[r][c..c+8*NV) = sum_j w_r[j] * v[j][c..c+8*NV) for 2 rows, accumulators in registers.
template <int NV>
MDPK_INLINE void weighted_sum_2rows(
    const float* w0, const float* w1, const float* vp, size_t keys, size_t head_dim, size_t c, float* acc0,
    float* acc1) {
  vf8 x0[NV], x1[NV];
  for (int n = 0; n < NV; ++n) {
    x0[n] = vf8{};
    x1[n] = vf8{};
  }
  const float* v = vp + c;
  for (size_t j = 0; j < keys; ++j, v += head_dim) {
    vf8 p0 = splat8(w0[j]), p1 = splat8(w1[j]);
    for (int n = 0; n < NV; ++n) {
      vf8 vv = load8(v + 8 * n);
      x0[n] += p0 * vv;
      x1[n] += p1 * vv;
    }
  }
  for (int n = 0; n < NV; ++n) {
    store8(acc0 + c + 8 * n, x0[n]);
    store8(acc1 + c + 8 * n, x1[n]);
  }
}

// Softmax of one score row in place over padded keys (masked keys get weight 0); returns 1/sum.
MDPK_INLINE float softmax_row(float* s, const float* key_weight, size_t padded) {
  float lanes[kLanes];
  for (size_t l = 0; l < kLanes; ++l) {
    lanes[l] = kMaskedScore;
  }
  for (size_t j = 0; j < padded; j += kLanes) {
    for (size_t l = 0; l < kLanes; ++l) {
      lanes[l] = max_f(lanes[l], s[j + l]);
    }
  }
  float row_max = lanes[0];
  for (size_t l = 1; l < kLanes; ++l) {
    row_max = max_f(row_max, lanes[l]);
  }
  float sums[kLanes] = {};
  for (size_t j = 0; j < padded; j += kLanes) {
    for (size_t l = 0; l < kLanes; ++l) {
      float p = exp_nonpositive(s[j + l] - row_max) * key_weight[j + l];
      s[j + l] = p;
      sums[l] += p;
    }
  }
  return 1.0f / lanes_sum(sums);
}

}  // namespace

MDPK_CLONES void attention_head(
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
    float* scratch) {
  // Keys after the last kept one (right padding) are skipped entirely.
  size_t keys = 0;
  for (size_t j = 0; j < length; ++j) {
    if (keep[j] > 0.0f) {
      keys = j + 1;
    }
  }
  if (keys == 0) {
    for (size_t i = 0; i < length; ++i) {
      std::memset(out + i * out_stride, 0, head_dim * sizeof(float));
    }
    return;
  }
  const size_t padded = (keys + kLanes - 1) / kLanes * kLanes;
  float* kt = scratch;  // K transposed: head_dim x padded (zero past the last key)
  float* vp = kt + head_dim * padded;  // V packed: keys x head_dim
  float* score_bias = vp + head_dim * padded;  // 0 for kept keys, kMaskedScore otherwise
  float* key_weight = score_bias + padded;  // 1 for kept keys, 0 otherwise
  float* scores = key_weight + padded;  // kRows x padded
  float* acc = scores + kRows * padded;  // kRows x head_dim
  float* qb = acc + kRows * head_dim;  // kRows x head_dim: this block's query rows (+ bias)
  for (size_t j = 0; j < padded; ++j) {
    bool kept = j < keys && keep[j] > 0.0f;
    key_weight[j] = kept ? 1.0f : 0.0f;
    score_bias[j] = kept ? 0.0f : kMaskedScore;
  }
  // Read K row by row (rows of the projection are far apart), write it transposed.
  for (size_t j = 0; j < keys; ++j) {
    const float* kr = k + j * in_stride;
    for (size_t d = 0; d < head_dim; ++d) {
      kt[d * padded + j] = kr[d] + (k_bias != nullptr ? k_bias[d] : 0.0f);
    }
  }
  for (size_t d = 0; d < head_dim; ++d) {
    for (size_t j = keys; j < padded; ++j) {
      kt[d * padded + j] = 0.0f;
    }
  }
  for (size_t j = 0; j < keys; ++j) {
    const float* vr = v + j * in_stride;
    float* dst = vp + j * head_dim;
    for (size_t d = 0; d < head_dim; ++d) {
      dst[d] = vr[d] + (v_bias != nullptr ? v_bias[d] : 0.0f);
    }
  }
  const size_t vector_dims = head_dim - head_dim % 8;
  for (size_t i0 = 0; i0 < length; i0 += kRows) {
    const size_t rows = length - i0 < kRows ? length - i0 : kRows;
    // Rows past the end repeat row i0 (computed, never written).
    const float* qrows[kRows];
    for (size_t r = 0; r < kRows; ++r) {
      const float* src = q + (i0 + (r < rows ? r : 0)) * in_stride;
      float* dst = qb + r * head_dim;
      for (size_t d = 0; d < head_dim; ++d) {
        dst[d] = src[d] + (q_bias != nullptr ? q_bias[d] : 0.0f);
      }
      qrows[r] = dst;
    }
    score_block(qrows, kt, score_bias, head_dim, padded, scores);
    float inv_sum[kRows];
    for (size_t r = 0; r < kRows; ++r) {
      inv_sum[r] = softmax_row(scores + r * padded, key_weight, padded);
    }
    for (size_t r = 0; r < kRows; r += 2) {
      const float* w0 = scores + r * padded;
      const float* w1 = scores + (r + 1) * padded;
      float* acc0 = acc + r * head_dim;
      float* acc1 = acc + (r + 1) * head_dim;
      size_t c = 0;
      for (; c + 32 <= vector_dims; c += 32) {
        weighted_sum_2rows<4>(w0, w1, vp, keys, head_dim, c, acc0, acc1);
      }
      for (; c < vector_dims; c += 8) {
        weighted_sum_2rows<1>(w0, w1, vp, keys, head_dim, c, acc0, acc1);
      }
      for (; c < head_dim; ++c) {  // head_dim not a multiple of 8
        float s0 = 0.0f, s1 = 0.0f;
        for (size_t j = 0; j < keys; ++j) {
          s0 += w0[j] * vp[j * head_dim + c];
          s1 += w1[j] * vp[j * head_dim + c];
        }
        acc0[c] = s0;
        acc1[c] = s1;
      }
    }
    for (size_t r = 0; r < rows; ++r) {
      float* o = out + (i0 + r) * out_stride;
      const float* a = acc + r * head_dim;
      for (size_t d = 0; d < head_dim; ++d) {
        o[d] = a[d] * inv_sum[r];
      }
    }
  }
}

const char* kernel_isa() {
#if MDPK_HAVE_CLONES
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) {
    return "x86-64-v4 (AVX-512)";
  }
  if (__builtin_cpu_supports("x86-64-v3")) {
    return "x86-64-v3 (AVX2, FMA)";
  }
  return "x86-64 baseline (SSE2)";
#elif defined(__aarch64__) || defined(__arm64__)
  return "arm64 (NEON)";
#else
  return "portable (compiler default)";
#endif
}

}  // namespace mdpk::rows
