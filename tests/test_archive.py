"""Archives (privcodec archive …): ingest, resume, catalogue, grant / revoke / rotate, verify,
locking, and the same results on a process pool and on a Dask cluster."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import privcodec
from privcodec.archive import Archive, ArchiveError
from privcodec.errors import DecryptionError, PrivcodecError
from privcodec.keys import keygen

ROOT = Path(__file__).resolve().parents[1]
ASTRONAUT = ROOT / "privcodec/data/astronaut.jpg"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Real photos, small: three with a face (variants of the bundled portrait), two without, in subfolders."""
    import skimage.data

    d = tmp_path_factory.mktemp("photos") / "holiday"
    (d / "day2").mkdir(parents=True)
    face = Image.open(ASTRONAUT).convert("RGB")
    face.save(d / "portrait.jpg", quality=92)
    face.transpose(Image.FLIP_LEFT_RIGHT).save(d / "mirror.png")
    face.resize((384, 384)).save(d / "day2" / "small.webp", quality=90)
    Image.fromarray(skimage.data.coffee()).save(d / "day2" / "coffee.jpg", quality=90)
    Image.fromarray(skimage.data.chelsea()).save(d / "cat.tif")
    (d / "notes.txt").write_text("not a photo: ignored")
    return d


@pytest.fixture
def keys(tmp_path):
    d = tmp_path / "keys"
    keygen("admin", d, "symmetric")
    keygen("family", d, "symmetric")
    keygen("alice", d, "x25519")
    keygen("bob", d, "x25519")
    return d


@pytest.fixture
def policy(tmp_path):
    p = tmp_path / "faces.toml"
    p.write_text('[[rule]]\nmatch = ["face"]\naction = "encrypt"\nrecipients = ["admin", "family", "alice"]\n\n'
                 '[default]\naction = "public"\n')
    return p


@pytest.fixture
def filled(tmp_path, photos, keys, policy):
    """An archive holding the five photos."""
    a = Archive.init(tmp_path / "arc")
    report = a.add([photos], policy, keys_dir=keys, workers=1)
    assert report.ok and len(report.done) == 5
    return a


def _key(keys, name):
    return keys / f"{name}.key"


def _opens(path, key) -> list[int]:
    try:
        return privcodec.view(path, keys=[key]).decoded
    except DecryptionError:
        return []


def _small_photos(folder: Path, names) -> Path:
    """Small flat photos (48 x 48, a colour each, from the folder and name) in ``folder``."""
    import zlib

    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        colour = np.frombuffer(zlib.crc32(f"{folder.name}/{name}".encode()).to_bytes(4, "big")[:3], np.uint8)
        Image.fromarray(np.broadcast_to(colour, (48, 48, 3)).copy()).save(folder / name)
    return folder


def _family_policy(tmp_path, *recipients) -> Path:
    """Every photo's background encrypted for ``recipients`` (flat photos have nothing else)."""
    p = tmp_path / f"{'-'.join(recipients)}.toml"
    p.write_text(f'[[rule]]\nmatch = ["background"]\naction = "encrypt"\nrecipients = {json.dumps(list(recipients))}\n')
    return p


def test_add_walks_folders_and_mirrors_their_paths(filled):
    assert sorted(f["path"] for f in filled.ls()) == [
        "holiday/cat.tif.prvc", "holiday/day2/coffee.jpg.prvc", "holiday/day2/small.webp.prvc",
        "holiday/mirror.png.prvc", "holiday/portrait.jpg.prvc"]
    for f in filled.ls():
        assert (filled.root / f["path"]).is_file()


def test_add_takes_one_folder_or_a_generator_of_them_as_it_takes_a_list(tmp_path, photos, keys, policy):
    one = Archive.init(tmp_path / "one")
    assert len(one.add(photos / "day2", policy, keys_dir=keys, workers=1).done) == 2
    lazy = Archive.init(tmp_path / "lazy")
    assert len(lazy.add((p for p in [photos / "day2"]), policy, keys_dir=keys, workers=1).done) == 2


def test_the_catalogue_lists_what_each_file_holds_and_who_may_open_it(filled, keys):
    files = {f["path"]: f for f in filled.ls()}
    portrait = files["holiday/portrait.jpg.prvc"]
    info = privcodec.inspect(filled.root / "holiday/portrait.jpg.prvc")
    assert (portrait["width"], portrait["height"], portrait["codec"]) == (512, 512, "avif-2")
    assert portrait["size"] == (filled.root / portrait["path"]).stat().st_size
    assert portrait["protected"] == len([g for g in info["groups"] if g["access"] == "encrypted"]) >= 1
    assert portrait["recipients"] == ["admin", "alice", "family"]
    assert files["holiday/cat.tif.prvc"]["protected"] == 0 and files["holiday/cat.tif.prvc"]["recipients"] == []
    # filters
    assert {f["path"] for f in filled.ls(recipient="alice")} == {
        "holiday/portrait.jpg.prvc", "holiday/mirror.png.prvc", "holiday/day2/small.webp.prvc"}
    alice_id = [r["key_id"] for r in filled.recipients() if r["name"] == "alice"][0]
    assert filled.ls(recipient=alice_id) == filled.ls(recipient="alice")
    assert len(filled.ls(klass="background")) == 5
    with pytest.raises(ArchiveError, match="no recipient 'carol'"):
        filled.ls(recipient="carol")


def test_the_catalogue_holds_no_secret_and_no_protected_class(filled, keys):
    raw = (filled.root / ".privcodec/catalogue.sqlite").read_bytes()
    for name in ("admin", "family", "alice"):
        secret = privcodec.keys.load_identity(_key(keys, name)).secret
        assert secret not in raw and secret.hex().encode() not in raw
    assert b"face" not in raw


def test_adding_again_does_no_work(filled, photos, keys, policy):
    before = {p: p.stat().st_mtime_ns for p in filled.root.rglob("*.prvc")}
    report = filled.add([photos], policy, keys_dir=keys, workers=1)
    assert report.done == [] and len(report.skipped) == 5 and report.ok
    assert {p: p.stat().st_mtime_ns for p in filled.root.rglob("*.prvc")} == before


def test_adding_a_large_library_again_reads_only_new_or_changed_photos(tmp_path, photos, keys, policy, monkeypatch):
    from privcodec.archive import hashcache

    monkeypatch.setenv("PRIVCODEC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(hashcache, "SETTLE_SECONDS", -1.0)   # the fixture's photos were written just now
    library = tmp_path / "library" / "holiday"
    library.mkdir(parents=True)
    for p in ("portrait.jpg", "mirror.png", "cat.tif"):
        (library / p).write_bytes((photos / p).read_bytes())
    a = Archive.init(tmp_path / "arc")
    read = []
    hashed = hashcache.sha256_file
    monkeypatch.setattr(hashcache, "sha256_file", lambda path: read.append(Path(path).name) or hashed(path))
    assert len(a.add([library], policy, keys_dir=keys, workers=1).done) == 3
    assert sorted(read) == ["cat.tif", "mirror.png", "portrait.jpg"]

    read.clear()
    report = a.add([library], policy, keys_dir=keys, workers=1)
    assert len(report.skipped) == 3 and read == []           # nothing read: every photo unchanged
    Image.open(photos / "portrait.jpg").rotate(90).save(library / "portrait.jpg")   # edited in place
    (library / "new.jpg").write_bytes((photos / "day2" / "coffee.jpg").read_bytes())
    report = a.add([library], policy, keys_dir=keys, workers=1)
    assert sorted(read) == ["new.jpg", "portrait.jpg"]
    assert [Path(p).name for p in report.done] == ["new.jpg"]
    assert report.failed and "already holds a different photo" in report.failed[0][1]


def test_a_photo_changed_seconds_ago_or_an_unusable_cache_is_read_every_time(tmp_path, monkeypatch):
    import hashlib

    from privcodec.archive import hashcache

    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"fresh bytes")
    read = []
    hashed = hashcache.sha256_file
    monkeypatch.setattr(hashcache, "sha256_file", lambda path: read.append(path) or hashed(path))
    with hashcache.SourceHashes(tmp_path / "cache") as cache:
        assert cache.digest(photo) == cache.digest(photo) == hashlib.sha256(b"fresh bytes").hexdigest()
    assert len(read) == 2                          # within the settle time: never remembered
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setattr(hashcache, "SETTLE_SECONDS", -1.0)
    with hashcache.SourceHashes(tmp_path / "not-a-folder") as cache:
        assert cache.db is None and cache.digest(photo) == hashlib.sha256(b"fresh bytes").hexdigest()
    # another privcodec holding the cache: read the photo, do not wait on it
    import sqlite3
    import time

    holder = sqlite3.connect(tmp_path / "cache" / "source-hashes.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    with hashcache.SourceHashes(tmp_path / "cache") as cache:
        start = time.monotonic()
        for _ in range(20):
            assert cache.digest(photo) == hashlib.sha256(b"fresh bytes").hexdigest()
        assert time.monotonic() - start < 3
    holder.execute("ROLLBACK")
    holder.close()


def test_the_hash_cache_is_private_can_be_turned_off_and_forgets_photos_that_are_gone(tmp_path, monkeypatch):
    from privcodec.archive import hashcache

    monkeypatch.setenv("PRIVCODEC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(hashcache, "SETTLE_SECONDS", -1.0)
    kept, gone = tmp_path / "kept.jpg", tmp_path / "gone.jpg"
    kept.write_bytes(b"kept")
    gone.write_bytes(b"gone")
    with hashcache.SourceHashes() as cache:
        cache.digest(kept), cache.digest(gone)
    db = tmp_path / "cache" / "source-hashes.sqlite"
    assert db.stat().st_mode & 0o777 == 0o600
    gone.unlink()
    with hashcache.SourceHashes() as cache:
        cache.digest(kept)                    # the next add of their folder forgets the photos gone from it
    with hashcache.SourceHashes() as cache:
        assert [p for (p,) in cache.db.execute("SELECT path FROM hashes")] == [str(kept.resolve())]
    monkeypatch.setenv("PRIVCODEC_NO_CACHE", "1")
    db.unlink()
    with hashcache.SourceHashes() as cache:
        assert cache.db is None and len(cache.digest(kept)) == 64
    assert not db.exists()


def test_an_interrupted_add_resumes_where_it_stopped(tmp_path, photos, keys, policy):
    a = Archive.init(tmp_path / "arc")
    seen = []

    def stop_after_two(status, path, detail):
        if status == "done":
            seen.append(path)
            if len(seen) == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        a.add([photos], policy, keys_dir=keys, workers=1, progress=stop_after_two)
    assert len(a.ls()) == 2
    assert not list(a.root.rglob("*.tmp")) and a.verify().ok
    report = a.add([photos], policy, keys_dir=keys, workers=1)
    assert len(report.done) == 3 and len(report.skipped) == 2
    assert len(a.ls()) == 5 and a.verify().ok


def test_an_add_killed_with_sigkill_resumes_and_loses_nothing(tmp_path, photos, keys, policy):
    import signal

    arc = tmp_path / "arc"
    Archive.init(arc)
    cmd = [sys.executable, "-m", "privcodec", "archive", "add", str(arc), str(photos), "--policy", str(policy),
           "--keys-dir", str(keys), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, PRIVCODEC_THREADS="1"))
    assert proc.stdout.readline().startswith("added ")       # one photo in, the next one under way
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    a = Archive(arc)
    done_before = len(a.ls())
    assert 1 <= done_before < 5
    report = a.add([photos], policy, keys_dir=keys, workers=1)
    assert len(report.done) + len(report.skipped) == 5 and len(report.done) == 5 - done_before
    assert len(a.ls()) == 5 and a.verify().ok and not list(arc.rglob("*.tmp"))


def test_a_crash_between_writing_a_file_and_cataloguing_it_is_completed_on_the_next_run(tmp_path, photos, keys,
                                                                                        policy, monkeypatch):
    from privcodec.archive.catalogue import Catalogue

    a = Archive.init(tmp_path / "arc")

    def power_cut(self, rec):
        raise SystemExit("power cut")

    monkeypatch.setattr(Catalogue, "finish_write", power_cut)
    with pytest.raises(SystemExit):
        a.add([photos / "portrait.jpg"], policy, keys_dir=keys, workers=1)
    monkeypatch.undo()
    assert (a.root / "portrait.jpg.prvc").exists() and a.ls() == []
    assert not a.verify().ok                       # the interrupted write is reported ...
    report = a.add([photos / "portrait.jpg"], policy, keys_dir=keys, workers=1)
    assert report.skipped and not report.done      # ... and completed, not redone
    assert [f["path"] for f in a.ls()] == ["portrait.jpg.prvc"] and a.verify().ok


def test_a_broken_photo_is_reported_by_name_and_the_others_go_in(tmp_path, photos, keys, policy):
    src = tmp_path / "mixed"
    src.mkdir()
    (src / "good.jpg").write_bytes((photos / "portrait.jpg").read_bytes())
    (src / "truncated.jpg").write_bytes((photos / "portrait.jpg").read_bytes()[:3000])
    (src / "text.png").write_text("this is not a PNG")
    a = Archive.init(tmp_path / "arc")
    report = a.add([src], policy, keys_dir=keys, workers=1)
    assert [Path(p).name for p in report.done] == ["good.jpg"]
    assert sorted(Path(p).name for p, _ in report.failed) == ["text.png", "truncated.jpg"]
    assert not any("<image data>" in why for _, why in report.failed)   # the path names the photo
    assert not report.ok
    assert [f["path"] for f in a.ls()] == ["mixed/good.jpg.prvc"]
    assert not list(a.root.rglob("*.tmp")) and sorted(p.name for p in a.root.rglob("*.prvc")) == ["good.jpg.prvc"]


def test_a_photo_whose_name_the_archive_cannot_hold_fails_alone_and_the_rest_go_in(tmp_path, keys, monkeypatch):
    policy = _family_policy(tmp_path, "admin", "family")
    src = _small_photos(tmp_path / "odd", ["ok.png", "x" * 247 + ".png", "unwritable.png"])   # 251 bytes + .prvc
    bad = os.path.join(os.fsencode(src), b"caf\xe9.png")                      # Latin-1, not UTF-8
    with open(bad, "wb") as f:
        f.write((src / "ok.png").read_bytes() + b"\0")
    from privcodec import imageio

    real_write = imageio.atomic_write

    def disk_says_no(path, *args, **kwargs):
        if Path(path).name == "unwritable.png.prvc":
            raise PrivcodecError(f"cannot write {path}: Input/output error")
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(imageio, "atomic_write", disk_says_no)
    a = Archive.init(tmp_path / "arc")
    for run in range(2):                                        # and every later run alike
        report = a.add([src], policy, keys_dir=keys, workers=1)
        why = {Path(p).name[:8]: m for p, m in report.failed}
        assert sorted(why) == ["caf\udce9.png", "unwritab", "x" * 8]
        assert "not valid UTF-8" in why["caf\udce9.png"]
        assert "file name (with .prvc) is 256 bytes" in why["x" * 8]
        assert "Input/output error" in why["unwritab"]
        assert [Path(p).name for p in report.done + report.skipped] == ["ok.png"]
    assert [f["path"] for f in a.ls()] == ["odd/ok.png.prvc"] and a.verify().ok      # nothing pending


def test_a_different_photo_never_replaces_an_archived_one(tmp_path, photos, keys, policy):
    a = Archive.init(tmp_path / "arc")
    first, second = tmp_path / "one" / "holiday", tmp_path / "two" / "holiday"
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    (first / "p.jpg").write_bytes((photos / "portrait.jpg").read_bytes())
    Image.open(photos / "portrait.jpg").rotate(90).save(second / "p.jpg")
    assert a.add([first], policy, keys_dir=keys, workers=1).ok
    before = (a.root / "holiday/p.jpg.prvc").read_bytes()
    report = a.add([second], policy, keys_dir=keys, workers=1)
    assert report.failed and "already holds a different photo" in report.failed[0][1]
    assert (a.root / "holiday/p.jpg.prvc").read_bytes() == before


def test_an_edited_photo_is_refused_with_the_way_out_and_add_update_replaces_its_archived_version(tmp_path, keys,
                                                                                                 monkeypatch):
    """Without --update an edited original never replaces its archived version, and the failure says
    how to; with it, the member under the same path is replaced for the policy given now (a warning
    names the keys granted since that the new file no longer opens), its old rows gone."""
    from click.testing import CliRunner

    from privcodec.cli import cli

    src = _small_photos(tmp_path / "2019", ["a.png", "b.png"])
    a = Archive.init(tmp_path / "arc")
    assert a.add([src], _family_policy(tmp_path, "admin", "family"), keys_dir=keys, workers=1).ok
    assert a.grant(_key(keys, "admin"), "bob", keys_dir=keys).ok
    before = {f["path"]: f for f in a.ls()}
    old_file = (a.root / "2019/a.png.prvc").read_bytes()
    Image.fromarray(np.full((48, 64, 3), 200, np.uint8)).save(src / "a.png")     # edited: new pixels and size

    report = a.add([src], _family_policy(tmp_path, "admin", "family"), keys_dir=keys, workers=1)
    assert report.skipped == [str(src / "b.png")] and [p for p, _ in report.failed] == [str(src / "a.png")]
    assert report.failed[0][1] == ("2019/a.png.prvc already holds a different photo: if this one is an edited version "
                                   "of it, add it with --update to replace the archived one; otherwise rename it")
    assert (a.root / "2019/a.png.prvc").read_bytes() == old_file

    new_policy = _family_policy(tmp_path, "admin", "alice")
    report = a.add([src], new_policy, keys_dir=keys, workers=1, update=True)
    assert report.ok and report.done == report.updated == [str(src / "a.png")] and report.skipped == [str(src / "b.png")]
    assert report.warnings == [("2019/a.png.prvc", "updated for the policy's recipients: no longer open to bob, family "
                                                   "(archive grant gives it back)")]
    after = {f["path"]: f for f in a.ls()}
    assert after.keys() == before.keys() and after["2019/b.png.prvc"] == before["2019/b.png.prvc"]
    assert (after["2019/a.png.prvc"]["width"], after["2019/a.png.prvc"]["recipients"]) == (64, ["admin", "alice"])
    assert after["2019/a.png.prvc"]["size"] == (a.root / "2019/a.png.prvc").stat().st_size
    assert privcodec.view(a.root / "2019/a.png.prvc", keys=[_key(keys, "alice")]).pixels[0, 0].tolist() == [200] * 3
    assert _opens(a.root / "2019/a.png.prvc", _key(keys, "bob")) == []
    assert a.verify([_key(keys, n) for n in ("admin", "alice", "family", "bob")]).ok
    assert a.add([src], new_policy, keys_dir=keys, workers=1, update=True).done == []       # nothing left to do

    Image.fromarray(np.full((48, 64, 3), 90, np.uint8)).save(src / "a.png")      # edited again; the run killed
    from privcodec.archive.catalogue import Catalogue                             # after replacing the file

    def killed(self, rec):
        raise SystemExit("killed")

    monkeypatch.setattr(Catalogue, "finish_write", killed)
    with pytest.raises(SystemExit):
        a.add([src], new_policy, keys_dir=keys, workers=1, update=True)
    monkeypatch.undo()
    assert [(p, why) for p, why in a.verify().failed] == [("2019/a.png.prvc", "an interrupted write (the next "
                                                                               "add/grant/revoke completes it)")]
    r = CliRunner().invoke(cli, ["archive", "add", str(a.root), str(src), "--policy", str(new_policy),
                                 "--keys-dir", str(keys), "--workers", "1", "--update"])
    assert r.exit_code == 0 and r.output.splitlines()[-1] == "0 added, 2 already in the archive"   # completed
    assert len(a.ls()) == 2 and a.verify([_key(keys, "alice")]).ok
    assert privcodec.view(a.root / "2019/a.png.prvc", keys=[_key(keys, "alice")]).pixels[0, 0].tolist() == [90] * 3

    Image.fromarray(np.full((48, 64, 3), 30, np.uint8)).save(src / "a.png")
    r = CliRunner().invoke(cli, ["archive", "add", str(a.root), str(src), "--policy", str(new_policy),
                                 "--keys-dir", str(keys), "--workers", "1", "--update"])
    assert r.exit_code == 0 and r.output.splitlines()[-1] == "1 added (1 of them replacing an archived version), " \
                                                             "1 already in the archive"
    assert [e["action"] for e in a.audit_log()] == ["grant"]       # add logs no access change, an update neither


def test_passphrase_recipients_are_refused_before_any_work(tmp_path, photos, keys):
    a = Archive.init(tmp_path / "arc")
    p = tmp_path / "pp.toml"
    p.write_text('[[rule]]\nmatch = ["face"]\naction = "encrypt"\nrecipients = ["passphrase"]\n[default]\naction = "public"\n')
    with pytest.raises(ArchiveError, match=r"pp.toml: rule 1: archives cannot use the recipient 'passphrase' "
                                           r"\(revoke could not re-wrap it\): use key files$"):
        a.add([photos], p, keys_dir=keys, workers=1)     # not 'needs --passphrase', which add does not have
    assert a.ls() == []


def test_grant_then_revoke(filled, keys):
    portrait = filled.root / "holiday/portrait.jpg.prvc"
    full = privcodec.view(portrait, keys=[_key(keys, "admin")]).pixels
    assert _opens(portrait, _key(keys, "bob")) == []
    report = filled.grant(_key(keys, "admin"), "bob", keys_dir=keys)
    assert report.ok and len(report.done) == 3
    assert _opens(portrait, _key(keys, "bob")) == _opens(portrait, _key(keys, "admin")) != []
    assert {f["path"] for f in filled.ls(recipient="bob")} == {f["path"] for f in filled.ls(recipient="alice")}

    report = filled.revoke([_key(keys, "admin")], "bob", keys_dir=keys)
    assert report.ok and len(report.done) == 3
    for f in filled.root.rglob("*.prvc"):
        assert _opens(f, _key(keys, "bob")) == []          # the revoked key opens nothing in the archive
    for name in ("admin", "family", "alice"):
        assert _opens(portrait, _key(keys, name)) != []    # the others still do
        assert np.array_equal(privcodec.view(portrait, keys=[_key(keys, name)]).pixels, full)
    assert filled.ls(recipient="bob") == []
    assert filled.verify([_key(keys, n) for n in ("admin", "family", "alice", "bob")]).ok
    assert [e["action"] for e in filled.audit_log()] == ["grant", "revoke"]
    assert filled.audit_log()[1]["files"] == 3


def test_a_revoke_that_cannot_reach_a_file_fails_and_says_so(filled, keys):
    stray = filled.root / "holiday/copied-in.prvc"          # a file put in the archive folder by hand
    stray.write_bytes((filled.root / "holiday/portrait.jpg.prvc").read_bytes())
    report = filled.revoke([_key(keys, "admin")], "alice", keys_dir=keys)
    assert not report.ok and "not in the catalogue, so not re-keyed" in report.failed[0][1]
    assert _opens(stray, _key(keys, "alice")) != []          # exactly what the failure warns of
    assert len(report.done) == 3                             # the catalogued files are re-keyed all the same
    assert all(_opens(filled.root / f["path"], _key(keys, "alice")) == [] for f in filled.ls())


def test_a_revoke_killed_half_way_is_in_the_audit_log_with_the_files_it_re_keyed(tmp_path, keys):
    policy = _family_policy(tmp_path, "admin", "family")
    a = Archive.init(tmp_path / "arc")
    assert a.add([_small_photos(tmp_path / "2019", ["a.png", "b.png", "c.png"])], policy, keys_dir=keys, workers=1).ok
    script = f"""
import os
from privcodec import imageio
from privcodec.archive import Archive
real, n = imageio.atomic_write, [0]
def write_then_die(*args, **kwargs):
    real(*args, **kwargs)
    n[0] += 1
    if n[0] == 2:
        os._exit(9)             # killed with the second re-keyed file on disk, not yet catalogued
imageio.atomic_write = write_then_die
Archive({str(a.root)!r}).revoke([{str(_key(keys, "admin"))!r}], "family", keys_dir={str(keys)!r}, workers=1)
"""
    proc = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, PRIVCODEC_THREADS="1"), timeout=300)
    assert proc.returncode == 9
    admin = privcodec.keys.load_identity(_key(keys, "admin")).key_id
    family = privcodec.keys.load_identity(_key(keys, "family")).key_id
    expected = {"action": "revoke", "key_ids": [family], "files": 2, "chunks": 2,
                "detail": f"by {admin}; interrupted: 1 file(s) still open to the revoked key, run it again"}
    shown = a.audit_log()                                   # read before any writer: already there
    assert [{k: e[k] for k in expected} for e in shown] == [expected]
    assert a.revoke([_key(keys, "admin")], "family", keys_dir=keys).ok     # the next writer logs it for good
    log = a.audit_log()
    assert [{k: e[k] for k in expected} for e in log[:1]] == [expected] and log[0]["at"] == shown[0]["at"]
    assert [(e["action"], e["files"]) for e in log[1:]] == [("revoke", 1)]
    assert all(_opens(f, _key(keys, "family")) == [] for f in a.root.rglob("*.prvc"))


def test_a_revoke_stopped_by_ctrl_c_is_logged_as_interrupted_as_if_killed(tmp_path, keys, monkeypatch):
    """Never logged from the run's own counts as if it had completed: the note stays, and the row
    counts what the catalogue shows, the file replaced on disk but not yet catalogued included."""
    from privcodec.archive.catalogue import Catalogue

    policy = _family_policy(tmp_path, "admin", "family")
    a = Archive.init(tmp_path / "arc")
    assert a.add([_small_photos(tmp_path / "2019", ["a.png", "b.png", "c.png"])], policy, keys_dir=keys, workers=1).ok
    real, n = Catalogue.finish_write, [0]

    def ctrl_c_at_the_second(self, rec):
        n[0] += 1
        if n[0] == 2:
            raise KeyboardInterrupt        # the second re-keyed file replaced on disk, not yet catalogued
        real(self, rec)

    monkeypatch.setattr(Catalogue, "finish_write", ctrl_c_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        a.revoke([_key(keys, "admin")], "family", keys_dir=keys, workers=1)
    monkeypatch.undo()
    admin = privcodec.keys.load_identity(_key(keys, "admin")).key_id
    family = privcodec.keys.load_identity(_key(keys, "family")).key_id
    expected = {"action": "revoke", "key_ids": [family], "files": 2, "chunks": 2,
                "detail": f"by {admin}; interrupted: 1 file(s) still open to the revoked key, run it again"}
    assert [{k: e[k] for k in expected} for e in a.audit_log()] == [expected]
    assert a.revoke([_key(keys, "admin")], "family", keys_dir=keys, workers=1).ok   # logs it for good, first
    log = a.audit_log()
    assert [{k: e[k] for k in expected} for e in log[:1]] == [expected]
    assert [(e["action"], e["files"], e["detail"]) for e in log[1:]] == [("revoke", 1, f"by {admin}")]


def test_a_grant_stopped_by_an_error_is_logged_as_interrupted(tmp_path, keys):
    policy = _family_policy(tmp_path, "admin", "family")
    a = Archive.init(tmp_path / "arc")
    assert a.add([_small_photos(tmp_path / "2019", ["a.png", "b.png"])], policy, keys_dir=keys, workers=1).ok

    def fail_after_the_first(status, path, detail):
        if status == "done":
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        a.grant(_key(keys, "admin"), "bob", keys_dir=keys, workers=1, progress=fail_after_the_first)
    assert [(e["action"], e["files"], e["detail"].split("; ")[-1]) for e in a.audit_log()] == [
        ("grant", 1, "interrupted: run it again for the rest")]
    assert len(a.ls(recipient="bob")) == 1


def test_a_grant_that_fails_before_changing_anything_leaves_a_revocation_in_place(tmp_path, keys):
    policy = _family_policy(tmp_path, "admin", "family")
    a = Archive.init(tmp_path / "arc")
    assert a.add([_small_photos(tmp_path / "2019", ["a.png"])], policy, keys_dir=keys, workers=1).ok
    assert a.revoke([_key(keys, "admin")], "family", keys_dir=keys).ok
    with pytest.raises(ArchiveError, match="no recipient 'nobody'"):
        a.grant(_key(keys, "admin"), "family", recipient_of="nobody", keys_dir=keys)
    with pytest.raises(ArchiveError, match="recipient 'family' was revoked"):
        a.add([_small_photos(tmp_path / "2020", ["b.png"])], policy, keys_dir=keys, workers=1)
    assert [e["action"] for e in a.audit_log()] == ["revoke"]


def test_a_revoke_or_rotate_with_a_key_that_opens_none_of_the_photos_is_refused_before_any_change(tmp_path, keys):
    """A mistyped --key (one no photo concerned was encrypted for) would fail every file: it is one
    error up front, and the recipient is not marked revoked (add still takes it), no rotation is
    recorded, no audit row written, no file touched."""
    from click.testing import CliRunner

    from privcodec.archive.catalogue import Catalogue
    from privcodec.cli import cli

    keygen("family2026", keys, "symmetric")
    keygen("stranger", tmp_path / "elsewhere", "symmetric")
    stranger_key = tmp_path / "elsewhere/stranger.key"
    stranger_id = privcodec.keys.load_identity(stranger_key).key_id
    policy = _family_policy(tmp_path, "admin", "family")
    a = Archive.init(tmp_path / "arc")
    assert a.add([_small_photos(tmp_path / "2019", ["a.png", "b.png"])], policy, keys_dir=keys, workers=1).ok
    snapshot = {f: f.read_bytes() for f in a.root.rglob("*.prvc")}
    listed, recipients = a.ls(), a.recipients()
    with pytest.raises(ArchiveError, match=r"^the --key opens no encrypted group of the photos 'family' may open: "
                                           rf"key {stranger_id} is not a recipient of them here; .*\(nothing changed\)$"):
        a.revoke([stranger_key], "family", keys_dir=keys)
    with pytest.raises(ArchiveError, match="opens no encrypted group of the photos 'admin' may open"):
        a.rotate([stranger_key], "admin", "family2026", keys_dir=keys)
    assert {f: f.read_bytes() for f in a.root.rglob("*.prvc")} == snapshot
    assert a.ls() == listed and a.recipients() == recipients and a.audit_log() == []
    cat = Catalogue(a.root / ".privcodec/catalogue.sqlite")
    assert cat.revoked() == {}
    cat.close()
    assert a.add([_small_photos(tmp_path / "2020", ["c.png"])], policy, keys_dir=keys, workers=1).ok   # family too
    r = CliRunner().invoke(cli, ["archive", "revoke", str(a.root), "--key", str(stranger_key), "--recipient", "family",
                                 "--keys-dir", str(keys), "--workers", "1"])
    assert r.exit_code == 1 and isinstance(r.exception, ArchiveError) and "failed" not in r.output  # one Error: line


def test_a_revoke_that_re_keys_some_photos_and_fails_others_records_what_happened_file_by_file(tmp_path, keys):
    """admin opens 2019/a but not 2019/b: a is re-keyed, b fails and stays open to family, as the
    access list and the audit row say; family is revoked for new photos (run it again with a key
    that opens b)."""
    a = Archive.init(tmp_path / "arc")
    assert a.add([_small_photos(tmp_path / "2019", ["a.png"])], _family_policy(tmp_path, "admin", "family"),
                 keys_dir=keys, workers=1).ok
    assert a.add([_small_photos(tmp_path / "2019", ["b.png"])], _family_policy(tmp_path, "bob", "family"),
                 keys_dir=keys, workers=1).ok
    report = a.revoke([_key(keys, "admin")], "family", keys_dir=keys)
    assert report.done == ["2019/a.png.prvc"] and [p for p, _ in report.failed] == ["2019/b.png.prvc"]
    assert _opens(a.root / "2019/a.png.prvc", _key(keys, "family")) == []
    assert _opens(a.root / "2019/b.png.prvc", _key(keys, "family")) != []
    assert [f["path"] for f in a.ls(recipient="family")] == ["2019/b.png.prvc"]
    admin = privcodec.keys.load_identity(_key(keys, "admin")).key_id
    assert [(e["action"], e["files"], e["detail"]) for e in a.audit_log()] == [
        ("revoke", 1, f"by {admin}; 1 file(s) failed, still open to the revoked key")]
    with pytest.raises(ArchiveError, match="recipient 'family' was revoked"):
        a.add([_small_photos(tmp_path / "2020", ["c.png"])], _family_policy(tmp_path, "admin", "family"),
              keys_dir=keys, workers=1)
    assert a.revoke([_key(keys, "bob")], "family", keys_dir=keys).ok       # the rest, with a key that opens it
    assert a.ls(recipient="family") == []


def test_a_grant_with_a_key_that_opens_nothing_fails_and_lifts_no_revoke(tmp_path, keys):
    """As the single-file grant: a key that opens no group (of --recipient-of's) is an error, with no
    audit row, no new recipient and the earlier revoke in place; so is a grant whose files all failed."""
    from click.testing import CliRunner

    from privcodec.cli import cli

    keygen("stranger", tmp_path / "elsewhere", "symmetric")
    stranger = tmp_path / "elsewhere/stranger.key"
    policy = _family_policy(tmp_path, "admin", "family")
    a = Archive.init(tmp_path / "arc")
    assert a.add([_small_photos(tmp_path / "2019", ["a.png"])], policy, keys_dir=keys, workers=1).ok
    assert a.revoke([_key(keys, "admin")], "family", keys_dir=keys).ok
    recipients = a.recipients()
    with pytest.raises(ArchiveError, match=r"^the key opens no encrypted group in this archive: key [0-9a-f]{16} is "
                                           r"not a recipient here \(nothing changed\)$"):
        a.grant(stranger, "family", keys_dir=keys)
    with pytest.raises(ArchiveError, match="opens none of the encrypted groups 'admin' may open"):
        a.grant(stranger, "alice", recipient_of="admin", keys_dir=keys)
    with pytest.raises(ArchiveError, match="opens none of the encrypted groups 'family' may open"):
        a.grant(_key(keys, "admin"), "alice", recipient_of="family", keys_dir=keys)   # family opens nothing now
    r = CliRunner().invoke(cli, ["archive", "grant", str(a.root), "--key", str(stranger), "--to", "family",
                                 "--keys-dir", str(keys)])
    assert r.exit_code == 1 and isinstance(r.exception, ArchiveError) and "granted" not in r.output
    # the key opens the file by the catalogue, but the file was changed behind the archive's back
    member = a.root / "2019/a.png.prvc"
    member.write_bytes(privcodec.grant(member.read_bytes(), _key(keys, "admin"), "bob", keys_dir=keys))
    report = a.grant(_key(keys, "admin"), "family", keys_dir=keys)
    assert not report.ok and "changed since it was catalogued" in report.failed[0][1]
    assert a.recipients() == recipients and [e["action"] for e in a.audit_log()] == ["revoke"]
    with pytest.raises(ArchiveError, match="recipient 'family' was revoked"):
        a.add([_small_photos(tmp_path / "2020", ["b.png"])], policy, keys_dir=keys, workers=1)


def test_verify_with_a_key_the_archive_does_not_know_says_so(tmp_path, keys):
    """It is checked all the same (it must open nothing, and opening something is a problem), but a
    key the catalogue never listed is most likely the wrong --key: a warning names it.  A revoked
    key is the catalogue's, and checking it opens nothing is what verify after a revoke is for."""
    from click.testing import CliRunner

    from privcodec.cli import cli

    keygen("stranger", tmp_path / "elsewhere", "symmetric")
    stranger = tmp_path / "elsewhere/stranger.key"
    stranger_id = privcodec.keys.load_identity(stranger).key_id
    a = Archive.init(tmp_path / "arc")
    assert a.add([_small_photos(tmp_path / "2019", ["a.png"])], _family_policy(tmp_path, "admin", "family"),
                 keys_dir=keys, workers=1).ok
    report = a.verify([stranger, _key(keys, "admin")])
    assert report.ok and report.warnings == [(f"key {stranger_id}", "not a recipient of this archive (the catalogue "
                                                                     "knows no such key): checked only that it opens "
                                                                     "no group")]
    assert a.revoke([_key(keys, "admin")], "family", keys_dir=keys).ok
    report = a.verify([_key(keys, "family"), _key(keys, "admin")])
    assert report.ok and report.warnings == []
    r = CliRunner().invoke(cli, ["archive", "verify", str(a.root), "--key", str(stranger), "--workers", "1"])
    assert r.exit_code == 0 and f"warning: key {stranger_id}: not a recipient of this archive" in r.stderr
    assert r.stdout.strip().splitlines()[-1] == "no problems: 1 file(s) checked"
    r = CliRunner().invoke(cli, ["archive", "verify", str(a.root), "--key", str(stranger), "--json", "--workers", "1"])
    shown = json.loads(r.stdout)
    assert r.exit_code == 0 and shown["ok"] and shown["warnings"][0]["path"] == f"key {stranger_id}"


def test_revoke_gives_fresh_content_keys(filled, keys):
    """The revoked recipient may have kept the old content key: the new ciphertext must not open with it."""
    from privcodec.container import open_container

    path = filled.root / "holiday/portrait.jpg.prvc"
    before = open_container(path.read_bytes())
    old_keys = {ch.index: ck for ch, ck, _, _ in before._open([privcodec.keys.load_identity(_key(keys, "admin"))])}
    assert filled.revoke([_key(keys, "admin")], "alice", keys_dir=keys).ok
    after = open_container(path.read_bytes())
    new_keys = {ch.index: ck for ch, ck, _, _ in after._open([privcodec.keys.load_identity(_key(keys, "admin"))])}
    assert set(old_keys) == set(new_keys) and all(old_keys[i] != new_keys[i] for i in old_keys)
    assert after.file_id == before.file_id and after.core_hash != before.core_hash


def test_revoke_needs_keys_that_open_whole_files_and_changes_nothing_otherwise(tmp_path, photos, keys):
    """A key that opens some of each file's groups (bob: the background, not the face) fails every
    file, and a run that re-keyed no file leaves the catalogue as it was: no revoke recorded."""
    p = tmp_path / "two.toml"
    p.write_text('[[rule]]\nmatch = ["face"]\naction = "encrypt"\nrecipients = ["admin", "family"]\n\n'
                 '[[rule]]\nmatch = ["background"]\naction = "encrypt"\nrecipients = ["admin", "bob"]\n')
    a = Archive.init(tmp_path / "arc")
    assert a.add([photos / "portrait.jpg"], p, keys_dir=keys, workers=1).ok
    snapshot = {f: f.read_bytes() for f in a.root.rglob("*.prvc")}
    report = a.revoke([_key(keys, "bob")], "family", keys_dir=keys)
    assert not report.ok and [m for _, m in report.failed] == [
        "re-keying needs keys that open every protected chunk of the file (1 of 2 opened)"]
    assert {f: f.read_bytes() for f in a.root.rglob("*.prvc")} == snapshot
    assert len(a.ls(recipient="family")) == 1 and a.audit_log() == []
    assert a.add([_small_photos(tmp_path / "2020", ["b.png"])], p, keys_dir=keys, workers=1).ok   # not revoked


def test_revoking_the_only_recipient_is_refused(tmp_path, photos, keys):
    p = tmp_path / "solo.toml"
    p.write_text('[[rule]]\nmatch = ["face"]\naction = "encrypt"\nrecipients = ["admin"]\n[default]\naction = "public"\n')
    a = Archive.init(tmp_path / "arc")
    a.add([photos / "portrait.jpg"], p, keys_dir=keys, workers=1)
    report = a.revoke([_key(keys, "family")], "admin", keys_dir=keys)
    assert not report.ok and "only recipient" in report.failed[0][1]
    assert _opens(a.root / "portrait.jpg.prvc", _key(keys, "admin")) != []


def test_the_revoked_key_cannot_be_the_key_that_checks_the_revocation(filled, keys):
    """After a revoke the revoked key opens nothing, so it cannot vouch for the new files: refused
    up front (it was one misleading per-file failure each); beside another key it is simply not used."""
    snapshot = {p: p.read_bytes() for p in filled.root.rglob("*.prvc")}
    with pytest.raises(PrivcodecError, match="the key being revoked"):
        filled.revoke([_key(keys, "family")], "family", keys_dir=keys)
    assert {p: p.read_bytes() for p in filled.root.rglob("*.prvc")} == snapshot
    report = filled.revoke([_key(keys, "family"), _key(keys, "admin")], "family", keys_dir=keys)
    assert report.ok and len(report.done) == 3
    assert all(_opens(f, _key(keys, "family")) == [] for f in filled.root.rglob("*.prvc"))


def test_export_to_somewhere_that_cannot_be_a_folder_is_one_error(filled, tmp_path):
    (tmp_path / "a-file").write_text("mine")
    for where in (tmp_path / "a-file", tmp_path / "a-file" / "below"):
        with pytest.raises(ArchiveError, match="not a folder|cannot create the export folder"):
            filled.export(where)
    assert (tmp_path / "a-file").read_text() == "mine"


def test_a_catalogue_that_is_not_privcodecs_is_a_clean_error(filled):
    import sqlite3

    catalogue = filled.root / ".privcodec" / "catalogue.sqlite"
    catalogue.write_bytes(b"")                                    # emptied
    with pytest.raises(ArchiveError, match="not a privcodec catalogue"):
        filled.ls()
    catalogue.unlink()
    db = sqlite3.connect(catalogue)                               # another program's database, same schema number
    db.executescript("CREATE TABLE meta (key TEXT); PRAGMA user_version = 1;")
    db.close()
    with pytest.raises(ArchiveError, match="not a privcodec catalogue: no table "):
        filled.ls()


def test_a_scheduler_address_that_is_not_one_is_a_clean_error(tmp_path, photos, keys, policy):
    pytest.importorskip("distributed")
    a = Archive.init(tmp_path / "arc")
    for address in ("garbage", "tcp://", "tcp://host:notaport", "foo://h:1"):
        with pytest.raises(PrivcodecError, match="--scheduler: bad address"):
            a.add([photos / "portrait.jpg"], policy, keys_dir=keys, scheduler=address)
    assert a.ls() == []


def test_rotate(filled, keys):
    portrait = filled.root / "holiday/portrait.jpg.prvc"
    had = _opens(portrait, _key(keys, "family"))
    report = filled.rotate([_key(keys, "admin")], "family", "bob", keys_dir=keys)
    assert report.ok and len(report.done) == 3
    assert _opens(portrait, _key(keys, "family")) == []
    assert _opens(portrait, _key(keys, "bob")) == had
    assert filled.ls(recipient="family") == [] and len(filled.ls(recipient="bob")) == 3
    assert filled.audit_log()[-1]["action"] == "rotate"
    assert filled.verify([_key(keys, n) for n in ("admin", "family", "alice", "bob")]).ok


def test_add_never_encrypts_new_photos_for_a_key_that_was_rotated_out_or_revoked(tmp_path, keys):
    keygen("family2026", keys, "symmetric")
    old_policy, new_policy = _family_policy(tmp_path, "admin", "family"), _family_policy(tmp_path, "admin", "family2026")
    a = Archive.init(tmp_path / "arc")
    assert a.add([_small_photos(tmp_path / "2019", ["a.png"])], old_policy, keys_dir=keys, workers=1).ok
    assert a.rotate([_key(keys, "admin")], "family", "family2026", keys_dir=keys).ok
    later = _small_photos(tmp_path / "2020", ["b.png", "c.png"])
    with pytest.raises(ArchiveError, match=r"recipient 'family' was rotated to 'family2026' \(archive rotate\): "
                                           r"update the policy"):
        a.add([later], old_policy, keys_dir=keys, workers=1)
    assert [f["path"] for f in a.ls()] == ["2019/a.png.prvc"] and not (a.root / "2020").exists()   # nothing written
    assert a.add([later], new_policy, keys_dir=keys, workers=1).ok
    assert _opens(a.root / "2020/b.png.prvc", _key(keys, "family2026")) != []
    assert _opens(a.root / "2020/b.png.prvc", _key(keys, "family")) == []

    assert a.revoke([_key(keys, "admin")], "family2026", keys_dir=keys).ok
    more = _small_photos(tmp_path / "2021", ["d.png"])
    with pytest.raises(ArchiveError, match=r"recipient 'family2026' was revoked \(archive revoke\)"):
        a.add([more], new_policy, keys_dir=keys, workers=1)
    assert a.grant(_key(keys, "admin"), "family2026", keys_dir=keys).ok     # given access again, on purpose
    assert a.add([more], new_policy, keys_dir=keys, workers=1).ok


def test_add_refusing_a_rotated_key_names_the_key_it_was_rotated_to_in_the_end(tmp_path, keys):
    """family -> family2026 -> family3: a policy naming either old key is pointed at family3, the
    current one, not at a key that was itself rotated out (or revoked since)."""
    import sqlite3

    keygen("family2026", keys, "symmetric")
    keygen("family3", keys, "symmetric")
    admin = [_key(keys, "admin")]
    a = Archive.init(tmp_path / "arc")
    assert a.add([_small_photos(tmp_path / "2019", ["a.png"])], _family_policy(tmp_path, "admin", "family"),
                 keys_dir=keys, workers=1).ok
    assert a.rotate(admin, "family", "family2026", keys_dir=keys).ok
    assert a.rotate(admin, "family2026", "family3", keys_dir=keys).ok
    later = _small_photos(tmp_path / "2020", ["b.png"])
    for old, via in (("family", " (by way of 'family2026')"), ("family2026", "")):
        with pytest.raises(ArchiveError) as refused:
            a.add([later], _family_policy(tmp_path, "admin", old), keys_dir=keys, workers=1)
        assert f"recipient '{old}' was rotated to 'family3'{via} (archive rotate): update the policy" in str(refused.value)
    assert a.add([later], _family_policy(tmp_path, "admin", "family3"), keys_dir=keys, workers=1).ok

    assert a.revoke(admin, "family3", keys_dir=keys).ok
    with pytest.raises(ArchiveError, match=r"recipient 'family' was rotated to 'family3' \(by way of 'family2026'\), "
                                           r"which was revoked since \(archive revoke\): take it out of the policy"):
        a.add([later], _family_policy(tmp_path, "admin", "family"), keys_dir=keys, workers=1)

    ids = {n: privcodec.keys.load_recipient(n, keys).key_id for n in ("family", "family3")}
    db = sqlite3.connect(a.root / ".privcodec/catalogue.sqlite")          # a loop (by hand): never followed forever
    db.execute("UPDATE recipients SET replaced_by = ? WHERE key_id = ?", (ids["family"], ids["family3"]))
    db.commit()
    db.close()
    with pytest.raises(ArchiveError, match=r"recipient 'family' was rotated out \(archive rotate; its rotations go "
                                           r"round in a loop: family, family2026, family3, family\): take it out"):
        a.add([later], _family_policy(tmp_path, "admin", "family"), keys_dir=keys, workers=1)
    assert [f["path"] for f in a.ls()] == ["2019/a.png.prvc", "2020/b.png.prvc"]


def test_a_catalogue_of_schema_1_stays_readable_and_its_first_writer_remembers_earlier_revokes(tmp_path, keys):
    import sqlite3

    a = Archive.init(tmp_path / "arc")
    policy = _family_policy(tmp_path, "admin", "family")
    assert a.add([_small_photos(tmp_path / "2019", ["a.png"])], policy, keys_dir=keys, workers=1).ok
    assert a.revoke([_key(keys, "admin")], "family", keys_dir=keys).ok
    db = sqlite3.connect(a.root / ".privcodec/catalogue.sqlite")      # as privcodec wrote it before
    db.executescript("ALTER TABLE recipients DROP COLUMN revoked; ALTER TABLE recipients DROP COLUMN replaced_by; "
                     "UPDATE meta SET value = '1' WHERE key = 'schema'; PRAGMA user_version = 1;")
    db.close()
    assert len(a.ls()) == 1 and a.verify().ok and [e["action"] for e in a.audit_log()] == ["revoke"]
    with pytest.raises(ArchiveError, match="recipient 'family' was revoked"):   # replayed from the audit log
        a.add([_small_photos(tmp_path / "2020", ["b.png"])], policy, keys_dir=keys, workers=1)
    db = sqlite3.connect(a.root / ".privcodec/catalogue.sqlite")
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    db.close()


def test_the_schema_2_upgrade_replays_revokes_rotations_and_grants_in_order(tmp_path, keys):
    """A schema-1 catalogue knows who was revoked only from its audit log: a revoke revokes, a
    rotate revokes the old key (replaced by the new one) and lifts any revocation of the new one,
    a grant lifts its recipient's."""
    import sqlite3

    from privcodec.archive.catalogue import Catalogue

    keygen("carol", keys, "symmetric")
    admin = [_key(keys, "admin")]
    policy = _family_policy(tmp_path, "admin", "family", "alice", "carol", "bob")
    a = Archive.init(tmp_path / "arc")
    assert a.add([_small_photos(tmp_path / "2019", ["a.png"])], _family_policy(tmp_path, "admin", "family", "alice",
                                                                             "carol"), keys_dir=keys, workers=1).ok
    assert a.revoke(admin, "alice", keys_dir=keys).ok
    assert a.grant(admin[0], "alice", keys_dir=keys).ok              # alice: given access again
    assert a.grant(admin[0], "bob", keys_dir=keys).ok
    assert a.revoke(admin, "bob", keys_dir=keys).ok
    assert a.rotate(admin, "family", "bob", keys_dir=keys).ok        # family -> bob; bob: not revoked now
    assert a.revoke(admin, "carol", keys_dir=keys).ok                # carol: revoked
    catalogue = a.root / ".privcodec/catalogue.sqlite"
    db = sqlite3.connect(catalogue)                                   # as privcodec wrote it before
    db.executescript("ALTER TABLE recipients DROP COLUMN revoked; ALTER TABLE recipients DROP COLUMN replaced_by; "
                     "UPDATE meta SET value = '1' WHERE key = 'schema'; PRAGMA user_version = 1;")
    db.close()
    assert [e["action"] for e in a.audit_log()] == ["revoke", "grant", "grant", "revoke", "rotate", "revoke"]
    with pytest.raises(ArchiveError) as refused:                      # the first writer upgrades it
        a.add([_small_photos(tmp_path / "2020", ["b.png"])], policy, keys_dir=keys, workers=1)
    assert str(refused.value) == (f"{policy}: recipient 'family' was rotated to 'bob' (archive rotate): update the "
                                  "policy; recipient 'carol' was revoked (archive revoke): take it out of the policy "
                                  "(nothing added)")
    ids = {n: privcodec.keys.load_recipient(n, keys).key_id for n in ("family", "bob", "carol")}
    cat = Catalogue(catalogue)
    assert cat.schema_version() == 2 and cat.revoked() == {ids["family"]: ids["bob"], ids["carol"]: None}
    cat.close()


def test_verify_catches_a_changed_byte_a_deleted_file_and_an_unknown_file(filled):
    assert filled.verify().ok
    changed = filled.root / "holiday/mirror.png.prvc"
    data = bytearray(changed.read_bytes())
    data[len(data) // 2] ^= 1
    changed.write_bytes(bytes(data))
    (filled.root / "holiday/cat.tif.prvc").unlink()
    (filled.root / "stray.prvc").write_bytes((filled.root / "holiday/portrait.jpg.prvc").read_bytes())
    report = filled.verify()
    problems: dict[str, str] = {}
    for path, msg in report.failed:
        problems[path] = problems.get(path, "") + msg + "; "
    assert not report.ok
    assert "changed" in problems["holiday/mirror.png.prvc"]
    assert "missing" in problems["holiday/cat.tif.prvc"]
    assert "unknown" in problems["stray.prvc"]
    assert sorted(report.done) == ["holiday/day2/coffee.jpg.prvc", "holiday/day2/small.webp.prvc", "holiday/portrait.jpg.prvc"]


def test_verify_prints_every_problem_it_counts_and_counts_files_once(tmp_path, keys, monkeypatch):
    """After an interrupted rm, revoke or add, plain verify prints each problem it counts (not only
    --json), counts each file once, and its summary tells problems from files."""
    from click.testing import CliRunner

    from privcodec import imageio
    from privcodec.archive.catalogue import Catalogue
    from privcodec.cli import cli

    policy = _family_policy(tmp_path, "admin", "family")
    a = Archive.init(tmp_path / "arc")
    assert a.add([_small_photos(tmp_path / "2019", ["a.png", "b.png", "c.png", "d.png"])], policy, keys_dir=keys,
                 workers=1).ok

    def verify(files: int, ok: int) -> list[dict]:
        shown = CliRunner().invoke(cli, ["archive", "verify", str(a.root), "--workers", "1"])
        as_json = json.loads(CliRunner().invoke(cli, ["archive", "verify", str(a.root), "--json", "--workers", "1"]).output)
        printed = [line for line in shown.output.splitlines() if line.startswith("problem: ")]
        problems = as_json["problems"]
        assert shown.exit_code == 1 and problems and as_json["checked"] == files
        for p in problems:                                    # every problem counted is printed
            assert any(line.startswith(f"problem: {p['path']}: ") and p["problem"] in line for line in printed), p
        bad = len({p["path"] for p in problems})
        assert shown.output.splitlines()[-1] == f"{len(problems)} problem(s) in {bad} file(s); {ok} file(s) ok"
        return problems

    def stop(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "unlink", stop)                 # rm: rows gone, files still there
    with pytest.raises(KeyboardInterrupt):
        a.remove(["2019/a.png.prvc", "2019/b.png.prvc"])
    monkeypatch.undo()
    assert [(p["path"], p["problem"]) for p in verify(files=4, ok=2)] == [
        ("2019/a.png.prvc", "removed by an interrupted rm (the next add/grant/revoke deletes it)"),
        ("2019/b.png.prvc", "removed by an interrupted rm (the next add/grant/revoke deletes it)")]

    monkeypatch.setattr(imageio, "atomic_write", stop)        # revoke: killed before its first file is replaced
    with pytest.raises(KeyboardInterrupt):
        a.revoke([_key(keys, "admin")], "family", keys_dir=keys, workers=1)
    monkeypatch.undo()
    assert [(p["path"], p["problem"]) for p in verify(files=2, ok=1)] == [
        ("2019/c.png.prvc", "an interrupted write (the next add/grant/revoke completes it)")]

    monkeypatch.setattr(Catalogue, "finish_write", stop)      # revoke: killed after replacing its first file
    with pytest.raises(KeyboardInterrupt):
        a.revoke([_key(keys, "admin")], "family", keys_dir=keys, workers=1)
    monkeypatch.undo()
    assert [(p["path"], p["problem"]) for p in verify(files=2, ok=1)] == [   # not 'changed': it is that write
        ("2019/c.png.prvc", "an interrupted write (the next add/grant/revoke completes it)")]

    monkeypatch.setattr(Catalogue, "finish_write", stop)      # add: the new file written, not catalogued
    with pytest.raises(KeyboardInterrupt):
        a.add([_small_photos(tmp_path / "2020", ["e.png"])], _family_policy(tmp_path, "admin"), keys_dir=keys,
              workers=1)
    monkeypatch.undo()
    assert [(p["path"], p["problem"]) for p in verify(files=3, ok=2)] == [   # once, not also 'unknown'
        ("2020/e.png.prvc", "an interrupted write (the next add/grant/revoke completes it)")]
    assert a.revoke([_key(keys, "admin")], "family", keys_dir=keys, workers=1).ok and a.verify().ok


def test_verify_with_keys_catches_access_that_differs_from_the_catalogue(filled, keys):
    path = filled.root / "holiday/portrait.jpg.prvc"
    # a grant made outside the archive: bob opens a group the access list does not give him
    path.write_bytes(privcodec.grant(path.read_bytes(), _key(keys, "admin"), "bob", keys_dir=keys))
    report = filled.verify([_key(keys, "bob")])
    problems = [msg for p, msg in report.failed if p == "holiday/portrait.jpg.prvc"]
    assert any("changed" in m for m in problems) and any("does not give it" in m for m in problems)


def test_export_writes_ordinary_images(filled, keys, tmp_path):
    out = tmp_path / "out"
    report = filled.export(out, [_key(keys, "alice")])
    assert report.ok and len(report.done) == 5
    img = np.asarray(Image.open(out / "holiday/portrait.jpg.png").convert("RGB"))
    assert np.array_equal(img, privcodec.view(filled.root / "holiday/portrait.jpg.prvc", keys=[_key(keys, "alice")]).pixels)
    assert (out / "holiday/portrait.jpg.png").stat().st_mode & 0o077 == 0     # decrypted: private
    assert filled.export(out, [_key(keys, "alice")]).skipped            # existing images are kept
    link = out / "holiday/portrait.jpg.png"
    link.unlink()
    link.symlink_to(tmp_path / "elsewhere.png")          # --force never writes through a link...
    report = filled.export(out, [_key(keys, "alice")], force=True)
    assert [p for p, _ in report.failed] == ["holiday/portrait.jpg.png"] and len(report.done) == 4   # ...nor stops
    assert not (tmp_path / "elsewhere.png").exists()
    with pytest.raises(ArchiveError):
        filled.export(filled.root / "inside", [])


def test_a_second_writer_waits_for_the_first(filled, photos, keys, policy):
    waited = threading.Event()
    with filled._lock(exclusive=True):
        t = threading.Thread(target=lambda: filled.add([photos], policy, keys_dir=keys, workers=1,
                                                       on_wait=waited.set))
        t.start()
        assert waited.wait(20)      # blocked on the lock, not writing
        assert t.is_alive()
    t.join(120)
    assert not t.is_alive() and filled.verify().ok


def test_a_reader_waits_for_a_writer_and_says_so(filled):
    """ls, log and the recipients list wait behind a writer as verify and export do, and the command
    line says so, with the message the writers print."""
    for read in (filled.ls, filled.audit_log, filled.recipients):
        waited = threading.Event()
        with filled._lock(exclusive=True):
            t = threading.Thread(target=lambda: read(on_wait=waited.set))
            t.start()
            assert waited.wait(20) and t.is_alive()        # blocked on the lock, and said so
        t.join(60)
        assert not t.is_alive()
    env = dict(os.environ, PRIVCODEC_THREADS="1")
    with filled._lock(exclusive=True):
        procs = [subprocess.Popen([sys.executable, "-m", "privcodec", "archive", command, str(filled.root)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for command in ("ls", "log")]
        for p in procs:                                    # said while the writer still holds the archive
            assert p.stderr.readline() == "waiting for another privcodec command on this archive to finish...\n"
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and "holiday/portrait.jpg.prvc" in outs[0][0]


def test_two_concurrent_adds_leave_a_consistent_archive(tmp_path, photos, keys, policy):
    arc = tmp_path / "arc"
    Archive.init(arc)
    cmd = [sys.executable, "-m", "privcodec", "archive", "add", str(arc), str(photos), "--policy", str(policy),
           "--keys-dir", str(keys), "--workers", "1"]
    env = dict(os.environ, PRIVCODEC_THREADS="1")
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    a = Archive(arc)
    assert len(a.ls()) == 5 and a.verify().ok
    summaries = sorted(o[0].strip().splitlines()[-1] for o in outs)
    assert summaries == ["0 added, 5 already in the archive", "5 added"]


def _comparable(a: Archive, keys) -> dict:
    out = {}
    for f in a.ls():
        pixels = privcodec.view(a.root / f["path"], keys=[_key(keys, "admin")]).pixels
        out[f["path"]] = ({k: f[k] for k in ("size", "width", "height", "codec", "public", "protected", "redacted",
                                              "recipients")}, pixels.tobytes())
    return out


def test_a_process_pool_and_a_dask_cluster_give_the_local_result(tmp_path, photos, keys, policy):
    distributed = pytest.importorskip("distributed")
    local = Archive.init(tmp_path / "local")
    assert local.add([photos], policy, keys_dir=keys, workers=1).ok
    pool = Archive.init(tmp_path / "pool")
    assert pool.add([photos], policy, keys_dir=keys, workers=2).ok
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        dask = Archive.init(tmp_path / "dask")
        assert dask.add([photos], policy, keys_dir=keys, scheduler=client).ok
        assert dask.revoke([_key(keys, "admin")], "alice", keys_dir=keys, scheduler=client).ok
        assert dask.verify([_key(keys, "admin"), _key(keys, "alice")], scheduler=client).ok
    assert local.revoke([_key(keys, "admin")], "alice", keys_dir=keys).ok
    assert _comparable(pool, keys).keys() == _comparable(local, keys).keys()
    assert _comparable(dask, keys) == _comparable(local, keys)


def test_cli_archive_end_to_end(tmp_path, photos, keys, policy):
    from click.testing import CliRunner

    from privcodec.cli import cli

    run = CliRunner().invoke
    arc = str(tmp_path / "arc")
    assert run(cli, ["archive", "init", arc]).exit_code == 0
    assert run(cli, ["archive", "init", arc]).exit_code != 0
    r = run(cli, ["archive", "add", arc, str(photos), "--policy", str(policy), "--keys-dir", str(keys), "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines()[-1] == "5 added"
    r = run(cli, ["archive", "ls", arc, "--recipient", "alice", "--json"])
    assert r.exit_code == 0 and len(json.loads(r.output)) == 3
    r = run(cli, ["archive", "revoke", arc, "--key", str(_key(keys, "admin")), "--recipient", "alice",
                  "--keys-dir", str(keys), "--workers", "1"])
    assert r.exit_code == 0, r.output
    r = run(cli, ["archive", "verify", arc, "--key", str(_key(keys, "alice")), "--json", "--workers", "1"])
    assert r.exit_code == 0 and json.loads(r.output)["ok"]
    r = run(cli, ["archive", "log", arc])
    assert "revoke" in r.output
    (tmp_path / "arc" / "holiday" / "cat.tif.prvc").unlink()
    r = run(cli, ["archive", "verify", arc, "--workers", "1"])
    assert r.exit_code == 1 and "missing" in r.output
    (tmp_path / "arc" / "holiday" / "copied-in.prvc").write_bytes((tmp_path / "arc/holiday/portrait.jpg.prvc").read_bytes())
    r = run(cli, ["archive", "revoke", arc, "--key", str(_key(keys, "admin")), "--recipient", "family",
                  "--keys-dir", str(keys), "--workers", "1"])
    assert r.exit_code == 1 and "not re-keyed" in r.output and "holiday/copied-in.prvc" in r.output


def test_a_name_given_to_two_keys_must_be_disambiguated_by_key_id(filled, keys, tmp_path):
    new = tmp_path / "newkeys"
    keygen("family", new, "symmetric")                       # a new family key, same name
    assert filled.rotate([_key(keys, "admin")], "family", new / "family.key", keys_dir=keys).ok
    with pytest.raises(ArchiveError, match="names several keys"):
        filled.ls(recipient="family")
    new_id = privcodec.keys.load_identity(new / "family.key").key_id
    assert len(filled.ls(recipient=new_id)) == 3


def test_grant_leaves_the_kept_metadata_to_the_policy(tmp_path, photos, keys):
    p = tmp_path / "meta.toml"
    p.write_text('[[rule]]\nmatch = ["face"]\naction = "encrypt"\nrecipients = ["admin", "family"]\n'
                 '[default]\naction = "public"\n[metadata]\nrecipients = ["admin"]\n')
    src = tmp_path / "exif"
    src.mkdir()
    img = Image.open(photos / "portrait.jpg")
    exif = Image.Exif()
    exif[0x0132] = "2019:07:14 10:00:00"          # DateTime
    img.save(src / "dated.jpg", exif=exif)
    a = Archive.init(tmp_path / "arc")
    assert a.add([src], p, keys_dir=keys, workers=1).ok
    path = a.root / "exif/dated.jpg.prvc"
    assert privcodec.view(path, keys=[_key(keys, "admin")]).metadata is not None
    assert a.grant(_key(keys, "admin"), "bob", keys_dir=keys).ok
    assert privcodec.view(path, keys=[_key(keys, "bob")]).metadata is None      # faces, not where and when
    assert a.grant(_key(keys, "admin"), "alice", keys_dir=keys, metadata=True).ok
    assert privcodec.view(path, keys=[_key(keys, "alice")]).metadata is not None
    assert a.verify([_key(keys, n) for n in ("admin", "bob", "alice")]).ok


def test_a_tampered_catalogue_cannot_redirect_reads_writes_or_keys(filled, keys, tmp_path):
    import sqlite3

    db = sqlite3.connect(filled.root / ".privcodec/catalogue.sqlite")
    db.execute("UPDATE recipients SET public = ? WHERE name = 'alice'",      # someone else's public key
               (privcodec.keys.load_recipient("bob", keys).key.hex(),))
    db.commit()
    report = filled.revoke([_key(keys, "admin")], "family", keys_dir=keys)
    assert not report.ok and all("cannot re-wrap" in m for _, m in report.failed)
    for f in filled.root.rglob("*.prvc"):
        assert _opens(f, _key(keys, "bob")) == []
    db.execute("UPDATE files SET path = '../../escape.prvc' WHERE path = 'holiday/cat.tif.prvc'")
    db.commit()
    db.close()
    with pytest.raises(ArchiveError, match="not a plain relative path"):
        filled.export(tmp_path / "out", [])


def test_revoking_a_key_the_archive_does_not_know_is_an_error(filled, keys):
    with pytest.raises(ArchiveError, match="no recipient"):
        filled.revoke([_key(keys, "admin")], "0123456789abcdef", keys_dir=keys)


def test_removing_a_file_and_adding_it_back(filled, photos, keys, policy):
    report = filled.remove(["holiday/cat.tif.prvc", "holiday/nope.prvc"])
    assert report.done == ["holiday/cat.tif.prvc"] and report.failed[0][0] == "holiday/nope.prvc"
    assert not (filled.root / "holiday/cat.tif.prvc").exists() and len(filled.ls()) == 4
    assert filled.verify().ok and filled.audit_log()[-1]["action"] == "remove"
    assert filled.add([photos], policy, keys_dir=keys, workers=1).done == [str(photos / "cat.tif")]


def test_rm_takes_a_folder_of_members_and_a_path_through_the_archive_folder_and_nothing_outside(tmp_path, keys,
                                                                                                 monkeypatch):
    from click.testing import CliRunner

    from privcodec.cli import cli

    policy = _family_policy(tmp_path, "admin", "family")
    src = tmp_path / "2019"
    _small_photos(src / "jan", ["a.png", "b.png"])
    _small_photos(src / "jan" / "week1", ["c.png"])
    _small_photos(src / "janx", ["d.png"])
    _small_photos(src / "feb", ["e.png", "f.png", "g.png"])
    a = Archive.init(tmp_path / "arc")
    assert a.add([src], policy, keys_dir=keys, workers=1).ok
    monkeypatch.chdir(tmp_path)

    r = CliRunner().invoke(cli, ["archive", "rm", "arc", "2019/jan/"])          # a folder: everything under it
    assert r.exit_code == 0 and r.output.splitlines() == ["2019/jan: 3 file(s) under it", "3 removed"]
    assert [f["path"] for f in a.ls()] == ["2019/feb/e.png.prvc", "2019/feb/f.png.prvc", "2019/feb/g.png.prvc",
                                           "2019/janx/d.png.prvc"]             # not 2019/janx
    assert a.audit_log()[-1]["detail"] == "2019/jan/a.png.prvc, 2019/jan/b.png.prvc, 2019/jan/week1/c.png.prvc"

    report = a.remove(["arc/2019/feb/e.png.prvc",                             # through the archive folder,
                       str(tmp_path / "arc/2019/feb/f.png.prvc"),             # absolute,
                       "arc/2019/feb/e.png.prvc", "2019/feb/e.png.prvc",      # the same file again
                       "arc", ".", "arc/.privcodec/catalogue.sqlite",        # the archive itself, its catalogue
                       "arc/../2019/janx/d.png",                              # outside: the original photo
                       str(src / "janx")])
    assert report.done == ["2019/feb/e.png.prvc", "2019/feb/f.png.prvc"]
    assert report.failed == [
        ("arc", "the archive folder itself: give the files or folders in it to take out"),
        (".", "not in the archive"),
        ("arc/.privcodec/catalogue.sqlite", "not in the archive"),
        ("arc/../2019/janx/d.png", "not in the archive"),
        (str(src / "janx"), "not in the archive")]
    assert [f["path"] for f in a.ls()] == ["2019/feb/g.png.prvc", "2019/janx/d.png.prvc"] and a.verify().ok
    assert (src / "janx/d.png").exists() and (a.root / ".privcodec/catalogue.sqlite").exists()


@pytest.mark.parametrize("stopped", ["before deleting its first file", "after deleting its first file"])
def test_an_rm_stopped_half_way_is_finished_by_the_next_writer_and_never_undone(tmp_path, keys, monkeypatch,
                                                                                 stopped):
    policy = _family_policy(tmp_path, "admin", "family")
    a = Archive.init(tmp_path / "arc")
    assert a.add([_small_photos(tmp_path / "2019", ["a.png", "b.png", "c.png"])], policy, keys_dir=keys, workers=1).ok
    real_unlink = Path.unlink

    def crash(self, *args, **kwargs):
        if self.suffix == ".prvc":
            if stopped.startswith("after"):
                real_unlink(self, *args, **kwargs)
            raise KeyboardInterrupt
        real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", crash)
    with pytest.raises(KeyboardInterrupt):
        a.remove(["2019/a.png.prvc", "2019/b.png.prvc"])
    monkeypatch.undo()
    assert [f["path"] for f in a.ls()] == ["2019/c.png.prvc"]          # out of the archive already
    expected = {"action": "remove", "files": 2, "detail": "2019/a.png.prvc, 2019/b.png.prvc; interrupted"}
    assert [{k: e[k] for k in expected} for e in a.audit_log()] == [expected]
    report = a.verify()
    assert not report.ok and {p for p, _ in report.failed} <= {"2019/a.png.prvc", "2019/b.png.prvc"}
    assert all("interrupted rm" in why for _, why in report.failed)
    assert a.add([_small_photos(tmp_path / "2020", ["d.png"])], policy, keys_dir=keys, workers=1).ok   # a writer
    assert sorted(p.name for p in a.root.rglob("*.prvc")) == ["c.png.prvc", "d.png.prvc"]
    assert [f["path"] for f in a.ls()] == ["2019/c.png.prvc", "2020/d.png.prvc"] and a.verify().ok
    assert [{k: e[k] for k in expected} for e in a.audit_log()] == [expected]


def test_adding_again_puts_back_a_member_whose_file_was_deleted_under_its_catalogued_path(tmp_path, keys):
    policy = _family_policy(tmp_path, "admin", "family")
    src = _small_photos(tmp_path / "2019", ["a.png", "b.png"])
    a = Archive.init(tmp_path / "arc")
    assert a.add([src], policy, keys_dir=keys, workers=1).ok
    assert a.grant(_key(keys, "admin"), "bob", keys_dir=keys).ok
    (a.root / "2019/a.png.prvc").unlink()
    assert not a.verify().ok                                    # missing
    report = a.add([src], policy, keys_dir=keys, workers=1)
    assert report.ok and report.done == [str(src / "a.png")] and report.skipped == [str(src / "b.png")]
    assert a.verify([_key(keys, n) for n in ("admin", "family")]).ok
    assert _opens(a.root / "2019/a.png.prvc", _key(keys, "family")) != []
    assert report.warnings == [("2019/a.png.prvc", "restored for the policy's recipients: no longer open to bob "
                                                   "(archive grant gives it back)")]
    (a.root / "2019/b.png.prvc").unlink()                       # the same photo, found in another folder
    copy = _small_photos(tmp_path / "copy", [])
    (copy / "renamed.png").write_bytes((src / "b.png").read_bytes())
    assert a.add([copy], policy, keys_dir=keys, workers=1).done == [str(copy / "renamed.png")]
    assert sorted(f["path"] for f in a.ls()) == ["2019/a.png.prvc", "2019/b.png.prvc"] and a.verify().ok


def test_not_an_archive_is_a_clean_error(tmp_path):
    with pytest.raises(ArchiveError, match="not a privcodec archive"):
        Archive(tmp_path)
    (tmp_path / "x").write_text("")
    with pytest.raises(ArchiveError, match="not an empty folder"):
        Archive.init(tmp_path)


def test_the_pool_hands_back_every_task_once_with_a_bounded_window():
    """Results are yielded as they finish and dropped by the runner (it keeps only a window of
    2 x workers tasks in flight), so thousands of results never sit in memory together."""
    from privcodec.archive import runner

    tasks = ["x" * i for i in range(40)]
    out = list(runner.run(len, tasks, workers=2))
    assert sorted(r for _, r in out) == list(range(40)) and all(len(t) == r for t, r in out)


def test_export_gives_every_photo_its_own_name(tmp_path, keys, policy):
    src = tmp_path / "src" / "d"
    src.mkdir(parents=True)
    for i, name in enumerate(["a.jpg", "a.png", "a.png.jpg"]):
        Image.fromarray(np.full((48, 48, 3), 60 * i, np.uint8)).save(src / name)
    arc = Archive.init(tmp_path / "arc")
    assert arc.add([src], policy, keys_dir=keys, workers=1).ok
    report = arc.export(tmp_path / "out", [_key(keys, "admin")], workers=1)
    assert len(set(report.done)) == 3 and len(list((tmp_path / "out").rglob("*.png"))) == 3


def test_each_export_name_depends_on_its_file_alone_and_a_shared_name_is_a_failure(tmp_path, keys):
    policy = _family_policy(tmp_path, "admin", "family")
    src = _small_photos(tmp_path / "dup", ["IMG_1.png", "IMG_1.jpg"])
    arc, out = Archive.init(tmp_path / "arc"), tmp_path / "out"
    assert arc.add([src / "IMG_1.png"], policy, keys_dir=keys, workers=1).ok
    assert arc.export(out, [_key(keys, "admin")], workers=1).done == ["IMG_1.png"]
    assert arc.add([src / "IMG_1.jpg"], policy, keys_dir=keys, workers=1).ok
    report = arc.export(out, [_key(keys, "admin")], workers=1)       # IMG_1.png is there from the first run
    assert report.ok and report.done == ["IMG_1.jpg.png"] and report.skipped == ["IMG_1.png"]
    assert arc.export(tmp_path / "as-jpg", [_key(keys, "admin")], fmt="jpg", workers=1).done == ["IMG_1.jpg",
                                                                                              "IMG_1.png.jpg"]
    for name, member in (("IMG_1.png", "IMG_1.png.prvc"), ("IMG_1.jpg.png", "IMG_1.jpg.prvc")):
        assert np.array_equal(np.asarray(Image.open(out / name).convert("RGB")),
                              privcodec.view(arc.root / member, keys=[_key(keys, "admin")]).pixels)

    (src / "IMG_1.jpg.png").write_bytes((src / "IMG_1.png").read_bytes() + b"\0")   # exports as IMG_1.jpg.png too
    assert arc.add([src / "IMG_1.jpg.png"], policy, keys_dir=keys, workers=1).ok
    report = arc.export(tmp_path / "again", [_key(keys, "admin")], workers=1)
    assert report.done == ["IMG_1.png"] and sorted(p for p, _ in report.failed) == ["IMG_1.jpg.png.prvc",
                                                                                    "IMG_1.jpg.prvc"]
    assert all("its export name IMG_1.jpg.png is also that of" in why for _, why in report.failed)
    assert not (tmp_path / "again" / "IMG_1.jpg.png").exists()


def test_export_tells_names_apart_by_case_where_its_folder_does_and_a_folder_in_the_way_is_a_failure(
        tmp_path, keys, monkeypatch):
    import privcodec.archive as archive_module

    (tmp_path / "Probe").touch()
    if (tmp_path / "probe").exists():
        pytest.skip("the temporary folder ignores case")
    policy = _family_policy(tmp_path, "admin", "family")
    src = _small_photos(tmp_path / "src", ["IMG_1.png", "img_1.png"])
    a = Archive.init(tmp_path / "arc")
    assert a.add([src / "IMG_1.png"], policy, keys_dir=keys, workers=1).ok
    assert a.add([src / "img_1.png"], policy, keys_dir=keys, workers=1).ok
    report = a.export(tmp_path / "out", [_key(keys, "admin")], workers=1)
    assert report.ok and report.done == ["IMG_1.png", "img_1.png"]

    monkeypatch.setattr(archive_module, "_ignores_case", lambda folder: True)    # e.g. a FAT card, macOS
    report = a.export(tmp_path / "card", [_key(keys, "admin")], workers=1)
    assert report.done == [] and [p for p, _ in report.failed] == ["IMG_1.png.prvc", "img_1.png.prvc"]
    assert all(why.endswith("(this folder ignores case: export into one that does not)") for _, why in report.failed)
    monkeypatch.undo()

    (tmp_path / "again" / "IMG_1.png").mkdir(parents=True)
    report = a.export(tmp_path / "again", [_key(keys, "admin")], workers=1)
    assert report.done == ["img_1.png"] and report.skipped == []
    assert report.failed == [("IMG_1.png", "a folder of that name is in the way: not exported")]


def test_a_link_out_of_the_archive_fails_that_photo_alone(tmp_path, keys, policy):
    src = tmp_path / "src"
    (src / "e" / "sub").mkdir(parents=True)
    Image.fromarray(np.full((48, 48, 3), 90, np.uint8)).save(src / "e" / "sub" / "x.png")
    Image.fromarray(np.full((48, 48, 3), 30, np.uint8)).save(src / "ok.png")
    arc = Archive.init(tmp_path / "arc")
    outside = tmp_path / "outside"
    outside.mkdir()
    (arc.root / "src").mkdir()
    (arc.root / "src" / "e").symlink_to(outside)
    report = arc.add([src], policy, keys_dir=keys, workers=1)
    assert [Path(p).name for p, _ in report.failed] == ["x.png"] and len(report.done) == 1
    assert list(outside.iterdir()) == []                     # nothing created through the link
    arc.root.joinpath("src/ok.png.prvc").rename(outside / "ok.png.prvc")
    arc.root.joinpath("src").rename(tmp_path / "moved")      # now the member's folder is a link out
    (arc.root / "src").symlink_to(outside)
    report = arc.remove(["src/ok.png.prvc"])
    assert report.failed and not report.done and (outside / "ok.png.prvc").exists()


def test_add_with_effort_makes_files_that_open_and_refuses_an_effort_it_does_not_have(tmp_path, photos, keys,
                                                                                      policy):
    a = Archive.init(tmp_path / "arc")
    with pytest.raises(PrivcodecError, match="effort"):
        a.add([photos / "day2"], policy, keys_dir=keys, workers=1, effort=3)
    assert not list((tmp_path / "arc").rglob("*.prvc"))
    report = a.add([photos / "day2"], policy, keys_dir=keys, workers=1, effort=1)
    assert report.ok and len(report.done) == 2
    for f in (tmp_path / "arc").rglob("*.prvc"):
        assert privcodec.view(f, keys=[_key(keys, "family")]).pixels.shape[2] == 3


def test_an_archive_written_by_privcodec_before_schema_2_opens_and_keeps_its_revokes(tmp_path):
    """tests/fixtures/archive-schema1: made by privcodec 91f1573 (catalogue schema 1): two photos
    added for fixture-sym and fixture-x25519, then fixture-x25519 revoked."""
    import shutil

    fixtures = Path(__file__).parent / "fixtures"
    keys_dir = fixtures / "keys"
    shutil.copytree(fixtures / "archive-schema1", tmp_path / "arc")
    a = Archive(tmp_path / "arc")
    assert [f["path"] for f in a.ls()] == ["2025/a.png.prvc", "2025/b.png.prvc"]
    assert a.verify([keys_dir / "fixture-sym.key"]).ok
    member = tmp_path / "arc/2025/a.png.prvc"
    assert privcodec.view(member, keys_dir / "fixture-sym.key").missing == []
    with pytest.raises(DecryptionError):
        privcodec.view(member, keys_dir / "fixture-x25519.key")
    both = _family_policy(tmp_path, "fixture-sym", "fixture-x25519")
    with pytest.raises(ArchiveError, match="recipient 'fixture-x25519' was revoked"):
        a.add([_small_photos(tmp_path / "2026", ["c.png"])], both, keys_dir=keys_dir, workers=1)
    report = a.add([tmp_path / "2026"], _family_policy(tmp_path, "fixture-sym"), keys_dir=keys_dir, workers=1)
    assert report.ok and len(a.ls()) == 3 and a.verify([keys_dir / "fixture-sym.key"]).ok
