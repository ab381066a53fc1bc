"""Cheap latent -> RGB previews for every denoising step.

A 4x3 linear map (plus bias) from latent channels to RGB approximates what the VAE decoder would
produce, at a tiny fraction of its cost. A model folder may ship its own factors in
`latent_preview.json` ({"factors": [[r, g, b] x channels], "bias": [r, g, b]}).
"""

from __future__ import annotations

import json
import logging
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

    def __call__(self, latent):
        import torch
        from PIL import Image

        x = latent.detach().to("cpu", torch.float32)
        if x.shape[0] != self._matrix.shape[0]:
            x = x[: self._matrix.shape[0]]
        # Noisy latents are larger than clean ones (std ~ sqrt(1 + sigma^2)); rescale so early
        # steps show noise rather than a saturated blotch.
        x = x / max(1.0, float(x.std()))
        rgb = torch.einsum("chw,cr->hwr", x, self._matrix) + self._bias
        rgb = ((rgb + 1.0) * 127.5).clamp(0, 255).to(torch.uint8).numpy()
        return Image.fromarray(rgb, "RGB")
