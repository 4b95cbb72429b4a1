// The two factors of the penalty's backward, shared by the CPU and CUDA kernels.
//
//   dL/dg_i = c * w_i * (h'(n_i)/n_i) * g_i        dL/dv_i = c * w'_i * h(n_i)        (c = dL/dvalue / B)
//
// A factor that is identically zero makes its term exactly zero, whatever the other factor holds
// (NaN or inf from an extreme logit or gradient entry): h is flat for the one-sided penalty at or
// below its target and for the gp forms at n = 0, and w' vanishes for the weights that do not
// depend on v (one, reverse_kl, pearson). That is the derivative of the formula (and what the
// reference's autograd computes); 0 * inf would otherwise turn a term the value does not depend
// on into NaN. A factor that is merely 0 at this point (h'(n) at n = t, a saturated sigmoid) is
// multiplied as usual, so NaN and inf propagate there.
#pragma once

#include "host_device.h"
#include "norm_penalty.h"
#include "weights.h"

namespace fastreg {

// c * w_i * h'(n_i)/n_i, the factor of g_i in dL/dg_i; s = n_i^2.
template <typename T>
FASTREG_HD T grad_row_scale(NormKind norm, T c, T w, T sum_sq, T target) {
  if (norm_penalty_is_flat(norm, sum_sq, target)) {
    return T(0);
  }
  return c * w * norm_penalty_slope_over_norm(norm, sum_sq, target);
}

// dL/dv_i = c * w'_i * h(n_i).
template <typename T>
FASTREG_HD T logit_grad(WeightKind kind, T c, T dw, T h) {
  return weight_is_constant(kind) ? T(0) : c * dw * h;
}

}  // namespace fastreg
