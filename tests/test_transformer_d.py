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
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TransformerDiscriminator(**kwargs)


def test_the_trainer_builds_it_with_dcgan_g():
    config = TrainConfig(model="transformer", width=16, data="digits", reg="r1", penalty_grad="finite-difference")
    G, D = build.networks(config.validate(), (1, 32, 32))
    assert isinstance(D, TransformerDiscriminator) and type(G).__name__ == "DCGANGenerator"
    assert "transformer width 16" in build.describe_networks(config)
