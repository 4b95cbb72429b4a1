// CPU kernels of the fused gradient-norm penalty (docs/design.md section 8.1).
//
//   value      = (1/B) sum_i w(v_i) h(n_i),      n_i = ||g_i||_2
//   d value/dg_i = (1/B) w(v_i) h'(n_i) g_i / n_i
//   d value/dv_i = (1/B) w'(v_i) h(n_i)
//
// Rows are split across threads with at::parallel_for. Per-row results go to a
// buffer that is summed in row order, so the value does not depend on the
// number of threads. Each row's sum of squares is blocked (float blocks added
// in double, common/sum_of_squares.h) and the rows are added in double, so the
// float32 error stays near 1e-7 at any row length and batch size.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../common/grad_penalty_args.h"
#include "../common/penalty_backward.h"
#include "../common/sum_of_squares.h"
#include "../ops.h"

namespace fastreg {
namespace {

// Elements per parallel task: keeps tiny batches on one thread.
constexpr int64_t kGrainElements = 1 << 15;

int64_t row_grain(int64_t row_len) { return std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, row_len)); }

// out_j = scale * x_j over one row.
template <typename scalar_t, typename acc_t>
inline __attribute__((always_inline)) void scale_row_into(const scalar_t* __restrict__ x, acc_t scale, int64_t len,
                                                          scalar_t* __restrict__ out) {
  for (int64_t j = 0; j < len; ++j) out[j] = static_cast<scalar_t>(scale * static_cast<acc_t>(x[j]));
}

// float and double rows are the hot path: GCC builds AVX-512, AVX2 and
// baseline clones of these and picks one at load time for the running CPU,
// so the extension stays portable without -march flags. Half types take the
// generic templates.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FASTREG_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FASTREG_CPU_CLONES
#endif

// sum_j x_j^2 over one row, blocked (common/sum_of_squares.h), rounded once to acc_t.
FASTREG_CPU_CLONES float row_sum_of_squares(const float* x, int64_t len) {
  return static_cast<float>(row_sum_of_squares_blocked<float, float>(x, len));
}
FASTREG_CPU_CLONES double row_sum_of_squares(const double* x, int64_t len) {
  return row_sum_of_squares_blocked<double, double>(x, len);
}
template <typename scalar_t>
float row_sum_of_squares(const scalar_t* x, int64_t len) {
  return static_cast<float>(row_sum_of_squares_blocked<scalar_t, float>(x, len));
}

FASTREG_CPU_CLONES void scale_row(const float* x, float scale, int64_t len, float* out) {
  scale_row_into<float, float>(x, scale, len, out);
}
FASTREG_CPU_CLONES void scale_row(const double* x, double scale, int64_t len, double* out) {
  scale_row_into<double, double>(x, scale, len, out);
}
template <typename scalar_t>
void scale_row(const scalar_t* x, float scale, int64_t len, scalar_t* out) {
  scale_row_into<scalar_t, float>(x, scale, len, out);
}

template <typename scalar_t>
void forward_kernel(const GradPenaltyArgs& a, const scalar_t* g, const scalar_t* v, scalar_t* value,
                    at::opmath_type<scalar_t>* norms) {
  using acc_t = at::opmath_type<scalar_t>;
  std::vector<acc_t> contributions(a.rows);
  const acc_t target = static_cast<acc_t>(a.target);
  at::parallel_for(0, a.rows, row_grain(a.row_len), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const acc_t sum_sq = row_sum_of_squares(g + i * a.row_len, a.row_len);
      const acc_t vi = v ? static_cast<acc_t>(v[i]) : acc_t(0);
      const acc_t w = weight_and_slope<acc_t>(a.weight, vi, i < a.num_real).w;
      norms[i] = fr_sqrt(sum_sq);
      contributions[i] = w * norm_penalty<acc_t>(a.norm, sum_sq, target);
    }
  });
  wide_sum_t total = 0;
  for (int64_t i = 0; i < a.rows; ++i) total += static_cast<wide_sum_t>(contributions[i]);
  *value = static_cast<scalar_t>(static_cast<acc_t>(total / static_cast<wide_sum_t>(a.rows)));
}

template <typename scalar_t>
void backward_kernel(const GradPenaltyArgs& a, double grad_value, const scalar_t* g, const scalar_t* v,
                     const at::opmath_type<scalar_t>* norms, scalar_t* d_g, scalar_t* d_v) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t scale = static_cast<acc_t>(grad_value) / static_cast<acc_t>(a.rows);
  const acc_t target = static_cast<acc_t>(a.target);
  at::parallel_for(0, a.rows, row_grain(a.row_len), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const acc_t sum_sq = norms[i] * norms[i];
      const acc_t vi = v ? static_cast<acc_t>(v[i]) : acc_t(0);
      const WeightAndSlope<acc_t> ws = weight_and_slope<acc_t>(a.weight, vi, i < a.num_real);
      const acc_t row_scale = grad_row_scale<acc_t>(a.norm, scale, ws.w, sum_sq, target);
      scale_row(g + i * a.row_len, row_scale, a.row_len, d_g + i * a.row_len);
      if (d_v) {
        d_v[i] = static_cast<scalar_t>(
            logit_grad<acc_t>(a.weight, scale, ws.dw, norm_penalty<acc_t>(a.norm, sum_sq, target)));
      }
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> grad_penalty_cpu(const at::Tensor& grad, const std::optional<at::Tensor>& logits,
                                                    std::string_view weight, int64_t num_real, std::string_view norm,
                                                    double target) {
  const GradPenaltyArgs a = check_grad_penalty_args(grad, logits, weight, num_real, norm, target);
  const at::Tensor g = grad.contiguous();
  const at::Tensor v = contiguous_logits(logits);
  at::Tensor value = at::empty({}, grad.options());
  at::Tensor norms = at::empty({a.rows}, grad.options().dtype(accumulate_type(grad.scalar_type())));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "grad_penalty_cpu", [&] {
    forward_kernel<scalar_t>(a, g.const_data_ptr<scalar_t>(), v.defined() ? v.const_data_ptr<scalar_t>() : nullptr,
                             value.mutable_data_ptr<scalar_t>(), norms.mutable_data_ptr<at::opmath_type<scalar_t>>());
  });
  return {value, norms};
}

std::tuple<at::Tensor, at::Tensor> grad_penalty_backward_cpu(const at::Tensor& grad_value, const at::Tensor& grad,
                                                             const std::optional<at::Tensor>& logits,
                                                             const at::Tensor& row_norms, std::string_view weight,
                                                             int64_t num_real, std::string_view norm, double target) {
  const GradPenaltyBackwardCall c =
      prepare_grad_penalty_backward(grad_value, grad, logits, row_norms, weight, num_real, norm, target);
  const double go = grad_value.item<double>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.g.scalar_type(), "grad_penalty_backward_cpu", [&] {
    backward_kernel<scalar_t>(c.a, go, c.g.const_data_ptr<scalar_t>(),
                              c.v.defined() ? c.v.const_data_ptr<scalar_t>() : nullptr,
                              c.n.const_data_ptr<at::opmath_type<scalar_t>>(), c.d_grad.mutable_data_ptr<scalar_t>(),
                              c.v.defined() ? c.d_logits.mutable_data_ptr<scalar_t>() : nullptr);
  });
  return {c.d_grad, c.d_logits};
}

TORCH_LIBRARY_IMPL(fastreg, CPU, m) {
  m.impl("grad_penalty", &grad_penalty_cpu);
  m.impl("_grad_penalty_backward", &grad_penalty_backward_cpu);
}

}  // namespace fastreg
