"""The decoded-image store of the training and evaluation loaders (wsreid.engine.data):
same values as decoding every time, a rewritten file is decoded again, the byte budget
holds, DataLoader workers do not add; load_image returns RGB images with their files closed."""

import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from wsreid.data.images import load_image
from wsreid.errors import DataError, UserError
from wsreid.engine.data import DecodedImages, _normalisation, image_to_tensor, normalise_pixels

MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def _image(path, seed, size=(40, 90), mode="RGB"):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode).save(path)
    return path


@pytest.mark.parametrize("name,mode", [("a.png", "RGB"), ("b.jpg", "RGB"), ("c.png", "L"), ("d.png", "RGBA")])
def test_cached_pixels_equal_decoding_each_time(tmp_path, name, mode):
    path = _image(tmp_path / name, 1, mode=mode)
    cache = DecodedImages(budget=1 << 20)
    for size, interpolation in (((128, 64), "bicubic"), ((128, 64), "bilinear"), ((90, 40), "bicubic")):
        first = cache.pixels(path, size, interpolation)
        again = cache.pixels(path, size, interpolation)
        assert again is first and first.dtype == torch.uint8 and first.shape == (*size, 3)
        expected = image_to_tensor(Image.open(path), size, MEAN, STD, interpolation)
        assert torch.equal(normalise_pixels(first, MEAN, STD), expected)
    assert len(cache.items) == 3 and cache.used == sum(t.nbytes for t in cache.items.values())


def test_batch_normalisation_equals_per_image_and_the_float_formula(tmp_path):
    cache = DecodedImages(budget=1 << 20)
    pixels = torch.stack([cache.pixels(_image(tmp_path / f"{i}.png", i), (128, 64)) for i in range(4)])
    batch = normalise_pixels(pixels, MEAN, STD)
    assert batch.shape == (4, 3, 128, 64) and batch.is_contiguous() and batch.dtype == torch.float32
    assert torch.equal(batch, torch.stack([normalise_pixels(p, MEAN, STD) for p in pixels]))
    # the same values as the former per-image path: channels first, then float, * scale - shift
    scale, shift = _normalisation(MEAN, STD)
    former = torch.stack([p.permute(2, 0, 1).contiguous().float().mul_(scale).sub_(shift) for p in pixels])
    assert torch.equal(batch, former)
    want = (pixels.permute(0, 3, 1, 2).double() / 255 - torch.tensor(MEAN, dtype=torch.float64).view(3, 1, 1)) \
        / torch.tensor(STD, dtype=torch.float64).view(3, 1, 1)
    assert torch.allclose(batch.double(), want, atol=1e-5)


def test_collated_pairs_are_normalised_on_the_device(tmp_path):
    from wsreid.api import Batch
    from wsreid.engine.data import DeviceBatches, normalise_batch

    cache = DecodedImages(budget=1 << 20)
    pixels = torch.stack([cache.pixels(_image(tmp_path / f"{i}.png", i), (128, 64)) for i in range(3)])
    ids = torch.zeros(3, 4, dtype=torch.long)
    raw = Batch(pixels, ids, ids, torch.arange(3), torch.arange(3), torch.arange(3))
    (out,) = list(DeviceBatches([raw], torch.device("cpu"), MEAN, STD))
    assert torch.equal(out.images, normalise_pixels(pixels, MEAN, STD)) and torch.equal(out.index, raw.index)
    assert normalise_batch(out, MEAN, STD) is out  # float images are left as they are


def test_rewritten_file_is_decoded_again(tmp_path):
    path = _image(tmp_path / "a.png", 1)
    cache = DecodedImages(budget=1 << 20)
    before = cache.pixels(path, (128, 64)).clone()
    _image(path, 2)
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a new modification time for sure
    after = cache.pixels(path, (128, 64))
    assert not torch.equal(before, after)
    assert torch.equal(after, torch.from_numpy(np.array(Image.open(path).convert("RGB").resize((64, 128), Image.BICUBIC))))


def test_budget_caps_the_store_and_zero_turns_it_off(tmp_path, monkeypatch):
    paths = [_image(tmp_path / f"{i}.png", i) for i in range(5)]
    one = 3 * 128 * 64
    cache = DecodedImages(budget=2 * one)
    for p in paths:
        cache.pixels(p, (128, 64))
    assert len(cache.items) == 2 and cache.used == 2 * one
    monkeypatch.setenv("WSREID_IMAGE_CACHE_MB", "0")
    off = DecodedImages()
    off.pixels(paths[0], (128, 64))
    assert off.budget == 0 and not off.items
    monkeypatch.setenv("WSREID_IMAGE_CACHE_MB", "lots")
    with pytest.raises(UserError, match="WSREID_IMAGE_CACHE_MB='lots' is not a number") as caught:
        DecodedImages().budget
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)  # `error: <one line>`, exit 2


def test_loader_workers_do_not_add(tmp_path, monkeypatch):
    path = _image(tmp_path / "a.png", 1)
    cache = DecodedImages(budget=1 << 20)
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: object())
    cache.pixels(path, (128, 64))
    assert not cache.items


def test_missing_file_is_the_usual_data_error(tmp_path):
    with pytest.raises(DataError, match=r"image .*nope.png does not exist") as caught:
        DecodedImages(budget=1 << 20).pixels(tmp_path / "nope.png", (128, 64))
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA"])
def test_load_image_is_rgb_with_the_file_closed(tmp_path, mode):
    path = _image(tmp_path / "a.png", 3, mode=mode)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an open file would warn when collected
        img = load_image(path)
        assert img.mode == "RGB" and getattr(img, "fp", None) is None
        assert np.array_equal(np.asarray(img), np.asarray(Image.open(path).convert("RGB")))
        del img
