// CUDA kernels of the fused gradient-norm penalty (docs/design.md section 8.1).
//
// Forward, two launches on the current stream and no host sync:
//   1. grid of (row, chunk) blocks: each block reduces sum g^2 over one chunk of
//      at most kChunkElements of one row (float accumulation: 8 terms per thread,
//      then a tree over warp shuffles) into partial[row, chunk];
//   2. one block: n_i = sqrt(sum_c partial[i, c]), value = (1/B) sum_i w_i h(n_i),
//      both sums in double, so the error does not grow with the row length.
// No atomics, so the result is deterministic.
// Backward, two launches: per-row coefficients (and d/dv), then d/dg_i =
// coef_i * g_i over the same (row, chunk) grid. The weight and norm math comes
// from csrc/common/, shared with the CPU kernels.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>

#include "../common/grad_penalty_args.h"
#include "../common/penalty_backward.h"
#include "../common/sum_of_squares.h"
#include "../ops.h"

namespace fastreg {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kChunkElements = kThreads * 8;

template <typename T>
__device__ __forceinline__ T warp_sum(T x) {
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_down_sync(0xffffffffu, x, offset);
  return x;
}

// Sum over the block; the result is valid in thread 0. Called once per kernel.
template <typename T>
__device__ __forceinline__ T block_sum(T x) {
  __shared__ T warp_totals[32];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  x = warp_sum(x);
  if (lane == 0) warp_totals[warp] = x;
  __syncthreads();
  if (warp == 0) {
    x = lane < static_cast<int>(blockDim.x / 32) ? warp_totals[lane] : T(0);
    x = warp_sum(x);
  }
  return x;
}

// How a row is split into chunks, one block per (row, chunk).
struct RowChunks {
  int64_t chunks;     // chunks per row
  int64_t chunk_len;  // elements per chunk

  static RowChunks of(int64_t rows, int64_t row_len) {
    int64_t chunks = std::max<int64_t>(1, (row_len + kChunkElements - 1) / kChunkElements);
    const int64_t max_blocks = std::numeric_limits<int32_t>::max();
    chunks = std::max<int64_t>(1, std::min(chunks, max_blocks / rows));
    const int64_t chunk_len = std::max<int64_t>(1, (row_len + chunks - 1) / chunks);
    return {chunks, chunk_len};
  }
};

template <typename scalar_t, typename acc_t>
__global__ void partial_sum_of_squares_kernel(const scalar_t* __restrict__ g, int64_t row_len, RowChunks split,
                                              acc_t* __restrict__ partial) {
  const int64_t row = blockIdx.x / split.chunks;
  const int64_t chunk = blockIdx.x % split.chunks;
  const int64_t begin = chunk * split.chunk_len;
  const int64_t end = begin + split.chunk_len < row_len ? begin + split.chunk_len : row_len;
  const scalar_t* x = g + row * row_len;
  acc_t acc = 0;
#pragma unroll 4
  for (int64_t j = begin + threadIdx.x; j < end; j += blockDim.x) {
    const acc_t v = static_cast<acc_t>(x[j]);
    acc += v * v;
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// The chunk sums of a row and the rows' terms are added in double (wide_sum_t), so neither
// the row length nor the batch size grows the float error (common/sum_of_squares.h).
template <typename scalar_t, typename acc_t>
__global__ void finalize_value_kernel(const acc_t* __restrict__ partial, int64_t chunks, const scalar_t* __restrict__ v,
                                      GradPenaltyArgs a, acc_t* __restrict__ norms, scalar_t* __restrict__ value) {
  wide_sum_t acc = 0;
  for (int64_t i = threadIdx.x; i < a.rows; i += blockDim.x) {
    wide_sum_t row_sum = 0;
    for (int64_t c = 0; c < chunks; ++c) row_sum += static_cast<wide_sum_t>(partial[i * chunks + c]);
    const acc_t sum_sq = static_cast<acc_t>(row_sum);
    const acc_t vi = v ? static_cast<acc_t>(v[i]) : acc_t(0);
    norms[i] = fr_sqrt(sum_sq);
    acc += static_cast<wide_sum_t>(weight_and_slope<acc_t>(a.weight, vi, i < a.num_real).w *
                                   norm_penalty<acc_t>(a.norm, sum_sq, static_cast<acc_t>(a.target)));
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) *value = static_cast<scalar_t>(static_cast<acc_t>(acc / static_cast<wide_sum_t>(a.rows)));
}

template <typename scalar_t, typename acc_t>
__global__ void row_coefficients_kernel(const scalar_t* __restrict__ grad_value, const scalar_t* __restrict__ v,
                                        const acc_t* __restrict__ norms, GradPenaltyArgs a, acc_t* __restrict__ coef,
                                        scalar_t* __restrict__ d_v) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= a.rows) return;
  const acc_t scale = static_cast<acc_t>(*grad_value) / static_cast<acc_t>(a.rows);
  const acc_t sum_sq = norms[i] * norms[i];
  const acc_t target = static_cast<acc_t>(a.target);
  const acc_t vi = v ? static_cast<acc_t>(v[i]) : acc_t(0);
  const WeightAndSlope<acc_t> ws = weight_and_slope<acc_t>(a.weight, vi, i < a.num_real);
  coef[i] = grad_row_scale<acc_t>(a.norm, scale, ws.w, sum_sq, target);
  if (d_v) {
    d_v[i] =
        static_cast<scalar_t>(logit_grad<acc_t>(a.weight, scale, ws.dw, norm_penalty<acc_t>(a.norm, sum_sq, target)));
  }
}

template <typename scalar_t, typename acc_t>
__global__ void scale_rows_kernel(const scalar_t* __restrict__ g, const acc_t* __restrict__ coef, int64_t row_len,
                                  RowChunks split, scalar_t* __restrict__ d_g) {
  const int64_t row = blockIdx.x / split.chunks;
  const int64_t chunk = blockIdx.x % split.chunks;
  const int64_t begin = chunk * split.chunk_len;
  const int64_t end = begin + split.chunk_len < row_len ? begin + split.chunk_len : row_len;
  const acc_t c = coef[row];
  const int64_t offset = row * row_len;
#pragma unroll 4
  for (int64_t j = begin + threadIdx.x; j < end; j += blockDim.x) {
    d_g[offset + j] = static_cast<scalar_t>(c * static_cast<acc_t>(g[offset + j]));
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> grad_penalty_cuda(const at::Tensor& grad, const std::optional<at::Tensor>& logits,
                                                     std::string_view weight, int64_t num_real, std::string_view norm,
                                                     double target) {
  const GradPenaltyArgs a = check_grad_penalty_args(grad, logits, weight, num_real, norm, target);
  const c10::cuda::CUDAGuard guard(grad.device());
  const at::Tensor g = grad.contiguous();
  const at::Tensor v = contiguous_logits(logits);
  const RowChunks split = RowChunks::of(a.rows, a.row_len);
  const auto acc_type = accumulate_type(grad.scalar_type());
  at::Tensor partial = at::empty({a.rows * split.chunks}, grad.options().dtype(acc_type));
  at::Tensor norms = at::empty({a.rows}, grad.options().dtype(acc_type));
  at::Tensor value = at::empty({}, grad.options());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "grad_penalty_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    partial_sum_of_squares_kernel<scalar_t, acc_t><<<a.rows * split.chunks, kThreads, 0, stream>>>(
        g.const_data_ptr<scalar_t>(), a.row_len, split, partial.mutable_data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    finalize_value_kernel<scalar_t, acc_t><<<1, kThreads, 0, stream>>>(
        partial.const_data_ptr<acc_t>(), split.chunks, v.defined() ? v.const_data_ptr<scalar_t>() : nullptr, a,
        norms.mutable_data_ptr<acc_t>(), value.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {value, norms};
}

std::tuple<at::Tensor, at::Tensor> grad_penalty_backward_cuda(const at::Tensor& grad_value, const at::Tensor& grad,
                                                              const std::optional<at::Tensor>& logits,
                                                              const at::Tensor& row_norms, std::string_view weight,
                                                              int64_t num_real, std::string_view norm, double target) {
  const c10::cuda::CUDAGuard guard(grad.device());
  const GradPenaltyBackwardCall c =
      prepare_grad_penalty_backward(grad_value, grad, logits, row_norms, weight, num_real, norm, target);
  const auto acc_type = accumulate_type(grad.scalar_type());
  const at::Tensor go = grad_value.to(grad.scalar_type()).contiguous();
  const RowChunks split = RowChunks::of(c.a.rows, c.a.row_len);
  at::Tensor coef = at::empty({c.a.rows}, grad.options().dtype(acc_type));
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.g.scalar_type(), "grad_penalty_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const int coef_blocks = static_cast<int>((c.a.rows + kThreads - 1) / kThreads);
    row_coefficients_kernel<scalar_t, acc_t><<<coef_blocks, kThreads, 0, stream>>>(
        go.const_data_ptr<scalar_t>(), c.v.defined() ? c.v.const_data_ptr<scalar_t>() : nullptr,
        c.n.const_data_ptr<acc_t>(), c.a, coef.mutable_data_ptr<acc_t>(),
        c.v.defined() ? c.d_logits.mutable_data_ptr<scalar_t>() : nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    scale_rows_kernel<scalar_t, acc_t>
        <<<c.a.rows * split.chunks, kThreads, 0, stream>>>(c.g.const_data_ptr<scalar_t>(), coef.const_data_ptr<acc_t>(),
                                                           c.a.row_len, split, c.d_grad.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {c.d_grad, c.d_logits};
}

TORCH_LIBRARY_IMPL(fastreg, CUDA, m) {
  m.impl("grad_penalty", &grad_penalty_cuda);
  m.impl("_grad_penalty_backward", &grad_penalty_backward_cuda);
}

}  // namespace fastreg
