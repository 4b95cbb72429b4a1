// Per-row weights w(v) of the gradient-norm penalty and their slopes w'(v).
//
// Sources: Roth, Lucchi, Nowozin, Hofmann 2017, "Stabilizing Training of GANs
// through Regularization" (the weighted gradient-norm regularizer, Omega_JS and
// Omega_f), with the f-divergences of Nowozin et al. 2016 in the logit
// parametrization of docs/design.md section 4:
//
//   w_f(v) = f*''(g_f(v)) * g_f'(v)^2
//
//   div                 w_f(v)            w_f'(v)
//   kl                  e^(v-1)           e^(v-1)
//   reverse_kl          1                 0
//   pearson             1/2               0
//   neyman              e^(-v/2)/2        -e^(-v/2)/4
//   squared_hellinger   2 e^v             2 e^v
//   js, gan             sigma(v)          sigma(v)(1-sigma(v))
//
// Omega_JS (the symmetric form used in the authors' code) weights real rows by
// (1-sigma(v))^2 and fake rows by sigma(v)^2.
//
// This is the only place these formulas exist in C++; the CPU and CUDA kernels
// both include it. Exponentials of large logits overflow to inf on purpose: the
// result must show the overflow, never hide it behind a clamp.
#pragma once

#include "host_device.h"

namespace fastreg {

enum class WeightKind : int {
  kOne = 0,
  kRothJS = 1,
  kKL = 2,
  kReverseKL = 3,
  kPearson = 4,
  kNeyman = 5,
  kSquaredHellinger = 6,
  kJS = 7,
  kGAN = 8,
};

// True when the weight depends on the logit, i.e. the op needs `logits`.
FASTREG_HD bool weight_needs_logits(WeightKind kind) { return kind != WeightKind::kOne; }

// True when w(v) is a constant, so w'(v) is identically 0 (not just 0 at this v).
FASTREG_HD bool weight_is_constant(WeightKind kind) {
  return kind == WeightKind::kOne || kind == WeightKind::kReverseKL || kind == WeightKind::kPearson;
}

template <typename T>
struct WeightAndSlope {
  T w;   // w(v)
  T dw;  // dw/dv
};

// w(v) and w'(v) for one row; `is_real` matters only for kRothJS.
template <typename T>
FASTREG_HD WeightAndSlope<T> weight_and_slope(WeightKind kind, T v, bool is_real) {
  switch (kind) {
    case WeightKind::kOne:
      return {T(1), T(0)};
    case WeightKind::kRothJS: {
      const T s = sigmoid(v);    // sigma(v)
      const T c = sigmoid(-v);   // 1 - sigma(v), computed without cancellation
      if (is_real) {
        return {c * c, T(-2) * s * c * c};
      }
      return {s * s, T(2) * s * s * c};
    }
    case WeightKind::kKL: {
      const T e = fr_exp(v - T(1));
      return {e, e};
    }
    case WeightKind::kReverseKL:
      return {T(1), T(0)};
    case WeightKind::kPearson:
      return {T(0.5), T(0)};
    case WeightKind::kNeyman: {
      const T e = fr_exp(-v / T(2));
      return {T(0.5) * e, T(-0.25) * e};
    }
    case WeightKind::kSquaredHellinger: {
      const T e = T(2) * fr_exp(v);
      return {e, e};
    }
    case WeightKind::kJS:
    case WeightKind::kGAN: {
      const T s = sigmoid(v);
      return {s, s * sigmoid(-v)};
    }
  }
  return {T(0), T(0)};  // unreachable: kinds are validated on the host
}

}  // namespace fastreg
