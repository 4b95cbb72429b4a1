"""FID, KID and the toy Wasserstein distance against closed forms and brute force."""

import itertools
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from fastreg.metrics import GaussianStats, frechet_distance, gaussian_frechet, kid, wasserstein_distance
from fastreg.metrics.fid import mmd2_unbiased, polynomial_kernel


def random_spd(d, generator):
    a = torch.randn(d, d, generator=generator, dtype=torch.float64)
    return a @ a.T + 0.1 * torch.eye(d, dtype=torch.float64)


def test_frechet_distance_of_diagonal_gaussians():
    m1, m2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    a, b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 0.25])
    # ||m1 - m2||^2 + sum_k (sqrt(a_k) - sqrt(b_k))^2 = 5 + (1 + 1 + 6.25)
    assert gaussian_frechet(m1, torch.diag(a), m2, torch.diag(b)).distance == pytest.approx(13.25, abs=1e-12)


def test_frechet_distance_matches_scipy_sqrtm():
    g = torch.Generator().manual_seed(1)
    for d in (1, 4, 16):
        c1, c2 = random_spd(d, g), random_spd(d, g)
        m1, m2 = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64)
        root = scipy.linalg.sqrtm(c1.numpy() @ c2.numpy()).real
        expected = ((m1 - m2) ** 2).sum().item() + np.trace(c1.numpy() + c2.numpy() - 2 * root)
        assert gaussian_frechet(m1, c1, m2, c2).distance == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_fid_of_a_translated_set_is_the_squared_shift():
    x = torch.randn(500, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    shift = torch.arange(8, dtype=torch.float64) / 4
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(x, x + shift) == pytest.approx((shift ** 2).sum().item(), rel=1e-9)


def test_fid_of_a_set_with_itself_is_zero_on_realistic_features():
    """128 correlated, non-negative features (like pooled ReLU outputs) with a large mean."""
    g = torch.Generator().manual_seed(12)
    x = (torch.randn(2000, 128, generator=g, dtype=torch.float64) @ torch.randn(128, 128, generator=g,
                                                                                dtype=torch.float64)).relu() + 5
    assert abs(frechet_distance(x, x)) < 1e-6
    assert abs(frechet_distance(x.float().numpy(), x.float().numpy())) < 1e-6  # numpy arrays too


def test_fid_of_large_gaussian_samples_matches_the_closed_form():
    g = torch.Generator().manual_seed(10)
    d, n = 4, 200_000
    m1, m2 = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64)
    c1, c2 = random_spd(d, g), random_spd(d, g)
    x = m1 + torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(c1).T
    y = m2 + torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(c2).T
    root = scipy.linalg.sqrtm(c1.numpy() @ c2.numpy()).real
    closed_form = ((m1 - m2) ** 2).sum().item() + np.trace(c1.numpy() + c2.numpy() - 2 * root)
    assert frechet_distance(x, y) == pytest.approx(closed_form, rel=0.02)
    assert frechet_distance(x, y) == pytest.approx(frechet_distance(y, x), rel=1e-9)  # symmetric


def test_fid_is_symmetric():
    g = torch.Generator().manual_seed(11)
    x = torch.randn(300, 16, generator=g, dtype=torch.float64)
    y = torch.randn(200, 16, generator=g, dtype=torch.float64).exp()
    assert frechet_distance(x, y) == pytest.approx(frechet_distance(y, x), rel=1e-9)


def test_gaussian_stats_streamed_in_batches_equal_the_one_shot_fit():
    x = torch.randn(50, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 3 + 1000
    streamed = GaussianStats()
    for batch in x.split(7):
        streamed.update(batch)
    assert streamed.count == 50
    np.testing.assert_allclose(streamed.mean.numpy(), x.numpy().mean(0), rtol=1e-12)
    np.testing.assert_allclose(streamed.covariance.numpy(), np.cov(x.numpy(), rowvar=False), rtol=1e-8)
    with pytest.raises(ValueError, match="^features: dimension 4"):
        streamed.update(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="^features: needs at least 2 rows"):
        _ = GaussianStats.of(torch.zeros(1, 5)).covariance


def test_imaginary_residue_reports_dropped_negative_eigenvalues():
    """cov_a = I, cov_b = diag(4, -0.09): the product has eigenvalues 4 and -0.09, so sqrtm has an
    imaginary part sqrt(0.09) = 0.3; the FID keeps only the real root 2."""
    eye, cov_b = torch.eye(2, dtype=torch.float64), torch.diag(torch.tensor([4.0, -0.09], dtype=torch.float64))
    result = gaussian_frechet(torch.zeros(2), eye, torch.zeros(2), cov_b)
    assert result.imaginary_residue == pytest.approx(0.3, rel=1e-12)
    assert result.distance == pytest.approx(2 + 3.91 - 2 * 2, rel=1e-12)  # Tr(I) + Tr(cov_b) - 2 * 2
    assert np.imag(np.trace(scipy.linalg.sqrtm(cov_b.numpy()))) == pytest.approx(0.3, rel=1e-9)
    assert gaussian_frechet(torch.zeros(2), eye, torch.ones(2), 2 * eye).imaginary_residue == 0


def test_mmd2_unbiased_equals_the_double_sum():
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(7, 3, generator=g, dtype=torch.float64)

    def k(a, b):
        return (float(a @ b) / 3 + 1) ** 3

    within_x = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(5), 2)) / 20
    within_y = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(7), 2)) / 42
    across = sum(k(a, b) for a in x for b in y) / 35
    assert mmd2_unbiased(x, y) == pytest.approx(within_x + within_y - 2 * across, rel=1e-12)
    assert polynomial_kernel(x, y)[2, 3].item() == pytest.approx(k(x[2], y[3]), rel=1e-12)


def test_kid_estimates_the_population_mmd():
    """x ~ U(0, 1), y = x' + 1/2 in 1-D: k(x, y) = 1 + 3xy + 3x^2y^2 + x^3y^3, so
    MMD^2 = 3 (E x - E y)^2 + 3 (E x^2 - E y^2)^2 + (E x^3 - E y^3)^2 = 3/4 + 27/16 + 1."""
    g = torch.Generator().manual_seed(5)
    x = torch.rand(4000, 1, generator=g, dtype=torch.float64)
    y = torch.rand(4000, 1, generator=g, dtype=torch.float64) + 0.5
    result = kid(x, y, subset_size=4000)
    assert (result.subsets, result.subset_size, result.std) == (1, 4000, 0.0)  # one subset: all rows
    assert result.mean == pytest.approx(3 / 4 + 27 / 16 + 1, rel=0.03)
    same = kid(x, torch.rand(4000, 1, generator=g, dtype=torch.float64), subset_size=4000)
    assert abs(same.mean) < 0.01


def test_kid_subsets_average_the_subset_estimates():
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(30, 2, generator=g, dtype=torch.float64), torch.randn(20, 2, generator=g, dtype=torch.float64)
    result = kid(x, y, subsets=4, subset_size=10, generator=torch.Generator().manual_seed(9))
    replay = torch.Generator().manual_seed(9)
    values = [mmd2_unbiased(x[torch.randperm(30, generator=replay)[:10]], y[torch.randperm(20, generator=replay)[:10]])
              for _ in range(4)]
    assert result.mean == pytest.approx(np.mean(values), rel=1e-12)
    assert result.std == pytest.approx(np.std(values, ddof=1), rel=1e-12)


def test_bad_feature_inputs_are_named():
    with pytest.raises(ValueError, match="^features_a:"):
        frechet_distance(torch.zeros(5), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="^features_b:"):
        frechet_distance(torch.zeros(5, 2), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="^features_b:"):
        kid(torch.zeros(5, 2), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="^features_a:"):
        frechet_distance("not features", torch.zeros(5, 2))


def test_wasserstein_in_one_dimension_pairs_sorted_points():
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(200, 1, generator=g), torch.rand(200, 1, generator=g) * 3
    gaps = (x.double().sort(0).values - y.double().sort(0).values).abs()
    assert wasserstein_distance(x, y, p=1) == pytest.approx(gaps.mean().item(), rel=1e-9)
    assert wasserstein_distance(x, y, p=2) == pytest.approx(gaps.square().mean().sqrt().item(), rel=1e-9)


def test_wasserstein_of_a_translation_is_its_length():
    x = torch.randn(100, 3, generator=torch.Generator().manual_seed(8))
    shift = torch.tensor([0.3, -0.4, 1.2])  # length 1.3
    for p in (1, 2):
        assert wasserstein_distance(x, x + shift, p=p) == pytest.approx(1.3, rel=1e-5)


def test_wasserstein_equals_brute_force_over_permutations():
    g = torch.Generator().manual_seed(9)
    x, y = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g)
    cost = torch.cdist(x.double(), y.double())
    best = min(sum(cost[i, s[i]].item() for i in range(6)) / 6 for s in itertools.permutations(range(6)))
    assert wasserstein_distance(x, y) == pytest.approx(best, rel=1e-12)
    best2 = min(math.sqrt(sum(cost[i, s[i]].item() ** 2 for i in range(6)) / 6)
                for s in itertools.permutations(range(6)))
    assert wasserstein_distance(x, y, p=2) == pytest.approx(best2, rel=1e-12)
    with pytest.raises(ValueError, match="^y:"):
        wasserstein_distance(x, y[:5])
