import pytest
import torch

from fastreg import data
from fastreg.metrics import mode_coverage


def test_samples_of_the_mixture_cover_every_mode():
    mixture = data.get_dataset("misspecified3d", seed=3)
    result = mode_coverage(mixture.sample(7000), mixture.modes, mixture.sigma)
    assert result.modes_covered == 7
    # The in-plane noise is 2-D: P(|x - mu| <= 3 sigma) = 1 - exp(-4.5).
    assert result.high_quality_fraction == pytest.approx(1 - torch.exp(torch.tensor(-4.5)).item(), abs=0.005)


def test_collapsed_and_bad_samples():
    modes = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    samples = torch.cat([torch.zeros(90, 2), torch.full((10, 2), 5.0)])  # all on mode 0, 10 far from any
    result = mode_coverage(samples, modes, sigma=0.1)
    assert (result.modes_covered, result.high_quality_fraction, result.samples_per_mode) == (1, 0.9, [90, 0, 0])


def test_bad_shape_named():
    with pytest.raises(ValueError, match="samples"):
        mode_coverage(torch.zeros(5, 3), torch.zeros(2, 2), 0.1)
