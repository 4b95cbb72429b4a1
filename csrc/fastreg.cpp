// Operator schemas of the fastreg library: every op is declared here, once.
// Kernels are registered per device in csrc/cpu/ and csrc/cuda/; fake (meta)
// kernels and autograd formulas are registered from Python (fastreg/ops/), next to each op's wrapper;
// the device entry points are declared in ops.h.
#include <torch/library.h>

TORCH_LIBRARY(fastreg, m) {
  // Each op's fake kernel and autograd are registered in the Python module named before its schema.
  m.set_python_module("fastreg.ops.grad_penalty");
  // Fused weighted gradient-norm penalty (docs/design.md section 8.1). Returns the
  // scalar penalty and the per-row norms ||grad_i|| saved for the backward.
  m.def(
      "grad_penalty(Tensor grad, Tensor? logits, str weight=\"one\", int num_real=0, str norm=\"sq\", "
      "float target=1.0) -> (Tensor value, Tensor row_norms)");
  // Its backward: (d value/d grad, d value/d logits), scaled by grad_value. Internal (the leading
  // underscore, as torchvision marks its backward ops): autograd calls it, users call grad_penalty.
  m.def(
      "_grad_penalty_backward(Tensor grad_value, Tensor grad, Tensor? logits, Tensor row_norms, str weight, "
      "int num_real, str norm, float target) -> (Tensor grad_grad, Tensor grad_logits)");
  m.set_python_module("fastreg.ops.random_ops");
  // Random ops (docs/design.md sections 8.2, 8.3): in-kernel Philox draws, so they
  // carry the nondeterministic_seeded tag (compilers must neither merge nor
  // recompute them).
  // Gaussian instance noise x + s_i xi, s_i = sigma * sigma_rows[i] (sigma alone when sigma_rows is None).
  m.def("gaussian_noise(Tensor x, Tensor? sigma_rows, float sigma, Generator? generator=None) -> Tensor",
        {at::Tag::nondeterministic_seeded});
  // Per-sample random interpolation eps_i x_real + (1 - eps_i) x_fake; also
  // returns eps (accumulation dtype) so that the backward needs no RNG replay.
  m.def("random_interpolate(Tensor x_real, Tensor x_fake, Generator? generator=None) -> (Tensor out, Tensor eps)",
        {at::Tag::nondeterministic_seeded});
}
