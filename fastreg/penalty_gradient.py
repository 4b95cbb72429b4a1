"""Deprecated: the finite-difference penalty gradient is :mod:`fastreg.regularizers.finite_difference`.
This alias is removed in the next release."""

import warnings

from .regularizers.finite_difference import *  # noqa: F401,F403
from .regularizers.finite_difference import (compute_dtype, finite_difference_penalty,  # noqa: F401
                                             first_order_input_gradients, keep_graphs_of_compiled_modules,
                                             relative_step)
from .regularizers.penalties import PENALTY_GRADS, check_penalty_grad  # noqa: F401

warnings.warn("fastreg.penalty_gradient is deprecated: import fastreg.regularizers.finite_difference",
              DeprecationWarning, stacklevel=2)
