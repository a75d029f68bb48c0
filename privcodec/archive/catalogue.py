"""The archive's catalogue: one SQLite file inside the archive, written only by the process that
holds the archive lock (lock.py).

    files ─┬─ chunks ── access (chunk ─▶ recipient key ids)
           └─ classes (classes of *public* groups)
    recipients (key id ─▶ name, type, X25519 public key, revoked / replaced by)
    audit (append-only access log)

What it holds is what a keyless reader of the files sees (sizes, dimensions, codec, group counts,
public classes) plus the archive's access list: which recipient key ids may open which chunk.  The
files' own recipients are anonymous (FORMAT v2), so that list is the one thing here beyond the
files: keep the catalogue as private as the list of who may see what.  It holds no key able to
open anything (X25519 *public* keys only, which revoke needs to re-wrap for the remaining
recipients), no protected class and no pixel.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA_VERSION = 2      # PRAGMA user_version; an older catalogue is migrated by the next writer (_MIGRATIONS)
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,            -- relative to the archive, '/'-separated, ends in .prvc
    source_sha256 TEXT NOT NULL UNIQUE,   -- the original photo's bytes: re-adding it is skipped
    file_sha256 TEXT NOT NULL,            -- the .prvc as last written by privcodec
    size INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    codec TEXT NOT NULL,
    public INTEGER NOT NULL,
    protected INTEGER NOT NULL,
    redacted INTEGER NOT NULL,
    added REAL NOT NULL
);
CREATE TABLE classes (file INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE, class TEXT NOT NULL,
                      PRIMARY KEY (file, class));
CREATE TABLE chunks (file INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE, chunk INTEGER NOT NULL,
                     PRIMARY KEY (file, chunk));
CREATE TABLE access (file INTEGER NOT NULL, chunk INTEGER NOT NULL, key_id TEXT NOT NULL,
                     PRIMARY KEY (file, chunk, key_id),
                     FOREIGN KEY (file, chunk) REFERENCES chunks(file, chunk) ON DELETE CASCADE);
CREATE INDEX access_by_key ON access(key_id);
CREATE TABLE recipients (key_id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL,
                         public TEXT,     -- hex X25519 public key; NULL for symmetric keys
                         revoked REAL,    -- when revoked or rotated out (add refuses it); NULL: not
                         replaced_by TEXT);   -- the key id a rotation moved it to
CREATE TABLE pending (path TEXT PRIMARY KEY, record TEXT NOT NULL);   -- write-ahead: see Catalogue.recover
CREATE TABLE audit (id INTEGER PRIMARY KEY, at REAL NOT NULL, action TEXT NOT NULL, key_ids TEXT NOT NULL,
                    files INTEGER NOT NULL, chunks INTEGER NOT NULL, detail TEXT NOT NULL DEFAULT '');
CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


@dataclass
class FileRecord:
    """One archive member, as ingest or a re-key writes it."""
    path: str
    source_sha256: str
    file_sha256: str
    size: int
    width: int
    height: int
    codec: str
    public: int
    protected: int
    redacted: int
    classes: list[str] = field(default_factory=list)                  # public groups' classes
    access: dict[int, list[str]] = field(default_factory=dict)        # chunk index -> recipient key ids
    added: float = 0.0                                                # time first added (0: now)

    @classmethod
    def from_row(cls, row: dict) -> "FileRecord":
        """A record as Catalogue.files() returns it."""
        return cls(**{k: v for k, v in row.items() if k in cls.__dataclass_fields__})


class Catalogue:
    def __init__(self, path: Path):
        self.path = Path(path)
        # isolation_level=None: transactions are explicit (with self.transaction()), one per file
        self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self.db.execute("PRAGMA foreign_keys = ON")
        self.db.execute("PRAGMA synchronous = FULL")     # a power cut must not lose a committed file

    @classmethod
    def create(cls, path: Path) -> "Catalogue":
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))   # private from the start
        cat = cls(path)
        cat.db.execute("PRAGMA journal_mode = WAL")      # persistent: set once, here
        # one script, one transaction: a catalogue is created whole or not at all
        cat.db.executescript(f"BEGIN; {_SCHEMA} INSERT INTO meta VALUES ('schema', '{SCHEMA_VERSION}'), "
                             f"('created', '{time.time()}'); PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        return cat

    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self) -> None:
        """Bring a catalogue of an older schema to this one, in one transaction (the caller holds
        the archive's exclusive lock).  Readers never migrate: they read what every version has."""
        with self.transaction():
            version = self.schema_version()
            for step in range(version, SCHEMA_VERSION):
                _MIGRATIONS[step](self.db)
            if version < SCHEMA_VERSION:
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def missing_tables(self) -> set[str]:
        """The tables of this schema the file lacks (another SQLite file, or one damaged by hand); every
        version so far has the same tables."""
        present = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return set(re.findall(r"CREATE TABLE (\w+)", _SCHEMA)) - present

    def close(self) -> None:
        # fold the write-ahead log back in: between commands the catalogue is one file, so copying the
        # archive folder (a backup) copies all of it
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.DatabaseError:
            pass   # another reader holds it; the next command checkpoints
        self.db.close()

    def transaction(self):
        return _Transaction(self.db)

    # ------------------------------------------------------------ files

    def has_source(self, source_sha256: str) -> str | None:
        row = self.db.execute("SELECT path FROM files WHERE source_sha256 = ?", (source_sha256,)).fetchone()
        return row[0] if row else None

    def path_owner(self, path: str) -> str | None:
        """The source hash of the photo stored at ``path``, if any."""
        row = self.db.execute("SELECT source_sha256 FROM files WHERE path = ?", (path,)).fetchone()
        return row[0] if row else None

    def paths_under(self, folder: str) -> list[str]:
        """The member paths in ``folder`` ('/'-separated, relative) and its subfolders, in order: a range
        of the path index ('/' + 1 is '0'), so not a scan of the whole catalogue."""
        folder = folder.rstrip("/")
        return [row[0] for row in self.db.execute("SELECT path FROM files WHERE path > ? AND path < ? ORDER BY path",
                                                  (folder + "/", folder + "0"))]

    def access_of(self, path: str) -> dict[int, list[str]]:
        """The access list of the file at ``path``: {chunk: [key ids]} ({} if none)."""
        out: dict[int, list[str]] = {}
        for chunk, key_id in self.db.execute("SELECT chunk, key_id FROM access WHERE file = (SELECT id FROM files "
                                             "WHERE path = ?) ORDER BY chunk, key_id", (path,)):
            out.setdefault(chunk, []).append(key_id)
        return out

    def put(self, rec: FileRecord) -> None:
        """Insert or replace one file's record (and its chunks' access lists), atomically."""
        with self.transaction():
            self._put(rec)

    def _put(self, rec: FileRecord) -> None:
        self.db.execute("DELETE FROM files WHERE path = ?", (rec.path,))
        cur = self.db.execute(
            "INSERT INTO files (path, source_sha256, file_sha256, size, width, height, codec, public, protected,"
            " redacted, added) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (rec.path, rec.source_sha256, rec.file_sha256, rec.size, rec.width, rec.height, rec.codec,
             rec.public, rec.protected, rec.redacted, rec.added or time.time()))
        fid = cur.lastrowid
        self.db.executemany("INSERT INTO classes VALUES (?, ?)", [(fid, c) for c in sorted(set(rec.classes))])
        self._put_access(fid, rec.access)

    def _put_access(self, fid: int, access: dict[int, list[str]]) -> None:
        self.db.execute("DELETE FROM chunks WHERE file = ?", (fid,))
        for chunk, key_ids in sorted(access.items()):
            self.db.execute("INSERT INTO chunks VALUES (?, ?)", (fid, chunk))
            self.db.executemany("INSERT INTO access VALUES (?, ?, ?)", [(fid, chunk, k) for k in sorted(set(key_ids))])

    def files(self, *, key_id: str | None = None, klass: str | None = None) -> list[dict]:
        """File records (dicts), optionally only those with a chunk ``key_id`` may open, or a public group
        of class ``klass``; each with its access list {chunk: [key ids]}."""
        where, args = [], []
        if key_id is not None:
            where.append("id IN (SELECT file FROM access WHERE key_id = ?)")
            args.append(key_id)
        if klass is not None:
            where.append("id IN (SELECT file FROM classes WHERE class = ?)")
            args.append(klass)
        sql = ("SELECT id, path, source_sha256, file_sha256, size, width, height, codec, public, protected, redacted,"
               " added FROM files" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY path")
        cols = ["id", "path", "source_sha256", "file_sha256", "size", "width", "height", "codec", "public",
                "protected", "redacted", "added"]
        out = [dict(zip(cols, row)) for row in self.db.execute(sql, args)]
        if not out:
            return out
        by_id = {f["id"]: f for f in out}
        for f in out:
            f["access"], f["classes"] = {}, []
        for fid, chunk in self.db.execute("SELECT file, chunk FROM chunks ORDER BY file, chunk"):
            if fid in by_id:
                by_id[fid]["access"][chunk] = []
        for fid, chunk, key_id_ in self.db.execute("SELECT file, chunk, key_id FROM access ORDER BY key_id"):
            if fid in by_id:
                by_id[fid]["access"][chunk].append(key_id_)
        for fid, klass_ in self.db.execute("SELECT file, class FROM classes ORDER BY class"):
            if fid in by_id:
                by_id[fid]["classes"].append(klass_)
        return out

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM files").fetchone()[0]

    # ------------------------------------------------------------ write-ahead records

    def begin_write(self, rec: FileRecord) -> None:
        """Before a file is (re)written: what the catalogue will say once it is."""
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO pending VALUES (?, ?)", (rec.path, _to_json(rec)))

    def finish_write(self, rec: FileRecord) -> None:
        """After the file is on disk: its record, and the write-ahead entry gone, in one transaction."""
        with self.transaction():
            self._put(rec)
            self.db.execute("DELETE FROM pending WHERE path = ?", (rec.path,))

    def cancel_write(self, rec: FileRecord) -> None:
        """The write did not happen (it failed, the old file is whole): its write-ahead entry goes."""
        with self.transaction():
            self.db.execute("DELETE FROM pending WHERE path = ? AND record = ?", (rec.path, _to_json(rec)))

    def pending(self) -> list[FileRecord]:
        return [_from_json(r) for (r,) in self.db.execute("SELECT record FROM pending ORDER BY path")]

    def recover(self, sha_on_disk) -> int:
        """After a crash between a file's write and its catalogue row: a pending record whose file on
        disk has the new hash is committed (the write happened); any other is dropped (it did not, and
        the old file and row still agree).  ``sha_on_disk(path)`` -> hex or None.  Returns how many
        were committed."""
        done = 0
        for rec in self.pending():
            with self.transaction():
                if sha_on_disk(rec.path) == rec.file_sha256:
                    self._put(rec)
                    done += 1
                self.db.execute("DELETE FROM pending WHERE path = ?", (rec.path,))
        return done

    # ------------------------------------------------------------ recipients

    def add_recipient(self, key_id: str, kind: str, name: str, public: bytes | None) -> None:
        """Remember a recipient; the first name given to a key id stays."""
        self.db.execute("INSERT OR IGNORE INTO recipients (key_id, kind, name, public) VALUES (?, ?, ?, ?)",
                        (key_id, kind, name, public.hex() if public else None))

    def recipients(self) -> dict[str, dict]:
        return {k: {"key_id": k, "kind": kind, "name": name, "public": bytes.fromhex(pub) if pub else None}
                for k, kind, name, pub in self.db.execute("SELECT key_id, kind, name, public FROM recipients")}

    def mark_revoked(self, key_id: str, replaced_by: str | None = None) -> None:
        """``key_id`` no longer gets new photos (archive revoke, or rotate to ``replaced_by``)."""
        self.db.execute("UPDATE recipients SET revoked = ?, replaced_by = ? WHERE key_id = ?",
                        (time.time(), replaced_by, key_id))

    def reinstate(self, key_id: str) -> None:
        """A key given access again on purpose (grant, or the new key of a rotate) is not revoked."""
        self.db.execute("UPDATE recipients SET revoked = NULL, replaced_by = NULL WHERE key_id = ?", (key_id,))

    def revoked(self) -> dict[str, str | None]:
        """Revoked key ids -> the key id each was rotated to (None: revoked outright)."""
        return dict(self.db.execute("SELECT key_id, replaced_by FROM recipients WHERE revoked IS NOT NULL"))

    def resolve(self, name_or_key_id: str) -> list[str]:
        """Key ids the catalogue knows by this key id, else by this name (a name given to a new key
        after a rotation can name two)."""
        exact = self.db.execute("SELECT key_id FROM recipients WHERE key_id = ?", (name_or_key_id,)).fetchall()
        rows = exact or self.db.execute("SELECT key_id FROM recipients WHERE name = ? ORDER BY key_id",
                                        (name_or_key_id,)).fetchall()
        return [r[0] for r in rows]

    # ------------------------------------------------------------ audit
    #
    # An access change (grant, revoke, rotate, rm) writes a note before its first file and its audit
    # row after its last, the row and the note's removal in one transaction: the audit log's own
    # write-ahead record.  A run killed or stopped by an exception in between leaves the note; the
    # next writer turns it into the row (recover_audit), counting what the catalogue shows changed
    # since the note, as recover() completes a file's write.  Until then, audit_log() shows it as
    # interrupted.  rm's note names its files, and their rows go in the note's transaction: the
    # next writer deletes the files an interrupted rm left.

    def begin_audit(self, action: str, key_ids: list[str], detail: str, measure: str | None,
                    paths: list[str] | None = None) -> None:
        """The note, in the caller's transaction.  ``measure``: the key id whose access the change
        moves (None: the number of files).  ``paths``: the files an rm deletes."""
        files, chunks = self._measure(measure)
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (_NOTE, json.dumps(
            {"at": time.time(), "action": action, "key_ids": key_ids, "detail": detail, "measure": measure,
             "files": files, "chunks": chunks, **({"paths": paths} if paths is not None else {})})))

    def begin_remove(self, paths: list[str], detail: str) -> None:
        """rm: the members' rows gone and a note naming their files, in one transaction.  From here
        they are out of the archive whatever stops the rm: the caller deletes the files, and if it
        does not get to, the next writer does (recover_audit)."""
        with self.transaction():
            self.begin_audit("remove", [], detail, None, paths)
            self.db.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in paths])

    def removing(self) -> list[str]:
        """The files of an interrupted rm, whose rows are gone (the next writer deletes them)."""
        found = self.db.execute("SELECT value FROM meta WHERE key = ?", (_NOTE,)).fetchone()
        return json.loads(found[0]).get("paths", []) if found else []

    def audit(self, action: str, key_ids: list[str], files: int, chunks: int, detail: str = "") -> None:
        """The audit row of a change that ran to its end, its note gone."""
        with self.transaction():
            self._audit_row(time.time(), action, key_ids, files, chunks, detail)
            self.db.execute("DELETE FROM meta WHERE key = ?", (_NOTE,))

    def recover_audit(self, delete=None) -> bool:
        """The audit row of a change killed half-way (after recover()), the files of an interrupted
        rm deleted first by ``delete(path)``; True if there was one."""
        for path in self.removing():
            if delete is not None and self.path_owner(path) is None:
                delete(path)
        with self.transaction():
            row = self._interrupted()
            if row is not None:
                self._audit_row(row["at"], row["action"], row["key_ids"], row["files"], row["chunks"], row["detail"])
                self.db.execute("DELETE FROM meta WHERE key = ?", (_NOTE,))
        return row is not None

    def audit_log(self, sha_on_disk=None) -> list[dict]:
        """Every row, then an interrupted change not logged yet (its counts include the files
        written but not yet catalogued, by ``sha_on_disk`` as recover() judges them)."""
        rows = [{"at": at, "action": a, "key_ids": json.loads(k), "files": f, "chunks": c, "detail": d}
                for at, a, k, f, c, d in self.db.execute(
                    "SELECT at, action, key_ids, files, chunks, detail FROM audit ORDER BY id")]
        row = self._interrupted(sha_on_disk)
        return rows + ([row] if row is not None else [])

    def _audit_row(self, at, action, key_ids, files, chunks, detail) -> None:
        self.db.execute("INSERT INTO audit (at, action, key_ids, files, chunks, detail) VALUES (?,?,?,?,?,?)",
                        (at, action, json.dumps(key_ids), files, chunks, detail))

    def _interrupted(self, sha_on_disk=None) -> dict | None:
        found = self.db.execute("SELECT value FROM meta WHERE key = ?", (_NOTE,)).fetchone()
        if found is None:
            return None
        note = json.loads(found[0])
        files, chunks = self._measure(note["measure"], sha_on_disk)
        detail = (note["detail"] + "; " if note["detail"] else "") + "interrupted"
        if note["action"] in ("revoke", "rotate"):
            detail += f": {files} file(s) still open to the revoked key, run it again"
        elif note["action"] == "grant":
            detail += ": run it again for the rest"
        return {"at": note["at"], "action": note["action"], "key_ids": note["key_ids"],
                "files": abs(files - note["files"]), "chunks": abs(chunks - note["chunks"]), "detail": detail}

    def _measure(self, key_id: str | None, sha_on_disk=None) -> tuple[int, int]:
        """(files, access entries) of ``key_id`` (None: files, 0), counting the pending records
        ``sha_on_disk`` says were written (None: the catalogue alone)."""
        if key_id is None:
            files, chunks = self.count(), 0
        else:
            files, chunks = self.db.execute("SELECT COUNT(DISTINCT file), COUNT(*) FROM access WHERE key_id = ?",
                                            (key_id,)).fetchone()
        for rec in self.pending() if sha_on_disk is not None else []:
            if sha_on_disk(rec.path) != rec.file_sha256:
                continue
            old = self.access_of(rec.path)
            if key_id is None:
                files += self.path_owner(rec.path) is None
                continue
            new_n, old_n = (sum(key_id in ids for ids in a.values()) for a in (rec.access, old))
            files += (new_n > 0) - (old_n > 0)
            chunks += new_n - old_n
        return files, chunks


def _v1_to_v2(db: sqlite3.Connection) -> None:
    """Recipients remember being revoked or rotated out, so add cannot encrypt for them again;
    replayed from the audit log for the revokes and rotations made before."""
    db.execute("ALTER TABLE recipients ADD COLUMN revoked REAL")
    db.execute("ALTER TABLE recipients ADD COLUMN replaced_by TEXT")
    for at, action, key_ids in db.execute("SELECT at, action, key_ids FROM audit ORDER BY id").fetchall():
        ids = json.loads(key_ids)
        if action in ("revoke", "rotate") and ids:
            db.execute("UPDATE recipients SET revoked = ?, replaced_by = ? WHERE key_id = ?",
                       (at, ids[1] if action == "rotate" and len(ids) > 1 else None, ids[0]))
        for new in ids[1:2] if action == "rotate" else ids[:1] if action == "grant" else []:
            db.execute("UPDATE recipients SET revoked = NULL, replaced_by = NULL WHERE key_id = ?", (new,))


_MIGRATIONS = {1: _v1_to_v2}      # from version N to N + 1
_NOTE = "unfinished access change"   # meta key of the audit log's write-ahead note


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                self.db.execute("COMMIT")
                return False
            except sqlite3.Error:
                self.db.execute("ROLLBACK")   # a failed COMMIT leaves the transaction open
                raise
        self.db.execute("ROLLBACK")
        return False


def _to_json(rec: FileRecord) -> str:
    d = dict(rec.__dict__)
    d["access"] = {str(k): v for k, v in rec.access.items()}
    return json.dumps(d, sort_keys=True)


def _from_json(text: str) -> FileRecord:
    d = json.loads(text)
    d["access"] = {int(k): v for k, v in d["access"].items()}
    return FileRecord(**d)
