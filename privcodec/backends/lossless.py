"""The lossless backend: every group's bounding box as a lossless WebP (PNG past WebP's size limit).

    group g: box crop, other groups' pixels filled from g's own pixels only ─▶ lossless image
    stream ─▶ decode ─▶ g's blocks, bit-exact: key holders get the original pixels back

For archives that need the original (``protect --lossless``).  Pillow's AVIF writer cannot make
lossless (identity-matrix 4:4:4) AV1, so lossless groups are WebP, whose lossless mode is exact by
definition; a stream is again a function of its group's pixels and mask only.

    stream = 0x02 || WebP file   or   0x03 || PNG file (a box side over 16383 px)
"""
from __future__ import annotations

import hashlib
import io

import numpy as np

from .avif import BLOCK, _boxes

CODEC_ID = "lossless-1"
NAME = "lossless"
codec_id, name = CODEC_ID, NAME
WEBP_MAX_SIDE = 16383


def model_digest() -> bytes:
    return hashlib.sha256(b"privcodec lossless-1").digest()


def encode_groups(image: np.ndarray, block_groups: np.ndarray, quality: float) -> dict[int, bytes]:
    from PIL import Image

    from ..inpaint import fill

    h, w = image.shape[:2]
    streams = {}
    for g, (r0, r1, c0, c1) in _boxes(block_groups):
        y0, y1, x0, x1 = r0 * BLOCK, min(h, r1 * BLOCK), c0 * BLOCK, min(w, c1 * BLOCK)
        own = np.kron(block_groups[r0:r1, c0:c1] == g, np.ones((BLOCK, BLOCK), bool))[:y1 - y0, :x1 - x0]
        crop = fill(np.ascontiguousarray(image[y0:y1, x0:x1]), own, "solid")   # other groups: nothing of theirs
        buf = io.BytesIO()
        if max(crop.shape[:2]) <= WEBP_MAX_SIDE:
            Image.fromarray(crop).save(buf, "WEBP", lossless=True, quality=100, method=4, exact=True)
            streams[g] = b"\x02" + buf.getvalue()
        else:
            Image.fromarray(crop).save(buf, "PNG", compress_level=9)
            streams[g] = b"\x03" + buf.getvalue()
    return streams


def decode_groups(streams: dict[int, bytes], block_groups: np.ndarray, height: int, width: int, quality: float,
                  digest: bytes | None = None):
    from PIL import Image

    if digest is not None and digest != model_digest():
        raise ValueError("not a lossless-1 stream set")
    image = np.zeros((height, width, 3), np.uint8)
    known = np.zeros((height, width), bool)
    boxes = dict(_boxes(np.where(np.isin(block_groups, list(streams)), block_groups, -2)))
    for g, stream in streams.items():
        if g not in boxes:
            raise ValueError("group has no blocks")
        r0, r1, c0, c1 = boxes[g]
        y0, y1, x0, x1 = r0 * BLOCK, min(height, r1 * BLOCK), c0 * BLOCK, min(width, c1 * BLOCK)
        fmt = {b"\x02": "WEBP", b"\x03": "PNG"}.get(stream[:1])
        if fmt is None:
            raise ValueError("malformed group stream")
        try:
            with Image.open(io.BytesIO(stream[1:]), formats=[fmt]) as im:
                if im.size != (x1 - x0, y1 - y0):   # checked on the header, before decoding
                    raise ValueError("stream does not fit its group")
                pixels = np.asarray(im.convert("RGB"))
        except ValueError:
            raise
        except Exception:
            raise ValueError("malformed group stream") from None
        own = np.kron(block_groups[r0:r1, c0:c1] == g, np.ones((BLOCK, BLOCK), bool))[:y1 - y0, :x1 - x0]
        image[y0:y1, x0:x1][own] = pixels[own]
        known[y0:y1, x0:x1] |= own
    return image, known
