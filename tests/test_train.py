"""The training command: runs, checkpoints, resumes where it stopped, exports loadable weights."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from privcodec.codec.train import load_photos, random_groups, train
from privcodec.codec.weights_io import load_weights
from privcodec.errors import PrivcodecError

from conftest import make_photo


@pytest.fixture
def photos(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(3):
        Image.fromarray(make_photo(80, 96, seed=i)).save(d / f"p{i}.jpg", quality=95)
    return d


def test_train_checkpoints_resumes_and_exports(tmp_path, photos):
    out = tmp_path / "run"
    log = []
    train(photos, out, iters=2, batch=2, crop=64, threads=1, ckpt_every=1, log=log.append)
    assert torch.load(out / "last.pt", weights_only=False)["iter"] == 2
    weights = train(photos, out, iters=3, batch=2, crop=64, threads=1, ckpt_every=1, log=log.append)
    assert any("resumed" in line and "iteration 2" in line for line in log)
    assert torch.load(out / "last.pt", weights_only=False)["iter"] == 3
    model = load_weights(weights)
    img = torch.rand(3, 32, 48)
    grid = torch.zeros(2, 3, dtype=torch.long)
    x_hat, known = model.decompress(model.compress(img, grid, 4.0), grid, 32, 48, 4.0)
    assert x_hat.shape == (3, 32, 48) and known.all()
    # a later session starts from the shipped weights file
    train(photos, tmp_path / "next", iters=1, batch=2, crop=64, threads=1, init=weights, log=log.append)
    assert any("initialised from" in line for line in log)


def test_the_seed_chooses_the_crops_and_the_same_seed_repeats_a_run(tmp_path, photos):
    def weights_after(seed, name):
        train(photos, tmp_path / name, iters=1, batch=2, crop=64, threads=1, seed=seed, warmup=0, log=lambda s: None)
        return torch.load(tmp_path / name / "last.pt", weights_only=False)["model"]

    first, again, other = weights_after(0, "a"), weights_after(0, "b"), weights_after(1, "c")
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_training_refuses_the_evaluation_set(tmp_path):
    kodak = tmp_path / "kodak"
    kodak.mkdir()
    Image.fromarray(make_photo(64, 64)).save(kodak / "kodim01.png")
    with pytest.raises(PrivcodecError, match="evaluation set"):     # the CLI's `Error: …`, not a bare exit
        load_photos(kodak)


def test_a_refused_run_creates_no_run_folder(tmp_path, photos):
    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    Image.fromarray(make_photo(160, 160)).save(evaluation / "kodim05.png")
    (tmp_path / "empty").mkdir()
    out = tmp_path / "run"
    for data, crop, words in ((evaluation, 64, "evaluation set"), (tmp_path / "empty", 64, "no photos"),
                              (photos, 128, "no photos with both sides >= 128 px")):
        with pytest.raises(PrivcodecError, match=words):
            train(data, out, iters=1, batch=2, crop=crop, threads=1, log=lambda s: None)
        assert not out.exists()


def test_random_groups_are_block_maps_with_one_to_k_groups():
    import random

    rng = random.Random(1)
    counts = [len(np.unique(random_groups(8, 8, rng, 3))) for _ in range(200)]
    assert min(counts) == 1 and max(counts) <= 3
    assert 0.3 < counts.count(1) / len(counts) < 0.8     # one group about half the time
    # --single-group: the share of crops coded whole (the rest: 2..max_groups, unless a group is painted over)
    mostly_split = [len(np.unique(random_groups(8, 8, rng, 4, single=0.1))) for _ in range(200)]
    assert max(mostly_split) == 4 and mostly_split.count(1) / len(mostly_split) < 0.25
    assert all(len(np.unique(random_groups(8, 8, rng, 4, single=1.0))) == 1 for _ in range(20))


def test_a_grown_checkerboard_network_trains_its_new_layers_faster_and_resumes(tmp_path, photos):
    from privcodec import codec
    from privcodec.codec.train import GROWN_LR_SCALE

    log = []
    parent = train(photos, tmp_path / "parent", iters=1, batch=2, crop=64, threads=1, log=log.append)
    out = tmp_path / "grown"
    train(photos, out, iters=1, batch=2, crop=64, threads=1, init=parent, checkerboard=True, warmup=0,
          log=log.append)
    assert any("grown into gicodec-3" in line for line in log)
    ckpt = torch.load(out / "last.pt", weights_only=False)
    assert ckpt["config"]["checkerboard"]
    groups = ckpt["opt"]["param_groups"]
    assert [g["lr_scale"] for g in groups] == [1.0, GROWN_LR_SCALE]
    assert groups[1]["lr"] == pytest.approx(GROWN_LR_SCALE * groups[0]["lr"])
    assert len(groups[1]["params"]) == len([k for k in ckpt["model"] if k.startswith("entropy.cb_context.")])
    weights = train(photos, out, iters=2, batch=2, crop=64, threads=1, checkerboard=True, log=log.append)
    assert torch.load(out / "last.pt", weights_only=False)["iter"] == 2
    assert codec.network_of(load_weights(weights)) == "gicodec-3"


def test_a_network_grown_with_synthesis_blocks_trains_only_those_faster_and_resumes(tmp_path, photos):
    from privcodec import codec
    from privcodec.codec.train import GROWN_LR_SCALE

    log = []
    parent = train(photos, tmp_path / "parent", iters=1, batch=2, crop=64, threads=1, checkerboard=True,
                   log=log.append)
    out = tmp_path / "grown"
    train(photos, out, iters=1, batch=2, crop=64, threads=1, init=parent, refine=True, warmup=0, log=log.append)
    assert any("grown into gicodec-4" in line for line in log)
    ckpt = torch.load(out / "last.pt", weights_only=False)
    assert ckpt["config"]["refine"] and ckpt["config"]["checkerboard"]
    assert ckpt["grown"] and all(name.startswith("g_s.convs.refiners.") for name in ckpt["grown"])
    # the parent's fp16 weights file rounds the likelihood floor to 0; the grown model has it back
    assert float(ckpt["model"]["entropy.gaussian_conditional.likelihood_lower_bound.bound"]) == pytest.approx(1e-9)
    groups = ckpt["opt"]["param_groups"]
    assert [g["lr_scale"] for g in groups] == [1.0, GROWN_LR_SCALE]
    assert len(groups[1]["params"]) == len(ckpt["grown"])
    weights = train(photos, out, iters=2, batch=2, crop=64, threads=1, refine=True, log=log.append)
    resumed = torch.load(out / "last.pt", weights_only=False)
    assert resumed["iter"] == 2 and resumed["grown"] == ckpt["grown"]
    assert codec.network_of(load_weights(weights)) == "gicodec-4"
    # a later run from these weights keeps their network without being told (flags only grow one)
    again = train(photos, tmp_path / "again", iters=1, batch=2, crop=64, threads=1, init=weights, log=log.append)
    assert codec.network_of(load_weights(again)) == "gicodec-4"


def test_the_learning_rate_warms_up_holds_then_decays_to_the_floor():
    from privcodec.codec.train import lr_at

    assert lr_at(0, 100, 1e-4, 1e-5, warmup=10) == pytest.approx(1e-5)
    assert lr_at(50, 100, 1e-4, 1e-5, warmup=10, decay_frac=0.4) == pytest.approx(1e-4)
    assert lr_at(80, 100, 1e-4, 1e-5, warmup=10, decay_frac=0.4) == pytest.approx(5.5e-5)
    assert lr_at(100, 100, 1e-4, 1e-5, warmup=10, decay_frac=0.4) == pytest.approx(1e-5)
    # sized by time: the clock's progress replaces it/total
    assert lr_at(50, 10**6, 1e-4, 1e-5, warmup=10, decay_frac=0.4, progress=0.8) == pytest.approx(5.5e-5)
    assert lr_at(50, 10**6, 1e-4, 1e-5, warmup=10, decay_frac=0.4, progress=1.0) == pytest.approx(1e-5)


def test_a_time_limited_run_stops_when_its_time_is_up_and_exports(tmp_path, photos, monkeypatch):
    import privcodec.codec.train as training

    clock = [1000.0]
    monkeypatch.setattr(training.time, "time", lambda: clock[0])
    seen_lrs = []
    real_step = torch.optim.Adam.step

    def step(self, *a, **k):
        seen_lrs.append(self.param_groups[0]["lr"])
        clock[0] += 10.0             # model and aux step: 20 s an iteration, of a 35 s budget
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    out = tmp_path / "run"
    weights = train(photos, out, iters=10**6, batch=2, crop=64, threads=1, warmup=0, lr=1e-4, lr_floor=1e-5,
                    decay_frac=0.5, time_limit=35, ema_decay=0, log=lambda s: None)
    done = torch.load(out / "last.pt", weights_only=False)["iter"]
    assert done == 2      # the 2nd iteration ends at 40 s, past the deadline
    assert seen_lrs[0] == pytest.approx(1e-4)
    assert seen_lrs[2] == pytest.approx(1e-5 + 9e-5 * 0.5 * (1 + math.cos(math.pi * (20 / 35 - 0.5) / 0.5)))
    assert load_weights(weights).meta["iterations"] == done


def test_export_is_reproducible_and_keeps_or_rebuilds_coding_tables_as_asked(tmp_path, photos):
    """The same checkpoint exports to the same bytes (a weights file's hash names its model);
    a training checkpoint's tables are built fresh at export (with --scale-levels too), a
    weights file keeps its own unless the scale count changes."""
    import hashlib

    from privcodec.codec.weights_io import export_checkpoint

    out = tmp_path / "run"
    train(photos, out, iters=2, batch=2, crop=64, threads=1, ckpt_every=1, log=lambda line: None)
    first, again = export_checkpoint(out / "last.pt", tmp_path / "a.pt"), export_checkpoint(out / "last.pt", tmp_path / "b.pt")
    assert hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(again.read_bytes()).digest()
    plain = torch.load(first, weights_only=True)
    assert plain["config"]["scale_levels"] == 256 and "ema" in plain["meta"]

    coarse = torch.load(export_checkpoint(out / "last.pt", tmp_path / "c.pt", scale_levels=64), weights_only=True)
    assert coarse["state"]["entropy.gaussian_conditional.scale_table"].numel() == 64
    for key in ("_quantized_cdf", "_offset", "_cdf_length"):   # the z coder's tables: from the same weights
        assert torch.equal(coarse["state"][f"entropy.entropy_bottleneck.{key}"], plain["state"][f"entropy.entropy_bottleneck.{key}"])

    kept = torch.load(export_checkpoint(tmp_path / "c.pt", tmp_path / "d.pt"), weights_only=True)
    assert all(torch.equal(kept["state"][k], coarse["state"][k]) for k in coarse["state"])
    model = load_weights(tmp_path / "d.pt")
    img, grid = torch.rand(3, 32, 48), torch.zeros(2, 3, dtype=torch.long)
    x_hat, known = model.decompress(model.compress(img, grid, 4.0), grid, 32, 48, 4.0)
    assert known.all()
