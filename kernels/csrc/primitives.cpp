#include "primitives.h"

#include <algorithm>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "math_kernels.h"
#include "mlx/allocator.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/ops.h"
#include "mlx/primitives.h"
#include "mlx/utils.h"
#include "thread_pool.h"

namespace mdpk {
namespace {

// Elementwise work is split into blocks of this many floats (big enough to amortise a task).
constexpr size_t kBlock = 1 << 15;

mx::Stream cpu_stream() {
  return mx::default_stream(mx::Device::cpu);
}

void require(bool ok, const std::string& message) {
  if (!ok) {
    throw std::invalid_argument("mdp_kernels: " + message);
  }
}

std::string shape_str(const mx::array& a) {
  std::ostringstream out;
  out << "(";
  for (size_t i = 0; i < a.shape().size(); ++i) {
    out << (i ? ", " : "") << a.shape()[i];
  }
  out << (a.shape().size() == 1 ? ",)" : ")");
  return out.str();
}

void require_float32(const mx::array& a, const char* what) {
  require(a.dtype() == mx::float32, std::string(what) + " must be float32");
}

// Inputs are made row-contiguous by an MLX op (a no-op when they already are).
mx::array dense(const mx::array& a) {
  return mx::contiguous(a, false, cpu_stream());
}

void allocate(mx::array& out) {
  out.set_data(mx::allocator::malloc(out.nbytes()));
}

// Rows per task so that a task holds about kBlock floats.
size_t rows_per_task(size_t dim) {
  return std::max<size_t>(1, kBlock / std::max<size_t>(1, dim));
}

class CpuPrimitive : public mx::Primitive {
 public:
  using mx::Primitive::Primitive;
  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error(std::string(name()) + ": mdp_kernels has CPU kernels only");
  }
};

class Gelu : public CpuPrimitive {
 public:
  Gelu(mx::Stream stream, bool has_bias) : CpuPrimitive(stream), has_bias_(has_bias) {}
  const char* name() const override {
    return "MdpGelu";
  }
  bool is_equivalent(const mx::Primitive& other) const override {
    return has_bias_ == static_cast<const Gelu&>(other).has_bias_;
  }
  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
    const mx::array& in = inputs[0];
    mx::array& out = outputs[0];
    // Reuse the input's buffer when nothing else holds it (as MLX's unary ops do).
    if (in.is_donatable() && in.flags().row_contiguous) {
      out.copy_shared_buffer(in);
    } else {
      allocate(out);
    }
    auto& encoder = mx::cpu::get_command_encoder(stream());
    for (const auto& input : inputs) {
      encoder.set_input_array(input);
    }
    encoder.set_output_array(out);
    // Without a bias the array is one long row; with one, rows of the bias's length.
    const size_t dim = has_bias_ ? inputs[1].size() : std::max<size_t>(1, out.size());
    const size_t rows = dim ? out.size() / dim : 0;
    encoder.dispatch([src = in.data<float>(),
                      bias = has_bias_ ? inputs[1].data<float>() : nullptr,
                      dst = out.data<float>(),
                      dim,
                      rows]() {
      if (bias == nullptr) {  // split the single row into blocks
        size_t n = dim * rows;
        parallel_for((n + kBlock - 1) / kBlock, [&](size_t t) {
          size_t begin = t * kBlock;
          size_t count = std::min(kBlock, n - begin);
          rows::gelu(src + begin, nullptr, dst + begin, count, 0, 1);
        });
        return;
      }
      size_t step = rows_per_task(dim);
      parallel_for((rows + step - 1) / step, [&](size_t t) {
        size_t begin = t * step;
        rows::gelu(src, bias, dst, dim, begin, std::min(rows, begin + step));
      });
    });
  }

 private:
  bool has_bias_;
};

class AddLayerNorm : public CpuPrimitive {
 public:
  AddLayerNorm(mx::Stream stream, float eps, bool has_input_bias, bool has_residual)
      : CpuPrimitive(stream), eps_(eps), has_input_bias_(has_input_bias), has_residual_(has_residual) {}
  const char* name() const override {
    return "MdpAddLayerNorm";
  }
  bool is_equivalent(const mx::Primitive& other) const override {
    auto& o = static_cast<const AddLayerNorm&>(other);
    return eps_ == o.eps_ && has_input_bias_ == o.has_input_bias_ && has_residual_ == o.has_residual_;
  }
  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
    size_t next = 0;
    const mx::array& x = inputs[next++];
    const mx::array* input_bias = has_input_bias_ ? &inputs[next++] : nullptr;
    const mx::array* residual = has_residual_ ? &inputs[next++] : nullptr;
    const mx::array& weight = inputs[next++];
    const mx::array& bias = inputs[next++];
    mx::array& out = outputs[0];
    if (x.is_donatable()) {
      out.copy_shared_buffer(x);
    } else if (residual != nullptr && residual->is_donatable() && residual->size() == x.size()) {
      out.copy_shared_buffer(*residual);
    } else {
      allocate(out);
    }
    auto& encoder = mx::cpu::get_command_encoder(stream());
    for (const auto& in : inputs) {
      encoder.set_input_array(in);
    }
    encoder.set_output_array(out);
    const size_t dim = x.shape().back();
    const size_t rows = dim ? x.size() / dim : 0;
    encoder.dispatch([x = x.data<float>(),
                      x_bias = input_bias ? input_bias->data<float>() : nullptr,
                      res = residual ? residual->data<float>() : nullptr,
                      res_rows = residual ? residual->size() / std::max<size_t>(dim, 1) : 1,
                      w = weight.data<float>(),
                      b = bias.data<float>(),
                      o = out.data<float>(),
                      eps = eps_,
                      dim,
                      rows]() {
      size_t step = rows_per_task(dim);
      parallel_for((rows + step - 1) / step, [&](size_t t) {
        size_t begin = t * step;
        rows::add_layer_norm(x, x_bias, res, res_rows, w, b, eps, o, dim, begin, std::min(rows, begin + step));
      });
    });
  }

 private:
  float eps_;
  bool has_input_bias_;
  bool has_residual_;
};

class EmbedLayerNorm : public CpuPrimitive {
 public:
  EmbedLayerNorm(mx::Stream stream, float eps) : CpuPrimitive(stream), eps_(eps) {}
  const char* name() const override {
    return "MdpEmbedLayerNorm";
  }
  bool is_equivalent(const mx::Primitive& other) const override {
    return eps_ == static_cast<const EmbedLayerNorm&>(other).eps_;
  }
  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
    const mx::array& ids = inputs[0];
    const mx::array& table = inputs[1];
    const mx::array& positions = inputs[2];
    mx::array& out = outputs[0];
    allocate(out);
    auto& encoder = mx::cpu::get_command_encoder(stream());
    for (const auto& in : inputs) {
      encoder.set_input_array(in);
    }
    encoder.set_output_array(out);
    const size_t dim = table.shape(1);
    const size_t rows = ids.size();
    encoder.dispatch([ids = ids.data<int32_t>(),
                      t = table.data<float>(),
                      table_rows = static_cast<size_t>(table.shape(0)),
                      p = positions.data<float>(),
                      p_rows = static_cast<size_t>(positions.shape(0)),
                      w = inputs[3].data<float>(),
                      b = inputs[4].data<float>(),
                      o = out.data<float>(),
                      eps = eps_,
                      dim,
                      rows]() {
      size_t step = rows_per_task(dim);
      parallel_for((rows + step - 1) / step, [&](size_t task) {
        size_t begin = task * step;
        rows::embed_layer_norm(ids, t, table_rows, p, p_rows, w, b, eps, o, dim, begin, std::min(rows, begin + step));
      });
    });
  }

 private:
  float eps_;
};

class Attention : public CpuPrimitive {
 public:
  Attention(mx::Stream stream, int heads, bool has_bias) : CpuPrimitive(stream), heads_(heads), has_bias_(has_bias) {}
  const char* name() const override {
    return "MdpAttention";
  }
  bool is_equivalent(const mx::Primitive& other) const override {
    auto& o = static_cast<const Attention&>(other);
    return heads_ == o.heads_ && has_bias_ == o.has_bias_;
  }
  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
    const mx::array& qkv = inputs[0];
    const mx::array& keep = inputs[1];
    mx::array& out = outputs[0];
    allocate(out);
    auto& encoder = mx::cpu::get_command_encoder(stream());
    for (const auto& input : inputs) {
      encoder.set_input_array(input);
    }
    encoder.set_output_array(out);
    const size_t batch = qkv.shape(0);
    const size_t length = qkv.shape(1);
    const size_t hidden = qkv.shape(2) / 3;
    const size_t heads = static_cast<size_t>(heads_);
    const size_t head_dim = hidden / heads;
    encoder.dispatch([src = qkv.data<float>(),
                      keep = keep.data<float>(),
                      bias = has_bias_ ? inputs[2].data<float>() : nullptr,
                      dst = out.data<float>(),
                      batch,
                      length,
                      hidden,
                      heads,
                      head_dim]() {
      const size_t scratch_floats = rows::attention_scratch_floats(length, head_dim);
      parallel_for(batch * heads, [&](size_t task) {
        thread_local std::vector<float> scratch;
        if (scratch.size() < scratch_floats) {
          scratch.resize(scratch_floats);
        }
        const size_t b = task / heads;
        const size_t h = task % heads;
        const float* base = src + b * length * 3 * hidden + h * head_dim;
        const float* head_bias = bias != nullptr ? bias + h * head_dim : nullptr;
        rows::attention_head(
            base,
            base + hidden,
            base + 2 * hidden,
            3 * hidden,
            head_bias,
            head_bias != nullptr ? head_bias + hidden : nullptr,
            head_bias != nullptr ? head_bias + 2 * hidden : nullptr,
            keep + b * length,
            length,
            head_dim,
            dst + b * length * hidden + h * head_dim,
            hidden,
            scratch.data());
      });
    });
  }

 private:
  int heads_;
  bool has_bias_;
};

}  // namespace

// A bias of the last axis's length (added before the op), or none.
void check_bias(const std::optional<mx::array>& bias, const mx::array& x, int dim, const char* what) {
  if (!bias) {
    return;
  }
  require_float32(*bias, what);
  require(bias->ndim() == 1 && bias->shape(0) == dim,
          std::string(what) + " must be (" + std::to_string(dim) + ",) for input " + shape_str(x) + ", got " +
              shape_str(*bias));
}

mx::array gelu(const mx::array& x, const std::optional<mx::array>& bias) {
  require_float32(x, "gelu input");
  std::vector<mx::array> inputs = {dense(x)};
  if (bias) {
    require(x.ndim() >= 1, "gelu with a bias needs at least one axis");
    check_bias(bias, x, x.shape().back(), "gelu bias");
    inputs.push_back(dense(*bias));
  }
  return mx::array(x.shape(), mx::float32, std::make_shared<Gelu>(cpu_stream(), bias.has_value()), inputs);
}

mx::array add_layer_norm(
    const mx::array& x,
    const std::optional<mx::array>& residual,
    const mx::array& weight,
    const mx::array& bias,
    float eps,
    const std::optional<mx::array>& input_bias) {
  require(x.ndim() >= 1, "layer norm needs at least one axis");
  require_float32(x, "layer norm input");
  const int dim = x.shape().back();
  require(weight.ndim() == 1 && weight.shape(0) == dim && bias.ndim() == 1 && bias.shape(0) == dim,
          "layer norm weight and bias must be (" + std::to_string(dim) + ",), got " + shape_str(weight) +
              " and " + shape_str(bias));
  require_float32(weight, "layer norm weight");
  require_float32(bias, "layer norm bias");
  std::vector<mx::array> inputs = {dense(x)};
  check_bias(input_bias, x, dim, "input_bias");
  if (input_bias) {
    inputs.push_back(dense(*input_bias));
  }
  if (residual) {
    require_float32(*residual, "residual");
    const size_t rows = dim ? x.size() / dim : 0;
    const size_t res_rows = dim ? residual->size() / dim : 0;
    bool same = residual->shape() == x.shape();
    bool table = residual->ndim() == 2 && residual->shape(1) == dim && res_rows > 0 && rows % res_rows == 0;
    require(same || table, "residual " + shape_str(*residual) + " does not fit input " + shape_str(x) +
                               " (same shape, or (rows, " + std::to_string(dim) + ") repeated over the input)");
    inputs.push_back(dense(*residual));
  }
  inputs.push_back(dense(weight));
  inputs.push_back(dense(bias));
  return mx::array(
      x.shape(), mx::float32, std::make_shared<AddLayerNorm>(cpu_stream(), eps, input_bias.has_value(), residual.has_value()),
      inputs);
}

mx::array embed_layer_norm(
    const mx::array& ids,
    const mx::array& table,
    const mx::array& positions,
    const mx::array& weight,
    const mx::array& bias,
    float eps) {
  require(ids.ndim() == 2, "ids must be (batch, length), got " + shape_str(ids));
  require(table.ndim() == 2, "embedding table must be (vocab, dim), got " + shape_str(table));
  const int dim = table.shape(1);
  require(positions.ndim() == 2 && positions.shape(1) == dim && positions.shape(0) >= ids.shape(1),
          "positions must be (>= length, " + std::to_string(dim) + "), got " + shape_str(positions));
  require(weight.size() == static_cast<size_t>(dim) && bias.size() == static_cast<size_t>(dim),
          "layer norm weight and bias must have " + std::to_string(dim) + " entries");
  for (const auto* a : {&table, &positions, &weight, &bias}) {
    require_float32(*a, "embedding tables and layer norm parameters");
  }
  mx::array pos = mx::slice(positions, {0, 0}, {ids.shape(1), dim}, cpu_stream());
  return mx::array(
      {ids.shape(0), ids.shape(1), dim},
      mx::float32,
      std::make_shared<EmbedLayerNorm>(cpu_stream(), eps),
      {dense(mx::astype(ids, mx::int32, cpu_stream())), dense(table), dense(pos), dense(weight), dense(bias)});
}

mx::array attention(
    const mx::array& qkv, const mx::array& key_mask, int num_heads, const std::optional<mx::array>& qkv_bias) {
  require(qkv.ndim() == 3, "qkv must be (batch, length, 3 * hidden), got " + shape_str(qkv));
  require_float32(qkv, "qkv");
  require(num_heads >= 1, "num_heads must be >= 1");
  const int batch = qkv.shape(0);
  const int length = qkv.shape(1);
  require(qkv.shape(2) % (3 * num_heads) == 0,
          "qkv's last axis (" + std::to_string(qkv.shape(2)) + ") is not 3 x num_heads x head_dim");
  require(key_mask.ndim() == 2 && key_mask.shape(0) == batch && key_mask.shape(1) == length,
          "key_mask must be (batch, length) = (" + std::to_string(batch) + ", " + std::to_string(length) +
              "), got " + shape_str(key_mask));
  check_bias(qkv_bias, qkv, qkv.shape(2), "qkv_bias");
  std::vector<mx::array> inputs = {dense(qkv), dense(mx::astype(key_mask, mx::float32, cpu_stream()))};
  if (qkv_bias) {
    inputs.push_back(dense(*qkv_bias));
  }
  return mx::array(
      {batch, length, qkv.shape(2) / 3},
      mx::float32,
      std::make_shared<Attention>(cpu_stream(), num_heads, qkv_bias.has_value()),
      inputs);
}

}  // namespace mdpk
