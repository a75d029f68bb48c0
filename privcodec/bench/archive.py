"""`privcodec bench archive`: archive throughput (photos/s) with 1, 2, … local workers, as a user runs it.

    photos ─▶ fresh archive per worker count ─▶ `privcodec archive add` in a fresh process ─▶ wall, CPU
           ─▶ `archive revoke` (re-keys every file) and `archive verify --key` ─▶ wall

The policy encrypts faces (the face detector runs on every photo) for one symmetric and one X25519
key, with the default backend.  Start-up is included, as a user pays it; the catalogue's size per
file gives the space a large archive's catalogue needs.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from .speed import measure

# revoke and verify rates are per archive file (files without a group for the key are passed over)

POLICY = """[[rule]]
match = ["face"]
action = "encrypt"
recipients = ["admin", "family"]

[default]
action = "public"
"""


def run(photos: Path, workers: list[int], limit: int | None, echo=print) -> list[dict]:
    from ..keys import keygen

    sources = sorted(p for p in Path(photos).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:limit]
    if not sources:
        raise SystemExit(f"no photos in {photos}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "photos"
        src.mkdir()
        for p in sources:
            (src / p.name).symlink_to(p.resolve())
        keygen("admin", tmp / "keys", "symmetric")
        keygen("family", tmp / "keys", "x25519")
        (tmp / "policy.toml").write_text(POLICY)
        cli = [sys.executable, "-m", "privcodec", "--quiet", "archive"]
        for n in workers:
            arc = tmp / f"arc{n}"
            measure(cli + ["init", str(arc)])
            add = measure(cli + ["add", str(arc), str(src), "--policy", str(tmp / "policy.toml"), "--keys-dir",
                                 str(tmp / "keys"), "--workers", str(n)])
            revoke = measure(cli + ["revoke", str(arc), "--key", str(tmp / "keys/admin.key"), "--recipient", "family",
                                    "--keys-dir", str(tmp / "keys"), "--workers", str(n)])
            verify = measure(cli + ["verify", str(arc), "--key", str(tmp / "keys/admin.key"), "--workers", str(n)])
            catalogue = _catalogue_bytes_per_file(arc / ".privcodec/catalogue.sqlite", tmp / f"scale{n}.sqlite")
            rows.append({"workers": n, "photos": len(sources), "add": add, "revoke": revoke, "verify": verify,
                         "catalogue_bytes_per_file": catalogue})
    echo(f"{len(sources)} photos from {photos}; each command in a fresh process (start-up included)")
    echo(f"{'workers':>7}  {'add photos/s':>12}  {'add wall s':>10}  {'add CPU s':>9}  {'revoke files/s':>14}  "
         f"{'verify files/s':>14}  {'catalogue B/file':>16}")
    for r in rows:
        bad = [k for k in ("add", "revoke", "verify") if not r[k]["ok"]]
        echo(f"{r['workers']:>7}  {r['photos'] / r['add']['wall_s']:>12.2f}  {r['add']['wall_s']:>10.1f}  "
             f"{r['add']['cpu_s']:>9.1f}  {r['photos'] / r['revoke']['wall_s']:>14.1f}  "
             f"{r['photos'] / r['verify']['wall_s']:>14.1f}  {r['catalogue_bytes_per_file']:>16.0f}"
             + (f"  FAILED: {', '.join(bad)}: {r[bad[0]]['error']}" if bad else ""))
    best = max(rows, key=lambda r: r["photos"] / r["add"]["wall_s"])
    per_core = best["photos"] / best["add"]["wall_s"] / best["workers"]
    core_hours = 10_000_000 / per_core / 3600
    echo(f"10 M photos: about {core_hours:,.0f} core-hours to add at {per_core:.2f} photos/s per worker "
         f"(e.g. {core_hours / (16 * 20):,.1f} h on 20 Dask machines of 16 cores), a catalogue of about "
         f"{best['catalogue_bytes_per_file'] * 1e7 / 1e9:.1f} GB")
    return rows


def _catalogue_bytes_per_file(source: Path, scratch: Path, copies: int = 20_000) -> float:
    """Catalogue growth per file, from ``copies`` records shaped like the measured ones (same access
    lists and classes, new paths and hashes): a few files fit in the empty tables' pages."""
    import hashlib
    import itertools

    from ..archive.catalogue import Catalogue, FileRecord

    src = Catalogue(source)
    records = [FileRecord.from_row(r) for r in src.files()]
    src.close()
    cat = Catalogue.create(scratch)
    empty = scratch.stat().st_size
    with cat.transaction():
        for i, rec in zip(range(copies), itertools.cycle(records)):
            digest = hashlib.sha256(str(i).encode()).hexdigest()
            cat._put(FileRecord(**{**rec.__dict__, "path": f"{i:08d}/{rec.path}", "source_sha256": digest,
                                   "file_sha256": digest}))
    cat.close()
    return (scratch.stat().st_size - empty) / copies
