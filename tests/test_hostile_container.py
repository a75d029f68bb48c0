"""FORMAT v2 against an attacker: downgrades, header edits, co-recipient forgeries, signatures, limits.

Each test names the attack and shows that the reader who could be fooled is not.
"""
from __future__ import annotations

import hashlib
import os
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from privcodec import limits
from privcodec.container import PROTECTED, ProtectedGroup, PublicGroup, open_container, seal
from privcodec.container import crypto
from privcodec.container import format as fmt
from privcodec.errors import DecryptionError, FormatError
from privcodec.keys import SigningKey, generate_identity, load_identity

ROOT = Path(__file__).resolve().parents[1]
P = PROTECTED
ALICE = generate_identity("symmetric")        # face
BOB = generate_identity("x25519")             # person
CAROL = generate_identity("x25519")           # face too (a co-recipient of ALICE)
SIGNER = SigningKey(hashlib.sha256(b"test signer").digest())
OTHER_SIGNER = SigningKey(hashlib.sha256(b"another signer").digest())

BLOCK_MAP = np.array([[0, P, P, 0],
                      [0, P, P, 0]])
FACE = np.array([[0, 1, 0, 0], [0, 1, 0, 0]], dtype=bool)
PERSON = np.array([[0, 0, 1, 0], [0, 0, 1, 0]], dtype=bool)


def make(signer=None, face_to=(ALICE, CAROL), person_to=(BOB,), face_mask=FACE, person_mask=PERSON,
         block_map=BLOCK_MAP, quality=4.0, version=fmt.VERSION):
    protected = [ProtectedGroup(1, "face", 0.9, face_mask, b"face bits", [k.recipient for k in face_to])]
    if person_mask is not None:
        protected.append(ProtectedGroup(2, "person", 0.8, person_mask, b"person bits", [k.recipient for k in person_to]))
    return seal(width=64, height=32, block=16, codec_id="gicodec-1", weights_sha256=bytes(32), quality=quality,
                block_map=block_map, public=[PublicGroup(0, "background", 1.0, b"background bits")],
                protected=protected, signer=signer, version=version)


def reassemble(c, core=None, chunks=None, signatures=None) -> bytes:
    """An attacker's rewrite: any core, chunk table and signatures, every hash and the checksum recomputed."""
    return fmt._assemble(core if core is not None else c._core, c.public_groups,
                         chunks if chunks is not None else c._chunks, c.version,
                         c.signatures if signatures is None else signatures)


def forged_core(c, *, declared, block_map=None, quality=None) -> bytes:
    return fmt._core(c.file_id, c.width, c.height, c.block, c.codec_id, c.weights_sha256,
                     c.quality if quality is None else quality,
                     c.block_map if block_map is None else block_map, c.public_groups, declared, c.version)


# ---------------------------------------------------------------- 3. silent downgrade


def test_protected_blocks_without_a_declared_protected_group_are_invalid():
    """A keyless forger empties the protected table and keeps the holes: every reader rejects it."""
    for version in (1, 2, 3):
        c = open_container(make())
        c.version = version
        with pytest.raises(FormatError, match=re.escape(fmt.CORRUPT)):
            open_container(reassemble(c, core=forged_core(c, declared=[]), chunks=[]))


def test_declared_groups_need_protected_blocks():
    c = open_container(make())
    no_holes = np.where(c.block_map == P, 0, c.block_map)
    declared = [(ch.index, c._declared[ch.index], fmt._sha(ch.body)) for ch in c._chunks]
    with pytest.raises(FormatError):
        open_container(reassemble(c, core=forged_core(c, declared=declared, block_map=no_holes)))


# ---------------------------------------------------------------- 4. header integrity


def _with_stanzas(c, index, stanzas):
    return [fmt._Chunk(ch.index, ch.body, stanzas if ch.index == index else ch.stanzas, ch.mac) for ch in c._chunks]


def test_an_added_stanza_is_detected_by_every_recipient_of_that_chunk():
    c = open_container(make())
    face = c._chunks[0]
    junk = crypto.wrap("x25519", generate_identity("x25519").recipient.key, os.urandom(32), b"junk", os.urandom)
    forged = open_container(reassemble(c, chunks=_with_stanzas(c, 1, fmt._canonical(face.stanzas + [junk], 2))))
    for key in (ALICE, CAROL):
        with pytest.raises(DecryptionError):
            forged.unlock([key])
    assert [g.index for g in forged.unlock([BOB])] == [2]      # the untouched chunk still opens


def test_a_dropped_stanza_is_detected_by_the_remaining_recipients():
    c = open_container(make())
    face = c._chunks[0]
    for kept in face.stanzas:
        forged = open_container(reassemble(c, chunks=_with_stanzas(c, 1, [kept])))
        for key in (ALICE, CAROL):
            try:
                opened = forged.unlock([key])
            except DecryptionError:
                continue
            assert opened == [], "a recipient list with a stanza removed was accepted"


def test_reordered_or_duplicated_stanzas_do_not_parse():
    c = open_container(make())
    face = c._chunks[0]
    for stanzas in (list(reversed(face.stanzas)), face.stanzas + face.stanzas[-1:]):
        with pytest.raises(FormatError):
            open_container(reassemble(c, chunks=_with_stanzas(c, 1, stanzas)))


def test_a_co_recipient_repainting_another_group_is_caught_by_that_groups_holders():
    """ALICE can open the face chunk. She re-encrypts it with a mask that covers the person's
    blocks too, so that viewers without the person key would see her pixels there.  The core
    commits to every chunk, so the person chunk's key holder (BOB) detects the forgery."""
    c = open_container(make())
    [face] = c.unlock([ALICE])
    content_key = os.urandom(32)
    painted = ProtectedGroup(1, "face", 0.9, FACE | PERSON, b"painted over", [])
    body = crypto.encrypt_chunk(content_key, fmt._plaintext(painted, None, c.block_map == fmt.PROTECTED, c.version), crypto.chunk_aad(c.file_id, 1), os.urandom)
    person = c._chunks[1]
    core = forged_core(c, declared=[(1, len(body), fmt._sha(body)), (2, c._declared[2], fmt._sha(person.body))])
    core_hash = fmt.core_hash_of(core, c.public_groups, c.version)
    stanzas = fmt._canonical([crypto.wrap(k.kind, k.recipient.key, content_key, crypto.stanza_aad(c.file_id, 1), os.urandom,
                                          file_id=c.file_id) for k in (ALICE, CAROL)], 2)
    chunks = [fmt._Chunk(1, body, stanzas, fmt._mac(content_key, core_hash, 1, stanzas)), person]
    forged = open_container(reassemble(c, core=core, chunks=chunks))
    # BOB's stanza still opens, but its MAC covers the original core: the forgery is reported as
    # tampering, alone or together with ALICE's key.
    with pytest.raises(DecryptionError):
        forged.unlock([BOB])
    with pytest.raises(DecryptionError):
        forged.unlock([ALICE, BOB])


# ---------------------------------------------------------------- 5. authenticity


def test_a_signed_file_names_its_signer_and_survives_grant_and_strip():
    data = make(signer=SIGNER)
    c = open_container(data)
    assert c.signer.key_id == SIGNER.key_id and c.signer.public_key == SIGNER.public_key
    granted = open_container(c.grant(ALICE, generate_identity("symmetric").recipient))
    stripped = open_container(c.strip([BOB]))
    assert granted.signer == c.signer and stripped.signer == c.signer


def test_a_signature_does_not_survive_any_change_to_the_core():
    c = open_container(make(signer=SIGNER))
    c.public_groups[0].label = "edited"
    declared = [(ch.index, c._declared[ch.index], fmt._sha(ch.body)) for ch in c._chunks]
    with pytest.raises(FormatError, match=re.escape(fmt.CORRUPT)):
        open_container(reassemble(c, core=forged_core(c, declared=declared)))


def test_require_signer_refuses_unsigned_and_differently_signed_files(tmp_path):
    import privcodec
    from privcodec.keys import keygen, load_verifying_key

    keygen("maker", tmp_path, "ed25519")
    pub = tmp_path / "maker.pub"
    from privcodec.keys import load_signing_key
    mine = make(signer=load_signing_key(tmp_path / "maker.key"))
    assert privcodec.inspect(mine, require_signer=pub)["signer"] == load_verifying_key(pub).key_id
    with pytest.raises(FormatError, match="not signed"):
        privcodec.inspect(make(), require_signer=pub)
    with pytest.raises(FormatError, match="not by the required signer"):
        privcodec.inspect(make(signer=OTHER_SIGNER), require_signer=pub)
    stripped_of_signature = open_container(mine)
    with pytest.raises(FormatError, match="not signed"):
        privcodec.inspect(reassemble(stripped_of_signature, signatures=[]), require_signer=pub)


def test_signing_keys_neither_encrypt_nor_decrypt(tmp_path):
    from privcodec.errors import KeyFileError
    from privcodec.keys import keygen, load_recipient

    keygen("maker", tmp_path, "ed25519")
    with pytest.raises(KeyFileError, match="signs files"):
        load_identity(tmp_path / "maker.key")
    with pytest.raises(KeyFileError, match="signs files"):
        load_recipient("maker", tmp_path)


# ---------------------------------------------------------------- 6. header rules and trial limits


@pytest.mark.parametrize("quality", [100.0, 0.5, 8.000001])
def test_quality_outside_the_codecs_range_is_rejected_where_the_header_is_read(quality):
    c = open_container(make())
    declared = [(ch.index, c._declared[ch.index], fmt._sha(ch.body)) for ch in c._chunks]
    with pytest.raises(FormatError, match=re.escape(fmt.CORRUPT)):
        open_container(reassemble(c, core=forged_core(c, declared=declared, quality=quality)))
    with pytest.raises(ValueError):
        make(quality=quality)


def test_failed_stanza_trials_are_capped_per_key(monkeypatch):
    many = [generate_identity("x25519") for _ in range(12)]
    data = make(face_to=many, person_to=many[:1])
    assert [g.index for g in open_container(data).unlock([many[0]])] == [1, 2]
    monkeypatch.setattr(limits, "MAX_FAILED_UNWRAPS", 10)
    with pytest.raises(FormatError, match="too many recipient stanzas"):
        open_container(data).unlock([generate_identity("x25519")])


def test_seal_never_writes_a_file_its_readers_refuse(monkeypatch):
    """The reader's stanza limits are the writer's too: 257 recipients on one group sealed fine
    and then failed to open for everyone; so did more anonymous stanzas than a key is tried on."""
    many = [generate_identity("symmetric") for _ in range(fmt.MAX_STANZAS + 1)]
    with pytest.raises(FormatError, match=f"at most {fmt.MAX_STANZAS} recipients"):
        make(face_to=many)
    x = [generate_identity("x25519") for _ in range(12)]
    monkeypatch.setattr(limits, "MAX_FAILED_UNWRAPS", 12)
    data = make(face_to=x[:6], person_to=x[:5])                  # 11 stanzas: the last opens
    assert [g.index for g in open_container(data).unlock([x[4]])] == [1, 2]
    with pytest.raises(FormatError, match="at most 11 x25519 recipient stanzas"):
        make(face_to=x[:6], person_to=x[:6])
    with pytest.raises(FormatError, match="at most 11 x25519"):   # grant checks the same
        open_container(data).grant(x[0], x[11].recipient)
    monkeypatch.setattr(fmt, "MAX_STANZAS_PER_FILE", 5)
    with pytest.raises(FormatError, match="at most 5 recipient stanzas in all"):
        make(face_to=many[:3], person_to=x[:3])


def test_recipients_cannot_be_linked_across_files():
    a, b = open_container(make()), open_container(make())
    tags = lambda c: {s.key_id for ch in c._chunks for s in ch.stanzas if s.kind == "symmetric"}
    assert tags(a) and not tags(a) & tags(b)
    assert bytes.fromhex(ALICE.key_id) not in make()


# ---------------------------------------------------------------- version 1: what still holds


def test_a_junk_v1_stanza_with_the_grantees_id_does_not_make_grant_skip_the_grantee():
    data = (ROOT / "tests/fixtures/v1/format-md-vector.prvc").read_bytes()
    owner = load_identity(ROOT / "tests/fixtures/v1/format-md-vector.key")
    grantee = generate_identity("symmetric")
    c = open_container(data)
    junk = crypto.Stanza("symmetric", bytes.fromhex(grantee.key_id), os.urandom(16), os.urandom(48))
    c._chunks[0].stanzas = c._chunks[0].stanzas + [junk]
    with_junk = open_container(c.to_bytes())
    with pytest.raises(DecryptionError):        # the junk stanza claims the grantee: it is a wrong key for it
        with_junk.unlock([grantee])
    granted = open_container(with_junk.grant(owner, grantee.recipient))
    assert len(granted._chunks[0].stanzas) == 3


def test_negative_zero_is_not_a_second_encoding_of_a_score():
    """Versions 2 and 3 store scores as f64 (version 4 as u16: one encoding per value)."""
    c = open_container(make(version=3))
    entry = fmt._label_bytes("background") + struct.pack(">d", 1.0)
    core = c._core.replace(entry, fmt._label_bytes("background") + b"\x80" + bytes(7), 1)
    assert core != c._core
    with pytest.raises(FormatError):
        open_container(reassemble(c, core=core))
    assert open_container(seal(width=16, height=16, block=16, codec_id="c", weights_sha256=bytes(32), quality=1.0,
                               block_map=np.zeros((1, 1), np.int32), public=[PublicGroup(0, "x", -0.0, b"")],
                               protected=[], version=3)).public_groups[0].score == 0.0


def test_a_metadata_only_recipient_is_not_told_their_key_opens_nothing(tmp_path):
    import privcodec
    from privcodec.container import Metadata

    meta_key = generate_identity("symmetric")
    data = seal(width=64, height=32, block=16, codec_id="gicodec-1", weights_sha256=bytes(32), quality=4.0,
                block_map=BLOCK_MAP, public=[PublicGroup(0, "background", 1.0, b"bg")],
                protected=[ProtectedGroup(1, "face", 0.9, FACE | PERSON, b"f", [ALICE.recipient])],
                metadata=(Metadata(b"II*\\0exif", b"<xmp/>"), [meta_key.recipient]))
    info = privcodec.inspect(data, keys=[meta_key])
    assert info["groups"] and open_container(data).metadata_chunk is not None
    c = open_container(data)
    c.unlock([meta_key])
    assert c.metadata.xmp == b"<xmp/>"
