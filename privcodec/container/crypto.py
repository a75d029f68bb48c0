"""Chunk encryption and content-key wrapping for .prvc (FORMAT.md, "Crypto").

Primitives come only from `cryptography`: AES-256-GCM, X25519, HKDF-SHA256.
Every key here encrypts exactly one message, which is why the wrap can use a
fixed zero nonce (as age does).
"""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

Random = Callable[[int], bytes]

SYMMETRIC = "symmetric"
X25519 = "x25519"
TYPE_CODES = {SYMMETRIC: 1, X25519: 2}
TYPE_NAMES = {code: name for name, code in TYPE_CODES.items()}
ARG_LEN = {SYMMETRIC: 16, X25519: 32}   # salt / ephemeral public key

KEY_LEN = 32
NONCE_LEN = 12
TAG_LEN = 16
KEY_ID_LEN = 8
WRAPPED_LEN = KEY_LEN + TAG_LEN
ZERO_NONCE = bytes(NONCE_LEN)

INFO_SYMMETRIC = b"privcodec/v1 symmetric"
INFO_X25519 = b"privcodec/v1 x25519"
INFO_SYMMETRIC_ID = b"privcodec/v1 symmetric key id"
KEY_ID_PREFIX = b"privcodec/v1 key id"
CHUNK_AAD = b"privcodec/v1 chunk"
STANZA_AAD = b"privcodec/v1 stanza"


@dataclass(frozen=True)
class Stanza:
    """One recipient's wrapped copy of a chunk's content key."""
    kind: str          # SYMMETRIC or X25519
    key_id: bytes      # 8 bytes
    arg: bytes         # salt (symmetric) or ephemeral public key (x25519)
    wrapped: bytes     # AES-256-GCM(KEK, zero nonce, content key): 48 bytes


def hkdf(ikm: bytes, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_LEN, salt=salt, info=info).derive(ikm)


def key_id(kind: str, key: bytes) -> bytes:
    """Fingerprint of a recipient key: the X25519 public key, or the symmetric secret.

    The symmetric secret goes through HKDF first, so the id is never a plain hash of it.
    """
    fingerprint = hkdf(key, None, INFO_SYMMETRIC_ID) if kind == SYMMETRIC else key
    return hashlib.sha256(KEY_ID_PREFIX + bytes([TYPE_CODES[kind]]) + fingerprint).digest()[:KEY_ID_LEN]


def x25519_public(secret: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()


def _x25519_shared(secret: bytes, peer_public: bytes) -> bytes | None:
    """Shared secret, or None for a low-order peer key (all-zero result)."""
    try:
        shared = X25519PrivateKey.from_private_bytes(secret).exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError:   # OpenSSL refuses all-zero results itself
        return None
    return None if shared == bytes(KEY_LEN) else shared


def valid_x25519_public(public: bytes) -> bool:
    """False for low-order points, which would give every sender the same (zero) shared secret."""
    return _x25519_shared(bytes([9]) * KEY_LEN, public) is not None


def chunk_aad(core_hash: bytes, index: int) -> bytes:
    return CHUNK_AAD + core_hash + struct.pack(">I", index)


def stanza_aad(core_hash: bytes, index: int) -> bytes:
    return STANZA_AAD + core_hash + struct.pack(">I", index)


def encrypt_chunk(content_key: bytes, plaintext: bytes, aad: bytes, rnd: Random) -> bytes:
    nonce = rnd(NONCE_LEN)
    return nonce + AESGCM(content_key).encrypt(nonce, plaintext, aad)


def decrypt_chunk(content_key: bytes, chunk: bytes, aad: bytes) -> bytes | None:
    try:
        return AESGCM(content_key).decrypt(chunk[:NONCE_LEN], chunk[NONCE_LEN:], aad)
    except InvalidTag:
        return None


def wrap(kind: str, recipient_key: bytes, content_key: bytes, aad: bytes, rnd: Random) -> Stanza:
    """recipient_key: the symmetric secret, or the recipient's X25519 public key."""
    if kind == SYMMETRIC:
        arg = rnd(ARG_LEN[SYMMETRIC])
        kek = hkdf(recipient_key, arg, INFO_SYMMETRIC)
    elif kind == X25519:
        eph_secret = rnd(KEY_LEN)
        arg = x25519_public(eph_secret)
        shared = _x25519_shared(eph_secret, recipient_key)
        if shared is None:
            raise ValueError("invalid X25519 recipient key")
        kek = hkdf(shared, arg + recipient_key, INFO_X25519)
    else:
        raise ValueError(f"unknown key type {kind!r}")
    return Stanza(kind, key_id(kind, recipient_key), arg, AESGCM(kek).encrypt(ZERO_NONCE, content_key, aad))


def unwrap(kind: str, secret: bytes, stanza: Stanza, aad: bytes) -> bytes | None:
    """The content key, or None if this secret does not open the stanza."""
    if kind != stanza.kind:
        return None
    if kind == SYMMETRIC:
        kek = hkdf(secret, stanza.arg, INFO_SYMMETRIC)
    else:
        shared = _x25519_shared(secret, stanza.arg)
        if shared is None:
            return None
        kek = hkdf(shared, stanza.arg + x25519_public(secret), INFO_X25519)
    try:
        return AESGCM(kek).decrypt(ZERO_NONCE, stanza.wrapped, aad)
    except InvalidTag:
        return None
