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
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from desktop.demo import architecture
from desktop.demo.render import render

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 1234
    # Sized so the whole run takes about 2.5 h on a 2-core laptop CPU (0.9 s per VAE step,
    # 0.75 s per UNet step there); a GPU does it in minutes.
    vae_steps: int = 1200
    vae_batch: int = 8
    vae_lr: float = 1e-3
    pool: int = 40_000  # training images, rendered and encoded once for stage 2
    unet_steps: int = 9000
    unet_batch: int = 32
    unet_lr: float = 5e-4
    warmup: int = 300
    empty_caption: float = 0.1
    offset_noise: float = 0.05  # lets the model shift a whole image's colour (flat backgrounds)
    ema_decay: float = 0.999
    ema_start: int = 1000
    max_minutes: float | None = None  # stop stage 2 early at this wall-clock budget (whole run)


PRESETS = {
    "full": TrainConfig(),
    # Minutes on a laptop CPU: for tests and for trying the pipeline end to end.
    "quick": TrainConfig(vae_steps=40, vae_batch=8, pool=256, unet_steps=60, unet_batch=16, warmup=10,
                         ema_start=20, ema_decay=0.9),
}


@dataclass
class Trained:
    vae: object
    text_encoder: object
    unet: object
    tokenizer: object
    config: TrainConfig
    history: dict  # losses and timings for the model card


def images_tensor(seeds: list[int]):
    import numpy as np
    import torch

    arrays = np.stack([np.asarray(render(s).image, dtype=np.float32) for s in seeds])
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
                for s, p in zip(shadow.parameters(), module.parameters()):
                    s.lerp_(p.detach(), 1 - decay)

    def copy_from(self, modules: list) -> None:
        for shadow, module in zip(self.shadow, modules):
            shadow.load_state_dict(module.state_dict())


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
        recon = vae.decode(posterior.sample()).sample
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


def train_denoiser(vae, cfg: TrainConfig, device: str, tokenizer, report: Callable[[str], None],
                   deadline: float | None):
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler

    latents, captions = encode_pool(vae, cfg, device)
    report(f"encoded {len(captions)} training images; latent scaling factor {vae.config.scaling_factor:.4f}")
    ids_of = {c: tokenizer(c, padding="max_length", max_length=tokenizer.model_max_length,
                           truncation=True, return_tensors="pt").input_ids[0] for c in set(captions) | {""}}
    torch.manual_seed(cfg.seed + 2)
    text_encoder = architecture.build_text_encoder(tokenizer).to(device).train()
    unet = architecture.build_unet().to(device).train()
    noise_schedule = DDPMScheduler.from_config(architecture.build_scheduler().config)
    alphas = noise_schedule.alphas_cumprod.to(device)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.unet_lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg.warmup, cfg.unet_steps))
    ema = EMA([unet, text_encoder], cfg.ema_decay)
    rng = random.Random(cfg.seed + 3)
    losses = []
    steps_done = 0
    for step in range(cfg.unet_steps):
        picks = [rng.randrange(len(captions)) for _ in range(cfg.unet_batch)]
        x0 = latents[picks]
        texts = ["" if rng.random() < cfg.empty_caption else captions[i] for i in picks]
        ids = torch.stack([ids_of[t] for t in texts]).to(device)
        noise = torch.randn_like(x0) + cfg.offset_noise * torch.randn(x0.shape[0], x0.shape[1], 1, 1, device=device)
        t = torch.randint(0, len(alphas), (x0.shape[0],), device=device)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
        pred = unet(noisy, t, text_encoder(ids)[0]).sample
        loss = F.mse_loss(pred, noise)
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
        if deadline is not None and time.monotonic() > deadline:
            report(f"time budget reached after {steps_done} UNet steps")
            break
    if steps_done <= cfg.ema_start:  # too short for an average: ship the weights as they are
        ema.copy_from([unet, text_encoder])
    unet_ema, text_ema = ema.shadow
    return unet_ema, text_ema, losses, steps_done


def train(cfg: TrainConfig, device: str, work_dir: Path, report: Callable[[str], None] = log.info) -> Trained:
    import torch

    started = time.monotonic()
    deadline = started + 60 * cfg.max_minutes if cfg.max_minutes else None
    if device == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads()))
    tokenizer = architecture.build_tokenizer(work_dir / "tokenizer")
    vae, vae_losses = train_vae(cfg, device, report)
    vae_seconds = time.monotonic() - started
    unet, text_encoder, unet_losses, unet_steps = train_denoiser(vae, cfg, device, tokenizer, report, deadline)
    history = {
        "config": asdict(cfg),
        "device": device,
        "vae_seconds": vae_seconds,
        "total_seconds": time.monotonic() - started,
        "vae_final_loss": sum(vae_losses[-50:]) / max(1, len(vae_losses[-50:])),
        "unet_final_loss": sum(unet_losses[-200:]) / max(1, len(unet_losses[-200:])),
        "unet_steps_done": unet_steps,
    }
    return Trained(vae.cpu(), text_encoder.cpu(), unet.cpu(), tokenizer, cfg, history)
