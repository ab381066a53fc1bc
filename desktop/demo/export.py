"""Saving the trained model as a standard diffusers folder, with preview factors and a model card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from desktop.demo import architecture
from desktop.demo.train import Trained, images_tensor
from desktop.engine.models import APP_DEFAULTS_FILE
from desktop.engine.previews import PREVIEW_FILE

MODEL_NAME = "latent-shapes"
EXAMPLE_PROMPT = "a red circle on a blue background"


def build_pipeline(trained: Trained):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=trained.vae, text_encoder=trained.text_encoder, tokenizer=trained.tokenizer, unet=trained.unet,
        scheduler=architecture.build_scheduler(), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )


def fit_preview_factors(vae, samples: int = 512, seed: int = 99) -> dict:
    """Least-squares 4x3 map (+ bias) from latent channels to the image downsampled to latent size."""
    import torch
    import torch.nn.functional as F

    x = images_tensor(list(range(seed, seed + samples)))
    with torch.no_grad():
        latents = vae.encode(x.to(vae.device, vae.dtype)).latent_dist.mean.float().cpu() * vae.config.scaling_factor
    rgb = F.avg_pool2d(x, 8)  # (N, 3, 16, 16) in [-1, 1]
    a = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    a = torch.cat([a, torch.ones(a.shape[0], 1)], dim=1)
    b = rgb.permute(0, 2, 3, 1).reshape(-1, 3)
    solution = torch.linalg.lstsq(a, b).solution  # (C + 1, 3)
    residual = float(((a @ solution - b) ** 2).mean().sqrt())
    return {"factors": solution[:-1].tolist(), "bias": solution[-1].tolist(), "rms_error": residual}


INPAINT_SUFFIX = "-inpaint"
INPAINT_KEY = "inpainting_model"  # in latent_studio.json: the sibling the app inpaints with


def write_defaults(folder: Path, defaults: dict) -> None:
    """The settings the app uses for this model when the user leaves them open (other keys are kept)."""
    path = folder / APP_DEFAULTS_FILE
    stored = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**stored, **defaults, "example_prompt": EXAMPLE_PROMPT}, indent=2))


def _write_folder(pipe, folder: Path, preview: dict, settings: dict) -> None:
    """One diffusers folder in fp16 safetensors, written beside its place and renamed into it."""
    import torch

    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.to(torch.float16)  # halves the download; the app loads it in whatever precision it runs
    pipe.save_pretrained(tmp, safe_serialization=True)
    pipe.to(torch.float32)
    (tmp / PREVIEW_FILE).write_text(json.dumps(preview, indent=2))
    (tmp / APP_DEFAULTS_FILE).write_text(json.dumps({**settings, "example_prompt": EXAMPLE_PROMPT}, indent=2))
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)


def inpainting_sibling(folder: Path) -> Path:
    return folder.with_name(folder.name + INPAINT_SUFFIX)


def save_model(trained, folder: Path, defaults: dict, inpaint_sibling: bool = False) -> dict:
    """Write the diffusers folder (and with `inpaint_sibling`, the 9-channel one beside it); size facts."""
    from diffusers import StableDiffusionInpaintPipeline

    preview = fit_preview_factors(trained.vae)
    folders = [folder]
    settings = dict(defaults)
    if inpaint_sibling:
        sibling = inpainting_sibling(folder)
        inpainter = StableDiffusionInpaintPipeline(
            vae=trained.vae, text_encoder=trained.text_encoder, tokenizer=trained.tokenizer,
            unet=trained.inpaint_unet, scheduler=architecture.build_scheduler(), safety_checker=None,
            feature_extractor=None, requires_safety_checker=False)
        _write_folder(inpainter, sibling, preview, defaults)
        folders.append(sibling)
        settings[INPAINT_KEY] = sibling.name
    _write_folder(build_pipeline(trained), folder, preview, settings)
    parameters = {name: architecture.parameter_count(getattr(trained, name)) for name in ("vae", "text_encoder", "unet")}
    if inpaint_sibling:
        parameters["inpaint_unet"] = architecture.parameter_count(trained.inpaint_unet)
    return {
        "size_mb": sum(f.stat().st_size for d in folders for f in d.rglob("*") if f.is_file()) / 1e6,
        "parameters": parameters,
        "preview_rms_error": preview["rms_error"],
    }


def write_card(folder: Path, facts: dict) -> None:
    """The model card: what it is, how it was made (command, seed, time, hardware), how well it does."""
    p = facts["parameters"]
    h = facts["history"]
    cfg = h["config"]
    text = f"""# {MODEL_NAME}

A small text-to-image latent diffusion model, trained from scratch by the Latent Studio project so that
the app generates real images offline on first launch. Standard diffusers `StableDiffusionPipeline`
format: the same code path that runs Stable Diffusion runs this model.

## What it draws

One flat-coloured shape on a flat background, 128×128 pixels. Prompts follow
`a {{colour}} {{shape}} on a {{colour}} background` with colours red, green, blue, yellow, purple,
orange, white, black and shapes circle, square, triangle (shape and background colours differ).
Example: `{EXAMPLE_PROMPT}`.

## Architecture

| component | what | parameters |
| --- | --- | --- |
| VAE | AutoencoderKL, 4 blocks (16, 32, 64, 64 channels), downsamples by 8: 128×128×3 ↔ 16×16×4; latent scaling factor {facts['scaling_factor']:.4f} | {p['vae'] / 1e6:.2f} M |
| text encoder | CLIPTextModel, width {architecture.TEXT_WIDTH}, 3 layers, 4 heads, {architecture.MAX_TOKENS} tokens | {p['text_encoder'] / 1e6:.2f} M |
| tokenizer | CLIP BPE built offline for the domain's words (every word is one token) | – |
| UNet | UNet2DConditionModel, 3 levels (48, 96, 128 channels, one layer each), cross-attention at 16×16 and 8×8 | {p['unet'] / 1e6:.2f} M |
| scheduler | SD 1.x noise schedule (scaled linear β 0.00085–0.012, 1000 steps), ε-prediction | – |

Weights are stored in fp16 safetensors: {facts['size_mb']:.1f} MB on disk. `latent_preview.json` holds the
4×3 latent→RGB preview factors, fitted by least squares on the VAE (RMS error {facts['preview_rms_error']:.3f}
on a [-1, 1] scale); `latent_studio.json` holds the default settings below.

## Data

Unlimited synthetic pairs from `desktop/demo/render.py`: each seed draws a shape covering 8–45 % of
the image at a jittered position, with its caption. The VAE saw {cfg['vae_steps'] * cfg['vae_batch']:,} images;
the UNet and text encoder trained on a pool of {cfg['pool']:,} rendered images (latents encoded once),
with {100 * cfg['empty_caption']:.0f} % of captions blanked for classifier-free guidance.

## Training

```bash
{facts['command']}
```

Seed {cfg['seed']}. Stage 1: VAE, {cfg['vae_steps']} steps, batch {cfg['vae_batch']}, AdamW lr {cfg['vae_lr']},
loss MSE + 0.5·L1 + 1e-6·KL. Stage 2: UNet + text encoder together, {h['unet_steps_done']} steps of batch
{cfg['unet_batch']}, AdamW lr {cfg['unet_lr']} (warm-up {cfg['warmup']}, cosine to 10 %), offset noise
{cfg['offset_noise']}, EMA decay {cfg['ema_decay']} from step {cfg['ema_start']}; the EMA weights are shipped.

Trained on: {facts['hardware']}, in {h['total_seconds'] / 60:.1f} minutes (VAE {h['vae_seconds'] / 60:.1f} min).
{facts.get('cpu_note', '')}
Final losses: VAE {h['vae_final_loss']:.4f}, denoiser {h['unet_final_loss']:.4f}. VAE round trips of
rendered images that the judge still reads right: {100 * h.get('vae_round_trip_accuracy', float('nan')):.1f} %.

## Default settings (chosen by measurement)

{facts['defaults_note']}

| setting | value |
| --- | --- |
| scheduler | {facts['defaults']['scheduler']} |
| steps | {facts['defaults']['steps']} |
| guidance (CFG) | {facts['defaults']['guidance']} |
| size | 128×128 |

## Evaluation

48 fixed prompts (each colour and shape equally often), fixed seeds 1000–1047, generated through the
app's own engine at the default settings; each image judged automatically: background colour from
the border pixels, shape colour from the rest (nearest palette colour), shape from how much of its
bounding box it fills (square ≈ 1, circle ≈ 0.785, triangle ≈ 0.5).

{facts['eval_table']}

{facts['speed_note']}

Reproduce: `python main.py demo evaluate`.

## Licence

Apache-2.0, like the rest of Latent Studio. The training data is synthetic, drawn by this project's code.
"""
    (folder / "README.md").write_text(text, encoding="utf-8")
