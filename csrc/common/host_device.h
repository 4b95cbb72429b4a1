// Portability macros so one header serves the C++ CPU kernels and the CUDA kernels.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define FASTREG_HD __host__ __device__ __forceinline__
#define FASTREG_HD_INLINE __host__ __device__ __forceinline__
#else
#define FASTREG_HD inline
// Always inlined on the host: the CPU kernels call these helpers inside loops
// that GCC must vectorize, and in functions built as AVX2/AVX-512 clones.
#define FASTREG_HD_INLINE inline __attribute__((always_inline))
#endif

#include <cmath>
#include <cstdint>
#include <cstring>

namespace fastreg {

FASTREG_HD float fr_exp(float x) { return ::expf(x); }
FASTREG_HD double fr_exp(double x) { return ::exp(x); }
FASTREG_HD float fr_sqrt(float x) { return ::sqrtf(x); }
FASTREG_HD double fr_sqrt(double x) { return ::sqrt(x); }

// Reinterpret the bits of a float/double as an integer and back (no conversion).
FASTREG_HD_INLINE uint32_t bits_of(float x) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}
FASTREG_HD_INLINE uint64_t bits_of(double x) {
#ifdef __CUDA_ARCH__
  return static_cast<uint64_t>(__double_as_longlong(x));
#else
  uint64_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}
FASTREG_HD_INLINE float float_from_bits(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}
FASTREG_HD_INLINE double double_from_bits(uint64_t u) {
#ifdef __CUDA_ARCH__
  return __longlong_as_double(static_cast<long long>(u));
#else
  double x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}

// Logistic sigmoid, evaluated so that neither branch can overflow.
template <typename T>
FASTREG_HD T sigmoid(T v) {
  if (v >= T(0)) {
    return T(1) / (T(1) + fr_exp(-v));
  }
  const T e = fr_exp(v);
  return e / (T(1) + e);
}

}  // namespace fastreg
