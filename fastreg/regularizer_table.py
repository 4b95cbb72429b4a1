"""Deprecated: the regularizer table is :mod:`fastreg.regularizers.table` (also exported by
:mod:`fastreg.regularizers`). This alias is removed in the next release."""

import warnings

from .regularizers.table import *  # noqa: F401,F403
from .regularizers.table import D_NORMS, FORWARD_MODES, REGULARIZER_FIELDS, REGULARIZERS, Regularizer  # noqa: F401

warnings.warn("fastreg.regularizer_table is deprecated: import fastreg.regularizers (or fastreg.regularizers.table)",
              DeprecationWarning, stacklevel=2)
