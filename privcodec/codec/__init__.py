"""The learned group-independent codec (see model.py for the data flow).

    uint8 image + block groups ─▶ encode_groups ─▶ {group: bitstream}
    {group: bitstream} (any subset) ─▶ decode_groups ─▶ uint8 image + decoded-pixel mask

Torch is imported lazily by the functions below so that importing privcodec
(and `privcodec --help`) stays fast.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import threading
import warnings
from pathlib import Path

import numpy as np

from ..limits import names_weights

# compressai scripts a few helpers with torch.jit, which torch 2.14 deprecates;
# the warning is noise on every CLI call.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)

from ._compressai import install as _light_compressai

_light_compressai()   # before anything imports compressai: skip its 2.4 s package initialiser

# Three networks (RELEASED_MODELS name each weights file's): "gicodec-1" (hyperprior + ChARM),
# "gicodec-3" (the same with a checkerboard context in every slice: entropy.py) and "gicodec-4"
# (gicodec-3 with residual blocks in the synthesis at 1/8 and 1/4 scale: layers.GroupResidualBlock).  A file's
# codec id says which network and how its streams are laid out:
#   gicodec-1  network gicodec-1, one stream per group over the whole image (before tiling; still read)
#   gicodec-2  network gicodec-1 on 1024-px tiles (privcodec/tiles.py): bounded memory
#   gicodec-3  network gicodec-3 on the same tiles
#   gicodec-4  network gicodec-4 on the same tiles
#   gicodec-5  network gicodec-4 on the same tiles, leaner framing: each group's z and y in one rANS
#              stream per tile, tile lengths as uvarints, the last tile's implied (about 10 bytes a group
#              and tile fewer: a few tenths of a percent of a photo's bytes at low rates)
MODEL_OF = {"gicodec-1": "gicodec-1", "gicodec-2": "gicodec-1", "gicodec-3": "gicodec-3", "gicodec-4": "gicodec-4",
            "gicodec-5": "gicodec-4"}
NEW_FILES = {"gicodec-1": "gicodec-2", "gicodec-3": "gicodec-3", "gicodec-4": "gicodec-5"}   # network -> new files' id
ONE_STREAM = {"gicodec-5"}   # ids whose tiles hold one rANS stream per group and use uvarint framing
TILE_BLOCKS = 64     # gicodec-2 tiles: 1024 px, ~1 MP keeps the network's activations well under 1 GB
MAX_DECODE_WORKERS = 4   # tiles decoded side by side (one thread each), at most: each holds ~0.6 GB
# Mirrors of model.BLOCK / model.UNKNOWN_GROUP, so importing privcodec.codec stays torch-free
# (tests/test_codec.py checks they agree).
BLOCK = 16
UNKNOWN_GROUP = -2


def configure_threads() -> int:
    """Torch's CPU threads: PRIVCODEC_THREADS, else the idle cores (privcodec/threads.py)."""
    import torch

    from ..threads import threads

    n = threads()
    torch.set_num_threads(n)
    return n


WEIGHTS_DIR = Path(__file__).with_name("weights")

# Every model privcodec ever released, by the SHA-256 of its weights file (the `weights_sha256`
# in a file's header).  A user's archive must survive every upgrade: an entry is never removed,
# and a newly shipped model moves the previous gicodec.pt to released/ and adds a line here.
# Architecture changes get a new codec id and keep the old code path.
RELEASED_MODELS = {
    # sha256 of the weights file: (codec id, path under weights/, what it is)
    "9a6cbd64dd27d439e0b22791634f33173dbac39b8a3c5b321b74554e5bb5f599":
        ("gicodec-1", "released/gicodec-1-18k5.pt", "first release, 18.5k CPU iterations (2026-11-25)"),
    "54cc03812cddbcf1dbe462f16160b192230aa2da6b3ab992c9bbbe72194a70e6":
        ("gicodec-1", "released/gicodec-1-39k.pt", "39.25k CPU iterations (2026-11-25)"),
    "374c44a0b60e82c913086d150ec2dad4c14236a2e95d552dafaeb206d59504e2":
        ("gicodec-1", "released/gicodec-1-45k75.pt", "45.75k CPU iterations, EMA (2026-11-26)"),
    "ab81e9f719f86ddce5cd9f0a5f4887700bcaea1554ed91aef69e329c8baee539":
        ("gicodec-1", "released/gicodec-1-53k75.pt", "53.75k CPU iterations, EMA (2026-11-26, session 4)"),
    "608b04ee54685722616374770e753df9d806dfd87dd11b1ec082c006d723e68e":
        ("gicodec-3", "released/gicodec-3-58k75.pt",
         "network gicodec-3: 53.75k grown with the checkerboard context + 5k, EMA (2026-11-26, session 5)"),
    "2d8f4bd2f8fcfc45c5590cfa5e0637a3a6628e6620c018b371a0b6de013f9908":
        ("gicodec-3", "released/gicodec-3-session6.pt",
         "gicodec-3 58.75k + 5.5k batch-16 iterations on an H100 + 5k CPU, EMA (2026-11-26, session 6)"),
    "15e48837ebd4a0964c922473725203f5de7f64f67a36b504458667ee586a4bec":
        ("gicodec-3", "released/gicodec-3-session7.pt",
         "gicodec-3 session 6 + 6.86k CPU iterations, EMA (2026-11-27, session 7)"),
    "6410ec218f49ff0dc275855a03056d9d106f1e0a19f8df42a4d93d4a04a64c12":
        ("gicodec-4", "released/gicodec-4-session8.pt",
         "session 7 grown into gicodec-4 + 3.45k batch-16 iterations on an H100 + 7.3k CPU, EMA "
         "(2026-11-27, session 8)"),
    "dd66d089f4589a09c8075795affed2e256af3425be3fe98267ef6e81da587bb1":
        ("gicodec-4", "released/gicodec-4-session9.pt",
         "gicodec-4 session 8 + 10.8k CPU iterations, EMA (2026-11-27, session 9)"),
    "16ab3ab2c01d66701a6e4c60b71446c40846c554e4188e2b84b2686e3121f0d3":
        ("gicodec-4", "released/gicodec-4-session10.pt",
         "gicodec-4 session 9 + 10.8k CPU iterations, EMA (2026-11-27, session 10)"),
    "d62669753a486c4de6e05a6819012b509a30f524be60dfea5d66f2aa3a015fec":
        ("gicodec-4", "released/gicodec-4-session11.pt",
         "gicodec-4 session 10 + 8.8k CPU iterations, EMA (2026-11-27, session 11)"),
    "e898746a470a12fccea6c826fea5f00dc9bccf80c2444a7d070e6c290fcd8682":
        ("gicodec-4", "released/gicodec-4-session12.pt",
         "session 11's weights with coding tables for 256 Gaussian scales instead of 64 (2026-11-27, session 12)"),
    "88523cf2290550733f5e68f9866ec8c3b2da57a6a88fb9d4e98d38e843375cd3":
        ("gicodec-4", "released/gicodec-4-session16.pt",
         "gicodec-4 session 12 + 4.6k CPU iterations on crops mostly split into 2-4 groups, EMA (2026-11-28, "
         "session 16)"),
    "e9d20455d8181528e0bac3970c0a8e26ecdb299e76af5877e220e937f28ff398":
        ("gicodec-4", "gicodec.pt",
         "gicodec-4 session 16 + 6.3k CPU iterations on crops mostly split into 2-4 groups, lr decayed to "
         "5e-6, EMA (2026-11-28, session 17)"),
}
CURRENT_MODEL = "e9d20455d8181528e0bac3970c0a8e26ecdb299e76af5877e220e937f28ff398"


def default_weights_path() -> Path:
    """The weights new files are made with: PRIVCODEC_WEIGHTS, else the current release."""
    env = os.environ.get("PRIVCODEC_WEIGHTS")
    return Path(env) if env else WEIGHTS_DIR / RELEASED_MODELS[CURRENT_MODEL][1]


def weights_for(codec_id: str, digest: bytes) -> str:
    """Path of the weights a file was made with, by its header's codec id and weights hash."""
    from ..errors import FormatError

    # FORMAT v4 headers hold the hash's first 16 bytes, earlier versions all 32
    matches = [(h, e) for h, e in RELEASED_MODELS.items() if names_weights(bytes.fromhex(h), digest)]
    released, entry = matches[0] if len(matches) == 1 else (None, None)
    if entry is not None and codec_id in MODEL_OF and entry[0] == MODEL_OF[codec_id]:
        path = str(WEIGHTS_DIR / entry[1])
        # another file under a released model's name (an export over it, a damaged install) would
        # decode to garbage or fail obscurely: say so instead
        if not Path(path).is_file() or _sha256_of(path) != released:
            raise FormatError(f"the codec weights {path} are missing or not the released model "
                              f"{released[:12]} this file needs: reinstall privcodec")
        return path
    if codec_id in MODEL_OF and os.environ.get("PRIVCODEC_WEIGHTS") and names_weights(weights_digest(), digest):
        return str(default_weights_path())
    raise FormatError(f"this file was made with a codec model this privcodec does not have ({codec_id}, weights "
                      f"{digest.hex()[:12]}): it needs a newer privcodec")


@functools.lru_cache(maxsize=16)
def _sha256_of(path: str) -> str:
    with open(path, "rb") as f:     # hashlib only: a torchless install reports the missing extra instead
        return hashlib.file_digest(f, "sha256").hexdigest()


@functools.lru_cache(maxsize=4)
def load_codec(path: str | None = None):
    from ..errors import PrivcodecError
    from .weights_io import load_weights

    path = Path(path) if path else default_weights_path()
    if not path.exists():
        raise PrivcodecError(f"codec weights not found: {path}")
    configure_threads()
    return load_weights(path)


def weights_digest(path: str | None = None) -> bytes:
    return bytes.fromhex(_sha256_of(str(path or default_weights_path())))


def network_of(model) -> str:
    """The network id of a loaded model (what RELEASED_MODELS and MODEL_OF call it)."""
    return model.config.network


def new_codec_id(weights: str | None = None) -> str:
    """The codec id new files get with these weights (default: the current release)."""
    entry = None if weights or os.environ.get("PRIVCODEC_WEIGHTS") else RELEASED_MODELS[CURRENT_MODEL]
    return NEW_FILES[entry[0] if entry else network_of(load_codec(weights))]


def encode_groups(image: np.ndarray, block_groups: np.ndarray, quality: float, weights: str | None = None,
                  codec_id: str | None = None, effort: int = 0) -> dict[int, bytes]:
    """image: uint8 (H,W,3); block_groups: int grid (ceil(H/16), ceil(W/16)) of group ids >= 0.
    ``codec_id``: what new_codec_id() says (the default), or an older layout of the same network.
    ``effort`` 1 and 2 search each group's latent for a better rate-distortion trade-off (adapt.py:
    about 25x and 75x the encoding time; the same decoder)."""
    from .. import tiles

    codec_id = codec_id or new_codec_id(weights)
    _check_network(codec_id, weights)
    if codec_id == "gicodec-1":
        _check_untiled(block_groups, None, encoding=True)
        return _encode_whole(image, block_groups, quality, weights, effort)
    one_stream = codec_id in ONE_STREAM
    return tiles.encode(image, np.asarray(block_groups),
                        lambda px, grid: _encode_whole(px, grid, quality, weights, effort, one_stream), TILE_BLOCKS,
                        framing=_framing(codec_id))


def decode_groups(streams: dict[int, bytes], block_groups: np.ndarray, height: int, width: int, quality: float,
                  weights: str | None = None, codec_id: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode the groups in ``streams``; block_groups has UNKNOWN_GROUP where the group is not known.

    Returns (uint8 image (H,W,3), bool mask of decoded pixels).  Raises ValueError on a malformed stream."""
    from .. import tiles

    codec_id = codec_id or new_codec_id(weights)
    _check_network(codec_id, weights)
    with _torch_on_one_thread() as workers:
        if codec_id == "gicodec-1":
            _check_untiled(block_groups, streams)
            return _decode_whole(streams, block_groups, height, width, quality, weights)
        one_stream = codec_id in ONE_STREAM
        return tiles.decode(streams, np.asarray(block_groups), height, width,
                            lambda s, grid, h, w: _decode_whole(s, grid, h, w, quality, weights, one_stream),
                            TILE_BLOCKS, workers=workers, framing=_framing(codec_id))


def _framing(codec_id: str) -> str:
    from .. import tiles

    return tiles.UVARINT if codec_id in ONE_STREAM else tiles.U32


# Decoding runs torch on one thread: the float32 synthesis sums in a different order with more
# threads, and a pixel value near .5 can then round the other way (measured: 1 value in 8640 with
# the 53.75k model).  Streams never depend on threads (float64 entropy path); decoded pixels must
# not either.  The cores decode tiles side by side instead (a 12 MP photo in about half the time on
# two cores, ~0.6 GB more memory a worker).  A caller that already decodes several files at once
# from its own threads (a Dask worker) has its parallelism: its decodes take one tile at a time, so
# memory stays a tile per caller thread.
_active_decodes = [0]
_active_lock = threading.Lock()


@contextlib.contextmanager
def _torch_on_one_thread():
    """Torch on one thread in the calling thread (torch keeps a count per OS thread once it has
    run there) until the decode ends; yields how many tiles to decode side by side."""
    import torch

    with _active_lock:
        _active_decodes[0] += 1
        alone = _active_decodes[0] == 1
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield min(threads, MAX_DECODE_WORKERS) if alone else 1
    finally:
        torch.set_num_threads(threads)
        with _active_lock:
            _active_decodes[0] -= 1


def _check_untiled(block_groups: np.ndarray, groups, *, encoding: bool = False) -> None:
    """gicodec-1 (before tiling) works on the whole image: the box bound of every backend, and one
    on groups x blocks (each group's side information spans the grid)."""
    from .. import tiles
    from ..errors import PrivcodecError
    from ..limits import MAX_GROUP_BLOCKS_UNTILED

    grid = np.asarray(block_groups)
    tiles.check_work(grid, groups, encoding=encoding)
    n = len(groups) if groups is not None else len(np.unique(grid[grid >= 0]))
    if n * grid.size > MAX_GROUP_BLOCKS_UNTILED:
        if encoding:
            raise PrivcodecError("too many groups for a gicodec-1 file of this size")
        raise ValueError("too many groups for an untiled file of this size")


def _check_codec_id(codec_id: str) -> None:
    if codec_id not in MODEL_OF:
        raise ValueError(f"unknown learned codec id {codec_id!r}")


def _check_network(codec_id: str, weights: str | None) -> None:
    """Streams of one network cannot be coded or read by the other's weights."""
    _check_codec_id(codec_id)
    if network_of(load_codec(weights)) != MODEL_OF[codec_id]:
        raise ValueError(f"{codec_id} streams need a {MODEL_OF[codec_id]} network")


def _encode_whole(image: np.ndarray, block_groups: np.ndarray, quality: float, weights: str | None,
                  effort: int = 0, one_stream: bool = False) -> dict[int, bytes]:
    import torch

    model = load_codec(weights)
    x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0
    return model.compress(x, torch.from_numpy(np.asarray(block_groups).astype(np.int64)), quality, effort, one_stream)


def _decode_whole(streams: dict[int, bytes], block_groups: np.ndarray, height: int, width: int, quality: float,
                  weights: str | None, one_stream: bool = False) -> tuple[np.ndarray, np.ndarray]:
    import torch

    model = load_codec(weights)
    # decode_groups' thread is on one; a tile worker started while another decode ended (which
    # restored the shared default) is put on one here: a tile is always summed on one thread
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    crop, known_crop, (top, left) = model.decompress_region(
        streams, torch.from_numpy(np.asarray(block_groups).astype(np.int64)), height, width, quality, one_stream)
    # The decoder ran on the decoded groups' region only; the rest of the canvas is uint8 zeros.
    image = np.zeros((height, width, 3), dtype=np.uint8)
    known = np.zeros((height, width), dtype=bool)
    h, w = known_crop.shape
    image[top:top + h, left:left + w] = (torch.nan_to_num(crop) * 255.0).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    known[top:top + h, left:left + w] = known_crop.numpy()
    return image, known
