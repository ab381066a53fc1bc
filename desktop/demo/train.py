"""Staged training of the shipped model: the VAE first, then the text encoder and UNet together.

Stage 1 teaches the VAE to squeeze 128x128 images into 16x16x4 latents and back. Its latents are
rescaled to unit variance (the `scaling_factor` Stable Diffusion uses). Stage 2 teaches the UNet to
predict the noise that forward diffusion added to those latents, conditioned on the caption; about
10 % of captions are blanked so classifier-free guidance works, and an exponential moving average
(EMA) of the weights is what gets shipped.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from desktop.demo import architecture
from desktop.demo.render import render
from desktop.errors import LatentStudioError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 1234
    # Sized so the whole run takes about 2.5 h on a 2-core laptop CPU (about 0.42 s per VAE step
    # and 0.75 s per UNet step there). The VAE sees whole images, never crops: its GroupNorm and
    # mid-block attention take statistics over the whole picture, and crops taught it to paint a
    # tinted frame at the edges of full-size images.
    vae_steps: int = 4000
    vae_batch: int = 4
    vae_lr: float = 1e-3
    pool: int = 40_000  # training images, rendered and encoded once for stage 2
    unet_steps: int = 8000
    unet_batch: int = 32
    unet_lr: float = 5e-4
    warmup: int = 300
    empty_caption: float = 0.1
    offset_noise: float = 0.05  # lets the model shift a whole image's colour (flat backgrounds)
    ema_decay: float = 0.999
    ema_start: int = 1000
    max_minutes: float | None = None  # stop stage 2 early at this wall-clock budget (whole run)
    checkpoint_every: int = 500  # UNet steps between checkpoints (a stopped run resumes from the last)


PRESETS = {
    "full": TrainConfig(),
    # Minutes on a laptop CPU: for tests and for trying the pipeline end to end.
    "quick": TrainConfig(vae_steps=40, vae_batch=4, pool=256, unet_steps=60, unet_batch=16, warmup=10,
                         ema_start=20, ema_decay=0.9, checkpoint_every=20),
}


@dataclass
class Trained:
    vae: object
    text_encoder: object
    unet: object
    tokenizer: object
    config: TrainConfig
    history: dict  # losses and timings for the model card
    v_prediction: bool = False  # the first edition predicts ε (the second edition's base model, v)


def images_tensor(seeds: list[int]):
    return pixels_tensor([render(s).image for s in seeds])


def pixels_tensor(images: list):
    """RGB images -> a (batch, 3, height, width) tensor in [-1, 1], as the VAE takes them."""
    import numpy as np
    import torch

    arrays = np.stack([np.asarray(image, dtype=np.float32) for image in images])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2) / 127.5 - 1.0


def _lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


class EMA:
    """Exponential moving average of a set of modules' weights, with the usual warm-up."""

    def __init__(self, modules: list, decay: float):
        self.shadow = [copy.deepcopy(m).eval().requires_grad_(False) for m in modules]
        self.decay = decay

    def update(self, modules: list, step: int) -> None:
        import torch

        decay = min(self.decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for shadow, module in zip(self.shadow, modules):
                torch._foreach_lerp_(list(shadow.parameters()), [p.detach() for p in module.parameters()], 1 - decay)

    def copy_from(self, modules: list) -> None:
        for shadow, module in zip(self.shadow, modules):
            shadow.load_state_dict(module.state_dict())


def mean_tail(losses: list[float], last: int = 200) -> float:
    """The mean of a stage's last losses: its final loss, as the card reports it."""
    return sum(losses[-last:]) / max(1, len(losses[-last:]))


class Checkpoints:
    """A run's progress on disk: `vae.pt` once stage 1 is done, `denoiser.pt` every few hundred steps.

    Files are written to a temp name and renamed, so a killed run never leaves half a checkpoint, and
    they are read with `weights_only=True` (plain tensors and numbers, no code).
    """

    def __init__(self, folder: Path | None, cfg: TrainConfig, resume: bool):
        self.folder, self.resume = folder, resume
        self.fingerprint = {k: v for k, v in asdict(cfg).items() if k not in ("max_minutes", "checkpoint_every")}

    def save(self, name: str, state: dict) -> None:
        import torch

        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{name}.pt.tmp"
        torch.save({**state, "fingerprint": self.fingerprint}, tmp)
        os.replace(tmp, self.folder / f"{name}.pt")

    def load(self, name: str) -> dict | None:
        import torch

        path = None if self.folder is None else self.folder / f"{name}.pt"
        if not self.resume or path is None or not path.is_file():
            return None
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("fingerprint") != self.fingerprint:
            raise LatentStudioError(f"The checkpoint {path} was made with other training settings; "
                                    "delete it or run without --resume.")
        return state


def train_vae(cfg: TrainConfig, device: str, report: Callable[[str], None]):
    import torch
    import torch.nn.functional as F

    torch.manual_seed(cfg.seed)
    vae = architecture.build_vae().to(device).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(min(200, cfg.vae_steps // 10 + 1), cfg.vae_steps))
    seeds = random.Random(cfg.seed)
    losses = []
    for step in range(cfg.vae_steps):
        x = images_tensor([seeds.randrange(2**62) for _ in range(cfg.vae_batch)]).to(device)
        posterior = vae.encode(x).latent_dist
        # The posterior's mean, not a sample: it learns about twice as fast here, and the app only
        # ever encodes with the mean; the tiny KL term keeps the latents at a sane scale.
        recon = vae.decode(posterior.mode()).sample
        loss = F.mse_loss(recon, x) + 0.5 * F.l1_loss(recon, x) + 1e-6 * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 200 == 0 or step == cfg.vae_steps - 1:
            report(f"vae step {step + 1}/{cfg.vae_steps} loss {sum(losses[-50:]) / len(losses[-50:]):.4f}")
    return vae.eval(), losses


def vae_stage(cfg: TrainConfig, device: str, checkpoints: Checkpoints, report: Callable[[str], None]):
    """Stage 1, or its checkpoint (`vae.pt`): the VAE, its losses and its seconds."""
    saved = checkpoints.load("vae")
    if saved is None:
        started = time.monotonic()
        vae, losses = train_vae(cfg, device, report)
        seconds = time.monotonic() - started
        checkpoints.save("vae", {"vae": vae.state_dict(), "losses": losses, "seconds": seconds})
        return vae, losses, seconds
    vae = architecture.build_vae().to(device).eval()
    vae.load_state_dict(saved["vae"])
    report("resuming with the trained VAE from the checkpoint")
    return vae, list(saved["losses"]), saved["seconds"]


def round_trip(vae, seeds) -> list[tuple]:
    """Rendered images through the VAE, encoded (the posterior's mean) and decoded: (sample, decoded image)
    pairs. What a denoiser that drew each caption perfectly would give through this decoder."""
    import torch
    from PIL import Image

    seeds, pairs = list(seeds), []
    with torch.no_grad():
        for start in range(0, len(seeds), 32):
            samples = [render(s) for s in seeds[start : start + 32]]
            x = pixels_tensor([sample.image for sample in samples]).to(vae.device)
            recon = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
            arrays = ((recon + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
            pairs += [(sample, Image.fromarray(array)) for sample, array in zip(samples, arrays)]
    return pairs


def vae_round_trip_accuracy(vae, samples: int = 96, seed: int = 10**9) -> float:
    """Share of rendered images whose VAE reconstruction the judge still reads right (all three)."""
    from desktop.demo.judge import judge

    right = 0
    for truth, image in round_trip(vae, range(seed, seed + samples)):
        verdict = judge(image)
        right += (verdict.colour, verdict.shape, verdict.background) == (truth.colour, truth.shape, truth.background)
    return right / samples


def encode_pool(vae, cfg: TrainConfig, device: str):
    """Render the stage-2 images once and keep their latents (mean of the posterior) and captions."""
    import torch

    seeds = random.Random(cfg.seed + 1)
    latents, captions = [], []
    with torch.no_grad():
        for start in range(0, cfg.pool, 256):
            batch = [seeds.randrange(2**62) for _ in range(min(256, cfg.pool - start))]
            captions += [render(s).caption for s in batch]
            latents.append(vae.encode(images_tensor(batch).to(device)).latent_dist.mean)
    latents = torch.cat(latents)
    scaling = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=scaling)
    return latents * scaling, captions


def denoising_loss(unet, states, x0, alphas, offset_noise: float, extra=None, high_t: int | None = None,
                   v_prediction: bool = False, mask_weight: float = 0.0, t_below: int | None = None):
    """The denoising loss at uniform timesteps, with offset noise: the error of the predicted ε, or with
    `v_prediction` of v = √ᾱ·ε − √(1−ᾱ)·x₀. `states`: the text encoder's output for the captions;
    `extra`: more UNet input channels (the inpainting UNet's mask and masked-image latents); `high_t`: the
    batch's second half draws t >= this instead; `mask_weight`: the error inside the mask (extra's first
    channel) counts 1 + this times as much as outside it, each image's weights averaging 1; `t_below`:
    every t is drawn below this.
    """
    import torch
    import torch.nn.functional as F

    noise = torch.randn_like(x0) + offset_noise * torch.randn(x0.shape[0], x0.shape[1], 1, 1, device=x0.device)
    t = torch.randint(0, t_below or len(alphas), (x0.shape[0],), device=x0.device)
    if high_t is not None:
        half = x0.shape[0] // 2
        t[half:] = torch.randint(high_t, len(alphas), (x0.shape[0] - half,), device=x0.device)
    a = alphas[t].view(-1, 1, 1, 1)
    noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
    inputs = noisy if extra is None else torch.cat([noisy, extra], dim=1)
    target = a.sqrt() * noise - (1 - a).sqrt() * x0 if v_prediction else noise
    prediction = unet(inputs, t, states).sample
    if not mask_weight:
        return F.mse_loss(prediction, target)
    weights = 1 + mask_weight * extra[:, :1]
    return ((prediction - target) ** 2 * weights / weights.mean(dim=(1, 2, 3), keepdim=True)).mean()


def train_denoiser(vae, cfg: TrainConfig, device: str, tokenizer, report: Callable[[str], None],
                   deadline: float | None, checkpoints: Checkpoints):
    import torch

    latents, captions = encode_pool(vae, cfg, device)
    report(f"encoded {len(captions)} training images; latent scaling factor {vae.config.scaling_factor:.4f}")
    ids_of = {c: tokenizer(c, padding="max_length", max_length=tokenizer.model_max_length,
                           truncation=True, return_tensors="pt").input_ids[0] for c in set(captions) | {""}}
    torch.manual_seed(cfg.seed + 2)
    text_encoder = architecture.build_text_encoder(tokenizer).to(device).train()
    unet = architecture.build_unet().to(device).train()
    alphas = architecture.training_alphas().to(device)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.unet_lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg.warmup, cfg.unet_steps))
    ema = EMA([unet, text_encoder], cfg.ema_decay)
    rng = random.Random(cfg.seed + 3)
    losses: list[float] = []
    started, elapsed_before, first_step = time.monotonic(), 0.0, 0
    saved = checkpoints.load("denoiser")
    if saved is not None:
        unet.load_state_dict(saved["unet"])
        text_encoder.load_state_dict(saved["text_encoder"])
        opt.load_state_dict(saved["opt"])
        sched.load_state_dict(saved["sched"])
        for shadow, state in zip(ema.shadow, saved["ema"]):
            shadow.load_state_dict(state)
        rng.setstate(saved["rng"])
        torch.set_rng_state(saved["torch_rng"])
        losses, first_step, elapsed_before = list(saved["losses"]), saved["step"], saved["seconds"]
        report(f"resuming the UNet at step {first_step}")

    def checkpoint(step_count: int) -> None:
        checkpoints.save("denoiser", {
            "step": step_count, "unet": unet.state_dict(), "text_encoder": text_encoder.state_dict(),
            "opt": opt.state_dict(), "sched": sched.state_dict(), "ema": [m.state_dict() for m in ema.shadow],
            "rng": rng.getstate(), "torch_rng": torch.get_rng_state(), "losses": losses,
            "seconds": elapsed_before + time.monotonic() - started,
        })

    steps_done = first_step
    for step in range(first_step, cfg.unet_steps):
        picks = [rng.randrange(len(captions)) for _ in range(cfg.unet_batch)]
        x0 = latents[picks]
        texts = ["" if rng.random() < cfg.empty_caption else captions[i] for i in picks]
        ids = torch.stack([ids_of[t] for t in texts]).to(device)
        loss = denoising_loss(unet, text_encoder(ids)[0], x0, alphas, cfg.offset_noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step == cfg.ema_start:
            ema.copy_from([unet, text_encoder])
        elif step > cfg.ema_start:
            ema.update([unet, text_encoder], step - cfg.ema_start)
        losses.append(loss.item())
        steps_done = step + 1
        if step % 500 == 0 or step == cfg.unet_steps - 1:
            report(f"unet step {step + 1}/{cfg.unet_steps} loss {sum(losses[-100:]) / len(losses[-100:]):.4f} "
                   f"lr {sched.get_last_lr()[0]:.2e}")
        if steps_done % cfg.checkpoint_every == 0:
            checkpoint(steps_done)
        if deadline is not None and time.monotonic() > deadline:
            report(f"time budget reached after {steps_done} UNet steps")
            checkpoint(steps_done)
            break
    if steps_done <= cfg.ema_start:  # too short for an average: ship the weights as they are
        ema.copy_from([unet, text_encoder])
    unet_ema, text_ema = ema.shadow
    seconds = elapsed_before + time.monotonic() - started
    return unet_ema, text_ema, losses, steps_done, seconds


def train(cfg: TrainConfig, device: str, work_dir: Path, report: Callable[[str], None] = log.info,
          checkpoint_dir: Path | None = None, resume: bool = False) -> Trained:
    """Both stages; with checkpoint_dir, progress is saved there and `resume` picks it up again."""
    import torch

    deadline = time.monotonic() + 60 * cfg.max_minutes if cfg.max_minutes else None
    checkpoints = Checkpoints(checkpoint_dir, cfg, resume)
    tokenizer = architecture.build_tokenizer(work_dir / "tokenizer")
    vae, vae_losses, vae_seconds = vae_stage(cfg, device, checkpoints, report)
    vae_accuracy = vae_round_trip_accuracy(vae)
    report(f"VAE round trips judged right: {100 * vae_accuracy:.1f} %")
    unet, text_encoder, unet_losses, unet_steps, unet_seconds = train_denoiser(
        vae, cfg, device, tokenizer, report, deadline, checkpoints)
    history = {
        "config": asdict(cfg),
        "device": device,
        "threads": torch.get_num_threads(),
        "vae_seconds": vae_seconds,
        "total_seconds": vae_seconds + unet_seconds,
        "vae_final_loss": mean_tail(vae_losses, 50),
        "vae_round_trip_accuracy": vae_accuracy,
        "unet_final_loss": mean_tail(unet_losses),
        "unet_steps_done": unet_steps,
    }
    return Trained(vae.cpu(), text_encoder.cpu(), unet.cpu(), tokenizer, cfg, history)
