"""Access changes across an archive's files: grant, revoke, rotate (one task per file, on any worker).

    grant:  a key that opens a chunk ─▶ one more stanza for the new recipient (no re-encryption)
    revoke: every chunk the revoked key id may open ─▶ fresh content key, re-encrypted, wrapped for
            the remaining recipients ─▶ every other chunk re-MACed over the new core (Container.rekey)
    rotate: revoke OLD with NEW added to the same chunks, in one rewrite

The worker checks the file is the one catalogued, changes it, re-opens the result and checks that
every chunk still decrypts to the same plaintext before returning the new bytes; the calling process
writes them (atomically) and updates the catalogue.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

CHANGED = "changed since it was catalogued (run: privcodec archive verify)"


@dataclass(frozen=True)
class GrantTask:
    path: str                        # absolute
    expected_sha256: str
    identity: object                 # keys.Identity
    recipient: object                # keys.Recipient
    only: frozenset | None = None    # chunk indices to grant (None: all the identity opens)


@dataclass(frozen=True)
class RekeyTask:
    path: str
    expected_sha256: str
    identities: tuple                # keys.Identity, opening every chunk of the file
    new_recipients: dict = field(default_factory=dict)   # chunk index -> [keys.Recipient]


def _read(path: str, expected: str) -> bytes | dict:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return {"error": f"cannot read: {e.strerror or e}"}
    if hashlib.sha256(data).hexdigest() != expected:
        return {"error": CHANGED}
    return data


def _plaintexts(c, identities) -> dict[int, bytes]:
    return {chunk.index: plaintext for chunk, _, plaintext, _ in c._open(identities)}


def _rewrite(task, identities: list, change) -> dict:
    """Read the catalogued file, ``change(container, plaintexts) -> {"data": new bytes, ...}`` (data
    None: nothing to do), and check the new file decrypts, for ``identities``, to exactly the
    plaintexts the old one did: a file is never replaced by one that decodes differently."""
    from ..container import open_container
    from ..errors import PrivcodecError

    data = _read(task.path, task.expected_sha256)
    if isinstance(data, dict):
        return data
    try:
        c = open_container(data)
        before = _plaintexts(c, identities)
        result = change(c, before)
        if result["data"] is None:
            return result
        after = _plaintexts(open_container(result["data"]), identities)
    except PrivcodecError as e:
        return {"error": str(e)}
    if before != after:
        return {"error": "internal error: the new file does not decrypt to the same content; left unchanged"}
    return result


def grant_one(task: GrantTask) -> dict:
    """{"data", "granted": [chunk indices]} or {"error"}."""
    def change(c, before):
        granted = sorted(set(before) if task.only is None else set(before) & task.only)
        if not granted:
            return {"data": None, "granted": []}
        return {"data": c.grant(task.identity, task.recipient, only=set(granted)), "granted": granted}

    return _rewrite(task, [task.identity], change)


def rekey_one(task: RekeyTask) -> dict:
    """{"data"[, "warning"]} or {"error"}."""
    def change(c, before):
        result = {"data": c.rekey(list(task.identities), task.new_recipients)}
        if c.signatures:
            result["warning"] = f"its signature by {c.signer.key_id} was dropped (it signed the old header)"
        return result

    return _rewrite(task, list(task.identities), change)
