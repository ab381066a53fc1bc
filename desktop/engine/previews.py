"""What a step looks like: the latent being denoised, and the clean image the model predicts from it.

Every step gives two pictures (a StepPreview). `noisy` is the latent x_t itself; `clean` is the
predicted clean image x̂₀, read from the sampler's step (or, for samplers that do not report it,
from the model's output and the step's noise level: x̂₀ = (x_t − √(1−ᾱ)·ε̂)/√ᾱ). x̂₀ goes through a
tiny autoencoder when one serves the model (full size, see tiny_vae.py), else through the same
linear map as `noisy`.

The linear map: a 4x3 matrix (plus bias) from latent channels to RGB approximates what the VAE
decoder would produce, at a tiny fraction of its cost. A model folder may ship its own factors in
`latent_preview.json` ({"factors": [[r, g, b] x channels], "bias": [r, g, b]}).
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PREVIEW_FILE = "latent_preview.json"

# Fitted for the Stable Diffusion 1.x/2.x VAE (also a fair guess for any 4-channel SD-style VAE).
SD15_FACTORS = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)
SDXL_FACTORS = (
    (0.3651, 0.4232, 0.4341),
    (-0.2533, -0.0042, 0.1068),
    (0.1076, 0.1111, -0.0362),
    (-0.3165, -0.2492, -0.2188),
)
SDXL_BIAS = (0.1084, -0.0175, -0.0011)


@dataclass(frozen=True)
class PreviewFactors:
    factors: tuple[tuple[float, float, float], ...]
    bias: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @classmethod
    def for_model(cls, folder: Path | None, is_sdxl: bool = False) -> "PreviewFactors":
        if folder is not None and (folder / PREVIEW_FILE).is_file():
            try:
                raw = json.loads((folder / PREVIEW_FILE).read_text())
                return cls(tuple(tuple(map(float, row)) for row in raw["factors"]), tuple(map(float, raw.get("bias", (0, 0, 0)))))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("Ignoring unreadable %s in %s: %s", PREVIEW_FILE, folder, exc)
        if is_sdxl:
            return cls(SDXL_FACTORS, SDXL_BIAS)
        return cls(SD15_FACTORS)


class LatentPreviewer:
    """Turns one latent (C, h, w) into a small RGB PIL image."""

    def __init__(self, factors: PreviewFactors):
        import torch

        self._matrix = torch.tensor(factors.factors, dtype=torch.float32)  # (C, 3)
        self._bias = torch.tensor(factors.bias, dtype=torch.float32)

    def __call__(self, latent, noisy: bool = True):
        import torch

        x = latent.detach().to("cpu", torch.float32)
        if x.shape[0] != self._matrix.shape[0]:
            x = x[: self._matrix.shape[0]]
        if noisy:  # noisy latents are larger than clean ones (std ~ sqrt(1 + sigma^2)); rescale so
            x = x / max(1.0, float(x.std()))  # early steps show noise rather than a saturated blotch
        return to_pil(torch.einsum("chw,cr->rhw", x, self._matrix) + self._bias[:, None, None])


@dataclass(frozen=True)
class StepPreview:
    """One step's pictures (PIL): the latent x_t, and the predicted clean image x̂₀ (None when the step
    had no prediction to read)."""

    noisy: object
    clean: object | None


def to_pil(pixels):
    """A (3, H, W) tensor in [-1, 1] as an RGB PIL image."""
    import torch
    from PIL import Image

    rgb = ((pixels.detach().float().cpu() + 1.0) * 127.5).clamp(0, 255).to(torch.uint8)
    return Image.fromarray(rgb.permute(1, 2, 0).numpy(), "RGB")


@contextmanager
def tracking_clean(scheduler, into: list):
    """While the sampler runs, `into[0]` holds the x̂₀ of its latest step (a latent batch)."""
    step = scheduler.step

    def tracked(model_output, timestep, sample, *args, **kwargs):
        output = step(model_output, timestep, sample, *args, **kwargs)
        into[0] = predicted_clean(scheduler, output, model_output, timestep, sample)
        return output

    scheduler.step = tracked
    try:
        yield into
    finally:
        del scheduler.step


def predicted_clean(scheduler, output, model_output, timestep, sample):
    """x̂₀ of the step just taken: what the sampler reports, else worked out from the model's output."""
    for name in ("pred_original_sample", "denoised"):  # Euler, DDIM, Heun, LMS...; LCM
        value = getattr(output, name, None)
        if value is not None:
            return value
    alpha_bar = _alpha_bar(scheduler, timestep)  # DPM++, UniPC, TCD, PNDM: samples in the x_t = √ᾱ·x₀ + √(1−ᾱ)·ε form
    kind = scheduler.config.get("prediction_type", "epsilon")
    if kind == "sample":
        return model_output
    if kind == "v_prediction":
        return alpha_bar ** 0.5 * sample - (1 - alpha_bar) ** 0.5 * model_output
    return (sample - (1 - alpha_bar) ** 0.5 * model_output) / alpha_bar ** 0.5


def _alpha_bar(scheduler, timestep) -> float:
    """ᾱ of the step just taken: from its σ where the sampler keeps them (exact with Karras sigmas),
    else from the training schedule at the timestep."""
    sigmas, index = getattr(scheduler, "sigmas", None), getattr(scheduler, "step_index", None)
    if sigmas is not None and index:
        sigma = float(sigmas[index - 1])  # the step has already moved the index on
        return 1.0 / (1.0 + sigma * sigma)
    table = scheduler.alphas_cumprod
    return float(table[min(int(timestep), len(table) - 1)])
