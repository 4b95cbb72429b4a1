"""FID feature extractors: the held-out digits classifier and its cache, specs, Inception from a file,
and the Evaluator that the trainer and the CLI use."""

import functools
import os
import socket

import pytest
import torch

from fastreg import data
from fastreg.metrics import classifier as clf
from fastreg.metrics.evaluation import Evaluator, describe
from fastreg.metrics.extractors import INCEPTION_ENV, check_spec, make_extractor, resolve_spec


@pytest.fixture(scope="module")
def classifier_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("classifier_cache"))


@pytest.fixture
def digits8_classifier(classifier_cache, monkeypatch):
    """The digits classifier at 8x8 in this module's own cache: trained by the module's first use."""
    monkeypatch.setenv("FASTREG_CACHE", classifier_cache)
    return first_call(classifier_cache)


@functools.lru_cache
def first_call(cache: str) -> clf.TrainedClassifier:
    state = torch.get_rng_state()
    result = clf.load_or_train_classifier("digits", 8)
    assert torch.equal(torch.get_rng_state(), state), "training must not move the global RNG"
    return result


def test_held_out_split_is_stratified_disjoint_and_fixed():
    labels = data.get_dataset("digits").labels
    train, held = clf.held_out_split(labels)
    assert len(set(train.tolist()) & set(held.tolist())) == 0 and len(train) + len(held) == len(labels)
    for c in range(10):
        n_c = int((labels == c).sum())
        assert int((labels[held] == c).sum()) == round(0.2 * n_c)
    again, _ = clf.held_out_split(labels)
    assert torch.equal(train, again)


def test_digits_classifier_is_accurate_on_held_out_digits(digits8_classifier):
    result = digits8_classifier
    assert result.trained_now and result.held_out_count == 359
    assert result.held_out_accuracy >= 0.97
    images, labels = data.get_dataset("digits", resolution=8).images, data.get_dataset("digits").labels
    _, held = clf.held_out_split(labels)
    assert clf.accuracy(result.model, images[held], labels[held]) == result.held_out_accuracy
    content = clf.data_hash(data.get_dataset("digits", resolution=8))
    assert result.data_hash == content and len(content) == 16
    assert result.path == os.path.join(os.environ["FASTREG_CACHE"], "classifiers", f"digits-r8-{content}-v1.pt")


def test_second_call_loads_the_cache_without_training(digits8_classifier, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("retrained although the classifier is cached")

    monkeypatch.setattr(clf, "train_classifier", no_training)
    state = torch.get_rng_state()
    again = clf.load_or_train_classifier("digits", 8)
    assert torch.equal(torch.get_rng_state(), state), "loading must not move the global RNG"
    assert not again.trained_now and again.held_out_accuracy == digits8_classifier.held_out_accuracy
    x = data.get_dataset("digits", resolution=8).images[:20]
    with torch.no_grad():
        torch.testing.assert_close(again.model.features(x), digits8_classifier.model.features(x))


def test_specs_resolve_and_bad_ones_are_named(monkeypatch):
    monkeypatch.delenv(INCEPTION_ENV, raising=False)
    assert resolve_spec("auto", "digits") == "classifier:digits"
    assert resolve_spec("classifier", "mnist") == "classifier:mnist"
    assert resolve_spec("auto", "ring8") == "raw"
    monkeypatch.setenv(INCEPTION_ENV, "/some/weights.pth")
    assert resolve_spec("auto", "digits") == "inception"
    for bad in ("fid", "raw:x", "classifier:", "inception:"):
        with pytest.raises(ValueError, match="^extractor:"):
            check_spec(bad)
    with pytest.raises(ValueError, match="^extractor:"):
        resolve_spec("classifier", "ring8")


def test_inception_needs_a_weights_file_and_never_downloads(tmp_path, monkeypatch):
    monkeypatch.delenv(INCEPTION_ENV, raising=False)

    def no_network(*args, **kwargs):
        raise AssertionError("network access")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(ValueError, match="^extractor: 'inception' needs a weights file"):
        make_extractor("inception", "digits", 8)
    with pytest.raises(FileNotFoundError, match="^extractor:"):
        make_extractor(f"inception:{tmp_path / 'missing.pth'}", "digits", 8)
    from torchvision.models import inception_v3

    weights = tmp_path / "inception_test.pth"
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), weights)
    monkeypatch.setenv(INCEPTION_ENV, str(weights))
    state = torch.get_rng_state()
    extractor = make_extractor("auto", "digits", 8)
    assert torch.equal(torch.get_rng_state(), state)
    assert extractor.name == "inception:inception_test"
    features = extractor(torch.rand(3, 1, 8, 8) * 2 - 1)
    assert features.shape == (3, 2048) and features.dtype == torch.float64
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="^extractor: .*wrong.pth does not hold"):
        make_extractor(f"inception:{tmp_path / 'wrong.pth'}")


def test_evaluator_scores_the_data_itself_as_perfect(digits8_classifier):
    digits = data.get_dataset("digits", resolution=8)
    evaluator = Evaluator(digits, "digits", z_dim=4, samples=len(digits), extractor="classifier:digits")
    position = []

    def replay_real(z):  # the "generator" hands back the real images in order
        start = sum(position)
        position.append(len(z))
        return digits.images[start:start + len(z)]

    result = evaluator(replay_real)
    assert result["fid/classifier:digits"] == pytest.approx(0.0, abs=1e-6)
    noise = evaluator(lambda z: torch.rand(len(z), 1, 8, 8) * 2 - 1)
    assert abs(result["kid/classifier:digits"]) < 0.01 * noise["kid/classifier:digits"]
    assert noise["fid/classifier:digits"] > 100 * evaluator.real_floor()["fid/classifier:digits"] > 0
    assert "FID[classifier:digits]" in describe(noise)


def test_evaluator_on_a_toy_mixture():
    mixture = data.get_dataset("misspecified3d")
    evaluator = Evaluator(mixture, "misspecified3d", z_dim=2, samples=300)
    reference = evaluator.reference
    chunks = iter(reference.split(250))
    result = evaluator(lambda z: next(chunks))
    assert result["wasserstein_1"] == 0.0
    assert (result["modes_covered"], result["high_quality"]) == (7, pytest.approx(1.0, abs=0.03))
    collapsed = evaluator(lambda z: mixture.modes[0].float().expand(len(z), 3))
    assert (collapsed["modes_covered"], collapsed["high_quality"]) == (1, 1.0)
    raw = Evaluator(mixture, "misspecified3d", z_dim=2, samples=300, extractor="raw")
    shift = torch.tensor([0.0, 0.0, 0.5])
    chunks = iter((raw.reference + shift).split(250))
    assert raw(lambda z: next(chunks))["fid/raw"] == pytest.approx(0.25, rel=1e-6)


def test_evaluator_leaves_the_global_rng_alone():
    mixture = data.get_dataset("ring8")
    state = torch.get_rng_state()
    Evaluator(mixture, "ring8", z_dim=2, samples=50)(lambda z: z)
    assert torch.equal(torch.get_rng_state(), state)


def test_a_progress_bar_leaves_the_features_unchanged(monkeypatch):
    """``extractor(x, progress=title)`` draws a bar (on a terminal) over the batches and returns the same features."""
    import tqdm.auto

    extractor = make_extractor("raw", "digits", 8)
    extractor.batch_size = 7
    x = torch.randn(30, 1, 8, 8)
    titles, updates = [], []
    real_tqdm = tqdm.auto.tqdm

    class Recording(real_tqdm):
        def __init__(self, *args, **kwargs):
            titles.append((kwargs.get("desc"), kwargs.get("disable")))
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            updates.append(n)
            return super().update(n)

    monkeypatch.setattr(tqdm.auto, "tqdm", Recording)
    assert torch.equal(extractor(x, progress="raw features of 30 real images"), extractor(x))
    assert titles == [("raw features of 30 real images", None), (None, True)]  # shown only when titled
    assert updates == [7, 7, 7, 7, 2] * 2
