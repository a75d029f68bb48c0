"""The `privcodec` console script, run for real in a subprocess."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = shutil.which("privcodec", path=str(Path(sys.executable).parent)) or "privcodec"
REPO = Path(__file__).resolve().parents[1]


def run(*args, cwd=None, ok=True):
    env = {**os.environ, "PRIVCODEC_THREADS": "1"}
    r = subprocess.run([SCRIPT, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def fails_cleanly(r, *words):
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in lines[0]


@pytest.fixture
def protected(tmp_path, photo_path, keys_dir, face_policy):
    out = tmp_path / "photo.prvc"
    run("protect", photo_path, "-o", out, "--policy", face_policy, "--keys-dir", keys_dir,
        "--region", "16,16,48,64:face", "--quality", "3.5")
    return out


def test_keygen_writes_private_files(tmp_path):
    r = run("keygen", "bob", "--dir", tmp_path, "--type", "x25519")
    assert (tmp_path / "bob.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "bob.pub").exists() and "key id" in r.stdout
    fails_cleanly(run("keygen", "bob", "--dir", tmp_path, ok=False), "exists")


def test_protect_view_inspect_strip_grant(tmp_path, protected, keys_dir):
    info = json.loads(run("inspect", protected, "--json").stdout)
    locked = [g for g in info["groups"] if g["access"] == "encrypted"]
    assert len(locked) == 1 and "class" not in locked[0]

    keyless = run("view", protected, "-o", tmp_path / "public.png")
    assert "note:" in keyless.stderr and (tmp_path / "public.png").exists()
    run("view", protected, "-o", tmp_path / "full.png", "--key", keys_dir / "alice.key")
    run("view", protected, "-o", tmp_path / "solid.png", "--fill", "solid")

    run("grant", protected, "-o", tmp_path / "granted.prvc", "--key", keys_dir / "family.key",
        "--to", "stranger", "--keys-dir", keys_dir)
    shown = run("inspect", tmp_path / "granted.prvc", "--key", keys_dir / "stranger.key").stdout
    assert "face" in shown and "opened" in shown

    run("strip", protected, "-o", tmp_path / "stripped.prvc")
    assert (tmp_path / "stripped.prvc").stat().st_size < protected.stat().st_size
    assert "stripped" in run("inspect", tmp_path / "stripped.prvc").stdout


def test_cli_py_shim_behaves_like_the_console_script(protected):
    a = run("inspect", protected, "--json").stdout
    b = subprocess.run([sys.executable, str(REPO / "cli.py"), "inspect", str(protected), "--json"],
                       capture_output=True, text=True, check=True, env={**os.environ, "PRIVCODEC_THREADS": "1"}).stdout
    assert a == b


def test_outputs_are_never_overwritten_without_force(tmp_path, protected):
    out = tmp_path / "v.png"
    out.write_bytes(b"keep me")
    fails_cleanly(run("view", protected, "-o", out, ok=False), "--force")
    assert out.read_bytes() == b"keep me"
    run("view", protected, "-o", out, "--force")
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_grant_with_nothing_new_to_grant_still_writes_the_carrier(tmp_path, photo_path, keys_dir, face_policy):
    shared = tmp_path / "shared.png"
    run("protect", photo_path, "-o", shared, "--policy", face_policy, "--keys-dir", keys_dir,
        "--region", "16,16,48,64:face", "--quality", "3.5")
    r = run("grant", shared, "-o", tmp_path / "g.png", "--key", keys_dir / "family.key", "--to", "family",
            "--keys-dir", keys_dir)
    assert "family can already open" in r.stderr
    assert (tmp_path / "g.png").read_bytes() == shared.read_bytes()
    # strip and grant keep the input's form: an output named for another one is refused before any work
    for command, extra in (("strip", ()), ("grant", ("--key", keys_dir / "family.key", "--to", "family",
                                                     "--keys-dir", keys_dir))):
        for name, form in (("s.prvc", ".png name"), ("s.jpg", ".png name"), ("s.webp", ".png name")):
            fails_cleanly(run(command, shared, "-o", tmp_path / name, *extra, ok=False), "PNG carrier", form)
            assert not (tmp_path / name).exists()
        raw = tmp_path / "raw.prvc"
        run("strip", shared, "-o", tmp_path / "raw.png", "--force")
        raw.write_bytes(privcodec_container(tmp_path / "raw.png"))
        fails_cleanly(run(command, raw, "-o", tmp_path / "r.jpg", *extra, ok=False), "a .prvc file", ".prvc name")


def privcodec_container(carrier_path) -> bytes:
    from privcodec.container import carrier

    return carrier.extract(carrier_path.read_bytes())


def test_protect_refuses_an_image_name_it_cannot_write_as_a_carrier(tmp_path, photo_path, keys_dir, face_policy):
    out = tmp_path / "photo.webp"   # a raw .prvc under this name would open nowhere
    fails_cleanly(run("protect", photo_path, "-o", out, "--policy", face_policy, "--keys-dir", keys_dir,
                      ok=False), ".jpg or .png carrier")
    assert not out.exists()


def test_protect_refuses_a_carrier_its_output_name_does_not_match(tmp_path, photo_path, keys_dir, face_policy):
    # a PNG in a .jpg (or a .dat) file opens nowhere, or as the wrong thing: refused before any work,
    # as -o x.webp is
    args = ("--policy", face_policy, "--keys-dir", keys_dir, "--region", "16,16,48,64:face")
    for name, kind, wanted in (("s.jpg", "png", ".png name"), ("s.dat", "png", ".png name"),
                               ("s.png", "jpeg", ".jpg name"), ("s.prvc", "jpeg", ".jpg name"),
                               ("s.jpg", "prvc", ".prvc name")):
        r = run("protect", photo_path, "-o", tmp_path / name, "--carrier", kind, *args, ok=False)
        fails_cleanly(r, f"--carrier {kind}", wanted)
        assert not (tmp_path / name).exists()
    run("protect", photo_path, "-o", tmp_path / "s.jpeg", "--carrier", "jpeg", *args)   # the name agrees
    assert (tmp_path / "s.jpeg").read_bytes()[:2] == b"\xff\xd8"
    # standard output has no name: there --carrier says what to write
    png = subprocess.run([SCRIPT, "protect", photo_path, "-o", "-", "--carrier", "png", *map(str, args)],
                         capture_output=True, env={**os.environ, "PRIVCODEC_THREADS": "1"}, check=True, timeout=300)
    assert png.stdout[:4] == b"\x89PNG"


def test_detect_with_a_policy_says_which_files_it_wrote(tmp_path, photo_path, face_policy):
    preview = tmp_path / "groups.png"
    r = run("detect", photo_path, "--policy", face_policy, "--preview", preview)
    assert preview.exists() and f"wrote {preview}" in r.stdout
    assert "nothing written" not in r.stdout and "no protected file written" in r.stdout
    r = run("detect", photo_path, "--policy", face_policy)
    assert "dry run: nothing written" in r.stdout and "wrote" not in r.stdout


def test_detect_refuses_json_with_policy_before_any_work(tmp_path, photo_path, face_policy):
    r = run("detect", photo_path, "--policy", face_policy, "--json", tmp_path / "d.json", ok=False)
    fails_cleanly(r, "--preview")
    assert r.stdout == "" and not (tmp_path / "d.json").exists()


def test_passphrase_file_is_an_input_and_must_be_text(tmp_path, protected):
    secret = tmp_path / "pw.txt"
    secret.write_text("correct horse\n")
    fails_cleanly(run("strip", protected, "-o", secret, "--passphrase-file", secret, "--force", ok=False))
    assert secret.read_text() == "correct horse\n"
    secret.write_bytes(b"\xff\xfe\x00p\n")
    fails_cleanly(run("view", protected, "-o", tmp_path / "v.png", "--passphrase-file", secret, ok=False), "UTF-8")


def test_a_passphrase_nothing_is_encrypted_for_is_refused_not_ignored(tmp_path, photo_path, keys_dir, face_policy,
                                                                    protected):
    # the user would believe the file opens with the passphrase: refused before any work, not keyed
    # for the policy's other recipients only
    secret = tmp_path / "pw.txt"
    secret.write_text("correct horse battery\n")
    for option in (("--passphrase-file", secret), ("--passphrase",)):
        r = run("protect", photo_path, "-o", tmp_path / "p.prvc", "--policy", face_policy, "--keys-dir", keys_dir,
                "--region", "16,16,48,64:face", *option, ok=False)
        fails_cleanly(r, "faces.toml", "recipient 'passphrase'", option[0])
        assert not (tmp_path / "p.prvc").exists()
    fails_cleanly(run("protect", photo_path, "--dry-run", "--policy", face_policy, "--no-detect",
                      "--passphrase-file", secret, ok=False), "recipient 'passphrase'")
    # grant reads a passphrase only to grant to it: the file is opened with --key
    r = run("grant", protected, "-o", tmp_path / "g.prvc", "--key", keys_dir / "family.key", "--to", "stranger",
            "--keys-dir", keys_dir, "--passphrase-file", secret, ok=False)
    fails_cleanly(r, "--passphrase-file", "--to passphrase")
    assert not (tmp_path / "g.prvc").exists()


def test_every_bad_input_is_one_clean_error_line(tmp_path, protected, photo_path, keys_dir, face_policy):
    not_image = tmp_path / "x.jpg"
    not_image.write_text("hello")
    fails_cleanly(run("protect", not_image, "-o", tmp_path / "a.prvc", "--policy", face_policy,
                      "--keys-dir", keys_dir, ok=False))
    fails_cleanly(run("protect", tmp_path / "missing.png", "-o", tmp_path / "a.prvc", "--policy", face_policy,
                      ok=False))
    bad_policy = tmp_path / "bad.toml"
    bad_policy.write_text("[[rule]]\nmatch = ['face']\naction = 'encrypt'\n")
    fails_cleanly(run("protect", photo_path, "-o", tmp_path / "a.prvc", "--policy", bad_policy, ok=False), "bad.toml")
    data = protected.read_bytes()
    for name, blob in [("truncated", data[: len(data) // 2]), ("tampered", data[:40] + bytes([data[40] ^ 1]) + data[41:]),
                       ("version", data[:4] + b"\x63" + data[5:]), ("empty", b"")]:
        f = tmp_path / f"{name}.prvc"
        f.write_bytes(blob)
        fails_cleanly(run("view", f, "-o", tmp_path / f"{name}.png", ok=False))
        assert not (tmp_path / f"{name}.png").exists()
    fails_cleanly(run("view", protected, "-o", tmp_path / "k.png", "--key", tmp_path / "nokey.key", ok=False))
    fails_cleanly(run("grant", protected, "-o", tmp_path / "g.prvc", "--key", keys_dir / "stranger.key",
                      "--to", "family", "--keys-dir", keys_dir, ok=False))
    fails_cleanly(run("protect", photo_path, "-o", tmp_path / "q.prvc", "--policy", face_policy, "--quality", "0",
                      ok=False), "quality")
    assert list(tmp_path.glob("*.tmp")) == [] and list(tmp_path.glob(".*tmp*")) == []


def test_detect_finds_the_face_in_the_bundled_photo(tmp_path):
    photo = REPO / "privcodec" / "data" / "astronaut.jpg"
    r = run("detect", photo, "--detect", "face", "--json", tmp_path / "r.json", "--preview", tmp_path / "p.png")
    assert "face" in r.stdout
    assert json.loads((tmp_path / "r.json").read_text()) and (tmp_path / "p.png").exists()
    assert f"wrote {tmp_path / 'r.json'}" in r.stdout and f"wrote {tmp_path / 'p.png'}" in r.stdout


def test_help_is_fast_and_does_not_import_torch():
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", "import privcodec.cli"], capture_output=True,
                       text=True)
    assert " torch" not in r.stderr


def test_outputs_never_replace_the_input_or_special_files(tmp_path, photo_path, keys_dir, face_policy, protected):
    args = ("--policy", face_policy, "--keys-dir", keys_dir, "--region", "16,16,48,64:face", "--force")
    before = photo_path.read_bytes()
    fails_cleanly(run("protect", photo_path, "-o", photo_path, *args, ok=False), "input")
    assert photo_path.read_bytes() == before
    os.mkfifo(tmp_path / "pipe.png")
    fails_cleanly(run("view", protected, "-o", tmp_path / "pipe.png", "--force", ok=False), "regular file")
    fails_cleanly(run("view", protected, "-o", tmp_path / "out.tif", ok=False), ".tif")     # before decoding


def test_dash_is_standard_input_and_output(tmp_path, photo_path, keys_dir, face_policy):
    env = {**os.environ, "PRIVCODEC_THREADS": "1"}
    prvc = subprocess.run([SCRIPT, "protect", "-", "-o", "-", "--policy", face_policy, "--keys-dir", keys_dir,
                           "--region", "16,16,48,64:face"], input=photo_path.read_bytes(), capture_output=True,
                          env=env, check=True)
    assert prvc.stdout[:4] == b"PRVC" and b"wrote standard output" in prvc.stderr
    png = subprocess.run([SCRIPT, "view", "-", "-o", "-", "--key", keys_dir / "family.key"], input=prvc.stdout,
                         capture_output=True, env=env, check=True)
    assert png.stdout[:4] == b"\x89PNG" and b"wrote" in png.stderr


def test_protect_says_when_nothing_is_protected(tmp_path, photo_path, keys_dir, face_policy):
    r = run("protect", photo_path, "-o", tmp_path / "a.prvc", "--policy", face_policy, "--keys-dir", keys_dir,
            "--no-detect")
    assert "whole image is public" in r.stderr
    r = run("protect", photo_path, "-o", tmp_path / "b.prvc", "--policy", face_policy, "--keys-dir", keys_dir,
            "--region", "0,0,128,96:face")
    assert "groups: 1 encrypt)" in r.stdout                  # the background owns no block: not counted


def test_lossless_and_another_codec_contradict_each_other(tmp_path, photo_path, keys_dir, face_policy):
    for codec_name in ("gicodec", "avif"):
        fails_cleanly(run("protect", photo_path, "-o", tmp_path / "x.prvc", "--policy", face_policy, "--keys-dir",
                          keys_dir, "--no-detect", "--lossless", "--codec", codec_name, ok=False), "contradict")
    run("protect", photo_path, "-o", tmp_path / "x.prvc", "--policy", face_policy, "--keys-dir", keys_dir,
        "--no-detect", "--lossless", "--codec", "lossless")


def test_train_refuses_a_learning_rate_floor_above_the_peak(tmp_path):
    r = run("train", tmp_path, "--lr", "1e-4", "--lr-floor", "1e-3", "--out", tmp_path / "run", ok=False)
    assert r.returncode == 2 and "--lr-floor" in r.stderr and not (tmp_path / "run").exists()


def test_train_refuses_bad_data_cleanly_and_leaves_no_run_folder(tmp_path):
    from PIL import Image

    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    Image.new("RGB", (160, 160), (90, 120, 150)).save(evaluation / "kodim01.png")
    (tmp_path / "empty").mkdir()
    for data, words in ((evaluation, ("evaluation set", "kodim01.png")), (tmp_path / "empty", ("no photos",))):
        r = run("train", data, "--out", tmp_path / "run", "--iters", "1", "--threads", "1", ok=False)
        fails_cleanly(r, *words)
        assert not (tmp_path / "run").exists()


def test_tool_errors_are_one_line_too(tmp_path, photo_path):
    fails_cleanly(run("export-weights", photo_path, "-o", tmp_path / "w.pt", ok=False), "checkpoint")
    import torch

    for name, blob in {"no-iter.pt": {"config": {}, "model": {}, "ema": {"x": 1}},
                       "bad-field.pt": {"config": {"bogus": 1}, "model": {}, "iter": 5},
                       "bad-config.pt": {"config": 5, "model": {}},
                       "other-net.pt": {"config": {}, "state": {"a": torch.zeros(1)}}}.items():
        torch.save(blob, tmp_path / name)
        fails_cleanly(run("export-weights", tmp_path / name, "-o", tmp_path / "w.pt", ok=False), "checkpoint")
    assert not (tmp_path / "w.pt").exists()
    (tmp_path / "empty").mkdir()
    fails_cleanly(run("bench", "rd", "--dataset", tmp_path / "empty", ok=False), "no images")
    commands = run("--help").stdout.split("Commands:")[1]
    assert "..." not in commands                             # the command list is not cut off


def test_protect_with_effort_makes_a_file_every_reader_opens(tmp_path, photo_path, keys_dir, face_policy):
    out = tmp_path / "e.prvc"
    run("protect", photo_path, "-o", out, "--policy", face_policy, "--keys-dir", keys_dir, "--codec", "gicodec",
        "--region", "16,16,48,64:face", "--effort", "1")
    run("view", out, "-o", tmp_path / "e.png", "--key", keys_dir / "family.key")
    assert (tmp_path / "e.png").exists()
    r = run("protect", photo_path, "-o", tmp_path / "x.prvc", "--policy", face_policy, "--keys-dir", keys_dir,
            "--effort", "3", ok=False)
    assert r.returncode != 0 and "--effort" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.prvc").exists()


def test_export_weights_replaces_only_a_regular_file_it_is_told_to(tmp_path):
    weights = REPO / "privcodec" / "codec" / "weights" / "gicodec.pt"
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"a photo")
    fails_cleanly(run("export-weights", weights, "-o", victim, ok=False), "exists", "--force")
    assert victim.read_bytes() == b"a photo"
    copy = tmp_path / "w.pt"
    shutil.copy(weights, copy)
    fails_cleanly(run("export-weights", copy, "-o", copy, "--force", ok=False), "overwrite the input")
    fails_cleanly(run("export-weights", weights, "-o", "/dev/null", "--force", ok=False), "not a regular file")
    fails_cleanly(run("export-weights", weights, "-o", tmp_path / "nodir" / "w.pt", ok=False), "no such directory")
    # the packaged file itself is replaced only with --force (files made with it must find it first)
    fails_cleanly(run("export-weights", copy, ok=False), "exists", "--force")


def test_numbers_that_are_not_finite_are_refused(tmp_path, photo_path, face_policy, keys_dir):
    for option in ("--min-score", "--min-size"):
        for value in ("nan", "inf"):
            r = run("protect", photo_path, "-o", tmp_path / "x.prvc", "--policy", face_policy, "--keys-dir", keys_dir,
                    "--detect", "face", option, value, ok=False)
            assert r.returncode == 2 and f"Invalid value for '{option}'" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.prvc").exists()


def test_asking_for_a_passphrase_without_a_terminal_is_refused_not_read_from_the_data(tmp_path, protected):
    env = {**os.environ, "PRIVCODEC_THREADS": "1"}
    r = subprocess.run([SCRIPT, "view", "-", "-o", str(tmp_path / "v.png"), "--passphrase"],
                       stdin=open(protected, "rb"), capture_output=True, text=True, env=env, timeout=300,
                       start_new_session=True)     # no controlling terminal, as under cron or CI
    fails_cleanly(r, "--passphrase-file")
    assert r.returncode == 1 and not (tmp_path / "v.png").exists()


def test_pillow_warnings_about_a_photo_are_one_line(tmp_path, keys_dir, face_policy):
    from PIL import Image

    exif = Image.Exif()
    exif[0x0132], exif[0x0112] = "2020:01:01 00:00:00", 1
    path = tmp_path / "truncated-exif.jpg"
    # the EXIF block cut short, as some phone apps write it: Pillow warns "Truncated File Read"
    Image.new("RGB", (64, 48), (90, 120, 150)).save(path, exif=exif.tobytes()[:-4])
    r = run("protect", path, "-o", tmp_path / "p.prvc", "--policy", face_policy, "--keys-dir", keys_dir,
            "--no-detect", "--codec", "avif")
    warned = [line for line in r.stderr.splitlines() if "Truncated" in line]
    assert warned and all(line.startswith("warning: ") for line in warned), r.stderr
    assert "UserWarning" not in r.stderr and "warnings.warn" not in r.stderr
