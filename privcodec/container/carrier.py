"""Carriers: an ordinary JPEG or PNG whose pixels are the keyless view, with the whole .prvc inside
(FORMAT.md, "Carriers").  Bytes only: this module neither decodes pixels nor checks the container.

    .prvc bytes + JPEG/PNG of the public view ─▶ embed ─▶ carrier (any viewer shows the public view)
    carrier ─▶ extract ─▶ .prvc bytes (privcodec decodes these, never the carrier's pixels)

JPEG: APP11 segments (each ≤ 64 KiB), every one tagged and numbered, placed right after SOI and
the JFIF APP0.  PNG: one private, unsafe-to-copy ancillary chunk ``prVC`` before the first IDAT, so
an editor that changes the pixels drops it instead of carrying stale data along.
"""
from __future__ import annotations

import struct
import zlib

from ..errors import FormatError

JPEG_SOI = b"\xff\xd8"
APP11 = 0xEB
JPEG_TAG = b"privcodec\x00"               # 10 bytes, then u16 sequence number, u16 segment count
MAX_SEGMENT_DATA = 0xFFFF - 2 - len(JPEG_TAG) - 4
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_CHUNK = b"prVC"
CARRIER_KINDS = ("jpeg", "png")

NO_DATA = "no privcodec data in this image: it was probably re-encoded or stripped by an app or a platform"
DAMAGED = "the privcodec data in this image is damaged (corrupted or tampered)"


def kind_of(data: bytes) -> str | None:
    """"jpeg" or "png" for an image that could be a carrier, else None."""
    if data[:2] == JPEG_SOI:
        return "jpeg"
    if data[:8] == PNG_SIGNATURE:
        return "png"
    return None


def embed(image: bytes, container: bytes) -> bytes:
    """The carrier: ``image`` (a JPEG or PNG without privcodec data) with ``container`` inside."""
    kind = kind_of(image)
    if kind == "jpeg":
        return _embed_jpeg(image, container)
    if kind == "png":
        return _embed_png(image, container)
    raise ValueError("a carrier image must be JPEG or PNG")


def extract(data: bytes) -> bytes:
    """The .prvc bytes inside a carrier; FormatError(NO_DATA) if there are none."""
    kind = kind_of(data)
    if kind == "jpeg":
        return _extract_jpeg(data)
    if kind == "png":
        return _extract_png(data)
    raise FormatError(NO_DATA)


def replace(carrier: bytes, container: bytes) -> bytes:
    """The same carrier image with another container inside (strip and grant keep the pixels)."""
    try:
        return embed(_without(carrier), container)
    except ValueError:
        raise FormatError(DAMAGED) from None


# ---------------------------------------------------------------- JPEG


_STANDALONE = {0x01} | set(range(0xD0, 0xD9))    # TEM, RSTn, SOI: markers without a length field


def _jpeg_segments(data: bytes):
    """(marker, start, end) of every marker segment before the scan data; FormatError on a broken stream.
    (A carrier's segments come right after SOI, so the walk stops at the first scan.)"""
    pos = 2
    while pos + 2 <= len(data):
        if data[pos] != 0xFF:
            raise FormatError(DAMAGED)
        marker = data[pos + 1]
        if marker == 0xFF:                 # fill byte before a marker
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker == 0xDA or pos + 4 > len(data):   # start of scan: entropy-coded data follows
            return
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if length < 2 or pos + 2 + length > len(data):
            raise FormatError(DAMAGED)
        yield marker, pos, pos + 2 + length
        pos += 2 + length


def _embed_jpeg(image: bytes, container: bytes) -> bytes:
    parts = [container[i:i + MAX_SEGMENT_DATA] for i in range(0, len(container), MAX_SEGMENT_DATA)] or [b""]
    if len(parts) > 0xFFFF:
        raise ValueError("container too large for a JPEG carrier")
    segments = b"".join(
        b"\xff" + bytes([APP11]) + struct.pack(">H", 2 + len(JPEG_TAG) + 4 + len(p)) + JPEG_TAG
        + struct.pack(">HH", i, len(parts)) + p for i, p in enumerate(parts))
    insert = 2
    for marker, start, end in _jpeg_segments(image):
        if marker == 0xE0 and start == insert:     # keep JFIF APP0 first, as viewers expect
            insert = end
        break
    return image[:insert] + segments + image[insert:]


def _extract_jpeg(data: bytes) -> bytes:
    parts: dict[int, bytes] = {}
    total = None
    for marker, start, end in _jpeg_segments(data):
        body = data[start + 4:end]
        if marker != APP11 or not body.startswith(JPEG_TAG):
            continue
        if len(body) < len(JPEG_TAG) + 4:
            raise FormatError(DAMAGED)
        seq, count = struct.unpack(">HH", body[len(JPEG_TAG):len(JPEG_TAG) + 4])
        if count == 0 or seq >= count or seq in parts or (total is not None and count != total):
            raise FormatError(DAMAGED)
        total = count
        parts[seq] = body[len(JPEG_TAG) + 4:]
    if total is None:
        raise FormatError(NO_DATA)
    if len(parts) != total:
        raise FormatError(DAMAGED)
    return b"".join(parts[i] for i in range(total))


# ---------------------------------------------------------------- PNG


def _png_chunks(data: bytes):
    pos = 8
    while pos + 12 <= len(data):
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        ctype = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise FormatError(DAMAGED)
        yield ctype, pos, end
        pos = end
        if ctype == b"IEND":
            return


def _embed_png(image: bytes, container: bytes) -> bytes:
    if len(container) >= 1 << 31:
        raise ValueError("container too large for a PNG carrier")
    chunk = struct.pack(">I", len(container)) + PNG_CHUNK + container + \
        struct.pack(">I", zlib.crc32(PNG_CHUNK + container) & 0xFFFFFFFF)
    for ctype, start, _ in _png_chunks(image):
        if ctype == b"IDAT":
            return image[:start] + chunk + image[start:]
    raise ValueError("PNG without image data")


def _extract_png(data: bytes) -> bytes:
    found, seen_idat = None, False
    for ctype, start, end in _png_chunks(data):
        seen_idat |= ctype == b"IDAT"
        if ctype != PNG_CHUNK:
            continue
        if seen_idat:
            raise FormatError(DAMAGED)    # the layout puts prVC before the image data
        body, crc = data[start + 8:end - 4], data[end - 4:end]
        if found is not None or struct.pack(">I", zlib.crc32(PNG_CHUNK + body) & 0xFFFFFFFF) != crc:
            raise FormatError(DAMAGED)
        found = body
    if found is None:
        raise FormatError(NO_DATA)
    return found


def _without(carrier: bytes) -> bytes:
    """The carrier image with its privcodec data removed."""
    kind = kind_of(carrier)
    if kind == "jpeg":
        out, pos = [carrier[:2]], 2
        for marker, start, end in _jpeg_segments(carrier):
            if marker == APP11 and carrier[start + 4:end].startswith(JPEG_TAG):
                out.append(carrier[pos:start])
                pos = end
        return b"".join(out) + carrier[pos:]
    if kind == "png":
        out, pos = [], 0
        for ctype, start, end in _png_chunks(carrier):
            if ctype == PNG_CHUNK:
                out.append(carrier[pos:start])
                pos = end
        return b"".join(out) + carrier[pos:]
    raise FormatError(NO_DATA)
