"""privcodec's Python API — the same verbs as the CLI.

    protect: image ─▶ groups (regions / label PNG / detectors) ─▶ policy decisions
             ─▶ codec (one bitstream per group) ─▶ container (public | encrypted | dropped)
    view:    container + keys ─▶ open what the keys allow ─▶ codec decodes that subset
             ─▶ fill the rest from public pixels only

The common case is one call each::

    data = privcodec.protect("photo.jpg", "policies/faces.toml", detect=["face"]).data
    privcodec.view(data).image.save("public.png")
    privcodec.view(data, keys=["keys/family.key"]).image.save("full.png")
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import DecryptionError, DetectorError, FormatError, ImageError, KeyFileError, PolicyError, PrivcodecError

DEFAULT_QUALITY = 4.0
FILLS = ("inpaint", "solid")
CORRUPT = "not a valid .prvc file (corrupted or tampered)"


@dataclass
class ProtectResult:
    data: bytes
    group_map: object                 # masks.GroupMap that was coded
    actions: list[str]                # per group of group_map: public | encrypt | redact
    warnings: list[str] = field(default_factory=list)    # what may be left public that you meant to protect
    file_index: dict[int, int] = field(default_factory=dict)   # group_map index -> group index in the file
    access: dict[int, list[str]] = field(default_factory=dict)  # encrypted chunk index -> recipients' key ids

    def counts(self) -> dict[str, int]:
        """How many groups that own at least one block got each action."""
        present = [a for i, a in enumerate(self.actions) if self.group_map.block_mask(i).any()]
        return {a: present.count(a) for a in ("public", "encrypt", "redact") if a in present}


@dataclass
class ViewResult:
    image: "object"                   # PIL.Image.Image, RGB
    pixels: np.ndarray                # uint8 (H, W, 3)
    decoded: list[int] = field(default_factory=list)    # protected groups opened with the given keys
    missing: list[int] = field(default_factory=list)    # protected groups no given key opens (filled)
    redacted: bool = False            # the file has redacted (dropped) areas
    signer: str | None = None         # key id of the verified Ed25519 signer, if the file is signed
    authenticated: str = "none"       # what a key or signature vouches for: see Authenticity in SECURITY.md
    version: int = 3                  # FORMAT version of the file
    metadata: object = None           # container.Metadata (original EXIF/XMP) if kept and your keys open it


def authenticity(c, opened: list) -> str:
    """What your keys vouch for beyond "the bytes are intact" (SECURITY.md, Authenticity).

    "key": a holder of a secret you hold (a symmetric key or a passphrase) made the whole file;
    "key-v1": the same for the layout and public groups of a version-1 file; "x25519": intact for
    your key, but anyone with your public key could have made it; "none": anyone could have made
    or edited it.  A signature is reported apart (ViewResult.signer): it proves who signed, and
    only --require-signer says whether that is who you expect."""
    kinds = {g.opened_kind for g in opened}
    if kinds - {"x25519", ""}:
        return "key" if c.version >= 2 else "key-v1"
    if kinds:
        return "x25519"
    return "none"


PASSPHRASE_RECIPIENT = "passphrase"   # in a policy's recipients: the passphrase given to protect


def _identities(keys, passphrase=None) -> list:
    """Keys as given by a caller: one path / Identity, or an iterable of them; plus a passphrase."""
    from .keys import Identity, load_identity, passphrase_identity

    if keys is None:
        keys = []
    if isinstance(keys, (str, os.PathLike, Identity)):
        keys = [keys]
    if isinstance(keys, (bytes, bytearray, memoryview)) or not isinstance(keys, Iterable):
        raise KeyFileError(f"keys: expected a key file path or Identity, or a list of them; got {type(keys).__name__}")
    keys = list(keys)
    for k in keys:
        if not isinstance(k, (str, os.PathLike, Identity)):
            raise KeyFileError(f"keys: expected key file paths or Identity objects, got {type(k).__name__}")
    out = [k if isinstance(k, Identity) else load_identity(Path(k)) for k in keys]
    return out + ([passphrase_identity(passphrase)] if passphrase is not None else [])


def _raw_bytes(data) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, (str, os.PathLike)):
        try:
            return Path(data).read_bytes()
        except OSError as e:
            raise PrivcodecError(f"cannot read {os.fspath(data)}: {e.strerror or e}") from None
    raise PrivcodecError(f"expected .prvc data (bytes) or a file path, got {type(data).__name__}")


def _container_bytes(data) -> bytes:
    """A container as bytes or a path: a .prvc file, or a JPEG/PNG carrier (its embedded .prvc)."""
    from .container import carrier

    raw = _raw_bytes(data)
    return carrier.extract(raw) if carrier.kind_of(raw) else raw


def _same_form(original: bytes, container: bytes) -> bytes:
    """strip/grant give back what they were given: a carrier stays a carrier with the same pixels
    (the public view does not change), a .prvc stays a .prvc."""
    from .container import carrier

    return carrier.replace(original, container) if carrier.kind_of(original) else container


def to_carrier(data, kind: str = "jpeg", *, quality: int = 90) -> bytes:
    """An ordinary JPEG or PNG whose pixels are the keyless view, with the whole .prvc inside.

    Every viewer shows the public view; privcodec (and ``privcodec.pillow.open`` with keys)
    decodes the embedded container, never the visible pixels."""
    from .container import carrier
    from .imageio import encode_image

    if kind not in carrier.CARRIER_KINDS:
        raise PrivcodecError(f"carrier must be one of {', '.join(carrier.CARRIER_KINDS)}, not {kind!r}")
    quality = _check_int("quality", quality, 1, 100)
    container = _container_bytes(data)
    public = view(container).pixels
    return carrier.embed(encode_image(public, "JPEG" if kind == "jpeg" else "PNG", quality=quality), container)


def _unlock(c, identities: list) -> list:
    """Open what the keys allow.  Like age, several keys are fine as long as one of them opens
    something; keys of which none opens anything in a file that declares protected groups are the
    wrong keys, or the file was stripped or forged: an error either way (a file without protected
    groups needs no key, so that is not one)."""
    opened = {g.index: g for g in c.unlock(identities)}   # all identities at once: one overlap check
    if identities and not opened and c.metadata is None and c.protected_chunks:
        names = ", ".join(i.source or "key" for i in identities)
        raise DecryptionError(f"{names}: {'this key opens no' if len(identities) == 1 else 'none of these keys opens any'} "
                              "protected group in this file")
    return [opened[i] for i in sorted(opened)]


def _check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    """An integer argument in [lo, hi]: "5" or 5.5 or True is a caller's mistake, said in one line."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise PrivcodecError(f"{name} must be a whole number, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise PrivcodecError(f"{name} must be {f'between {lo} and {hi}' if hi is not None else f'at least {lo}'}, "
                             f"got {value}")
    return int(value)


def _check_detector_options(function: str, options: dict) -> None:
    """protect/plan pass unknown keywords to the detectors: a misspelt ``regions=`` or ``quality=``
    must not vanish there (a region silently dropped is a face left public)."""
    from .detect import OPTIONS

    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(f"{function}() got an unexpected keyword argument {unknown[0]!r} "
                        f"(detector options: {', '.join(OPTIONS)})")


def _policy(policy):
    """A Policy, or the TOML file it is read from (a path)."""
    from .policy import Policy, load_policy

    if isinstance(policy, Policy):
        return policy
    if not isinstance(policy, (str, os.PathLike)):
        raise PolicyError(f"policy: expected a policy file path or a Policy, got {type(policy).__name__}")
    return load_policy(Path(policy))


def _check_detect(detect) -> list[str] | None:
    """``detect=``: None (the policy's detectors), one name ("face", or "face,plate" as typed after
    --detect) or a list of names; a lone string is one name, never a list of letters."""
    if detect is None:
        return None
    if isinstance(detect, str):
        return [detect]
    names = list(detect) if isinstance(detect, Iterable) and not isinstance(detect, (bytes, bytearray)) else [detect]
    for n in names:
        if not isinstance(n, str):
            raise DetectorError(f"detect: expected a detector name or a list of names, got {type(n).__name__}")
    return names


def _check_effort(effort) -> int:
    from .limits import EFFORT_LEVELS

    if isinstance(effort, bool) or effort not in EFFORT_LEVELS:
        raise PrivcodecError(f"effort must be one of {', '.join(map(str, EFFORT_LEVELS))}, got {effort!r}")
    return int(effort)


def _check_quality(quality: float, codec_id: str = "") -> float:
    from .limits import QUALITY_MIN, quality_max

    try:
        q = float(quality)
    except (TypeError, ValueError):
        raise PrivcodecError(f"quality must be a number, got {quality!r}") from None
    if not QUALITY_MIN <= q <= quality_max(codec_id):
        raise PrivcodecError(f"quality must be between {QUALITY_MIN:g} and {quality_max(codec_id):g}"
                             f"{' with this codec' if codec_id else ''}, got {quality}")
    return q


@dataclass
class Plan:
    """What protect will do, before anything is coded or written (``protect --dry-run``)."""
    group_map: object                 # masks.GroupMap
    decisions: list                   # policy.Decision per group
    warnings: list[str]
    detectors: list[str]              # detector names that ran

    def rows(self) -> list[dict]:
        """One row per group that owns blocks: class, score, source, pixel box, blocks, action, recipients."""
        gm, out = self.group_map, []
        for i, g in enumerate(gm.groups):
            m = gm.block_mask(i)
            if not m.any():
                continue
            ys, xs = np.nonzero(m)
            box = [int(xs.min()) * 16, int(ys.min()) * 16, min(gm.width, (int(xs.max()) + 1) * 16),
                   min(gm.height, (int(ys.max()) + 1) * 16)]
            d = self.decisions[i]
            out.append({"group": i, "class": g.label, "score": round(float(g.score), 3), "source": g.source,
                        "box": box, "blocks": int(m.sum()), "action": d.action, "recipients": list(d.recipients),
                        "rule": None if d.rule is None else d.rule + 1})
        return out


def _plan_warnings(policy, gm, decisions, detectors_run: list[str], manual: list) -> list[str]:
    """Everything that would leave something public that the policy means to protect."""
    import difflib

    from .detect import produced_label
    from .labels import class_label
    from .policy import BACKGROUND

    warnings = []
    # the background group is whatever no object covers: always there to match
    producible = ({produced_label(n) for n in detectors_run} | {class_label(r.label) for r in manual}
                  | {BACKGROUND})
    used_rules = {d.rule for i, d in enumerate(decisions) if gm.block_mask(i).any() and d.rule is not None}
    named = {label for rule in policy.rules for label in rule.match}
    for n, rule in enumerate(policy.rules):
        if rule.action == "public":
            continue
        what = f"rule {n + 1} ({', '.join(rule.match)} → {rule.action})"
        # per label: in match = ["face", "person"] with only faces looked for, persons stay public
        missing = [label for label in rule.match if label != "*" and label not in producible]
        if missing:
            warnings.append(f"{what}: no detector or region can produce {'/'.join(missing)}: such objects "
                            "stay public (add --detect for it, or a --region with that label)")
        if n not in used_rules and len(missing) < len(rule.match):
            warnings.append(f"{what} matched nothing in this photo")
    for label in sorted({class_label(r.label) for r in manual}):
        if label not in named and "*" not in named:
            guess = difflib.get_close_matches(label, sorted(named - {"*"}), 1, 0.7)
            hint = f" (did you mean {guess[0]!r}?)" if guess else ""
            warnings.append(f"region label {label!r} matches no rule{hint}: [default] decides it "
                            f"({policy.default.action})")
    return warnings


def plan(image, policy, *, regions: Sequence = (), regions_file=None, mask=None, detect: Sequence[str] | None = None,
         shape: str = "box", min_size: float = 0, **detector_options) -> Plan:
    """The groups protect makes and what each rule does to them — the same call protect uses.

    ``regions``: boxes in input pixels, each "x0,y0,x1,y1[:label]" (as ``--region``; 3+ x,y pairs
    make a polygon), a tuple (x0, y0, x1, y1) or (x0, y0, x1, y1, label) — corners, not a width and
    height; the label (default "region") is the class the policy matches — or a Detection.
    ``detect``: a detector name ("face") or a list of names; ``detect=None`` runs the detectors for
    the classes the policy names, in addition to any regions (a region for the face a detector
    missed must not switch the detector off); ``detect=[]`` runs none (``--no-detect``)."""
    from . import detect as detectors
    from . import progress

    _check_detector_options("plan", detector_options)
    policy = _policy(policy)
    detect = _check_detect(detect)
    pixels = _pixels(image)
    names = policy_detectors(policy) if detect is None else detect
    manual = manual_regions(pixels.shape, regions=regions, regions_file=regions_file, mask=mask)
    with progress.step(f"Finding {', '.join(names)}" if names else "Building groups"):
        found = detectors.detect(pixels, names, **detector_options) if names else []
        # min_size filters what the detectors found; a region the user gave is always kept
        found = [d for d in found if min(d.box[2] - d.box[0], d.box[3] - d.box[1]) >= min_size]
        gm = _group_map(pixels.shape, policy, manual + found, shape=shape)
    decisions = [policy.decide(g.label) for g in gm.groups]
    flat = [n.strip() for spec in names for n in str(spec).split(",") if n.strip()]
    return Plan(gm, decisions, _plan_warnings(policy, gm, decisions, flat, manual), flat)


def manual_regions(shape, *, regions: Sequence = (), regions_file=None, mask=None) -> list:
    """The regions a user gives: --region specs, a regions JSON file and a label PNG, as Detections."""
    from . import detect as detectors

    h, w = shape[:2]
    if isinstance(regions, (str, detectors.Detection)):
        regions = [regions]
    if regions is None:
        regions = ()
    if not isinstance(regions, Iterable):
        raise DetectorError(f"regions: expected a list of regions (\"x0,y0,x1,y1[:label]\" or "
                            f"(x0, y0, x1, y1[, label])), got {type(regions).__name__}")
    found = list(detectors.parse_regions(regions))
    _check_inside(found, w, h)
    if regions_file is not None:
        from_file = detectors.load_regions(regions_file, w, h)
        _check_inside(from_file, w, h)
        found += from_file
    if mask is not None:
        found += detectors.regions_from_label_png(mask, w, h)
    return found


def _check_inside(regions: list, w: int, h: int) -> None:
    for r in regions:
        x0, y0, x1, y1 = r.box
        if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
            # a region the user gave that misses the photo is a mistake, not "protect nothing"
            raise DetectorError(f"region {r.label!r} ({x0:g},{y0:g},{x1:g},{y1:g}) lies outside the {w}x{h} image")


def _group_map(image_shape, policy, found: list, *, shape: str = "box", min_size: float = 0):
    """Objects ─▶ block groups, overlaps by the policy's precedence, margins and grouping per rule."""
    from . import masks

    return masks.build_group_map(image_shape[1], image_shape[0], found, rank=policy.rank, grouping=policy.grouping,
                                 margin=policy.margin, scale=policy.scale, shape=shape, min_size=min_size)


def find_groups(image: np.ndarray, policy, *, regions: Sequence = (), regions_file=None, mask=None,
                detect: Sequence[str] = (), shape: str = "box", min_size: float = 0, **detector_options):
    """image ─▶ GroupMap: manual regions, a regions JSON file, a label PNG and detectors;
    overlaps resolved by the policy's precedence, scaled margins and grouping per rule."""
    from . import detect as detectors

    _check_detector_options("find_groups", detector_options)
    detect = _check_detect(detect)
    found = manual_regions(image.shape, regions=regions, regions_file=regions_file, mask=mask)
    if detect:
        found += detectors.detect(image, detect, **detector_options)
    return _group_map(image.shape, policy, found, shape=shape, min_size=min_size)


def policy_detectors(policy) -> list[str]:
    """Detectors that can find the classes the policy's rules name (face, person, plates, COCO
    classes); custom region labels and "*" have none."""
    from .detect import detector_for_label

    names = [detector_for_label(label) for rule in policy.rules for label in rule.match]
    return list(dict.fromkeys(n for n in names if n))


def _named_recipients(policy, keep_metadata: Sequence[str] = ()) -> list:
    """(where, recipient names) for every place a policy (and --keep-metadata) names recipients."""
    named = [(f"rule {i}", r.recipients) for i, r in enumerate(policy.rules, start=1)]
    named.append(("[default]", policy.default.recipients))
    named.append(("[metadata]", policy.metadata))
    named.append(("--keep-metadata", tuple(keep_metadata)))
    return named


def _check_recipients(recipients, policy, keep_metadata: Sequence[str]) -> None:
    """``protect(recipients=...)``: every name the policy uses must be there, as a Recipient, before
    the photo is coded (as load_recipients checks the key files)."""
    from .keys import Recipient

    if not isinstance(recipients, dict):
        raise KeyFileError(f"recipients must be a dict of name -> Recipient (load_recipients), "
                           f"got {type(recipients).__name__}")
    for where, specs in _named_recipients(policy, keep_metadata):
        for spec in specs:
            if spec not in recipients:
                raise KeyFileError(f"{policy.path}: {where}: recipient {spec!r}: not in recipients")
            if not isinstance(recipients[spec], Recipient):
                raise KeyFileError(f"recipients[{spec!r}] must be a Recipient, got {type(recipients[spec]).__name__}")


def _pixels(image) -> np.ndarray:
    """What protect and plan take as a photo: a path, bytes (or a file object / memoryview), a PIL
    image or a uint8 (H, W, 3) RGB array; whatever reaches the codec is a uint8 RGB array."""
    from PIL import Image

    from .imageio import load_image, pil_to_rgb

    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
            raise ImageError(f"an image array must be uint8 (H, W, 3) RGB, got {image.dtype} {image.shape}")
        return image
    if isinstance(image, Image.Image):
        return pil_to_rgb(image)
    return load_image(_image_source(image))


def _image_source(image):
    """A path or bytes: file objects are read, memoryviews copied; anything else is refused here."""
    if isinstance(image, (str, os.PathLike, bytes)):
        return image
    if isinstance(image, (bytearray, memoryview)):
        return bytes(image)
    if hasattr(image, "read"):
        data = image.read()
        if isinstance(data, (bytes, bytearray)):
            return bytes(data)
    raise ImageError(f"expected an image path, bytes, a binary file object, a PIL image or a uint8 RGB array, "
                     f"got {type(image).__name__}")


def load_recipients(policy, keys_dir, passphrase=None, keep_metadata: Sequence[str] = ()) -> dict:
    """Every recipient the policy (and ``keep_metadata``) names, loaded before any work: a missing or
    bad key is an error even when no object of its rule is in this photo, and the message says where
    it came from.  The recipient ``passphrase`` is the passphrase given to protect (scrypt, as age)."""
    from .keys import load_recipient, passphrase_recipient

    out = {}
    for where, specs in _named_recipients(policy, keep_metadata):
        for spec in specs:
            if spec == PASSPHRASE_RECIPIENT and spec not in out:
                if passphrase is None:
                    raise KeyFileError(f"{policy.path}: {where}: recipient 'passphrase' needs a passphrase "
                                       "(--passphrase or --passphrase-file)")
                out[spec] = passphrase_recipient(passphrase)
            if spec not in out:
                try:
                    out[spec] = load_recipient(spec, Path(keys_dir))
                except KeyFileError as e:
                    raise KeyFileError(f"{policy.path}: {where}: recipient {spec!r}: {e}") from None
    return out


def _signing_key(sign):
    from .keys import SigningKey, load_signing_key

    if sign is None or isinstance(sign, SigningKey):
        return sign
    return load_signing_key(Path(sign))


def _verifying_key(signer):
    from .keys import SigningKey, VerifyingKey, load_verifying_key

    if signer is None or isinstance(signer, VerifyingKey):
        return signer
    if isinstance(signer, SigningKey):
        return signer.verifying_key
    return load_verifying_key(Path(signer))


def _check_signer(c, require_signer) -> None:
    """--require-signer: the file must carry a valid signature by exactly this key."""
    wanted = _verifying_key(require_signer)
    if wanted is None:
        return
    if c.signer is None:
        raise FormatError(f"the file is not signed (required signer: {wanted.key_id})")
    if c.signer.public_key != wanted.public_key:
        raise FormatError(f"the file is signed by {c.signer.key_id}, not by the required signer {wanted.key_id}")


def protect(image, policy, *, keys_dir="keys", quality: float = DEFAULT_QUALITY, regions: Sequence = (),
            regions_file=None, mask=None, detect: Sequence[str] | None = None, shape: str = "box",
            min_size: float = 0, pad: int | None = None, sign=None, passphrase: str | None = None,
            keep_metadata: Sequence[str] | None = None, codec: str | None = None, recipients: dict | None = None,
            effort: int = 0, **detector_options) -> ProtectResult:
    """Code ``image`` group by group and encrypt/drop groups as ``policy`` says.

    ``image`` is a path, bytes, a binary file object, a PIL image or a uint8 RGB array; ``policy``
    a TOML path or a Policy; ``regions``, ``detect``: as ``plan`` takes them (a region is
    "x0,y0,x1,y1[:label]" or (x0, y0, x1, y1[, label]); ``detect="face"`` is one detector);
    ``sign`` an ed25519 key file (or SigningKey) whose signature then covers every group;
    ``keep_metadata``: recipients (key names/paths) who get the original EXIF/XMP back, encrypted
    (default: the policy's ``[metadata]`` section; metadata is otherwise dropped for everyone);
    ``codec``: the group-independent backend, "avif" (the default: backends.DEFAULT) or "gicodec" (learned);
    ``effort`` 0 (default) .. 2: more encoding time for fewer bits (any privcodec decodes the file);
    ``recipients``: the policy's recipients already loaded (``load_recipients``), instead of ``keys_dir``.
    ``detect=None`` (the default) runs the detectors for the classes the policy names
    (``policy_detectors``), in addition to any regions; ``detect=[]`` runs none.  Group indices in
    the file are a random permutation with no gaps, so their order reveals neither class nor
    how many groups were redacted."""
    from PIL import Image

    from . import backends, container, masks, progress

    _check_detector_options("protect", detector_options)
    detect = _check_detect(detect)
    backend = backends.get(codec or backends.DEFAULT)
    quality = _check_quality(quality, backend.codec_id)
    effort = _check_effort(effort)
    if pad is not None:
        pad = _check_int("pad", pad, 1, container.MAX_PAD)
    policy = _policy(policy)
    signer = _signing_key(sign)
    if isinstance(keep_metadata, (str, os.PathLike)):
        keep_metadata = [os.fspath(keep_metadata)]   # one recipient, as keys= takes one key
    meta_to = list(policy.metadata if keep_metadata is None else keep_metadata)
    if recipients is None:      # every key checked before the photo is decoded
        recipients = load_recipients(policy, keys_dir, passphrase, meta_to)
    else:
        _check_recipients(recipients, policy, meta_to)
    if not isinstance(image, (np.ndarray, Image.Image)):
        image = _image_source(image)   # a file object is read once, for the pixels and the metadata
    pixels = _pixels(image)
    metadata = None
    if meta_to:
        from .imageio import read_metadata

        if isinstance(image, np.ndarray):
            raise PrivcodecError("keeping metadata needs the photo (a path, its bytes or a Pillow image), "
                                 "not a pixel array")
        metadata = (read_metadata(image), [recipients[r] for r in meta_to])
    planned = plan(pixels, policy, regions=regions, regions_file=regions_file, mask=mask, detect=detect, shape=shape,
                   min_size=min_size, **detector_options)
    group_map, decisions = planned.group_map, planned.decisions

    present = [i for i in range(len(group_map.groups)) if group_map.block_mask(i).any()]
    kept = [i for i in present if decisions[i].action != "redact"]
    secrets.SystemRandom().shuffle(kept)
    # File indices: a random order without gaps; redacted groups are numbered after them only for
    # coding (each stream depends on its own group's pixels and mask, not on the number).
    index = {old: new for new, old in enumerate(kept + [i for i in present if i not in kept])}
    lut = np.zeros(len(group_map.groups), dtype=np.int64)
    for old, new in index.items():
        lut[old] = new
    coded = lut[group_map.blocks]
    with progress.step(f"Coding {group_map.width}x{group_map.height}, {len(present)} groups"):
        streams = backend.encode_groups(pixels, coded, quality, effort)
    block_map = coded.astype(np.int32)
    public, protected = [], []
    for i in present:
        g, d, j = group_map.groups[i], decisions[i], index[i]
        if d.action == "public":
            public.append(container.PublicGroup(j, g.label, g.score, streams[j]))
        elif d.action == "encrypt":
            block_map[coded == j] = container.PROTECTED
            protected.append(container.ProtectedGroup(j, g.label, g.score, group_map.block_mask(i), streams[j],
                                                      [recipients[r] for r in d.recipients]))
        else:  # redact: not even ciphertext leaves this function
            block_map[coded == j] = container.REDACTED
    data = container.seal(width=group_map.width, height=group_map.height, block=masks.BLOCK,
                          codec_id=backend.codec_id, weights_sha256=backend.model_digest(), quality=quality,
                          block_map=block_map, public=public, protected=protected, pad=pad, signer=signer,
                          metadata=metadata)
    access = {g.index: sorted({r.key_id for r in g.recipients}) for g in protected}
    if metadata is not None:
        access[container.METADATA_INDEX] = sorted({r.key_id for r in metadata[1]})
    return ProtectResult(data, group_map, [d.action for d in decisions], planned.warnings,
                         {i: index[i] for i in kept}, access)


def _open(data: bytes, max_pixels: int | None = None):
    from . import backends, container, masks
    from .limits import MAX_PIXELS

    max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
    c = container.open_container(data)
    if c.block != masks.BLOCK:
        raise FormatError(f"unsupported block size {c.block} (this privcodec codes {masks.BLOCK}-px blocks)")
    if c.width * c.height > max_pixels:
        raise FormatError(f"image is {c.width}x{c.height}, over the limit of {max_pixels:,} pixels (--max-pixels)")
    c.backend = backends.for_codec_id(c.codec_id)
    if c.codec_id.startswith("gicodec-"):
        from . import codec   # every released model stays decodable; fail early for one we never had

        codec.weights_for(c.codec_id, c.weights_sha256)
    return c


def view(data, keys: Iterable = (), *, fill: str = "inpaint", require_signer=None,
         max_pixels: int | None = None, passphrase: str | None = None) -> ViewResult:
    """Decode what ``keys`` allow; everything else is filled from public pixels only.

    ``data``: the .prvc bytes or a path; ``keys``: one key file / Identity or several;
    ``require_signer``: an ed25519 .pub (or VerifyingKey) that must have signed the file;
    ``max_pixels``: refuse larger images (default limits.MAX_PIXELS)."""
    from PIL import Image

    from . import codec, container, progress
    from .inpaint import fill as fill_unknown

    if fill not in FILLS:
        raise PrivcodecError(f"fill must be one of {', '.join(FILLS)}, not {fill!r}")
    if max_pixels is not None:
        max_pixels = _check_int("max_pixels", max_pixels, 1)
    c = _open(_container_bytes(data), max_pixels)
    _check_signer(c, require_signer)
    opened = _unlock(c, _identities(keys, passphrase))
    grid = np.where(c.block_map >= 0, c.block_map, codec.UNKNOWN_GROUP).astype(np.int64)
    streams = {g.index: g.payload for g in c.public_groups}
    for g in opened:
        grid[g.block_mask] = g.index
        streams[g.index] = g.payload
    try:
        with progress.step(f"Decoding {c.width}x{c.height}, {len(streams)} groups"):
            pixels, known = c.backend.decode_groups(streams, grid, c.height, c.width, c.quality, c.weights_sha256)
    except (ValueError, RuntimeError, IndexError, OverflowError):
        # the container verified its hashes, so this is a forged or re-checksummed payload
        raise FormatError(CORRUPT) from None
    if not known.all():
        pixels = fill_unknown(pixels, known, method=fill)
    opened_ids = {g.index for g in opened}
    protected_ids = [ch.index for ch in c.protected_chunks]
    return ViewResult(Image.fromarray(pixels), pixels, sorted(opened_ids),
                      [i for i in protected_ids if i not in opened_ids],
                      bool((c.block_map == container.REDACTED).any()),
                      c.signer.key_id if c.signer else None, authenticity(c, opened), c.version, c.metadata)


def inspect(data, keys: Iterable = (), *, require_signer=None, passphrase: str | None = None) -> dict:
    """What a holder of ``keys`` can learn about the file (without decoding pixels)."""
    from . import container
    from .container import carrier

    raw = _raw_bytes(data)
    data = _container_bytes(raw)
    c = container.open_container(data)
    _check_signer(c, require_signer)
    opened = {g.index: g for g in _unlock(c, _identities(keys, passphrase))}
    values, counts = np.unique(c.block_map, return_counts=True)   # one pass, however many groups
    blocks = dict(zip(values.tolist(), counts.tolist()))
    groups = [{"index": g.index, "class": g.label, "score": round(float(g.score), 4), "access": "public",
               "bytes": len(g.payload), "blocks": blocks[g.index]} for g in c.public_groups]
    for ch in c.protected_chunks:
        # v2 recipients are anonymous: their number and key types only (v1 files list key ids)
        entry = {"index": ch.index, "access": "encrypted", "bytes": ch.length, "present": ch.present,
                 "recipients": [r.key_id or r.kind for r in ch.recipients]}
        if ch.index in opened:
            g = opened[ch.index]
            entry.update({"class": g.label, "score": round(float(g.score), 4), "opened": True,
                          "opened_by": g.opened_by, "blocks": int(g.block_mask.sum())})
        groups.append(entry)
    return {
        "version": c.version, "signer": c.signer.key_id if c.signer else None, "carrier": carrier.kind_of(raw),
        "authenticated": authenticity(c, list(opened.values())),
        "width": c.width, "height": c.height, "block": c.block, "codec": c.codec_id,
        "weights_sha256": c.weights_sha256.hex(), "quality": round(float(c.quality), 3),
        "bytes": len(data),
        "protected_blocks": int((c.block_map == container.PROTECTED).sum()),
        "redacted_blocks": int((c.block_map == container.REDACTED).sum()),
        "groups": sorted(groups, key=lambda g: g["index"]),
    }


def strip(data, keys: Iterable = (), *, passphrase: str | None = None) -> bytes:
    """Keep the public groups and the protected groups ``keys`` open; drop the rest.
    A carrier comes back as a carrier."""
    from . import container

    raw = _raw_bytes(data)
    c = container.open_container(_container_bytes(raw))
    identities = _identities(keys, passphrase)
    _unlock(c, identities)  # a key that opens nothing is a mistake, not a request to drop everything
    return _same_form(raw, c.strip(identities))


def grant(data, key, to, *, keys_dir="keys", passphrase: str | None = None, metadata: bool = False) -> bytes:
    """Let recipient ``to`` (a key name, a key file, a Recipient, or "passphrase" with ``passphrase``)
    open every group that ``key`` (one key file or Identity) opens — no re-encoding.  The kept
    EXIF/XMP (date, place) only with ``metadata``: who gets it was chosen apart from the groups.
    A file with nothing to grant comes back unchanged."""
    from . import container
    from .keys import Recipient, load_recipient, passphrase_recipient

    identities = _identities(key)
    if len(identities) != 1:
        raise KeyFileError("grant needs exactly one key (yours)")
    if isinstance(to, Recipient):
        recipient = passphrase_recipient(to.key) if to.kind == PASSPHRASE_RECIPIENT else to
    elif str(to) == PASSPHRASE_RECIPIENT:
        if passphrase is None:
            raise KeyFileError("granting to \"passphrase\" needs the passphrase (--passphrase or --passphrase-file)")
        recipient = passphrase_recipient(passphrase)
    else:
        recipient = load_recipient(to, Path(keys_dir))
    raw = _raw_bytes(data)
    c = container.open_container(_container_bytes(raw))
    chunks = {ch.index for ch in c.protected_chunks} | ({c.metadata_chunk.index} if metadata and c.metadata_chunk else set())
    if not chunks:
        return raw
    return _same_form(raw, c.grant(identities[0], recipient, only=chunks))
