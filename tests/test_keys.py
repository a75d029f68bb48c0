"""Key files, identities and recipients (FORMAT.md, "Key files")."""
from __future__ import annotations

import base64
import hashlib
import stat

import pytest

from privcodec.container import crypto
from privcodec.errors import KeyFileError, OutputExistsError
from privcodec.keys import generate_identity, keygen, load_identity, load_recipient


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keygen_symmetric_writes_one_private_file(tmp_path):
    [key] = keygen("family", tmp_path / "keys")
    assert key == tmp_path / "keys" / "family.key" and mode(key) == 0o600
    lines = key.read_text().splitlines()
    assert lines[0].startswith("# created ") and lines[1].startswith("privcodec-symmetric-key-1:")
    identity = load_identity(key)
    assert identity.kind == "symmetric" and lines[0].endswith(f"key id {identity.key_id}")
    assert load_recipient("family", tmp_path / "keys").key_id == identity.key_id   # NAME.key serves as recipient
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["family.key"]   # no temp files left


def test_keygen_x25519_writes_secret_and_public(tmp_path):
    key, pub = keygen("archive", tmp_path, kind="x25519")
    assert (key.name, mode(key), pub.name, mode(pub)) == ("archive.key", 0o600, "archive.pub", 0o644)
    assert pub.read_text().splitlines()[1].startswith("privcodec-x25519-public-1:")
    identity = load_identity(key)
    by_name = load_recipient("archive", tmp_path)   # prefers NAME.pub
    assert by_name.source == str(pub) and by_name.key_id == identity.key_id
    assert load_recipient(str(key), tmp_path).key_id == identity.key_id   # a .key derives the public key
    assert by_name.key == crypto.x25519_public(identity.secret)


def test_keygen_refuses_to_overwrite_unless_forced(tmp_path):
    keygen("k", tmp_path, kind="x25519")
    before = (tmp_path / "k.key").read_bytes()
    with pytest.raises(OutputExistsError, match="k.key exists"):
        keygen("k", tmp_path)
    (tmp_path / "k.key").unlink()
    with pytest.raises(OutputExistsError, match="k.pub exists"):   # no half key pair either
        keygen("k", tmp_path, kind="x25519")
    assert not (tmp_path / "k.key").exists()
    (tmp_path / "k.key").write_bytes(before)
    keygen("k", tmp_path, kind="x25519", force=True)
    assert (tmp_path / "k.key").read_bytes() != before and mode(tmp_path / "k.key") == 0o600


@pytest.mark.parametrize("name", ["", "../evil", "a/b", ".hidden", "-x", "a b", "x" * 65])
def test_keygen_rejects_bad_names(tmp_path, name):
    with pytest.raises(KeyFileError, match="invalid key name"):
        keygen(name, tmp_path)


def test_keygen_refuses_the_name_policies_reserve_for_a_passphrase(tmp_path):
    with pytest.raises(KeyFileError, match="'passphrase' is reserved"):
        keygen("passphrase", tmp_path)
    assert not list(tmp_path.iterdir())


def test_keygen_rejects_unknown_type(tmp_path):
    with pytest.raises(KeyFileError, match="unknown key type"):
        keygen("k", tmp_path, kind="rsa")


def test_keygen_is_deterministic_with_the_test_hook(tmp_path):
    keygen("a", tmp_path, _random=lambda n: bytes(range(n)))
    assert load_identity(tmp_path / "a.key").secret == bytes(range(32))


SECRET = base64.b64encode(bytes(range(32))).decode()


@pytest.mark.parametrize("text, message", [
    ("", "not a privcodec key file"),
    ("hello\n", "not a privcodec key file"),
    ("# only a comment\n", "not a privcodec key file"),
    (f"privcodec-rsa-key-1:{SECRET}\n", "not a privcodec key file"),
    (f"privcodec-symmetric-key-1:{SECRET}\nprivcodec-symmetric-key-1:{SECRET}\n", "not a privcodec key file"),
    ("privcodec-symmetric-key-1:not base64!\n", "malformed key"),
    (f"privcodec-symmetric-key-1:{base64.b64encode(bytes(31)).decode()}\n", "malformed key"),
    ("privcodec-symmetric-key-1:" + "A" * 5000 + "\n", "not a privcodec key file"),
    (f"privcodec-x25519-public-1:{base64.b64encode(bytes(32)).decode()}\n", "invalid X25519 public key"),
])
def test_malformed_key_files_name_the_file(tmp_path, text, message):
    path = tmp_path / "bad.key"
    path.write_text(text)
    with pytest.raises(KeyFileError) as e:
        load_recipient(str(path), tmp_path)
    assert str(e.value).startswith(str(path)) and message in str(e.value)
    assert SECRET not in str(e.value)


def test_binary_and_missing_key_files(tmp_path):
    (tmp_path / "bin.key").write_bytes(b"\xff\xfe\x00privcodec")
    with pytest.raises(KeyFileError, match="bin.key: not a privcodec key file"):
        load_identity(tmp_path / "bin.key")
    with pytest.raises(KeyFileError, match="nope.key: cannot read key file"):
        load_identity(tmp_path / "nope.key")


def test_public_key_is_not_an_identity(tmp_path):
    _, pub = keygen("k", tmp_path, kind="x25519")
    with pytest.raises(KeyFileError, match="is a public key"):
        load_identity(pub)


def test_unknown_recipient_name(tmp_path):
    with pytest.raises(KeyFileError, match=r"no key named 'bob' in .* \(looked for bob.pub and bob.key\)"):
        load_recipient("bob", tmp_path)


def test_key_ids_are_domain_separated_fingerprints():
    secret = bytes(range(32))
    sym = crypto.key_id("symmetric", secret)
    assert len(sym) == 8 and sym != hashlib.sha256(secret).digest()[:8]
    assert sym != crypto.key_id("x25519", secret)
    a, b = generate_identity("x25519"), generate_identity("x25519")
    assert a.key_id != b.key_id and len(a.key_id) == 16


def test_secrets_stay_out_of_repr():
    identity = generate_identity("symmetric")
    assert identity.secret.hex() not in repr(identity) and identity.secret.hex() not in repr(identity.recipient)


def test_keygen_accepts_a_file_name_for_the_key_name(tmp_path):
    [key] = keygen("family.key", tmp_path)
    assert key == tmp_path / "family.key"


def test_keygen_into_a_file_is_a_clean_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(KeyFileError, match="not a directory"):
        keygen("bob", tmp_path / "file")


def test_a_stale_public_key_never_shadows_a_new_secret(tmp_path):
    keygen("zed", tmp_path, "x25519")
    (tmp_path / "zed.key").unlink()
    with pytest.raises(OutputExistsError, match="zed.pub"):      # NAME.pub would be looked up first
        keygen("zed", tmp_path, "symmetric")
    keygen("zed", tmp_path, "symmetric", force=True)
    assert not (tmp_path / "zed.pub").exists()
    assert load_recipient("zed", tmp_path).key_id == load_identity(tmp_path / "zed.key").key_id


def test_a_public_key_that_does_not_match_the_secret_is_refused(tmp_path):
    keygen("zed", tmp_path, "x25519")
    keygen("other", tmp_path, "x25519")
    (tmp_path / "zed.pub").write_bytes((tmp_path / "other.pub").read_bytes())
    with pytest.raises(KeyFileError, match="not one key pair"):
        load_recipient("zed", tmp_path)
