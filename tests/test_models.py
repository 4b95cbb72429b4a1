"""fastreg.models: shapes at every resolution, values (tanh range, init statistics, the lens's
identity, a meta-discriminator by hand), and parameter counts against closed forms."""

import math

import pytest
import torch
import torch.nn as nn

from fastreg import models

RES = [8, 16, 32, 64]


def conv(c_in, c_out, k, bias=True):
    return c_in * c_out * k * k + (c_out if bias else 0)


def bn(c):
    return 2 * c


def dcgan_g_count(z, C, R, ch=3):
    k = int(math.log2(R)) - 2
    w = C * 2 ** (k - 1)
    total = conv(z, w, 4, False) + bn(w)
    for _ in range(k - 1):
        total += conv(w, w // 2, 4, False) + bn(w // 2)
        w //= 2
    return total + conv(w, ch, 4)


def dcgan_d_count(C, R, ch=3, batch_norm=False):
    k = int(math.log2(R)) - 2
    total, w = conv(ch, C, 4), C
    for _ in range(k - 1):
        total += conv(w, 2 * w, 4, not batch_norm) + (bn(2 * w) if batch_norm else 0)
        w *= 2
    return total + conv(w, 1, 4)


def resnet32_g_count(z, C, ch=3, ups=3):
    up_block = bn(C) + conv(C, C, 3) + bn(C) + conv(C, C, 3) + conv(C, C, 1)
    return z * 16 * C + 16 * C + ups * up_block + bn(C) + conv(C, ch, 3)


def resnet32_d_count(C, ch=3):
    first = conv(ch, C, 3) + conv(C, C, 3) + conv(ch, C, 1)
    down = 2 * conv(C, C, 3) + conv(C, C, 1)
    plain = 2 * conv(C, C, 3)
    return first + down + 2 * plain + C + 1


def mlp_count(d_in, d_out, hidden=128, depth=2):
    return (d_in + 1) * hidden + (depth - 1) * (hidden + 1) * hidden + (hidden + 1) * d_out


def lens_count(ch=3, width=64, blocks=8):
    return conv(ch, width, 3) + blocks * 2 * conv(width, width, 3) + conv(width, ch, 3)


def test_parameter_counts_of_the_default_models(capsys):
    """The counts are reported (run with -s) and equal closed forms written from the architectures."""
    table = {
        "DCGANGenerator(z=100, C=64, 64x64)": (models.DCGANGenerator(), dcgan_g_count(100, 64, 64)),
        "DCGANDiscriminator(C=64, 64x64)": (models.DCGANDiscriminator(), dcgan_d_count(64, 64)),
        "DCGANDiscriminator(C=64, 64x64, BN)": (models.DCGANDiscriminator(batch_norm=True),
                                                dcgan_d_count(64, 64, batch_norm=True)),
        "ResNetGenerator(z=128, C=128, 32x32)": (models.ResNetGenerator(), resnet32_g_count(128, 128)),
        "ResNetDiscriminator(C=128, 32x32)": (models.ResNetDiscriminator(), resnet32_d_count(128)),
        "MLPGenerator(z=16 -> 2)": (models.MLPGenerator(), mlp_count(16, 2)),
        "MLPDiscriminator(2 ->)": (models.MLPDiscriminator(), mlp_count(2, 1)),
        "Lens(3 ch, width 64, 8 blocks)": (models.Lens(), lens_count()),
        "MetaDiscriminator(1-64-1)": (models.MetaDiscriminator(), 2 * 64 + 65),
    }
    with capsys.disabled():
        print()
        for name, (model, _) in table.items():
            print(f"  {name:40s} {models.count_parameters(model):>12,d}")
    for name, (model, expected) in table.items():
        assert models.count_parameters(model) == expected, name
    # Radford et al.'s 64x64 G: 3,576,704 weights without biases, plus the 3 output biases here
    assert models.count_parameters(models.DCGANGenerator()) == 3_576_707


@pytest.mark.parametrize("resolution", RES)
def test_dcgan_shapes_and_range(resolution):
    G = models.DCGANGenerator(z_dim=8, width=4, resolution=resolution, channels=3)
    D = models.DCGANDiscriminator(width=4, resolution=resolution, channels=3)
    x = G(torch.randn(5, 8))
    assert x.shape == (5, 3, resolution, resolution)
    assert x.abs().max() < 1 and x.std() > 0  # tanh output, not constant
    assert D(x).shape == (5,)
    assert models.count_parameters(G) == dcgan_g_count(8, 4, resolution)
    assert models.count_parameters(D) == dcgan_d_count(4, resolution)


@pytest.mark.parametrize("resolution", RES)
def test_resnet_shapes(resolution):
    G = models.ResNetGenerator(z_dim=8, width=4, resolution=resolution, channels=1)
    D = models.ResNetDiscriminator(width=4, resolution=resolution, channels=1)
    x = G(torch.randn(3, 8))
    assert x.shape == (3, 1, resolution, resolution) and x.abs().max() < 1
    assert D(x).shape == (3,)
    if resolution == 32:
        assert models.count_parameters(G) == resnet32_g_count(8, 4, ch=1)
        assert models.count_parameters(D) == resnet32_d_count(4, ch=1)
    if resolution == 64:  # the 64x64 layout: G widths 8C 8C 4C 2C C, D C 2C 4C 8C 8C then 4x4x8C -> 1
        assert G.linear.out_features == 32 * 16 and G.out.in_channels == 4
        assert D.linear.in_features == 32 * 16


def test_mlp_and_meta_shapes_and_values():
    G, D = models.MLPGenerator(z_dim=4, out_dim=3), models.MLPDiscriminator(in_dim=3)
    assert G(torch.randn(6, 4)).shape == (6, 3) and D(torch.randn(6, 3)).shape == (6,)
    assert sum(isinstance(m, nn.Tanh) for m in D.modules()) == 2
    meta = models.MetaDiscriminator(hidden=2)
    with torch.no_grad():
        meta.net[0].weight.copy_(torch.tensor([[1.0], [-2.0]]))
        meta.net[0].bias.copy_(torch.tensor([0.5, 0.0]))
        meta.net[2].weight.copy_(torch.tensor([[3.0, 1.0]]))
        meta.net[2].bias.fill_(-1.0)
    y = torch.tensor([1.0, -1.0])
    # y=1: hidden (1.5, -2 -> -0.4) -> 4.5 - 0.4 - 1 = 3.1; y=-1: (-0.5 -> -0.1, 2) -> -0.3 + 2 - 1 = 0.7
    torch.testing.assert_close(meta(y), torch.tensor([3.1, 0.7]))
    torch.testing.assert_close(meta(y[:, None]), torch.tensor([3.1, 0.7]))
    F, R = models.make_meta_discriminators()
    assert F is not R and F(torch.zeros(4)).shape == (4,)


def test_lens_is_the_identity_at_init_and_can_learn():
    lens = models.Lens(channels=3, width=8)
    assert sum(isinstance(m, type(lens.blocks[0])) for m in lens.modules()) == 8
    x = torch.randn(2, 3, 16, 16)
    assert (lens(x) - x).abs().max() <= 1e-6
    assert lens(torch.randn(1, 3, 11, 7)).shape == (1, 3, 11, 7)  # fully convolutional
    opt = torch.optim.SGD(lens.parameters(), lr=0.1)
    (lens(x) - 2 * x).square().mean().backward()
    opt.step()
    assert (lens(x) - x).abs().max() > 1e-3


@torch.no_grad()
def test_dcgan_init_statistics():
    G = models.DCGANGenerator(z_dim=100, width=16, resolution=32)
    w = G.net[0].weight  # 100 x 64 x 4 x 4 = 102,400 draws from N(0, 0.02)
    assert abs(float(w.mean())) < 5e-4 and float(w.std()) == pytest.approx(0.02, rel=0.02)
    bn_scale = G.net[1].weight
    assert float(bn_scale.mean()) == pytest.approx(1.0, abs=0.02) and float(G.net[1].bias.abs().max()) == 0
    assert float(G.net[-2].bias.abs().max()) == 0


def test_normalization_in_d_is_a_choice_with_defaults_from_the_regularizers_paper():
    assert not models.has_batch_norm(models.DCGANDiscriminator(width=4, resolution=8))
    D = models.DCGANDiscriminator(width=4, resolution=16, batch_norm=True)
    assert models.has_batch_norm(D) and D.norm == "batch"
    layer = models.DCGANDiscriminator(width=4, resolution=16, norm="layer")
    assert not models.has_batch_norm(layer) and any(isinstance(m, torch.nn.GroupNorm) for m in layer.modules())
    from fastreg.regularizers import in_force  # the defaults are the regularizer rows'; the networks know none

    assert in_force("ns").d_norm == "batch"
    assert in_force("ns", "roth").d_norm == "batch"   # Roth et al.'s DCGAN keeps batch norm
    assert in_force("ns", "r1").d_norm == "none"
    assert in_force("wgan-gp").d_norm == "none"       # Gulrajani et al.: no BN in the critic
    with pytest.raises(ValueError, match="norm must be one of"):
        models.DCGANDiscriminator(width=4, resolution=16, norm="instance")
    with pytest.raises(ValueError, match="contradicts"):
        models.DCGANDiscriminator(width=4, resolution=16, batch_norm=True, norm="layer")


def test_layer_norm_d_is_per_sample():
    """Layer norm normalizes each sample alone: a sample's logit does not depend on its batch."""
    torch.manual_seed(0)
    D = models.DCGANDiscriminator(width=4, resolution=16, norm="layer").double()
    x = torch.randn(6, 3, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(D(x)[:2], D(x[:2]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bad", [4, 12, 128, True])
def test_bad_resolution_and_width_are_value_errors(bad):
    with pytest.raises(ValueError, match="resolution"):
        models.DCGANGenerator(resolution=bad)
    with pytest.raises(ValueError, match="resolution"):
        models.ResNetDiscriminator(resolution=bad)
    with pytest.raises(ValueError, match="width"):
        models.DCGANDiscriminator(width=0)
