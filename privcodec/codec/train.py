"""Train GICodec on CPU (or GPU if present) from a folder of photos.

    photos ─▶ RAM cache (uint8, short side ≤ 512) ─▶ random crops + random
    block-level group masks ─▶ GICodec.forward ─▶ λ(q)·255²·MSE + bpp (each
    group's own bits) ─▶ Adam (+ aux step for the factorised prior)

Variable rate: every sample draws a quality q ∈ [1, 8] and its λ.
An exponential moving average (EMA) of the weights is kept and is what gets
evaluated and exported: late in a run it is worth more than lowering the
learning rate further.  Every --holdout-th photo is never trained on and gives
the evaluation crops (real bitstreams, q2/q5/q8), so runs can be compared
without touching Kodak.
Checkpoints go to OUT/last.pt every --ckpt-every iterations (atomic), and a
run resumes from it.  Never point --data at the evaluation set (Kodak).
"""
from __future__ import annotations

import math
import random
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import PrivcodecError
from .model import CDF_BUFFERS, CodecConfig, GICodec
from .weights_io import atomic_torch_save, export_weights, load_checkpoint

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"}


def photo_paths(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTS)


def split_holdout(paths: list[Path], every: int) -> tuple[list[Path], list[Path]]:
    """(training paths, held-out paths): every `every`-th photo (by sorted name) is held out."""
    if every <= 0:
        return list(paths), []
    return ([p for i, p in enumerate(paths) if i % every != every // 2],
            [p for i, p in enumerate(paths) if i % every == every // 2])


def refuse_evaluation_set(paths: list[Path]) -> None:
    """Kodak is what every result is measured on: a PrivcodecError (the CLI's `Error: …`) if any path is in it."""
    for path in paths:
        if "kodak" in str(path).lower() or path.name.lower().startswith("kodim"):
            raise PrivcodecError(f"refusing to train on the evaluation set: {path}")


def load_photos(folder: Path | list[Path], max_short_side: int = 512, min_side: int = 128) -> list[np.ndarray]:
    from PIL import Image, ImageOps

    photos = []
    paths = photo_paths(folder) if isinstance(folder, (str, Path)) else folder
    refuse_evaluation_set(paths)
    for path in paths:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
            s = min(im.size)
            if s > max_short_side:
                f = max_short_side / s
                im = im.resize((round(im.width * f), round(im.height * f)), Image.LANCZOS)
            if min(im.size) >= min_side:
                photos.append(np.asarray(im, dtype=np.uint8).copy())
    return photos


def random_groups(hb: int, wb: int, rng: random.Random, max_groups: int, single: float = 0.5) -> np.ndarray:
    """Random irregular block-level group map: one group with probability ``single``, else
    boxes and blobs painted over a background group (as in GIT-SSIC training)."""
    gid = np.zeros((hb, wb), dtype=np.int64)
    if rng.random() < single or max_groups < 2:
        return gid
    k = rng.randint(2, max_groups)
    yy, xx = np.mgrid[0:hb, 0:wb]
    for g in range(1, k):
        cy, cx = rng.uniform(0, hb), rng.uniform(0, wb)
        ry, rx = rng.uniform(0.5, hb / 2), rng.uniform(0.5, wb / 2)
        if rng.random() < 0.5:
            shape = (abs(yy + 0.5 - cy) <= ry) & (abs(xx + 0.5 - cx) <= rx)
        else:
            noise = rng.uniform(0.6, 1.4)
            shape = ((yy + 0.5 - cy) / ry) ** 2 + ((xx + 0.5 - cx) / rx) ** 2 <= noise
        gid[shape] = g
    # relabel to 0..n-1 (a painted group may have vanished under later ones)
    _, gid = np.unique(gid, return_inverse=True)
    return gid.reshape(hb, wb)


def make_batch(photos, batch: int, crop: int, rng: random.Random, max_groups: int, single: float = 0.5):
    xs, gids = [], []
    for _ in range(batch):
        im = photos[rng.randrange(len(photos))]
        h, w = im.shape[:2]
        cy, cx = rng.randint(0, h - crop), rng.randint(0, w - crop)
        patch = im[cy:cy + crop, cx:cx + crop]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        xs.append(np.ascontiguousarray(patch))
        gids.append(random_groups(crop // 16, crop // 16, rng, max_groups, single))
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float() / 255.0
    gid = torch.from_numpy(np.stack(gids))
    return x, gid


def lr_at(it: int, total: int, peak: float, floor: float, warmup: int = 500, decay_frac: float = 0.15,
          progress: float | None = None) -> float:
    """Linear warm-up, constant, then cosine decay to `floor` over the last `decay_frac` of the run.
    The run's progress is it/total, or ``progress`` (0..1) when a run is sized by time."""
    if it < warmup:
        return peak * (it + 1) / warmup
    p = it / max(1, total) if progress is None else progress
    decay_start = 1 - decay_frac
    if p < decay_start:
        return peak
    t = min(1.0, (p - decay_start) / max(decay_frac, 1e-9))
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * t))


def rd_loss(model: GICodec, out: dict, x: torch.Tensor, quality: torch.Tensor):
    B, _, H, W = x.shape
    mse = ((out["x_hat"] - x) ** 2).reshape(B, -1).mean(1)
    y_bits = (-torch.log2(out["y_likelihoods"])).reshape(B, -1).sum(1)
    bpp = (y_bits + out["z_bits"]) / (H * W)
    loss = (model.lmbda(quality) * 255 ** 2 * mse + bpp).mean()
    psnr = (-10 * torch.log10(mse.detach().clamp_min(1e-10))).mean()
    return loss, bpp.detach().mean(), psnr


def evaluate(model: GICodec, images: list[np.ndarray], quality: float) -> tuple[float, float]:
    model.update(force=True)
    bpps, psnrs = [], []
    for im in images:
        x = torch.from_numpy(im).permute(2, 0, 1).float() / 255
        hb, wb = math.ceil(x.shape[1] / 16), math.ceil(x.shape[2] / 16)
        streams = model.compress(x, torch.zeros(hb, wb, dtype=torch.long), quality)
        x_hat, _ = model.decompress(streams, torch.zeros(hb, wb, dtype=torch.long), x.shape[1], x.shape[2], quality)
        x_hat = (x_hat * 255).round()
        mse = ((x_hat - x * 255) ** 2).mean().item()
        psnrs.append(10 * math.log10(255 ** 2 / mse))
        bpps.append(8 * sum(len(s) for s in streams.values()) / (x.shape[1] * x.shape[2]))
    return float(np.mean(bpps)), float(np.mean(psnrs))


def center_crops(photos: list[np.ndarray], size: int = 256) -> list[np.ndarray]:
    crops = []
    for im in photos:
        h, w = im.shape[:2]
        if min(h, w) >= size:
            y, x = (h - size) // 2, (w - size) // 2
            crops.append(np.ascontiguousarray(im[y:y + size, x:x + size]))
    return crops


class WeightEMA:
    """Exponential moving average of every float parameter and buffer (Polyak averaging)."""

    def __init__(self, model: torch.nn.Module, decay: float, state: dict | None = None):
        self.decay = decay
        own = model.state_dict()
        src = state if state is not None else own
        self.shadow = {k: v.detach().float().to(own[k].device, copy=True) for k, v in src.items()
                       if v.is_floating_point() and k in own}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for k, v in model.state_dict().items():
            if k in self.shadow and self.shadow[k].shape == v.shape:
                self.shadow[k].lerp_(v.detach().float(), 1 - self.decay)
            elif v.is_floating_point():
                self.shadow[k] = v.detach().clone().float()

    def averaged_state(self, model: torch.nn.Module) -> dict:
        return {k: self.shadow.get(k, v) for k, v in model.state_dict().items()}


GROWN_LR_SCALE = 10.0


def grow(config: dict, state: dict, checkerboard: bool, refine: bool = False) -> GICodec:
    """A model from a parent's config and weights, grown into gicodec-3 (``checkerboard``) or
    gicodec-4 (``refine``, which implies the checkerboard): the layers the parent lacks keep their
    fresh initialisation, whose output layers are zero, so the grown model codes exactly as its
    parent until training moves it."""
    parent = CodecConfig.from_dict(config)
    child = CodecConfig.from_dict({**config, "checkerboard": checkerboard, "refine": refine})
    if (parent.checkerboard and not child.checkerboard) or (parent.refine and not child.refine):
        raise ValueError(f"a {parent.network} network cannot be shrunk back: train with "
                         + ("--refine" if parent.refine else "--checkerboard"))
    model = GICodec(child)
    fresh = model.state_dict()
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    state.update({k: v for k, v in fresh.items() if k not in state and not k.endswith(CDF_BUFFERS)})
    # A shipped (fp16) weights file stores the likelihood floor, 1e-9, as 0: trained from it, a rare
    # far-out latent gave log2(0) and its batch was thrown away.  The floor is a constant of the
    # architecture, and coding never reads it (it uses the CDF tables).
    state.update({k: v for k, v in fresh.items() if k.endswith("likelihood_lower_bound.bound")})
    model.load_state_dict(state)
    return model


def train(data: Path, out: Path, iters: int, batch: int = 8, crop: int = 128, threads: int = 2,
          lr: float = 3e-4, lr_floor: float = 3e-5, max_groups: int = 3, eval_dir: Path | None = None,
          eval_every: int = 2000, ckpt_every: int = 250, bf16: bool = True, seed: int = 0,
          init: Path | None = None, decay_frac: float = 0.15, warmup: int = 500, ema_decay: float = 0.999,
          holdout_every: int = 40, checkerboard: bool = False, refine: bool = False, device: str = "cpu",
          time_limit: float | None = None, single_group: float = 0.5, log=print) -> Path:
    """Train (or resume) into ``out`` for ``iters`` iterations, or until ``time_limit`` seconds from
    the call have passed: then the learning-rate schedule follows the clock, so its decay ends in
    time however the speed varies (an estimate from the first iterations was 4x off on a GPU)."""
    started = time.time()
    torch.set_num_threads(threads)
    device = torch.device(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    # The data is checked (and cached) before anything else: a refused run leaves no OUT folder behind.
    t0 = time.time()
    all_paths = photo_paths(data)
    if not all_paths:
        raise PrivcodecError(f"no photos ({', '.join(sorted(IMAGE_EXTS))}) in {data}")
    refuse_evaluation_set(all_paths)
    train_paths, held_paths = split_holdout(all_paths, holdout_every)
    photos = load_photos(train_paths, min_side=crop)
    if not photos:
        raise PrivcodecError(f"no photos with both sides >= {crop} px in {data}")
    eval_images = center_crops(load_photos(held_paths, min_side=256))
    cached_in = time.time() - t0
    ckpt_path = out / "last.pt"
    rng = random.Random(seed)
    torch.manual_seed(seed)

    if ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        model = GICodec.from_state(ckpt["config"], ckpt["model"])
        start = ckpt["iter"]
        log(f"resumed from {ckpt_path} at iteration {start}")
        # the run that grew layers kept their faster rate, and which they are
        new_names = ckpt.get("grown")
        if new_names is None:   # checkpoints before gicodec-4 grew only the checkerboard context
            new_names = [n for n, _ in model.named_parameters()
                         if len(ckpt["opt"]["param_groups"]) == 2 and n.startswith("entropy.cb_context.")]
    else:
        ckpt, start, new_names = None, 0, []
        model = GICodec(CodecConfig(checkerboard=checkerboard, refine=refine))
        if init is not None:
            # a training checkpoint (OUT/last.pt) or a shipped weights file (fp16, e.g. the
            # packaged gicodec.pt): later sessions continue from what the repo ships
            parent = load_checkpoint(init)
            # the flags grow a network, never shrink one: continuing from gicodec-4 needs none
            kept = CodecConfig.from_dict(parent["config"])
            model = grow(parent["config"], parent["model"], checkerboard or kept.checkerboard, refine or kept.refine)
            new_names = [n for n, _ in model.named_parameters() if n not in parent["model"]]
            log(f"initialised from {init}" + (f" (grown into {model.config.network}: {len(new_names)} new tensors)"
                                              if new_names else ""))
    model.to(device)
    # Layers grown this run start from zero inside a trained network: at the network's fine-tuning
    # rate they would take thousands of iterations just to wake up, so they learn GROWN_LR_SCALE x faster.
    params = [p for n, p in model.named_parameters() if not n.endswith("quantiles")]
    grown_names = set(new_names)
    new = [p for n, p in model.named_parameters() if n in grown_names]
    aux_params = [p for n, p in model.named_parameters() if n.endswith("quantiles")]
    new_ids = {id(p) for p in new}
    opt = torch.optim.Adam([{"params": [p for p in params if id(p) not in new_ids], "lr_scale": 1.0}]
                           + ([{"params": new, "lr_scale": GROWN_LR_SCALE}] if new else []), lr=lr)
    aux_opt = torch.optim.Adam(aux_params, lr=1e-3)
    if ckpt is not None:
        opt.load_state_dict(ckpt["opt"])
        aux_opt.load_state_dict(ckpt["aux_opt"])
        rng.setstate(ckpt["rng"])
    ema = WeightEMA(model, ema_decay, ckpt.get("ema") if ckpt is not None else None) if ema_decay > 0 else None

    log(f"{len(photos)} training photos cached in {cached_in:.0f}s ({len(eval_images)} held out for eval); "
        f"{sum(p.numel() for p in params)/1e6:.2f} M params")
    if eval_dir is not None:
        from PIL import Image
        for name in ("kodim01.png", "kodim05.png"):
            p = Path(eval_dir) / name
            if p.exists():
                eval_images.append(np.asarray(Image.open(p).convert("RGB"))[:256, :384].copy())

    def evaluated_model() -> GICodec:
        """The weights to score and export, on the CPU (coding runs there): the EMA if kept."""
        shadow = GICodec(model.config)
        shadow.load_state_dict({k: v.cpu() for k, v in (ema.averaged_state(model) if ema is not None
                                                         else model.state_dict()).items()})
        return shadow.eval()

    out.mkdir(parents=True, exist_ok=True)    # every check passed: the run starts
    model.train()
    stats, t_last, skipped = [], time.time(), 0
    loop_start = time.time()
    deadline = started + time_limit if time_limit is not None else None

    def progress() -> float | None:
        if deadline is None:
            return None
        return min(1.0, (time.time() - loop_start) / max(1e-9, deadline - loop_start))

    done = start
    for it in range(start, iters):
        for group in opt.param_groups:
            group["lr"] = group.get("lr_scale", 1.0) * lr_at(it, iters, lr, lr_floor, warmup=warmup,
                                                              decay_frac=decay_frac, progress=progress())
        x, gid = make_batch(photos, batch, crop, rng, max_groups, single_group)
        x, gid = x.to(device, non_blocking=True), gid.to(device, non_blocking=True)
        quality = (torch.rand(batch) * 7 + 1).to(device)
        out_ = model(x, gid, quality, int(gid.max()) + 1, autocast=bf16)
        loss, bpp, psnr = rd_loss(model, out_, x, quality)
        opt.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            # One bad batch (bf16 overflow on an odd crop) must not poison the weights, the
            # Adam moments and the EMA: skip it.  Many in a row means the run itself diverged.
            skipped += 1
            if skipped > 50:
                raise RuntimeError("training diverged: 50 non-finite losses in a row")
            continue
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        if not torch.isfinite(grad_norm):
            skipped += 1
            opt.zero_grad(set_to_none=True)
            continue
        skipped = 0
        opt.step()
        aux = model.aux_loss()
        aux_opt.zero_grad(set_to_none=True)
        aux.backward()
        aux_opt.step()
        if ema is not None:
            ema.update(model)
        stats.append(torch.stack([loss.detach(), bpp, psnr]))

        done = it + 1
        last = done == iters or (deadline is not None and time.time() >= deadline)
        if done % 100 == 0:
            l, b, p = torch.stack(stats).mean(0).tolist()
            log(f"iter {done}/{iters} loss {l:.4f} bpp {b:.3f} psnr {p:.2f} lr {opt.param_groups[0]['lr']:.2e} "
                f"{(time.time() - t_last) / len(stats):.3f}s/it")
            stats, t_last = [], time.time()
        if done % ckpt_every == 0 or last:
            atomic_torch_save({"config": model.config.to_dict(), "model": model.state_dict(), "opt": opt.state_dict(),
                               "aux_opt": aux_opt.state_dict(), "iter": done, "rng": rng.getstate(), "grown": new_names,
                               **({"ema": ema.shadow} if ema is not None else {})}, ckpt_path)
        if eval_images and (done % eval_every == 0 or last):
            scored = evaluated_model()
            for q in (2.0, 5.0, 8.0):
                b, p = evaluate(scored, eval_images, q)
                log(f"eval iter {done} q{q:g}: {b:.3f} bpp {p:.2f} dB (real bitstreams, {len(eval_images)} held-out crops"
                    f"{', EMA' if ema is not None else ''})")
            t_last = time.time()
        if last:
            break
    model.eval()
    export_weights(evaluated_model(), out / "gicodec.pt", {"iterations": done, "crop": crop, "batch": batch,
                                                           "ema_decay": ema_decay, "ema": ema is not None})
    return out / "gicodec.pt"
