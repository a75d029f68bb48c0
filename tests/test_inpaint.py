"""Filling hidden pixels: from public pixels only, deterministic, public pixels untouched."""
import numpy as np
import pytest

from privcodec.inpaint import FILL_GREY, fill

H, W = 48, 64


@pytest.fixture
def scene():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    known = np.ones((H, W), bool)
    known[16:32, 16:48] = False                  # a hidden 16x32 block, e.g. a face
    return image, known


@pytest.mark.parametrize("method", ["inpaint", "solid"])
def test_hidden_pixel_values_do_not_influence_the_output(scene, method):
    image, known = scene
    other = image.copy()
    other[~known] = np.random.default_rng(1).integers(0, 256, (int((~known).sum()), 3), dtype=np.uint8)
    zeros = image.copy()
    zeros[~known] = 0
    a, b, c = fill(image, known, method), fill(other, known, method), fill(zeros, known, method)
    assert np.array_equal(a, b) and np.array_equal(a, c)


@pytest.mark.parametrize("method", ["inpaint", "solid"])
def test_known_pixels_are_unchanged_and_input_is_not_modified(scene, method):
    image, known = scene
    before = image.copy()
    out = fill(image, known, method)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert np.array_equal(out[known], image[known])
    assert np.array_equal(image, before)


@pytest.mark.parametrize("method", ["inpaint", "solid"])
def test_deterministic(scene, method):
    image, known = scene
    assert np.array_equal(fill(image, known, method), fill(image.copy(), known.copy(), method))


def test_solid_is_neutral_grey(scene):
    image, known = scene
    out = fill(image, known, "solid")
    assert (out[~known] == FILL_GREY).all()
    assert FILL_GREY == (128, 128, 128)


def test_inpaint_continues_the_surrounding_colour():
    image = np.zeros((H, W, 3), np.uint8)
    image[:] = (200, 40, 10)
    known = np.ones((H, W), bool)
    known[16:32, 16:48] = False
    image[~known] = (0, 255, 0)                  # what is hidden must not show through
    out = fill(image, known, "inpaint")
    assert np.abs(out[~known].astype(int) - (200, 40, 10)).max() <= 4   # Telea rounds a little


def test_inpaint_blends_between_different_sides():
    image = np.zeros((H, W, 3), np.uint8)
    image[:, : W // 2] = 0
    image[:, W // 2:] = 240
    known = np.ones((H, W), bool)
    known[:, 24:40] = False                      # a vertical stripe across the black/white edge
    out = fill(image, known, "inpaint")
    assert out[H // 2, 25, 0] < out[H // 2, 38, 0], "dark side stays darker than the bright side"


@pytest.mark.parametrize("method", ["inpaint", "solid"])
def test_nothing_known_gives_solid_grey(method):
    image = np.random.default_rng(2).integers(0, 256, (H, W, 3), dtype=np.uint8)
    out = fill(image, np.zeros((H, W), bool), method)
    assert (out == FILL_GREY).all()


@pytest.mark.parametrize("method", ["inpaint", "solid"])
def test_nothing_hidden_is_identity(scene, method):
    image, _ = scene
    out = fill(image, np.ones((H, W), bool), method)
    assert np.array_equal(out, image) and out is not image


def test_bad_arguments(scene):
    image, known = scene
    with pytest.raises(ValueError, match="unknown fill method"):
        fill(image, known, "blur")
    with pytest.raises(ValueError):
        fill(image.astype(np.float32), known)
    with pytest.raises(ValueError):
        fill(image, known.astype(np.uint8))
    with pytest.raises(ValueError):
        fill(image, known[:-1])
