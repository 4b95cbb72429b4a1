"""Head-to-head of the finite-difference penalty's design choices, in one process (issue 26).

Roth's D step (benchmarks/bench_steps.py's step functions, batch 64, 32x32) on the DCGAN D with batch norm and
on the attention D, for: the unregularized step, the exact double backward, and the finite-difference
estimate under each ``scheme`` (``central``: two perturbed forwards, the design before issue 26; ``forward``:
one, the other point being the loss's own logits) with and without the early backward (the perturbed
forward's gradient taken at once and its graph freed). Rounds are interleaved (every implementation once per
round), so a change of the machine's load hits all of them alike; the medians' *ratios* are what this
reports. Peak memory (benchmarks/conftest.py ``peak_step_memory``, allocation records) does not depend on
the load.

    python benchmarks/fd_variants.py --rounds 12 --threads 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path[:0] = [os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
import bench_steps as steps  # noqa: E402
import quality  # noqa: E402
from conftest import peak_step_memory  # noqa: E402

from fastreg.regularizers import finite_difference as fd  # noqa: E402


def fd_step(scheme, early, rows=fd.PERTURBED_ROWS_PER_CALL):
    def run(D, opt, x_real, x_fake):
        saved = fd.SCHEME, fd.EARLY_BACKWARD, fd.PERTURBED_ROWS_PER_CALL
        fd.SCHEME, fd.EARLY_BACKWARD, fd.PERTURBED_ROWS_PER_CALL = scheme, early, rows
        try:
            steps.roth_step(D, opt, x_real, x_fake, penalty_grad="finite-difference")
        finally:
            fd.SCHEME, fd.EARLY_BACKWARD, fd.PERTURBED_ROWS_PER_CALL = saved
    return run


IMPLS = {  # name -> (step, attention kernel)
    "ns": (steps.ns_step, "auto"),
    "anchor": (steps.roth_anchor_step, "math"),
    "exact": (steps.roth_step, "math"),
    "fd central": (fd_step("central", False), "auto"),
    "fd central early": (fd_step("central", True, None), "auto"),
    "fd forward": (fd_step("forward", False), "auto"),
    "fd forward early": (fd_step("forward", True, None), "auto"),
    "fd forward early 64": (fd_step("forward", True, 64), "auto"),
    "fd forward early 32": (fd_step("forward", True, 32), "auto"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--impls", default=",".join(IMPLS), help="comma-separated names of IMPLS")
    parser.add_argument("--ds", default="batch,attention", help="comma-separated: batch (DCGAN BN), attention, none")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    before = quality.snapshot()
    print(f"load average {before['loadavg_1min']:.2f} on {before['cpus']} CPUs; calibration "
          f"{before['calibration_s'] * 1e3:.2f} ms; threads {args.threads}")
    for arch in args.ds.split(","):
        cases = {}
        for name, (fn, attention) in ((n, IMPLS[n]) for n in args.impls.split(",")):
            D, opt = steps.make_d("cpu", arch, attention)
            x_real, x_fake = steps.batches("cpu")
            for _ in range(2):
                fn(D, opt, x_real, x_fake)
            peak = peak_step_memory(lambda f=fn, a=(D, opt, x_real, x_fake): f(*a), "cpu") / 2 ** 20
            cases[name] = (fn, D, opt, x_real, x_fake, peak, [])
        for _ in range(args.rounds):
            for fn, D, opt, x_real, x_fake, _, times in cases.values():
                start = time.perf_counter()
                fn(D, opt, x_real, x_fake)
                times.append(time.perf_counter() - start)
        exact = statistics.median(cases["exact"][6])
        exact_peak = cases["exact"][5]
        print(f"\nD {arch}: {args.rounds} interleaved rounds, medians")
        print(f"{'impl':20s} {'ms':>8s} {'/exact':>7s} {'IQR/med':>8s} {'peak MB':>8s} {'/exact':>7s}")
        for name, (*_, peak, times) in cases.items():
            med = statistics.median(times)
            q = statistics.quantiles(times, n=4)
            print(f"{name:20s} {med * 1e3:8.1f} {med / exact:7.2f} {(q[2] - q[0]) / med:8.2f} {peak:8.1f} "
                  f"{peak / exact_peak:7.2f}")
    after = quality.snapshot()
    print(f"\nload average after {after['loadavg_1min']:.2f}; calibration {after['calibration_s'] * 1e3:.2f} ms "
          "(timings taken under this load: ratios only)")


if __name__ == "__main__":
    main()
