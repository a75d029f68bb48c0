"""The learned group-independent codec (see model.py for the data flow).

    uint8 image + block groups ─▶ encode_groups ─▶ {group: bitstream}
    {group: bitstream} (any subset) ─▶ decode_groups ─▶ uint8 image + decoded-pixel mask

Torch is imported lazily by the functions below so that importing privcodec
(and `privcodec --help`) stays fast.
"""
from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import numpy as np

# compressai scripts a few helpers with torch.jit, which torch 2.14 deprecates;
# the warning is noise on every CLI call.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)

CODEC_ID = "gicodec-1"
# Mirrors of model.BLOCK / model.UNKNOWN_GROUP, so importing privcodec.codec stays torch-free
# (tests/test_codec.py checks they agree).
BLOCK = 16
UNKNOWN_GROUP = -2


def configure_threads() -> int:
    """Use PRIVCODEC_THREADS if set, else every core torch sees (capped at 8: more buys little here)."""
    import torch

    n = int(os.environ.get("PRIVCODEC_THREADS", "0")) or min(8, os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


def default_weights_path() -> Path:
    return Path(os.environ.get("PRIVCODEC_WEIGHTS", Path(__file__).with_name("weights") / "gicodec.pt"))


@functools.lru_cache(maxsize=4)
def load_codec(path: str | None = None):
    from ..errors import PrivcodecError
    from .weights_io import load_weights

    path = Path(path) if path else default_weights_path()
    if not path.exists():
        raise PrivcodecError(f"codec weights not found: {path}")
    configure_threads()
    return load_weights(path)


@functools.lru_cache(maxsize=4)
def weights_digest(path: str | None = None) -> bytes:
    from .weights_io import weights_sha256

    return weights_sha256(Path(path) if path else default_weights_path())


def encode_groups(image: np.ndarray, block_groups: np.ndarray, quality: float, weights: str | None = None) -> dict[int, bytes]:
    """image: uint8 (H,W,3); block_groups: int grid (ceil(H/16), ceil(W/16)) of group ids >= 0."""
    import torch

    model = load_codec(weights)
    x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0
    return model.compress(x, torch.from_numpy(block_groups.astype(np.int64)), quality)


def decode_groups(streams: dict[int, bytes], block_groups: np.ndarray, height: int, width: int, quality: float,
                  weights: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode the groups in ``streams``; block_groups has UNKNOWN_GROUP where the group is not known.

    Returns (uint8 image (H,W,3), bool mask of decoded pixels)."""
    import torch

    model = load_codec(weights)
    crop, known_crop, (top, left) = model.decompress_region(
        streams, torch.from_numpy(block_groups.astype(np.int64)), height, width, quality)
    # The decoder ran on the decoded groups' region only; the rest of the canvas is uint8 zeros.
    image = np.zeros((height, width, 3), dtype=np.uint8)
    known = np.zeros((height, width), dtype=bool)
    h, w = known_crop.shape
    image[top:top + h, left:left + w] = (torch.nan_to_num(crop) * 255.0).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    known[top:top + h, left:left + w] = known_crop.numpy()
    return image, known
