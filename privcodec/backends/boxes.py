"""The per-group box layout shared by the image-format backends (avif, lossless).

    group g ─▶ crop of its block bounding box, other groups' pixels replaced (fill from g's own
    pixels, or grey) ─▶ encode_crop(crop) ─▶ stream
    stream ─▶ decode_stream(stream, width, height) ─▶ crop ─▶ g's own blocks only

The crop size comes from the group's block box, never from the stream, and a decoded crop of
another size is a bad stream: the size is checked on the image header, before decoding.
"""
from __future__ import annotations

import io
from typing import Callable

import numpy as np

BLOCK = 16
UNKNOWN = -2


def group_boxes(block_groups: np.ndarray):
    """(group, (r0, r1, c0, c1)) in blocks, for every group id >= 0."""
    for g in np.unique(block_groups):
        if g < 0:
            continue
        rows, cols = np.nonzero(block_groups == g)
        yield int(g), (int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1)


def _crop_and_mask(block_groups, g, box, height, width):
    r0, r1, c0, c1 = box
    y0, y1, x0, x1 = r0 * BLOCK, min(height, r1 * BLOCK), c0 * BLOCK, min(width, c1 * BLOCK)
    own = np.kron(block_groups[r0:r1, c0:c1] == g, np.ones((BLOCK, BLOCK), bool))[:y1 - y0, :x1 - x0]
    return (slice(y0, y1), slice(x0, x1)), own


def encode(image: np.ndarray, block_groups: np.ndarray, fill_method: str,
           encode_crop: Callable[[np.ndarray], bytes]) -> dict[int, bytes]:
    from ..inpaint import fill

    streams = {}
    for g, box in group_boxes(block_groups):
        window, own = _crop_and_mask(block_groups, g, box, *image.shape[:2])
        streams[g] = encode_crop(fill(np.ascontiguousarray(image[window]), own, fill_method))
    return streams


def decode(streams: dict[int, bytes], block_groups: np.ndarray, height: int, width: int,
           open_stream: Callable[[bytes, int, int], tuple[bytes, str]]):
    """open_stream(stream, width, height) -> (image file bytes, Pillow format).  Returns (uint8 image,
    decoded-pixel mask); ValueError on a bad stream."""
    from PIL import Image

    image = np.zeros((height, width, 3), np.uint8)
    known = np.zeros((height, width), bool)
    boxes = dict(group_boxes(np.where(np.isin(block_groups, list(streams)), block_groups, UNKNOWN)))
    for g, stream in streams.items():
        if g not in boxes:
            raise ValueError("group has no blocks")
        window, own = _crop_and_mask(block_groups, g, boxes[g], height, width)
        h, w = own.shape
        try:
            data, fmt = open_stream(stream, w, h)
            with Image.open(io.BytesIO(data), formats=[fmt]) as im:
                if im.size != (w, h):
                    raise ValueError("stream does not fit its group")
                pixels = np.asarray(im.convert("RGB"))
        except ValueError:
            raise
        except Exception:
            raise ValueError("malformed group stream") from None
        if pixels.shape != (h, w, 3):
            raise ValueError("stream does not fit its group")
        image[window][own] = pixels[own]
        known[window] |= own
    return image, known
