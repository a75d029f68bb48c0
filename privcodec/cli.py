"""The `privcodec` command line: a thin layer over privcodec.api.

Every PrivcodecError becomes one line `Error: …` on stderr and exit status 1;
outputs are written atomically and existing ones need --force.
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import click

from .cli_archive import EFFORT
from .errors import PrivcodecError


STDIO = "-"   # as with age and most Unix tools: "-" is standard input / output


def _is_stdio(path) -> bool:
    return str(path) == STDIO


def _check_output(path, force: bool, inputs=()) -> None:
    from .imageio import check_writable

    if not _is_stdio(path):
        check_writable(path, force, inputs=[i for i in inputs if i is not None and not _is_stdio(i)])


def _write(path, data: bytes, force: bool) -> None:
    from .imageio import atomic_write

    if _is_stdio(path):
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        atomic_write(path, data, force=force)


def _read(path) -> bytes:
    if _is_stdio(path):
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise PrivcodecError(f"cannot read {path}: {e.strerror or e}") from None


def _wrote(output, what: str = "") -> None:
    # with the data itself on standard output, messages go to standard error
    click.echo(f"wrote {'standard output' if _is_stdio(output) else output}{what}", err=_is_stdio(output))


FORCE = click.option("--force", is_flag=True, help="Overwrite an existing output file.")
OUTPUT = "Output file ('-': standard output)."
KEYS = click.option("--key", "keys", multiple=True, type=click.Path(path_type=Path), metavar="FILE",
                    help="Secret key file (repeatable).")


class _FiniteRange(click.FloatRange):
    """click.FloatRange lets nan through (every comparison with it is false) and inf past an open top."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def DETECT_OPTIONS(f):
    for opt in reversed([
        click.option("--detect", "detect", multiple=True, metavar="NAMES",
                     help="Detectors, e.g. face,person,plate (see docs/detectors.md)."),
        click.option("--no-detect", is_flag=True, help="Run no detector (protect: only the given regions)."),
        click.option("--yolo-weights", type=click.Path(path_type=Path), help="Local YOLO segmentation weights (.pt)."),
        click.option("--plate-weights", type=click.Path(path_type=Path), help="Local YOLO plate weights for plate:yolo."),
        click.option("--min-score", type=_FiniteRange(0, 1), help="Detector confidence threshold."),
        click.option("--shape", type=click.Choice(["box", "ellipse", "exact"]), default="box", show_default=True,
                     help="Object footprint before snapping to 16-px blocks."),
        click.option("--min-size", type=_FiniteRange(min=0), default=0, help="Ignore detected objects smaller than this (px); regions you give are always kept."),
    ]):
        f = opt(f)
    return f


def _detector_options(yolo_weights, plate_weights, min_score) -> dict:
    options = {"yolo_weights": yolo_weights, "plate_weights": plate_weights, "min_score": min_score}
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items() if v is not None}


def PASSPHRASE_OPTIONS(f):
    f = click.option("--passphrase-file", type=click.Path(path_type=Path), metavar="FILE",
                     help="Read the passphrase from the first line of FILE (for scripts).")(f)
    return click.option("--passphrase", "ask_passphrase", is_flag=True,
                        help="Ask for a passphrase (policy recipient \"passphrase\"; scrypt, as age).")(f)


def _passphrase(ask: bool, path, confirm: bool = False) -> str | None:
    if path is not None:
        try:
            with open(path, "rb") as f:
                if not Path(path).is_file():
                    raise PrivcodecError(f"{path}: not a regular file")
                line = f.read(4097).split(b"\n", 1)[0].rstrip(b"\r")
        except OSError as e:
            raise PrivcodecError(f"cannot read {path}: {e.strerror or e}") from None
        if not line:
            raise PrivcodecError(f"{path}: empty passphrase")
        try:
            return line.decode("utf-8", "strict")
        except UnicodeDecodeError:
            raise PrivcodecError(f"{path}: the passphrase is not UTF-8 text") from None
    if ask:
        # getpass reads the terminal, else falls back to standard input, which may be the photo
        # itself (protect - …): without a terminal, refuse rather than read a passphrase from data
        if os.name == "posix":
            try:
                open("/dev/tty").close()
            except OSError:
                raise PrivcodecError("--passphrase asks on a terminal and there is none: "
                                     "use --passphrase-file FILE") from None
        return click.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm, err=True)
    return None


REQUIRE_SIGNER = click.option("--require-signer", type=click.Path(path_type=Path), metavar="PUB",
                              help="Fail unless the file is signed by this ed25519 key (its NAME.pub).")
KEYS_DIR = click.option("--keys-dir", default="keys", show_default=True, type=click.Path(path_type=Path),
                        help="Folder where recipient names are looked up.")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="privcodec")
@click.option("-q", "--quiet", is_flag=True, help="No progress display (it is shown only on a terminal anyway).")
def cli(quiet):
    """Share photos with faces, people and plates readable only by key holders.

    \b
      privcodec keygen family
      privcodec protect photo.jpg -o photo.prvc --policy policies/faces.toml
      privcodec view photo.prvc -o public.png                    # what everyone sees
      privcodec view photo.prvc -o full.png --key keys/family.key

    PRIVCODEC_THREADS sets the coding threads (default: the cores idle now, at most 8).
    """
    if quiet:

        os.environ["PRIVCODEC_QUIET"] = "1"


@cli.command(short_help="Create a key.")
@click.argument("name")
@click.option("--dir", "directory", default="keys", show_default=True, type=click.Path(path_type=Path),
              help="Folder to write the key files to (created if missing).")
@click.option("--type", "kind", type=click.Choice(["symmetric", "x25519", "ed25519"]), default="symmetric",
              show_default=True,
              help="symmetric: one secret shared by all holders; x25519: a key pair whose NAME.pub others "
                   "can encrypt to without being able to decrypt; ed25519: a signing key pair (protect --sign, "
                   "view --require-signer NAME.pub).")
@FORCE
def keygen(name, directory, kind, force):
    """Create a key NAME.key (x25519 and ed25519 also write the shareable NAME.pub)."""
    from .keys import keygen as make_key, load_identity, load_signing_key

    paths = make_key(name, directory, kind, force=force)
    ident = load_signing_key(paths[0]) if kind == "ed25519" else load_identity(paths[0])
    for p in paths:
        click.echo(f"wrote {p}")
    click.echo(f"key id {ident.key_id}")


@cli.command(short_help="Encrypt or drop the groups a policy names.")
@click.argument("image", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Output: .prvc, or .jpg/.png for a carrier any viewer opens ('-': standard output).")
@click.option("--carrier", type=click.Choice(["prvc", "jpeg", "png"]),
              help="Output kind for standard output; a file name must agree with it (default: by extension, "
                   "else prvc).")
@click.option("--policy", required=True, type=click.Path(path_type=Path), help="Policy TOML file.")
@click.option("--dry-run", is_flag=True, help="Show what each rule does to which region; write nothing.")
@KEYS_DIR
@click.option("--quality", default=4.0, show_default=True, type=float,
              help="1 (smallest) .. 8 (best; avif: 10); fractions allowed.")
@click.option("--codec", "codec_name", type=click.Choice(["avif", "gicodec", "lossless"]), default="avif",
              show_default=True,
              help="avif: each group as an AV1 image (no torch; the better BD-rate today; --quality up to 10, "
                   "visually lossless); gicodec: the learned group-independent codec of the paper; lossless: "
                   "bit-exact groups.")
@click.option("--lossless", is_flag=True, help="Key holders get the exact original pixels (= --codec lossless).")
@click.option("--effort", default=0, show_default=True, type=EFFORT,
              help="Encoder effort: 1 and 2 spend more time for fewer bits (gicodec: a per-photo latent search, "
                   "about 25x and 75x the time; avif: libavif speed 4 and 3); files decode the same way.")
@click.option("--region", "regions", multiple=True, metavar="x0,y0,x1,y1[:label]",
              help="Manual region in pixels (repeatable); 3+ x,y pairs make a polygon.")
@click.option("--regions", "regions_file", type=click.Path(path_type=Path),
              help="Regions JSON file (the schema `privcodec detect --json` writes).")
@click.option("--mask", type=click.Path(path_type=Path), help="Label PNG: each non-zero value is a region.")
@DETECT_OPTIONS
@click.option("--pad", type=click.IntRange(min=1, max=1 << 20), help="Pad encrypted chunks to a multiple of this many bytes.")
@click.option("--sign", type=click.Path(path_type=Path), metavar="KEY",
              help="Sign the file with this ed25519 key (keygen --type ed25519): viewers can check who made it.")
@click.option("--keep-metadata", "keep_metadata", multiple=True, metavar="RECIPIENT",
              help="Keep the original EXIF/XMP (no thumbnail), encrypted for RECIPIENT (repeatable; "
                   "or a [metadata] section in the policy).")
@PASSPHRASE_OPTIONS
@FORCE
def protect(image, output, carrier, policy, dry_run, keys_dir, quality, codec_name, lossless, effort, regions, regions_file, mask, detect, no_detect,
            yolo_weights, plate_weights, min_score, shape, min_size, pad, sign, keep_metadata, ask_passphrase,
            passphrase_file, force):
    """Code IMAGE group by group; encrypt or drop groups as the --policy says.

    Objects come from the detectors for the classes the policy names (or --detect), plus any
    --region, --regions and --mask; --no-detect codes only the regions you give."""
    from . import api

    if no_detect and detect:
        raise PrivcodecError("--detect and --no-detect contradict each other")
    codec_given = click.get_current_context().get_parameter_source("codec_name") != click.core.ParameterSource.DEFAULT
    if lossless and codec_given and codec_name != "lossless":
        raise PrivcodecError(f"--lossless and --codec {codec_name} contradict each other")
    names = [] if no_detect else (list(detect) or None)
    if ask_passphrase or passphrase_file is not None:
        _check_passphrase_used(policy, keep_metadata, "--passphrase-file" if passphrase_file is not None
                               else "--passphrase")
    if dry_run:
        _dry_run(api.plan(_read(image) if _is_stdio(image) else image, policy, regions=regions,
                          regions_file=regions_file, mask=mask, detect=names, shape=shape, min_size=min_size,
                          **_detector_options(yolo_weights, plate_weights, min_score)))
        return
    if output is None:
        raise click.UsageError("Missing option '-o' / '--output' (or use --dry-run).")
    kind = _carrier_kind(output, carrier)
    _check_output(output, force, inputs=[image, policy, regions_file, mask, sign, passphrase_file])
    result = api.protect(_read(image) if _is_stdio(image) else image, policy, keys_dir=keys_dir, quality=quality,
                         regions=regions, regions_file=regions_file, mask=mask, detect=names, shape=shape,
                         min_size=min_size, pad=pad, sign=sign, keep_metadata=list(keep_metadata) or None,
                         codec="lossless" if lossless else codec_name, effort=effort,
                         passphrase=_passphrase(ask_passphrase, passphrase_file, confirm=True),
                         **_detector_options(yolo_weights, plate_weights, min_score))
    data = result.data if kind == "prvc" else api.to_carrier(result.data, kind)
    _write(output, data, force)
    for w in result.warnings:
        click.echo(f"warning: {w}", err=True)
    counts = result.counts()
    summary = ", ".join(f"{n} {a}" for a, n in counts.items())
    what = "" if kind == "prvc" else f"{kind} carrier, "
    _wrote(output, f" ({what}{len(data)} bytes; groups: {summary})")
    if set(counts) <= {"public"}:
        click.echo("note: nothing in the image matched a rule that encrypts or redacts; "
                   "the whole image is public", err=True)


_OTHER_IMAGE_SUFFIXES = {".webp", ".avif", ".tif", ".tiff", ".gif", ".bmp", ".heic", ".heif", ".jxl"}
_CARRIER_SUFFIXES = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png"}   # any other name: a raw .prvc


def _carrier_kind(output, carrier: str | None = None) -> str:
    """What protect writes to ``output``: the kind its name says.  --carrier names the kind where no
    name can (standard output); a name that says another kind would open nowhere, or as the wrong
    thing (a PNG in a .jpg), so it is refused before any work."""
    if _is_stdio(output):
        return carrier or "prvc"
    suffix = Path(str(output)).suffix.lower()
    if suffix in _OTHER_IMAGE_SUFFIXES:
        # a raw .prvc under an image name would open nowhere: say so before any work
        raise PrivcodecError(f"{output}: protect writes a .jpg or .png carrier, or a .prvc file; "
                             f"not {suffix}")
    named = _CARRIER_SUFFIXES.get(suffix, "prvc")
    if carrier is not None and carrier != named:
        what = {"jpeg": "a JPEG carrier", "png": "a PNG carrier", "prvc": "a .prvc file"}[carrier]
        name = {"jpeg": ".jpg", "png": ".png", "prvc": ".prvc"}[carrier]
        raise PrivcodecError(f"{output}: --carrier {carrier} writes {what}; give it a {name} name")
    return named


def _check_passphrase_used(policy, keep_metadata, option: str) -> None:
    """A passphrase the policy encrypts nothing for would be dropped without a word, and its user
    would believe the file opens with it: refused before any work."""
    from . import api
    from .policy import load_policy

    pol = load_policy(policy)
    if not any(api.PASSPHRASE_RECIPIENT in specs for _, specs in api._named_recipients(pol, keep_metadata)):
        raise PrivcodecError(f"{policy} names no recipient 'passphrase', so {option} would protect "
                             f"nothing: add \"passphrase\" to a rule's recipients, or leave out {option}")


def _check_same_form(output, data: bytes) -> None:
    """strip and grant give back the input's form (a carrier stays a carrier with the same
    pixels): an output named for another form would open nowhere, or as the wrong thing."""
    from .container import carrier

    if _is_stdio(output):
        return
    kind = carrier.kind_of(data) or "prvc"
    suffix = Path(str(output)).suffix.lower()
    named = _CARRIER_SUFFIXES.get(suffix, "other" if suffix in _OTHER_IMAGE_SUFFIXES else "prvc")
    if named != kind:
        what = {"jpeg": "a JPEG carrier", "png": "a PNG carrier", "prvc": "a .prvc file"}[kind]
        name = {"jpeg": ".jpg", "png": ".png", "prvc": ".prvc"}[kind]
        raise PrivcodecError(f"{output}: the input is {what} and so is the output; give it a {name} name")


def _dry_run(planned, preview: bool = False) -> None:
    rows = planned.rows()
    click.echo(f"detectors: {', '.join(planned.detectors) or 'none'}")
    for r in rows:
        who = f" for {', '.join(r['recipients'])}" if r["recipients"] else ""
        rule = f"rule {r['rule']}" if r["rule"] else "[default]"
        x0, y0, x1, y1 = r["box"]
        click.echo(f"  group {r['group']:>2}  {r['class']:<14} {r['score']:.2f}  {x0},{y0},{x1},{y1}  "
                   f"{r['blocks']:>5} blocks  {r['action']}{who} ({rule})")
    for w in planned.warnings:
        click.echo(f"warning: {w}", err=True)
    # detect --policy --preview writes the preview (and says so), never a protected file
    click.echo("dry run: no protected file written" if preview else "dry run: nothing written")


@cli.command(short_help="Decode what your keys allow.")
@click.argument("container", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Output image (.png, .webp, .jpg, .avif; '-': PNG on standard output).")
@KEYS
@click.option("--fill", type=click.Choice(["inpaint", "solid"]), default="inpaint", show_default=True,
              help="How areas you cannot decode are filled (from public pixels only).")
@REQUIRE_SIGNER
@click.option("--max-pixels", type=click.IntRange(min=1), metavar="N",
              help="Refuse images larger than N pixels (default 64,000,000).")
@click.option("--quality", "out_quality", type=click.IntRange(1, 100), help="Quality of a .jpg/.webp/.avif output.")
@PASSPHRASE_OPTIONS
@FORCE
def view(container, output, keys, fill, require_signer, max_pixels, out_quality, ask_passphrase, passphrase_file,
         force):
    """Decode what your keys allow; the rest is filled from public pixels only."""
    from . import api
    from .imageio import encode_image, image_format_for, save_image

    if not _is_stdio(output):
        image_format_for(output)
    _check_output(output, force, inputs=[container, require_signer, passphrase_file, *keys])
    from .container import carrier

    passphrase = _passphrase(ask_passphrase, passphrase_file)
    raw = _read(container)
    result = api.view(raw, keys, fill=fill, require_signer=require_signer, max_pixels=max_pixels,
                      passphrase=passphrase)
    if _is_stdio(output):
        _write(output, encode_image(result.pixels, "PNG"), force)
    else:
        # a keyed view shows what was protected: readable by its owner only
        save_image(result.pixels, output, force=force, mode=0o600 if result.decoded or result.metadata else None,
                   quality=out_quality, metadata=result.metadata)
    _wrote(output)
    if carrier.kind_of(raw):
        click.echo("note: decoded from the privcodec data inside the image; its visible pixels are not "
                   "authenticated and were not used", err=True)
    if result.missing:
        n = len(result.missing)
        click.echo(f"note: {n} protected group{'s' if n > 1 else ''} not opened by your keys "
                   f"{'are' if n > 1 else 'is'} filled", err=True)
    if result.redacted:
        click.echo("note: redacted areas (removed for good when the file was made) are filled", err=True)
    _authenticity_note(result.authenticated, result.signer, bool(keys) or passphrase is not None,
                       require_signer is not None)


def _authenticity_note(authenticated: str, signer: str | None, keyed: bool, signer_required: bool = False) -> None:
    """Say what vouches for the file: intact bytes alone prove nothing about who made them."""
    if signer and signer_required:
        click.echo(f"signed by {signer}, the required signer: the signature covers every group and the layout",
                   err=True)
    elif signer:
        click.echo(f"signed by {signer} (anyone can sign: check that this is the key you expect, or use "
                   "--require-signer)", err=True)
    if authenticated == "key":
        click.echo("authenticated by your key: the file was made by a holder of a secret you hold "
                   "(every group and the layout)", err=True)
    elif authenticated == "key-v1":
        click.echo("authenticated by your key: layout and public groups (a version-1 file: other protected "
                   "groups and the recipient list are not covered)", err=True)
    elif authenticated == "x25519":
        click.echo("note: intact for your key, but anyone with your public key could have made this file "
                   "(ask for a signed file: --require-signer)", err=True)
    elif keyed and not signer_required:
        click.echo("note: nothing in this file is authenticated by your key: anyone could have made it", err=True)


@cli.command(short_help="Show a file's groups and recipients.")
@click.argument("container", type=click.Path(path_type=Path))
@KEYS
@REQUIRE_SIGNER
@PASSPHRASE_OPTIONS
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def inspect(container, keys, require_signer, ask_passphrase, passphrase_file, as_json):
    """Show groups, the classes visible to you, sizes, recipients and the signer."""
    from . import api

    passphrase = _passphrase(ask_passphrase, passphrase_file)
    info = api.inspect(_read(container), keys, require_signer=require_signer, passphrase=passphrase)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"{container}: {info['width']}x{info['height']}, {info['bytes']} bytes, codec {info['codec']} "
               f"q{info['quality']:g}, {info['protected_blocks']} protected / {info['redacted_blocks']} redacted blocks, "
               f"format v{info['version']}, {'signed by ' + info['signer'] if info['signer'] else 'unsigned'}")
    for g in info["groups"]:
        cls = g.get("class", "?")
        extra = ""
        if g["access"] == "encrypted":
            state = "opened" if g.get("opened") else ("stripped" if not g["present"] else "locked")
            extra = f" [{state}] recipients: {', '.join(g['recipients']) or '-'}"
        click.echo(f"  group {g['index']:>2}  {g['access']:<9} {cls:<16} {g['bytes']:>8} B{extra}")
    _authenticity_note(info["authenticated"], None, bool(keys) or passphrase is not None, require_signer is not None)


@cli.command(short_help="Drop the chunks your keys do not open.")
@click.argument("container", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help=OUTPUT)
@KEYS
@PASSPHRASE_OPTIONS
@FORCE
def strip(container, output, keys, ask_passphrase, passphrase_file, force):
    """Keep public groups and those your keys open; drop the other chunks."""
    from . import api

    _check_output(output, force, inputs=[container, passphrase_file, *keys])
    data = _read(container)
    _check_same_form(output, data)
    _write(output, api.strip(data, keys, passphrase=_passphrase(ask_passphrase, passphrase_file)), force)
    _wrote(output)


@cli.command(short_help="Give another recipient access.")
@click.argument("container", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help=OUTPUT)
@click.option("--key", required=True, type=click.Path(path_type=Path), metavar="FILE", help="Your secret key file.")
@click.option("--to", "recipient", required=True,
              help="Recipient key name (in --keys-dir), .pub/.key path, or 'passphrase' (with --passphrase[-file]).")
@click.option("--metadata", is_flag=True, help="Also the photo's kept EXIF/XMP (date, place), if your key opens it.")
@KEYS_DIR
@PASSPHRASE_OPTIONS
@FORCE
def grant(container, output, key, recipient, metadata, keys_dir, ask_passphrase, passphrase_file, force):
    """Let the --to recipient open the groups your key opens (no re-encoding); the kept metadata
    only with --metadata."""
    from . import api

    if recipient != api.PASSPHRASE_RECIPIENT and (ask_passphrase or passphrase_file is not None):
        # grant opens the file with --key: a passphrase is only ever the one granted to
        option = "--passphrase-file" if passphrase_file is not None else "--passphrase"
        raise PrivcodecError(f"{option} is the passphrase to grant to, with --to passphrase; with --to "
                             f"{recipient} it would be ignored (grant opens the file with --key)")
    _check_output(output, force, inputs=[container, key, passphrase_file])
    data = _read(container)
    _check_same_form(output, data)
    passphrase = _passphrase(ask_passphrase, passphrase_file, confirm=True) if recipient == "passphrase" else None
    granted = api.grant(data, key, recipient, keys_dir=keys_dir, passphrase=passphrase, metadata=metadata)
    if granted == data:
        # inspect, not open_container: the input may be a carrier JPEG/PNG
        if not any(g["access"] == "encrypted" for g in api.inspect(data)["groups"]):
            click.echo("note: the file has no protected group: nothing to grant", err=True)
        else:
            click.echo(f"note: {recipient} can already open every group your key opens", err=True)
    _write(output, granted, force)
    _wrote(output)


@cli.command(short_help="Find faces, people, plates…")
@click.argument("image", type=click.Path(path_type=Path))
@DETECT_OPTIONS
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Write detections as a regions JSON file.")
@click.option("--preview", type=click.Path(path_type=Path), help="Write the block groups drawn over the photo.")
@click.option("--policy", type=click.Path(path_type=Path),
              help="Run the policy's detectors and preview exactly the groups protect would make.")
@FORCE
def detect(image, detect, no_detect, yolo_weights, plate_weights, min_score, shape, min_size, json_out, preview,
           policy, force):
    """Find faces, people, plates… (default: --detect face) and show the block groups they become."""
    from . import detect as detectors
    from . import masks
    from .imageio import image_format_for, load_image, save_image

    if no_detect:
        raise PrivcodecError("detect with --no-detect has nothing to do")
    if preview:
        image_format_for(preview)
    if json_out and preview and Path(json_out) == Path(preview):
        raise PrivcodecError("--json and --preview name the same file")
    if json_out and policy is not None:
        raise PrivcodecError("--json lists detections; with --policy use --preview")
    for out in (json_out, preview):
        if out:
            _check_output(out, force, inputs=[image])
    pixels = load_image(image)
    if policy is not None:
        from . import api

        planned = api.plan(pixels, policy, detect=list(detect) or None, shape=shape, min_size=min_size,
                           **_detector_options(yolo_weights, plate_weights, min_score))
        _dry_run(planned, preview=bool(preview))
        if preview:
            save_image(masks.render_preview(pixels, planned.group_map), preview, force=force)
            _wrote(preview)
        return
    found = detectors.detect(pixels, list(detect) or ["face"],
                             **_detector_options(yolo_weights, plate_weights, min_score))
    for d in found:
        x0, y0, x1, y1 = d.box
        click.echo(f"{d.label:<14} {d.score:.2f}  {x0:.0f},{y0:.0f},{x1:.0f},{y1:.0f}  ({d.source})")
    if not found:
        click.echo("nothing found")
    if json_out:
        _write(json_out, detectors.regions_to_json(found, pixels.shape[1], pixels.shape[0]).encode(), force)
        _wrote(json_out)
    if preview:
        gm = masks.build_group_map(pixels.shape[1], pixels.shape[0], found, shape=shape, min_size=min_size)
        save_image(masks.render_preview(pixels, gm), preview, force=force)
        _wrote(preview)


@cli.command(short_help="Protect a bundled photo and show both views.")
@click.option("--out", default="demo", show_default=True, type=click.Path(path_type=Path), help="Output folder.")
def demo(out):
    """Protect the bundled photo with faces encrypted; write both views side by side."""
    from .demo import run_demo

    run_demo(out, echo=click.echo)


@cli.command(short_help="Train the codec on a folder of photos.")
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", default="runs/gi", show_default=True, type=click.Path(path_type=Path),
              help="Run folder: last.pt (checkpoint, resumed from), gicodec.pt (exported weights).")
@click.option("--iters", default=20000, show_default=True, type=click.IntRange(min=1),
              help="Total iterations (resume continues to this).")
@click.option("--batch", default=8, show_default=True, type=click.IntRange(min=1), help="Crops per iteration.")
@click.option("--crop", default=128, show_default=True, type=click.IntRange(min=64),
              help="Crop side in pixels (a multiple of 64).")
@click.option("--threads", default=2, show_default=True, type=click.IntRange(min=1), help="Torch CPU threads.")
@click.option("--lr", default=3e-4, show_default=True, type=_FiniteRange(min=0, min_open=True),
              help="Peak learning rate (500-iteration warm-up, then cosine decay; see --decay-frac).")
@click.option("--decay-frac", default=0.15, show_default=True, type=_FiniteRange(0, 1),
              help="Fraction of --iters (or of --time-limit), at the end, over which the learning rate decays "
                   "to --lr-floor.")
@click.option("--lr-floor", type=_FiniteRange(min=0), help="Learning rate at the end of the decay (default: --lr / 10).")
@click.option("--eval-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder with kodim01/05.png for periodic real-bitstream evaluation.")
@click.option("--init", type=click.Path(exists=True, path_type=Path), help="Start from this checkpoint's weights.")
@click.option("--warmup", default=500, show_default=True, type=click.IntRange(min=0),
              help="Iterations of linear learning-rate warm-up.")
@click.option("--ema-decay", default=0.999, show_default=True, type=_FiniteRange(0, 1, max_open=True),
              help="Weight EMA decay (0 = off); the EMA is evaluated and exported.")
@click.option("--holdout-every", default=40, show_default=True, type=click.IntRange(min=0),
              help="Hold out every N-th photo from training for evaluation (0 = none).")
@click.option("--eval-every", default=2000, show_default=True, type=click.IntRange(min=1),
              help="Iterations between real-bitstream evaluations.")
@click.option("--no-bf16", is_flag=True, help="Train in float32.")
@click.option("--checkerboard", is_flag=True,
              help="Train network gicodec-3 (a checkerboard context in every slice); with --init, grow it "
                   "from a gicodec-1 network.")
@click.option("--refine", is_flag=True,
              help="Train network gicodec-4 (gicodec-3 with residual blocks in the synthesis at 1/8 and 1/4 scale); with "
                   "--init, grow it from a gicodec-1 or gicodec-3 network.")
@click.option("--device", default="cpu", show_default=True, help="Torch device to train on, e.g. cuda.")
@click.option("--time-limit", type=_FiniteRange(min=60), metavar="SECONDS",
              help="End the run (learning-rate decay included) within this many seconds; --iters is then a cap.")
@click.option("--max-groups", default=3, show_default=True, type=click.IntRange(1, 16),
              help="Most groups in a training crop (boxes and blobs over a background).")
@click.option("--single-group", default=0.5, show_default=True, type=_FiniteRange(0, 1),
              help="Fraction of crops coded as one group; the rest get 2..--max-groups.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Seed of the crop sampler and initialisation: a run continuing from --init should take a new "
                   "one, or it sees the crops its parent saw, in the same order.")
def train(data, out, iters, batch, crop, threads, lr, decay_frac, lr_floor, eval_dir, init, warmup, ema_decay, holdout_every,
          eval_every, no_bf16, checkerboard, refine, device, time_limit, max_groups, single_group, seed):
    """Train the codec on a folder of photos (resumes from OUT/last.pt)."""
    from .codec.train import train as run

    if lr_floor is not None and lr_floor > lr:
        raise click.BadParameter("must not be above --lr", param_hint="--lr-floor")
    path = run(data, out, iters, batch=batch, crop=crop, threads=threads, lr=lr,
               lr_floor=lr / 10 if lr_floor is None else lr_floor, eval_dir=eval_dir, init=init,
               bf16=not no_bf16, decay_frac=decay_frac, warmup=warmup, ema_decay=ema_decay,
               holdout_every=holdout_every, eval_every=eval_every, checkerboard=checkerboard, refine=refine,
               device=device, max_groups=max_groups, single_group=single_group,
               time_limit=time_limit, seed=seed, log=lambda s: click.echo(s))
    click.echo(f"exported {path}")


@cli.command("export-weights", short_help="Checkpoint -> shipped weights file.")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Default: the packaged weights file.")
@click.option("--scale-levels", type=click.IntRange(16, 1024), default=None,
              help="Gaussian scale table size for the coding tables (default: the checkpoint's; new "
                   "models 256, files before session 12 64).")
@FORCE
def export_weights(checkpoint, output, scale_levels, force):
    """Turn a training checkpoint (or a weights file) into the shipped weights file.

    Replacing the packaged file needs --force, and a released model's file must first move to
    weights/released/ (its registry entry with it): files made with it are decoded from there."""
    from .codec.weights_io import DEFAULT_WEIGHTS, export_checkpoint

    output = output or DEFAULT_WEIGHTS
    _check_output(output, force, inputs=[checkpoint])
    path = export_checkpoint(checkpoint, output, scale_levels=scale_levels)
    click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


@cli.group(short_help="Benchmarks that print numbers.")
def bench():
    """Benchmarks that print numbers (rate-distortion, detection speed)."""


@bench.command("rd")
@click.option("--dataset", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of test images (e.g. Kodak).")
@click.option("--out", default="bench", show_default=True, type=click.Path(path_type=Path),
              help="Folder for rd.json and rd.png.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N images (quick look).")
@click.option("--qualities", default="1,2,3,4,5,6,7,8", show_default=True, help="privcodec --quality values.")
@click.option("--no-baseline-speed", is_flag=True, help="Skip timing bmshj2018-hyperprior.")
@click.option("--codecs", default="gicodec,avif", show_default=True, help="privcodec backends to measure.")
@click.option("--effort", default=0, show_default=True, type=EFFORT,
              help="Encoder effort of privcodec's backends (as for protect; the bmshj2018 timing stays at 0).")
def bench_rd(dataset, out, limit, qualities, no_baseline_speed, codecs, effort):
    """Rate-distortion of privcodec's backends vs JPEG, WebP, AVIF; BD-rates; grouping overhead; speed."""
    from .bench.rd import run

    try:
        levels = [float(q) for q in qualities.split(",")]
    except ValueError:
        raise PrivcodecError(f"--qualities must be numbers separated by commas, got {qualities!r}") from None
    names = [c.strip() for c in codecs.split(",") if c.strip()]
    for n in names:
        if n not in ("gicodec", "avif"):
            raise PrivcodecError(f"unknown codec {n!r} in --codecs (gicodec, avif)")
    run(dataset, out, limit=limit, qualities=levels, baseline_speed=not no_baseline_speed, codecs=names,
        effort=effort, echo=click.echo)


@bench.command("speed")
@click.option("--photo", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A photo with a face; it is resized to each size.")
@click.option("--sizes", default="0.4,12,24", show_default=True, help="Megapixels.")
@click.option("--codec", "codec_name", type=click.Choice(["avif", "gicodec"]), default="avif", show_default=True)
def bench_speed(photo, sizes, codec_name):
    """Wall time, CPU time and peak memory of detect / protect / view (and deface) per photo size."""
    from .bench.speed import run

    try:
        mps = [float(s) for s in sizes.split(",")]
    except ValueError:
        raise PrivcodecError(f"--sizes must be numbers separated by commas, got {sizes!r}") from None
    run(photo, sizes=mps, codec=codec_name, echo=click.echo)


@bench.command("archive")
@click.option("--photos", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of photos (e.g. Kodak, 768x512).")
@click.option("--workers", "workers", default="1,2", show_default=True, help="Worker counts to measure.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N photos.")
def bench_archive(photos, workers, limit):
    """Archive add / revoke / verify throughput with 1, 2, ... local workers."""
    from .bench.archive import run

    try:
        counts = [int(w) for w in workers.split(",")]
    except ValueError:
        raise PrivcodecError(f"--workers must be integers separated by commas, got {workers!r}") from None
    run(photos, counts, limit, echo=click.echo)


@bench.command("detect")
def bench_detect():
    """Detection time per image per detector."""
    from .bench.detect import main as run

    run()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # privcodec's own warnings, and Pillow's about the files it reads (corrupt EXIF and the like),
    # are one line for the user; others keep Python's format
    if category.__module__.startswith("privcodec") or f"{os.sep}PIL{os.sep}" in str(filename):
        click.echo(f"warning: {message}", err=True)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


def main(argv=None) -> None:
    import warnings

    global _python_showwarning
    _python_showwarning = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        rc = cli.main(args=argv, prog_name="privcodec", standalone_mode=False)
    except PrivcodecError as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("Error: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("Error: interrupted", err=True)
        sys.exit(130)
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        click.echo(f"Error: {e.strerror or e}{where}", err=True)
        sys.exit(1)
    except MemoryError:
        click.echo("Error: out of memory", err=True)
        sys.exit(1)
    except Exception as e:  # last resort: a bug, but still one line and a non-zero exit
        click.echo(f"Error: internal error ({type(e).__name__}: {e}); please report it", err=True)
        sys.exit(70)
    sys.exit(rc if isinstance(rc, int) else 0)


from .cli_archive import archive  # noqa: E402  (the archive commands live in their own module)

cli.add_command(archive)
