"""Access-controlled archives of protected photos (``privcodec archive …``, ``privcodec.Archive``).

    ARCHIVE/
      <relative path of each photo>.prvc       ordinary .prvc files (FORMAT.md)
      .privcodec/catalogue.sqlite              catalogue.py: files, access list, audit log
      .privcodec/lock                          lock.py: writers exclusive, readers shared

    add ──▶ ingest.py ─┐
    grant/revoke/rotate ──▶ access.py ─┼─▶ runner.py (inline · process pool · Dask) ─▶ bytes
    verify ──▶ verify.py ─┤                         this process: atomic write + catalogue
    export ──▶ export.py ─┘

Each command is one pass over the files it concerns, resumable: the catalogue is written in one
transaction per file, after the file, with a write-ahead record in between (Catalogue.recover).
An access change is logged the same way: a note before its first file, the audit row after its
last; the next writer logs a run killed or stopped by an exception in between (Catalogue.recover_audit).
The note, and in its transaction a revoke's mark or a grant's reinstatement, goes in just before the
first file is written (at once if no file needs changing): a grant, revoke or rotate whose every file
failed leaves the catalogue as it was and logs nothing, and one whose key opens no group of the files
concerned (a wrong key) is refused before any work.
rm is the other way round: the catalogue rows and a note naming the files first, then the files, so
a crash never undoes it (the next writer deletes what it left).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ..errors import KeyFileError, PrivcodecError
from . import runner
from .catalogue import Catalogue, FileRecord

META_DIR = ".privcodec"
CATALOGUE = "catalogue.sqlite"
LOCK = "lock"
LIGHT_TASKS = 200      # grant / revoke / verify: tasks per worker before a process pool pays off
NOTHING = " matched nothing in this photo"               # api's per-photo warning, counted per run here
INTERRUPTED_WRITE = "an interrupted write (the next add/grant/revoke completes it)"   # a write-ahead record left
_TEMP = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")      # imageio.atomic_write's temporary files


class ArchiveError(PrivcodecError):
    """The archive is missing, not an archive, or a command cannot run on it."""


@dataclass
class Report:
    """What one archive command did, file by file."""
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)       # (path, message)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    chunks: int = 0                                                   # chunks changed (grant/revoke/rotate)
    updated: list[str] = field(default_factory=list)                  # add --update: those of done that replaced
                                                                      # an archived version

    @property
    def ok(self) -> bool:
        return not self.failed


Progress = Callable[[str, str, str], None]      # (status: start|done|skipped|failed|problem|folder, path, detail)


def _quiet(status: str, path: str, detail: str) -> None:
    pass


def _sha_file(path: Path) -> str | None:
    from .hashcache import sha256_file

    try:
        return sha256_file(path)
    except OSError:
        return None


class Archive:
    """An archive folder.  ``Archive.init(path)`` creates one; ``Archive(path)`` opens it."""

    def __init__(self, path):
        # absolute: tasks carry paths under it to worker processes and Dask workers elsewhere
        self.root = Path(path).absolute()
        meta = self.root / META_DIR
        if not (meta / CATALOGUE).is_file():
            raise ArchiveError(f"{self.root} is not a privcodec archive (create one with: privcodec archive init {self.root})")
        self._meta = meta
        self._name_max: int | None = None     # longest file name the archive's filesystem takes

    @classmethod
    def init(cls, path) -> "Archive":
        root = Path(path)
        if (root / META_DIR / CATALOGUE).exists():
            raise ArchiveError(f"{root} is already a privcodec archive")
        # empty, or holding only what an init that crashed half-way left (.privcodec without a catalogue)
        if root.exists() and (not root.is_dir() or any(p.name != META_DIR for p in root.iterdir())):
            raise ArchiveError(f"{root} exists and is not an empty folder")
        (root / META_DIR).mkdir(parents=True, mode=0o700, exist_ok=True)
        tmp = root / META_DIR / f".{CATALOGUE}.new"
        tmp.unlink(missing_ok=True)
        Catalogue.create(tmp).close()
        os.replace(tmp, root / META_DIR / CATALOGUE)   # an archive exists only once its catalogue is whole
        return cls(root)

    # ------------------------------------------------------------ plumbing

    def _lock(self, exclusive: bool, on_wait=None):
        from .lock import locked

        return locked(self._meta / LOCK, exclusive=exclusive, on_wait=on_wait)

    def _catalogue(self, exclusive: bool = False) -> Catalogue:
        """The catalogue, checked; a writer (``exclusive``) migrates an older schema first."""
        import sqlite3

        from .catalogue import SCHEMA_VERSION

        try:
            cat = Catalogue(self._meta / CATALOGUE)
            version = cat.schema_version()
            missing = cat.missing_tables() if 1 <= version <= SCHEMA_VERSION else set()
        except sqlite3.DatabaseError as e:
            raise ArchiveError(f"{self._meta / CATALOGUE}: cannot read the catalogue ({e})") from None
        if version > SCHEMA_VERSION:
            cat.close()
            raise ArchiveError(f"{self.root} was written by a newer privcodec (catalogue schema {version}): "
                               "upgrade privcodec")
        if version < 1 or missing:
            cat.close()
            raise ArchiveError(f"{self._meta / CATALOGUE}: cannot read the catalogue (not a privcodec catalogue"
                               + (f": no table {', '.join(sorted(missing))}" if missing else "") + ")")
        if exclusive and version < SCHEMA_VERSION:
            try:
                cat.migrate()
            except sqlite3.DatabaseError as e:
                cat.close()
                raise ArchiveError(f"{self._meta / CATALOGUE}: cannot upgrade the catalogue from schema {version} "
                                   f"({e})") from None
        return cat

    @contextlib.contextmanager
    def _session(self, exclusive: bool, on_wait=None):
        """The archive lock and the catalogue.  A writer (exclusive) first completes interrupted
        writes and removes stale temporary files, and keeps the members on disk it saw then
        (self._on_disk): the lock keeps that list true for the whole command."""
        with contextlib.ExitStack() as stack:
            stack.enter_context(self._lock(exclusive, on_wait))
            cat = self._catalogue(exclusive)
            stack.callback(cat.close)
            if exclusive:
                cat.recover(lambda rel: _sha_file(_inside(self.root, rel)))
                # after recover(): it counts the files that completed; it deletes what an rm left
                cat.recover_audit(lambda rel: _delete(self.root, rel))
                self._on_disk, temps = self._scan()
                for tmp in temps:
                    tmp.unlink(missing_ok=True)
            yield cat

    def _writer(self, on_wait=None):
        return self._session(True, on_wait)

    def _reader(self, on_wait=None):
        return self._session(False, on_wait)

    def _scan(self) -> tuple[set[str], list[Path]]:
        """One walk of the archive: (member .prvc paths, temporary files of interrupted writes)."""
        members, temps = set(), []
        for root, dirs, files in os.walk(self.root):
            dirs[:] = [d for d in dirs if not (Path(root) == self.root and d == META_DIR)]
            for name in files:
                if _TEMP.match(name):
                    temps.append(Path(root) / name)
                elif name.endswith(".prvc"):
                    members.add((Path(root) / name).relative_to(self.root).as_posix())
        return members, temps

    def _write(self, cat: Catalogue, rec: FileRecord, data: bytes) -> None:
        from ..imageio import atomic_write

        dest = _made_room(self.root, rec.path)
        cat.begin_write(rec)
        try:
            atomic_write(dest, data, force=True)
        except PrivcodecError:      # not written (the old file, if any, is whole): nothing to recover
            cat.cancel_write(rec)
            raise
        cat.finish_write(rec)

    def _unstorable(self, rel: str) -> str | None:
        """Why the member path ``rel`` cannot be stored here (a name the catalogue or this filesystem
        cannot hold), or None."""
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            return "its name is not valid UTF-8 (the catalogue holds UTF-8 names): rename it"
        if self._name_max is None:
            try:
                self._name_max = os.pathconf(self.root, "PC_NAME_MAX")
            except (OSError, ValueError):
                self._name_max = 255
        parts = rel.split("/")
        for i, part in enumerate(parts, start=1):
            if len(os.fsencode(part)) > self._name_max:
                what = "file name (with .prvc)" if i == len(parts) else f"folder name {part[:20]}..."
                return (f"its archive {what} is {len(os.fsencode(part))} bytes, over the {self._name_max} this "
                        "filesystem allows: rename it shorter")
        return None

    # ------------------------------------------------------------ add

    def add(self, sources: Iterable, policy, *, keys_dir="keys", codec: str | None = None, quality: float = 4.0,
            effort: int = 0, workers: int | None = None, scheduler=None, progress: Progress = _quiet, on_wait=None,
            update: bool = False) -> Report:
        """Protect every photo under ``sources`` into the archive; photos already in it are skipped, and
        a catalogued one whose file was deleted is put back under its catalogued path.  A photo whose
        archive path holds a different photo fails, unless ``update``: then it is taken for an edited
        version of it and replaces it there (file and catalogue rows), for this policy's recipients."""
        from .. import api
        from ..policy import load_policy
        from .hashcache import SourceHashes
        from .ingest import IngestTask, ingest_one, walk

        policy_path = Path(policy).resolve()
        pol = load_policy(policy_path)
        for where, specs in api._named_recipients(pol):   # before load_recipients asks for a passphrase
            if api.PASSPHRASE_RECIPIENT in specs:
                raise ArchiveError(f"{policy}: {where}: archives cannot use the recipient 'passphrase' (revoke "
                                   "could not re-wrap it): use key files")
        recipients = api.load_recipients(pol, keys_dir)   # every key checked before any work
        from .. import backends

        api._check_quality(quality, backends.get(codec or backends.DEFAULT).codec_id)
        api._check_effort(effort)
        # one folder as itself (not its letters); a generator read once (checked, walked, cached)
        sources = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
        for src in sources:
            if not Path(src).exists():
                raise ArchiveError(f"{src}: no such file or folder")
        report = Report()
        with self._writer(on_wait) as cat, SourceHashes(sources=sources) as hashes:
            _refuse_revoked(cat, recipients, policy)   # before anything is written
            for name, r in recipients.items():
                cat.add_recipient(r.key_id, r.kind, Path(name).stem if "/" in name or name.endswith((".key", ".pub")) else name,
                                  r.key if r.kind == "x25519" else None)
            tasks, planned, planned_paths = [], set(), {}
            # members re-added (a deleted file put back) or replaced (update): path -> key ids that could open
            # them, for the warning if the new file leaves some out
            restoring: dict[str, set[str]] = {}
            replacing: dict[str, str] = {}          # update: path -> the source hash of the photo it replaces
            for path, rel in walk(sources):
                try:
                    digest = hashes.digest(path)
                except OSError as e:
                    report.failed.append((str(path), f"cannot read: {e.strerror or e}"))
                    progress("failed", str(path), "cannot read")
                    continue
                known = cat.has_source(digest)
                missing = known is not None and known not in self._on_disk   # catalogued, its file deleted
                if missing:
                    rel = known                     # put back where the catalogue has it
                if (known is not None and not missing) or (rel, digest) in planned:
                    report.skipped.append(str(path))
                    progress("skipped", str(path), f"already in the archive as {known or rel}")
                    continue
                problem = None if missing else self._unstorable(rel)
                if problem:
                    report.failed.append((str(path), problem))
                    progress("failed", str(path), problem)
                    continue
                owner = None if missing else cat.path_owner(rel)
                if rel.casefold() in planned_paths:     # A.jpg and a.jpg are one file on some filesystems
                    report.failed.append((str(path), f"{rel} is also the archive path of "
                                          f"{planned_paths[rel.casefold()]} in this run: rename one of them"))
                    progress("failed", *report.failed[-1])
                    continue
                if owner is not None and not update:    # never replaced unless asked: it may be another photo
                    report.failed.append((str(path), f"{rel} already holds a different photo: if this one is an "
                                          "edited version of it, add it with --update to replace the archived one; "
                                          "otherwise rename it"))
                    progress("failed", *report.failed[-1])
                    continue
                if owner is not None:                   # update: replaced under its catalogued path, as a restore
                    replacing[rel] = owner
                if missing or owner is not None:
                    restoring[rel] = {k for ids in cat.access_of(rel).values() for k in ids}
                else:
                    try:
                        in_the_way = (self.root / rel).exists()
                    except OSError as e:
                        report.failed.append((str(path), f"cannot check {rel} in the archive: {e.strerror or e}"))
                        progress("failed", str(path), report.failed[-1][1])
                        continue
                    if in_the_way:
                        report.failed.append((str(path), f"{rel} exists in the archive folder but not in its "
                                              "catalogue (move it away, or check with: privcodec archive verify)"))
                        progress("failed", str(path), "unknown file in the way")
                        continue
                try:
                    safe_member(rel)
                except ArchiveError as e:
                    report.failed.append((str(path), str(e)))
                    progress("failed", str(path), str(e))
                    continue
                planned.add((rel, digest))
                planned_paths[rel.casefold()] = str(path)
                tasks.append(IngestTask(str(Path(path).resolve()), rel, pol, recipients, codec or "", float(quality),
                                            int(effort)))
            warned: dict[str, list[str]] = {}     # one line per warning, not one per photo
            progress("start", "", str(len(tasks)))
            for task, result in runner.run(ingest_one, tasks, workers=workers, scheduler=scheduler):
                if "error" in result:
                    report.failed.append((task.source, result["error"]))
                    progress("failed", task.source, result["error"])
                    continue
                rec = result["record"]
                known = cat.has_source(rec.source_sha256)
                if known is not None and not (known == rec.path and rec.path in restoring):
                    report.skipped.append(task.source)   # the photo changed on disk since it was hashed above
                    continue
                # ... into another photo (not the one an update replaces)
                if cat.path_owner(rec.path) not in (None, rec.source_sha256, replacing.get(rec.path)):
                    report.failed.append((task.source, f"{rec.path} already holds a different photo"))
                    progress("failed", *report.failed[-1])
                    continue
                try:
                    self._write(cat, rec, result["data"])
                except PrivcodecError as e:     # e.g. a folder that is a link out of the archive: this photo only
                    report.failed.append((task.source, str(e)))
                    progress("failed", task.source, str(e))
                    continue
                report.done.append(task.source)
                if rec.path in replacing:
                    report.updated.append(task.source)
                lost = restoring.get(rec.path, set()) - {k for ids in rec.access.values() for k in ids}
                if lost:   # it had been granted to more keys than the policy names
                    names = {k: r["name"] for k, r in cat.recipients().items()}
                    report.warnings.append((rec.path, ("updated" if rec.path in replacing else "restored")
                                            + " for the policy's recipients: no longer open to "
                                            + ", ".join(sorted(names.get(k, k) for k in lost))
                                            + " (archive grant gives it back)"))
                for w in result.get("warnings", []):
                    warned.setdefault(w.replace(NOTHING, " matched nothing"), []).append(task.source)
                progress("done", task.source, rec.path + (" (replacing its archived version)"
                                                          if rec.path in replacing else ""))
        for w, photos in warned.items():
            where = photos[0] if len(photos) == 1 else f"{len(photos)} photos"
            report.warnings.append((where, w))
        return report

    # ------------------------------------------------------------ rm

    def remove(self, paths: Iterable[str], *, on_wait=None, progress: Progress = _quiet) -> Report:
        """Take files out of the archive (the .prvc and its catalogue entry; logged).  ``paths`` are
        archive paths as ``ls`` shows them, or folders of them (every member under it), or either as
        a path through the archive folder (ARCHIVE/2019/a.jpg.prvc, as shell completion gives it);
        anything outside the archive folder is refused.  Each folder is reported to ``progress``
        ("folder", folder, "N file(s)") before anything is taken out."""
        report = Report()
        with self._writer(on_wait) as cat:
            chosen: list[str] = []
            seen: set[str] = set()      # chosen, as a set: thousands of paths are not compared one by one
            for given in paths:
                given = str(given)
                found = self._members(cat, given)
                if isinstance(found, str):
                    report.failed.append((Path(given).as_posix(), found))
                    continue
                folder, members = found
                if folder is not None:
                    progress("folder", folder, f"{len(members)} file(s)")
                for rel in members:
                    if rel in seen:
                        continue
                    try:
                        _inside(self.root, rel)
                    except ArchiveError as e:
                        report.failed.append((rel, str(e)))
                        continue
                    seen.add(rel)
                    chosen.append(rel)
            if not chosen:
                return report
            detail = ", ".join(chosen[:20]) + (f" and {len(chosen) - 20} more" if len(chosen) > 20 else "")
            # the rows first, with a note naming the files: from here the remove is done whatever stops
            # it (the next writer deletes the files left and logs it), never undone by a crash
            cat.begin_remove(chosen, detail)
            for rel in chosen:
                problem = _delete(self.root, rel)
                if problem:   # out of the archive all the same: verify reports the file as unknown
                    report.failed.append((rel, f"taken out of the catalogue, but {problem}: delete it by hand"))
                else:
                    report.done.append(rel)
            stuck = len(chosen) - len(report.done)
            cat.audit("remove", [], len(chosen), 0, detail + (f"; {stuck} file(s) could not be deleted" if stuck else ""))
        return report

    def _members(self, cat: Catalogue, given: str) -> tuple[str | None, list[str]] | str:
        """What an rm argument names: (None, [member]) for a member, (folder, [members under it]) for a
        folder of them, or why it names nothing.  It is an archive path (as ls shows it) if the archive
        has one by that name; otherwise a path on disk, relative to the current folder, that must lead
        inside the archive folder (spelled as given: '..' and symbolic links in it are not followed)."""
        candidates = [Path(given).as_posix()]
        on_disk = Path(os.path.abspath(given))
        for root in dict.fromkeys((Path(os.path.abspath(self.root)), Path(os.path.realpath(self.root)))):
            if on_disk == root:
                return "the archive folder itself: give the files or folders in it to take out"
            if root in on_disk.parents:
                candidates.append(on_disk.relative_to(root).as_posix())
        for rel in candidates:
            if cat.path_owner(rel) is not None:
                return None, [rel]
            under = cat.paths_under(rel) if rel not in (".", "/") else []
            if under:
                return rel.rstrip("/"), under
        return "not in the archive"

    # ------------------------------------------------------------ ls

    def ls(self, *, recipient: str | None = None, klass: str | None = None, on_wait=None) -> list[dict]:
        """Catalogued files (dicts: path, size, width, height, codec, public/protected/redacted counts,
        classes of public groups, access {chunk: [recipient names or key ids]}).  As every reader, it
        waits for a running writer, calling ``on_wait()`` first if it must."""
        with self._reader(on_wait) as cat:
            key_id = None if recipient is None else self._resolve(cat, recipient)
            names = {k: r["name"] for k, r in cat.recipients().items()}
            files = cat.files(key_id=key_id, klass=klass)
        for f in files:
            f.pop("id")
            f.pop("source_sha256")
            f["recipients"] = sorted({names.get(k, k) for ids in f["access"].values() for k in ids})
            f["access"] = {str(chunk): ids for chunk, ids in f["access"].items()}
        return files

    def recipients(self, *, on_wait=None) -> list[dict]:
        with self._reader(on_wait) as cat:
            return [{"key_id": r["key_id"], "kind": r["kind"], "name": r["name"]} for r in cat.recipients().values()]

    def audit_log(self, *, on_wait=None) -> list[dict]:
        """Every access change logged; one killed half-way and not yet logged by a later writer comes
        last, its detail saying 'interrupted'."""
        with self._reader(on_wait) as cat:
            return cat.audit_log(lambda rel: _sha_file(_inside(self.root, rel)))

    @staticmethod
    def _resolve(cat: Catalogue, name_or_key_id: str, *, known_only: bool = False) -> str:
        matches = cat.resolve(str(name_or_key_id))
        if len(matches) > 1:
            raise ArchiveError(f"{name_or_key_id!r} names several keys ({', '.join(matches)}): give the key id")
        key_id = matches[0] if matches else None
        if key_id is None:
            if not known_only and re.fullmatch(r"[0-9a-f]{16}", str(name_or_key_id)):
                return str(name_or_key_id)
            known = ", ".join(sorted(r["name"] for r in cat.recipients().values())) or "none"
            raise ArchiveError(f"no recipient {name_or_key_id!r} in this archive (known: {known})")
        return key_id

    # ------------------------------------------------------------ grant / revoke / rotate

    def grant(self, key, to, *, recipient_of: str | None = None, metadata: bool = False, keys_dir="keys",
              workers: int | None = None, scheduler=None, progress: Progress = _quiet, on_wait=None) -> Report:
        """Let ``to`` open every group ``key`` opens (only those ``recipient_of`` may open, if given).
        The photos' kept EXIF/XMP (dates, places) only with ``metadata``: the policy chose who gets it."""
        from ..container import METADATA_INDEX

        from .access import GrantTask

        identity = _identity(key)
        recipient = _recipient(to, keys_dir)
        report = Report()
        with self._writer(on_wait) as cat:
            only_of = None if recipient_of is None else self._resolve(cat, recipient_of, known_only=True)
            rows = [row for row in cat.files(key_id=identity.key_id)
                    if any(identity.key_id in ids and (only_of is None or only_of in ids)
                           for ids in row["access"].values())]
            if not rows:   # a wrong key: never a grant of nothing that lifts a revoke and is logged
                if only_of is None:
                    raise ArchiveError(f"the key opens no encrypted group in this archive: key {identity.key_id} is "
                                       "not a recipient here (nothing changed)")
                raise ArchiveError(f"the key opens none of the encrypted groups {cat.recipients()[only_of]['name']!r} "
                                   f"may open in this archive: key {identity.key_id} is not a recipient of them "
                                   "(nothing changed)")
            tasks, records = [], {}
            for row in rows:
                chunks = {ch for ch, ids in row["access"].items() if identity.key_id in ids
                          and (only_of is None or only_of in ids) and recipient.key_id not in ids
                          and (metadata or ch != METADATA_INDEX)}
                if not chunks:
                    continue
                records[row["path"]] = FileRecord.from_row(row)
                tasks.append(GrantTask(str(_inside(self.root, row["path"])), row["file_sha256"], identity, recipient,
                                       frozenset(chunks)))
            detail = (f"by {identity.key_id}" + (f", groups of {only_of}" if only_of else "")
                      + (", with metadata" if metadata else ""))
            started = []

            def start() -> None:
                """Before the first file is written (or at once, with nothing to write): granted on
                purpose, so not revoked any more if it was; the audit note.  A run that writes no file
                changes nothing here either."""
                if started:
                    return
                started.append(True)
                with cat.transaction():
                    cat.add_recipient(recipient.key_id, recipient.kind, _name(to),
                                      recipient.key if recipient.kind == "x25519" else None)
                    cat.reinstate(recipient.key_id)
                    cat.begin_audit("grant", [recipient.key_id], detail, recipient.key_id)

            if not tasks:   # the recipient already opens all of it: granted as it stands
                start()
            progress("start", "", str(len(tasks)))
            self._apply_grants(cat, tasks, records, recipient, workers, scheduler, progress, report, start)
            # only a run that got here is logged from its own counts: one stopped by an exception
            # (Ctrl-C included) or killed keeps the note, and is logged as interrupted from what the
            # catalogue shows (Catalogue.recover_audit)
            if started:
                cat.audit("grant", [recipient.key_id], len(report.done), report.chunks,
                          detail + (f"; {len(report.failed)} file(s) failed" if report.failed else ""))
        return report

    def _apply_grants(self, cat, tasks, records, recipient, workers, scheduler, progress, report, start) -> None:
        from .access import grant_one

        for task, result in runner.run(grant_one, tasks, workers=workers, scheduler=scheduler, min_per_worker=LIGHT_TASKS):
            rec = records[Path(task.path).relative_to(self.root).as_posix()]
            if "error" in result:
                report.failed.append((rec.path, result["error"]))
                progress("failed", rec.path, result["error"])
                continue
            if not result["granted"]:
                report.skipped.append(rec.path)
                continue
            for ch in result["granted"]:
                rec.access[ch] = sorted(set(rec.access.get(ch, [])) | {recipient.key_id})
            rec.file_sha256, rec.size = hashlib.sha256(result["data"]).hexdigest(), len(result["data"])
            start()
            self._write(cat, rec, result["data"])
            report.done.append(rec.path)
            report.chunks += len(result["granted"])
            progress("done", rec.path, f"{len(result['granted'])} group(s)")

    def revoke(self, keys, recipient: str, *, keys_dir="keys", workers: int | None = None, scheduler=None,
               progress: Progress = _quiet, on_wait=None) -> Report:
        """Every chunk ``recipient`` may open gets a fresh content key, wrapped for the others only.
        ``keys`` must open every chunk of each file concerned (the file's core changes)."""
        return self._rekey(keys, recipient, None, keys_dir, workers, scheduler, progress, on_wait)

    def rotate(self, keys, old: str, new, *, keys_dir="keys", workers: int | None = None, scheduler=None,
               progress: Progress = _quiet, on_wait=None) -> Report:
        """Grant ``new`` every chunk ``old`` may open and revoke ``old``, in one rewrite of each file."""
        return self._rekey(keys, old, new, keys_dir, workers, scheduler, progress, on_wait)

    def _rekey(self, keys, revoked: str, new, keys_dir, workers, scheduler, progress, on_wait) -> Report:
        from ..keys import Recipient
        from .access import RekeyTask

        identities = tuple(_identity(k) for k in ([keys] if isinstance(keys, (str, os.PathLike)) else keys))
        if not identities:
            raise KeyFileError("give the key(s) that open the files (--key)")
        added = None if new is None else _recipient(new, keys_dir)
        report = Report()
        with self._writer(on_wait) as cat:
            gone = self._resolve(cat, revoked, known_only=True)
            # the revoked key cannot check the new files (it no longer opens them): the others must
            identities = tuple(i for i in identities if getattr(i, "key_id", None) != gone)
            if not identities:
                raise KeyFileError("--key is the key being revoked, which cannot check the new files: give a key "
                                   "that keeps access to them (e.g. the owner's)")
            if added is not None and added.key_id == gone:
                raise ArchiveError("the new key is the key being revoked")
            problems: list[tuple[str, str]] = []    # files not re-keyed, reported once the run goes ahead
            strays = self._on_disk - {f["path"] for f in cat.files()}
            if strays:   # a revocation the operator believes complete must not be: it fails, loudly
                report.failed.append((f"{len(strays)} file(s)", "on disk but not in the catalogue, so not re-keyed "
                                      "(the key may still open them): run archive verify (e.g. "
                                      + sorted(strays)[0] + ")"))
            known = cat.recipients()
            resolved: dict[str, Recipient | None] = {}

            def wrap_for(key_id: str) -> Recipient | None:
                if key_id not in resolved:
                    resolved[key_id] = _rewrap_recipient(key_id, known.get(key_id), identities, keys_dir)
                return resolved[key_id]

            tasks, records = [], {}
            for row in cat.files(key_id=gone):
                rec = FileRecord.from_row(row)
                plan, problem = {}, None
                for chunk, ids in rec.access.items():
                    if gone not in ids:
                        continue
                    remaining = [k for k in ids if k != gone]
                    wanted = [wrap_for(k) for k in remaining] + ([added] if added is not None else [])
                    missing = [k for k, r in zip(remaining, wanted) if r is None]
                    if missing:
                        names = ", ".join(f"{known[k]['name'] if k in known else '?'} ({k})" for k in missing)
                        problem = (f"cannot re-wrap for symmetric recipient(s) {names}: give their key with --key "
                                   "or put NAME.key in --keys-dir (nothing changed)")
                        break
                    if not wanted:
                        problem = (f"{known.get(gone, {}).get('name', gone)} is the only recipient of an encrypted "
                                   "group: grant another recipient first, or it could never be opened again (nothing changed)")
                        break
                    plan[chunk] = wanted
                if problem:
                    problems.append((rec.path, problem))
                    continue
                records[rec.path] = (rec, plan)
                tasks.append(RekeyTask(str(_inside(self.root, rec.path)), rec.file_sha256, identities, plan))
            mine = {i.key_id for i in identities}
            if records and not any(mine & set(ids) for rec, _ in records.values() for ids in rec.access.values()):
                # a wrong key: one error before any work, not one failure per file
                ids = sorted(mine)
                raise ArchiveError(f"the --key opens no encrypted group of the photos "
                                   f"{known.get(gone, {}).get('name', gone)!r} may open: "
                                   + (f"key {ids[0]} is not a recipient" if len(ids) == 1 else
                                      f"keys {', '.join(ids)} are not recipients")
                                   + " of them here; give a key that opens every group of those photos, e.g. the "
                                   "owner's (nothing changed)")
            report.failed += problems      # the unlisted files (if any), then these
            for failure in report.failed:
                progress("failed", *failure)
            action, key_ids = "revoke" if added is None else "rotate", [gone] + ([added.key_id] if added else [])
            detail = f"by {', '.join(i.key_id for i in identities)}"
            started = []

            def start() -> None:
                """Before the first file is re-keyed: from then on add refuses the old key, even if this
                run stops half-way, and the audit note is there.  A run that re-keys no file (each
                failed) changes nothing: the catalogue never claims a revoke that did not happen."""
                if started:
                    return
                started.append(True)
                with cat.transaction():
                    if added is not None:
                        cat.add_recipient(added.key_id, added.kind, _name(new),
                                          added.key if added.kind == "x25519" else None)
                        cat.reinstate(added.key_id)
                    cat.mark_revoked(gone, added.key_id if added is not None else None)
                    cat.begin_audit(action, key_ids, detail, gone)

            if not tasks and not problems:   # no catalogued file to re-key: revoked as it stands
                start()
            progress("start", "", str(len(tasks)))
            self._apply_rekeys(cat, tasks, records, workers, scheduler, progress, report, start)
            # stopped by an exception or killed: the note stays (as in grant)
            if started:
                cat.audit(action, key_ids, len(report.done), report.chunks,
                          detail + (f"; {len(report.failed)} file(s) failed, still open to the revoked key"
                                    if report.failed else ""))
        return report

    def _apply_rekeys(self, cat, tasks, records, workers, scheduler, progress, report, start) -> None:
        from .access import rekey_one

        for task, result in runner.run(rekey_one, tasks, workers=workers, scheduler=scheduler, min_per_worker=LIGHT_TASKS):
            rec, plan = records[Path(task.path).relative_to(self.root).as_posix()]
            if "error" in result:
                report.failed.append((rec.path, result["error"]))
                progress("failed", rec.path, result["error"])
                continue
            for chunk, recipients_ in plan.items():
                rec.access[chunk] = sorted({r.key_id for r in recipients_})
            rec.file_sha256, rec.size = hashlib.sha256(result["data"]).hexdigest(), len(result["data"])
            start()
            self._write(cat, rec, result["data"])
            report.done.append(rec.path)
            report.chunks += len(plan)
            if result.get("warning"):
                report.warnings.append((rec.path, result["warning"]))
            progress("done", rec.path, f"{len(plan)} group(s)")

    # ------------------------------------------------------------ verify / export

    def verify(self, keys=(), *, workers: int | None = None, scheduler=None, progress: Progress = _quiet,
               on_wait=None) -> Report:
        """Every catalogued file re-read and checked; with ``keys``, the access list checked by opening."""
        identities = tuple(_identity(k) for k in ([keys] if isinstance(keys, (str, os.PathLike)) else keys))
        with self._reader(on_wait) as cat:   # held throughout: a concurrent writer would look like damage
            return self._verify(cat, identities, workers, scheduler, progress)

    def _verify(self, cat, identities, workers, scheduler, progress) -> Report:
        """Each problem counted in the report is also reported to ``progress`` (one call per file,
        its problems joined), and each file is counted once: in ``done`` (ok) or under ``failed``."""
        from .verify import VerifyTask, verify_one

        report = Report()
        rows = cat.files()
        catalogued = {r["path"] for r in rows}
        pending = {rec.path: rec for rec in cat.pending()}
        on_disk, temps = self._scan()

        def problem(rel: str, *whys: str) -> None:
            report.failed.extend((rel, why) for why in whys)
            progress("problem", rel, "; ".join(whys))

        for rel in sorted(set(pending) - catalogued):   # an add stopped between its file and its row
            problem(rel, INTERRUPTED_WRITE)
        removing = set(cat.removing())
        for rel in sorted(on_disk - catalogued - set(pending)):
            problem(rel, "removed by an interrupted rm (the next add/grant/revoke deletes it)" if rel in removing
                    else "unknown (on disk, not in the catalogue)")
        for tmp in temps:
            report.warnings.append((tmp.relative_to(self.root).as_posix(),
                                    "temporary file of an interrupted write (the next add/grant/revoke removes it)"))
        known = cat.recipients()
        for ident in identities:   # checked all the same (it must open nothing), but most likely a wrong --key
            if ident.key_id not in known:
                report.warnings.append((f"key {ident.key_id}", "not a recipient of this archive (the catalogue knows "
                                        "no such key): checked only that it opens no group"))
        written = {rel: (rec.file_sha256, rec.access) for rel, rec in pending.items()}
        tasks = [VerifyTask(str(_inside(self.root, r["path"])), r["file_sha256"], identities, r["access"],
                            written.get(r["path"])) for r in rows]
        progress("start", "", str(len(tasks)))
        for task, result in runner.run(verify_one, tasks, workers=workers, scheduler=scheduler, min_per_worker=LIGHT_TASKS):
            rel = Path(task.path).relative_to(self.root).as_posix()
            # a catalogued file a grant/revoke was stopped rewriting: that write, and anything else wrong
            whys = ([INTERRUPTED_WRITE] if rel in pending else []) + result["problems"]
            if whys:
                problem(rel, *whys)
            else:
                report.done.append(rel)
                progress("done", rel, "")
        report.failed.sort()
        return report

    def export(self, out_dir, keys=(), *, fmt: str = "png", force: bool = False, workers: int | None = None,
               scheduler=None, progress: Progress = _quiet, on_wait=None) -> Report:
        """Every file as an ordinary image in ``out_dir`` (same relative paths), decoded with ``keys``."""
        from ..imageio import atomic_write
        from .export import FORMATS, ExportTask, export_one

        if fmt not in FORMATS:
            raise ArchiveError(f"export format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        identities = tuple(_identity(k) for k in ([keys] if isinstance(keys, (str, os.PathLike)) else keys))
        out_dir = Path(out_dir)
        if out_dir.resolve() == self.root.resolve() or self.root.resolve() in out_dir.resolve().parents:
            raise ArchiveError("export into a folder outside the archive")
        # one error up front, not one per photo, when the folder cannot be there
        if out_dir.exists() and not out_dir.is_dir():
            raise ArchiveError(f"{out_dir}: exists and is not a folder")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ArchiveError(f"cannot create the export folder {out_dir}: {e.strerror or e}") from None
        report = Report()
        # A.png and a.png are one file where the export folder ignores case, two where it does not
        fold = str.casefold if _ignores_case(out_dir) else str
        with self._reader(on_wait) as cat:
            rows = cat.files()
            outputs, tasks = {}, []
            claims: dict[str, list[str]] = {}
            for r in rows:
                claims.setdefault(fold(export_name(r["path"], fmt)), []).append(r["path"])
            for r in rows:
                out = export_name(r["path"], fmt)
                others = [p for p in claims[fold(out)] if p != r["path"]]
                if others:   # never one of them chosen by which others exist: both reported
                    helps = []
                    if any(export_name(p, fmt) == out for p in others):
                        helps.append("export with the other --format")
                    if any(export_name(p, fmt) != out for p in others):    # A.png and a.png
                        helps.append("this folder ignores case: export into one that does not")
                    report.failed.append((r["path"], f"not exported: its export name {out} is also that of "
                                                     f"{', '.join(others)} ({'; '.join(helps)})"))
                    progress("failed", *report.failed[-1])
                    continue
                if (out_dir / out).is_dir():     # never 'exists, skipped': no image of it is there
                    report.failed.append((out, "a folder of that name is in the way: not exported"))
                    progress("failed", *report.failed[-1])
                    continue
                if (out_dir / out).exists() and not force:
                    report.skipped.append(out)
                    progress("skipped", out, "exists")
                    continue
                outputs[r["path"]] = out
                tasks.append(ExportTask(str(_inside(self.root, r["path"])), identities, fmt))
            progress("start", "", str(len(tasks)))
            for task, result in runner.run(export_one, tasks, workers=workers, scheduler=scheduler):
                rel = Path(task.path).relative_to(self.root).as_posix()
                if "error" in result:
                    report.failed.append((rel, result["error"]))
                    progress("failed", rel, result["error"])
                    continue
                try:
                    dest = _made_room(out_dir, outputs[rel], "." + fmt)
                    # decrypted photos are as private as the keys that opened them
                    atomic_write(dest, result["data"], force=True, mode=0o600 if result["decoded"] else None)
                except PrivcodecError as e:      # e.g. a symlink or folder in the way: this file only
                    report.failed.append((outputs[rel], str(e)))
                    progress("failed", outputs[rel], str(e))
                    continue
                report.done.append(outputs[rel])
                progress("done", outputs[rel], f"{result['decoded']} decrypted, {result['missing']} filled")
        return report


def _refuse_revoked(cat: Catalogue, recipients: dict, policy) -> None:
    """A policy recipient whose key was revoked or rotated out must not get new photos: one error
    naming each, before any work.  A key rotated more than once is pointed at the key its rotations
    lead to now (family -> family2026 -> family3: 'rotated to family3'), never at one rotated out too."""
    revoked = cat.revoked()
    if not revoked:
        return
    names = {k: r["name"] for k, r in cat.recipients().items()}
    problems = []
    for spec, r in recipients.items():
        if r.key_id not in revoked:
            continue
        chain = [r.key_id]                      # the key, then each key it was rotated to
        while chain[-1] in revoked and revoked[chain[-1]] is not None and revoked[chain[-1]] not in chain:
            chain.append(revoked[chain[-1]])
        last = chain[-1]
        if last in revoked and revoked[last] is not None:    # back to a key of the chain: a loop (a damaged catalogue)
            loop = ", ".join(names.get(k, k) for k in chain + [revoked[last]])
            problems.append(f"recipient {spec!r} was rotated out (archive rotate; its rotations go round in a loop: "
                            f"{loop}): take it out of the policy")
            continue
        if len(chain) == 1:
            problems.append(f"recipient {spec!r} was revoked (archive revoke): take it out of the policy")
            continue
        to = names.get(last, last)
        to = f"{to!r}" + (f" (key {last})" if to == _name(spec) else "")
        via = ", ".join(repr(names.get(k, k)) for k in chain[1:-1])
        to += f" (by way of {via})" if via else ""
        if last in revoked:                     # the key it leads to was revoked outright since
            problems.append(f"recipient {spec!r} was rotated to {to}, which was revoked since (archive revoke): "
                            "take it out of the policy")
        else:
            problems.append(f"recipient {spec!r} was rotated to {to} (archive rotate): update the policy")
    if problems:
        raise ArchiveError(f"{policy}: " + "; ".join(problems) + " (nothing added)")


def export_name(member: str, fmt: str) -> str:
    """The name ``archive export`` gives a member, from that member alone: its path without .prvc,
    plus .FORMAT unless it ends so already (2019/a.jpg.prvc -> 2019/a.jpg.png, or 2019/a.jpg in jpg)."""
    stem = member[:-len(".prvc")] if member.endswith(".prvc") else member
    return stem if stem.endswith("." + fmt) else f"{stem}.{fmt}"


def safe_member(rel: str, suffix: str = ".prvc") -> str:
    """An archive member path as the catalogue may hold it: relative, '/'-separated, no '.', '..' or
    empty parts, not inside .privcodec, ending in ``suffix``.  Anything else is refused, so a tampered
    catalogue cannot make privcodec read or write outside the archive (or the export folder)."""
    parts = str(rel).split("/")
    if (not str(rel).endswith(suffix) or str(rel).startswith("/") or "\\" in str(rel)
            or any(p in ("", ".", "..") for p in parts) or parts[0] == META_DIR):
        raise ArchiveError(f"refusing an archive member path that is not a plain relative path: {rel!r}")
    return str(rel)


def _inside(root: Path, rel: str, suffix: str = ".prvc") -> Path:
    """root / rel, refused if a symlinked folder leads it outside root."""
    path = root / safe_member(rel, suffix)
    real_root = root.resolve()
    if real_root not in path.parent.resolve().parents and path.parent.resolve() != real_root:
        raise ArchiveError(f"{rel}: its folder leads outside the archive (a symbolic link?)")
    return path


def _ignores_case(folder: Path) -> bool:
    """Whether names in ``folder`` (which exists) ignore case, by a probe file (True if unsure)."""
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(prefix=".privcodec-case-probe-", dir=folder)
    except OSError:
        return True
    os.close(fd)
    try:
        return os.path.exists(os.path.join(folder, os.path.basename(probe).upper()))
    finally:
        os.unlink(probe)


def _delete(root: Path, rel: str) -> str | None:
    """Delete the member ``rel``'s file (already gone is fine); why it could not be, or None."""
    try:
        _inside(root, rel).unlink(missing_ok=True)
    except ArchiveError as e:
        return str(e)
    except OSError as e:
        return f"cannot delete the file ({e.strerror or e})"
    return None


def _made_room(root: Path, rel: str, suffix: str = ".prvc") -> Path:
    """root / rel with its folder created: checked first (_inside), as mkdir would follow a link
    out of root.  ArchiveError if either fails."""
    dest = _inside(root, rel, suffix)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ArchiveError(f"cannot create {dest.parent}: {e.strerror or e}") from None
    return dest


def _name(spec) -> str:
    spec = str(spec)
    return Path(spec).stem if "/" in spec or spec.endswith((".key", ".pub")) else spec


def _identity(key):
    from ..keys import Identity, load_identity

    return key if isinstance(key, Identity) else load_identity(Path(key))


def _recipient(spec, keys_dir):
    from ..keys import Recipient, load_recipient

    if isinstance(spec, Recipient):
        r = spec
    else:
        r = load_recipient(str(spec), Path(keys_dir))
    if r.kind not in ("symmetric", "x25519"):
        raise ArchiveError("archives hold symmetric and x25519 recipients only")
    return r


def _rewrap_recipient(key_id: str, known: dict | None, identities: Sequence, keys_dir):
    """What revoke needs to wrap a fresh content key for a remaining recipient: the X25519 public key
    from the catalogue, or a symmetric secret from the given keys or keys_dir/NAME.key."""
    from ..keys import Recipient, load_recipient

    if known is not None and known["kind"] == "x25519" and known["public"]:
        r = Recipient("x25519", known["public"], known["name"])
        # the catalogue is a file anyone with write access can edit: never wrap for a key that is not
        # the one the access list names
        return r if r.key_id == key_id else None
    for ident in identities:
        if ident.key_id == key_id:
            return ident.recipient
    if known is not None:
        try:
            r = load_recipient(known["name"], Path(keys_dir))
        except (KeyFileError, OSError):
            return None
        if r.key_id == key_id:
            return r
    return None
