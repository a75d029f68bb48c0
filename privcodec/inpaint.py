"""Filling the pixels a viewer may not see (protected groups without a key, redacted groups).

The fill must leak nothing: it is computed from the known (public) pixels only.  The unknown
pixels are overwritten with zeros *before* anything looks at them, so whatever they held (a
decoded face, garbage, zeros) cannot change the result.  Both methods are deterministic: the same
public pixels always give the same picture.

- ``"solid"``: every unknown pixel becomes FILL_GREY, a fixed neutral mid grey (128, 128, 128).
- ``"inpaint"``: push-pull fill (a pyramid of known-pixel averages, pulled back up with
  bilinear interpolation): a smooth blend of the surrounding public colours.  Unlike
  OpenCV's Telea or Navier-Stokes inpainting, it stays smooth in large holes (a whole face)
  instead of smearing border streaks across them.  The pyramid starts at 1/COARSE of the
  resolution (hidden areas are whole 16-px blocks) and full-resolution work runs in strips
  of rows, so memory stays a small multiple of the uint8 image even at 64 MP.

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

    values, weight = _downsample(out, known)
    dense = _push_pull(values, weight)   # (h/COARSE, w/COARSE, 3) float32, no hole left
    for y0 in range(0, out.shape[0], STRIP):
        rows = slice(y0, min(y0 + STRIP, out.shape[0]))
        hidden = ~known[rows]
        if hidden.any():
            up = _upsample_rows(dense, rows, out.shape[0], out.shape[1])
            strip = out[rows]
            strip[hidden] = np.clip(np.rint(up[hidden]), 0, 255).astype(np.uint8)
    return out


COARSE = 4         # pyramid base: 1/4 of the resolution (16 times fewer pixels)
STRIP = 256        # rows per full-resolution strip (a multiple of COARSE)


def _downsample(image: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Known-pixel sums and known fractions per COARSE x COARSE cell, strip by strip."""
    h, w = known.shape
    hc, wc = -(-h // COARSE), -(-w // COARSE)
    values = np.zeros((hc, wc, 3), np.float32)
    weight = np.zeros((hc, wc), np.float32)
    for y0 in range(0, h, STRIP):
        y1 = min(y0 + STRIP, h)
        k = np.zeros((-(-(y1 - y0) // COARSE) * COARSE, wc * COARSE), np.float32)
        v = np.zeros(k.shape + (3,), np.float32)
        k[:y1 - y0, :w] = known[y0:y1]
        v[:y1 - y0, :w] = image[y0:y1]          # hidden pixels are already zero
        r = k.shape[0] // COARSE
        cells = slice(y0 // COARSE, y0 // COARSE + r)
        weight[cells] = k.reshape(r, COARSE, wc, COARSE).mean((1, 3))
        values[cells] = v.reshape(r, COARSE, wc, COARSE, 3).mean((1, 3))
    return values, weight


def _upsample_rows(dense: np.ndarray, rows: slice, h: int, w: int) -> np.ndarray:
    """Rows `rows` of the bilinear (half-pixel centred) upsampling of `dense` to (h, w)."""
    def taps(n_out: int, n_in: int, idx: np.ndarray):
        pos = np.clip((idx + 0.5) / COARSE - 0.5, 0, n_in - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    ylo, yhi, fy = taps(h, dense.shape[0], np.arange(rows.start, rows.stop))
    xlo, xhi, fx = taps(w, dense.shape[1], np.arange(w))
    r = dense[ylo] * (1 - fy)[:, None, None] + dense[yhi] * fy[:, None, None]
    return r[:, xlo] * (1 - fx)[None, :, None] + r[:, xhi] * fx[None, :, None]


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
