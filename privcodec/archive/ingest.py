"""archive add: photos ─▶ protect (one task per photo, on any worker) ─▶ ARCHIVE/<relative path>.prvc.

    SRC... ─▶ walk (JPEG/PNG/WebP/TIFF/HEIC) ─▶ skip photos whose bytes are catalogued (hashes of
           unchanged files remembered: hashcache.py)
           ─▶ worker: read, hash, protect ─▶ bytes + record
           ─▶ this process: pending row ─▶ atomic write ─▶ catalogue row (one transaction)

A run that is stopped at any point (Ctrl-C, crash, power loss) leaves every file either whole and
catalogued, or whole and pending (the next run rewrites it), never half-written; re-running skips
what is done.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".heic", ".heif")
SUFFIX = ".prvc"


@dataclass(frozen=True)
class IngestTask:
    source: str            # absolute path of the photo
    dest: str              # archive-relative path of the .prvc ('/'-separated)
    policy: object         # policy.Policy, loaded once by the caller
    recipients: dict       # its recipients (keys.Recipient by name): workers need no key files
    codec: str
    quality: float
    effort: int = 0


def walk(sources) -> list[tuple[Path, str]]:
    """(photo path, archive-relative .prvc path) for every photo under ``sources``; a folder keeps its
    own name as the first path component, a single photo goes to the archive's top level.
    Hidden files and folders are skipped; symlinks are not followed into folders."""
    out = []
    for src in sources:
        src = Path(src)
        if src.is_dir():
            for root, dirs, files in os.walk(src):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if name.startswith(".") or not name.lower().endswith(PHOTO_SUFFIXES):
                        continue
                    path = Path(root) / name
                    rel = Path(src.resolve().name) / path.relative_to(src)
                    out.append((path, rel.as_posix() + SUFFIX))
        else:
            out.append((src, src.name + SUFFIX))
    return out


def ingest_one(task: IngestTask) -> dict:
    """Protect one photo (runs on a worker).  Returns {"data", "record"} or {"error"}: a bad photo is a
    result, not an exception, so one photo never stops the others."""
    from .. import api
    from ..errors import PrivcodecError
    from .catalogue import FileRecord

    try:
        raw = Path(task.source).read_bytes()
    except OSError as e:
        return {"error": f"cannot read: {e.strerror or e}"}
    try:
        result = api.protect(raw, task.policy, recipients=task.recipients, codec=task.codec or None,
                             quality=task.quality, effort=task.effort)
        from ..container import open_container

        c = open_container(result.data)
    except PrivcodecError as e:
        # the photo was handed over as bytes: the report names its path already
        return {"error": str(e).removeprefix("<image data>: ")}
    except MemoryError:
        return {"error": "out of memory"}
    counts = result.counts()
    record = FileRecord(
        path=task.dest, source_sha256=hashlib.sha256(raw).hexdigest(),
        file_sha256=hashlib.sha256(result.data).hexdigest(), size=len(result.data), width=c.width,
        height=c.height, codec=c.codec_id, public=counts.get("public", 0), protected=counts.get("encrypt", 0),
        redacted=counts.get("redact", 0), classes=[g.label for g in c.public_groups], access=result.access)
    return {"data": result.data, "record": record, "warnings": result.warnings}
