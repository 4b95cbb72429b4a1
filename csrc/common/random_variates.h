// Uniform and standard normal variates from the 32-bit words of a Philox block
// (philox.h), shared by the CPU and CUDA kernels so that both compute the same
// numbers from the same words.
//
// Normals use the Box–Muller transform (Box & Muller 1958): for independent
// u ~ U(0, 1] and t ~ U[0, 1),
//
//   z0 = r cos(2 pi t),  z1 = r sin(2 pi t),  r = sqrt(-2 log u)
//
// are independent N(0, 1). One Philox block (4 words) gives two pairs, i.e.
// four float normals, or one pair of double normals (two words per uniform).
//
// The elementary functions are written out here instead of calling libm so
// that GCC can vectorize them on the CPU (glibc's scalar logf/sinf calls block
// vectorization) and so that the CPU and CUDA kernels share them. They are not
// approximations of the kind "fast math" uses: each argument is reduced
// exactly and the reduced function is evaluated with its Taylor series,
// truncated where the remainder is below a tenth of an ulp:
//
//   log(x) = e ln2 + 2 atanh(s),  x = 2^e m,  m in [1/sqrt2, sqrt2),
//            s = (m - 1)/(m + 1), |s| <= 0.1716, atanh(s) = s + s^3/3 + s^5/5 + ...
//            (arranged as in fdlibm's e_log.c),
//   2 pi t = q pi/2 + a,          q = round(4t) mod 4,  |a| <= pi/4,
//            sin a, cos a from their Taylor series, then rotated by q quadrants.
//
// The angle is reduced in integer arithmetic on the raw bits of t, so the
// reduction itself is exact. The C++ test (csrc/tests/test_random_ops_cpu.cpp)
// bounds the error against std::log/std::sin/std::cos: within 2 ulp for float
// and double.
//
// Resolution and tails: the float radius uniform has 2^-32 resolution near 0
// (|z| up to 6.66), the double one 2^-53 (|z| up to 8.57).
#pragma once

#include <cstdint>

#include "host_device.h"
#include "philox.h"

namespace fastreg {

// ---- uniforms ------------------------------------------------------------------------------

// U[0, 1) with 24 bits (every float value k 2^-24 equally likely).
FASTREG_HD_INLINE float uniform_float(uint32_t w) { return static_cast<float>(w >> 8) * 0x1p-24f; }

// U[0, 1) with 53 bits.
FASTREG_HD_INLINE double uniform_double(uint32_t lo, uint32_t hi) {
  const uint64_t w = (static_cast<uint64_t>(hi) << 32) | lo;
  return static_cast<double>(w >> 11) * 0x1p-53;
}

// U(0, 1] for the Box–Muller radius: (k + 1/2) 2^-31 for the top 31 bits k,
// rounded to float (exact for k < 2^24, so the smallest values keep full
// resolution). Never 0, so log is finite.
FASTREG_HD_INLINE float radius_uniform(uint32_t w) {
  return static_cast<float>(static_cast<int32_t>(w >> 1)) * 0x1p-31f + 0x1p-32f;
}

// U(0, 1) for the Box–Muller radius from the top 52 bits of a 64-bit word:
// (k + 1/2) 2^-52, built from the bits of 1.k (exact, no int64 conversion).
FASTREG_HD_INLINE double radius_uniform(uint64_t w) {
  const double one_point_k = double_from_bits(0x3FF0000000000000ull | (w >> 12));
  return (one_point_k - 1.0) + 0x1p-53;
}

// ---- log on positive normal numbers -----------------------------------------------------------

// log(x) for a positive normal float: with f = m - 1 (exact) and
// s = f/(2 + f), log(1 + f) = 2 atanh(s) = f - (f^2/2 - s (f^2/2 + R)),
// R = sum_k 2 s^2k/(2k + 1), the arrangement of fdlibm's e_log.c that keeps
// the rounding error of the small correction terms away from the leading f.
FASTREG_HD_INLINE float log_positive(float x) {
  const uint32_t bits = bits_of(x);
  // e such that m = x 2^-e lies in [1/sqrt2, sqrt2); 0x3f3504f3 = bits of 1/sqrt2.
  const int32_t e = static_cast<int32_t>(bits - 0x3f3504f3u) >> 23;
  const float f = float_from_bits(bits - (static_cast<uint32_t>(e) << 23)) - 1.0f;  // exact (Sterbenz)
  const float s = f / (2.0f + f);  // |s| <= 0.1716
  const float z = s * s;
  const float r = z * (2.0f / 3 + z * (2.0f / 5 + z * (2.0f / 7 + z * (2.0f / 9 + z * (2.0f / 11)))));
  const float half_f2 = 0.5f * f * f;
  // ln2 split so that e * kLn2Hi is exact: 0.693359375 has 9 significant bits.
  constexpr float kLn2Hi = 0.693359375f;
  constexpr float kLn2Lo = -2.12194440e-4f;
  const float ef = static_cast<float>(e);
  return ef * kLn2Hi - ((half_f2 - (s * (half_f2 + r) + ef * kLn2Lo)) - f);
}

// log(x) for a positive normal double, as the float version with more terms.
FASTREG_HD_INLINE double log_positive(double x) {
  const uint64_t bits = bits_of(x);
  // 0x3fe6a09e667f3bcd = bits of 1/sqrt2.
  const int64_t e = static_cast<int64_t>(bits - 0x3fe6a09e667f3bcdull) >> 52;
  const double f = double_from_bits(bits - (static_cast<uint64_t>(e) << 52)) - 1.0;
  const double s = f / (2.0 + f);
  const double z = s * s;
  double r = 2.0 / 21;
  r = 2.0 / 19 + z * r;
  r = 2.0 / 17 + z * r;
  r = 2.0 / 15 + z * r;
  r = 2.0 / 13 + z * r;
  r = 2.0 / 11 + z * r;
  r = 2.0 / 9 + z * r;
  r = 2.0 / 7 + z * r;
  r = 2.0 / 5 + z * r;
  r = 2.0 / 3 + z * r;
  r *= z;
  const double half_f2 = 0.5 * f * f;
  // fdlibm's split of ln2: kLn2Hi has 32 significant bits, so e * kLn2Hi is exact.
  constexpr double kLn2Hi = 6.93147180369123816490e-01;
  constexpr double kLn2Lo = 1.90821492927058770002e-10;
  const double ed = static_cast<double>(e);
  return ed * kLn2Hi - ((half_f2 - (s * (half_f2 + r) + ed * kLn2Lo)) - f);
}

// ---- sin and cos of a fraction of a turn ---------------------------------------------------------

template <typename T>
struct SinCos {
  T sin, cos;
};

// (sin, cos) of q pi/2 + a from (sin a, cos a): rotate by q quadrants.
template <typename T>
FASTREG_HD_INLINE SinCos<T> rotate_quadrants(T sin_a, T cos_a, uint32_t q) {
  const bool swap = (q & 1u) != 0;
  const T sin_mag = swap ? cos_a : sin_a;
  const T cos_mag = swap ? sin_a : cos_a;
  const bool sin_negative = (q & 2u) != 0;          // q = 2, 3
  const bool cos_negative = ((q + 1u) & 2u) != 0;   // q = 1, 2
  return {sin_negative ? -sin_mag : sin_mag, cos_negative ? -cos_mag : cos_mag};
}

// sin and cos of 2 pi t for t = w 2^-32.
FASTREG_HD_INLINE SinCos<float> sincos_turns(uint32_t w) {
  const uint32_t q = (w + 0x20000000u) >> 30;                           // round(4t) mod 4
  const int32_t rest = static_cast<int32_t>(w - (q << 30));             // in [-2^29, 2^29)
  // a = 2 pi rest 2^-32 rounded once (via double), |a| <= pi/4.
  const float a = static_cast<float>(static_cast<double>(rest) * 1.4629180792671596e-9);
  const float a2 = a * a;
  const float sin_a = a + a * a2 * (-1.0f / 6 + a2 * (1.0f / 120 + a2 * (-1.0f / 5040 + a2 * (1.0f / 362880))));
  const float cos_a =
      1.0f + a2 * (-0.5f + a2 * (1.0f / 24 + a2 * (-1.0f / 720 + a2 * (1.0f / 40320 + a2 * (-1.0f / 3628800)))));
  return rotate_quadrants(sin_a, cos_a, q);
}

// sin and cos of 2 pi t for t = w 2^-64.
FASTREG_HD_INLINE SinCos<double> sincos_turns(uint64_t w) {
  const uint64_t q = (w + (1ull << 61)) >> 62;                   // round(4t) mod 4
  const int64_t rest = static_cast<int64_t>(w - (q << 62)) >> 10;  // in [-2^51, 2^51)
  // rest as a double via the bits of 1.5 2^52 + rest (exact for |rest| < 2^51).
  const double rest_d = double_from_bits(0x4338000000000000ull + static_cast<uint64_t>(rest)) - 0x1.8p52;
  const double a = rest_d * 3.4878684980086318e-16;  // 2 pi 2^-54; |a| <= pi/4
  const double a2 = a * a;
  // sin a = a + a^3 (-1/3! + a^2/5! - a^4/7! + ... + a^14/17!)
  double s = 1.0 / 355687428096000.0;  // 1/17!
  s = -1.0 / 1307674368000.0 + a2 * s;  // -1/15!
  s = 1.0 / 6227020800.0 + a2 * s;      // 1/13!
  s = -1.0 / 39916800.0 + a2 * s;
  s = 1.0 / 362880.0 + a2 * s;
  s = -1.0 / 5040.0 + a2 * s;
  s = 1.0 / 120.0 + a2 * s;
  s = -1.0 / 6.0 + a2 * s;
  const double sin_a = a + a * a2 * s;
  // cos a = 1 + a^2 (-1/2! + a^2/4! - ... + a^14/16!)
  double c = 1.0 / 20922789888000.0;  // 1/16!
  c = -1.0 / 87178291200.0 + a2 * c;  // -1/14!
  c = 1.0 / 479001600.0 + a2 * c;
  c = -1.0 / 3628800.0 + a2 * c;
  c = 1.0 / 40320.0 + a2 * c;
  c = -1.0 / 720.0 + a2 * c;
  c = 1.0 / 24.0 + a2 * c;
  c = -0.5 + a2 * c;
  const double cos_a = 1.0 + a2 * c;
  return rotate_quadrants(sin_a, cos_a, static_cast<uint32_t>(q));
}

// ---- normals ------------------------------------------------------------------------------------

// Normals of one Philox block written to z[0 .. kNormalsPerBlock): element j
// of the block's group takes z[j].
template <typename acc_t>
struct NormalsOfBlock;

template <>
struct NormalsOfBlock<float> {
  static constexpr int kCount = 4;
  FASTREG_HD_INLINE static void pair(uint32_t radius_word, uint32_t angle_word, float& z0, float& z1) {
    const float r = fr_sqrt(-2.0f * log_positive(radius_uniform(radius_word)));
    const SinCos<float> sc = sincos_turns(angle_word);
    z0 = r * sc.cos;
    z1 = r * sc.sin;
  }
  FASTREG_HD_INLINE static void fill(const PhiloxWords& w, float* z) {
    pair(w.w0, w.w1, z[0], z[1]);
    pair(w.w2, w.w3, z[2], z[3]);
  }
};

template <>
struct NormalsOfBlock<double> {
  static constexpr int kCount = 2;
  FASTREG_HD_INLINE static void fill(const PhiloxWords& w, double* z) {
    const uint64_t radius_word = (static_cast<uint64_t>(w.w1) << 32) | w.w0;
    const uint64_t angle_word = (static_cast<uint64_t>(w.w3) << 32) | w.w2;
    const double r = fr_sqrt(-2.0 * log_positive(radius_uniform(radius_word)));
    const SinCos<double> sc = sincos_turns(angle_word);
    z[0] = r * sc.cos;
    z[1] = r * sc.sin;
  }
};

// The per-sample uniform eps of random_interpolate: block `row`'s first word(s).
FASTREG_HD_INLINE float row_uniform(const PhiloxWords& w, float*) { return uniform_float(w.w0); }
FASTREG_HD_INLINE double row_uniform(const PhiloxWords& w, double*) { return uniform_double(w.w0, w.w1); }

template <typename acc_t>
FASTREG_HD_INLINE acc_t interpolation_weight(const PhiloxStream& stream, uint64_t row) {
  return row_uniform(philox_block(stream, row), static_cast<acc_t*>(nullptr));
}

}  // namespace fastreg
