// Operator schemas of the fastreg library: every op is declared here, once.
// Kernels are registered per device in csrc/cpu/ and csrc/cuda/; fake (meta)
// kernels and autograd formulas are registered from Python (fastreg/ops.py).
#include <torch/library.h>

TORCH_LIBRARY(fastreg, m) {
  m.set_python_module("fastreg.ops");
  // Fused weighted gradient-norm penalty (DESIGN.md section 8.1). Returns the
  // scalar penalty and the per-row norms ||grad_i|| saved for the backward.
  m.def(
      "grad_penalty(Tensor grad, Tensor? logits, str weight=\"one\", int num_real=0, str norm=\"sq\", "
      "float target=1.0) -> (Tensor value, Tensor row_norms)");
  // Its backward: (d value/d grad, d value/d logits), scaled by grad_value.
  m.def(
      "grad_penalty_backward(Tensor grad_value, Tensor grad, Tensor? logits, Tensor row_norms, str weight, "
      "int num_real, str norm, float target) -> (Tensor grad_grad, Tensor grad_logits)");
}
