// The function h(n) of the row norm n = ||g_i||_2 that the penalty applies,
// and the factor h'(n)/n that turns d/dn into d/dg_i (since dn/dg_i = g_i/n).
//
//   norm           h(n)                 h'(n)/n
//   sq             n^2                  2
//   gp             (n - t)^2            2 (n - t)/n        (Gulrajani et al. 2017)
//   gp_one_sided   max(0, n - t)^2      2 max(0, n - t)/n
//
// At n = 0 the gradient g_i is the zero vector and n is not differentiable;
// we define the gradient through the norm as zero there (the subgradient that
// torch.linalg.vector_norm also picks), so h'(n)/n is taken as 0 for gp and
// gp_one_sided and stays 2 for sq (where 2*g_i = 0 anyway).
#pragma once

#include "host_device.h"

namespace fastreg {

enum class NormKind : int {
  kSquared = 0,
  kGP = 1,
  kGPOneSided = 2,
};

// h(n) from the squared norm s = n^2 (sq uses s directly, no sqrt round-off).
template <typename T>
FASTREG_HD T norm_penalty(NormKind kind, T sum_sq, T target) {
  if (kind == NormKind::kSquared) {
    return sum_sq;
  }
  T d = fr_sqrt(sum_sq) - target;
  if (kind == NormKind::kGPOneSided && !(d > T(0)) && d == d) {
    d = T(0);  // max(0, n - t), letting NaN through
  }
  return d * d;
}

// True where h is flat in g: the gp forms at n = 0 (the subgradient convention above) and the
// one-sided form at or below its target. There d/dg of anything times h is exactly 0.
template <typename T>
FASTREG_HD bool norm_penalty_is_flat(NormKind kind, T sum_sq, T target) {
  if (kind == NormKind::kSquared) {
    return false;
  }
  return sum_sq == T(0) || (kind == NormKind::kGPOneSided && fr_sqrt(sum_sq) - target <= T(0));
}

// h'(n)/n from the squared norm s = n^2; 0 at n = 0 for the gp forms.
template <typename T>
FASTREG_HD T norm_penalty_slope_over_norm(NormKind kind, T sum_sq, T target) {
  if (kind == NormKind::kSquared) {
    return T(2);
  }
  if (sum_sq == T(0)) {
    return T(0);
  }
  const T n = fr_sqrt(sum_sq);
  T d = n - target;
  if (kind == NormKind::kGPOneSided && !(d > T(0)) && d == d) {
    d = T(0);
  }
  return T(2) * d / n;
}

}  // namespace fastreg
