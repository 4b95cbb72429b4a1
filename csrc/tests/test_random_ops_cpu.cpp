// C++ test of the random ops' CPU building blocks and kernels:
//   - Philox4x32-10 against the known-answer vectors of Random123 and against
//     ATen's own at::Philox4_32 (same counter/key convention);
//   - the AVX-512 / AVX2 lane versions against the scalar one;
//   - log, sin and cos of common/random_variates.h against libm (ulp bounds);
//   - gaussian_noise_cpu / random_interpolate_cpu: reproducible under a seed,
//     independent of the thread count, sigma = 0 returns x, bad sigma rejected.
// Exits non-zero on the first failure count > 0.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/core/PhiloxRNGEngine.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "common/philox.h"
#include "common/random_variates.h"
#include "cpu/philox_lanes.h"
#include "ops.h"

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

std::string hex4(const fastreg::PhiloxWords& w) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%08x %08x %08x %08x", w.w0, w.w1, w.w2, w.w3);
  return buf;
}

// Distance in units in the last place between two finite floats of one sign.
double ulps(float got, double want) {
  const double ulp = std::ldexp(1.0, std::ilogb(static_cast<float>(want)) - 23);
  return std::fabs(static_cast<double>(got) - want) / ulp;
}
double ulps(double got, long double want) {
  const long double ulp = std::ldexp(1.0L, std::ilogb(static_cast<double>(want)) - 52);
  return static_cast<double>(std::fabs(static_cast<long double>(got) - want) / ulp);
}

void test_philox_known_answers() {
  using fastreg::philox4x32_10;
  // Random123's kat_vectors for philox4x32_10 (counter; key -> output).
  check(hex4(philox4x32_10(0, 0, 0, 0, 0, 0)) == "6627e8d5 e169c58d bc57ac4c 9b00dbd8", "philox KAT zeros");
  check(hex4(philox4x32_10(~0u, ~0u, ~0u, ~0u, ~0u, ~0u)) == "408f276d 41c83b0e a20bc7c6 6d5451fd", "philox KAT ones");
  check(hex4(philox4x32_10(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0)) ==
            "d16cfe09 94fdcceb 5001e420 24126ea1",
        "philox KAT pi");
  // ATen's engine: seed = key, subsequence = counter words 2-3, offset = words 0-1.
  const uint64_t seed = 0x0123456789abcdefull;
  bool same = true;
  for (uint64_t group : {0ull, 1ull, 77ull, 0xffffffffull, 0x100000005ull}) {
    for (uint64_t offset : {0ull, 3ull, 0x1234567890ull}) {
      at::Philox4_32 engine(seed, group, offset);
      const fastreg::PhiloxWords w = fastreg::philox_block({seed, offset}, group);
      same = same && engine() == w.w0 && engine() == w.w1 && engine() == w.w2 && engine() == w.w3;
    }
  }
  check(same, "philox_block matches at::Philox4_32 (seed, subsequence=group, offset)");
}

#if FASTREG_X86_SIMD
__attribute__((target("avx512f"))) void lanes_avx512(const fastreg::PhiloxStream& s, uint64_t first,
                                                     fastreg::cpu::LaneWords& w) {
  fastreg::cpu::philox_lanes_avx512(s, first, w);
}
__attribute__((target("avx2"))) void lanes_avx2(const fastreg::PhiloxStream& s, uint64_t first,
                                                fastreg::cpu::LaneWords& w) {
  fastreg::cpu::philox_lanes_avx2(s, first, w);
}

// Box–Muller over many blocks, compiled for one instruction set.
template <typename acc_t>
__attribute__((always_inline)) inline void normals_of_blocks(const fastreg::PhiloxStream& s, int blocks, acc_t* z) {
  constexpr int K = fastreg::NormalsOfBlock<acc_t>::kCount;
#pragma GCC unroll 1
  for (int b = 0; b < blocks; ++b) fastreg::NormalsOfBlock<acc_t>::fill(fastreg::philox_block(s, b), z + K * b);
}
__attribute__((target("avx512f"))) void normals_avx512(const fastreg::PhiloxStream& s, int blocks, float* z) {
  normals_of_blocks(s, blocks, z);
}
__attribute__((target("avx512f"))) void normals_avx512(const fastreg::PhiloxStream& s, int blocks, double* z) {
  normals_of_blocks(s, blocks, z);
}
__attribute__((target("avx2"))) void normals_avx2(const fastreg::PhiloxStream& s, int blocks, float* z) {
  normals_of_blocks(s, blocks, z);
}
__attribute__((target("avx2"))) void normals_avx2(const fastreg::PhiloxStream& s, int blocks, double* z) {
  normals_of_blocks(s, blocks, z);
}
#endif

// The normals must not depend on the instruction set the CPU kernel picks:
// no FMA contraction (-ffp-contract=off) and no libm calls in the transform.
template <typename acc_t>
void test_normals_same_on_every_isa(const char* name) {
#if FASTREG_X86_SIMD
  constexpr int kBlocks = 4096;
  constexpr int K = fastreg::NormalsOfBlock<acc_t>::kCount;
  const fastreg::PhiloxStream s{0x5eed5eed5eed5eedull, 9};
  std::vector<acc_t> base(kBlocks * K), other(kBlocks * K);
  normals_of_blocks(s, kBlocks, base.data());
  if (__builtin_cpu_supports("avx512f")) {
    normals_avx512(s, kBlocks, other.data());
    check(other == base, std::string(name) + " normals: AVX-512 code gives the baseline bits");
  }
  if (__builtin_cpu_supports("avx2")) {
    normals_avx2(s, kBlocks, other.data());
    check(other == base, std::string(name) + " normals: AVX2 code gives the baseline bits");
  }
#endif
}

void test_simd_lanes_match_scalar() {
#if FASTREG_X86_SIMD
  using fastreg::cpu::LaneWords;
  const fastreg::PhiloxStream s{0xfeedfacecafebeefull, 42};
  __builtin_cpu_init();
  for (const char* isa : {"avx512f", "avx2"}) {
    const bool has =
        std::strcmp(isa, "avx512f") == 0 ? __builtin_cpu_supports("avx512f") : __builtin_cpu_supports("avx2");
    if (!has) {
      std::printf("skip %s lanes (CPU lacks it)\n", isa);
      continue;
    }
    bool same = true;
    // Includes batches where the group's low word wraps into word 3.
    for (uint64_t first : {0ull, 96ull, 0xffffffffull - 7, 0x1fffffff0ull, 0x700000000ull}) {
      LaneWords simd, scalar;
      if (std::strcmp(isa, "avx512f") == 0) {
        lanes_avx512(s, first, simd);
      } else {
        lanes_avx2(s, first, simd);
      }
      fastreg::cpu::philox_lanes_scalar(s, first, scalar);
      same = same && std::memcmp(&simd, &scalar, sizeof simd) == 0;
    }
    check(same, std::string(isa) + " Philox lanes match the scalar blocks");
  }
#else
  std::printf("skip SIMD lanes (not x86-64)\n");
#endif
}

void test_log_accuracy() {
  double worst_f = 0, worst_d = 0;
  // Every radius uniform the float path can see, on a stride through all 2^32 words, plus the smallest ones.
  for (uint64_t w = 0; w < (1ull << 32); w += 997) {
    const float u = fastreg::radius_uniform(static_cast<uint32_t>(w));
    worst_f = std::max(worst_f, ulps(fastreg::log_positive(u), std::log(static_cast<double>(u))));
  }
  for (uint32_t w = 0; w < 4096; ++w) {
    const float u = fastreg::radius_uniform(w);
    worst_f = std::max(worst_f, ulps(fastreg::log_positive(u), std::log(static_cast<double>(u))));
  }
  uint64_t state = 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < 2000000; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    const double u = fastreg::radius_uniform(state);
    if (u == 1.0) continue;  // log(1) = 0 exactly, ulp undefined
    worst_d = std::max(worst_d, ulps(fastreg::log_positive(u), std::log(static_cast<long double>(u))));
  }
  check(fastreg::log_positive(1.0f) == 0.0f && fastreg::log_positive(1.0) == 0.0, "log(1) = 0");
  check(worst_f <= 2.0, "float log within 2 ulp of libm (max " + std::to_string(worst_f) + ")");
  check(worst_d <= 2.0, "double log within 2 ulp (max " + std::to_string(worst_d) + ")");
}

// (sin, cos) of q pi/2 + a from the exact sin a, cos a, as a reference.
template <typename T>
std::pair<T, T> rotate(T sin_a, T cos_a, uint64_t q) {
  switch (q & 3) {
    case 0:
      return {sin_a, cos_a};
    case 1:
      return {cos_a, -sin_a};
    case 2:
      return {-sin_a, -cos_a};
    default:
      return {-cos_a, sin_a};
  }
}

// The kernels reduce 2 pi t exactly in integer arithmetic (q quarter turns
// plus a remainder a, |a| <= pi/4); the reference evaluates sin a, cos a of
// the same exact remainder in higher precision, so the bound measures the
// kernels' polynomial and rounding error only.
void test_sincos_accuracy() {
  constexpr long double kTwoPi = 6.283185307179586476925286766559L;
  double worst_f = 0, worst_d = 0;
  for (uint64_t w = 0; w < (1ull << 32); w += 1009) {
    const uint32_t w32 = static_cast<uint32_t>(w);
    const fastreg::SinCos<float> sc = fastreg::sincos_turns(w32);
    const uint32_t q = (w32 + 0x20000000u) >> 30;
    const long double a = kTwoPi * static_cast<int32_t>(w32 - (q << 30)) / 4294967296.0L;
    const auto [s, c] = rotate(static_cast<double>(std::sin(a)), static_cast<double>(std::cos(a)), q);
    if (s != 0) worst_f = std::max(worst_f, ulps(sc.sin, s));
    if (c != 0) worst_f = std::max(worst_f, ulps(sc.cos, c));
  }
  uint64_t state = 0x2545f4914f6cdd1dull;
  for (int i = 0; i < 2000000; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    const fastreg::SinCos<double> sc = fastreg::sincos_turns(state);
    const uint64_t q = (state + (1ull << 61)) >> 62;
    // The kernel keeps the top 54 bits of the turn fraction t = w 2^-64.
    const long double a = kTwoPi * (static_cast<int64_t>(state - (q << 62)) >> 10) / 18014398509481984.0L;  // 2^54
    const auto [s, c] = rotate(std::sin(a), std::cos(a), q);
    if (s != 0) worst_d = std::max(worst_d, ulps(sc.sin, s));
    if (c != 0) worst_d = std::max(worst_d, ulps(sc.cos, c));
  }
  check(worst_f <= 2.0, "float sin/cos of 2 pi t within 2 ulp (max " + std::to_string(worst_f) + ")");
  check(worst_d <= 2.0, "double sin/cos of 2 pi t within 2 ulp (max " + std::to_string(worst_d) + ")");
  const fastreg::SinCos<float> quarter = fastreg::sincos_turns(1u << 30);  // t = 1/4: (1, 0)
  check(quarter.sin == 1.0f && quarter.cos == 0.0f, "sincos at a quarter turn is exactly (1, 0)");
}

at::Tensor noise_with_seed(const at::Tensor& x, double sigma, uint64_t seed) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return fastreg::gaussian_noise_cpu(x, std::nullopt, sigma, gen);
}

void test_ops() {
  const at::Tensor x = at::randn({64, 3, 33, 17});  // 107712 elements: several parallel tasks
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  const at::Tensor one_thread = noise_with_seed(x, 0.5, 7);
  at::set_num_threads(std::max(2, threads));
  const at::Tensor many_threads = noise_with_seed(x, 0.5, 7);
  at::set_num_threads(threads);
  check(at::equal(one_thread, many_threads), "gaussian_noise: same bits with 1 and several threads");
  check(!at::equal(noise_with_seed(x, 0.5, 8), one_thread), "gaussian_noise: another seed gives other noise");
  check(at::equal(noise_with_seed(x, 0.0, 7), x), "gaussian_noise: sigma = 0 returns x exactly");
  const at::Tensor xi = (one_thread - x) / 0.5;
  check(std::fabs(xi.mean().item<double>()) < 4.0 / std::sqrt(static_cast<double>(xi.numel())) &&
            std::fabs(xi.var().item<double>() - 1.0) < 4.0 * std::sqrt(2.0 / xi.numel()),
        "gaussian_noise: noise mean 0 and variance 1 within 4 standard errors");

  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
  auto [out, eps] = fastreg::random_interpolate_cpu(at::ones({5, 2}), at::zeros({5, 2}), gen);
  check(at::equal(out.select(1, 0), eps) && at::equal(out.select(1, 1), eps),
        "random_interpolate: ones/zeros give eps");
  check(eps.min().item<float>() >= 0.0f && eps.max().item<float>() < 1.0f, "random_interpolate: eps in [0, 1)");

  for (double bad : {-0.1, std::nan("")}) {
    bool rejected = false;
    try {
      noise_with_seed(x, bad, 1);
    } catch (const c10::ValueError& e) {
      rejected = std::string(e.what()).find("sigma") != std::string::npos;
    }
    check(rejected, "gaussian_noise: sigma = " + std::to_string(bad) + " rejected, naming sigma");
  }
  const auto handle = c10::Dispatcher::singleton().findSchema({"fastreg::gaussian_noise", ""});
  check(handle.has_value() && handle->hasKernelForDispatchKey(c10::DispatchKey::CPU) &&
            handle->hasTag(at::Tag::nondeterministic_seeded),
        "fastreg::gaussian_noise has a CPU kernel and the nondeterministic_seeded tag");
}

}  // namespace

int main() {
  test_philox_known_answers();
  test_simd_lanes_match_scalar();
  test_normals_same_on_every_isa<float>("float");
  test_normals_same_on_every_isa<double>("double");
  test_log_accuracy();
  test_sincos_accuracy();
  test_ops();
  std::printf("%d failed\n", failures);
  return failures == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
