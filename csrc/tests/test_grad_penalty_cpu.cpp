// C++ test of the CPU grad_penalty kernel on cases computed by hand, and of
// its registration with the dispatcher. Exits non-zero on the first failure.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "ops.h"

namespace {

int failures = 0;

void expect_near(const char* what, double got, double want, double tol = 1e-12) {
  if (!(std::fabs(got - want) <= tol * std::max(1.0, std::fabs(want)))) {
    std::printf("FAIL %s: got %.17g, want %.17g\n", what, got, want);
    ++failures;
  } else {
    std::printf("ok   %s = %.17g\n", what, got);
  }
}

double at_index(const at::Tensor& t, int64_t i) { return t.reshape(-1)[i].item<double>(); }

}  // namespace

int main() {
  // Rows g_0 = (3, 4) with n = 5 and g_1 = (0, 0) with n = 0.
  const at::Tensor g = at::tensor({3.0, 4.0, 0.0, 0.0}, at::kDouble).reshape({2, 2});
  const at::Tensor v = at::zeros({2}, at::kDouble);  // sigma(0) = 1/2
  const at::Tensor one = at::ones({}, at::kDouble);

  // "one", "sq": (25 + 0) / 2.
  auto [value, norms] = fastreg::grad_penalty_cpu(g, std::nullopt, "one", 0, "sq", 1.0);
  expect_near("one/sq value", value.item<double>(), 12.5);
  expect_near("row norm 0", at_index(norms, 0), 5.0);
  expect_near("row norm 1", at_index(norms, 1), 0.0);
  // d/dg_i = 2 g_i / B = g_i.
  auto [d_g, d_v] = fastreg::grad_penalty_backward_cpu(one, g, std::nullopt, norms, "one", 0, "sq", 1.0);
  expect_near("one/sq d/dg[0,1]", at_index(d_g, 1), 4.0);

  // "gp", target 1: ((5 - 1)^2 + (0 - 1)^2) / 2 = 8.5; d/dg_0 = 2 (5-1)/5 g_0 / 2, d/dg_1 = 0 (n = 0).
  auto [gp_value, gp_norms] = fastreg::grad_penalty_cpu(g, std::nullopt, "one", 0, "gp", 1.0);
  expect_near("one/gp value", gp_value.item<double>(), 8.5);
  auto [gp_dg, gp_dv] = fastreg::grad_penalty_backward_cpu(one, g, std::nullopt, gp_norms, "one", 0, "gp", 1.0);
  expect_near("one/gp d/dg[0,0]", at_index(gp_dg, 0), 0.8 * 3.0);
  expect_near("one/gp d/dg[1,0]", at_index(gp_dg, 2), 0.0);

  // "roth_js", row 0 real, row 1 fake, v = 0: weights (1/2)^2 each -> 0.25 * 25 / 2.
  auto [js_value, js_norms] = fastreg::grad_penalty_cpu(g, v, "roth_js", 1, "sq", 1.0);
  expect_near("roth_js/sq value", js_value.item<double>(), 3.125);
  // d/dv_0 = w'(0) h / B with w' = -2 sigma (1-sigma)^2 = -1/4: -0.25 * 25 / 2.
  auto [js_dg, js_dv] = fastreg::grad_penalty_backward_cpu(one, g, v, js_norms, "roth_js", 1, "sq", 1.0);
  expect_near("roth_js/sq d/dv[0]", at_index(js_dv, 0), -3.125);
  expect_near("roth_js/sq d/dg[0,0]", at_index(js_dg, 0), 0.25 * 3.0);

  // "f:pearson": w = 1/2 -> 0.5 * 25 / 2.
  auto [p_value, p_norms] = fastreg::grad_penalty_cpu(g, v, "f:pearson", 0, "sq", 1.0);
  expect_near("f:pearson/sq value", p_value.item<double>(), 6.25);

  // The schema is registered with a CPU kernel.
  const auto handle = c10::Dispatcher::singleton().findSchema({"fastreg::grad_penalty", ""});
  if (!handle.has_value() || !handle->hasKernelForDispatchKey(c10::DispatchKey::CPU)) {
    std::printf("FAIL fastreg::grad_penalty has no registered CPU kernel\n");
    ++failures;
  }

  // Unknown weight is rejected with a message that names it.
  try {
    fastreg::grad_penalty_cpu(g, v, "f:nope", 0, "sq", 1.0);
    std::printf("FAIL unknown weight was accepted\n");
    ++failures;
  } catch (const c10::Error& e) {
    if (std::string(e.what()).find("weight") == std::string::npos) {
      std::printf("FAIL error does not name the weight: %s\n", e.what());
      ++failures;
    }
  }
  std::printf("%d failed\n", failures);
  return failures == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
