"""Byte layout of .prvc files: seal, parse, verify (FORMAT.md is the spec).

    seal(groups, keys[, signer]) ─▶ chunks ─▶ core (commits to every chunk) ─▶ core_hash
                                 ─▶ signature, stanzas + stanza MACs ─▶ bytes
    bytes ─▶ open_container (checksum, fields, hashes, signature) ─▶ Container ─▶ unlock / strip / grant

Version 4 is written; versions 1 to 3 (files of earlier privcodec releases) are
still read, and strip/grant/rekey keep a file's version.  Version 3 is version 2
with a leaner core (varints, a banded block map, one hash over the public groups
instead of one per group); its crypto is version 2's.  Version 4 is version 3 with
16-byte checksum and weights id (SHA-256 truncated) and scores in 1/10000 (u16): 32 + 6 per group
fewer bytes, which a small photo's file feels.  Parsing is strict and canonical: one file,
one encoding.  Every failure on untrusted bytes raises FormatError with a
constant message, so the error says *that* the file is bad, never where
(SECURITY.md).
"""
from __future__ import annotations

import hashlib
import hmac
import math
import os
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .. import limits, varint
from ..errors import DecryptionError, FormatError
from . import crypto
from .crypto import KEY_ID_LEN, NONCE_LEN, TAG_LEN, WRAPPED_LEN, Random, Stanza

if TYPE_CHECKING:
    from ..keys import Identity, Recipient, SigningKey

MAGIC = b"PRVC"
VERSION = 4              # what seal writes
WRITABLE_VERSIONS = (2, 3, 4)   # 2 and 3 only for fixtures and the older versions' test vectors
READABLE_VERSIONS = (1, 2, 3, 4)
PROTECTED = -1   # block_map value: a block of some protected (encrypted) group
REDACTED = -2    # block_map value: a block of a redacted group (nothing stored)

# Limits: a hostile file cannot make us allocate more than these allow.
MAX_SIDE = 65536
MAX_BLOCK = 1024
MAX_CELLS = 1 << 22
MAX_GROUPS = 4096          # group indices are 0..MAX_GROUPS-1
METADATA_INDEX = 0xFFFF    # v2: the protected-table entry of the encrypted EXIF/XMP chunk (not a group)
MAX_LABEL = 255
MAX_CODEC_ID = 64
MAX_STANZAS = 256
MAX_STANZAS_PER_FILE = 1 << 14     # a hostile file must not cost a million stanza checks
MAX_SIGNATURES = 1
MAX_PAD = 1 << 20
HASH_LEN = 32
SHORT_HASH_LEN = 16        # v4: the checksum and the weights id are SHA-256 cut to 16 bytes
SCORE_SCALE = 10000        # v4: a score in [0, 1] is stored as u16 round(score * 10000): 0.87 reads back as 0.87
FILE_ID_LEN = 16
MIN_CHUNK = NONCE_LEN + 1 + TAG_LEN
SIG_ED25519 = 1
# v3 block-map symbols: 0 redacted, 1 protected, 2 + k the k-th public group in table order
SYMBOL_REDACTED, SYMBOL_PROTECTED, SYMBOL_FIRST_PUBLIC = 0, 1, 2

CORRUPT = "not a valid .prvc file (corrupted or tampered)"
NOT_PRVC = "not a .prvc file"
CANNOT_DECRYPT = "a key matched a protected group but could not decrypt it (wrong key or tampered file)"
OPENS_NOTHING = "the key opens no protected group in this file"
TOO_MANY_TRIALS = (f"too many recipient stanzas to try with one key ({limits.MAX_FAILED_UNWRAPS} failed): "
                   "refusing a possibly hostile file")
TOO_MANY_SCRYPT = (f"more than {limits.MAX_SCRYPT_RUNS} different passphrase salts in this file: refusing to run "
                   "scrypt more often (a possibly hostile file)")


@dataclass
class PublicGroup:
    index: int
    label: str
    score: float
    payload: bytes


@dataclass
class ProtectedGroup:
    index: int
    label: str
    score: float
    block_mask: np.ndarray           # bool, grid shape
    payload: bytes
    recipients: list[Recipient]


@dataclass
class OpenedGroup:
    index: int
    label: str
    score: float
    block_mask: np.ndarray
    payload: bytes
    opened_by: str = ""              # key id of the identity that opened it
    opened_kind: str = ""            # its key type: symmetric, x25519 or passphrase


@dataclass(frozen=True)
class RecipientInfo:
    kind: str                        # "symmetric" or "x25519"
    key_id: str                      # v1: 16 hex characters; v2: "" (recipients are anonymous)


@dataclass
class ChunkInfo:
    index: int
    length: int                      # bytes of the chunk (nonce + ciphertext + tag)
    present: bool                    # False once stripped
    recipients: list[RecipientInfo] = field(default_factory=list)

    @property
    def key_ids(self) -> list[str]:
        return [r.key_id for r in self.recipients]


@dataclass
class _Chunk:
    index: int
    body: bytes
    stanzas: list[Stanza]
    mac: bytes = b""                 # v2 stanza-list MAC


@dataclass(frozen=True)
class Signature:
    public_key: bytes                # Ed25519
    signature: bytes

    @property
    def key_id(self) -> str:
        return crypto.signing_key_id(self.public_key).hex()


class _Bad(Exception):
    """Internal: untrusted bytes failed a check; becomes FormatError(CORRUPT)."""


def _check(ok: bool) -> None:
    if not ok:
        raise _Bad


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def grid_shape(width: int, height: int, block: int) -> tuple[int, int]:
    return math.ceil(height / block), math.ceil(width / block)


def _valid_label(label: object) -> bool:
    try:
        return isinstance(label, str) and label.isprintable() and 1 <= len(label.encode("utf-8")) <= MAX_LABEL
    except UnicodeEncodeError:   # lone surrogates
        return False


def _label_bytes(label: str) -> bytes:
    return bytes([len(label.encode())]) + label.encode()


# ---------------------------------------------------------------- writing


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run-length coding of a 1-D array: (each run's value, its length)."""
    starts = np.concatenate([[0], np.flatnonzero(values[1:] != values[:-1]) + 1])
    return values[starts], np.diff(np.append(starts, values.size))


def _rle(block_map: np.ndarray) -> bytes:
    values, counts = _runs(block_map.ravel())
    runs = np.empty(values.size, dtype=[("v", ">i2"), ("c", ">u4")])
    runs["v"], runs["c"] = values, counts
    return struct.pack(">I", runs.size) + runs.tobytes()


def uvarint(n: int) -> bytes:
    """Unsigned LEB128, shortest form; FORMAT.md's uvarints hold values below 2**32."""
    _require(0 <= n < varint.LIMIT, "uvarint out of range")
    return varint.encode(n)


def _banded_map(block_map: np.ndarray, public_indices: Sequence[int]) -> bytes:
    """v3 block map: cells as symbols (0 redacted, 1 protected, 2 + k the k-th public group), cut into
    bands of identical consecutive rows, each band's row run-length coded.  A photo's groups are
    blobs and boxes, so most rows repeat the one above: a few bytes per band instead of six per run."""
    lut = np.zeros(MAX_GROUPS + 2, dtype=np.int64)       # indexed by block_map value + 2
    lut[REDACTED + 2], lut[PROTECTED + 2] = SYMBOL_REDACTED, SYMBOL_PROTECTED
    lut[np.asarray(public_indices, dtype=np.int64) + 2] = SYMBOL_FIRST_PUBLIC + np.arange(len(public_indices))
    symbols = lut[block_map.astype(np.int64) + 2]
    out, row_start = [], 0
    rows = symbols.shape[0]
    for r in range(1, rows + 1):
        if r == rows or not np.array_equal(symbols[r], symbols[row_start]):
            values, counts = _runs(symbols[row_start])
            out += [r - row_start, values.size, *np.stack([values, counts], 1).ravel().tolist()]
            row_start = r
    return b"".join(uvarint(v) for v in out)


def checksum_len(version: int) -> int:
    return SHORT_HASH_LEN if version >= 4 else HASH_LEN


def weights_id_len(version: int) -> int:
    """Bytes of the weights hash a file of this version stores (its first bytes)."""
    return SHORT_HASH_LEN if version >= 4 else HASH_LEN


def _score_bytes(score: float, version: int) -> bytes:
    return struct.pack(">H", round(score * SCORE_SCALE)) if version >= 4 else struct.pack(">d", score + 0.0)


def _core(file_id, width, height, block, codec_id, weights_sha256, quality, block_map, public, declared,
          version: int = VERSION) -> bytes:
    """declared: (index, chunk_len, chunk_sha256) per protected group (v1: no hash)."""
    if version >= 3:
        return _core_v3(file_id, width, height, block, codec_id, weights_sha256, quality, block_map, public, declared,
                        version)
    out = [MAGIC, bytes([version]), file_id, struct.pack(">IIH", width, height, block),
           bytes([len(codec_id)]), codec_id.encode("ascii"), weights_sha256, struct.pack(">d", quality),
           _rle(block_map), struct.pack(">H", len(public))]
    for g in public:
        out += [struct.pack(">H", g.index), _label_bytes(g.label), struct.pack(">dI", g.score + 0.0, len(g.payload)),
                _sha(g.payload)]
    out.append(struct.pack(">H", len(declared)))
    for index, length, digest in declared:
        out.append(struct.pack(">HI", index, length) + (digest if version >= 2 else b""))
    return b"".join(out)


def _core_v3(file_id, width, height, block, codec_id, weights_sha256, quality, block_map, public, declared,
             version: int = 3) -> bytes:
    """Versions 3 and 4 (v4: the weights hash's first 16 bytes, u16 scores)."""
    block_map_bytes = _banded_map(block_map, [g.index for g in public])
    out = [MAGIC, bytes([version]), file_id, uvarint(width), uvarint(height), uvarint(block),
           bytes([len(codec_id)]), codec_id.encode("ascii"), weights_sha256[:weights_id_len(version)],
           struct.pack(">d", quality), uvarint(len(public))]
    for g in public:
        out += [uvarint(g.index), _label_bytes(g.label), _score_bytes(g.score, version), uvarint(len(g.payload))]
    out.append(uvarint(len(declared)))
    for index, length, digest in declared:
        out += [uvarint(index), uvarint(length), digest]
    out += [uvarint(len(block_map_bytes)), block_map_bytes]
    return b"".join(out)


def core_hash_of(core: bytes, public: Sequence[PublicGroup], version: int) -> bytes:
    """What stanza MACs and signatures cover.  v1/v2: SHA-256(core), the core holding each public
    payload's hash; v3: SHA-256(core || public payloads), one hash instead of one per group (the
    table's lengths delimit the payloads)."""
    if version >= 3:
        h = hashlib.sha256(core)
        for g in public:
            h.update(g.payload)
        return h.digest()
    return _sha(core)


def _stanza_bytes(s: Stanza, version: int) -> bytes:
    ident = s.key_id if version == 1 or s.kind == crypto.SYMMETRIC else b""
    return bytes([crypto.TYPE_CODES[s.kind]]) + ident + s.arg + s.wrapped


def _canonical(stanzas: Sequence[Stanza], version: int) -> list[Stanza]:
    """v2 stores a chunk's stanzas sorted by their bytes: one encoding, and no order to leak."""
    return list(stanzas) if version == 1 else sorted(stanzas, key=lambda s: _stanza_bytes(s, version))


def _signature_section(signatures: Sequence[Signature]) -> bytes:
    return bytes([len(signatures)]) + b"".join(bytes([SIG_ED25519]) + s.public_key + s.signature for s in signatures)


def _assemble(core: bytes, public: Sequence[PublicGroup], chunks: Sequence[_Chunk], version: int,
              signatures: Sequence[Signature] = ()) -> bytes:
    out = [core]
    if version >= 2:
        out.append(_signature_section(signatures))
    out.append(struct.pack(">H", len(chunks)))
    for c in chunks:
        out.append(struct.pack(">H", c.index))
        if version == 1:
            out.append(_sha(c.body))
        out.append(struct.pack(">H", len(c.stanzas)))
        out += [_stanza_bytes(s, version) for s in c.stanzas]
        if version >= 2:
            out.append(c.mac)
    out += [g.payload for g in public] + [c.body for c in chunks]
    body = b"".join(out)
    return body + _sha(body)[:checksum_len(version)]


def padme(length: int) -> int:
    """PADMÉ (Nikitin et al., PETS 2019): round up so that at most O(log log L) bits of the length
    remain, with at most 12 % overhead."""
    if length < 2:
        return length
    e = length.bit_length() - 1
    s = e.bit_length()
    mask = (1 << (e - s)) - 1
    return (length + mask) & ~mask


def _padded(pt: bytes, pad: int | None = None) -> bytes:
    """Chunk plaintext padded with zeros: always to the PADMÉ length (a chunk's exact length would
    tell an observer which candidate crop it holds), then to a multiple of ``pad`` if given."""
    natural = NONCE_LEN + len(pt) + TAG_LEN
    target = padme(natural)
    if pad:
        target += -target % pad
    return pt + bytes(target - natural)


def _plaintext(group: ProtectedGroup, pad: int | None, footprint: np.ndarray, version: int) -> bytes:
    """v3 stores the group's mask as one bit per PROTECTED cell (the only cells it can hold: a few
    bytes for a face); v2 as one bit per cell of the grid (6 KB per group in a 12 MP photo)."""
    mask = np.asarray(group.block_mask)
    mask_bits = mask[footprint] if version >= 3 else mask.ravel()
    return _padded(_label_bytes(group.label) + _score_bytes(group.score, version)
                   + np.packbits(mask_bits).tobytes()
                   + struct.pack(">I", len(group.payload)) + group.payload, pad)


def _require(ok: bool, message: str) -> None:
    # Arguments come from our own pipeline; a failure here is a caller bug, not bad user data.
    if not ok:
        raise ValueError(message)


def _unique_recipients(recipients) -> list:
    seen, out = set(), []
    for r in recipients:
        ident = (r.kind, r.key if r.kind == crypto.PASSPHRASE else r.key_id)   # passphrases have no key id
        if ident not in seen:
            seen.add(ident)
            out.append(r)
    return out


def seal(*, width: int, height: int, block: int, codec_id: str, weights_sha256: bytes, quality: float,
         block_map: np.ndarray, public: list[PublicGroup], protected: list[ProtectedGroup],
         pad: int | None = None, signer: SigningKey | None = None,
         metadata: tuple[Metadata, Sequence[Recipient]] | None = None, version: int = VERSION,
         _random: Random = os.urandom) -> bytes:
    """Build a .prvc file (FORMAT v4), signed by ``signer`` if given.  ``version=2`` or ``3`` writes
    a previous layout (for fixtures and the older test vectors); `_random` exists only for the
    deterministic test vectors."""
    _require(version in WRITABLE_VERSIONS, f"can write format versions {WRITABLE_VERSIONS}")
    _require(1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE, "image size out of range")
    _require(1 <= block <= MAX_BLOCK, "block size out of range")
    grid = grid_shape(width, height, block)
    _require(grid[0] * grid[1] <= MAX_CELLS, "too many blocks")
    _require(isinstance(codec_id, str) and 1 <= len(codec_id) <= MAX_CODEC_ID
             and all(0x21 <= ord(ch) <= 0x7E for ch in codec_id), "invalid codec id")
    _require(isinstance(weights_sha256, bytes) and len(weights_sha256) == HASH_LEN, "weights_sha256 must be 32 bytes")
    _require(limits.valid_quality(quality, codec_id),
             f"quality must be {limits.QUALITY_MIN:g}..{limits.quality_max(codec_id):g}")
    _require(pad is None or (isinstance(pad, int) and 1 <= pad <= MAX_PAD), f"pad must be 1..{MAX_PAD}")
    block_map = np.asarray(block_map)
    _require(block_map.shape == grid and np.issubdtype(block_map.dtype, np.integer), f"block_map must be an int array of shape {grid}")
    public = sorted(public, key=lambda g: g.index)
    protected = sorted(protected, key=lambda g: g.index)
    indices = [g.index for g in public] + [g.index for g in protected]
    _require(len(set(indices)) == len(indices) and all(0 <= i < MAX_GROUPS for i in indices),
             "group indices must be distinct and in 0..4095")
    for g in public + protected:
        if not _valid_label(g.label):
            # Labels can come from users (--region x,y,x,y:label), so this one is a clean error.
            raise FormatError(f"label {g.label!r} cannot be stored: use 1..{MAX_LABEL} bytes of printable text")
        _require(math.isfinite(g.score), "scores must be finite")
        _require(version < 4 or 0 <= g.score <= 1, "scores must be in 0..1 (a detector's confidence)")
        _require(isinstance(g.payload, bytes) and len(g.payload) < 2**32, "payload must be bytes")
    _require(bool(np.isin(block_map, [g.index for g in public] + [PROTECTED, REDACTED]).all()),
             "block_map holds a value that is neither a public group, PROTECTED nor REDACTED")
    _require(bool(np.isin([g.index for g in public], block_map).all()),
             "every public group must own at least one cell of block_map")
    footprint = np.zeros(grid, dtype=bool)
    for g in protected:
        mask = np.asarray(g.block_mask)
        _require(mask.shape == grid and mask.dtype == bool and mask.any(), f"group {g.index}: block_mask must be a non-empty bool grid")
        _require(not (footprint & mask).any(), f"group {g.index}: block_mask overlaps another protected group")
        footprint |= mask
        _require(len(g.recipients) > 0, f"group {g.index}: a protected group needs at least one recipient")
    _require(bool((footprint == (block_map == PROTECTED)).all()),
             "the PROTECTED blocks of block_map must be exactly the union of the protected masks")
    if len(protected) * block_map.size > limits.MAX_GROUP_CELLS:   # readers refuse it: never write it
        raise FormatError(f"too many protected groups ({len(protected)}) for an image of {block_map.size} blocks")

    file_id = _random(FILE_ID_LEN)
    content_keys, bodies = [], []
    entries = [(g.index, _plaintext(g, pad, footprint, version), g.recipients) for g in protected]
    if metadata is not None:
        _require(len(metadata[1]) > 0, "kept metadata needs at least one recipient")
        entries.append((METADATA_INDEX, _metadata_plaintext(metadata[0]), metadata[1]))
    for index, plaintext, _ in entries:
        content_key = _random(crypto.KEY_LEN)   # fresh per chunk: used for this one chunk only
        content_keys.append(content_key)
        bodies.append(crypto.encrypt_chunk(content_key, plaintext, crypto.chunk_aad(file_id, index), _random))
        _require(len(bodies[-1]) < 1 << 32, "a protected group's chunk must be under 4 GiB")
    declared = [(index, len(body), _sha(body)) for (index, _, _), body in zip(entries, bodies)]
    core = _core(file_id, width, height, block, codec_id, weights_sha256, quality,
                 block_map.astype(np.int16), public, declared, version)
    core_hash = core_hash_of(core, public, version)
    chunks, scrypt_cache = [], {}
    for (index, _, recipients), content_key, body in zip(entries, content_keys, bodies):
        aad = crypto.stanza_aad(file_id, index)
        stanzas = _canonical([crypto.wrap(r.kind, r.key, content_key, aad, _random, file_id=file_id,
                                          scrypt_cache=scrypt_cache)
                              for r in _unique_recipients(recipients)], version)
        chunks.append(_Chunk(index, body, stanzas, _mac(content_key, core_hash, index, stanzas)))
    _check_readable_stanzas(chunks)
    signatures = [] if signer is None else [Signature(signer.public_key, crypto.sign(signer.secret, core_hash))]
    return _assemble(core, public, chunks, version, signatures)


def _check_readable_stanzas(chunks: Sequence[_Chunk]) -> None:
    """Never write a file its readers refuse: the limits the reader enforces on stanzas
    (per group, per file, and the failed trials of one key on anonymous stanzas) are checked
    here too.  Recipient lists come from users' policies, so these are clean errors."""
    for chunk in chunks:
        if len(chunk.stanzas) > MAX_STANZAS:
            raise FormatError(f"a protected group can have at most {MAX_STANZAS} recipients")
    if sum(len(c.stanzas) for c in chunks) > MAX_STANZAS_PER_FILE:
        raise FormatError(f"a file can hold at most {MAX_STANZAS_PER_FILE} recipient stanzas in all")
    for kind in (crypto.X25519, crypto.PASSPHRASE):
        # anonymous: a reader's key is tried on each until one opens, and gives up after
        # MAX_FAILED_UNWRAPS failures, so the file must hold fewer than that of one kind
        if sum(s.kind == kind for c in chunks for s in c.stanzas) >= limits.MAX_FAILED_UNWRAPS:
            raise FormatError(f"a file can hold at most {limits.MAX_FAILED_UNWRAPS - 1} {kind} recipient "
                              "stanzas in all (readers stop trying a key after that many)")


def _mac(content_key: bytes, core_hash: bytes, index: int, stanzas: Sequence[Stanza]) -> bytes:
    return crypto.stanza_mac(content_key, core_hash, index, b"".join(_stanza_bytes(s, 2) for s in stanzas))


# ---------------------------------------------------------------- reading


class _Reader:
    def __init__(self, data: bytes, end: int):
        self.data, self.pos, self.end = data, 0, end

    def take(self, n: int) -> bytes:
        _check(0 <= n <= self.end - self.pos)
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def unpack(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return self.unpack(">H")[0]

    def u32(self) -> int:
        return self.unpack(">I")[0]

    def uvarint(self) -> int:
        """v3 fields: shortest form, at most 5 bytes, < 2**32."""
        try:
            value, length = varint.decode(self.data[self.pos:min(self.end, self.pos + varint.MAX_BYTES)])
        except ValueError:
            raise _Bad from None
        self.pos += length
        return value

    def f64(self) -> float:
        raw = self.take(8)
        value = struct.unpack(">d", raw)[0]
        _check(math.isfinite(value) and raw != b"\x80" + bytes(7))   # -0.0 would be a second encoding of 0
        return value

    def score(self, version: int) -> float:
        if version < 4:
            return self.f64()
        value = self.u16()
        _check(value <= SCORE_SCALE)
        return value / SCORE_SCALE

    def label(self) -> str:
        raw = self.take(self.u8())
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Bad from None
        _check(_valid_label(text))
        return text


def _read_block_map(r: _Reader, grid: tuple[int, int]) -> np.ndarray:
    cells = grid[0] * grid[1]
    n_runs = r.u32()
    _check(1 <= n_runs <= cells)
    runs = np.frombuffer(r.take(6 * n_runs), dtype=[("v", ">i2"), ("c", ">u4")])
    counts = runs["c"].astype(np.int64)
    _check(bool((counts >= 1).all()) and int(counts.sum()) == cells)
    _check(bool((runs["v"][1:] != runs["v"][:-1]).all()))   # canonical: adjacent runs differ
    return np.repeat(runs["v"].astype(np.int16), counts).reshape(grid)


def _increasing(indices: list[int], metadata_ok: bool = False) -> bool:
    return all(a < b for a, b in zip(indices, indices[1:])) and \
        all(0 <= i < MAX_GROUPS or (metadata_ok and i == METADATA_INDEX) for i in indices)


def open_container(data: bytes) -> Container:
    """Parse and verify a .prvc file: checksum, every field, every present body's hash, the signature."""
    data = bytes(data)
    if data[:4] != MAGIC:
        # A file cut inside the magic is still recognisably ours: report it as damaged.
        raise FormatError(CORRUPT if data and MAGIC.startswith(data) else NOT_PRVC)
    if len(data) < 5:
        raise FormatError(CORRUPT)
    if data[4] not in READABLE_VERSIONS:
        raise FormatError(f"unsupported .prvc version {data[4]}")
    n = checksum_len(data[4])
    if len(data) < 5 + n or _sha(data[:-n])[:n] != data[-n:]:
        raise FormatError(CORRUPT)
    try:
        return _parse(data, data[4])
    except _Bad:
        raise FormatError(CORRUPT) from None


def _read_stanza(r: _Reader, version: int) -> Stanza:
    kind = crypto.TYPE_NAMES.get(r.u8())
    _check(kind is not None and (version >= 2 or kind != crypto.PASSPHRASE))
    if version == 1:
        ident = r.take(KEY_ID_LEN)
    else:
        ident = r.take(crypto.STANZA_TAG_LEN) if kind == crypto.SYMMETRIC else b""
    arg = r.take(crypto.ARG_LEN[kind])
    if kind == crypto.PASSPHRASE:
        _check(1 <= arg[16] <= crypto.SCRYPT_MAX_LOG_N)
    return Stanza(kind, ident, arg, r.take(WRAPPED_LEN))


def _parse(data: bytes, version: int) -> Container:
    r = _Reader(data, len(data) - checksum_len(version))
    r.take(5)
    file_id = r.take(FILE_ID_LEN)
    if version >= 3:
        width, height, block = r.uvarint(), r.uvarint(), r.uvarint()
    else:
        width, height, block = r.unpack(">IIH")
    _check(1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE and 1 <= block <= MAX_BLOCK)
    grid = grid_shape(width, height, block)
    _check(grid[0] * grid[1] <= MAX_CELLS)
    codec_raw = r.take(r.u8())
    _check(1 <= len(codec_raw) <= MAX_CODEC_ID and all(0x21 <= b <= 0x7E for b in codec_raw))
    weights_sha256 = r.take(weights_id_len(version))
    quality = r.f64()
    _check(limits.valid_quality(quality, codec_raw.decode("ascii")))
    if version >= 3:
        block_map, public, public_hashes, declared, chunk_hashes = _read_tables_v3(r, grid, version)
    else:
        block_map, public, public_hashes, declared, chunk_hashes = _read_tables_v2(r, grid, version)
    public_indices = [g.index for g in public]
    _check(_increasing(public_indices) and _increasing(list(declared), metadata_ok=version >= 2))
    _check(not set(public_indices) & set(declared))
    _check(bool(np.isin(block_map, public_indices + [PROTECTED, REDACTED]).all()))
    _check(bool(np.isin(public_indices, block_map).all()))   # every public group owns a cell
    # Protected blocks and protected groups come together: a forger cannot empty the protected
    # table and keep the holes (a key holder would see no group of theirs and no error).
    n_protected_cells = int((block_map == PROTECTED).sum())
    n_groups = len([i for i in declared if i != METADATA_INDEX])
    _check((n_protected_cells > 0) == (n_groups > 0) and n_groups <= n_protected_cells)
    # each opened group's mask spans the grid: a small v3 file must not make a key holder allocate
    # thousands of grids (a chunk's mask costs a bit per PROTECTED cell, not per cell)
    _check(n_groups * block_map.size <= limits.MAX_GROUP_CELLS)
    core = data[:r.pos]

    signatures = []
    if version >= 2:
        n_signatures = r.u8()
        _check(n_signatures <= MAX_SIGNATURES)
        for _ in range(n_signatures):
            _check(r.u8() == SIG_ED25519)
            signatures.append(Signature(r.take(32), r.take(crypto.SIGNATURE_LEN)))

    chunks, hashes, n_total = [], [], 0
    for _ in range(r.u16()):
        index = r.u16()
        _check(index in declared)
        hashes.append(r.take(HASH_LEN) if version == 1 else chunk_hashes[index])
        n_stanzas = r.u16()
        n_total += n_stanzas
        _check(1 <= n_stanzas <= MAX_STANZAS and n_total <= MAX_STANZAS_PER_FILE)
        stanzas = [_read_stanza(r, version) for _ in range(n_stanzas)]
        if version >= 2:
            encoded = [_stanza_bytes(s, version) for s in stanzas]
            _check(all(a < b for a, b in zip(encoded, encoded[1:])))   # sorted, no duplicates
        chunks.append(_Chunk(index, b"", stanzas, r.take(crypto.MAC_LEN) if version >= 2 else b""))
    _check(_increasing([c.index for c in chunks], metadata_ok=version >= 2))

    for g, (length, digest) in zip(public, public_hashes):
        g.payload = r.take(length)
        _check(digest is None or _sha(g.payload) == digest)   # v3: core_hash covers the payloads instead
    for c, digest in zip(chunks, hashes):
        c.body = r.take(declared[c.index])
        _check(_sha(c.body) == digest)
    _check(r.pos == r.end)   # nothing between the last body and the checksum

    core_hash = core_hash_of(core, public, version)
    for sig in signatures:
        _check(crypto.verify_signature(sig.public_key, sig.signature, core_hash))
    return Container(core=core, core_hash=core_hash, version=version, file_id=file_id, width=width, height=height, block=block,
                     codec_id=codec_raw.decode("ascii"), weights_sha256=weights_sha256, quality=quality,
                     block_map=block_map, public_groups=public, declared=declared, chunks=chunks,
                     signatures=signatures, declared_hashes=chunk_hashes)


def _read_tables_v2(r: _Reader, grid: tuple[int, int], version: int):
    """Versions 1 and 2: block map runs, then the public and protected tables, each entry hashed."""
    block_map = _read_block_map(r, grid)
    public, public_hashes = [], []
    for _ in range(r.u16()):
        index, label, score, length = r.u16(), r.label(), r.f64(), r.u32()
        public.append(PublicGroup(index, label, score, b""))
        public_hashes.append((length, r.take(HASH_LEN)))
    declared, chunk_hashes = {}, {}
    for _ in range(r.u16()):
        index, length = r.unpack(">HI")
        _check(length >= MIN_CHUNK and index not in declared)
        declared[index] = length
        if version >= 2:
            chunk_hashes[index] = r.take(HASH_LEN)   # v2: the core commits to every chunk
    return block_map, public, public_hashes, declared, chunk_hashes


def _read_tables_v3(r: _Reader, grid: tuple[int, int], version: int):
    """Versions 3 and 4: the public table (no hashes), the protected table, then the banded block map."""
    n_public = r.uvarint()
    _check(n_public <= MAX_GROUPS)
    public, public_hashes = [], []
    for _ in range(n_public):
        index, label, score, length = r.uvarint(), r.label(), r.score(version), r.uvarint()
        public.append(PublicGroup(index, label, score, b""))
        public_hashes.append((length, None))
    n_declared = r.uvarint()
    _check(n_declared <= MAX_GROUPS + 1)
    declared, chunk_hashes = {}, {}
    for _ in range(n_declared):
        index, length = r.uvarint(), r.uvarint()
        _check(length >= MIN_CHUNK and index not in declared)
        declared[index] = length
        chunk_hashes[index] = r.take(HASH_LEN)
    _check(_increasing([g.index for g in public]))   # before the map uses the table's order
    block_map = _read_banded_map(r.take(r.uvarint()), grid, [g.index for g in public])
    return block_map, public, public_hashes, declared, chunk_hashes


def _uvarints(raw: bytes) -> np.ndarray:
    """Every uvarint of ``raw`` (which must end with one), vectorised: a hostile map of millions of
    runs parses in numpy time, in memory proportional to the number of values.  Shortest forms of
    at most 4 bytes only (map values are < 2**28)."""
    b = np.frombuffer(raw, dtype=np.uint8)
    _check(b.size > 0 and b[-1] < 0x80)
    ends = np.flatnonzero(b < 0x80)
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    _check(int(lengths.max()) <= 4 and bool((b[ends[lengths > 1]] != 0).all()))   # shortest form
    values = (b[starts] & 0x7F).astype(np.int64)
    for k in range(1, 4):
        longer = lengths > k
        values[longer] |= (b[starts[longer] + k] & 0x7F).astype(np.int64) << (7 * k)
    return values


def _read_banded_map(raw: bytes, grid: tuple[int, int], public_indices: list[int]) -> np.ndarray:
    """v3 block map (FORMAT.md, "Block map"): bands of identical rows, each row run-length coded."""
    rows, cols = grid
    # the longest valid map: a band per row (n_rows, n_runs: 3 bytes each), a run per cell
    # (symbol 2 bytes, count 3): anything longer is refused before it is decoded
    _check(len(raw) <= 6 * rows + 5 * rows * cols)
    values = _uvarints(raw)
    lut = np.array([REDACTED, PROTECTED, *public_indices], dtype=np.int16)
    band_rows, band_symbols, previous, i, covered = [], [], None, 0, 0
    while i < values.size:
        _check(i + 2 <= values.size)
        n_rows, n_runs = int(values[i]), int(values[i + 1])
        covered += n_rows
        _check(1 <= n_rows and covered <= rows and 1 <= n_runs <= cols and i + 2 + 2 * n_runs <= values.size)
        runs = values[i + 2:i + 2 + 2 * n_runs]
        symbols, counts = runs[0::2], runs[1::2]
        _check(bool((symbols < lut.size).all()) and bool((counts >= 1).all()) and int(counts.sum()) == cols)
        _check(bool((symbols[1:] != symbols[:-1]).all()))          # adjacent runs differ
        _check(previous is None or not np.array_equal(runs, previous))   # adjacent bands differ
        band_rows.append(n_rows)
        band_symbols.append(lut[np.repeat(symbols, counts)])
        previous, i = runs, i + 2 + 2 * n_runs
    _check(covered == rows)
    return np.repeat(np.stack(band_symbols), band_rows, axis=0)


class Container:
    """A parsed, verified .prvc file. Nothing here is decrypted until unlock()."""

    def __init__(self, *, core, core_hash, version, file_id, width, height, block, codec_id, weights_sha256, quality,
                 block_map, public_groups, declared, chunks, signatures=(), declared_hashes=None):
        self._core = core
        self.core_hash = core_hash
        self.version: int = version
        self.file_id: bytes = file_id
        self.width: int = width
        self.height: int = height
        self.block: int = block
        self.codec_id: str = codec_id
        self.weights_sha256: bytes = weights_sha256
        self.quality: float = quality
        self.block_map: np.ndarray = block_map
        self.public_groups: list[PublicGroup] = public_groups
        self._declared: dict[int, int] = declared
        self._declared_hashes: dict[int, bytes] = dict(declared_hashes or {})   # v2+: the core's chunk hashes
        self._chunks: list[_Chunk] = chunks
        self.signatures: list[Signature] = list(signatures)
        self.metadata: Metadata | None = None   # set by unlock() when a key opens the metadata chunk

    @property
    def grid_shape(self) -> tuple[int, int]:
        return self.block_map.shape

    @property
    def signer(self) -> Signature | None:
        """The verified Ed25519 signature over the core (and so over every group), if any."""
        return self.signatures[0] if self.signatures else None

    @property
    def protected_chunks(self) -> list[ChunkInfo]:
        """The protected groups' chunks (the metadata chunk is not a group: see metadata_chunk)."""
        return [c for c in self._chunk_infos() if c.index != METADATA_INDEX]

    @property
    def metadata_chunk(self) -> ChunkInfo | None:
        """The encrypted original EXIF/XMP, if the file keeps them."""
        return next((c for c in self._chunk_infos() if c.index == METADATA_INDEX), None)

    def _chunk_infos(self) -> list[ChunkInfo]:
        present = {c.index: c for c in self._chunks}
        return [ChunkInfo(index, length, index in present,
                          [RecipientInfo(s.kind, s.key_id.hex() if self.version == 1 else "")
                           for s in present[index].stanzas] if index in present else [])
                for index, length in self._declared.items()]

    def to_bytes(self) -> bytes:
        return _assemble(self._core, self.public_groups, self._chunks, self.version, self.signatures)

    def _stanza_aad(self, index: int) -> bytes:
        """v1 binds a wrapped key to the core; v2 to the file id and group, and the stanza MAC (keyed by the
        content key) binds the core: a holder whose stanza is intact then detects any change to the core
        or to the recipient list as tampering, instead of a silent "not for you"."""
        return crypto.stanza_aad(self.core_hash if self.version == 1 else self.file_id, index, self.version)

    def _candidates(self, chunk: _Chunk, identity: Identity, tag_key: bytes | None) -> list[Stanza]:
        """Stanzas worth trying with this identity: v1 by key id; v2 symmetric by the per-file tag
        (``tag_key``: the identity's tag key); v2 x25519 stanzas are anonymous, so every one of them."""
        stanzas = [s for s in chunk.stanzas if s.kind == identity.kind]
        if self.version == 1:
            return [s for s in stanzas if s.key_id.hex() == identity.key_id]
        if identity.kind == crypto.SYMMETRIC:
            return [s for s in stanzas if s.key_id == crypto.tag_with(tag_key, self.file_id, s.arg)]
        return stanzas   # X25519 and passphrase stanzas are anonymous: try each

    def _open(self, identities: Sequence[Identity]):
        """Yield (chunk, content key, plaintext, identity) for every chunk an identity opens."""
        failures = {id(i): 0 for i in identities}
        scrypt_cache: dict = {}
        tag_keys = {id(i): crypto.symmetric_tag_key(i.secret) for i in identities if i.kind == crypto.SYMMETRIC}
        for chunk in self._chunks:
            aad = self._stanza_aad(chunk.index)
            matched, content_key, opener = False, None, None
            for ident in identities:
                for stanza in self._candidates(chunk, ident, tag_keys.get(id(ident))):
                    # a v1 id or a v2 tag that matches is a claim that this key opens the chunk
                    matched |= self.version == 1 or ident.kind == crypto.SYMMETRIC
                    if ident.kind == crypto.PASSPHRASE and (ident.secret, stanza.arg[:16], stanza.arg[16]) not in scrypt_cache \
                            and len(scrypt_cache) >= limits.MAX_SCRYPT_RUNS:
                        raise FormatError(TOO_MANY_SCRYPT)   # each try costs a second of scrypt
                    content_key = crypto.unwrap(ident.kind, ident.secret, stanza, aad, version=self.version,
                                                file_id=self.file_id, scrypt_cache=scrypt_cache)
                    if content_key is not None:
                        opener = ident
                        break
                    failures[id(ident)] += 1
                    if failures[id(ident)] >= limits.MAX_FAILED_UNWRAPS:
                        raise FormatError(TOO_MANY_TRIALS)
                if content_key is not None:
                    break
            if content_key is None:
                if matched:
                    raise DecryptionError(CANNOT_DECRYPT)
                continue   # not for us: stays closed, silently
            if self.version >= 2 and not hmac.compare_digest(_mac(content_key, self.core_hash, chunk.index, chunk.stanzas), chunk.mac):
                raise DecryptionError(CANNOT_DECRYPT)   # the recipient list was changed
            binding = self.core_hash if self.version == 1 else self.file_id
            plaintext = crypto.decrypt_chunk(content_key, chunk.body, crypto.chunk_aad(binding, chunk.index, self.version))
            if plaintext is None:
                raise DecryptionError(CANNOT_DECRYPT)
            yield chunk, content_key, plaintext, opener

    def unlock(self, identities: Sequence[Identity]) -> list[OpenedGroup]:
        """The protected groups these identities open; others are skipped silently."""
        footprint = self.block_map == PROTECTED
        taken = np.zeros_like(footprint)
        opened = []
        self.metadata = None
        for chunk, _, plaintext, opener in self._open(identities):
            if chunk.index == METADATA_INDEX:
                self.metadata = _parse_metadata(plaintext)
                continue
            try:
                group = self._parse_plaintext(chunk.index, plaintext, footprint)
            except _Bad:
                # Authenticated yet malformed: whoever holds the content key wrote nonsense.
                raise FormatError(CORRUPT) from None
            if not group.block_mask.any() or (group.block_mask & ~footprint).any() or (group.block_mask & taken).any():
                raise FormatError(CORRUPT)
            taken |= group.block_mask
            group.opened_by, group.opened_kind = opener.key_id, opener.kind
            opened.append(group)
        return opened

    def _parse_plaintext(self, index: int, plaintext: bytes, footprint: np.ndarray) -> OpenedGroup:
        r = _Reader(plaintext, len(plaintext))
        label, score = r.label(), r.score(self.version)
        n_bits = int(footprint.sum()) if self.version >= 3 else footprint.size   # v3: PROTECTED cells only
        bits = np.unpackbits(np.frombuffer(r.take((n_bits + 7) // 8), dtype=np.uint8))
        _check(not bits[n_bits:].any())   # unused bits are zero
        payload = r.take(r.u32())
        _check(not any(r.take(r.end - r.pos)))   # padding is zeros
        if self.version >= 3:
            mask = np.zeros(self.grid_shape, dtype=bool)
            mask[footprint] = bits[:n_bits].astype(bool)
        else:
            mask = bits[:n_bits].astype(bool).reshape(self.grid_shape)
        return OpenedGroup(index, label, score, mask, payload)

    def opens(self, identities: Sequence[Identity]) -> set[int]:
        """Indices of the chunks (groups and the metadata chunk) these identities open and verify."""
        return {chunk.index for chunk, _, _, _ in self._open(identities)}

    def strip(self, identities: Sequence[Identity]) -> bytes:
        """Keep the public groups and the chunks these identities open; drop the other chunks and their stanzas.
        The core is unchanged, so a signature stays valid."""
        keep = {chunk.index for chunk, _, _, _ in self._open(identities)}
        return _assemble(self._core, self.public_groups, [c for c in self._chunks if c.index in keep], self.version,
                         self.signatures)

    def grant(self, identity: Identity, recipient: Recipient, *, only: set[int] | None = None,
              _random: Random = os.urandom) -> bytes:
        """Add a stanza for `recipient` to every chunk `identity` opens. No re-encryption; the core (and a
        signature) is unchanged.  A recipient is skipped only where one of its stanzas verifiably opens
        the chunk: a symmetric recipient's own secret is tried; an X25519 stanza cannot be checked
        without the recipient's secret, so an X25519 grant always adds a stanza."""
        new_chunks = {c.index: c for c in self._chunks}
        opened, added, scrypt_cache = 0, False, {}
        for chunk, content_key, _, _ in self._open([identity]):
            opened += 1
            if only is not None and chunk.index not in only:
                continue
            aad = self._stanza_aad(chunk.index)
            if recipient.kind == crypto.SYMMETRIC and any(
                    crypto.unwrap(recipient.kind, recipient.key, s, aad, version=self.version) == content_key
                    for s in chunk.stanzas if s.kind == recipient.kind):
                continue   # already a recipient (checked by opening, not by a claimed id)
            _check_stanza_room(chunk)
            if recipient.kind == crypto.PASSPHRASE and self.version < 2:
                raise FormatError("a version-1 file cannot hold passphrase recipients: protect the original again")
            if recipient.kind == crypto.PASSPHRASE and not scrypt_cache and len(
                    {st.arg for ch in self._chunks for st in ch.stanzas if st.kind == crypto.PASSPHRASE}) \
                    >= limits.MAX_SCRYPT_RUNS:
                raise FormatError(f"the file already holds {limits.MAX_SCRYPT_RUNS} passphrases, the most a reader "
                                  "tries: protect the original again for a new set")
            stanza = crypto.wrap(recipient.kind, recipient.key, content_key, aad, _random, version=self.version,
                                 file_id=self.file_id, scrypt_cache=scrypt_cache)
            stanzas = _canonical(chunk.stanzas + [stanza], self.version)
            mac = _mac(content_key, self.core_hash, chunk.index, stanzas) if self.version >= 2 else b""
            new_chunks[chunk.index] = _Chunk(chunk.index, chunk.body, stanzas, mac)
            added = True
        if not opened:
            raise DecryptionError(OPENS_NOTHING)
        if added:
            _check_readable_stanzas(list(new_chunks.values()))
        return _assemble(self._core, self.public_groups, list(new_chunks.values()), self.version, self.signatures)


    def rekey(self, identities: Sequence[Identity], new_recipients: dict[int, Sequence[Recipient]], *,
              _random: Random = os.urandom) -> bytes:
        """Revocation: each chunk in ``new_recipients`` gets a fresh content key (re-encrypted under a
        fresh nonce, same padded plaintext, no re-encoding) wrapped for exactly those recipients; every
        other chunk keeps its key and stanzas.

            open every chunk ─▶ re-encrypt the chosen ones ─▶ new core (new chunk hashes)
            ─▶ every stanza MAC recomputed over the new core_hash ─▶ bytes

        The core commits to every chunk, and each stanza MAC is keyed by its chunk's content key, so
        ``identities`` must open every chunk present.  A signature signs the old core and is dropped.
        Passphrase recipients are refused: re-wrapping under the file's scrypt salt would reuse a
        stanza key (FORMAT.md, passphrase stanzas)."""
        if self.version < 2:
            raise FormatError("a version-1 file cannot be re-keyed: protect the original again")
        present = {c.index for c in self._chunks}
        unknown = set(new_recipients) - present
        _require(not unknown, f"no chunk {sorted(unknown)} in this file")
        for index, recipients in new_recipients.items():
            _require(len(recipients) > 0, f"chunk {index}: a protected group needs at least one recipient")
            if any(r.kind == crypto.PASSPHRASE for r in recipients):
                raise FormatError("passphrase recipients cannot be re-keyed: protect the original again")
        opened = {chunk.index: (content_key, plaintext) for chunk, content_key, plaintext, _ in self._open(identities)}
        if set(opened) != present:
            raise DecryptionError("re-keying needs keys that open every protected chunk of the file "
                                  f"({len(opened)} of {len(present)} opened)")
        chunks, keys = [], {}
        for chunk in self._chunks:
            if chunk.index in new_recipients:
                content_key = _random(crypto.KEY_LEN)   # fresh: this key has never encrypted anything
                body = crypto.encrypt_chunk(content_key, opened[chunk.index][1],
                                            crypto.chunk_aad(self.file_id, chunk.index), _random)
                aad = self._stanza_aad(chunk.index)
                stanzas = _canonical([crypto.wrap(r.kind, r.key, content_key, aad, _random, file_id=self.file_id)
                                      for r in _unique_recipients(new_recipients[chunk.index])], self.version)
                chunks.append(_Chunk(chunk.index, body, stanzas))
            else:
                content_key = opened[chunk.index][0]
                chunks.append(_Chunk(chunk.index, chunk.body, chunk.stanzas))
            keys[chunk.index] = content_key
        bodies = {c.index: c.body for c in chunks}
        declared = [(index, length, _sha(bodies[index]) if index in bodies else self._declared_hashes[index])
                    for index, length in self._declared.items()]
        # the core is canonical: rebuilt from its fields it is the old one but for these hashes
        core = _core(self.file_id, self.width, self.height, self.block, self.codec_id, self.weights_sha256,
                     self.quality, self.block_map, self.public_groups, declared, self.version)
        core_hash = core_hash_of(core, self.public_groups, self.version)
        for c in chunks:
            c.mac = _mac(keys[c.index], core_hash, c.index, c.stanzas)
        return _assemble(core, self.public_groups, chunks, self.version)


@dataclass
class Metadata:
    """The original photo's EXIF (without its thumbnail) and XMP, kept for key holders."""
    exif: bytes = b""
    xmp: bytes = b""


def _metadata_plaintext(meta: Metadata) -> bytes:
    return _padded(struct.pack(">I", len(meta.exif)) + meta.exif + struct.pack(">I", len(meta.xmp)) + meta.xmp)


def _parse_metadata(plaintext: bytes) -> Metadata:
    try:
        r = _Reader(plaintext, len(plaintext))
        exif = r.take(r.u32())
        xmp = r.take(r.u32())
        _check(not any(r.take(r.end - r.pos)))
    except _Bad:
        raise FormatError(CORRUPT) from None
    return Metadata(exif, xmp)


def _check_stanza_room(chunk: _Chunk) -> None:
    if len(chunk.stanzas) >= MAX_STANZAS:
        raise FormatError(f"a protected group already has the maximum of {MAX_STANZAS} recipients")
