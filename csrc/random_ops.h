// Device kernels of the random ops (Gaussian instance noise, random
// interpolation), declared for the dispatcher registrations and the C++ test.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace fastreg {

// x + s_i xi with xi ~ N(0, I) and s_i = sigma * sigma_rows[i] for row i
// (s_i = sigma when sigma_rows is None). Returns a new contiguous tensor.
at::Tensor gaussian_noise_cpu(const at::Tensor& x, const std::optional<at::Tensor>& sigma_rows, double sigma,
                              const std::optional<at::Generator>& generator);

// Returns (out, eps): out_i = eps_i x_real_i + (1 - eps_i) x_fake_i with
// eps_i ~ U[0, 1) per row, eps in the accumulation dtype (float32 for
// float16/bfloat16).
std::tuple<at::Tensor, at::Tensor> random_interpolate_cpu(const at::Tensor& x_real, const at::Tensor& x_fake,
                                                          const std::optional<at::Generator>& generator);

}  // namespace fastreg
