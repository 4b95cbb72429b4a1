// The device entry points of every op (schemas in fastreg.cpp), declared once for the dispatcher
// registrations in cpu/ and cuda/ and for the C++ tests. The CUDA ones exist in builds with CUDA
// kernels only (csrc/cuda/, compiled when nvcc is there or FASTREG_FORCE_CUDA=1).
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <string_view>
#include <tuple>

namespace fastreg {

// --- grad_penalty, _grad_penalty_backward (docs/design.md section 8.1) ------------------------

// Returns (value, row_norms): value = (1/B) sum_i w_i h(n_i) in grad's dtype,
// row_norms = n_i in the accumulation type (saved for the backward).
std::tuple<at::Tensor, at::Tensor> grad_penalty_cpu(const at::Tensor& grad, const std::optional<at::Tensor>& logits,
                                                    std::string_view weight, int64_t num_real, std::string_view norm,
                                                    double target);
std::tuple<at::Tensor, at::Tensor> grad_penalty_cuda(const at::Tensor& grad, const std::optional<at::Tensor>& logits,
                                                     std::string_view weight, int64_t num_real, std::string_view norm,
                                                     double target);

// Returns (d_grad, d_logits) scaled by grad_value; d_logits is empty ([0]) when logits is None.
std::tuple<at::Tensor, at::Tensor> grad_penalty_backward_cpu(const at::Tensor& grad_value, const at::Tensor& grad,
                                                             const std::optional<at::Tensor>& logits,
                                                             const at::Tensor& row_norms, std::string_view weight,
                                                             int64_t num_real, std::string_view norm, double target);
std::tuple<at::Tensor, at::Tensor> grad_penalty_backward_cuda(const at::Tensor& grad_value, const at::Tensor& grad,
                                                              const std::optional<at::Tensor>& logits,
                                                              const at::Tensor& row_norms, std::string_view weight,
                                                              int64_t num_real, std::string_view norm, double target);

// --- gaussian_noise, random_interpolate (docs/design.md sections 8.2, 8.3) --------------------

// x + s_i xi with xi ~ N(0, I) and s_i = sigma * sigma_rows[i] for row i
// (s_i = sigma when sigma_rows is None). Returns a new contiguous tensor.
at::Tensor gaussian_noise_cpu(const at::Tensor& x, const std::optional<at::Tensor>& sigma_rows, double sigma,
                              const std::optional<at::Generator>& generator);
at::Tensor gaussian_noise_cuda(const at::Tensor& x, const std::optional<at::Tensor>& sigma_rows, double sigma,
                               const std::optional<at::Generator>& generator);

// Returns (out, eps): out_i = eps_i x_real_i + (1 - eps_i) x_fake_i with
// eps_i ~ U[0, 1) per row, eps in the accumulation dtype (float32 for
// float16/bfloat16).
std::tuple<at::Tensor, at::Tensor> random_interpolate_cpu(const at::Tensor& x_real, const at::Tensor& x_fake,
                                                          const std::optional<at::Generator>& generator);
std::tuple<at::Tensor, at::Tensor> random_interpolate_cuda(const at::Tensor& x_real, const at::Tensor& x_fake,
                                                           const std::optional<at::Generator>& generator);

}  // namespace fastreg
