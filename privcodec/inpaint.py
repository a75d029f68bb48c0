"""Filling the pixels a viewer may not see (protected groups without a key, redacted groups).

The fill must leak nothing: it is computed from the known (public) pixels only.  The unknown
pixels are overwritten with zeros *before* anything looks at them, so whatever they held (a
decoded face, garbage, zeros) cannot change the result.  Both methods are deterministic: the same
public pixels always give the same picture.

- ``"solid"``: every unknown pixel becomes FILL_GREY, a fixed neutral mid grey (128, 128, 128).
- ``"inpaint"``: OpenCV's Telea inpainting (fast marching from the hole's border, radius
  INPAINT_RADIUS px), which blends the surrounding public colours into the hole.

An image with no known pixel at all has nothing to inpaint from and is filled solid grey.
"""
from __future__ import annotations

import numpy as np

FILL_GREY = (128, 128, 128)
INPAINT_RADIUS = 5
METHODS = ("inpaint", "solid")


def fill(image: np.ndarray, known: np.ndarray, method: str = "inpaint") -> np.ndarray:
    """Return a copy of ``image`` (uint8 HxWx3) with the pixels where ``known`` is False filled."""
    if method not in METHODS:
        raise ValueError(f"unknown fill method {method!r} (expected inpaint or solid)")
    image, known = np.asarray(image), np.asarray(known)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"fill needs a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    if known.dtype != bool or known.shape != image.shape[:2]:
        raise ValueError(f"fill needs a bool (H, W) mask matching the image, got {known.dtype} {known.shape}")

    out = image.copy()
    out[~known] = 0                      # from here on the hidden values are gone
    if known.all():
        return out
    if method == "solid" or not known.any():
        out[~known] = FILL_GREY
        return out

    import cv2  # lazy: keeps `privcodec --help` fast

    hole = (~known).astype(np.uint8)
    filled = cv2.inpaint(np.ascontiguousarray(out), hole, INPAINT_RADIUS, cv2.INPAINT_TELEA)
    filled[known] = image[known]         # public pixels stay bit-exact
    return filled
