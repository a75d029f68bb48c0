"""The .prvc container (FORMAT.md): round trips, keyless view, tampering, grant, strip, padding, test vector."""
from __future__ import annotations

import hashlib
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privcodec.container import (PROTECTED, REDACTED, OpenedGroup, ProtectedGroup, PublicGroup, open_container,
                                 seal)
from privcodec.container import format as fmt
from privcodec.errors import DecryptionError, FormatError
from privcodec.keys import Identity, generate_identity, load_identity

ROOT = Path(__file__).resolve().parents[1]
P, R = PROTECTED, REDACTED


def vector_random(seed: bytes = b"privcodec test vector"):
    """Deterministic stand-in for os.urandom: SHA-256(seed || u32 counter) blocks, consumed in order."""
    state = {"counter": 0, "buffer": b""}

    def take(n: int) -> bytes:
        while len(state["buffer"]) < n:
            state["buffer"] += hashlib.sha256(seed + struct.pack(">I", state["counter"])).digest()
            state["counter"] += 1
        out, state["buffer"] = state["buffer"][:n], state["buffer"][n:]
        return out

    return take


ALICE = generate_identity("symmetric")
BOB = generate_identity("x25519")
CAROL = generate_identity("x25519")

# 64 x 48 image, block 16: grid 3 x 4. Group 0 background, 1 face (protected), 2 person (protected),
# 3 sign (public), one redacted block.
BLOCK_MAP = np.array([[0, P, P, 0],
                      [0, P, 3, 3],
                      [R, 0, P, P]])
FACE_MASK = np.array([[0, 1, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=bool)
PERSON_MASK = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1]], dtype=bool)


def make(*, face_to=(ALICE,), person_to=(BOB,), pad=None, _random=None, face_payload=b"face bits " * 5):
    kwargs = {} if _random is None else {"_random": _random}
    return seal(width=64, height=48, block=16, codec_id="gicodec-1", weights_sha256=hashlib.sha256(b"w").digest(),
                quality=3.3, block_map=BLOCK_MAP,
                public=[PublicGroup(0, "background", 1.0, b"background bits"), PublicGroup(3, "sign", 0.75, b"sign")],
                protected=[ProtectedGroup(1, "face", 0.87, FACE_MASK, face_payload, [r.recipient for r in face_to]),
                           ProtectedGroup(2, "person", 0.5, PERSON_MASK, b"person bits", [r.recipient for r in person_to])],
                pad=pad, **kwargs)


def fix_checksum(data: bytes) -> bytes:
    """What an attacker without keys can always do after editing a file."""
    n = fmt.checksum_len(data[4])
    return data[:-n] + hashlib.sha256(data[:-n]).digest()[:n]


def rewrite(container) -> bytes:
    """Serialize a (tampered) container with every hash and the checksum recomputed."""
    return container.to_bytes()


def same(a: OpenedGroup, b: OpenedGroup) -> bool:
    return (a.index, a.label, a.score, a.payload) == (b.index, b.label, b.score, b.payload) and \
        np.array_equal(a.block_mask, b.block_mask)


DATA = make()


# ---------------------------------------------------------------- round trips


def test_round_trip_symmetric_and_x25519():
    c = open_container(DATA)
    assert (c.width, c.height, c.block, c.codec_id, c.quality) == (64, 48, 16, "gicodec-1", 3.3)   # exact: f64
    assert c.weights_sha256 == hashlib.sha256(b"w").digest()[:16]     # v4: the hash's first 16 bytes
    assert np.array_equal(c.block_map, BLOCK_MAP) and len(c.file_id) == 16
    assert c.public_groups == [PublicGroup(0, "background", 1.0, b"background bits"), PublicGroup(3, "sign", 0.75, b"sign")]

    [face] = c.unlock([ALICE])
    assert same(face, OpenedGroup(1, "face", 0.87, FACE_MASK, b"face bits " * 5))
    [person] = c.unlock([BOB])
    assert same(person, OpenedGroup(2, "person", 0.5, PERSON_MASK, b"person bits"))
    assert [g.index for g in c.unlock([BOB, ALICE])] == [1, 2]
    assert c.to_bytes() == DATA   # canonical: parse + serialize is the identity


def test_keyless_reader_sees_public_groups_footprint_and_recipient_types_only():
    c = open_container(DATA)
    assert c.unlock([]) == []
    assert [g.payload for g in c.public_groups] == [b"background bits", b"sign"]
    chunks = c.protected_chunks
    assert [(ch.index, ch.present) for ch in chunks] == [(1, True), (2, True)]
    assert [(r.kind, r.key_id) for r in chunks[0].recipients] == [("symmetric", "")]
    assert [(r.kind, r.key_id) for r in chunks[1].recipients] == [("x25519", "")]
    # Recipients are anonymous (as in age): no static key id that would link files to a person.
    for key in (ALICE, BOB):
        assert bytes.fromhex(key.key_id) not in DATA
    assert all(ch.length == len(fmt._plaintext(g, None, BLOCK_MAP == P, fmt.VERSION)) + 28 for ch, g in zip(chunks, [
        ProtectedGroup(1, "face", 0.87, FACE_MASK, b"face bits " * 5, []),
        ProtectedGroup(2, "person", 0.5, PERSON_MASK, b"person bits", [])]))
    # Labels and payloads of protected groups are nowhere in the clear.
    for secret in (b"face", b"person", b"face bits", b"person bits"):
        assert secret not in DATA
    # The footprint is public, but not which protected block belongs to which group.
    assert set(np.unique(c.block_map)) == {P, R, 0, 3}


def test_wrong_key_opens_nothing():
    c = open_container(DATA)
    assert c.unlock([CAROL, generate_identity("symmetric")]) == []
    with pytest.raises(DecryptionError):
        c.grant(CAROL, generate_identity().recipient)
    assert open_container(c.strip([CAROL])).protected_chunks[0].present is False


def test_each_protected_group_gets_its_own_content_key_and_nonce():
    c = open_container(make(face_to=(ALICE,), person_to=(ALICE,)))
    bodies = [ch.body for ch in c._chunks]
    assert bodies[0][:12] != bodies[1][:12]
    assert [g.index for g in c.unlock([ALICE])] == [1, 2]


# ---------------------------------------------------------------- corruption and tampering


def test_every_flipped_byte_is_reported():
    for i in range(len(DATA)):
        for bit in (0x01, 0x80):
            tampered = bytearray(DATA)
            tampered[i] ^= bit
            with pytest.raises(FormatError) as e:
                open_container(bytes(tampered))
            assert str(e.value) in (fmt.CORRUPT, fmt.NOT_PRVC) or re.fullmatch(r"unsupported \.prvc version \d+", str(e.value))


def test_flips_with_recomputed_checksum_never_change_what_a_key_holder_opens():
    """No signatures: a keyless attacker can re-checksum an edit. Key holders still never accept altered content."""
    original = open_container(DATA).unlock([ALICE, BOB])
    core_len = len(open_container(DATA)._core)
    for i in range(5, len(DATA) - 32):
        tampered = bytearray(DATA)
        tampered[i] ^= 0x01
        try:
            c = open_container(fix_checksum(bytes(tampered)))
            opened = c.unlock([ALICE, BOB])
        except (FormatError, DecryptionError):
            continue
        # Survivors: every group opened is exactly as sealed, and some group stays closed (an X25519 stanza
        # or a symmetric tag was changed; a changed core opens nothing at all, which view reports).
        assert len(opened) < len(original) and all(any(same(g, o) for o in original) for g in opened)
        assert i >= core_len or opened == [], f"core byte {i} changed and a group still opened"


def test_truncation_at_every_length_is_reported():
    for n in range(len(DATA)):
        with pytest.raises(FormatError):
            open_container(DATA[:n])


def test_trailing_garbage_is_reported():
    with pytest.raises(FormatError):
        open_container(DATA + b"\0")
    with pytest.raises(FormatError):   # even with a recomputed checksum
        open_container(fix_checksum(DATA[:-16] + b"\0" + DATA[-16:]))


def test_magic_and_version():
    with pytest.raises(FormatError, match="^not a .prvc file$"):
        open_container(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(FormatError, match=r"^unsupported \.prvc version 5$"):
        open_container(DATA[:4] + b"\x05" + DATA[5:])
    assert open_container(DATA).version == 4


def test_chunk_from_another_file_with_same_geometry_does_not_decrypt():
    a, b = open_container(make()), open_container(make())
    assert a.file_id != b.file_id
    a._chunks[0].body = b._chunks[0].body                    # ciphertext only: the core commits to each chunk
    with pytest.raises(FormatError):
        open_container(rewrite(a)).unlock([ALICE])
    a, b = open_container(make()), open_container(make())
    a._chunks[0] = b._chunks[0]                              # ciphertext and stanzas
    with pytest.raises((FormatError, DecryptionError)):
        open_container(rewrite(a)).unlock([ALICE])


def test_chunks_of_two_groups_swapped_within_a_file_do_not_decrypt():
    c = open_container(make(face_to=(ALICE,), person_to=(ALICE,), pad=256))   # equal lengths, so the swap parses
    face, person = c._chunks
    face.body, person.body = person.body, face.body
    with pytest.raises(FormatError):
        open_container(rewrite(c)).unlock([ALICE])
    c = open_container(make(face_to=(ALICE,), person_to=(ALICE,), pad=256))
    face, person = c._chunks
    face.stanzas, person.stanzas = person.stanzas, face.stanzas   # swap the wrapped keys instead
    with pytest.raises(DecryptionError):
        open_container(rewrite(c)).unlock([ALICE])


def test_tampered_wrapped_key_with_matching_key_id_is_a_decryption_error():
    c = open_container(DATA)
    s = c._chunks[0].stanzas[0]
    c._chunks[0].stanzas[0] = type(s)(s.kind, s.key_id, s.arg, bytes([s.wrapped[0] ^ 1]) + s.wrapped[1:])
    with pytest.raises(DecryptionError, match="^" + re.escape(fmt.CANNOT_DECRYPT) + "$"):
        open_container(rewrite(c)).unlock([ALICE])


def test_edited_public_group_breaks_protected_chunks_for_key_holders():
    """A keyless viewer cannot tell (no signatures), but a key holder's AEAD covers the core."""
    c = open_container(DATA)
    c.public_groups[1].label = "stop"
    c._core = fmt._core(c.file_id, 64, 48, 16, "gicodec-1", c.weights_sha256, c.quality, c.block_map,
                        c.public_groups, [(ch.index, c._declared[ch.index], fmt._sha(ch.body)) for ch in c._chunks])
    forged = open_container(rewrite(c))
    assert forged.public_groups[1].label == "stop"
    with pytest.raises(DecryptionError):
        forged.unlock([ALICE])


def test_hostile_sizes_are_rejected_without_allocating():
    c = open_container(DATA)
    core = bytearray(c._core)
    core[21:31] = struct.pack(">IIH", 65536, 65536, 1)   # 4 Gi cells
    with pytest.raises(FormatError):
        open_container(fix_checksum(bytes(core) + DATA[len(core):]))


def test_authenticated_but_inconsistent_mask_is_rejected(monkeypatch):
    """A malicious sealer (holder of the content key) cannot make a group claim public blocks."""
    monkeypatch.setattr(fmt, "_require", lambda ok, message: None)   # let seal write the bad file
    bad = seal(width=32, height=16, block=16, codec_id="c", weights_sha256=bytes(32), quality=1.0,
               block_map=np.array([[0, P]]), public=[PublicGroup(0, "background", 1.0, b"")],
               protected=[ProtectedGroup(1, "face", 1.0, np.array([[True, True]]), b"", [ALICE.recipient])])
    with pytest.raises(FormatError):
        open_container(bad).unlock([ALICE])


# ---------------------------------------------------------------- grant and strip


def test_grant_adds_a_recipient_without_reencrypting():
    c = open_container(DATA)
    granted = open_container(c.grant(ALICE, CAROL.recipient))
    assert granted._core == c._core and granted._chunks[0].body == c._chunks[0].body
    assert sorted(r.kind for r in granted.protected_chunks[0].recipients) == ["symmetric", "x25519"]
    assert [g.index for g in granted.unlock([CAROL])] == [1]
    assert [g.index for g in granted.unlock([ALICE])] == [1]
    dave = generate_identity("symmetric")
    once = open_container(granted.grant(ALICE, dave.recipient))
    again = open_container(once.grant(ALICE, dave.recipient))   # a symmetric recipient is checked: no duplicate
    assert len(again.protected_chunks[0].recipients) == 3
    assert [g.index for g in again.unlock([dave])] == [1]


def test_grant_by_a_key_that_opens_nothing_is_an_error():
    with pytest.raises(DecryptionError, match="^" + re.escape(fmt.OPENS_NOTHING) + "$"):
        open_container(DATA).grant(CAROL, ALICE.recipient)


def test_grant_only_to_the_chosen_chunks():
    c = open_container(make(face_to=(ALICE,), person_to=(ALICE,)))
    granted = open_container(c.grant(ALICE, CAROL.recipient, only={2}))
    assert [g.index for g in granted.unlock([CAROL])] == [2]


# ---------------------------------------------------------------- rekey (archive revoke / rotate)


def test_rekey_gives_chosen_chunks_a_fresh_key_for_exactly_the_new_recipients():
    c = open_container(make(face_to=(ALICE, CAROL), person_to=(ALICE, BOB)))
    before = {g.index: g for g in c.unlock([ALICE])}
    old_keys = {ch.index: k for ch, k, _, _ in c._open([ALICE])}
    new = open_container(c.rekey([ALICE], {1: [ALICE.recipient]}))   # CAROL revoked from the face
    assert new.file_id == c.file_id and new.core_hash != c.core_hash and new.public_groups == c.public_groups
    assert [g.index for g in new.unlock([CAROL])] == []
    assert [g.index for g in new.unlock([BOB])] == [2]                # untouched chunk: still BOB's
    after = {g.index: g for g in new.unlock([ALICE])}
    assert after.keys() == before.keys() and all(same(after[i], before[i]) for i in after)
    new_keys = {ch.index: k for ch, k, _, _ in new._open([ALICE])}
    assert new_keys[1] != old_keys[1] and new_keys[2] == old_keys[2]
    assert new._chunks[0].body != c._chunks[0].body and len(new._chunks[0].body) == len(c._chunks[0].body)
    assert new._chunks[1].body == c._chunks[1].body and new._chunks[1].stanzas == c._chunks[1].stanzas


def test_rekey_needs_keys_for_every_chunk_and_refuses_passphrases_and_v1():
    from privcodec.keys import passphrase_recipient

    c = open_container(make(face_to=(ALICE,), person_to=(BOB,)))
    with pytest.raises(DecryptionError, match="every protected chunk"):
        c.rekey([ALICE], {1: [CAROL.recipient]})
    with pytest.raises(FormatError, match="passphrase"):
        c.rekey([ALICE, BOB], {1: [passphrase_recipient("correct horse battery")]})
    v1 = open_container((ROOT / "tests/fixtures/v1/format-md-vector.prvc").read_bytes())
    with pytest.raises(FormatError, match="version-1"):
        v1.rekey([ALICE], {})


def test_strip_keeps_exactly_public_and_opened_groups():
    c = open_container(make(face_to=(ALICE, BOB), person_to=(BOB,)))
    stripped = open_container(c.strip([ALICE]))   # verifies
    assert stripped._core == c._core and stripped.public_groups == c.public_groups
    assert [(ch.index, ch.present) for ch in stripped.protected_chunks] == [(1, True), (2, False)]
    assert sorted(r.kind for r in stripped.protected_chunks[0].recipients) == ["symmetric", "x25519"]
    assert [g.index for g in stripped.unlock([BOB])] == [1]   # BOB's other chunk is gone
    public_only = open_container(c.strip([]))
    assert [ch.present for ch in public_only.protected_chunks] == [False, False]
    assert public_only.unlock([ALICE, BOB]) == [] and public_only.public_groups == c.public_groups


# ---------------------------------------------------------------- padding


def test_pad_buckets_chunk_lengths():
    natural = [ch.length for ch in open_container(make()).protected_chunks]
    assert natural[0] != natural[1]
    padded = open_container(make(pad=128))
    assert [ch.length for ch in padded.protected_chunks] == [128, 128]
    longer = open_container(make(pad=128, face_payload=b"x" * 95))
    assert [ch.length for ch in longer.protected_chunks] == [256, 128]
    assert padded.unlock([ALICE])[0].payload == b"face bits " * 5   # padding is removed
    with pytest.raises(ValueError):
        make(pad=0)


# ---------------------------------------------------------------- what seal accepts


def test_seal_checks_its_arguments():
    with pytest.raises(ValueError, match="exactly the union"):
        seal(width=32, height=16, block=16, codec_id="c", weights_sha256=bytes(32), quality=1.0,
             block_map=np.array([[0, P]]), public=[PublicGroup(0, "background", 1.0, b"")], protected=[])
    with pytest.raises(ValueError, match="distinct"):
        seal(width=32, height=16, block=16, codec_id="c", weights_sha256=bytes(32), quality=1.0,
             block_map=np.array([[0, P]]), public=[PublicGroup(0, "background", 1.0, b"")],
             protected=[ProtectedGroup(0, "face", 1.0, np.array([[False, True]]), b"", [ALICE.recipient])])
    with pytest.raises(FormatError, match="cannot be stored"):
        seal(width=16, height=16, block=16, codec_id="c", weights_sha256=bytes(32), quality=1.0,
             block_map=np.array([[0]]), public=[PublicGroup(0, "x\x1b[31m", 1.0, b"")], protected=[])


def test_a_public_group_must_own_a_cell(monkeypatch):
    kwargs = dict(width=32, height=16, block=16, codec_id="c", weights_sha256=bytes(32), quality=1.0,
                  block_map=np.array([[0, 0]]),
                  public=[PublicGroup(0, "background", 1.0, b""), PublicGroup(5, "sign", 1.0, b"")], protected=[])
    with pytest.raises(ValueError, match="own at least one cell"):
        seal(**kwargs)
    monkeypatch.setattr(fmt, "_require", lambda ok, message: None)   # let seal write the bad file
    with pytest.raises(FormatError, match="^" + re.escape(fmt.CORRUPT) + "$"):
        open_container(seal(**kwargs))


def test_limits_are_exported():
    from privcodec import container

    assert (container.MAX_PAD, container.MAX_GROUPS) == (fmt.MAX_PAD, fmt.MAX_GROUPS) == (1 << 20, 4096)
    assert [ch.length for ch in open_container(make(pad=container.MAX_PAD)).protected_chunks] == [1 << 20] * 2
    with pytest.raises(ValueError, match="pad"):
        make(pad=container.MAX_PAD + 1)


# ---------------------------------------------------------------- the core since version 3


def public_file(block_map: np.ndarray, version: int = fmt.VERSION) -> bytes:
    indices = sorted({int(v) for v in np.unique(block_map) if v >= 0})
    rows, cols = block_map.shape
    return seal(width=cols * 16, height=rows * 16, block=16, codec_id="gicodec-4", weights_sha256=bytes(32), quality=2.0,
                block_map=block_map, public=[PublicGroup(i, "region", 1.0, b"%d" % i) for i in indices], protected=[],
                version=version)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 9), st.integers(1, 9), st.lists(st.integers(0, 5), min_size=1, max_size=81), st.randoms())
def test_any_block_map_comes_back_exactly(rows, cols, values, rnd):
    """The banded map codes every grid: boxes, blobs, noise, one cell, repeated and alternating rows."""
    cells = np.resize(np.array(values), rows * cols)
    if rnd.random() < 0.5:                                  # photo-like: repeat some rows
        cells = cells.reshape(rows, cols)[np.sort(rnd.choices(range(rows), k=rows))].ravel()
    block_map = np.where(cells == 4, P, np.where(cells == 5, R, cells)).reshape(rows, cols)
    if not (block_map >= 0).any():
        block_map[0, 0] = 0
    block_map = np.where(block_map == P, R, block_map)      # protected cells need a protected group
    c = open_container(public_file(block_map))
    assert np.array_equal(c.block_map, block_map) and c.version == fmt.VERSION
    for version in (2, 3):
        assert np.array_equal(open_container(public_file(block_map, version=version)).block_map, block_map)


def test_a_photo_layout_costs_a_few_bytes_per_band():
    """One person box and two face boxes on a 48 × 32 grid (a 768 × 512 photo): version 2 spent
    6 bytes a run and 32 a public group on hashes; version 3 a few bytes a band."""
    block_map = np.zeros((32, 48), dtype=np.int16)
    block_map[5:20, 10:20], block_map[3:6, 30:33], block_map[25:29, 40:43] = 1, 2, 3
    v2, v3 = len(public_file(block_map, 2)), len(public_file(block_map, 3))
    assert v2 - v3 > 350 and v3 - len(public_file(np.zeros((32, 48), np.int16), 3)) < 120


def test_a_hostile_map_of_a_run_per_cell_parses_in_bounded_work():
    """The most runs a map can have (every cell its own run, every row its own band) is parsed
    vectorised: 1,048,576 cells here."""
    block_map = np.tile(np.array([[0, 1], [1, 0]], dtype=np.int16), (512, 512))
    c = open_container(public_file(block_map))
    assert np.array_equal(c.block_map, block_map)


def test_a_protected_mask_costs_a_bit_per_protected_cell_not_per_cell_of_the_photo():
    """A face on a 12 MP photo's grid (252 × 189 blocks): version 2 spent ceil(cells / 8) = 5,954
    bytes on its mask inside the chunk, version 3 one bit per PROTECTED cell."""
    block_map = np.zeros((189, 252), dtype=np.int16)
    block_map[40:52, 100:110] = P
    face = block_map == P
    lengths = {}
    for version in (2, 3):
        data = seal(width=4032, height=3024, block=16, codec_id="gicodec-4", weights_sha256=bytes(32), quality=2.0,
                    block_map=block_map, public=[PublicGroup(0, "background", 1.0, b"bg")],
                    protected=[ProtectedGroup(1, "face", 0.9, face, b"face", [ALICE.recipient])], version=version)
        [g] = open_container(data).unlock([ALICE])
        assert np.array_equal(g.block_mask, face)
        lengths[version] = open_container(data).protected_chunks[0].length
    assert lengths[2] > 5954 and lengths[3] < 100


def test_a_map_longer_than_any_valid_one_is_refused_before_it_is_decoded(monkeypatch):
    """A map of one valid band and megabytes of junk: refused by its length, not after decoding
    every byte (which would cost memory a multiple of the file's size)."""
    c = open_container(public_file(np.zeros((1, 2), np.int16)))
    band = b"\x01\x01\x02\x02"                      # 1 row, 1 run: public group 0 × 2 cells
    assert c._core.endswith(b"\x04" + band)
    junk = band + b"\x01" * (1 << 20)
    core = c._core[:-5] + fmt.uvarint(len(junk)) + junk
    decoded = []
    monkeypatch.setattr(fmt, "_uvarints", lambda raw: decoded.append(len(raw)) or np.zeros(0, np.int64))
    with pytest.raises(FormatError, match=re.escape(fmt.CORRUPT)):
        open_container(fmt._assemble(core, c.public_groups, [], 3))
    assert decoded == []


def test_a_file_whose_opened_masks_would_span_gigabytes_is_refused(monkeypatch):
    """Version 3 chunks name PROTECTED cells only, so many one-cell groups on a huge grid fit in a
    small file, yet each opened group's mask spans the grid: groups × cells is bounded
    (limits.MAX_GROUP_CELLS: 2^27, 32 groups on the largest grid) for readers, and writers refuse
    to make such a file.  Here the bound is lowered to 4 grids of 64 × 64."""
    from privcodec import limits

    assert limits.MAX_GROUP_CELLS == 32 * fmt.MAX_CELLS
    monkeypatch.setattr(limits, "MAX_GROUP_CELLS", 4 * 64 * 64)

    def one_cell_groups(n):
        block_map = np.zeros((64, 64), dtype=np.int16)
        block_map[0, :n] = P
        masks = [np.zeros(block_map.shape, dtype=bool) for _ in range(n)]
        for i, m in enumerate(masks):
            m[0, i] = True
        return block_map, [ProtectedGroup(i + 1, "face", 0.5, m, b"x", [ALICE.recipient]) for i, m in enumerate(masks)]

    public = [PublicGroup(0, "background", 1.0, b"bg")]
    kwargs = dict(width=64, height=64, block=1, codec_id="gicodec-4", weights_sha256=bytes(32), quality=2.0, public=public)
    block_map, groups = one_cell_groups(4)
    assert len(open_container(seal(block_map=block_map, protected=groups, **kwargs)).unlock([ALICE])) == 4
    block_map, groups = one_cell_groups(5)
    with pytest.raises(FormatError, match="too many protected groups"):
        seal(block_map=block_map, protected=groups, **kwargs)
    # what a hostile writer makes anyway (chunks stripped: the tables alone are refused)
    core = fmt._core(bytes(16), 64, 64, 1, "gicodec-4", bytes(32), 2.0, block_map, public,
                     [(g.index, 29, bytes(32)) for g in groups], 3)
    with pytest.raises(FormatError, match=re.escape(fmt.CORRUPT)):
        open_container(fmt._assemble(core, public, [], 3))
    monkeypatch.setattr(limits, "MAX_GROUP_CELLS", 5 * 64 * 64)
    assert len(open_container(fmt._assemble(core, public, [], 3)).protected_chunks) == 5


def test_seal_writes_version_4_and_keeps_versions_2_and_3_on_request():
    assert open_container(DATA).version == 4
    for version in (2, 3):
        assert open_container(public_file(np.zeros((1, 1), np.int16), version=version)).version == version
    with pytest.raises(ValueError, match="versions"):
        public_file(np.zeros((1, 1), np.int16), version=1)


def test_version_4_stores_short_hashes_and_scores_to_four_decimals():
    """32 bytes (checksum, weights id) and 6 a group fewer than version 3; a score of four decimals
    reads back exactly, a finer one to the nearest 1/10000."""
    block_map = np.zeros((2, 2), np.int16)
    v3, v4 = (public_file(block_map, version=v) for v in (3, 4))
    assert len(v3) - len(v4) == 32 + 6
    assert [g.score for g in open_container(DATA).public_groups] == [1.0, 0.75]
    [face, _] = open_container(DATA).unlock([ALICE, BOB])
    assert face.score == 0.87
    fine = seal(width=16, height=16, block=16, codec_id="c", weights_sha256=bytes(32), quality=1.0,
                block_map=np.zeros((1, 1), np.int32), public=[PublicGroup(0, "x", 0.123456, b"")], protected=[])
    assert open_container(fine).public_groups[0].score == 0.1235
    with pytest.raises(ValueError, match="scores"):
        seal(width=16, height=16, block=16, codec_id="c", weights_sha256=bytes(32), quality=1.0,
             block_map=np.zeros((1, 1), np.int32), public=[PublicGroup(0, "x", 1.5, b"")], protected=[])


def test_a_uvarint_has_one_encoding():
    """FORMAT.md's uvarint, shared by the core, the tile framing and the codec streams."""
    from privcodec import varint

    for n in (0, 1, 127, 128, 300, 2**32 - 1):
        assert varint.decode(varint.encode(n)) == (n, len(varint.encode(n)))
    assert varint.encode(2**32 - 1) == b"\xff\xff\xff\xff\x0f"
    assert varint.encode(300) == b"\xac\x02" and varint.decode(b"\x00\xac\x02", 1) == (300, 3)
    for bad in (b"\x80\x00",                  # 0 in two bytes: not the shortest form
                b"\x80\x80\x80\x80\x10",        # 2**32
                b"\x80\x80\x80\x80\x80\x01",    # six bytes
                b"\xac"):                       # cut inside
        with pytest.raises(ValueError):
            varint.decode(bad)


# ---------------------------------------------------------------- FORMAT.md test vector


VECTOR_KEY_SECRET = hashlib.sha256(b"privcodec test vector key").digest()
VECTOR_SIGNING_SECRET = hashlib.sha256(b"privcodec test vector signing key").digest()


VECTOR_SEEDS = {2: b"privcodec test vector", 3: b"privcodec test vector v3",   # never one nonce for two plaintexts
                4: b"privcodec test vector v4"}


def vector_container(version: int = 4) -> bytes:
    """FORMAT.md's test vector (version 4); version 2's and 3's are tests/fixtures/v2/ and
    v3/format-md-vector.prvc."""
    from privcodec.keys import Identity, SigningKey
    key = Identity("symmetric", VECTOR_KEY_SECRET)
    return seal(version=version, width=32, height=16, block=16, codec_id="test-codec", weights_sha256=hashlib.sha256(b"weights").digest(),
                quality=4.0, block_map=np.array([[0, P]]),
                public=[PublicGroup(0, "background", 1.0, b"public pixels")],
                protected=[ProtectedGroup(1, "face", 0.5, np.array([[False, True]]), b"secret pixels", [key.recipient])],
                signer=SigningKey(VECTOR_SIGNING_SECRET), _random=vector_random(VECTOR_SEEDS[version]))


def format_md_block(tag: str) -> str:
    text = (ROOT / "FORMAT.md").read_text()
    m = re.search(r"```text " + tag + r"\n(.*?)```", text, re.S)
    assert m, f"FORMAT.md has no {tag} block"
    return m.group(1)


def test_version_1_vector_from_the_old_format_md_still_opens():
    data = (ROOT / "tests/fixtures/v1/format-md-vector.prvc").read_bytes()
    key = load_identity(ROOT / "tests/fixtures/v1/format-md-vector.key")
    c = open_container(data)
    assert c.version == 1 and c.signer is None
    [g] = c.unlock([key])
    assert same(g, OpenedGroup(1, "face", 0.5, np.array([[False, True]]), b"secret pixels"))
    assert open_container(c.strip([key])).version == 1                       # strip/grant keep the version
    granted = open_container(c.grant(key, generate_identity("x25519").recipient))
    assert granted.version == 1 and granted._core == c._core


@pytest.mark.parametrize("version", [2, 3])
def test_older_vectors_from_the_old_format_md_still_open_and_are_still_written(version):
    data = (ROOT / f"tests/fixtures/v{version}/format-md-vector.prvc").read_bytes()
    assert data == vector_container(version=version)   # seal(version=N) is byte-exact with the old writer
    c = open_container(data)
    assert c.version == version and c.signer is not None
    [g] = c.unlock([Identity("symmetric", VECTOR_KEY_SECRET)])
    assert same(g, OpenedGroup(1, "face", 0.5, np.array([[False, True]]), b"secret pixels"))
    for edited in (c.strip([]), c.grant(Identity("symmetric", VECTOR_KEY_SECRET), generate_identity("x25519").recipient)):
        assert open_container(edited).version == version and open_container(edited)._core == c._core


def test_format_md_vector_is_current_and_decrypts(tmp_path):
    data = bytes.fromhex("".join(format_md_block("test-vector-hex").split()))
    assert data == vector_container(), "FORMAT.md test vector is stale: regenerate it"
    key_file = tmp_path / "vector.key"
    key_file.write_text(format_md_block("test-vector-key"))
    key = load_identity(key_file)
    assert key.secret == VECTOR_KEY_SECRET
    c = open_container(data)
    assert c.version == 4 and c.public_groups == [PublicGroup(0, "background", 1.0, b"public pixels")]
    signer_file = tmp_path / "vector.pub"
    signer_file.write_text(format_md_block("test-vector-signer"))
    from privcodec.keys import load_verifying_key
    assert c.signer.public_key == load_verifying_key(signer_file).public_key
    [g] = c.unlock([key])
    assert same(g, OpenedGroup(1, "face", 0.5, np.array([[False, True]]), b"secret pixels"))


if __name__ == "__main__":   # regenerate FORMAT.md's hex: PYTHONPATH=. python tests/test_container.py
    import textwrap
    print("\n".join(textwrap.wrap(vector_container().hex(), 64)))
