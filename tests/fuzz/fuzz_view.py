"""Fuzz the whole read path — parse, unlock, decode, fill — as a keyless attacker would.

Every input must end in a clean PrivcodecError or a valid image, within bounded time and
memory.  Inputs are mutations of the seed corpus (tests/fuzz/corpus and tests/fixtures/v1 to v4),
most of them *re-hashed*: after editing a payload or a header field, the unkeyed hashes and the
checksum are recomputed, as anyone can, so the edit reaches the codec instead of being stopped
by the checksum.  Run in a subprocess: a hang in compressai's C++ holds the GIL.

    python tests/fuzz/fuzz_view.py --iterations 200 --seed 1      # what the test suite runs
    python tests/fuzz/fuzz_view.py --seconds 1800                 # make fuzz
Failing inputs are written to --crashes (default fuzz-crashes/).
"""
from __future__ import annotations

import argparse
import hashlib
import random
import resource
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import privcodec  # noqa: E402
from privcodec.container import format as fmt  # noqa: E402
from privcodec.errors import PrivcodecError  # noqa: E402
from privcodec.keys import load_identity  # noqa: E402

KEYS = [load_identity(ROOT / "tests/fixtures/keys" / n) for n in ("fixture-sym.key", "fixture-x25519.key")]


def seeds() -> list[bytes]:
    corpus = ROOT / "tests/fuzz/corpus"
    paths = (sorted(corpus.glob("*.prvc")) + sorted((ROOT / "tests/fixtures/v1").glob("*.prvc"))
             + sorted((ROOT / "tests/fixtures").glob("v[2-9]/*.prvc")))   # every codec id and format version
    return [p.read_bytes() for p in paths + sorted(corpus.glob("carrier.*"))]   # carriers: the extract path


def checksummed(body: bytes, version: int) -> bytes:
    return body + hashlib.sha256(body).digest()[:fmt.checksum_len(version)]


def rehash_payload(data: bytes, rng: random.Random) -> bytes:
    """Edit one public payload (flip bits, randomise, resize) and fix every unkeyed hash."""
    c = fmt.open_container(data)
    g = rng.choice(c.public_groups)
    old = g.payload
    choice = rng.random()
    if choice < 0.6 and old:
        p = bytearray(old)
        for _ in range(rng.randint(1, 3)):
            p[rng.randrange(len(p))] ^= 1 << rng.randrange(8)
        new = bytes(p)
    elif choice < 0.8:
        new = rng.randbytes(rng.randint(0, 2 * len(old) + 8))
    else:
        new = old[:rng.randint(0, len(old))] + rng.randbytes(rng.randint(0, 16))
    g.payload = new
    # the core rebuilt from its fields: the new length (and, before version 3, the payload's hash)
    declared = [(i, n, c._declared_hashes.get(i, b"")) for i, n in c._declared.items()]
    core = fmt._core(c.file_id, c.width, c.height, c.block, c.codec_id, c.weights_sha256, c.quality,
                     c.block_map, c.public_groups, declared, c.version)
    return fmt._assemble(core, c.public_groups, c._chunks, c.version, c.signatures)


def rehash_core_field(data: bytes, rng: random.Random) -> bytes:
    """Flip a bit of the core (size, block map, quality, tables) and recompute the checksum."""
    c = fmt.open_container(data)
    core = bytearray(c._core)
    core[rng.randrange(5, len(core))] ^= 1 << rng.randrange(8)
    return fmt._assemble(bytes(core), c.public_groups, c._chunks, c.version, c.signatures)


def mutate(data: bytes, rng: random.Random) -> bytes:
    if data[:4] != b"PRVC":   # a carrier: damage its segments / chunk, or the embedded container
        b = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b) if rng.random() < 0.7 else bytes(b[:rng.randrange(len(b))])
    r = rng.random()
    if r < 0.45:
        return rehash_payload(data, rng)
    if r < 0.65:
        return rehash_core_field(data, rng)
    if r < 0.8:   # plain bit flips, checksum fixed
        n = fmt.checksum_len(data[4])
        b = bytearray(data[:-n])
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        return checksummed(bytes(b), data[4])
    if r < 0.9:
        return data[:rng.randrange(len(data))]
    return data[:5] + rng.randbytes(rng.randint(0, 600))


def run_one(data: bytes) -> str:
    outcomes = []
    for keys in ([], KEYS):
        try:
            result = privcodec.view(data, keys, fill="inpaint")
            assert result.pixels.dtype.name == "uint8" and result.pixels.ndim == 3
            outcomes.append("image")
        except PrivcodecError as e:
            outcomes.append(type(e).__name__)
    try:
        privcodec.inspect(data, KEYS)
    except PrivcodecError:
        pass
    return "/".join(outcomes)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=0, help="stop after N inputs (0: no limit)")
    ap.add_argument("--seconds", type=float, default=0, help="stop after this many seconds (0: no limit)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--crashes", type=Path, default=Path("fuzz-crashes"))
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    corpus = seeds()
    start, worst, n, counts, failures = time.time(), 0.0, 0, {}, 0
    while (not args.iterations or n < args.iterations) and (not args.seconds or time.time() - start < args.seconds):
        try:
            data = mutate(rng.choice(corpus), rng)
        except PrivcodecError:
            continue
        t = time.time()
        try:
            outcome = run_one(data)
        except Exception:   # anything but a clean error or an image is a bug
            failures += 1
            args.crashes.mkdir(parents=True, exist_ok=True)
            path = args.crashes / f"crash-{hashlib.sha256(data).hexdigest()[:16]}.prvc"
            path.write_bytes(data)
            print(f"FAIL {path}\n{traceback.format_exc()}", file=sys.stderr)
            outcome = "FAIL"
        worst = max(worst, time.time() - t)
        counts[outcome] = counts.get(outcome, 0) + 1
        n += 1
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{n} inputs in {time.time() - start:.0f} s; slowest {worst:.2f} s; peak RSS {peak_mb:.0f} MB; "
          f"failures {failures}; outcomes {dict(sorted(counts.items()))}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
