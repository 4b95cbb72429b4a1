// Device kernels of the fused gradient-norm penalty, declared for the
// dispatcher registrations and the C++ test.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <string_view>
#include <tuple>

namespace fastreg {

// Returns (value, row_norms): value = (1/B) sum_i w_i h(n_i) in grad's dtype,
// row_norms = n_i in the accumulation type (saved for the backward).
std::tuple<at::Tensor, at::Tensor> grad_penalty_cpu(const at::Tensor& grad, const std::optional<at::Tensor>& logits,
                                                    std::string_view weight, int64_t num_real, std::string_view norm,
                                                    double target);

// Returns (d_grad, d_logits); d_logits is empty ([0]) when logits is None.
std::tuple<at::Tensor, at::Tensor> grad_penalty_backward_cpu(const at::Tensor& grad_value, const at::Tensor& grad,
                                                             const std::optional<at::Tensor>& logits,
                                                             const at::Tensor& row_norms, std::string_view weight,
                                                             int64_t num_real, std::string_view norm, double target);

}  // namespace fastreg
