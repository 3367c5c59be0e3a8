// Checks the row kernels (csrc/math_kernels.cpp) against float64 references without MLX or Python,
// so that a build with -DMDPK_NO_CLONES (the portable version arm64, Clang and macOS get, and the
// baseline x86-64 clone) is exercised too. Built and run by tests/test_kernels.py; exit 0 = ok.
#include "math_kernels.h"
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>
using namespace mdpk::rows;
int main() {
  std::mt19937 g(1); std::normal_distribution<float> n(0, 1);
  int bad = 0;
  // gelu
  std::vector<float> x(100003), y(x.size());
  for (auto& v : x) v = n(g) * 5;
  gelu(x.data(), nullptr, y.data(), x.size(), 0, 1);
  double e = 0; for (size_t i = 0; i < x.size(); i++) { double xd = x[i]; double r = 0.5 * xd * (1 + std::erf(xd / std::sqrt(2.0))); e = std::fmax(e, std::fabs(r - y[i])); }
  printf("gelu max err %.3g\n", e); bad += e > 1e-5;
  // layer norm
  size_t dim = 384, rows_n = 37; std::vector<float> a(dim * rows_n), r(dim * rows_n), w(dim), b(dim), xb(dim), o(dim * rows_n);
  for (auto* v : {&a, &r, &w, &b, &xb}) for (auto& z : *v) z = n(g);
  add_layer_norm(a.data(), xb.data(), r.data(), rows_n, w.data(), b.data(), 1e-12f, o.data(), dim, 0, rows_n);
  e = 0; for (size_t i = 0; i < rows_n; i++) { double m = 0, s = 0; for (size_t c = 0; c < dim; c++) m += (double)a[i*dim+c] + xb[c] + r[i*dim+c]; m /= dim; for (size_t c = 0; c < dim; c++) { double d = (double)a[i*dim+c] + xb[c] + r[i*dim+c] - m; s += d*d; } s /= dim; for (size_t c = 0; c < dim; c++) { double v = ((double)a[i*dim+c] + xb[c] + r[i*dim+c] - m) / std::sqrt(s + 1e-12) * w[c] + b[c]; e = std::fmax(e, std::fabs(v - o[i*dim+c])); } }
  printf("layer norm max err %.3g\n", e); bad += e > 1e-4;
  // attention
  for (size_t D : {32, 64, 12}) for (size_t L : {1, 17, 256, 257}) {
    size_t H = 2, hid = H * D; std::vector<float> qkv(L * 3 * hid), out(L * hid), keep(L, 1.0f), bias(3 * hid);
    for (auto& v : qkv) v = n(g) * 1.5f; for (auto& v : bias) v = n(g);
    for (size_t j = 0; j < L; j++) keep[j] = (j % 5 == 3 || j + 3 >= L + (L > 4 ? 0 : 3)) ? 0.0f : 1.0f;
    std::vector<float> scratch(attention_scratch_floats(L, D));
    for (size_t h = 0; h < H; h++) { const float* base = qkv.data() + h * D; const float* hb = bias.data() + h * D;
      attention_head(base, base + hid, base + 2 * hid, 3 * hid, hb, hb + hid, hb + 2 * hid, keep.data(), L, D, out.data() + h * D, hid, scratch.data()); }
    e = 0; bool any = false; for (size_t j = 0; j < L; j++) any |= keep[j] > 0;
    for (size_t h = 0; h < H; h++) for (size_t i = 0; i < L; i++) {
      std::vector<double> s(L); double mx = -1e300;
      for (size_t j = 0; j < L; j++) { if (keep[j] <= 0) continue; double acc = 0; for (size_t d = 0; d < D; d++) acc += ((double)qkv[i*3*hid + h*D + d] + bias[h*D+d]) * ((double)qkv[j*3*hid + hid + h*D + d] + bias[hid + h*D + d]); s[j] = acc; mx = std::fmax(mx, acc); }
      double sum = 0; for (size_t j = 0; j < L; j++) { s[j] = keep[j] > 0 ? std::exp(s[j] - mx) : 0; sum += s[j]; }
      for (size_t d = 0; d < D; d++) { double v = 0; for (size_t j = 0; j < L; j++) v += s[j] * ((double)qkv[j*3*hid + 2*hid + h*D + d] + bias[2*hid + h*D + d]); v = any ? v / sum : 0; e = std::fmax(e, std::fabs(v - out[i*hid + h*D + d])); }
    }
    printf("attention D=%zu L=%zu max err %.3g\n", D, L, e); bad += e > 1e-4;
  }
  printf("isa %s, %s\n", kernel_isa(), bad ? "FAILED" : "all ok");
  return bad != 0;
}
