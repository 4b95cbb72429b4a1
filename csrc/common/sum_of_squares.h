// The sum of squares s = sum_j x_j^2 of one gradient row, accumulated so that
// its rounding error does not grow with the row length (CPU and CUDA kernels).
//
//   s = sum_b S_b  (in double),   S_b = sum_{j in block b} x_j^2  (in acc_t),
//
// with blocks of at most kSumBlock elements, each summed in kSumLanes
// interleaved lanes that are then combined pairwise. One chain of n float
// additions loses up to about n * 2^-24 of s (16 float lanes over a 3x2048x2048
// row were 1e-2 off); here a float block sum carries at most
// (kSumBlock / kSumLanes + log2 kSumLanes) = 21 roundings of 2^-24, and the
// double sum over blocks adds n * 2^-53, so the relative error stays near
// 1e-7 at any row length, like torch.sum's cascade summation (Higham,
// "Accuracy and Stability of Numerical Algorithms", 2nd ed., section 4.2).
// The CUDA kernel keeps the same contract with its own blocking: float sums
// over chunks of threads and warps, chunks combined in double.
#pragma once

#include "host_device.h"

namespace fastreg {

constexpr int kSumLanes = 32;        // interleaved float lanes (two AVX-512 or four AVX2 registers)
constexpr int64_t kSumBlock = 512;   // elements per block: 16 additions per lane

// The type block sums are added in: double whatever acc_t is.
using wide_sum_t = double;

// sum_j x_j^2 over len <= kSumBlock elements, in acc_t, lanes combined pairwise.
template <typename scalar_t, typename acc_t>
FASTREG_HD_INLINE acc_t block_sum_of_squares(const scalar_t* __restrict__ x, int64_t len) {
  acc_t lanes[kSumLanes] = {};
  int64_t j = 0;
  for (; j + kSumLanes <= len; j += kSumLanes) {
    for (int l = 0; l < kSumLanes; ++l) {
      const acc_t v = static_cast<acc_t>(x[j + l]);
      lanes[l] += v * v;
    }
  }
  for (int l = 0; j < len; ++j, ++l) {
    const acc_t v = static_cast<acc_t>(x[j]);
    lanes[l] += v * v;
  }
  for (int width = kSumLanes / 2; width > 0; width /= 2) {
    for (int l = 0; l < width; ++l) lanes[l] += lanes[l + width];
  }
  return lanes[0];
}

// sum_j x_j^2 over one row of len elements: block sums in acc_t, added in double.
template <typename scalar_t, typename acc_t>
FASTREG_HD_INLINE wide_sum_t row_sum_of_squares_blocked(const scalar_t* __restrict__ x, int64_t len) {
  wide_sum_t total = 0;
  for (int64_t begin = 0; begin < len; begin += kSumBlock) {
    const int64_t n = len - begin < kSumBlock ? len - begin : kSumBlock;
    total += static_cast<wide_sum_t>(block_sum_of_squares<scalar_t, acc_t>(x + begin, n));
  }
  return total;
}

}  // namespace fastreg
