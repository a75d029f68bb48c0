"""Key files, identities (who can decrypt) and recipients (whom we encrypt to).

    keygen NAME ─▶ NAME.key (secret, 0600) [+ NAME.pub for x25519 and ed25519]
    NAME.key ─▶ load_identity ─▶ Identity          (unlock, strip, grant)
    NAME / path ─▶ load_recipient ─▶ Recipient     (seal, grant)
    NAME.key (ed25519) ─▶ load_signing_key ─▶ SigningKey      (protect --sign)
    NAME.pub (ed25519) ─▶ load_verifying_key ─▶ VerifyingKey  (view --require-signer)

The text format is in FORMAT.md ("Key files").  Error messages name the file
but never print key material.
"""
from __future__ import annotations

import base64
import binascii
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .container import crypto
from .container.crypto import ED25519, PASSPHRASE, SYMMETRIC, X25519, Random
from .errors import KeyFileError, OutputExistsError

KINDS = (SYMMETRIC, X25519)              # keys that encrypt and decrypt
KEYGEN_KINDS = KINDS + (ED25519,)        # ed25519 keys only sign
PREFIXES = {
    "privcodec-symmetric-key-1": (SYMMETRIC, "secret"),
    "privcodec-x25519-secret-1": (X25519, "secret"),
    "privcodec-x25519-public-1": (X25519, "public"),
    "privcodec-ed25519-secret-1": (ED25519, "secret"),
    "privcodec-ed25519-public-1": (ED25519, "public"),
}
PREFIX_OF = {v: k for k, v in PREFIXES.items()}
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
MAX_KEY_FILE = 4096


@dataclass(frozen=True)
class Recipient:
    """Someone we can encrypt to: a symmetric secret or an X25519 public key."""
    kind: str
    key: bytes = field(repr=False)
    source: str = ""                 # file it came from, for messages
    key_id: str = field(init=False)  # 16 hex characters

    def __post_init__(self):
        object.__setattr__(self, "key_id", _key_id(self.kind, self.key))


def _key_id(kind: str, key: bytes) -> str:
    # a passphrase has no id: even a truncated hash of it could be brute-forced
    return PASSPHRASE if kind == PASSPHRASE else crypto.key_id(kind, key).hex()


def _check_passphrase_type(passphrase) -> None:
    if not isinstance(passphrase, (str, bytes, bytearray)):
        # bytes(123) would be 123 zero bytes: a passphrase nobody typed
        raise KeyFileError(f"a passphrase must be text (str) or bytes, not {type(passphrase).__name__}")


def passphrase_identity(passphrase: str | bytes, source: str = "passphrase") -> "Identity":
    """A passphrase as a recipient and identity (scrypt stanzas, FORMAT.md)."""
    _check_passphrase_type(passphrase)
    raw = passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)
    if not raw:
        raise KeyFileError("empty passphrase")
    return Identity(PASSPHRASE, raw, source)


def passphrase_recipient(passphrase: str | bytes) -> "Recipient":
    """A passphrase to encrypt to: at least limits.MIN_PASSPHRASE characters (it can be guessed
    offline by anyone who has the file)."""
    from .limits import MIN_PASSPHRASE

    _check_passphrase_type(passphrase)
    if len(passphrase) < MIN_PASSPHRASE:
        raise KeyFileError(f"the passphrase is too short: use at least {MIN_PASSPHRASE} characters")
    return passphrase_identity(passphrase).recipient


@dataclass(frozen=True)
class Identity:
    """A secret that opens stanzas: a symmetric secret or an X25519 secret key."""
    kind: str
    secret: bytes = field(repr=False)
    source: str = ""
    key_id: str = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "key_id", self.recipient.key_id)

    @property
    def recipient(self) -> Recipient:
        """The recipient this identity decrypts for (symmetric, passphrase: itself; x25519: its public key)."""
        key = crypto.x25519_public(self.secret) if self.kind == X25519 else self.secret
        return Recipient(self.kind, key, self.source)


@dataclass(frozen=True)
class VerifyingKey:
    """An Ed25519 public key: checks who signed a file."""
    public_key: bytes = field(repr=False)
    source: str = ""
    key_id: str = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "key_id", crypto.signing_key_id(self.public_key).hex())


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 secret key: signs the files it protects (it opens nothing)."""
    secret: bytes = field(repr=False)
    source: str = ""

    @property
    def public_key(self) -> bytes:
        return crypto.ed25519_public(self.secret)

    @property
    def verifying_key(self) -> VerifyingKey:
        return VerifyingKey(self.public_key, self.source)

    @property
    def key_id(self) -> str:
        return self.verifying_key.key_id


def generate_identity(kind: str = SYMMETRIC, *, _random: Random = os.urandom) -> Identity:
    if kind not in KINDS:
        raise KeyFileError(f"unknown key type {kind!r}: use symmetric or x25519")
    return Identity(kind, _random(crypto.KEY_LEN))


def _key_text(kind: str, role: str, key: bytes, key_id: str) -> str:
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (f"# created {created}, key id {key_id}\n"
            f"{PREFIX_OF[(kind, role)]}:{base64.b64encode(key).decode()}\n")


def identity_text(identity: Identity) -> str:
    """Contents of the secret key file for this identity."""
    return _key_text(identity.kind, "secret", identity.secret, identity.key_id)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise KeyFileError(f"invalid key name {name!r}: use up to 64 letters, digits, '_', '.', '-' "
                           "(not starting with '.' or '-')")


def _write_atomic(path: Path, text: str, mode: int, overwrite: bool) -> None:
    """Write via a temp file in the same folder: the key file appears whole or not at all."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")   # created 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)   # fails if path exists, unlike rename: no overwrite race
    except FileExistsError:
        raise OutputExistsError(f"{path} exists (use --force to overwrite)") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def keygen(name: str, directory: Path, kind: str = SYMMETRIC, force: bool = False, *,
           _random: Random = os.urandom) -> list[Path]:
    """Write NAME.key (secret, 0600) and, for x25519, NAME.pub (0644). Returns the paths written.

    NAME may be given as a file name (``family.key``).  A NAME.pub left from an earlier x25519
    key counts as an existing output: recipients look up NAME.pub first, so a stale one would
    send files to a key nobody holds any more (with ``force`` it is removed)."""
    if isinstance(name, str) and name.endswith((".key", ".pub")):
        name = name[:-4]
    _check_name(name)
    if name == PASSPHRASE:
        # a policy's recipient "passphrase" is the passphrase given to protect, never a key file
        raise KeyFileError("'passphrase' is reserved (in a policy it means the passphrase given to protect): "
                           "choose another key name")
    if kind not in KEYGEN_KINDS:
        raise KeyFileError(f"unknown key type {kind!r}: use symmetric, x25519 or ed25519")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise KeyFileError(f"{directory}: not a directory")
    key_path, pub_path = directory / f"{name}.key", directory / f"{name}.pub"
    paths = [key_path, pub_path] if kind in (X25519, ED25519) else [key_path]
    for p in (key_path, pub_path):   # check both first so we never leave half a key pair
        if p.is_symlink() or (p.exists() and not p.is_file()):
            raise KeyFileError(f"{p} exists and is not a regular file")
        if not force and p.exists():
            raise OutputExistsError(f"{p} exists (use --force to overwrite)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if kind == ED25519:
            signer = SigningKey(_random(crypto.KEY_LEN))
            _write_atomic(key_path, _key_text(ED25519, "secret", signer.secret, signer.key_id), 0o600, force)
            _write_atomic(pub_path, _key_text(ED25519, "public", signer.public_key, signer.key_id), 0o644, force)
            return paths
        identity = generate_identity(kind, _random=_random)
        _write_atomic(key_path, identity_text(identity), 0o600, force)
        if kind == X25519:
            r = identity.recipient
            _write_atomic(pub_path, _key_text(X25519, "public", r.key, r.key_id), 0o644, force)
        elif pub_path.exists():
            pub_path.unlink()
    except OSError as e:
        raise KeyFileError(f"{directory}: cannot write key file: {e.strerror or e}") from None
    return paths


class KeyPermissionWarning(UserWarning):
    """A secret key file others can read."""


def _read_key_file(path: Path) -> tuple[str, str, bytes]:
    """(kind, role, 32 key bytes) from a key file; KeyFileError naming the file otherwise."""
    import stat
    import warnings

    try:
        # O_NONBLOCK: a FIFO given as a key must not block forever; it is refused below
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read key file: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"{path}: not a regular file")
        with os.fdopen(fd, "rb") as f:
            fd = None
            raw = f.read(MAX_KEY_FILE + 1)
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read key file: {e.strerror or e}") from None
    finally:
        if fd is not None:
            os.close(fd)
    bad = KeyFileError(f"{path}: not a privcodec key file (expected one line like privcodec-symmetric-key-1:<base64>)")
    if len(raw) > MAX_KEY_FILE:
        raise bad
    try:
        lines = [ln.strip() for ln in raw.decode("ascii").splitlines()]
    except UnicodeDecodeError:
        raise bad from None
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if len(lines) != 1 or ":" not in lines[0]:
        raise bad
    prefix, b64 = lines[0].split(":", 1)
    if prefix not in PREFIXES:
        raise bad
    try:
        key = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != crypto.KEY_LEN:
        raise KeyFileError(f"{path}: malformed key (expected base64 of {crypto.KEY_LEN} bytes)")
    kind, role = PREFIXES[prefix]
    if role == "public" and kind == X25519 and (key[31] & 0x80 or not crypto.valid_x25519_public(key)):
        # bit 255 set: a non-canonical encoding that nobody's secret key produces
        raise KeyFileError(f"{path}: invalid X25519 public key")
    if role == "secret" and st.st_mode & 0o077:
        warnings.warn(f"{path}: secret key readable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
                      f"run: chmod 600 {path}", KeyPermissionWarning, stacklevel=3)
    return kind, role, key


def _not_signing(path, kind: str, use: str) -> None:
    if kind == ED25519:
        raise KeyFileError(f"{path}: is an ed25519 signing key: it signs files and cannot {use}")


def load_signing_key(path) -> SigningKey:
    """An ed25519 secret key file, for signing."""
    kind, role, key = _read_key_file(Path(path))
    if kind != ED25519 or role != "secret":
        raise KeyFileError(f"{path}: not an ed25519 signing key (make one with: privcodec keygen NAME --type ed25519)")
    return SigningKey(key, str(path))


def load_verifying_key(path) -> VerifyingKey:
    """An ed25519 public key file (NAME.pub) or its secret key file."""
    kind, role, key = _read_key_file(Path(path))
    if kind != ED25519:
        raise KeyFileError(f"{path}: not an ed25519 key (a signer is named by its NAME.pub from keygen --type ed25519)")
    return VerifyingKey(key, str(path)) if role == "public" else SigningKey(key, str(path)).verifying_key


def load_identity(path) -> Identity:
    """A secret key file (symmetric or x25519), for decrypting."""
    kind, role, key = _read_key_file(Path(path))
    _not_signing(path, kind, "decrypt")
    if role != "secret":
        raise KeyFileError(f"{path}: is a public key; decrypting needs the secret key file (.key)")
    return Identity(kind, key, str(path))


def load_recipient(spec: str, keys_dir: Path) -> Recipient:
    """A recipient from a key name in keys_dir (NAME.pub preferred, else NAME.key) or a path.

    `spec` is a path when it contains a slash or ends in .key / .pub; otherwise a key name.
    """
    spec = str(spec)
    if "/" in spec or os.sep in spec or spec.endswith((".key", ".pub")):
        path = Path(spec)
    else:
        _check_name(spec)
        pub, secret = Path(keys_dir) / f"{spec}.pub", Path(keys_dir) / f"{spec}.key"
        if not pub.exists() and not secret.exists():
            raise KeyFileError(f"no key named {spec!r} in {keys_dir} (looked for {spec}.pub and {spec}.key)")
        if pub.exists() and secret.exists():
            # both present: they must be one key pair, or files would go to a key nobody holds
            from_pub, from_secret = load_recipient(str(pub), keys_dir), load_recipient(str(secret), keys_dir)
            if from_pub.key_id != from_secret.key_id:
                raise KeyFileError(f"{pub} and {secret} are not one key pair; remove the stale one")
            return from_pub
        path = pub if pub.exists() else secret
    kind, role, key = _read_key_file(path)
    _not_signing(path, kind, "be encrypted to")
    if role == "public":
        return Recipient(kind, key, str(path))
    return Identity(kind, key, str(path)).recipient
