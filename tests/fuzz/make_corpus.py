"""Seed corpus for the fuzzers: small real files as privcodec writes them (FORMAT v3; learned-two-tiles.prvc v4).

    python tests/fuzz/make_corpus.py [NAME...]    # from the repository root; the fixtures are seeds too
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
import privcodec  # noqa: E402
from conftest import make_photo  # noqa: E402

KEYS = ROOT / "tests/fixtures/keys"
POLICY = ROOT / "tests/fixtures/policy.toml"
OUT = Path(__file__).resolve().parent / "corpus"
photo = make_photo(48, 64, seed=3)
common = dict(keys_dir=KEYS, detect=[], quality=3.0)
files = {
    "protected-redacted.prvc": lambda: privcodec.protect(photo, POLICY, regions=["8,8,30,30:face", "40,30,64,48:license_plate"],
                                                         **common),
    "signed.prvc": lambda: privcodec.protect(photo, POLICY, regions=["30,0,64,20:face"], sign=KEYS / "fixture-signer.key",
                                             **common),
    "public-only.prvc": lambda: privcodec.protect(photo[:32, :32], POLICY, regions=[], **common),
    # two 1024-px tiles of the learned codec (gicodec-5: uvarint tile lengths), a face across the edge
    "learned-two-tiles.prvc": lambda: privcodec.protect(make_photo(48, 1040, seed=5), POLICY, codec="gicodec",
                                                        regions=["1000,8,1040,40:face"], **common),
}
wanted = sys.argv[1:] or list(files)     # e.g. learned-two-tiles.prvc: add one seed, keep the others
for name in wanted:
    res = files[name]()
    (OUT / name).write_bytes(res.data)
    print(name, len(res.data))
