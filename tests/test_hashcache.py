"""The source-hash cache of `archive add` (privcodec/archive/hashcache.py): what it remembers, and
above all what it forgets — never a library because its disk or share is away, only what a run
can see is gone."""
from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from privcodec.archive import Archive, hashcache
from privcodec.keys import keygen


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A cache folder of this test's own; photos written just now are remembered; reads are listed."""
    monkeypatch.setenv("PRIVCODEC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("PRIVCODEC_NO_CACHE", raising=False)
    monkeypatch.setattr(hashcache, "SETTLE_SECONDS", -1.0)
    reads: list[Path] = []
    hashed = hashcache.sha256_file
    monkeypatch.setattr(hashcache, "sha256_file", lambda path: reads.append(Path(path).resolve()) or hashed(path))
    return reads


@pytest.fixture
def archive(tmp_path):
    keys = tmp_path / "keys"
    keygen("family", keys, "symmetric")
    policy = tmp_path / "family.toml"
    policy.write_text('[[rule]]\nmatch = ["background"]\naction = "encrypt"\nrecipients = ["family"]\n')
    a = Archive.init(tmp_path / "arc")

    def add(*sources):
        report = a.add(list(sources), policy, keys_dir=keys, workers=1)
        assert report.ok, report.failed
        return report

    return add


def photos(folder: Path, *names) -> Path:
    """Small flat photos, a colour each (from the folder and name)."""
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        colour = np.frombuffer(zlib.crc32(f"{folder}/{name}".encode()).to_bytes(4, "big")[:3], np.uint8)
        Image.fromarray(np.broadcast_to(colour, (48, 48, 3)).copy()).save(folder / name)
    return folder


def cached(tmp_path) -> set[str]:
    db = sqlite3.connect(tmp_path / "cache" / "source-hashes.sqlite")
    try:
        return {p for (p,) in db.execute("SELECT path FROM hashes")}
    finally:
        db.close()


def files(folder: Path) -> set[str]:
    return {str(p.resolve()) for p in folder.rglob("*.png")}


def unplug(folder: Path, mount_point: bool = False) -> Path:
    """The disk holding ``folder`` goes away: the folder is gone, or (``mount_point``) empty."""
    away = folder.with_name(folder.name + "-unplugged")
    folder.rename(away)
    if mount_point:
        folder.mkdir()
    return away


def plug_back(folder: Path, away: Path) -> None:
    if folder.is_dir():
        folder.rmdir()
    away.rename(folder)


def on_another_disk(tmp_path, folder: Path) -> None:
    """Make the cache say ``folder``'s photos were on another device (tests have one filesystem)."""
    db = sqlite3.connect(tmp_path / "cache" / "source-hashes.sqlite", isolation_level=None)
    prefix = str(folder.resolve()) + os.sep
    db.execute("UPDATE hashes SET identity = '999999' || substr(identity, instr(identity, ':')) "
               "WHERE substr(path, 1, ?) = ?", (len(prefix), prefix))
    db.close()


def test_an_unplugged_library_keeps_its_cached_hashes(tmp_path, cache, archive):
    nas = photos(tmp_path / "nas" / "trips", "a.png", "b.png", "2019/c.png")
    home = photos(tmp_path / "home" / "pics", "d.png", "e.png")
    archive(nas)
    archive(home)
    both = cached(tmp_path)
    assert both == files(nas) | files(home)

    away = unplug(nas)
    cache.clear()
    archive(home)                                    # another library added while the disk is away
    assert cache == [] and cached(tmp_path) == both
    plug_back(nas, away)
    report = archive(nas)                            # the disk is back: not one photo read again
    assert cache == [] and len(report.skipped) == 3


def test_adding_a_library_whose_disk_is_away_forgets_none_of_its_hashes(tmp_path, cache, archive):
    nas = photos(tmp_path / "nas" / "trips", "a.png", "2019/b.png")
    archive(nas)
    before = cached(tmp_path)
    on_another_disk(tmp_path, nas)
    unplug(nas, mount_point=True)                    # an empty mount point where the share was
    assert archive(nas).done == []
    assert cached(tmp_path) == before
    with hashcache.SourceHashes(sources=[nas]):     # told it is walking that folder: still nothing judged gone
        pass
    assert cached(tmp_path) == before


@pytest.mark.parametrize("added", ["the library", "one photo of it"])
def test_a_photo_deleted_from_the_library_being_added_is_forgotten_and_nothing_else(tmp_path, cache, archive, added):
    nas = photos(tmp_path / "nas" / "trips", "a.png", "b.png")
    home = photos(tmp_path / "home" / "pics", "c.png", "d.png", "e.png")
    archive(nas, home)
    unplug(nas)
    (home / "d.png").unlink()
    archive(home if added == "the library" else home / "c.png")
    assert cached(tmp_path) == {str(nas.resolve() / "a.png"), str(nas.resolve() / "b.png"),
                                str(home.resolve() / "c.png"), str(home.resolve() / "e.png")}


def test_a_folder_deleted_from_a_library_walked_as_a_source_is_forgotten(tmp_path, cache):
    nas = photos(tmp_path / "nas" / "trips", "a.png")
    home = photos(tmp_path / "home" / "pics", "2019/b.png", "2019/old/c.png", "2020/d.png")
    with hashcache.SourceHashes() as hashes:
        for p in sorted(nas.rglob("*.png")) + sorted(home.rglob("*.png")):
            hashes.digest(p)
    unplug(nas)
    shutil.rmtree(home / "2019")
    with hashcache.SourceHashes(sources=[home]) as hashes:
        hashes.digest(home / "2020" / "d.png")
    assert cached(tmp_path) == {str(nas.resolve() / "a.png"), str(home.resolve() / "2020" / "d.png")}


def test_adding_a_library_stats_only_the_cached_entries_of_the_folders_it_walks(tmp_path, cache, monkeypatch):
    nas = photos(tmp_path / "nas" / "trips", *[f"{i:02}.png" for i in range(30)])
    home = photos(tmp_path / "home" / "pics", "a.png", "b.png")
    with hashcache.SourceHashes() as hashes:
        for p in sorted(nas.rglob("*.png")) + sorted(home.rglob("*.png")):
            hashes.digest(p)
    (home / "b.png").unlink()
    looked_at = []
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: looked_at.append(os.fspath(p)) or real_stat(p, *a, **k))
    with hashcache.SourceHashes() as hashes:
        hashes.digest(home / "a.png")
    monkeypatch.setattr(os, "stat", real_stat)
    other = str(nas.resolve())
    assert looked_at and not [p for p in looked_at if str(p).startswith(other)]   # the other library: not one stat
    assert cached(tmp_path) == files(nas) | {str(home.resolve() / "a.png")}


def test_a_run_stopped_half_way_forgets_nothing(tmp_path, cache):
    home = photos(tmp_path / "home" / "pics", "a.png", "b.png")
    with hashcache.SourceHashes() as hashes:
        hashes.digest(home / "a.png"), hashes.digest(home / "b.png")
    (home / "b.png").unlink()
    with pytest.raises(KeyboardInterrupt), hashcache.SourceHashes() as hashes:
        hashes.digest(home / "a.png")
        raise KeyboardInterrupt
    assert cached(tmp_path) == {str(home.resolve() / "a.png"), str(home.resolve() / "b.png")}
    with hashcache.SourceHashes() as hashes:           # the next whole run does
        hashes.digest(home / "a.png")
    assert cached(tmp_path) == {str(home.resolve() / "a.png")}


def test_hashes_no_run_has_looked_up_for_over_a_year_are_forgotten(tmp_path, cache):
    old = photos(tmp_path / "old", "a.png")           # a library renamed or deleted whole long ago
    kept = photos(tmp_path / "kept", "b.png")         # looked up again today
    away = photos(tmp_path / "away", "c.png")         # on a disk unplugged last month
    with hashcache.SourceHashes() as hashes:
        for p in ("old/a.png", "kept/b.png", "away/c.png"):
            hashes.digest(tmp_path / p)
    today = int(time.time() // 86400)
    db = sqlite3.connect(tmp_path / "cache" / "source-hashes.sqlite", isolation_level=None)
    db.execute("UPDATE hashes SET seen = ?", (today - hashcache.FORGET_AFTER_DAYS - 1,))
    db.execute("UPDATE hashes SET seen = ? WHERE path = ?", (today - 30, str(away.resolve() / "c.png")))
    db.close()
    assert hashcache.FORGET_AFTER_DAYS >= 365
    cache.clear()
    with hashcache.SourceHashes() as hashes:
        hashes.digest(kept / "b.png")
    assert cache == []
    assert cached(tmp_path) == {str(kept.resolve() / "b.png"), str(away.resolve() / "c.png")}
    db = sqlite3.connect(tmp_path / "cache" / "source-hashes.sqlite")
    assert db.execute("SELECT seen FROM hashes WHERE path = ?", (str(kept.resolve() / "b.png"),)).fetchone() == (today,)
    db.close()
    assert old.is_dir()


def test_a_cache_written_by_the_previous_version_is_still_used_and_keeps_its_entries(tmp_path, cache):
    home = photos(tmp_path / "home" / "pics", "a.png", "b.png")
    gone_disk = "/media/someone/NAS/trips/c.png"       # a library whose disk is not plugged in
    (tmp_path / "cache").mkdir(mode=0o700)
    db = sqlite3.connect(tmp_path / "cache" / "source-hashes.sqlite", isolation_level=None)
    db.execute("CREATE TABLE hashes (path TEXT PRIMARY KEY, identity TEXT NOT NULL, sha256 TEXT NOT NULL)")
    for p in home.glob("*.png"):
        st = os.stat(p)
        db.execute("INSERT INTO hashes VALUES (?, ?, ?)", (str(p.resolve()),
                   f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}",
                   hashlib.sha256(p.read_bytes()).hexdigest()))
    db.execute("INSERT INTO hashes VALUES (?, ?, ?)", (gone_disk, "1:2:3:4:5", "0" * 64))
    db.close()
    with hashcache.SourceHashes() as hashes:
        assert hashes.digest(home / "a.png") == hashlib.sha256((home / "a.png").read_bytes()).hexdigest()
    assert cache == []                                 # remembered, not read
    assert cached(tmp_path) == files(home) | {gone_disk}
    db = sqlite3.connect(tmp_path / "cache" / "source-hashes.sqlite")
    today = int(time.time() // 86400)
    assert {s for (s,) in db.execute("SELECT seen FROM hashes")} == {today}   # counted from today
    db.close()
