// Host-side validation of the random ops' arguments (gaussian_noise,
// random_interpolate), shared by the CPU and CUDA kernels so that both reject
// bad input with the same messages, each naming the argument; and the host
// prologue of gaussian_noise both devices share (prepare_gaussian_noise).
// The Python twin of the checks is fastreg/ops/_checks.py.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <optional>

namespace fastreg {

inline bool is_supported_float(at::ScalarType t) {
  return t == at::kDouble || t == at::kFloat || t == at::kHalf || t == at::kBFloat16;
}

inline bool is_valid_sigma(double sigma) { return sigma >= 0.0 && std::isfinite(sigma); }

// Checks x, the scalar sigma and the per-row sigma_rows of gaussian_noise.
// Values of sigma_rows are checked by the CPU kernel only (on CUDA that would
// need a device-to-host copy; the CUDA kernel turns such rows into NaN).
inline void check_gaussian_noise_args(const at::Tensor& x, const std::optional<at::Tensor>& sigma_rows, double sigma) {
  TORCH_CHECK_VALUE(is_supported_float(x.scalar_type()),
                    "gaussian_noise: x must be float64, float32, float16 or bfloat16, got ", x.scalar_type());
  TORCH_CHECK_VALUE(is_valid_sigma(sigma), "gaussian_noise: sigma must be finite and non-negative, got ", sigma);
  if (!sigma_rows.has_value() || !sigma_rows->defined()) return;
  const at::Tensor& s = *sigma_rows;
  TORCH_CHECK_VALUE(x.dim() >= 1,
                    "gaussian_noise: a per-sample sigma needs x with a batch dimension [B, ...], "
                    "got a 0-d x");
  TORCH_CHECK_VALUE(s.dim() == 1 && s.size(0) == x.size(0), "gaussian_noise: sigma must have shape [B] = [", x.size(0),
                    "] (one value per sample of x), got ", s.sizes());
  TORCH_CHECK_VALUE(s.device() == x.device(), "gaussian_noise: sigma is on ", s.device(), " but x is on ", x.device());
  TORCH_CHECK_VALUE(at::isFloatingType(s.scalar_type()), "gaussian_noise: sigma must be floating point, got ",
                    s.scalar_type());
}

// What gaussian_noise's host code computes before it draws from the generator, the same on every device.
struct GaussianNoiseCall {
  at::Tensor x;           // x, contiguous
  at::Tensor sigma_rows;  // per-row sigma in the accumulation dtype, contiguous; undefined for sigma alone
  bool identity;          // sigma = 0 and no sigma_rows: the result is a copy of x (no kernel)

  bool per_row() const { return sigma_rows.defined(); }
  // Elements per row of sigma_rows (all of x for sigma alone); only for a non-empty x.
  int64_t row_len() const { return per_row() ? x.numel() / x.size(0) : x.numel(); }
  at::Tensor empty_out() const { return at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous)); }
};

// Checks the arguments (and, with check_values, every value of sigma_rows: it reads them, so the CPU
// kernel only) and prepares the call. The caller then draws from the generator, even for an identity
// call, so that the generator advances the same way whatever sigma is.
inline GaussianNoiseCall prepare_gaussian_noise(const at::Tensor& x, const std::optional<at::Tensor>& sigma_rows,
                                                double sigma, bool check_values) {
  check_gaussian_noise_args(x, sigma_rows, sigma);
  const bool per_row = sigma_rows.has_value() && sigma_rows->defined();
  at::Tensor s;
  if (per_row) {
    if (check_values) {
      const at::Tensor values = sigma_rows->to(at::kDouble).contiguous();
      const double* v = values.const_data_ptr<double>();
      for (int64_t i = 0; i < values.numel(); ++i) {
        TORCH_CHECK_VALUE(is_valid_sigma(v[i]), "gaussian_noise: sigma must be finite and non-negative, got sigma[", i,
                          "] = ", v[i]);
      }
    }
    s = sigma_rows->to(at::toOpMathType(x.scalar_type())).contiguous();
  }
  return {x.contiguous(), s, !per_row && sigma == 0.0};
}

// Checks that x_fake matches x_real and that there is a non-empty batch.
inline void check_random_interpolate_args(const at::Tensor& x_real, const at::Tensor& x_fake) {
  TORCH_CHECK_VALUE(is_supported_float(x_real.scalar_type()),
                    "random_interpolate: x_real must be float64, float32, float16 or bfloat16, got ",
                    x_real.scalar_type());
  TORCH_CHECK_VALUE(x_real.dim() >= 1,
                    "random_interpolate: x_real must have a batch dimension [B, ...], got a 0-d "
                    "tensor");
  TORCH_CHECK_VALUE(x_real.size(0) > 0, "random_interpolate: x_real has an empty batch (B = 0)");
  TORCH_CHECK_VALUE(x_fake.sizes() == x_real.sizes(), "random_interpolate: x_fake has shape ", x_fake.sizes(),
                    " but x_real has shape ", x_real.sizes());
  TORCH_CHECK_VALUE(x_fake.device() == x_real.device(), "random_interpolate: x_fake is on ", x_fake.device(),
                    " but x_real is on ", x_real.device());
  TORCH_CHECK_VALUE(x_fake.scalar_type() == x_real.scalar_type(), "random_interpolate: x_fake has dtype ",
                    x_fake.scalar_type(), " but x_real has dtype ", x_real.scalar_type());
}

}  // namespace fastreg
