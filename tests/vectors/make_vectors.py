"""Negative test vectors: one file per reader rule of FORMAT.md, each derived from a test vector by one
change (with the checksum recomputed, so the rule itself is what rejects the file).  The rules shared
by versions 2 to 4 are broken in the version-2 vector (tests/fixtures/v2/format-md-vector.prvc, the
test vector of FORMAT.md before version 3; these files predate version 3 and stay as they were);
the rules of version 3's core (varints, the banded block map, the hash over the public payloads) in
the version-3 vector (tests/fixtures/v3/format-md-vector.prvc), with names starting `v3-`; those of
version 4 (the 16-byte checksum) in FORMAT.md's version-4 vector, names starting `v4-`.

    PYTHONPATH=. python tests/vectors/make_vectors.py     # rewrites tests/vectors/negative/ and vectors.json

vectors.json lists, per file, the rule it breaks and what a reader must do:
  "not-prvc"  — reject: not a .prvc file          "version" — reject: unsupported version
  "corrupt"   — reject as corrupted or tampered (the same message whatever the rule)
  "decrypt"   — parses, but opening it with test-vector-key must fail (wrong key or tampering)
Another implementation can run the same set: read each file, compare the outcome.
"""
from __future__ import annotations

import hashlib
import json
import struct
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from test_container import VECTOR_KEY_SECRET, VECTOR_SIGNING_SECRET, vector_container, vector_random  # noqa: E402

from privcodec.container import PROTECTED, ProtectedGroup, PublicGroup, open_container, seal  # noqa: E402
from privcodec.container import crypto  # noqa: E402
from privcodec import varint  # noqa: E402
from privcodec.container import format as fmt  # noqa: E402
from privcodec.keys import Identity, SigningKey  # noqa: E402

KEY = Identity("symmetric", VECTOR_KEY_SECRET)
BASE = vector_container(version=2)
C = open_container(BASE)
CORE = C._core
CORE_LEN = len(CORE)
# Offsets in the vector's core (FORMAT.md, "Core"): magic 0, version 4, file_id 5, width 21, height 25,
# block 29, codec_id_len 31, codec_id 32..41, weights 42..73, quality 74..81, block map 82.
W, H, BLK, CID_LEN, QUALITY, RUNS = 21, 25, 29, 31, 74, 82


def checksummed(body: bytes) -> bytes:
    return body + hashlib.sha256(body).digest()


def with_core(core: bytes, signed_again: bool = True) -> bytes:
    """Replace the core; re-sign it (so only the core rule is broken) and recompute the checksum."""
    sigs = [fmt.Signature(s.public_key, crypto.sign(VECTOR_SIGNING_SECRET, hashlib.sha256(core).digest()))
            for s in C.signatures] if signed_again else C.signatures
    return fmt._assemble(core, C.public_groups, C._chunks, 2, sigs)


def edit_core(offset: int, new: bytes) -> bytes:
    return with_core(CORE[:offset] + new + CORE[offset + len(new):])


def rest_after_core() -> bytes:
    return BASE[CORE_LEN:-32]


def edit_after_core(offset: int, new: bytes) -> bytes:
    rest = rest_after_core()
    return checksummed(CORE + rest[:offset] + new + rest[offset + len(new):])


def sealed(**changes) -> bytes:
    """A file sealed with writer checks off: for rules only a malicious sealer can break."""
    require = fmt._require
    fmt._require = lambda ok, message: None
    try:
        kwargs = dict(width=32, height=16, block=16, codec_id="test-codec", weights_sha256=hashlib.sha256(b"weights").digest(),
                      quality=4.0, block_map=np.array([[0, PROTECTED]]),
                      public=[PublicGroup(0, "background", 1.0, b"public pixels")],
                      protected=[ProtectedGroup(1, "face", 0.5, np.array([[False, True]]), b"secret pixels", [KEY.recipient])],
                      signer=SigningKey(VECTOR_SIGNING_SECRET), _random=vector_random(), version=2)
        kwargs.update(changes)
        return seal(**kwargs)
    finally:
        fmt._require = require


def public_entry_offset() -> int:
    return CORE.index(b"\x00\x00\x0abackground")   # u16 index 0, label length 10


def vectors() -> dict[str, tuple[str, str, bytes]]:
    sig_off = 0                    # signatures section: u8 n, u8 type, 32 pub, 64 sig
    table_off = 1 + 1 + 32 + 64    # chunk table: u16 n, u16 index, u16 n_stanzas, stanza (73), mac (32)
    stanza_off = table_off + 6
    p = public_entry_offset()
    runs = struct.pack(">I", 2) + struct.pack(">hI", 0, 1) + struct.pack(">hI", -1, 1)
    assert CORE[RUNS:RUNS + len(runs)] == runs
    out = {
        "magic": ("not-prvc", "the file does not start with PRVC", b"PRVD" + BASE[4:]),
        "version-5": ("version", "version is not 1, 2, 3 or 4", BASE[:4] + b"\x05" + BASE[5:]),
        "checksum": ("corrupt", "the checksum does not match", BASE[:-1] + bytes([BASE[-1] ^ 1])),
        "truncated": ("corrupt", "a length runs past the end", checksummed(BASE[:-33])),
        "trailing-byte": ("corrupt", "bytes between the last body and the checksum", checksummed(BASE[:-32] + b"\0")),
        "width-0": ("corrupt", "width is 1..65536", edit_core(W, struct.pack(">I", 0))),
        "block-0": ("corrupt", "block is 1..1024", edit_core(BLK, struct.pack(">H", 0))),
        "too-many-cells": ("corrupt", "cells ≤ 4194304",
                           edit_core(W, struct.pack(">IIH", 65536, 65536, 1))),
        "codec-id-control-char": ("corrupt", "codec id is ASCII 0x21..0x7E", edit_core(CID_LEN + 1, b"\x09")),
        "quality-nan": ("corrupt", "quality is finite", edit_core(QUALITY, struct.pack(">d", float("nan")))),
        "quality-9": ("corrupt", "1 ≤ quality ≤ 8", edit_core(QUALITY, struct.pack(">d", 9.0))),
        "quality-100": ("corrupt", "1 ≤ quality ≤ 8", edit_core(QUALITY, struct.pack(">d", 100.0))),
        "runs-short": ("corrupt", "run counts sum to cells", edit_core(RUNS + 4 + 6 + 2, struct.pack(">I", 2))),
        "run-count-0": ("corrupt", "every count ≥ 1", edit_core(RUNS + 4 + 2, struct.pack(">I", 0))),
        "runs-not-merged": ("corrupt", "adjacent runs differ", edit_core(RUNS + 4 + 6, struct.pack(">h", 0))),
        "block-map-unknown-group": ("corrupt", "block map values are -1, -2 or a public index",
                                    edit_core(RUNS + 4, struct.pack(">h", 7))),
        "protected-blocks-without-group": ("corrupt", "protected blocks need a declared protected group",
                                           with_core(CORE[:-(2 + 6 + 32)] + struct.pack(">H", 0))),
        "label-control-char": ("corrupt", "labels are printable UTF-8", edit_core(p + 3, b"\x1b")),
        "public-payload-hash": ("corrupt", "a public payload matches its hash",
                                checksummed(BASE[:-32 - len(C._chunks[0].body) - 1] + b"X" + BASE[-32 - len(C._chunks[0].body):-32])),
        "public-group-owns-no-cell": ("corrupt", "every public group owns a cell",
                                      with_core(CORE[:RUNS] + struct.pack(">I", 1) + struct.pack(">hI", -1, 2)
                                                + CORE[RUNS + len(runs):])),
        "chunk-len-28": ("corrupt", "chunk_len ≥ 29", edit_core(CORE_LEN - 32 - 4, struct.pack(">I", 28))),
        "chunk-hash": ("corrupt", "a chunk matches the hash in the core", checksummed(BASE[:-33] + bytes([BASE[-33] ^ 1]))),
        "chunk-index-undeclared": ("corrupt", "chunk-table indices are declared", edit_after_core(table_off + 2, struct.pack(">H", 5))),
        "stanza-type-4": ("corrupt", "stanza type is 1, 2 or 3", edit_after_core(stanza_off, b"\x04")),
        "zero-stanzas": ("corrupt", "n_stanzas is 1..256", edit_after_core(table_off + 4, struct.pack(">H", 0))),
        "signature-invalid": ("corrupt", "a present signature verifies", edit_after_core(sig_off + 2 + 32, bytes([rest_after_core()[sig_off + 2 + 32] ^ 1]))),
        "signature-type-2": ("corrupt", "signature type is 1", edit_after_core(sig_off + 1, b"\x02")),
        "two-signatures": ("corrupt", "at most one signature", edit_after_core(sig_off, b"\x02")),
        "stanza-mac": ("decrypt", "the stanza MAC verifies", edit_after_core(stanza_off + 73, bytes([rest_after_core()[stanza_off + 73] ^ 1]))),
        "wrapped-key": ("decrypt", "the wrapped content key authenticates", edit_after_core(stanza_off + 30, bytes([rest_after_core()[stanza_off + 30] ^ 1]))),
        "mask-outside-protected-cells": ("corrupt", "an opened mask lies inside the -1 cells (opened with the key)",
                                         sealed(protected=[ProtectedGroup(1, "face", 0.5, np.array([[True, True]]), b"secret pixels",
                                                                          [KEY.recipient])])),
    }
    # a duplicated stanza: sorted order must be strictly increasing
    chunk = C._chunks[0]
    dup = fmt._Chunk(chunk.index, chunk.body, chunk.stanzas * 2, chunk.mac)
    out["duplicate-stanza"] = ("corrupt", "stanzas strictly increasing (sorted, unique)",
                               fmt._assemble(CORE, C.public_groups, [dup], 2, C.signatures))
    return out


# ---------------------------------------------------------------- version 3's core

BASE3 = vector_container(version=3)
C3 = open_container(BASE3)
V = fmt.uvarint


raw_uvarint = varint.encode   # LEB128 without the writer's range check: for values a reader must refuse


def core3(*, size=(V(32), V(16), V(16)), payload_len=V(13), map_bytes=V(1) + V(2) + V(2) + V(1) + V(1) + V(1)) -> bytes:
    """The version-3 vector's core, rebuilt from its fields (FORMAT.md, "Core"), with some replaced."""
    head = BASE3[:21]                                          # magic, version, file_id
    after_size = 21 + 3
    fixed = BASE3[after_size:after_size + 1 + 10 + 32 + 8]     # codec id, weights hash, quality
    public = V(1) + V(0) + b"\x0abackground" + struct.pack(">d", 1.0) + payload_len
    chunk = C3._chunks[0]
    protected = V(1) + V(1) + V(len(chunk.body)) + hashlib.sha256(chunk.body).digest()
    core = head + b"".join(size) + fixed + public + protected + V(len(map_bytes)) + map_bytes
    return core


def with_core3(core: bytes) -> bytes:
    """Replace the version-3 core; re-sign it, so only the core's rule is broken."""
    core_hash = fmt.core_hash_of(core, C3.public_groups, 3)
    sigs = [fmt.Signature(s.public_key, crypto.sign(VECTOR_SIGNING_SECRET, core_hash)) for s in C3.signatures]
    return fmt._assemble(core, C3.public_groups, C3._chunks, 3, sigs)


def band(rows: int, *runs: int) -> bytes:
    return V(rows) + V(len(runs) // 2) + b"".join(V(v) for v in runs)


def vectors_v3() -> dict[str, tuple[str, str, bytes]]:
    assert core3() == C3._core, "core3() no longer rebuilds the version-3 vector's core"
    payload_at = len(BASE3) - 32 - len(C3._chunks[0].body) - len(b"public pixels")
    tall = (V(32), V(32), V(16))   # a 2 × 2 grid
    return {
        "v3-varint-not-shortest": ("corrupt", "uvarints are in shortest form", with_core3(core3(size=(b"\xa0\x00", V(16), V(16))))),
        "v3-varint-too-large": ("corrupt", "a uvarint is < 2^32 (at most 5 bytes)",
                                with_core3(core3(payload_len=raw_uvarint(13 + 2**32)))),
        "v3-map-cut-in-a-varint": ("corrupt", "the block map ends on a whole uvarint", with_core3(core3(map_bytes=band(1, 2, 1, 1, 1) + b"\x81"))),
        "v3-band-of-0-rows": ("corrupt", "every band has ≥ 1 row", with_core3(core3(map_bytes=band(0, 1, 2) + band(1, 2, 1, 1, 1)))),
        "v3-bands-short": ("corrupt", "the bands' rows sum to rows", with_core3(core3(size=tall, map_bytes=band(1, 2, 1, 1, 1)))),
        "v3-bands-long": ("corrupt", "the bands' rows sum to rows", with_core3(core3(map_bytes=band(2, 2, 1, 1, 1)))),
        "v3-bands-not-merged": ("corrupt", "adjacent bands differ", with_core3(core3(size=tall, map_bytes=band(1, 2, 1, 1, 1) * 2))),
        "v3-run-count-0": ("corrupt", "every run count ≥ 1",
                           with_core3(core3(size=(V(48), V(16), V(16)), map_bytes=band(1, 2, 2, 0, 0, 1, 1)))),
        "v3-runs-short": ("corrupt", "a band's run counts sum to cols (not only the map's to cells)",
                          with_core3(core3(size=tall, map_bytes=band(1, 2, 1, 1, 2) + band(1, 2, 1)))),
        "v3-runs-not-merged": ("corrupt", "adjacent runs differ",
                               with_core3(core3(size=tall, map_bytes=band(1, 2, 1, 2, 1) + band(1, 1, 2)))),
        "v3-symbol-unknown": ("corrupt", "a symbol is 0, 1 or 2 + a public group's position",
                              with_core3(core3(size=tall, map_bytes=band(1, 2, 1, 3, 1) + band(1, 1, 2)))),
        "v3-public-payload": ("corrupt", "the signature covers the public payloads (core_hash)",
                              checksummed(BASE3[:payload_at] + b"P" + BASE3[payload_at + 1:-32])),
    }


# ---------------------------------------------------------------- version 4

BASE4 = vector_container()


C4 = open_container(BASE4)


def with_core4(core: bytes) -> bytes:
    """Replace the version-4 core; re-sign it, so only the core's rule is broken."""
    core_hash = fmt.core_hash_of(core, C4.public_groups, 4)
    sigs = [fmt.Signature(s.public_key, crypto.sign(VECTOR_SIGNING_SECRET, core_hash)) for s in C4.signatures]
    return fmt._assemble(core, C4.public_groups, C4._chunks, 4, sigs)


def vectors_v4() -> dict[str, tuple[str, str, bytes]]:
    body = BASE4[:-16]
    score = b"\x0abackground" + struct.pack(">H", 10000)
    assert C4._core.count(score) == 1
    return {
        "v4-score-above-1": ("corrupt", "a score is at most 10000 (1.0)",
                             with_core4(C4._core.replace(score, score[:-2] + struct.pack(">H", 10001)))),
        "v4-checksum": ("corrupt", "the checksum is SHA-256(everything before it)[0:16]",
                        body + bytes([BASE4[-16] ^ 1]) + BASE4[-15:]),
        "v4-checksum-32-bytes": ("corrupt", "a version-4 checksum is 16 bytes (not version 3's 32)",
                                 body + hashlib.sha256(body).digest()),
    }


def main() -> None:
    neg = HERE / "negative"
    neg.mkdir(exist_ok=True)
    for old in neg.glob("*.prvc"):
        old.unlink()
    index = {}
    for name, (outcome, rule, data) in sorted({**vectors(), **vectors_v3(), **vectors_v4()}.items()):
        (neg / f"{name}.prvc").write_bytes(data)
        index[name] = {"file": f"negative/{name}.prvc", "rule": rule, "expect": outcome,
                       "when": "opening with test-vector-key (FORMAT.md)" if outcome == "decrypt" or "opened" in rule
                       else "reading"}
    (HERE / "vectors.json").write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(index)} negative vectors")


if __name__ == "__main__":
    main()
