"""fastreg.models.TransformerDiscriminator (issue 18): shapes, kernel choice, argument errors, the trainer's model."""

import pytest
import torch

from fastreg.models import TransformerDiscriminator
from fastreg.train import build
from fastreg.train.config import TrainConfig


def test_one_logit_per_sample_and_per_sample_independence():
    torch.manual_seed(0)
    D = TransformerDiscriminator(width=16, resolution=16, channels=3, heads=2)
    x = torch.randn(5, 3, 16, 16)
    v = D(x)
    assert v.shape == (5,)
    torch.testing.assert_close(D(x[:2]), v[:2], rtol=1e-5, atol=1e-6)  # no batch coupling


@pytest.mark.parametrize("stem,pool", [("patch", "mean"), ("conv", "mean"), ("patch", "cls"), ("conv", "cls")])
def test_each_stem_and_pool_gives_per_sample_logits(stem, pool):
    torch.manual_seed(0)
    D = TransformerDiscriminator(width=16, resolution=16, channels=3, heads=2, stem=stem, pool=pool)
    x = torch.randn(5, 3, 16, 16)
    v = D(x)
    assert v.shape == (5,)
    torch.testing.assert_close(D(x[:2]), v[:2], rtol=1e-5, atol=1e-6)


def test_the_conv_stem_halves_to_the_patch_grid():
    """patch 4: two 3x3 stride-2 convolutions (16 -> 8 -> 4 per side), then 1x1: a 4x4 grid of width channels."""
    D = TransformerDiscriminator(width=16, resolution=16, channels=3, heads=2, stem="conv")
    convs = [m for m in D.embed if isinstance(m, torch.nn.Conv2d)]
    assert [(c.kernel_size, c.stride, c.out_channels) for c in convs] == [((3, 3), (2, 2), 8), ((3, 3), (2, 2), 16),
                                                                          ((1, 1), (1, 1), 16)]
    assert D.embed(torch.zeros(1, 3, 16, 16)).shape == (1, 16, 4, 4)


def test_cls_pool_reads_the_class_token_and_mean_pool_does_not_see_a_token_permutation():
    """pool 'mean' is invariant to permuting the patch tokens (with the position embedding zeroed); 'cls' reads
    one learned token, so the logit depends on the tokens through attention alone."""
    torch.manual_seed(0)
    x = torch.randn(2, 1, 16, 16)
    swapped = x.clone()  # swap the top-left and bottom-right 4x4 patches
    swapped[..., :4, :4], swapped[..., 12:, 12:] = x[..., 12:, 12:], x[..., :4, :4]
    for pool in ("mean", "cls"):
        D = TransformerDiscriminator(width=16, resolution=16, channels=1, heads=2, pool=pool)
        with torch.no_grad():
            D.position.zero_()
        torch.testing.assert_close(D(swapped), D(x), rtol=1e-5, atol=1e-6)  # no position: both permutation-invariant
        with torch.no_grad():
            D.position.normal_()
        assert (D(swapped) - D(x)).abs().max() > 1e-3
    assert TransformerDiscriminator(width=16, resolution=16, channels=1, heads=2, pool="cls").cls.shape == (1, 1, 16)


def test_fused_and_math_attention_give_the_same_logits():
    torch.manual_seed(0)
    D = TransformerDiscriminator(width=16, resolution=16, channels=1, heads=4).double()
    x = torch.randn(3, 1, 16, 16, dtype=torch.float64)
    fused = D(x)
    D.attention = "math"
    torch.testing.assert_close(D(x), fused, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kwargs,message", [
    ({"width": 10, "heads": 4}, "width .10. must be a multiple of heads .4."),
    ({"patch": 3}, "patch .3. must divide resolution .32."),
    ({"attention": "flash"}, "attention must be one of"),
    ({"resolution": 24}, "resolution"),
    ({"stem": "vit"}, "stem must be one of"),
    ({"pool": "max"}, "pool must be one of"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TransformerDiscriminator(**kwargs)


def test_the_trainer_builds_it_with_dcgan_g():
    config = TrainConfig(model="transformer", width=16, data="digits", reg="r1", penalty_grad="finite-difference")
    G, D = build.networks(config.validate(), (1, 32, 32))
    assert isinstance(D, TransformerDiscriminator) and type(G).__name__ == "DCGANGenerator"
    # the recipe that learns digits (docs/results-penalty-grad.md): conv stem, class token, D twice G's width
    assert D.cls is not None and isinstance(D.embed, torch.nn.Sequential) and D.head.in_features == 32
    assert "transformer width 32 (conv stem" in build.describe_networks(config)


@pytest.mark.parametrize("reg", ["roth", "r1"])
def test_the_conv_stem_cls_d_gets_the_finite_difference_gradient(reg):
    """float64: the estimate on the fused kernel against the exact double backward on the math kernel, for the
    conv-stem, class-token D (GELU stem: smooth, so the central difference is O(h^2)); measured 1e-9 or below."""
    from fastreg import regularizers

    torch.manual_seed(0)
    D = TransformerDiscriminator(width=16, resolution=16, channels=1, heads=2, stem="conv", pool="cls",
                                 attention="math").double()
    xr, xf = torch.randn(6, 1, 16, 16, dtype=torch.float64), 0.7 * torch.randn(6, 1, 16, 16, dtype=torch.float64)

    def grad(how):
        D.zero_grad(set_to_none=True)
        if reg == "roth":
            penalty = regularizers.roth_penalty(D, xr, xf, penalty_grad=how).penalty
        else:
            penalty = regularizers.r1_penalty(D, xr, penalty_grad=how).penalty
        penalty.backward()
        return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in D.parameters()])

    exact = grad("exact")
    D.attention = "auto"
    estimate = grad("finite-difference")
    rel = ((estimate - exact).norm() / exact.norm()).item()
    print(f"MEASURED conv-stem cls {reg} rel {rel:.2e}")
    assert exact.norm() > 0 and rel < 1e-7
