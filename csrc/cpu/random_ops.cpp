// CPU kernels of the random ops (docs/design.md sections 8.2 and 8.3).
//
//   gaussian_noise:     out_e = x_e + s_row(e) xi_e,       xi_e ~ N(0, 1)
//   random_interpolate: out_e = eps_i x_real_e + (1 - eps_i) x_fake_e,  eps_i ~ U[0, 1), i = row(e)
//
// Random numbers: Philox4x32-10 keyed by a fresh 64-bit draw from the CPU
// generator per call (under its mutex), so the same torch.manual_seed gives
// the same output and every call gets new numbers. Element e (flat index into
// x in row-major order) takes normal e mod K of Philox block e div K (K = 4
// normals per block for float/half types, 2 for double; see
// common/random_variates.h); eps_i takes block i. Values therefore depend only
// on (key, e), never on how the elements are split across threads.
//
// Speed: kLanes Philox blocks at a time in SIMD lanes (philox_lanes.h: AVX-512
// or AVX2 code chosen at run time, no -march flags), then the Box–Muller
// transform as a loop over lanes that GCC vectorizes (needs -fno-math-errno,
// see setup.py), four normals per Philox block; at::parallel_for splits the
// tiles of kLanes blocks across threads.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Generator.h>
#include <torch/library.h>

#include <algorithm>
#include <mutex>

#include "../common/philox.h"
#include "../common/random_ops_args.h"
#include "../common/random_variates.h"
#include "../ops.h"
#include "philox_lanes.h"

namespace fastreg {
namespace {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FASTREG_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FASTREG_CPU_CLONES
#endif

using cpu::kLanes;
using cpu::LaneWords;

// Elements per parallel task: keeps small tensors on one thread.
constexpr int64_t kGrainElements = 1 << 15;

// The call's Philox key: one 64-bit draw from the CPU generator, under its mutex.
PhiloxStream draw_cpu_stream(const std::optional<at::Generator>& generator) {
  auto* gen = at::get_generator_or_default<at::CPUGeneratorImpl>(generator, at::detail::getDefaultCPUGenerator());
  std::lock_guard<std::mutex> lock(gen->mutex_);
  return {gen->random64(), 0};
}

// Box–Muller on the words of kLanes blocks: z[4 l + j] is normal j of block l.
// The pairs are computed lane-wise (one vectorized pass), then interleaved.
__attribute__((always_inline)) inline void normals_of_lanes(const LaneWords& w, float* __restrict__ z) {
  alignas(64) float z0[kLanes], z1[kLanes], z2[kLanes], z3[kLanes];
  // Keep this a loop (not 32 unrolled copies) so that GCC vectorizes it.
#pragma GCC unroll 1
  for (int l = 0; l < kLanes; ++l) {
    NormalsOfBlock<float>::pair(w.w0[l], w.w1[l], z0[l], z1[l]);
    NormalsOfBlock<float>::pair(w.w2[l], w.w3[l], z2[l], z3[l]);
  }
  for (int l = 0; l < kLanes; ++l) {
    z[4 * l + 0] = z0[l];
    z[4 * l + 1] = z1[l];
    z[4 * l + 2] = z2[l];
    z[4 * l + 3] = z3[l];
  }
}

// z[2 l + j] is normal j of block l.
__attribute__((always_inline)) inline void normals_of_lanes(const LaneWords& w, double* __restrict__ z) {
#pragma GCC unroll 1
  for (int l = 0; l < kLanes; ++l) NormalsOfBlock<double>::fill({w.w0[l], w.w1[l], w.w2[l], w.w3[l]}, z + 2 * l);
}

// Normals of blocks first_block .. first_block + kLanes - 1, one version per
// instruction set; pick_fill_normals chooses at run time. All three give the
// same bits (-ffp-contract=off keeps FMA contraction out of the AVX-512 code).
template <typename acc_t>
using FillNormalsFn = void (*)(const PhiloxStream&, uint64_t, acc_t*);

template <typename acc_t>
void fill_normals_portable(const PhiloxStream& stream, uint64_t first_block, acc_t* z) {
  LaneWords w;
  cpu::philox_lanes_scalar(stream, first_block, w);
  normals_of_lanes(w, z);
}

#if FASTREG_X86_SIMD
template <typename acc_t>
__attribute__((target("avx512f"))) void fill_normals_avx512(const PhiloxStream& stream, uint64_t first_block,
                                                            acc_t* z) {
  LaneWords w;
  cpu::philox_lanes_avx512(stream, first_block, w);
  normals_of_lanes(w, z);
}

template <typename acc_t>
__attribute__((target("avx2"))) void fill_normals_avx2(const PhiloxStream& stream, uint64_t first_block, acc_t* z) {
  LaneWords w;
  cpu::philox_lanes_avx2(stream, first_block, w);
  normals_of_lanes(w, z);
}
#endif

template <typename acc_t>
FillNormalsFn<acc_t> pick_fill_normals() {
#if FASTREG_X86_SIMD
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return &fill_normals_avx512<acc_t>;
  if (__builtin_cpu_supports("avx2")) return &fill_normals_avx2<acc_t>;
#endif
  return &fill_normals_portable<acc_t>;
}

template <typename acc_t>
void fill_normals(const PhiloxStream& stream, uint64_t first_block, acc_t* z) {
  static const FillNormalsFn<acc_t> fill = pick_fill_normals<acc_t>();
  fill(stream, first_block, z);
}

// out_j = x_j + scale * z_j.
template <typename scalar_t, typename acc_t>
inline __attribute__((always_inline)) void add_scaled_into(const scalar_t* __restrict__ x, const acc_t* __restrict__ z,
                                                           acc_t scale, int64_t len, scalar_t* __restrict__ out) {
  for (int64_t j = 0; j < len; ++j) out[j] = static_cast<scalar_t>(static_cast<acc_t>(x[j]) + scale * z[j]);
}

FASTREG_CPU_CLONES void add_scaled(const float* x, const float* z, float scale, int64_t len, float* out) {
  add_scaled_into<float, float>(x, z, scale, len, out);
}
FASTREG_CPU_CLONES void add_scaled(const double* x, const double* z, double scale, int64_t len, double* out) {
  add_scaled_into<double, double>(x, z, scale, len, out);
}
template <typename scalar_t>
void add_scaled(const scalar_t* x, const float* z, float scale, int64_t len, scalar_t* out) {
  add_scaled_into<scalar_t, float>(x, z, scale, len, out);
}

// out_j = eps * real_j + (1 - eps) * fake_j.
template <typename scalar_t, typename acc_t>
inline __attribute__((always_inline)) void lerp_into(const scalar_t* __restrict__ real,
                                                     const scalar_t* __restrict__ fake, acc_t eps, int64_t len,
                                                     scalar_t* __restrict__ out) {
  const acc_t keep = acc_t(1) - eps;
  for (int64_t j = 0; j < len; ++j) {
    out[j] = static_cast<scalar_t>(eps * static_cast<acc_t>(real[j]) + keep * static_cast<acc_t>(fake[j]));
  }
}

FASTREG_CPU_CLONES void lerp_rows(const float* real, const float* fake, float eps, int64_t len, float* out) {
  lerp_into<float, float>(real, fake, eps, len, out);
}
FASTREG_CPU_CLONES void lerp_rows(const double* real, const double* fake, double eps, int64_t len, double* out) {
  lerp_into<double, double>(real, fake, eps, len, out);
}
template <typename scalar_t>
void lerp_rows(const scalar_t* real, const scalar_t* fake, float eps, int64_t len, scalar_t* out) {
  lerp_into<scalar_t, float>(real, fake, eps, len, out);
}

// Calls fn(row, begin, len) for the pieces of elements [begin, end) that lie
// in one row each (rows of row_len elements).
template <typename Fn>
inline void for_each_row_piece(int64_t begin, int64_t end, int64_t row_len, const Fn& fn) {
  int64_t row = begin / row_len;
  int64_t e = begin;
  while (e < end) {
    const int64_t piece_end = std::min(end, (row + 1) * row_len);
    fn(row, e, piece_end - e);
    e = piece_end;
    ++row;
  }
}

// Per-row noise scale: sigma * sigma_rows[row], or sigma alone.
template <typename acc_t>
struct RowScales {
  const acc_t* sigma_rows;  // nullptr: every row uses sigma
  acc_t sigma;
  int64_t row_len;

  acc_t of(int64_t row) const { return sigma_rows ? sigma * sigma_rows[row] : sigma; }
};

template <typename scalar_t>
void gaussian_noise_kernel(const PhiloxStream& stream, const scalar_t* x, int64_t n,
                           const RowScales<at::opmath_type<scalar_t>>& scales, scalar_t* out) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int64_t kTile = kLanes * NormalsOfBlock<acc_t>::kCount;  // elements per tile of kLanes blocks
  const int64_t tiles = (n + kTile - 1) / kTile;
  const int64_t row_len = scales.sigma_rows ? scales.row_len : std::max<int64_t>(n, 1);
  at::parallel_for(0, tiles, std::max<int64_t>(1, kGrainElements / kTile), [&](int64_t tile_begin, int64_t tile_end) {
    alignas(64) acc_t z[kTile];
    for (int64_t t = tile_begin; t < tile_end; ++t) {
      fill_normals(stream, static_cast<uint64_t>(t) * kLanes, z);
      const int64_t begin = t * kTile;
      const int64_t end = std::min(n, begin + kTile);
      for_each_row_piece(begin, end, row_len, [&](int64_t row, int64_t e, int64_t len) {
        add_scaled(x + e, z + (e - begin), scales.of(row), len, out + e);
      });
    }
  });
}

template <typename scalar_t>
void random_interpolate_kernel(const PhiloxStream& stream, const scalar_t* real, const scalar_t* fake, int64_t rows,
                               int64_t row_len, at::opmath_type<scalar_t>* eps, scalar_t* out) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t i = 0; i < rows; ++i) eps[i] = interpolation_weight<acc_t>(stream, static_cast<uint64_t>(i));
  if (row_len == 0) return;
  at::parallel_for(0, rows * row_len, kGrainElements, [&](int64_t begin, int64_t end) {
    for_each_row_piece(begin, end, row_len, [&](int64_t row, int64_t e, int64_t len) {
      lerp_rows(real + e, fake + e, eps[row], len, out + e);
    });
  });
}

}  // namespace

at::Tensor gaussian_noise_cpu(const at::Tensor& x, const std::optional<at::Tensor>& sigma_rows, double sigma,
                              const std::optional<at::Generator>& generator) {
  const GaussianNoiseCall call = prepare_gaussian_noise(x, sigma_rows, sigma, /*check_values=*/true);
  const PhiloxStream stream = draw_cpu_stream(generator);
  if (call.identity) return call.x.clone(at::MemoryFormat::Contiguous);
  at::Tensor out = call.empty_out();
  const int64_t n = call.x.numel();
  if (n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "gaussian_noise_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t* s = call.per_row() ? call.sigma_rows.const_data_ptr<acc_t>() : nullptr;
    const RowScales<acc_t> scales{s, static_cast<acc_t>(sigma), call.row_len()};
    gaussian_noise_kernel<scalar_t>(stream, call.x.const_data_ptr<scalar_t>(), n, scales,
                                    out.mutable_data_ptr<scalar_t>());
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> random_interpolate_cpu(const at::Tensor& x_real, const at::Tensor& x_fake,
                                                          const std::optional<at::Generator>& generator) {
  check_random_interpolate_args(x_real, x_fake);
  const PhiloxStream stream = draw_cpu_stream(generator);
  const at::Tensor real = x_real.contiguous();
  const at::Tensor fake = x_fake.contiguous();
  const int64_t rows = x_real.size(0);
  at::Tensor out = at::empty(x_real.sizes(), x_real.options().memory_format(at::MemoryFormat::Contiguous));
  at::Tensor eps = at::empty({rows}, x_real.options().dtype(at::toOpMathType(x_real.scalar_type())));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x_real.scalar_type(), "random_interpolate_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    random_interpolate_kernel<scalar_t>(stream, real.const_data_ptr<scalar_t>(), fake.const_data_ptr<scalar_t>(), rows,
                                        real.numel() / rows, eps.mutable_data_ptr<acc_t>(),
                                        out.mutable_data_ptr<scalar_t>());
  });
  return {out, eps};
}

TORCH_LIBRARY_IMPL(fastreg, CPU, m) {
  m.impl("gaussian_noise", &gaussian_noise_cpu);
  m.impl("random_interpolate", &random_interpolate_cpu);
}

}  // namespace fastreg
