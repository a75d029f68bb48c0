"""Chunk encryption, content-key wrapping and signatures for .prvc (FORMAT.md, "Crypto").

Primitives come only from `cryptography`: AES-256-GCM, X25519, HKDF-SHA256,
HMAC-SHA256, Ed25519.  Every key here encrypts exactly one message, which is
why the wrap can use a fixed zero nonce (as age does).  Version 1 labels are
kept for reading files written by privcodec before FORMAT v2.
"""
from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Callable

from cryptography.exceptions import InvalidTag
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

Random = Callable[[int], bytes]

SYMMETRIC = "symmetric"
X25519 = "x25519"
PASSPHRASE = "passphrase"   # scrypt, as age: for people who will not manage key files
ED25519 = "ed25519"     # signing keys: they sign files, they never open anything
TYPE_CODES = {SYMMETRIC: 1, X25519: 2, PASSPHRASE: 3}
TYPE_NAMES = {code: name for name, code in TYPE_CODES.items()}
ARG_LEN = {SYMMETRIC: 16, X25519: 32, PASSPHRASE: 17}   # salt / ephemeral public key / scrypt salt + log2 N
SCRYPT_LOG_N = 18            # what privcodec writes (age's default); ~0.5 s and 256 MiB per passphrase and file
SCRYPT_MAX_LOG_N = 20        # what a reader accepts: a hostile file cannot ask for more work

KEY_LEN = 32
NONCE_LEN = 12
TAG_LEN = 16
KEY_ID_LEN = 8
WRAPPED_LEN = KEY_LEN + TAG_LEN
ZERO_NONCE = bytes(NONCE_LEN)

INFO_SYMMETRIC_ID = b"privcodec/v1 symmetric key id"
KEY_ID_PREFIX = b"privcodec/v1 key id"
SIGNING_KEY_ID_PREFIX = b"privcodec/v2 signing key id"
STANZA_TAG_LEN = 8   # v2 symmetric stanza tag
MAC_LEN = 32         # v2 stanza-list MAC
SIGNATURE_LEN = 64


def labels(version: int) -> dict[str, bytes]:
    """Domain-separation strings of one format version (FORMAT.md, "Crypto").  Versions 3 and 4
    changed only the core's layout and field widths, so they keep version 2's crypto and strings
    (the version byte is in the core, which every MAC and signature covers)."""
    v = b"privcodec/v%d " % min(version, 2)
    return {"symmetric": v + b"symmetric", "x25519": v + b"x25519", "chunk": v + b"chunk",
            "stanza": v + b"stanza", "tag": v + b"symmetric tag", "mac key": v + b"stanza mac",
            "stanzas": v + b"stanzas", "signature": v + b"signature", "scrypt": v + b"scrypt ",
            "passphrase": v + b"passphrase "}


@dataclass(frozen=True)
class Stanza:
    """One recipient's wrapped copy of a chunk's content key."""
    kind: str          # SYMMETRIC or X25519
    key_id: bytes      # v1: 8-byte key id; v2: symmetric per-file tag (8 bytes), x25519 none (b"")
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


def chunk_aad(binding: bytes, index: int, version: int = 2) -> bytes:
    """v1 binds a chunk to the core hash; v2 to the file id (the core commits to the chunk instead)."""
    return labels(version)["chunk"] + binding + struct.pack(">I", index)


def stanza_aad(binding: bytes, index: int, version: int = 2) -> bytes:
    """v1 binds a wrapped key to the core hash; v2 to the file id (the stanza MAC covers the core)."""
    return labels(version)["stanza"] + binding + struct.pack(">I", index)


def symmetric_tag_key(secret: bytes) -> bytes:
    return hkdf(secret, None, labels(2)["tag"])


def tag_with(tag_key: bytes, file_id: bytes, salt: bytes) -> bytes:
    return hmac.new(tag_key, file_id + salt, hashlib.sha256).digest()[:STANZA_TAG_LEN]


def symmetric_tag(secret: bytes, file_id: bytes, salt: bytes) -> bytes:
    """v2: lets the holder find its stanza without a static key id (unlinkable across files)."""
    return tag_with(symmetric_tag_key(secret), file_id, salt)


def stanza_mac(content_key: bytes, core_hash: bytes, index: int, stanza_bytes: bytes) -> bytes:
    """v2 header MAC over one chunk's stanza list: only a holder of the content key can change it."""
    mac_key = hkdf(content_key, None, labels(2)["mac key"])
    return hmac.new(mac_key, labels(2)["stanzas"] + core_hash + struct.pack(">I", index) + stanza_bytes,
                    hashlib.sha256).digest()


def signing_key_id(public: bytes) -> bytes:
    return hashlib.sha256(SIGNING_KEY_ID_PREFIX + public).digest()[:KEY_ID_LEN]


def ed25519_public(secret: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()


def sign(secret: bytes, core_hash: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(secret).sign(labels(2)["signature"] + core_hash)


def verify_signature(public: bytes, signature: bytes, core_hash: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, labels(2)["signature"] + core_hash)
        return True
    except (InvalidSignature, ValueError):
        return False


def encrypt_chunk(content_key: bytes, plaintext: bytes, aad: bytes, rnd: Random) -> bytes:
    nonce = rnd(NONCE_LEN)
    return nonce + AESGCM(content_key).encrypt(nonce, plaintext, aad)


def decrypt_chunk(content_key: bytes, chunk: bytes, aad: bytes) -> bytes | None:
    try:
        return AESGCM(content_key).decrypt(chunk[:NONCE_LEN], chunk[NONCE_LEN:], aad)
    except InvalidTag:
        return None


def scrypt_master(passphrase: bytes, salt: bytes, log_n: int) -> bytes:
    """The passphrase's key for one file: scrypt(N = 2^log_n, r = 8, p = 1), salted per file."""
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=labels(2)["scrypt"] + salt, length=KEY_LEN, n=1 << log_n, r=8, p=1).derive(passphrase)


def passphrase_kek(master: bytes, file_id: bytes, aad: bytes) -> bytes:
    """One KEK per stanza from the file's scrypt output: the wrap AAD names the file and group,
    so no two stanzas share a KEK (the zero-nonce rule holds)."""
    return hkdf(master, file_id, labels(2)["passphrase"] + aad)


def wrap(kind: str, recipient_key: bytes, content_key: bytes, aad: bytes, rnd: Random, *, version: int = 2,
         file_id: bytes = b"", scrypt_cache: dict | None = None) -> Stanza:
    """recipient_key: the symmetric secret, or the recipient's X25519 public key.

    v1 stanzas carry the recipient's static key id; v2 stanzas carry a per-file tag
    (symmetric) or nothing (x25519), so files cannot be linked to a recipient."""
    info = labels(version)
    if kind == SYMMETRIC:
        arg = rnd(ARG_LEN[SYMMETRIC])
        kek = hkdf(recipient_key, arg, info["symmetric"])
        ident = key_id(kind, recipient_key) if version == 1 else symmetric_tag(recipient_key, file_id, arg)
    elif kind == X25519:
        eph_secret = rnd(KEY_LEN)
        arg = x25519_public(eph_secret)
        shared = _x25519_shared(eph_secret, recipient_key)
        if shared is None:
            raise ValueError("invalid X25519 recipient key")
        kek = hkdf(shared, arg + recipient_key, info["x25519"])
        ident = key_id(kind, recipient_key) if version == 1 else b""
    elif kind == PASSPHRASE and version >= 2:
        # one scrypt run per passphrase and file: the caller's cache holds (salt, master)
        cache = scrypt_cache if scrypt_cache is not None else {}
        if recipient_key not in cache:
            salt = rnd(16)
            cache[recipient_key] = (salt, scrypt_master(recipient_key, salt, SCRYPT_LOG_N))
        salt, master = cache[recipient_key]
        arg = salt + bytes([SCRYPT_LOG_N])
        kek, ident = passphrase_kek(master, file_id, aad), b""
    else:
        raise ValueError(f"unknown key type {kind!r}")
    return Stanza(kind, ident, arg, AESGCM(kek).encrypt(ZERO_NONCE, content_key, aad))


def unwrap(kind: str, secret: bytes, stanza: Stanza, aad: bytes, *, version: int = 2, file_id: bytes = b"",
           scrypt_cache: dict | None = None) -> bytes | None:
    """The content key, or None if this secret does not open the stanza."""
    if kind != stanza.kind:
        return None
    info = labels(version)
    if kind == PASSPHRASE:
        salt, log_n = stanza.arg[:16], stanza.arg[16]
        if version < 2 or not 1 <= log_n <= SCRYPT_MAX_LOG_N:
            return None
        cache = scrypt_cache if scrypt_cache is not None else {}
        if (secret, salt, log_n) not in cache:
            cache[(secret, salt, log_n)] = scrypt_master(secret, salt, log_n)
        kek = passphrase_kek(cache[(secret, salt, log_n)], file_id, aad)
    elif kind == SYMMETRIC:
        kek = hkdf(secret, stanza.arg, info["symmetric"])
    else:
        shared = _x25519_shared(secret, stanza.arg)
        if shared is None:
            return None
        kek = hkdf(shared, stanza.arg + x25519_public(secret), info["x25519"])
    try:
        return AESGCM(kek).decrypt(ZERO_NONCE, stanza.wrapped, aad)
    except InvalidTag:
        return None
