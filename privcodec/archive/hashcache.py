"""Source photos' content hashes, remembered by file identity, so `archive add` over a library of
thousands of photos reads only the new or changed ones (restic's file cache, in spirit).

    path ─▶ stat ─▶ (path, device, inode, size, mtime ns, ctime ns) known? ─▶ its SHA-256
                                                            unknown ─▶ read and hash ─▶ remember

A photo whose bytes change gets a new mtime and ctime (ctime cannot be set back by anyone), so it
is read again.  One that changed in the last seconds is never remembered: it may still be
written within one timestamp tick (git's "racily clean" files).  The cache lives in the user's
cache folder (PRIVCODEC_CACHE_DIR, else $XDG_CACHE_HOME/privcodec, else ~/.cache/privcodec), not
in any archive, readable by its owner only, and holds paths and hashes only; entries of files
that are gone are dropped when it is opened.  PRIVCODEC_NO_CACHE=1 turns it off.  It is an
optimisation: when it cannot be opened or written (another privcodec holding it, a read-only
home), every photo is simply read.
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from pathlib import Path

SETTLE_SECONDS = 2.0      # a file changed more recently than this is hashed, not remembered


def cache_dir() -> Path:
    if os.environ.get("PRIVCODEC_CACHE_DIR"):
        return Path(os.environ["PRIVCODEC_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "privcodec"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _utf8(text: str) -> bool:
    """False for a file name that is not UTF-8 (Python holds its bytes as surrogate escapes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class SourceHashes:
    """``digest(path)``: the file's SHA-256, from the cache while the file is unchanged."""

    def __init__(self, folder: Path | None = None):
        self.db = None
        if folder is None and os.environ.get("PRIVCODEC_NO_CACHE", "") not in ("", "0"):
            return
        try:
            folder = Path(folder) if folder is not None else cache_dir()
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = folder / "source-hashes.sqlite"
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            os.chmod(path, 0o600)
            # autocommit, no fsync: losing the last entries in a crash only means reading those photos again;
            # a short timeout: another privcodec holding the cache makes this one read photos, not wait
            self.db = sqlite3.connect(path, timeout=0.5, isolation_level=None)
            self.db.execute("PRAGMA synchronous = OFF")
            self.db.execute("CREATE TABLE IF NOT EXISTS hashes (path TEXT PRIMARY KEY, identity TEXT NOT NULL, "
                            "sha256 TEXT NOT NULL)")
            gone = [(p,) for (p,) in self.db.execute("SELECT path FROM hashes") if not os.path.exists(p)]
            self.db.executemany("DELETE FROM hashes WHERE path = ?", gone)
        except (OSError, sqlite3.Error):
            self.close()

    def digest(self, path: Path) -> str:
        path = Path(path).resolve()
        st = os.stat(path)
        identity = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
        if not _utf8(str(path)):   # a name SQLite cannot hold: hashed every time
            return sha256_file(path)
        if self.db is not None:
            try:
                row = self.db.execute("SELECT identity, sha256 FROM hashes WHERE path = ?", (str(path),)).fetchone()
            except sqlite3.Error:
                row = None
                self.close()
            if row is not None and row[0] == identity:
                return row[1]
        digest = sha256_file(path)
        settled = time.time() - max(st.st_mtime_ns, st.st_ctime_ns) / 1e9 > SETTLE_SECONDS
        if self.db is not None and settled:
            try:
                self.db.execute("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?)", (str(path), identity, digest))
            except sqlite3.Error:   # locked by another privcodec, disk full: go on without the cache
                self.close()
        return digest

    def close(self) -> None:
        if self.db is not None:
            try:
                self.db.close()
            except sqlite3.Error:
                pass
            self.db = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
