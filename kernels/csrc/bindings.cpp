// Python bindings of mdp_kernels (module mdp_kernels._ext), sharing mlx.core's nanobind domain so
// that mlx.core.array passes through unchanged.
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include "math_kernels.h"
#include "mlx/version.h"
#include "primitives.h"
#include "thread_pool.h"

namespace nb = nanobind;
using namespace nb::literals;

NB_MODULE(_ext, m) {
  m.doc() = "Fused CPU kernels for mdp's BERT encoder, as MLX primitives";

  m.def(
      "gelu",
      &mdpk::gelu,
      "x"_a,
      "bias"_a.none() = nb::none(),
      "Exact-erf GELU of a float32 array (CPU), of x + bias when a bias of the last axis is given.");
  m.def(
      "add_layer_norm",
      &mdpk::add_layer_norm,
      "x"_a,
      "residual"_a.none(),
      "weight"_a,
      "bias"_a,
      "eps"_a,
      "input_bias"_a.none() = nb::none(),
      "layer_norm(x + input_bias + residual) * weight + bias over the last axis; residual may be None "
      "or a (rows, dim) table repeated over x's rows; input_bias None or (dim,).");
  m.def(
      "embed_layer_norm",
      &mdpk::embed_layer_norm,
      "ids"_a,
      "table"_a,
      "positions"_a,
      "weight"_a,
      "bias"_a,
      "eps"_a,
      "layer_norm(table[ids] + positions[:length]) * weight + bias for ids of shape (batch, length).");
  m.def(
      "attention",
      &mdpk::attention,
      "qkv"_a,
      "key_mask"_a,
      "num_heads"_a,
      "qkv_bias"_a.none() = nb::none(),
      "softmax(q k^T) v per head from a fused (batch, length, 3 * hidden) projection (plus qkv_bias) and a "
      "(batch, length) key mask; returns (batch, length, hidden).");
  m.def("isa", &mdpk::rows::kernel_isa, "Instruction set of the kernel versions in use.");
  m.def("threads", &mdpk::kernel_threads, "Threads the kernels use (MDP_KERNEL_THREADS overrides).");
  m.attr("built_for_mlx") = std::to_string(MLX_VERSION_MAJOR) + "." + std::to_string(MLX_VERSION_MINOR) + "." +
      std::to_string(MLX_VERSION_PATCH);
}
