// Host-side parsing and validation of grad_penalty arguments, shared by the
// CPU and CUDA kernels so that both reject bad input with the same messages.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <cmath>

#include <string>
#include <string_view>

#include "norm_penalty.h"
#include "weights.h"

namespace fastreg {

inline WeightKind parse_weight(std::string_view weight) {
  if (weight == "one") return WeightKind::kOne;
  if (weight == "roth_js") return WeightKind::kRothJS;
  if (weight == "f:kl") return WeightKind::kKL;
  if (weight == "f:reverse_kl") return WeightKind::kReverseKL;
  if (weight == "f:pearson") return WeightKind::kPearson;
  if (weight == "f:neyman") return WeightKind::kNeyman;
  if (weight == "f:squared_hellinger") return WeightKind::kSquaredHellinger;
  if (weight == "f:js") return WeightKind::kJS;
  if (weight == "f:gan") return WeightKind::kGAN;
  TORCH_CHECK_VALUE(false, "grad_penalty: unknown weight '", std::string(weight),
                    "'; expected 'one', 'roth_js' or 'f:<div>' with div in kl, reverse_kl, "
                    "pearson, neyman, squared_hellinger, js, gan");
}

inline NormKind parse_norm(std::string_view norm) {
  if (norm == "sq") return NormKind::kSquared;
  if (norm == "gp") return NormKind::kGP;
  if (norm == "gp_one_sided") return NormKind::kGPOneSided;
  TORCH_CHECK_VALUE(false, "grad_penalty: unknown norm '", std::string(norm),
                    "'; expected 'sq', 'gp' or 'gp_one_sided'");
}

struct GradPenaltyArgs {
  WeightKind weight;
  NormKind norm;
  int64_t rows;     // B
  int64_t row_len;  // numel / B
  int64_t num_real;
  double target;
};

// Validates the op's inputs and returns the parsed arguments.
inline GradPenaltyArgs check_grad_penalty_args(const at::Tensor& grad, const std::optional<at::Tensor>& logits,
                                               std::string_view weight, int64_t num_real, std::string_view norm,
                                               double target) {
  GradPenaltyArgs args{parse_weight(weight), parse_norm(norm), 0, 0, num_real, target};
  TORCH_CHECK_VALUE(grad.dim() >= 1, "grad_penalty: grad must have a batch dimension [B, ...], got a 0-d tensor");
  args.rows = grad.size(0);
  TORCH_CHECK_VALUE(args.rows > 0, "grad_penalty: grad has an empty batch (B = 0)");
  args.row_len = grad.numel() / args.rows;  // rows > 0, checked above
  TORCH_CHECK_VALUE(at::isFloatingType(grad.scalar_type()), "grad_penalty: grad must be floating point, got ",
                    grad.scalar_type());
  TORCH_CHECK_VALUE(num_real >= 0 && num_real <= args.rows, "grad_penalty: num_real must lie in [0, B] = [0, ",
                    args.rows, "], got ", num_real);
  TORCH_CHECK_VALUE(std::isfinite(target) && target >= 0,
                    "grad_penalty: target must be a finite float >= 0 (a gradient norm), got ", target);
  if (weight_needs_logits(args.weight)) {
    TORCH_CHECK_VALUE(logits.has_value() && logits->defined(), "grad_penalty: weight '", std::string(weight),
                      "' depends on the logits, but logits is None");
  }
  if (logits.has_value() && logits->defined()) {
    const at::Tensor& v = *logits;
    TORCH_CHECK_VALUE(v.dim() == 1 && v.size(0) == args.rows, "grad_penalty: logits must have shape [B] = [", args.rows,
                      "], got ", v.sizes());
    TORCH_CHECK_VALUE(v.device() == grad.device(), "grad_penalty: logits is on ", v.device(), " but grad is on ",
                      grad.device());
    TORCH_CHECK_VALUE(v.scalar_type() == grad.scalar_type(), "grad_penalty: logits has dtype ", v.scalar_type(),
                      " but grad has dtype ", grad.scalar_type());
  }
  return args;
}

// Accumulation type: float for float/half/bfloat16, double for double.
inline at::ScalarType accumulate_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

// Validates the backward's own inputs (after check_grad_penalty_args): grad_value a one-element tensor and
// row_norms [B] in the accumulation dtype, both on grad's device (a meta or other-device tensor among CPU
// ones would otherwise be read as host memory or select the wrong kernel).
inline void check_grad_penalty_backward_args(const at::Tensor& grad_value, const at::Tensor& grad,
                                             const at::Tensor& row_norms, int64_t rows) {
  TORCH_CHECK_VALUE(grad_value.numel() == 1, "grad_penalty_backward: grad_value must be a scalar, got shape ",
                    grad_value.sizes());
  TORCH_CHECK_VALUE(grad_value.device() == grad.device(), "grad_penalty_backward: grad_value is on ",
                    grad_value.device(), " but grad is on ", grad.device());
  TORCH_CHECK_VALUE(row_norms.dim() == 1 && row_norms.size(0) == rows &&
                        row_norms.scalar_type() == accumulate_type(grad.scalar_type()),
                    "grad_penalty_backward: row_norms must be [B] = [", rows, "] in the accumulation dtype ",
                    accumulate_type(grad.scalar_type()), ", got ", row_norms.sizes(), " ", row_norms.scalar_type());
  TORCH_CHECK_VALUE(row_norms.device() == grad.device(), "grad_penalty_backward: row_norms is on ", row_norms.device(),
                    " but grad is on ", grad.device());
}

// The logits, contiguous, or an undefined tensor when there are none.
inline at::Tensor contiguous_logits(const std::optional<at::Tensor>& logits) {
  return logits.has_value() && logits->defined() ? logits->contiguous() : at::Tensor();
}

// What the backward's host code computes before its kernels, the same on every device: the checked
// arguments, the contiguous inputs and the outputs (d_logits is [0] when there are no logits).
struct GradPenaltyBackwardCall {
  GradPenaltyArgs a;
  at::Tensor g, v, n;  // grad, logits (undefined when None), row_norms; contiguous
  at::Tensor d_grad, d_logits;
};

inline GradPenaltyBackwardCall prepare_grad_penalty_backward(const at::Tensor& grad_value, const at::Tensor& grad,
                                                             const std::optional<at::Tensor>& logits,
                                                             const at::Tensor& row_norms, std::string_view weight,
                                                             int64_t num_real, std::string_view norm, double target) {
  const GradPenaltyArgs a = check_grad_penalty_args(grad, logits, weight, num_real, norm, target);
  check_grad_penalty_backward_args(grad_value, grad, row_norms, a.rows);
  const at::Tensor g = grad.contiguous();
  const at::Tensor v = contiguous_logits(logits);
  return {a,
          g,
          v,
          row_norms.contiguous(),
          at::empty_like(g, at::MemoryFormat::Contiguous),
          v.defined() ? at::empty_like(v) : at::empty({0}, grad.options())};
}

}  // namespace fastreg
