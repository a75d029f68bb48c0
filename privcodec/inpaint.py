"""Filling the pixels a viewer may not see (protected groups without a key, redacted groups).

The fill must leak nothing: it is computed from the known (public) pixels only.  The unknown
pixels are overwritten with zeros *before* anything looks at them, so whatever they held (a
decoded face, garbage, zeros) cannot change the result.  Both methods are deterministic: the same
public pixels always give the same picture.

- ``"solid"``: every unknown pixel becomes FILL_GREY, a fixed neutral mid grey (128, 128, 128).
- ``"inpaint"``: push-pull fill (a pyramid of known-pixel averages, pulled back up with
  bilinear interpolation): a smooth blend of the surrounding public colours.  Unlike
  OpenCV's Telea or Navier-Stokes inpainting, it stays smooth in large holes (a whole face)
  instead of smearing border streaks across them.

An image with no known pixel at all has nothing to inpaint from and is filled solid grey.
"""
from __future__ import annotations

import numpy as np

FILL_GREY = (128, 128, 128)
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

    filled = np.clip(np.rint(_push_pull(out.astype(np.float32), known.astype(np.float32))), 0, 255)
    filled = filled.astype(np.uint8)
    filled[known] = image[known]         # public pixels stay bit-exact
    return filled


def _push_pull(values: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """values: (H,W,3) with zeros where weight (H,W) is 0; returns a dense estimate."""
    import cv2  # lazy: keeps `privcodec --help` fast

    if min(weight.shape) <= 1 or weight.min() > 0:
        return values / np.maximum(weight, 1e-6)[..., None] if weight.min() > 0 else _flat(values, weight)
    h, w = weight.shape
    size = ((w + 1) // 2, (h + 1) // 2)
    coarse_v = cv2.resize(values * 1.0, size, interpolation=cv2.INTER_AREA)
    coarse_w = cv2.resize(weight, size, interpolation=cv2.INTER_AREA)
    up = cv2.resize(_push_pull(coarse_v, coarse_w), (w, h), interpolation=cv2.INTER_LINEAR)
    alpha = np.clip(weight * 4, 0, 1)[..., None]     # partly known pixels lean on their own average
    own = values / np.maximum(weight, 1e-6)[..., None]
    return alpha * own + (1 - alpha) * up


def _flat(values: np.ndarray, weight: np.ndarray) -> np.ndarray:
    total = weight.sum()
    mean = values.reshape(-1, 3).sum(0) / total if total > 0 else np.array(FILL_GREY, np.float32)
    return np.broadcast_to(mean, values.shape).astype(np.float32)
