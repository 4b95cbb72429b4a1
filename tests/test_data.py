"""fastreg.data: toy mixtures (closed-form geometry, seeded sampling), digits (values by hand),
and torchvision datasets loaded through the real code from small fake files written here."""

import math
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from fastreg import data
from fastreg.data import toy


# --- toy mixtures ------------------------------------------------------------------------------

def nearest_mode(x, modes):
    d = torch.cdist(x.double(), modes)
    return d.min(dim=1)


def test_available_names():
    assert data.available() == sorted(["ring8", "grid25", "misspecified3d", "digits", "mnist-5k", "mnist",
                                       "fashion-mnist", "cifar10", "celeba", "lsun", "imagefolder", "color-mnist",
                                       "stacked-mnist-5k"])


def test_ring8_geometry_and_sampling():
    ring = data.get_dataset("ring8", seed=3)
    expected = torch.tensor([[2 * math.cos(k * math.pi / 4), 2 * math.sin(k * math.pi / 4)] for k in range(8)],
                            dtype=torch.float64)
    torch.testing.assert_close(ring.modes, expected)
    x = ring.sample(8000)
    assert x.shape == (8000, 2) and x.dtype == torch.float32
    dist, idx = nearest_mode(x, ring.modes)
    assert dist.max() < 6 * 0.02
    counts = torch.bincount(idx, minlength=8)
    assert (counts - 1000).abs().max() < 150  # binomial std ~30
    deviation = x.double() - ring.modes[idx]
    torch.testing.assert_close(deviation.std(dim=0), torch.full((2,), 0.02, dtype=torch.float64), rtol=0.05, atol=0)


def test_toy_sampling_is_seeded_and_endless():
    a, b = data.get_dataset("grid25", seed=1), data.get_dataset("grid25", seed=1)
    first = a.sample(16)
    torch.testing.assert_close(first, b.sample(16))
    assert not torch.equal(first, a.sample(16))                 # fresh draws on every call
    assert not torch.equal(first, data.get_dataset("grid25", seed=2).sample(16))
    stream = a.batches(4)
    assert [next(stream).shape for _ in range(3)] == [(4, 2)] * 3
    state = a.state_dict()
    after = a.sample(5)
    b.load_state_dict(state)
    torch.testing.assert_close(b.sample(5), after)               # resume continues the same stream


def test_grid25_modes():
    grid = data.get_dataset("grid25")
    assert sorted(map(tuple, grid.modes.tolist())) == [(float(i), float(j)) for i in (-4, -2, 0, 2, 4)
                                                        for j in (-4, -2, 0, 2, 4)]
    assert grid.sigma == 0.05
    dist, _ = nearest_mode(grid.sample(2000), grid.modes)
    assert dist.max() < 6 * 0.05


def test_rotation_is_pi_over_4_about_the_axis():
    R = toy.rotation_matrix(torch.tensor([1.0, -1.0, 0.0]), math.pi / 4)
    k = torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64) / math.sqrt(2)
    torch.testing.assert_close(R @ R.T, torch.eye(3, dtype=torch.float64))
    assert float(torch.linalg.det(R)) == pytest.approx(1.0)
    torch.testing.assert_close(R @ k, k)
    u = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64) / math.sqrt(2)  # perpendicular to k
    assert float(u @ (R @ u)) == pytest.approx(math.cos(math.pi / 4))
    torch.testing.assert_close(torch.linalg.cross(u, R @ u), math.sin(math.pi / 4) * k)  # right-handed
    # by hand (Rodrigues): R e_z = cos(pi/4) e_z + sin(pi/4) (k x e_z) = (-1/2, -1/2, cos(pi/4))
    torch.testing.assert_close(R[:, 2], torch.tensor([-0.5, -0.5, math.sqrt(0.5)], dtype=torch.float64))


def test_misspecified3d_is_a_rotated_shifted_planar_ring():
    mix = data.get_dataset("misspecified3d", seed=0)
    shift = torch.ones(3, dtype=torch.float64) / math.sqrt(3)
    R = toy.rotation_matrix(torch.tensor([1.0, -1.0, 0.0]), math.pi / 4)
    normal = R[:, 2]
    assert mix.n_modes == 7 and mix.dim == 3 and mix.sigma == 0.01
    for j in range(7):
        planar = torch.tensor([math.cos(2 * math.pi * j / 7), math.sin(2 * math.pi * j / 7), 0.0], dtype=torch.float64)
        torch.testing.assert_close(mix.modes[j], R @ planar + shift)
    x = mix.sample(5000).double()
    # every sample lies in the rotated plane through the shift (no noise off the plane) ...
    assert float(((x - shift) @ normal).abs().max()) < 1e-6
    # ... near the unit circle, with in-plane noise of variance 2 sigma^2
    dist, idx = nearest_mode(x, mix.modes)
    assert float(((x - mix.modes[idx]) ** 2).sum(dim=1).mean()) == pytest.approx(2 * 0.01 ** 2, rel=0.05)
    assert float((torch.linalg.vector_norm(x - shift, dim=1) - 1).abs().max()) < 0.06


# --- digits ------------------------------------------------------------------------------------

def test_digits_native_values_and_labels():
    from sklearn.datasets import load_digits
    raw = load_digits()
    ds = data.get_dataset("digits")
    assert len(ds) == 1797 and ds.images.shape == (1797, 1, 8, 8) and ds.resolution == 8
    torch.testing.assert_close(ds.images[:, 0], torch.tensor(raw.images / 8.0 - 1.0, dtype=torch.float32))
    assert ds.labels.tolist() == raw.target.tolist()
    image, label = ds[5]
    assert image.shape == (1, 8, 8) and int(label) == int(raw.target[5])
    assert float(ds.images.min()) == -1.0 and float(ds.images.max()) == 1.0


def test_digits_resized_bilinearly():
    from sklearn.datasets import load_digits
    x = torch.tensor(load_digits().images[0] / 8.0 - 1.0)
    ds = data.get_dataset("digits", resolution=16)
    assert ds.images.shape == (1797, 1, 16, 16)
    up = ds.images[0, 0].double()
    # align_corners=False, factor 2: output 0 <- input 0; output 1 <- 0.75 in[0] + 0.25 in[1]; 2 <- 0.25, 0.75
    assert float(up[0, 0]) == pytest.approx(float(x[0, 0]), abs=1e-6)
    w = torch.tensor([0.75, 0.25], dtype=torch.float64)
    assert float(up[1, 1]) == pytest.approx(float(w @ x[0:2, 0:2] @ w), abs=1e-6)
    assert float(up[2, 3]) == pytest.approx(float(w.flip(0) @ x[0:2, 1:3] @ w), abs=1e-6)
    assert ds.images.min() >= -1 and ds.images.max() <= 1
    assert data.get_dataset("digits", resolution=32).images.shape == (1797, 1, 32, 32)


def test_get_dataset_errors_name_the_argument():
    with pytest.raises(ValueError, match="dataset name 'imagenet'"):
        data.get_dataset("imagenet")
    with pytest.raises(ValueError, match="resolution"):
        data.get_dataset("ring8", resolution=16)
    with pytest.raises(ValueError, match="'colour'"):
        data.get_dataset("digits", colour=True)
    with pytest.raises(ValueError, match="resolution"):
        data.get_dataset("digits", resolution=0)
    with pytest.raises(ValueError, match="'seed'"):
        data.get_dataset("mnist", seed=1)


# --- torchvision datasets from fake files ------------------------------------------------------

def write_idx_images(path, images):
    n, h, w = images.shape
    path.write_bytes(struct.pack(">IIII", 0x00000803, n, h, w) + images.astype(np.uint8).tobytes())


def write_idx_labels(path, labels):
    path.write_bytes(struct.pack(">II", 0x00000801, len(labels)) + np.asarray(labels, dtype=np.uint8).tobytes())


def fake_mnist(root, folder="MNIST", n_train=5, n_test=3):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(n_train, 28, 28))
    test = rng.integers(0, 256, size=(n_test, 28, 28))
    write_idx_images(raw / "train-images-idx3-ubyte", train)
    write_idx_labels(raw / "train-labels-idx1-ubyte", [7, 2, 1, 0, 4][:n_train])
    write_idx_images(raw / "t10k-images-idx3-ubyte", test)
    write_idx_labels(raw / "t10k-labels-idx1-ubyte", [9, 5, 3][:n_test])
    return train, test


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_from_fake_idx_files(tmp_path, name, folder):
    train, test = fake_mnist(tmp_path, folder)
    ds = data.get_dataset(name, root=tmp_path)
    assert len(ds) == 5
    image, label = ds[1]
    assert image.shape == (1, 28, 28) and label == 2
    torch.testing.assert_close(image[0], torch.tensor(train[1] / 255.0 * 2 - 1, dtype=torch.float32))
    test_ds = data.get_dataset(name, root=str(tmp_path), train=False)
    assert len(test_ds) == 3 and test_ds[2][1] == 3
    small, _ = data.get_dataset(name, root=tmp_path, resolution=14)[0]
    assert small.shape == (1, 14, 14) and small.min() >= -1 and small.max() <= 1
    # an antialiased 2x shrink keeps the image mean up to the filter's edge effects
    assert float(small.mean()) == pytest.approx(float(train[0].mean() / 255 * 2 - 1), abs=0.02)


def test_color_mnist_stacks_three_digits(tmp_path):
    train, _ = fake_mnist(tmp_path)
    labels = [7, 2, 1, 0, 4]
    ds = data.get_dataset("color-mnist", root=tmp_path, length=6, seed=3)
    assert len(ds) == 6
    for i in range(6):
        image, label = ds[i]
        a, b, c = (int(j) for j in ds.index[i])
        assert image.shape == (3, 28, 28)
        for channel, j in enumerate((a, b, c)):
            torch.testing.assert_close(image[channel], torch.tensor(train[j] / 255.0 * 2 - 1, dtype=torch.float32))
        assert label == 100 * labels[a] + 10 * labels[b] + labels[c]
    again = data.get_dataset("color-mnist", root=tmp_path, length=6, seed=3)
    assert torch.equal(again.index, ds.index)


def test_image_folder_from_png_files(tmp_path):
    colors = {"cats": (255, 0, 0), "dogs": (0, 128, 255)}
    for cls, color in colors.items():
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.new("RGB", (12, 10), color).save(tmp_path / cls / f"{i}.png")
    ds = data.get_dataset("imagefolder", root=tmp_path, resolution=8)
    assert len(ds) == 4 and ds.classes == ["cats", "dogs"]
    image, label = ds[3]
    assert image.shape == (3, 8, 8) and label == 1
    expected = torch.tensor([c / 255 * 2 - 1 for c in colors["dogs"]]).view(3, 1, 1).expand(3, 8, 8)
    torch.testing.assert_close(image, expected, rtol=0, atol=1e-6)
    assert data.get_dataset("imagefolder", root=tmp_path)[0][0].shape == (3, 64, 64)  # default 64


@pytest.mark.parametrize("name,where", [("mnist", "MNIST/raw"), ("cifar10", "cifar-10-batches-py"),
                                        ("color-mnist", "MNIST/raw"), ("imagefolder", "")])
def test_missing_dataset_says_where_it_looked_and_how_to_get_it(tmp_path, name, where):
    root = tmp_path / "empty"
    root.mkdir()
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.get_dataset(name, root=root)
    message = str(info.value)
    assert str(root / where).rstrip("/") in message
    assert ("download=True" in message) == (name != "imagefolder")
    assert isinstance(info.value, FileNotFoundError)


def test_missing_dataset_under_the_default_root(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTREG_DATA", str(tmp_path))
    with pytest.raises(data.DatasetNotFoundError, match=str(tmp_path / "MNIST" / "raw")):
        data.get_dataset("mnist")


def test_lsun_and_folders_refuse_download(tmp_path):
    with pytest.raises(ValueError, match="download"):
        data.get_dataset("lsun:church_outdoor", root=tmp_path, download=True)
    with pytest.raises(ValueError, match="download"):
        data.get_dataset("imagefolder", root=tmp_path, download=True)
    with pytest.raises((ImportError, data.DatasetNotFoundError), match="lmdb|LSUN"):
        data.get_dataset("lsun:church_outdoor", root=tmp_path)


def test_images_at_gathers_the_same_images_from_a_tensor_or_an_indexable_dataset():
    """One gather for an ImageTensorDataset, a stack of dataset[i][0] for any (image, label) dataset."""
    from fastreg.data.images import ImageTensorDataset, images_at

    images = torch.arange(5 * 1 * 2 * 2, dtype=torch.float32).reshape(5, 1, 2, 2)
    held = ImageTensorDataset(images, torch.arange(5))
    plain = [(images[i], i) for i in range(5)]
    index = torch.tensor([4, 0, 2, 2])
    assert torch.equal(images_at(held, index), images[index])
    assert torch.equal(images_at(plain, index), images[index])
