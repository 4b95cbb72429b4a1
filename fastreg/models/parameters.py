"""Counting and inspecting the parameters and layers of a model."""

from __future__ import annotations

import torch.nn as nn


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """The number of parameter elements of ``module`` (only those requiring grad if ``trainable_only``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def has_batch_norm(module: nn.Module) -> bool:
    """Whether ``module`` holds a batch-norm layer."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())
