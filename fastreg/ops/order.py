"""Program order of the random ops under torch.compile.

``gaussian_noise`` and ``random_interpolate`` consume the generator when they run (the CPU kernels
take one 64-bit draw per call, the CUDA kernels advance the Philox offset), so a compiled function
draws what eager draws only if the calls run in program order. Two calls with independent inputs
have no data dependence, and inductor's scheduler is free to swap them.

1. Both ops are registered as ORDERED effectful ops (``torch.library._register_effectful_op``):
   AOTAutograd threads an effect token through them (``with_effects``), so the traced graph keeps
   their order and no graph pass may reorder, merge or drop them.
2. Inductor turns the token chain into scheduler dependencies, but torch 2.14 records them under
   buffer names where the scheduler looks up operation names, so they are lost
   (pytorch/pytorch#189209). fastreg therefore lowers its two random ops itself, as the same
   fallback kernel, and records the dependency on the previous effectful op under the operation
   name. The lowering is installed when inductor's lowering module is loaded (checked when the
   ops' fake kernels run during tracing, i.e. before any lowering); once torch's own edge works,
   the one recorded here is a duplicate.
"""

from __future__ import annotations

import sys
import warnings

import torch

RANDOM_OPS = ("fastreg::gaussian_noise", "fastreg::random_interpolate")
_LOWERING_MODULE = "torch._inductor.lowering"
_installed = False


def register_effects() -> None:
    """Declare the random ops ORDERED effectful (called once, by fastreg.ops)."""
    from torch._library.effects import EffectType
    for name in RANDOM_OPS:
        torch.library._register_effectful_op(name, EffectType.ORDERED)


def install_inductor_lowerings_if_loaded() -> None:
    """Install the ordered lowerings once inductor's lowering module is imported (cheap otherwise)."""
    if not _installed and _LOWERING_MODULE in sys.modules:
        _install_inductor_lowerings()


def _install_inductor_lowerings() -> None:
    global _installed
    _installed = True
    try:
        from torch._inductor import ir, lowering
        from torch._inductor.virtualized import V
        from torch._library.effects import EffectType
        from torch.utils import _pytree as pytree
    except ImportError as exc:  # a torch without these internals: say so, once
        warnings.warn(f"fastreg: cannot order the random ops under inductor ({exc}); compiled functions may "
                      "draw in another order than eager", stacklevel=2)
        return

    def ordered_fallback(op):
        def lower(*args, **kwargs):
            graph = V.graph
            previous = graph.effectful_ops.get(EffectType.ORDERED)
            first = len(graph.operations)
            result = pytree.tree_map(lambda x: x.wrap_for_lowering() if isinstance(x, ir.IRNode) else x,
                                     ir.FallbackKernel.create(op, *args, **kwargs))
            if previous is not None:
                for new_op in graph.operations[first:]:
                    graph.additional_star_deps[new_op.get_operation_name()].add(previous.get_name())
            return result
        return lower

    for name in RANDOM_OPS:
        op = getattr(torch.ops.fastreg, name.split("::")[1]).default
        if op not in lowering.lowerings:
            lowering.register_lowering(op, type_promotion_kind=None)(ordered_fallback(op))
