"""FORMAT.md's vectors: the positive ones open, and every negative one is rejected as vectors.json says."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from privcodec.container import format as fmt
from privcodec.container import open_container
from privcodec.errors import DecryptionError, FormatError
from privcodec.keys import Identity
from test_container import VECTOR_KEY_SECRET, vector_container

HERE = Path(__file__).resolve().parent / "vectors"
INDEX = json.loads((HERE / "vectors.json").read_text())
KEY = Identity("symmetric", VECTOR_KEY_SECRET)
MESSAGES = {"not-prvc": re.escape(fmt.NOT_PRVC), "version": r"unsupported \.prvc version \d+",
            "corrupt": re.escape(fmt.CORRUPT), "decrypt": re.escape(fmt.CANNOT_DECRYPT)}


def test_the_set_covers_the_rules_and_is_current():
    import sys
    sys.path.insert(0, str(HERE))
    from make_vectors import vectors, vectors_v3, vectors_v4

    current = {**vectors(), **vectors_v3(), **vectors_v4()}
    assert sorted(current) == sorted(INDEX) and len(INDEX) >= 40
    for name, (_, _, data) in current.items():
        assert (HERE / INDEX[name]["file"]).read_bytes() == data, f"{name} is stale: run make_vectors.py"
        assert data not in (vector_container(), vector_container(version=2), vector_container(version=3))


@pytest.mark.parametrize("name", sorted(INDEX))
def test_a_reader_rejects_each_negative_vector(name):
    entry = INDEX[name]
    data = (HERE / entry["file"]).read_bytes()
    error = DecryptionError if entry["expect"] == "decrypt" else FormatError
    with pytest.raises(error, match="^" + MESSAGES[entry["expect"]] + "$"):
        c = open_container(data)
        assert entry["when"] != "reading", "the file parsed but should not have"
        c.unlock([KEY])
