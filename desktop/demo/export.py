"""Saving the trained model as a standard diffusers folder, with preview factors and a model card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from desktop.demo import architecture, evaluate
from desktop.demo.train import Trained, images_tensor
from desktop.engine.models import APP_DEFAULTS_FILE
from desktop.engine.previews import PREVIEW_FILE

FRAME, FRAME_WEIGHT = 2, 10.0  # the decoder fine-tune's weighting (finetune.py imports these)

MODEL_NAME = "latent-shapes"
EXAMPLE_PROMPT = "a red circle on a blue background"
# The card is measured in fp32, and `auto` runs the models in it: native bf16 on the CPU was no faster
# for models this small and cost the card's edges, shapes and inpainting (README, "The shipped models").
PRECISION = "fp32"


def build_pipeline(trained: Trained):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=trained.vae, text_encoder=trained.text_encoder, tokenizer=trained.tokenizer, unet=trained.unet,
        scheduler=architecture.build_scheduler(trained.v_prediction), safety_checker=None, feature_extractor=None,
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


def _inpaint_defaults(facts: dict) -> str:
    """The card's lines on the inpainting sibling's own defaults, when it has them."""
    own = facts.get("inpaint_defaults")
    if not own:
        return ""
    return (f"{facts['inpaint_defaults_note']} Chosen for `{MODEL_NAME}{INPAINT_SUFFIX}`: {own['scheduler']}, "
            f"{own['steps']} steps, guidance {own['guidance']}.")


_FIXED_SETTINGS = {"example_prompt": EXAMPLE_PROMPT, "precision": PRECISION}


def write_defaults(folder: Path, defaults: dict) -> None:
    """The settings the app uses for this model when the user leaves them open (other keys are kept)."""
    path = folder / APP_DEFAULTS_FILE
    stored = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**stored, **defaults, **_FIXED_SETTINGS}, indent=2))


def _write_folder(pipe, folder: Path, preview: dict, settings: dict) -> None:
    """One diffusers folder in fp16 safetensors, written beside its place and renamed into it."""
    import torch

    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.to(torch.float16)  # halves the download; the app loads it in whatever precision it runs
    pipe.save_pretrained(tmp, safe_serialization=True)
    pipe.to(torch.float32)
    (tmp / PREVIEW_FILE).write_text(json.dumps(preview, indent=2))
    (tmp / APP_DEFAULTS_FILE).write_text(json.dumps({**settings, **_FIXED_SETTINGS}, indent=2))
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
            unet=trained.inpaint_unet, scheduler=architecture.build_scheduler(trained.v_prediction),
            safety_checker=None,
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
    """The model card: what it draws, how it was made (commands, seeds, time, hardware), how well it does."""
    p = facts["parameters"]
    _, _, g, _, cg = _recipe(facts)
    fb, fa, fd = (g.get(f"frame_error_{k}", {}) for k in ("before", "after", "denoised"))
    text = f"""# {MODEL_NAME} (second edition) and {MODEL_NAME}{INPAINT_SUFFIX}

Two small latent diffusion models, trained by the Latent Studio project so that the app generates and
edits real images offline on first launch. Standard diffusers formats: `{MODEL_NAME}` is a
`StableDiffusionPipeline`, `{MODEL_NAME}{INPAINT_SUFFIX}` a 9-channel `StableDiffusionInpaintPipeline`;
the same code paths that run Stable Diffusion and its inpainting models run them. When you inpaint or
outpaint with `{MODEL_NAME}`, the app uses `{MODEL_NAME}{INPAINT_SUFFIX}` and says so; you can also pick it.

## What it draws

One flat-coloured shape on a flat background, 128×128 pixels:
`a [small|large] {{colour}} {{shape}} [in the {{position}}] on a {{colour}} background`.

- Colours: red, green, blue, yellow, purple, orange, white, black (shape and background differ).
- Shapes: circle, square, triangle.
- Size: `small` covers 3–8 % of the image, `large` 25–45 %; no word means medium (10–20 %).
- Position: `in the top left`, `in the top`, `in the top right`, `in the left`, `in the center`,
  `in the right`, `in the bottom left`, `in the bottom`, `in the bottom right`: the shape's centre lies in
  that third of the image, across and down. No phrase means anywhere. It also knows `at the top`,
  `on the left`, `on the right`, `at the bottom`, `in the middle`, `at the center` and `at the` + corner.
- `a` and `an` both work. A combination that cannot fit (a large triangle in a corner) is never drawn
  in training, so the model has no answer for it.

Example: `a small red circle in the top left on a blue background`.

## Architecture

| component | what | parameters |
| --- | --- | --- |
| VAE | AutoencoderKL, 4 blocks (16, 32, 64, 64 channels), downsamples by 8: 128×128×3 ↔ 16×16×4; latent scaling factor {facts['scaling_factor']:.4f}; deterministic posterior | {p['vae'] / 1e6:.2f} M |
| text encoder | CLIPTextModel, width {architecture.TEXT_WIDTH}, 3 layers, 4 heads, {architecture.MAX_TOKENS} tokens | {p['text_encoder'] / 1e6:.2f} M |
| tokenizer | CLIP BPE built offline for the domain's words (every word is one token) | – |
| UNet | UNet2DConditionModel, 3 levels (48, 96, 128 channels, one layer each), cross-attention at 16×16 and 8×8 | {p['unet'] / 1e6:.2f} M |
| inpainting UNet | the same with 9 input channels (latents, mask, masked-image latents) | {p.get('inpaint_unet', 0) / 1e6:.2f} M |
| scheduler | scaled linear β 0.00085–0.012, 1000 steps; v-prediction, betas rescaled to zero terminal SNR, trailing spacing (both models) | – |

Both folders are fp16 safetensors: {facts['size_mb']:.1f} MB together. `latent_preview.json` holds the
4×3 latent→RGB preview factors (RMS error {facts['preview_rms_error']:.3f} on a [-1, 1] scale);
`latent_studio.json` the default settings below (and, in `{MODEL_NAME}`, the name of its inpainting sibling),
and the precision the app runs both in when its own is left on auto: {PRECISION}, the one this card is measured in.
The weights are stored in fp16 only to halve the download.

## Training

Synthetic pairs from `desktop/demo/render.py`, unlimited and seeded; every caption is checked against
the pixels it describes (the tests do the same for size and position).

{_origin(facts)}
1. **Deterministic posterior.** The first edition's VAE was trained on its posterior's mean only, so
   its log-variance head was never trained: its spread was about 1.0, and a posterior *sample*, which
   diffusers' image-to-image, inpainting and upscaling draw, was noise. That, not the denoiser, is why
   image to image at strength 0.15–0.3 came back covered in blotches. The head is now zeroed at
   diffusers' floor (log-variance -30), so a sample is the mean, in this app and in any other tool.
2. **Clean edges.** The decoder (post-quant conv and decoder; the encoder and so the latent space
   unchanged, so this stage is independent of the UNet's) was fine-tuned on whole images in two
   passes: {cg.get('decoder_steps', '?')} steps of batch {cg.get('decoder_batch', '?')} with the outermost {FRAME} pixels weighted ×{FRAME_WEIGHT:.0f}, then
   {cg.get('corner_steps', '?')} steps with the 3×3 corners weighted ×{cg.get('corner_weight', 0):.0f} as well. Zero padding, on two sides
   at a corner, had taught it a light line along the edges and off-colour corner pixels. A third pass
   trained the decoder's last block and output conv alone ({cg.get('tail_steps', '?')} steps of batch {cg.get('tail_batch', '?')}, lr {cg.get('tail_lr', '?')}
   decayed to zero over the last quarter, the 3×3 corners weighted ×{cg.get('tail_corner_weight', 0):.0f}), on the rest's output cached
   for {cg.get('tail_pool', 0):,} images: they draw the corner pixels, and alone they train many times faster. Round-trip
   error (0–255): outermost ring {fb.get('frame', float('nan')):.1f} → {fa.get('frame', float('nan')):.1f}, the four corner pixels {fb.get('corners', float('nan')):.1f} → {fa.get('corners', float('nan')):.1f},
   inside the image {fb.get('inside', float('nan')):.1f} → {fa.get('inside', float('nan')):.1f}.
{_vocabulary_stages(facts)}5. **Inpainting sibling**, the standard SD recipe, last: stage 4's UNet copied with 5 more input channels (zero
   weights), trained {cg.get('inpaint_steps', '?')} steps on {cg.get('inpaint_pool', 0):,} images, each with one mask: the whole image,
   a random box, random blobs or the shape's box grown by 2–14 px (a quarter each); masked pixels set
   to grey before encoding, as diffusers does. For a share of {100 * cg.get('inpaint_added', 0):.0f} % of the images (where one fits)
   a second shape is drawn at least 6 px from the first, the mask is a box around it with 2–24 px of
   margin that leaves the first alone, and the caption names the added shape only: "add a shape here".
   Trained on one-shape images alone, the sibling had learned that a mask over plain background is
   to be filled with background, and drew nothing in 11 of the 12 corner boxes it failed of 24.
   The error inside the mask counts {1 + cg.get('inpaint_mask_weight', 0):g} times as much as outside it (each image's weights
   averaging 1): outside it the masked image gives the answer away, and inside is what the user asks for.
   It predicts v like its base and shares its text encoder (frozen here). Final loss {g.get('inpaint_final_loss', float('nan')):.4f}.
6. **The decoder meets the denoiser.** Round trips were clean, yet 5 of the 72 images the card then generated
   had a faint line along one side (an outermost row or column 10–13 off the background): sampling
   ends on the UNet's prediction of the latents, not on the encoder's, and the decoder had only seen
   the encoder's. The tail pass ran again ({cg.get('denoised_steps', '?')} steps, lr {cg.get('denoised_lr', '?')}, {cg.get('tail_pool', 0):,} new images), half of them
   decoded from what the finished base UNet predicts from the image noised to a t below {cg.get('denoised_t_max', '?')}
   with its caption at guidance {cg.get('denoised_guidance', '?')} (sampling's last step, at 10 steps, predicts from t = 99). Round-trip error
   afterwards: outermost ring {fd.get('frame', float('nan')):.1f}, corners {fd.get('corners', float('nan')):.1f}, inside {fd.get('inside', float('nan')):.1f}. {g.get('denoised_note', '')}
7. **The last steps polished.** Stage 4 spent half of each batch at t ≥ {cg.get('words_high_t', '?')}, and the finished UNet drew the
   corners of small squares round where sampling ends and image to image at low strength works: at strength 0.1 and
   0.2 it returned 37 of 40 images unchanged. A copy of it trained {cg.get('polish_steps', '?')} steps of batch {cg.get('unet_batch', '?')} at t < {cg.get('polish_t_below', '?')}
   alone, on {cg.get('polish_pool', 0):,} new images, lr {cg.get('polish_lr', '?')}, EMA {cg.get('polish_ema', '?')}, its text encoder frozen (so the
   sibling, which shares it, is unchanged); loss at those t {g.get('polish_first_loss', float('nan')):.4f} → {g.get('polish_final_loss', float('nan')):.4f}. {g.get('polish_note', '')}

{_timing(facts)}
```bash
{facts['command']}
```

## Default settings (chosen by measurement)

{facts.get('defaults_note', '')}

| setting | value |
| --- | --- |
| scheduler | {facts['defaults']['scheduler']} |
| steps | {facts['defaults']['steps']} |
| guidance (CFG) | {facts['defaults']['guidance']} |
| size | 128×128 |

{_inpaint_defaults(facts)}

## Evaluation

Through the app's own engine at the default settings in {PRECISION}, fixed prompts and seeds, each image judged
automatically (`desktop/demo/judge.py`): background colour from the border, shape colour from the
rest; the shape's extent is where a pixel is nearer its colour than the background's, and from it the
shape (how much of its box it fills), size (the area it covers) and position (its box's centre); and edge
artifacts: frame pixels off the background that the shape does not explain, or a side whose median is
off it. The judge reads what the decoder can draw as drawn: rendered images sent through the VAE and
back, what a perfect denoiser would give, are judged as captioned (shape cuts calibrated on 2,000 of
them; 3 misjudged).

- Text to image: {evaluate.CARD_PROMPTS} prompts (each colour, shape, size and position in turn; 15 % with no position).
- Image to image: {evaluate.IMG2IMG_CASES} rendered images at strengths {', '.join(map(str, evaluate.IMG2IMG_STRENGTHS))} with their own captions; unchanged means the
  judge reads every attribute as before and sees no edge artifact.
- Inpainting with `latent-shapes` (so through the sibling, at its own defaults): 24 images, a 60×60 empty corner masked,
  the prompt asking for a small shape of another colour in that corner.

{facts.get('eval_table', '')}

{facts.get('eval_note', '')}

{facts.get('speed_note', '')}

Reproduce: `python main.py demo evaluate --edits`.

## Licence

Apache-2.0, like the rest of Latent Studio. The training data is synthetic, drawn by this project's code.
"""
    (folder / "README.md").write_text(text, encoding="utf-8")


def _recipe(facts: dict) -> tuple:
    """The facts the card's recipe sections read: the first edition's, the second's and their configs."""
    first = facts.get("first_edition") or {}
    h1, g = first.get("history") or {}, facts.get("growth") or {}
    return first, h1, g, h1.get("config") or {}, g.get("config") or {}


def _origin(facts: dict) -> str:
    first, h1, g, c1, cg = _recipe(facts)
    if facts.get("recipe") == "one-pass":
        c1 = g.get("first_config") or {}
        return f"""**One run from nothing** (`desktop/demo/one_pass.py`, the merged recipe): a VAE trained {c1.get('vae_steps', '?')} steps of batch
{c1.get('vae_batch', '?')} from scratch ({g.get('vae_seconds', 0) / 60:.1f} min, final loss {g.get('vae_final_loss', float('nan')):.4f}), then the stages below, seed {cg.get('seed', '?')}; stages 3 and 4 are one pass
of a fresh UNet and text encoder, with no first edition.
"""
    return f"""**First edition** (the base): VAE {c1.get('vae_steps', '?')} steps of batch {c1.get('vae_batch', '?')}; UNet and text encoder
{h1.get('unet_steps_done', '?')} steps of batch {c1.get('unet_batch', '?')} on {c1.get('pool', 0):,} images, offset noise {c1.get('offset_noise', '?')},
EMA {c1.get('ema_decay', '?')}; trained on {first.get('hardware', '?')}. Command: `{first.get('command', '?')}`.

**Second edition**, grown from the first (`desktop/demo/finetune.py`), seed {cg.get('seed', '?')}:
"""


def _vocabulary_stages(facts: dict) -> str:
    first, h1, g, c1, cg = _recipe(facts)
    if facts.get("recipe") == "one-pass":
        c = g.get("first_config") or {}
        return f"""3–4. **Sizes and positions, in one pass.** A fresh UNet and a fresh text encoder, built for the whole
   vocabulary (every word one token), learn the captions directly, as a **v-prediction model on a
   zero-terminal-SNR schedule** (Lin et al. 2023; sampled with "trailing" spacing from t = T), so only the
   caption can say where the shape goes: {c.get('unet_steps', '?')} steps of batch {c.get('unet_batch', '?')}, lr {c.get('unet_lr', '?')}, warm-up {c.get('warmup', '?')}, EMA {c.get('ema_decay', '?')},
   on {c.get('pool', 0):,} images (the pool the latent scaling factor is measured on); half of each batch at uniform t,
   half at t ≥ {cg.get('words_high_t', '?')} from captions naming a position; a linear probe on the text encoder's mean
   output (the row, column and size a caption names, weight {cg.get('words_probe', '?')}, discarded afterwards) keeps the
   words apart. Final loss {g.get('one_pass_final_loss', float('nan')):.4f}.
"""
    return f"""3. **Sizes and positions.** The tokenizer gained the new words (old token ids kept; each new embedding
   starts at the average word); UNet and text encoder trained {cg.get('unet_steps', '?')} steps of batch {cg.get('unet_batch', '?')} on
   {cg.get('pool', 0):,} new images, lr {cg.get('unet_lr', '?')}, EMA {cg.get('ema_decay', '?')}; final loss {g.get('unet_final_loss', float('nan')):.4f}.
4. **The words apart, the layout from the caption.** After stage 3 the model ignored the position
   words, for two reasons. (a) The text encoder carried them as one: its outputs for "top left" and
   "top right" differed by 0.8 (for two colours, 25; after this stage 56 and 16): in the first edition's encoder, trained from
   scratch, a word embedding of norm 0.5 meets a residual stream of norm 20–90, and nothing had taught
   it to keep a word after "top" or "bottom". (b) The SD 1.x schedule leaves signal at the last step (√ᾱ = 0.068 at t = 999), enough
   to place a shape, so the model took the layout from the starting noise: its ε-loss at t = 950 was
   0.00297 with a caption's own position and 0.00298 with a wrong one. The size and position words got
   directions of their own (`middle` shares `center`'s, `an` shares `a`'s); the base model was turned
   into a **v-prediction model on a zero-terminal-SNR schedule** (Lin et al. 2023; the betas rescaled so
   that ᾱ_T = 0, sampled with "trailing" spacing from t = T), so at the start of sampling only the
   caption can say where the shape goes; and a linear probe on the text encoder's mean output, trained
   with it (cross-entropy for the row, column and size a caption names, weight {cg.get('words_probe', '?')}, discarded
   afterwards), keeps the words apart. UNet and text encoder trained {cg.get('words_steps', '?')} steps of batch {cg.get('unet_batch', '?')}: half of
   each batch at uniform t, half at t ≥ {cg.get('words_high_t', '?')} from captions naming a position; lr {cg.get('words_lr', '?')} for the
   UNet, {cg.get('words_text_lr', '?')} for the text encoder, {cg.get('words_embedding_lr', '?')} for its word embeddings; final loss {g.get('words_final_loss', float('nan')):.4f}.
"""


def _timing(facts: dict) -> str:
    first, h1, g, c1, cg = _recipe(facts)
    minutes = lambda key: g.get(key, 0) / 60  # noqa: E731
    if facts.get("recipe") == "one-pass":
        return f"""Training took {minutes('total_seconds'):.1f} minutes on {facts['hardware']} ({g.get('threads', '?')} threads; VAE {minutes('vae_seconds'):.1f} min,
decoder {minutes('decoder_seconds'):.1f} min, pool {minutes('pool_seconds'):.1f} min, one pass {minutes('one_pass_seconds'):.1f} min, inpainting {minutes('inpaint_seconds'):.1f} min,
decoder on the denoiser {minutes('denoised_seconds'):.1f} min, polish {minutes('polish_seconds'):.1f} min). No accelerator was used.
"""
    return f"""Growing took {g.get('total_seconds', 0) / 60:.1f} minutes on {facts['hardware']} ({g.get('threads', '?')} threads; decoder
{g.get('decoder_seconds', 0) / 60:.1f} min, UNet {g.get('unet_seconds', 0) / 60:.1f} min, inpainting {g.get('inpaint_seconds', 0) / 60:.1f} min, words {g.get('words_seconds', 0) / 60:.1f} min, decoder on the denoiser {g.get('denoised_seconds', 0) / 60:.1f} min, polish {g.get('polish_seconds', 0) / 60:.1f} min), with other work sharing the CPU. {g.get('corner_pass_note', '')} {g.get('inpaint_note', '')}
No accelerator was used for the second edition.
"""
