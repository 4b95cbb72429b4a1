"""The pytorch-fid FID Inception extractor: its plumbing with randomly initialised weights (no network, no weights
file), a local weights file, its name, and fastreg's Fréchet distance against pytorch-fid's own on the same
features."""

import json
import os

import numpy as np
import pytest
import torch

pytest.importorskip("pytorch_fid")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:Matrix is singular")

from pytorch_fid.fid_score import calculate_frechet_distance  # noqa: E402

from fastreg.cli import main  # noqa: E402
from fastreg.metrics.extractors import check_spec, make_extractor  # noqa: E402
from fastreg.metrics.fid import GaussianStats, frechet_distance, stats_frechet  # noqa: E402


@pytest.fixture(scope="module")
def random_inception():
    torch.manual_seed(0)
    state = torch.get_rng_state()
    extractor = make_extractor("pytorch-fid-inception:random")
    assert torch.equal(torch.get_rng_state(), state), "building the network must not move the global RNG"
    return extractor


def test_random_init_network_gives_2048_pool3_features_and_says_so(random_inception):
    assert random_inception.name == "pytorch-fid-inception:random-init"
    grey = torch.rand(3, 1, 16, 16) * 2 - 1
    features = random_inception(grey)
    assert features.shape == (3, 2048) and features.dtype == torch.float64 and torch.isfinite(features).all()
    # grey images are the RGB image with three equal channels; a different image gives different features
    torch.testing.assert_close(features, random_inception(grey.expand(-1, 3, -1, -1)))
    assert not torch.allclose(features[0], features[1])
    with pytest.raises(ValueError, match="^images: pytorch-fid-inception:random-init needs"):
        random_inception(torch.zeros(2, 2, 8, 8))


def test_frechet_distance_equals_pytorch_fids_on_the_same_features():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(400, 24, generator=generator, dtype=torch.float64)
    b = 0.8 * torch.randn(300, 24, generator=generator, dtype=torch.float64) @ torch.eye(24).roll(1, 0).double() + 0.3
    theirs = calculate_frechet_distance(a.mean(0).numpy(), np.cov(a.numpy(), rowvar=False),
                                        b.mean(0).numpy(), np.cov(b.numpy(), rowvar=False))
    assert theirs > 1
    assert frechet_distance(a, b) == pytest.approx(theirs, rel=1e-9)
    assert stats_frechet(GaussianStats.of(a), GaussianStats.of(b)).distance == pytest.approx(theirs, rel=1e-9)


def test_network_features_give_the_same_fid_as_pytorch_fid(random_inception):
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(6, 3, 20, 20, generator=generator) * 2 - 1
    y = (torch.rand(6, 3, 20, 20, generator=generator) * 2 - 1).clamp(-1, 0)
    fx, fy = random_inception(x), random_inception(y)
    theirs = calculate_frechet_distance(fx.mean(0).numpy(), np.cov(fx.numpy(), rowvar=False),
                                        fy.mean(0).numpy(), np.cov(fy.numpy(), rowvar=False))
    assert frechet_distance(fx, fy) == pytest.approx(theirs, rel=1e-6, abs=1e-6) and theirs > 0


def test_a_local_weights_file_is_loaded_and_named(random_inception, tmp_path):
    path = tmp_path / "pt_inception-test.pth"
    state = {k: v for k, v in _fid_inception_state(random_inception).items()}
    torch.save(state, path)
    loaded = make_extractor(f"pytorch-fid-inception:{path}")
    assert loaded.name == "pytorch-fid-inception:pt_inception-test"
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(loaded(x), random_inception(x))
    torch.save({"not": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="does not hold pytorch-fid's FID Inception weights"):
        make_extractor(f"pytorch-fid-inception:{tmp_path / 'bad.pth'}")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_extractor(f"pytorch-fid-inception:{tmp_path / 'missing.pth'}")
    check_spec("pytorch-fid-inception")


def _fid_inception_state(extractor) -> dict:
    """The weights as pytorch-fid's FID file holds them: the Inception3 module's state dict (fc included)."""
    import pytorch_fid.inception as inception

    built = []
    original = inception._inception_v3
    try:
        inception._inception_v3 = lambda *a, **k: built.append(original(*a, **k)) or built[-1]
        inception.load_state_dict_from_url = _raise
        with pytest.raises(_Stop):
            inception.fid_inception_v3()
    finally:
        inception._inception_v3 = original
        inception.load_state_dict_from_url = _ORIGINAL_LOADER
    model = built[-1]
    blocks = [m for block in extractor.model.blocks for m in block]  # the extractor's modules, in order
    names = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", None, "Conv2d_3b_1x1", "Conv2d_4a_3x3", None,
             "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
             "Mixed_7a", "Mixed_7b", "Mixed_7c", None]
    for name, module in zip(names, blocks):
        if name:
            getattr(model, name).load_state_dict(module.state_dict())
    return model.state_dict()


class _Stop(Exception):
    pass


def _raise(*args, **kwargs):
    raise _Stop


import pytorch_fid.inception as _inception  # noqa: E402

_ORIGINAL_LOADER = _inception.load_state_dict_from_url


def test_fid_cli_with_the_pytorch_fid_network(tmp_path, capsys):
    """`fastreg fid` between two image folders under the pytorch-fid network (random weights here), named in the
    output and the JSON."""
    from PIL import Image

    for folder, shade in (("a", 40), ("b", 200)):
        os.makedirs(tmp_path / folder)
        for i in range(6):
            pixels = np.full((16, 16, 3), shade, np.uint8)
            pixels[i:i + 4, :, :] = 255 - shade
            Image.fromarray(pixels).save(tmp_path / folder / f"{i}.png")
    out = tmp_path / "fid.json"
    assert main(["fid", str(tmp_path / "a"), str(tmp_path / "b"), "--extractor", "pytorch-fid-inception:random",
                 "--json", str(out)]) == 0
    result = next(iter(json.loads(out.read_text()).values()))
    assert result["extractor"] == "pytorch-fid-inception:random-init"
    assert result["fid/pytorch-fid-inception:random-init"] > 0
    assert "FID[pytorch-fid-inception:random-init]" in capsys.readouterr().out
