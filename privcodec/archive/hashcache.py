"""Source photos' content hashes, remembered by file identity, so `archive add` over a library of
thousands of photos reads only the new or changed ones (restic's file cache, in spirit).

    path ─▶ stat ─▶ (path, device, inode, size, mtime ns, ctime ns) known? ─▶ its SHA-256
                                                            unknown ─▶ read and hash ─▶ remember

A photo whose bytes change gets a new mtime and ctime (ctime cannot be set back by anyone), so it
is read again.  One that changed in the last seconds is never remembered: it may still be
written within one timestamp tick (git's "racily clean" files).  The cache lives in the user's
cache folder (PRIVCODEC_CACHE_DIR, else $XDG_CACHE_HOME/privcodec, else ~/.cache/privcodec), not
in any archive, readable by its owner only, and holds paths and hashes only.  PRIVCODEC_NO_CACHE=1
turns it off.  It is an optimisation: when it cannot be opened or written (another privcodec
holding it, a read-only home), every photo is simply read.

What it forgets, when a run ends normally (``close``), and never because storage is away — a
library on an unplugged disk or an unmounted share keeps its entries for the day it is back:

  * a photo that is gone from a folder this run walked (a folder holding a photo it hashed, or
    anywhere under one of the ``sources`` it was given), checked by stat: the file is absent and
    the nearest folder above it that exists is on the disk the photo was on (or holds photos
    hashed this run), so an empty mount point or a removed /media/DISK folder forgets nothing;
  * an entry no run has looked up for FORGET_AFTER_DAYS (its ``seen`` day): libraries renamed,
    moved or deleted whole.  Re-adding such a library reads it once, as a first add does.

Only entries in those folders are stat'ed, not the whole cache.
"""
from __future__ import annotations

import errno
import hashlib
import os
import sqlite3
import stat
import time
from pathlib import Path

SETTLE_SECONDS = 2.0      # a file changed more recently than this is hashed, not remembered
FORGET_AFTER_DAYS = 400   # an entry not looked up for this long is dropped (a yearly add still finds its own)


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


def _today() -> int:
    return int(time.time() // 86400)


def _below(folder: str) -> tuple[str, str]:
    """(low, high): every path strictly under ``folder`` sorts in [low, high) ('0' follows '/')."""
    low = folder if folder.endswith(os.sep) else folder + os.sep
    return low, low[:-1] + chr(ord(os.sep) + 1)


class SourceHashes:
    """``digest(path)``: the file's SHA-256, from the cache while the file is unchanged.

    ``sources`` (optional): the folders this run walks in full, so that photos deleted anywhere
    under them, whole subfolders included, are forgotten; without it, only the folders in which
    ``digest`` was asked for a photo count as walked."""

    def __init__(self, folder: Path | None = None, sources=None):
        self.db = None
        self._seen: set[str] = set()           # entries looked up or stored in this run
        self._stale: list[str] = []            # ... whose seen day is to be brought up to today
        self._walked: dict[str, int | None] = {}   # folder holding a photo hashed in this run -> its device
        self._parents: dict[str, str] = {}     # a photo's folder as given -> resolved
        self._roots: list[str] = []
        self._today = _today()
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
                            "sha256 TEXT NOT NULL, seen INTEGER)")
            if "seen" not in [row[1] for row in self.db.execute("PRAGMA table_info(hashes)")]:
                self._add_seen_column()
            for src in sources or ():
                try:
                    src = Path(src).resolve()
                    if src.is_dir() and _utf8(str(src)):
                        self._roots.append(str(src))
                except (OSError, RuntimeError):   # unreadable, a symlink loop: judged by its photos' folders
                    pass
        except (OSError, sqlite3.Error):
            self._drop()

    def _add_seen_column(self) -> None:
        """A cache written before entries had a seen day: its entries count as seen today (an older
        privcodec can still read it, and goes on without it when its 3-column insert is refused)."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            if "seen" not in [row[1] for row in self.db.execute("PRAGMA table_info(hashes)")]:
                self.db.execute("ALTER TABLE hashes ADD COLUMN seen INTEGER")
                self.db.execute("UPDATE hashes SET seen = ?", (self._today,))
            self.db.execute("COMMIT")
        except sqlite3.Error:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def digest(self, path: Path) -> str:
        given = Path(path)
        path = given.resolve()
        st = os.stat(path)
        identity = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
        if not _utf8(str(path)):   # a name SQLite cannot hold: hashed every time
            return sha256_file(path)
        if self.db is not None:
            self._note_walked(given, path, st.st_dev)
            self._seen.add(str(path))
            try:
                row = self.db.execute("SELECT identity, sha256, seen FROM hashes WHERE path = ?",
                                      (str(path),)).fetchone()
            except sqlite3.Error:
                row = None
                self._drop()
            if row is not None and row[0] == identity:
                if row[2] is None or row[2] < self._today:
                    self._stale.append(str(path))
                return row[1]
        digest = sha256_file(path)
        settled = time.time() - max(st.st_mtime_ns, st.st_ctime_ns) / 1e9 > SETTLE_SECONDS
        if self.db is not None and settled:
            try:
                self.db.execute("INSERT OR REPLACE INTO hashes (path, identity, sha256, seen) VALUES (?, ?, ?, ?)",
                                (str(path), identity, digest, self._today))
            except sqlite3.Error:   # locked by another privcodec, disk full: go on without the cache
                self._drop()
        return digest

    def _note_walked(self, given: Path, resolved: Path, device: int) -> None:
        """The folder the walk found this photo in was walked: its other entries can be judged."""
        key = str(given.parent)
        folder = self._parents.get(key)
        if folder is None:
            folder = self._parents[key] = str(given.parent.resolve()) if given.parent != resolved.parent \
                else str(resolved.parent)
        if _utf8(folder) and self._walked.get(folder) is None:
            # a photo reached through a symlink says nothing about its folder's disk
            self._walked[folder] = device if str(resolved.parent) == folder else None

    # ------------------------------------------------------------ forgetting

    def _candidates(self):
        """(path, identity) of entries this run can judge and did not see."""
        seen = self._seen
        for root in self._roots:
            low, high = _below(root)
            for p, identity in self.db.execute("SELECT path, identity FROM hashes WHERE path >= ? AND path < ?",
                                               (low, high)):
                if p not in seen:
                    yield p, identity
        for folder in self._walked:
            if any(folder == r or folder.startswith(_below(r)[0]) for r in self._roots):
                continue                               # listed with its root
            low, high = _below(folder)
            for p, identity in self.db.execute("SELECT path, identity FROM hashes WHERE path >= ? AND path < ? "
                                               "AND instr(substr(path, ?), ?) = 0",
                                               (low, high, len(low) + 1, os.sep)):
                if p not in seen:
                    yield p, identity

    def _gone(self, path: str, identity: str, folders: dict) -> bool:
        """True when the file is absent and the storage it was on is here to say so."""
        try:
            os.stat(path)
            return False
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENOTDIR):   # EIO, EACCES, a stale share: keep
                return False
        try:
            device = int(identity.split(":", 1)[0])
        except ValueError:
            device = None
        folder = os.path.dirname(path)
        while True:
            if folder not in folders:
                try:
                    st = os.stat(folder)
                    folders[folder] = st.st_dev if stat.S_ISDIR(st.st_mode) else False
                except OSError as e:
                    folders[folder] = False if e.errno in (errno.ENOENT, errno.ENOTDIR) else None
            here = folders[folder]
            if here is None:                  # cannot tell
                return False
            if here is not False:             # the nearest folder that exists
                return here == device or here == self._walked.get(folder)
            parent = os.path.dirname(folder)
            if parent == folder:
                return False
            folder = parent

    def _tidy(self, prune: bool) -> None:
        forget = []
        if prune:
            folders: dict = {}
            forget = [(p,) for p, identity in list(self._candidates()) if self._gone(p, identity, folders)]
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany("UPDATE hashes SET seen = ? WHERE path = ?", ((self._today, p) for p in self._stale))
            if prune:
                self.db.executemany("DELETE FROM hashes WHERE path = ?", forget)
                self.db.execute("DELETE FROM hashes WHERE seen < ?", (self._today - FORGET_AFTER_DAYS,))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------ closing

    def close(self, prune: bool = True) -> None:
        """Record what this run looked up and, unless ``prune`` is false, forget what it found gone;
        a cache another privcodec holds is left as it is."""
        try:
            if self.db is not None:
                self._tidy(prune)
        except sqlite3.Error:
            pass
        finally:
            self._drop()

    def _drop(self) -> None:
        if self.db is not None:
            try:
                self.db.close()
            except sqlite3.Error:
                pass
            self.db = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        # a run stopped half-way (Ctrl-C, an error) forgets nothing: it only ends sooner
        self.close(prune=exc_type is None)
