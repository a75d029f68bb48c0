"""The AVIF backend: every group is a still AV1 image of its bounding box.

    group g: crop of its block bounding box ─▶ pixels of other groups replaced by a fill made
    from g's own pixels only (push-pull) ─▶ AVIF (Pillow/libavif) ─▶ stream
    stream ─▶ AV1 decode (normative integer arithmetic: the same pixels everywhere) ─▶ g's blocks

A stream is a function of its group's pixels and block mask only, so it carries nothing of
other groups, and each group decodes alone.  No torch: this backend is the light install.

Quality 1..8 maps to AVIF quality by the table QUALITY (interpolated for fractions), chosen so
that the levels land near the learned codec's rates on Kodak-like photos; levels 9 and 10 go on
to visually lossless, for archives that need the original back.

A group's stream is compact: Pillow writes about 275 bytes of HEIF boxes around each AV1
payload, a large share of a small group's bits.  The stream keeps only what the decoder cannot
rebuild — the AV1 payload and the codec-specific item properties (av1C, colour, pixel info) —
and the decoder rebuilds a standard AVIF file around them (the image size comes from the group's
block box), so the same AV1 bits reach libavif:

    stream = 0x01 || u8 len(properties) || properties (ISOBMFF boxes) || AV1 payload

The AV1 sequence header's largest frame size must be the group's box before anything decodes.
"""
from __future__ import annotations

import hashlib
import io
import struct

import numpy as np

from ..limits import names_weights
from . import boxes

# avif-1: one AV1 image per group box (still read); avif-2: the same per 2048-px tile (privcodec/tiles.py),
# so a 64 MP photo never puts the whole image through one AV1 encoder (~1 GB at 48 MP)
CODEC_ID = "avif-2"
CODEC_IDS = ("avif-1", "avif-2")
TILE_BLOCKS = 128
NAME = "avif"
# --quality 1..8 -> libavif quality 0..100 (measured operating points: README, "Codec backends")
QUALITY = (30, 38, 46, 53, 59, 64, 68, 72, 85, 95)   # 9 and 10: for archives, up to visually lossless
# libavif speed by effort (0 slowest .. 10 fastest): 6 is its default trade-off; 4 and 3 code 6 and
# 8 % fewer bits in 5x and 10x the time (README, "Encoder effort")
SPEED = {0: 6, 1: 4, 2: 3}
SUBSAMPLING = "4:2:0"


def model_digest(codec_id: str = CODEC_ID) -> bytes:
    """The header's weights hash for this backend (FORMAT v4 stores its first 16 bytes): it has no
    weights, so a fixed name."""
    return hashlib.sha256(f"privcodec {codec_id}".encode()).digest()


codec_id, name = CODEC_ID, NAME   # the backend interface (see backends/__init__.py)


def avif_quality(quality: float) -> int:
    q = min(max(float(quality), 1.0), float(len(QUALITY))) - 1
    lo = min(int(q), len(QUALITY) - 2)
    t = q - lo
    return round(QUALITY[lo] * (1 - t) + QUALITY[lo + 1] * t)


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _full_box(kind: bytes, payload: bytes, version: int = 0) -> bytes:
    return _box(kind, bytes([version, 0, 0, 0]) + payload)


def _children(data: bytes, start: int, end: int):
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if size < 8 or pos + size > end:
            raise ValueError("malformed AVIF")
        yield kind, pos, pos + size
        pos += size


class _Bits:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def read(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self.pos >> 3
            if byte >= len(self.data):
                raise ValueError("truncated AV1 sequence header")
            value = (value << 1) | ((self.data[byte] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value


def _leb128(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        if pos >= len(data):
            raise ValueError("truncated AV1 stream")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            return value, pos
    raise ValueError("bad AV1 size field")


def av1_max_frame_size(payload: bytes) -> tuple[int, int]:
    """(width, height) from the AV1 sequence header (AV1 spec 5.5): the largest frame the stream
    may decode to.  Checked against the group's box before any decoding, so a tiny stream cannot
    make the decoder work on a 16384 x 16384 frame for a 16 x 16 group.  Exactly one sequence
    header is allowed: a second one would set a new, unchecked size for the frames after it."""
    pos, found = 0, None
    while pos < len(payload):
        header = payload[pos]
        pos += 1
        if header & 0x80 or not header & 0x02:      # forbidden bit; privcodec streams carry OBU sizes
            raise ValueError("bad AV1 OBU header")
        if header & 0x04:
            pos += 1                                 # extension header
        size, pos = _leb128(payload, pos)
        if pos + size > len(payload):
            raise ValueError("truncated AV1 stream")
        if (header >> 3) & 0x0F == 1:                # OBU_SEQUENCE_HEADER
            if found is not None:
                raise ValueError("more than one AV1 sequence header")
            bits = _Bits(payload[pos:pos + size])
            bits.read(3)                             # seq_profile
            bits.read(1)                             # still_picture
            if bits.read(1):                         # reduced_still_picture_header
                bits.read(5)
            else:
                if bits.read(1):                     # timing_info_present_flag: not in still images
                    raise ValueError("unexpected AV1 timing info")
                delay_present = bits.read(1)
                for _ in range(bits.read(5) + 1):    # operating points
                    bits.read(12)
                    if bits.read(5) > 7:
                        bits.read(1)
                    if delay_present and bits.read(1):
                        bits.read(4)
            wb, hb = bits.read(4) + 1, bits.read(4) + 1
            found = bits.read(wb) + 1, bits.read(hb) + 1
        pos += size
    if found is None:
        raise ValueError("no AV1 sequence header")
    return found


def _compact(avif: bytes) -> bytes:
    """Pillow's AVIF file -> 0x01 || u8 len(properties) || properties || AV1 payload."""
    try:
        top = {k: (a, b) for k, a, b in _children(avif, 0, len(avif))}
        m0, m1 = top[b"meta"]
        meta = {k: (a, b) for k, a, b in _children(avif, m0 + 12, m1)}
        p0, p1 = meta[b"iprp"]
        ipco = next((a, b) for k, a, b in _children(avif, p0 + 8, p1) if k == b"ipco")
        props = b"".join(avif[a:b] for k, a, b in _children(avif, ipco[0] + 8, ipco[1]) if k != b"ispe")
        d0, d1 = top[b"mdat"]
        payload = avif[d0 + 8:d1]
        kinds = [k for k, _, _ in _children(props, 0, len(props))]
    except (KeyError, StopIteration, ValueError, struct.error):
        raise RuntimeError("libavif wrote an AVIF layout privcodec does not know") from None
    if len(props) >= 256 or b"av1C" not in kinds:
        raise RuntimeError("libavif wrote an AVIF layout privcodec does not know")
    return b"\x01" + bytes([len(props)]) + props + payload


def _rebuild(props: bytes, payload: bytes, width: int, height: int) -> bytes:
    ftyp = _box(b"ftyp", b"avif" + bytes(4) + b"avifmif1miaf")
    kinds = [k for k, _, _ in _children(props, 0, len(props))]
    ispe = _full_box(b"ispe", struct.pack(">II", width, height))
    assoc = bytes([1]) + bytes((0x80 if k == b"av1C" else 0) | (i + 2) for i, k in enumerate(kinds))
    ipma = _full_box(b"ipma", struct.pack(">IHB", 1, 1, len(assoc)) + assoc)
    iprp = _box(b"iprp", _box(b"ipco", ispe + props) + ipma)
    hdlr = _full_box(b"hdlr", bytes(4) + b"pict" + bytes(12) + b"\x00")
    pitm = _full_box(b"pitm", struct.pack(">H", 1))
    iinf = _full_box(b"iinf", struct.pack(">H", 1) + _full_box(b"infe", struct.pack(">HH", 1, 0) + b"av01\x00", 2))

    def meta(offset: int) -> bytes:
        iloc = _full_box(b"iloc", bytes([0x44, 0x00]) + struct.pack(">HHHHII", 1, 1, 0, 1, offset, len(payload)))
        return _full_box(b"meta", hdlr + pitm + iloc + iinf + iprp)

    offset = len(ftyp) + len(meta(0)) + 8
    return ftyp + meta(offset) + _box(b"mdat", payload)


def _expand(stream: bytes, width: int, height: int) -> bytes:
    if stream[:1] != b"\x01" or len(stream) < 2:
        raise ValueError("malformed group stream")
    n = stream[1]
    payload = stream[2 + n:]
    if av1_max_frame_size(payload) != (width, height):
        raise ValueError("stream does not fit its group")
    return _rebuild(stream[2:2 + n], payload, width, height)


def encode_groups(image: np.ndarray, block_groups: np.ndarray, quality: float, codec_id: str = CODEC_ID,
                  effort: int = 0) -> dict[int, bytes]:
    from PIL import Image

    from .. import tiles
    from ..threads import threads

    # libavif encoder threads, counted once per photo.  Streams may differ in their bits between
    # thread counts; each is still a function of its own group only, and every AV1 decoder gives
    # the same pixels for the same bits.
    encoder_threads = threads()

    def encode_crop(crop: np.ndarray) -> bytes:
        buf = io.BytesIO()
        # past level 8 (archives, up to visually lossless) chroma keeps full resolution
        Image.fromarray(crop).save(buf, "AVIF", quality=avif_quality(quality), speed=SPEED[effort],
                                   subsampling=SUBSAMPLING if quality <= 8 else "4:4:4", max_threads=encoder_threads)
        return _compact(buf.getvalue())

    def encode_boxes(pixels: np.ndarray, grid: np.ndarray) -> dict[int, bytes]:
        return boxes.encode(pixels, grid, "inpaint", encode_crop)   # the fill uses g's own pixels only

    _check_id(codec_id)
    if codec_id == "avif-1":
        tiles.check_work(block_groups, encoding=True)
        return encode_boxes(image, block_groups)
    return tiles.encode(image, np.asarray(block_groups), encode_boxes, TILE_BLOCKS)


def decode_groups(streams: dict[int, bytes], block_groups: np.ndarray, height: int, width: int, quality: float,
                  digest: bytes | None = None, codec_id: str = CODEC_ID):
    """Decode any subset of groups; block_groups holds -2 (unknown) where the group is not decoded.
    Returns (uint8 image (H,W,3), bool mask of decoded pixels).  ValueError on a bad stream."""
    from .. import tiles

    _check_id(codec_id)
    if digest is not None and not names_weights(model_digest(codec_id), digest):
        raise ValueError(f"not an {codec_id} stream set")

    def decode_boxes(parts, grid, h, w):
        return boxes.decode(parts, grid, h, w, lambda s, bw, bh: (_expand(s, bw, bh), "AVIF"))

    if codec_id == "avif-1":
        tiles.check_work(block_groups, streams)
        return decode_boxes(streams, block_groups, height, width)
    return tiles.decode(streams, np.asarray(block_groups), height, width, decode_boxes, TILE_BLOCKS)


def _check_id(codec_id: str) -> None:
    if codec_id not in CODEC_IDS:
        raise ValueError(f"unknown codec id {codec_id!r}")
