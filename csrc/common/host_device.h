// Portability macros so one header serves the C++ CPU kernels and the CUDA kernels.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define FASTREG_HD __host__ __device__ __forceinline__
#else
#define FASTREG_HD inline
#endif

#include <cmath>

namespace fastreg {

FASTREG_HD float fr_exp(float x) { return ::expf(x); }
FASTREG_HD double fr_exp(double x) { return ::exp(x); }
FASTREG_HD float fr_sqrt(float x) { return ::sqrtf(x); }
FASTREG_HD double fr_sqrt(double x) { return ::sqrt(x); }

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
