"""`privcodec archive …`: the command line of privcodec.archive (a thin layer, as cli.py)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .limits import EFFORT_LEVELS

EFFORT = click.IntRange(min(EFFORT_LEVELS), max(EFFORT_LEVELS))   # --effort of protect and archive add

ARCHIVE = click.argument("archive", type=click.Path(path_type=Path))
KEYS_DIR = click.option("--keys-dir", default="keys", show_default=True, type=click.Path(path_type=Path),
                        help="Folder where recipient names are looked up.")
KEYS = click.option("--key", "keys", multiple=True, type=click.Path(path_type=Path), metavar="FILE",
                    help="Secret key file (repeatable).")


def SCALE_OPTIONS(f):
    f = click.option("--scheduler", metavar="ADDR",
                     help="Run on a Dask distributed cluster (e.g. tcp://host:8786; workers need privcodec and the "
                          "archive on shared storage; use tls:// when keys travel).")(f)
    f = click.option("--workers", type=click.IntRange(min=1),
                     help="Local worker processes (default: the number of cores).")(f)
    return f


class _Reporter:
    """A rich progress bar on a terminal; otherwise one plain line per file (problems on stderr)."""

    def __init__(self, verb: str, arrow: bool = False):
        from . import progress

        self.verb, self.arrow, self.bar, self.task = verb, arrow, None, None
        self.live = progress.enabled()

    def __call__(self, status: str, path: str, detail: str) -> None:
        if status == "start":
            if self.live and int(detail) > 0:
                from rich.console import Console
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

                self.bar = Progress(TextColumn(f"{self.verb}"), BarColumn(), MofNCompleteColumn(),
                                    TimeRemainingColumn(), TextColumn("{task.description}"),
                                    console=Console(stderr=True), transient=True)
                self.bar.start()
                self.task = self.bar.add_task("", total=int(detail))
            return
        if self.bar is not None and status in ("done", "failed", "problem"):
            self.bar.update(self.task, advance=1, description=Path(path).name)
        if status in ("failed", "problem"):
            self._echo(f"{'problem' if status == 'problem' else 'failed'}: {path}: {detail}", err=True)
        elif status == "done" and self.bar is None:
            self._echo(f"{self.verb} {path}" + (f" -> {detail}" if self.arrow else f" ({detail})" if detail else ""))

    def _echo(self, text: str, err: bool = False) -> None:
        if self.bar is not None:
            self.bar.console.print(text, markup=False, highlight=False)
        else:
            click.echo(text, err=err)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _run(verb: str, call, arrow: bool = False):
    reporter = _Reporter(verb, arrow)
    try:
        return call(reporter)
    finally:
        reporter.close()


def _waiting() -> None:
    """Every command, reader or writer, says so when it has to wait for the archive's lock."""
    click.echo("waiting for another privcodec command on this archive to finish...", err=True)


def _waiting_once():
    """_waiting, said once by a command that takes the lock more than once."""
    said = []

    def wait() -> None:
        if not said:
            said.append(True)
            _waiting()
    return wait


def _finish(report, done: str, *, skipped: str = "skipped") -> None:
    parts = [f"{len(report.done)} {done}"]
    if report.skipped:
        parts.append(f"{len(report.skipped)} {skipped}")
    if report.failed:
        parts.append(f"{len(report.failed)} failed")
    for path, w in report.warnings:
        click.echo(f"warning: {path}: {w}", err=True)
    click.echo(", ".join(parts))
    if report.failed:
        sys.exit(1)


@click.group(short_help="Archives of protected photos: add, ls, rm, grant, revoke, rotate, verify, export.")
def archive():
    """An archive is a folder of .prvc files with a catalogue (ARCHIVE/.privcodec), as a restic
    repository is: photos are added in batches, access is granted, revoked and rotated across all
    files, and verify checks everything.

    \b
      privcodec archive init photos.arc
      privcodec archive add photos.arc ~/Pictures --policy policies/faces.toml
      privcodec archive ls photos.arc --recipient family
      privcodec archive revoke photos.arc --key keys/admin.key --recipient family
      privcodec archive verify photos.arc --key keys/admin.key
    """


@archive.command("init", short_help="Create an empty archive.")
@ARCHIVE
def archive_init(archive):
    """Create ARCHIVE (a new or empty folder)."""
    from .archive import Archive

    Archive.init(archive)
    click.echo(f"created archive {archive}")


@archive.command("add", short_help="Protect photos into the archive (resumable).")
@ARCHIVE
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--policy", required=True, type=click.Path(path_type=Path), help="Policy TOML file.")
@KEYS_DIR
@click.option("--codec", "codec_name", type=click.Choice(["avif", "gicodec", "lossless"]), default="avif",
              show_default=True, help="Backend, as for protect.")
@click.option("--quality", default=4.0, show_default=True, type=float, help="As for protect.")
@click.option("--effort", default=0, show_default=True, type=EFFORT, help="As for protect.")
@click.option("--update", is_flag=True,
              help="A photo whose archive path holds a different photo (an edited original) replaces it there, "
                   "for this policy's recipients (without it, such a photo fails).")
@SCALE_OPTIONS
def archive_add(archive, sources, policy, keys_dir, codec_name, quality, effort, update, workers, scheduler):
    """Protect each photo under SOURCES (folders are walked: JPEG, PNG, WebP, TIFF, HEIC) into
    ARCHIVE/<folder>/<relative path>.prvc.  Originals are not touched; photos already in the archive
    (same bytes) are skipped, so an interrupted run is resumed by running it again.  A photo edited
    since it was added fails (its path holds a different photo) unless --update."""
    from .archive import Archive

    a = Archive(archive)
    report = _run("added", lambda p: a.add(sources, policy, keys_dir=keys_dir, codec=codec_name, quality=quality,
                                          effort=effort, workers=workers, scheduler=scheduler, progress=p,
                                          on_wait=_waiting, update=update),
                  arrow=True)
    _finish(report, "added" + (f" ({len(report.updated)} of them replacing an archived version)" if report.updated
                               else ""), skipped="already in the archive")


@archive.command("ls", short_help="List the archive's files.")
@ARCHIVE
@click.option("--recipient", metavar="NAME|KEY_ID", help="Only files with a group this recipient may open.")
@click.option("--class", "klass", metavar="CLASS", help="Only files with a public group of this class.")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
def archive_ls(archive, recipient, klass, as_json):
    """List files: size, dimensions, codec, groups (public / encrypted / redacted) and who may open them."""
    from .archive import Archive

    files = Archive(archive).ls(recipient=recipient, klass=klass, on_wait=_waiting)
    if as_json:
        click.echo(json.dumps(files, indent=2))
        return
    for f in files:
        click.echo(f"{f['path']}  {f['width']}x{f['height']}  {f['size']:,} B  {f['codec']}  "
                   f"public {f['public']} / encrypted {f['protected']} / redacted {f['redacted']}"
                   + (f"  for {', '.join(f['recipients'])}" if f["recipients"] else ""))
    click.echo(f"{len(files)} file(s)", err=True)


@archive.command("rm", short_help="Take files out of the archive.")
@ARCHIVE
@click.argument("paths", nargs=-1, required=True)
def archive_rm(archive, paths):
    """Delete the archive files PATHS (as `archive ls` shows them, or ARCHIVE/... paths to them)
    and their catalogue entries; a folder takes out every file under it (saying how many).  The
    original photos are not touched; adding one again puts it back."""
    from .archive import Archive

    def folder(status: str, path: str, detail: str) -> None:
        if status == "folder":      # how many files a folder argument takes out, before they go
            click.echo(f"{path}: {detail} under it")

    report = Archive(archive).remove(paths, on_wait=_waiting, progress=folder)
    for path, msg in report.failed:
        click.echo(f"failed: {path}: {msg}", err=True)
    _finish(report, "removed")


@archive.command("log", short_help="The audit log of access changes.")
@ARCHIVE
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
def archive_log(archive, as_json):
    """Every grant, revoke, rotate and rm: when, which key ids, how many files and chunks (one
    killed half-way says 'interrupted')."""
    import datetime

    from .archive import Archive

    a = Archive(archive)
    waiting = _waiting_once()
    log = a.audit_log(on_wait=waiting)
    names = {r["key_id"]: r["name"] for r in a.recipients(on_wait=waiting)}
    if as_json:
        click.echo(json.dumps(log, indent=2))
        return
    for e in log:
        when = datetime.datetime.fromtimestamp(e["at"], datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        who = ", ".join(f"{names[k]} ({k})" if k in names else k for k in e["key_ids"]) or "-"
        click.echo(f"{when}  {e['action']:<6}  {who}  {e['files']} file(s), "
                   f"{e['chunks']} chunk(s)  {e['detail']}")


@archive.command("grant", short_help="Let a recipient open what your key opens, in every file.")
@ARCHIVE
@click.option("--key", required=True, type=click.Path(path_type=Path), metavar="FILE", help="Your secret key file.")
@click.option("--to", "to", required=True, metavar="RECIPIENT", help="Key name (in --keys-dir) or key file.")
@click.option("--recipient-of", metavar="NAME|KEY_ID", help="Only groups this recipient may open.")
@click.option("--metadata", is_flag=True, help="Also the photos' kept EXIF/XMP (dates, places), where KEY opens it.")
@KEYS_DIR
@SCALE_OPTIONS
def archive_grant(archive, key, to, recipient_of, metadata, keys_dir, workers, scheduler):
    """Add RECIPIENT to every encrypted group KEY opens (no re-encryption).  Kept metadata only
    with --metadata: the policy chose who gets it."""
    from .archive import Archive

    a = Archive(archive)
    report = _run("granted", lambda p: a.grant(key, to, recipient_of=recipient_of, metadata=metadata,
                                              keys_dir=keys_dir, workers=workers,
                                              scheduler=scheduler, progress=p, on_wait=_waiting))
    _finish(report, f"file(s) granted ({report.chunks} group(s))")


@archive.command("revoke", short_help="Re-key every group a recipient may open, for the others only.")
@ARCHIVE
@KEYS
@click.option("--recipient", required=True, metavar="NAME|KEY_ID", help="The recipient to revoke.")
@KEYS_DIR
@SCALE_OPTIONS
def archive_revoke(archive, keys, recipient, keys_dir, workers, scheduler):
    """Give every group RECIPIENT may open a fresh key, wrapped for the remaining recipients; the
    --key(s) must open every encrypted group of those files.  Copies taken earlier stay readable."""
    from .archive import Archive

    a = Archive(archive)
    report = _run("re-keyed", lambda p: a.revoke(list(keys), recipient, keys_dir=keys_dir, workers=workers,
                                                scheduler=scheduler, progress=p, on_wait=_waiting))
    _finish(report, f"file(s) re-keyed ({report.chunks} group(s))")


@archive.command("rotate", short_help="Replace one recipient by another, in every file.")
@ARCHIVE
@KEYS
@click.option("--recipient", required=True, metavar="OLD", help="The recipient to replace (name or key id).")
@click.option("--to", "to", required=True, metavar="NEW", help="The new recipient (key name or key file).")
@KEYS_DIR
@SCALE_OPTIONS
def archive_rotate(archive, keys, recipient, to, keys_dir, workers, scheduler):
    """Grant NEW every group OLD may open and revoke OLD, in one rewrite of each file."""
    from .archive import Archive

    a = Archive(archive)
    report = _run("rotated", lambda p: a.rotate(list(keys), recipient, to, keys_dir=keys_dir, workers=workers,
                                               scheduler=scheduler, progress=p, on_wait=_waiting))
    _finish(report, f"file(s) rotated ({report.chunks} group(s))")


@archive.command("verify", short_help="Check every file (and, with keys, every access).")
@ARCHIVE
@KEYS
@click.option("--json", "as_json", is_flag=True, help="JSON report for scripts.")
@SCALE_OPTIONS
def archive_verify(archive, keys, as_json, workers, scheduler):
    """Re-read every file: integrity, files missing from or unknown to the catalogue, changed files;
    with --key, that each key opens exactly the groups the access list gives it.  Exit status 1 on
    any problem."""
    from .archive import Archive

    a = Archive(archive)
    report = _run("ok", lambda p: a.verify(list(keys), workers=workers, scheduler=scheduler,
                                           progress=(lambda *args: None) if as_json else p, on_wait=_waiting))
    if as_json:
        click.echo(json.dumps({"ok": report.ok, "checked": len(set(report.done) | {p for p, _ in report.failed}),
                               "problems": [{"path": p, "problem": m} for p, m in report.failed],
                               "warnings": [{"path": p, "warning": m} for p, m in report.warnings]}, indent=2))
        sys.exit(0 if report.ok else 1)
    for path, w in report.warnings:
        click.echo(f"warning: {path}: {w}", err=True)
    if report.ok:
        click.echo(f"no problems: {len(report.done)} file(s) checked")
    else:
        # one file can have several problems: both counts, each of them printed above (problem: ...)
        click.echo(f"{len(report.failed)} problem(s) in {len({p for p, _ in report.failed})} file(s); "
                   f"{len(report.done)} file(s) ok")
        sys.exit(1)


@archive.command("export", short_help="Decode every file to an ordinary image.")
@ARCHIVE
@click.argument("out_dir", type=click.Path(path_type=Path))
@KEYS
@click.option("--format", "fmt", type=click.Choice(["png", "jpg"]), default="png", show_default=True)
@click.option("--force", is_flag=True, help="Overwrite existing images (otherwise they are skipped).")
@SCALE_OPTIONS
def archive_export(archive, out_dir, keys, fmt, force, workers, scheduler):
    """Write each file as OUT_DIR/<relative path less .prvc>, plus .<format> unless it ends so
    already, decoded with --key (what they open), the rest filled from public pixels as view does.
    Files that would share a name are reported, none of them exported."""
    from .archive import Archive

    a = Archive(archive)
    report = _run("exported", lambda p: a.export(out_dir, list(keys), fmt=fmt, force=force, workers=workers,
                                                scheduler=scheduler, progress=p, on_wait=_waiting))
    _finish(report, "exported", skipped="exist (--force overwrites)")
