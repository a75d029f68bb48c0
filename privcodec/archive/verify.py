"""archive verify (as ``restic check``): every file re-read and checked against the catalogue, and
with keys, every chunk those keys should open opened — and none they should not.

    disk ─┬─ catalogued, same hash, parses (every hash, MAC and signature)   ok
          ├─ catalogued but missing / changed / corrupt                      problem
          └─ on disk but not catalogued                                      problem
    keys ─▶ chunks opened  vs  chunks the access list gives that key id      problems both ways
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class VerifyTask:
    path: str                        # absolute
    expected_sha256: str
    identities: tuple = ()           # keys.Identity
    access: dict | None = None       # chunk -> [key ids], from the catalogue
    written: tuple | None = None     # (sha256, access) of an interrupted write of this file (its write-ahead
                                     # record): a file that is that write is checked against it, not 'changed'


def verify_one(task: VerifyTask) -> dict:
    """{"problems": [text, ...]} for one catalogued file."""
    from ..container import open_container
    from ..errors import PrivcodecError

    try:
        data = Path(task.path).read_bytes()
    except FileNotFoundError:
        return {"problems": ["missing (catalogued, not on disk)"]}
    except OSError as e:
        return {"problems": [f"cannot read: {e.strerror or e}"]}
    problems = []
    sha, access = hashlib.sha256(data).hexdigest(), task.access or {}
    if task.written is not None and sha == task.written[0] != task.expected_sha256:
        access = task.written[1] or {}    # the interrupted write did replace it (reported as such by the caller)
    elif sha != task.expected_sha256:
        problems.append("changed (its bytes differ from what privcodec wrote)")
    try:
        c = open_container(data)
    except PrivcodecError as e:
        return {"problems": problems + [f"damaged: {e}"]}
    if set(access) - {ch.index for ch in c.protected_chunks} - ({c.metadata_chunk.index} if c.metadata_chunk else set()):
        problems.append("holds fewer encrypted chunks than the catalogue lists")
    for ident in task.identities:
        expected = {chunk for chunk, ids in access.items() if ident.key_id in ids}
        try:
            opened = c.opens([ident])
        except PrivcodecError as e:
            problems.append(f"key {ident.key_id}: {e}")
            continue
        if expected - opened:
            problems.append(f"key {ident.key_id} should open chunk(s) {sorted(expected - opened)} but does not")
        if opened - expected:
            problems.append(f"key {ident.key_id} opens chunk(s) {sorted(opened - expected)} the access list does not give it")
    return {"problems": problems}
