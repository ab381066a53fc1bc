"""The second edition trained from nothing in one run: the merged recipe, without a first edition.

The grown recipe trains a first edition (train.py: VAE, then an ε-prediction UNet on the old captions)
and grows the second from it (finetune.py, stages 1-7). Here one pass replaces the first edition's UNet
and stages 3-4: a fresh UNet and text encoder learn the second edition's vocabulary directly, as a
v-prediction model on the zero-terminal-SNR schedule, half of each batch at t >= `words_high_t` from
captions naming a position, with the word probe keeping the words apart (see `finetune.learn_words`).
The VAE is the first edition's stage 1; the decoder passes (stages 1-2) and stages 5-7 are the grown
recipe's own. Measured on a 2-core CPU, the one pass at the first edition's steps, rate and schedule
met every text-to-image target of the card on the shipped VAE, in about 45 minutes less than the stages
it replaces; on the VAE trained in the same run it falls short of shape and image to image (see the
model card).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from desktop.demo import architecture, finetune, train


@dataclass(frozen=True)
class OnePassConfig:
    first: train.TrainConfig  # the VAE; the pool, steps, batch, rate, warm-up and EMA of the one pass
    grow: finetune.FinetuneConfig  # the decoder passes, the high-t half and the probe, stages 5-7


PRESETS = {name: OnePassConfig(train.PRESETS[name], finetune.FINETUNE_PRESETS[name]) for name in ("full", "quick")}


def unet_config(cfg: OnePassConfig) -> finetune.FinetuneConfig:
    """`fit`'s settings for the one pass: the first edition's batch, warm-up, EMA and noise."""
    first = cfg.first
    return dataclasses.replace(cfg.grow, seed=first.seed, unet_batch=first.unet_batch, warmup=first.warmup,
                               ema_decay=first.ema_decay, empty_caption=first.empty_caption,
                               offset_noise=first.offset_noise, checkpoint_every=first.checkpoint_every)


def train_one_pass(cfg: OnePassConfig, work_dir: Path, report: Callable[[str], None],
                   checkpoint_dir: Path | None = None, resume: bool = False) -> finetune.Edition:
    """Every stage on the CPU, checkpointed like the other recipes; the second edition's components."""
    import torch

    started = time.monotonic()
    checkpoints = train.Checkpoints(checkpoint_dir, cfg, resume)  # type: ignore[arg-type]
    vae, vae_losses, vae_seconds = train.vae_stage(cfg.first, "cpu", checkpoints, report)
    passes = finetune.DecoderPasses(vae, checkpoints)
    history = finetune.clean_edges(vae, cfg.grow, passes, report)
    tokenizer = architecture.build_tokenizer(work_dir / "tokenizer")
    pool_started = time.monotonic()
    pool, captions = train.encode_pool(vae, cfg.first, "cpu")  # sets the latent scaling factor
    report(f"encoded {len(captions)} training images; latent scaling factor {vae.config.scaling_factor:.4f}")
    pool_seconds = time.monotonic() - pool_started
    unet_cfg = unet_config(cfg)
    batch = finetune.caption_batches(pool, captions, tokenizer, unet_cfg)
    torch.manual_seed(cfg.first.seed + 2)
    text_encoder = architecture.build_text_encoder(tokenizer)
    unet = architecture.build_unet()
    head = torch.nn.Linear(text_encoder.config.hidden_size, 3 * len(finetune.WORD_CLASSES))
    (unet, text_encoder, _), losses, seconds = finetune.fit(
        unet, text_encoder, lambda rng: batch(rng, placed_half=True), cfg.first.unet_steps, cfg.first.unet_lr,
        unet_cfg, "one-pass", checkpoints, report, high_t=cfg.grow.words_high_t, v_prediction=True,
        probe=(head, cfg.grow.words_probe, finetune.word_labels(tokenizer)))
    history.update({"vae_seconds": vae_seconds, "vae_final_loss": train.mean_tail(vae_losses, 50),
                    "pool_seconds": pool_seconds, "one_pass_seconds": seconds,
                    "one_pass_final_loss": train.mean_tail(losses), "first_config": dataclasses.asdict(cfg.first)})
    return finetune.finish(vae, unet, text_encoder, tokenizer, cfg.grow, checkpoints, passes, report, history, started)
