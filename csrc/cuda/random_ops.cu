// CUDA kernels of the random ops (docs/design.md sections 8.2 and 8.3), one launch
// each on the current stream, no host sync.
//
//   gaussian_noise:     out_e = x_e + s_row(e) xi_e,  element e takes normal
//                       e mod K of Philox block e div K (K = 4, or 2 for double)
//   random_interpolate: out_e = eps_i x_real_e + (1 - eps_i) x_fake_e,
//                       eps_i from Philox block i (i = row of e)
//
// Random numbers: the generator's graph-safe Philox state, taken once per
// launch under its mutex (philox_cuda_state(4): each counter uses one block of
// four 32-bit draws) and unpacked in the kernel, so the launch works inside a
// captured CUDA graph and each replay draws new numbers. The Philox and
// Box–Muller math is common/philox.h and common/random_variates.h, shared with
// the CPU kernels. Grid-stride loops over element groups: values depend on
// (seed, offset, index) only, never on the launch shape.
//
// Memory: each thread loads and stores a group of elements as one aligned
// vector (noise: 16 bytes for float/double, 8 for half types; interpolation:
// 16 bytes) when the pointers allow it, element by element otherwise.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>
#include <ATen/cuda/detail/UnpackRaw.cuh>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <tuple>

#include "../common/philox.h"
#include "../common/random_ops_args.h"
#include "../common/random_variates.h"
#include "../ops.h"

namespace fastreg {
namespace {

constexpr int kThreads = 256;

// N consecutive elements, loaded or stored as one aligned vector.
template <typename scalar_t, int N>
struct alignas(sizeof(scalar_t) * N) Pack {
  scalar_t v[N];
};

template <typename scalar_t, int N>
bool is_aligned_for_pack(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % alignof(Pack<scalar_t, N>) == 0;
}

// The call's Philox state; one per launch. Taken under the generator's mutex.
at::PhiloxCudaState take_philox_state(const std::optional<at::Generator>& generator, const at::Device& device) {
  auto* gen = at::get_generator_or_default<at::CUDAGeneratorImpl>(
      generator, at::cuda::detail::getDefaultCUDAGenerator(device.index()));
  std::lock_guard<std::mutex> lock(gen->mutex_);
  return gen->philox_cuda_state(4);
}

// (seed, offset) of this launch, read on the device (graph-safe).
__device__ __forceinline__ PhiloxStream unpack_stream(const at::PhiloxCudaState& state) {
  const auto seed_and_offset = at::cuda::philox::unpack(state);
  return {std::get<0>(seed_and_offset), std::get<1>(seed_and_offset) / 4};
}

// A per-sample sigma that is negative, NaN or infinite makes its row NaN: the
// values are never read on the host here (that would need a sync).
template <typename acc_t>
__device__ __forceinline__ acc_t checked_row_sigma(acc_t s) {
  return (s >= acc_t(0) && s - s == acc_t(0)) ? s : static_cast<acc_t>(NAN);
}

int grid_size(int64_t work_items) {
  const int64_t max_blocks = static_cast<int64_t>(at::cuda::getCurrentDeviceProperties()->multiProcessorCount) * 8;
  return static_cast<int>(std::max<int64_t>(1, std::min((work_items + kThreads - 1) / kThreads, max_blocks)));
}

template <typename scalar_t, typename acc_t>
__global__ void gaussian_noise_kernel(const scalar_t* __restrict__ x, int64_t n, const acc_t* __restrict__ sigma_rows,
                                      acc_t sigma, int64_t row_len, at::PhiloxCudaState philox, bool vectorized,
                                      scalar_t* __restrict__ out) {
  constexpr int K = NormalsOfBlock<acc_t>::kCount;
  using VecK = Pack<scalar_t, K>;
  const PhiloxStream stream = unpack_stream(philox);
  const int64_t groups = (n + K - 1) / K;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < groups; g += stride) {
    acc_t z[K];
    NormalsOfBlock<acc_t>::fill(philox_block(stream, static_cast<uint64_t>(g)), z);
    const int64_t first = g * K;
    const int count = static_cast<int>(n - first < K ? n - first : K);
    acc_t scale[K];
    if (sigma_rows != nullptr) {
      int64_t row = first / row_len;
      int64_t next_row_start = (row + 1) * row_len;
      for (int j = 0; j < count; ++j) {
        while (first + j >= next_row_start) {
          ++row;
          next_row_start += row_len;
        }
        scale[j] = sigma * checked_row_sigma(sigma_rows[row]);
      }
    } else {
#pragma unroll
      for (int j = 0; j < K; ++j) scale[j] = sigma;
    }
    if (vectorized && count == K) {
      const VecK in = *reinterpret_cast<const VecK*>(x + first);
      VecK result;
#pragma unroll
      for (int j = 0; j < K; ++j) result.v[j] = static_cast<scalar_t>(static_cast<acc_t>(in.v[j]) + scale[j] * z[j]);
      *reinterpret_cast<VecK*>(out + first) = result;
    } else {
      for (int j = 0; j < count; ++j) {
        out[first + j] = static_cast<scalar_t>(static_cast<acc_t>(x[first + j]) + scale[j] * z[j]);
      }
    }
  }
}

template <typename scalar_t, typename acc_t>
__global__ void random_interpolate_kernel(const scalar_t* __restrict__ real, const scalar_t* __restrict__ fake,
                                          int64_t rows, int64_t row_len, at::PhiloxCudaState philox, bool vectorized,
                                          scalar_t* __restrict__ out, acc_t* __restrict__ eps_out) {
  constexpr int V = 16 / sizeof(scalar_t);  // elements per 16-byte vector
  using VecV = Pack<scalar_t, V>;
  const PhiloxStream stream = unpack_stream(philox);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t i = tid; i < rows; i += stride) {
    eps_out[i] = interpolation_weight<acc_t>(stream, static_cast<uint64_t>(i));
  }
  const int64_t n = rows * row_len;
  const int64_t groups = (n + V - 1) / V;
  for (int64_t g = tid; g < groups; g += stride) {
    const int64_t first = g * V;
    const int count = static_cast<int>(n - first < V ? n - first : V);
    // Each thread recomputes the eps of the rows it touches (one Philox block
    // each): cheaper than a second launch or a grid-wide sync.
    int64_t row = first / row_len;
    int64_t next_row_start = (row + 1) * row_len;
    acc_t eps = interpolation_weight<acc_t>(stream, static_cast<uint64_t>(row));
    acc_t w_real[V];
    for (int j = 0; j < count; ++j) {
      while (first + j >= next_row_start) {
        ++row;
        next_row_start += row_len;
        eps = interpolation_weight<acc_t>(stream, static_cast<uint64_t>(row));
      }
      w_real[j] = eps;
    }
    if (vectorized && count == V) {
      const VecV a = *reinterpret_cast<const VecV*>(real + first);
      const VecV b = *reinterpret_cast<const VecV*>(fake + first);
      VecV result;
#pragma unroll
      for (int j = 0; j < V; ++j) {
        result.v[j] = static_cast<scalar_t>(w_real[j] * static_cast<acc_t>(a.v[j]) +
                                            (acc_t(1) - w_real[j]) * static_cast<acc_t>(b.v[j]));
      }
      *reinterpret_cast<VecV*>(out + first) = result;
    } else {
      for (int j = 0; j < count; ++j) {
        out[first + j] = static_cast<scalar_t>(w_real[j] * static_cast<acc_t>(real[first + j]) +
                                               (acc_t(1) - w_real[j]) * static_cast<acc_t>(fake[first + j]));
      }
    }
  }
}

}  // namespace

at::Tensor gaussian_noise_cuda(const at::Tensor& x, const std::optional<at::Tensor>& sigma_rows, double sigma,
                               const std::optional<at::Generator>& generator) {
  const c10::cuda::CUDAGuard guard(x.device());
  // Values of sigma_rows are not read here (a device-to-host copy); the kernel turns invalid rows into NaN.
  const GaussianNoiseCall call = prepare_gaussian_noise(x, sigma_rows, sigma, /*check_values=*/false);
  const at::PhiloxCudaState philox = take_philox_state(generator, x.device());
  if (call.identity) return call.x.clone(at::MemoryFormat::Contiguous);
  at::Tensor out = call.empty_out();
  const at::Tensor& xc = call.x;
  const int64_t n = xc.numel();
  if (n == 0) return out;
  const int64_t row_len = call.row_len();
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "gaussian_noise_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    constexpr int K = NormalsOfBlock<acc_t>::kCount;
    const bool vectorized =
        is_aligned_for_pack<scalar_t, K>(xc.const_data_ptr()) && is_aligned_for_pack<scalar_t, K>(out.const_data_ptr());
    gaussian_noise_kernel<scalar_t, acc_t><<<grid_size((n + K - 1) / K), kThreads, 0, stream>>>(
        xc.const_data_ptr<scalar_t>(), n, call.per_row() ? call.sigma_rows.const_data_ptr<acc_t>() : nullptr,
        static_cast<acc_t>(sigma), row_len, philox, vectorized, out.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> random_interpolate_cuda(const at::Tensor& x_real, const at::Tensor& x_fake,
                                                           const std::optional<at::Generator>& generator) {
  check_random_interpolate_args(x_real, x_fake);
  const c10::cuda::CUDAGuard guard(x_real.device());
  const at::PhiloxCudaState philox = take_philox_state(generator, x_real.device());
  const at::Tensor real = x_real.contiguous();
  const at::Tensor fake = x_fake.contiguous();
  const int64_t rows = x_real.size(0);
  const int64_t row_len = real.numel() / rows;
  at::Tensor out = at::empty(x_real.sizes(), x_real.options().memory_format(at::MemoryFormat::Contiguous));
  at::Tensor eps = at::empty({rows}, x_real.options().dtype(at::toOpMathType(x_real.scalar_type())));
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x_real.scalar_type(), "random_interpolate_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    constexpr int V = 16 / sizeof(scalar_t);
    const bool vectorized = is_aligned_for_pack<scalar_t, V>(real.const_data_ptr()) &&
                            is_aligned_for_pack<scalar_t, V>(fake.const_data_ptr()) &&
                            is_aligned_for_pack<scalar_t, V>(out.const_data_ptr());
    const int64_t work = std::max<int64_t>(rows, (rows * row_len + V - 1) / V);
    random_interpolate_kernel<scalar_t, acc_t><<<grid_size(work), kThreads, 0, stream>>>(
        real.const_data_ptr<scalar_t>(), fake.const_data_ptr<scalar_t>(), rows, row_len, philox, vectorized,
        out.mutable_data_ptr<scalar_t>(), eps.mutable_data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out, eps};
}

TORCH_LIBRARY_IMPL(fastreg, CUDA, m) {
  m.impl("gaussian_noise", &gaussian_noise_cuda);
  m.impl("random_interpolate", &random_interpolate_cuda);
}

}  // namespace fastreg
