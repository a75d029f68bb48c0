"""The AVIF backend: every group is a still AV1 image of its bounding box.

    group g: crop of its block bounding box ─▶ pixels of other groups replaced by a fill made
    from g's own pixels only (push-pull) ─▶ AVIF (Pillow/libavif) ─▶ stream
    stream ─▶ AV1 decode (normative integer arithmetic: the same pixels everywhere) ─▶ g's blocks

A stream is a function of its group's pixels and block mask only, so it carries nothing of
other groups, and each group decodes alone.  No torch: this backend is the light install.

Quality 1..8 maps to AVIF quality by the table QUALITY (interpolated for fractions), chosen so
that the levels land near the learned codec's rates on Kodak-like photos; 8 is close to visually
lossless.  Streams are AVIF files as Pillow writes them (about 300 bytes of HEIF boxes per group).
"""
from __future__ import annotations

import hashlib
import io

import numpy as np

CODEC_ID = "avif-1"
NAME = "avif"
BLOCK = 16
# --quality 1..8 -> libavif quality 0..100 (measured operating points: README, "Codec backends")
QUALITY = (22, 34, 45, 55, 64, 72, 80, 88)
SPEED = 6                     # libavif speed: 6 is its default trade-off (0 slowest .. 10 fastest)
SUBSAMPLING = "4:2:0"


def model_digest() -> bytes:
    """The header's weights_sha256 for this backend: it has no weights, so a fixed name."""
    return hashlib.sha256(b"privcodec avif-1").digest()


codec_id, name = CODEC_ID, NAME   # the backend interface (see backends/__init__.py)


def avif_quality(quality: float) -> int:
    q = min(max(float(quality), 1.0), 8.0) - 1
    lo = min(int(q), 6)
    t = q - lo
    return round(QUALITY[lo] * (1 - t) + QUALITY[lo + 1] * t)


def _boxes(block_groups: np.ndarray):
    for g in np.unique(block_groups):
        if g < 0:
            continue
        rows, cols = np.nonzero(block_groups == g)
        yield int(g), (int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1)


def encode_groups(image: np.ndarray, block_groups: np.ndarray, quality: float) -> dict[int, bytes]:
    from PIL import Image

    from ..inpaint import fill

    h, w = image.shape[:2]
    streams = {}
    for g, (r0, r1, c0, c1) in _boxes(block_groups):
        y0, y1, x0, x1 = r0 * BLOCK, min(h, r1 * BLOCK), c0 * BLOCK, min(w, c1 * BLOCK)
        own = np.kron(block_groups[r0:r1, c0:c1] == g, np.ones((BLOCK, BLOCK), bool))[:y1 - y0, :x1 - x0]
        crop = fill(np.ascontiguousarray(image[y0:y1, x0:x1]), own, "inpaint")   # from g's own pixels only
        buf = io.BytesIO()
        Image.fromarray(crop).save(buf, "AVIF", quality=avif_quality(quality), speed=SPEED, subsampling=SUBSAMPLING,
                                   max_threads=1)
        streams[g] = buf.getvalue()
    return streams


def decode_groups(streams: dict[int, bytes], block_groups: np.ndarray, height: int, width: int, quality: float,
                  digest: bytes | None = None):
    """Decode any subset of groups; block_groups holds -2 (unknown) where the group is not decoded.
    Returns (uint8 image (H,W,3), bool mask of decoded pixels).  ValueError on a bad stream."""
    from PIL import Image

    if digest is not None and digest != model_digest():
        raise ValueError("not an avif-1 stream set")
    image = np.zeros((height, width, 3), np.uint8)
    known = np.zeros((height, width), bool)
    boxes = dict(_boxes(np.where(np.isin(block_groups, list(streams)), block_groups, -2)))
    for g, stream in streams.items():
        if g not in boxes:
            raise ValueError("group has no blocks")
        r0, r1, c0, c1 = boxes[g]
        y0, y1, x0, x1 = r0 * BLOCK, min(height, r1 * BLOCK), c0 * BLOCK, min(width, c1 * BLOCK)
        try:
            with Image.open(io.BytesIO(stream), formats=["AVIF"]) as im:
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
