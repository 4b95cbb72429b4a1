"""A small vision-transformer discriminator whose attention is ``F.scaled_dot_product_attention``.

images ``[N, C, R, R]`` -> patch embedding to a ``(R / patch)^2`` grid of ``width``-channel tokens plus a learned
position embedding -> ``depth`` pre-norm blocks (LayerNorm, multi-head self-attention, LayerNorm, GELU MLP of
4 x width; Vaswani et al. 2017 with the pre-norm order of Xiong et al. 2020) -> LayerNorm, a readout, a linear
layer to one logit.

- ``stem="patch"``: a ``patch x patch`` stride-``patch`` convolution (ViT's patchify, Dosovitskiy et al. 2021,
  "An Image is Worth 16x16 Words"); ``stem="conv"``: log2(patch) 3x3 stride-2 convolutions with GELU, then a 1x1
  convolution (the convolutional stem of Xiao et al. 2021, "Early Convolutions Help Transformers See Better";
  overlapping receptive fields, so the tokens see across patch borders).
- ``pool="mean"``: the mean over the tokens; ``pool="cls"``: a learned class token prepended to the patch tokens,
  whose output is read (ViT; the ViT discriminators of TransGAN, Jiang et al. 2021, and ViTGAN, Lee et al. 2022).

The defaults are the plain ViT (patch stem, mean readout). As a GAN discriminator against DCGAN's G on digits it
does not learn digits (docs/results-penalty-grad.md: Roth collapses to a patch-periodic texture, the same with the
exact and the finite-difference penalty gradient). The trainer's ``--model transformer`` builds
``stem="conv", pool="cls"`` at twice G's width (fastreg.train.build.networks), measured in the same note.

The attention goes through :func:`torch.nn.functional.scaled_dot_product_attention`, so PyTorch picks a fused
kernel (flash or memory-efficient on CUDA, the flash kernel on the CPU). Those kernels have a first-order
backward only: a gradient penalty with ``penalty_grad="exact"`` differentiates D twice and fails with them
("derivative for aten::_scaled_dot_product_flash_attention..._backward is not implemented"), while
``penalty_grad="finite-difference"`` (:mod:`fastreg.regularizers.finite_difference`) trains it.
``attention="math"`` runs the unfused math kernel instead (differentiable twice, slower), pinned with
:func:`torch.nn.attention.sdpa_kernel`.

No layer couples the samples of a batch (layer norm is per token), so the penalties' per-sample terms hold.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from .dcgan import _check_positive, check_resolution

ATTENTION_KERNELS = ("auto", "math")
STEMS = ("patch", "conv")
POOLS = ("mean", "cls")


def _attention_context(attention: str):
    if attention == "auto":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


class _Block(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        n, tokens, width = t.shape
        q, k, v = self.qkv(self.norm1(t)).reshape(n, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v)  # [n, heads, tokens, width / heads]
        t = t + self.proj(attended.transpose(1, 2).reshape(n, tokens, width))
        return t + self.mlp(self.norm2(t))


def _conv_stem(channels: int, width: int, patch: int) -> nn.Sequential:
    """log2(patch) 3x3 stride-2 convolutions (GELU after each; width / 2^k channels, doubling to width), then a
    1x1 convolution: the convolutional stem of Xiao et al. 2021, "Early Convolutions Help Transformers See Better",
    without its batch norm (it would couple the samples of a batch) and with GELU for its ReLU, so that D stays
    smooth (the finite-difference penalty gradient is exact to O(h^2) only on a smooth D)."""
    layers, c, halvings = [], channels, patch.bit_length() - 1  # patch divides a power of two: is one
    for k in range(halvings):
        out = max(width >> (halvings - 1 - k), 1)
        layers += [nn.Conv2d(c, out, 3, 2, 1), nn.GELU()]
        c = out
    return nn.Sequential(*layers, nn.Conv2d(c, width, 1))


class TransformerDiscriminator(nn.Module):
    """images ``[N, channels, resolution, resolution]`` -> logits ``[N]`` (module docstring).

    ``width``: embedding size (a multiple of ``heads``); ``patch``: patch side (divides ``resolution``);
    ``attention``: ``"auto"`` (PyTorch's kernel choice: fused where it can) or ``"math"``.
    """

    def __init__(self, width: int = 64, resolution: int = 32, channels: int = 3, depth: int = 2, heads: int = 4,
                 patch: int = 4, attention: str = "auto", stem: str = "patch", pool: str = "mean"):
        super().__init__()
        _check_positive("TransformerDiscriminator", width=width, channels=channels, depth=depth, heads=heads,
                        patch=patch)
        check_resolution(resolution, "TransformerDiscriminator")
        if width % heads:
            raise ValueError(f"TransformerDiscriminator: width ({width}) must be a multiple of heads ({heads})")
        if resolution % patch:
            raise ValueError(f"TransformerDiscriminator: patch ({patch}) must divide resolution ({resolution})")
        if attention not in ATTENTION_KERNELS:
            raise ValueError(f"TransformerDiscriminator: attention must be one of {ATTENTION_KERNELS}, "
                             f"got {attention!r}")
        if stem not in STEMS:
            raise ValueError(f"TransformerDiscriminator: stem must be one of {STEMS}, got {stem!r}")
        if pool not in POOLS:
            raise ValueError(f"TransformerDiscriminator: pool must be one of {POOLS}, got {pool!r}")
        self.resolution, self.channels, self.attention, self.pool = resolution, channels, attention, pool
        self.embed = nn.Conv2d(channels, width, patch, patch) if stem == "patch" else _conv_stem(channels, width, patch)
        self.position = nn.Parameter(torch.randn(1, (resolution // patch) ** 2, width) * 0.02)
        self.cls = nn.Parameter(torch.zeros(1, 1, width)) if pool == "cls" else None
        self.blocks = nn.ModuleList(_Block(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x).flatten(2).transpose(1, 2) + self.position  # [N, tokens, width]
        if self.cls is not None:
            t = torch.cat([self.cls.expand(x.shape[0], -1, -1), t], dim=1)
        with _attention_context(self.attention):
            for block in self.blocks:
                t = block(t)
        t = self.norm(t)
        return self.head(t[:, 0] if self.cls is not None else t.mean(dim=1)).reshape(x.shape[0])
