"""uvarint: unsigned LEB128 as FORMAT.md defines it ("Conventions"), for the container's fields,
the tile framing and the codec streams (the block map, millions of values in a hostile file, is
read vectorised: container/format.py, _uvarints).

    encode(300) == b"\\xac\\x02";  decode(b"\\xac\\x02") == (300, 2)

Seven bits a byte, least significant first, the high bit set on every byte but the last.  Only
the shortest form is valid and values are below 2**32 (at most 5 bytes), so every value has one
encoding: a reader that accepted two would let a file change without its bytes' meaning changing.
"""
from __future__ import annotations

MAX_BYTES = 5
LIMIT = 1 << 32


def encode(n: int) -> bytes:
    """Shortest form.  No range check: writers of FORMAT.md fields check ``n < LIMIT``
    (the negative test vectors use this to make values a reader must refuse)."""
    if n < 0:
        raise ValueError("a uvarint is unsigned")
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def decode(buf: bytes, pos: int = 0) -> tuple[int, int]:
    """(value, position after it).  ValueError if ``buf`` ends inside it, or it is not the
    shortest form of a value below 2**32."""
    value = 0
    for k in range(MAX_BYTES):
        if pos >= len(buf):
            raise ValueError("truncated uvarint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << (7 * k)
        if not byte & 0x80:
            if (byte == 0 and k) or value >= LIMIT:
                raise ValueError("invalid uvarint")
            return value, pos
    raise ValueError("invalid uvarint")
