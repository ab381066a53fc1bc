"""Tiny autoencoders (TAESD and TAESDXL, diffusers' `AutoencoderTiny`): a full-size picture from a latent
at a small fraction of the VAE's cost.

They serve the step previews (the predicted clean image at every step, see previews.py) and, when the
user asks (`--fast-decode`, the window's setting), the final decode. A tiny autoencoder only works in
the latent space it was trained for: TAESD in Stable Diffusion 1.x/2.x's, TAESDXL in SDXL's. A model
with its own VAE (this project's shipped models, most custom ones) is served only by a tiny
autoencoder whose folder names it in `latent_studio.json` ({"serves": ["model name", ...]}).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from desktop.errors import LatentStudioError

log = logging.getLogger(__name__)

TINY_CLASS = "AutoencoderTiny"
TAESD, TAESDXL = "TAESD", "TAESDXL"
SERVES_FILE = "latent_studio.json"
GET_ONE = {TAESD: "madebyollin/taesd", TAESDXL: "madebyollin/taesdxl"}


def _config(folder: Path) -> dict:
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def is_tiny_autoencoder(folder: Path) -> bool:
    return folder.is_dir() and _config(folder).get("_class_name") == TINY_CLASS


def kind_of(folder: Path) -> str:
    """TAESD or TAESDXL (the two share one architecture, so the name tells them apart), or the
    channel count of another latent space (TAESD3 and TAEF1 have 16)."""
    channels = _config(folder).get("latent_channels", 4)
    if channels != 4:
        return f"tiny autoencoder ({channels} channels)"
    return TAESDXL if "xl" in folder.name.lower() else TAESD


def declared(folder: Path) -> list[str] | None:
    """The model names a tiny autoencoder's folder says it serves, or None when it says nothing."""
    try:
        serves = json.loads((folder / SERVES_FILE).read_text(encoding="utf-8")).get("serves")
    except (OSError, ValueError, AttributeError):
        return None
    return [str(name) for name in serves] if isinstance(serves, list) else None


def serves(tiny, model) -> bool:
    """Whether a tiny autoencoder (a ModelInfo of kind TAESD...) decodes a model's latents."""
    names = declared(tiny.path)
    if names is not None:
        return model.name.lower() in (n.lower() for n in names)
    if model.kind.startswith("SDXL"):
        return tiny.kind == TAESDXL
    if model.kind.startswith(("SD 1", "SD 2")):
        return tiny.kind == TAESD
    return False  # a model with its own VAE has its own latent space


def choose(tinies: list, model):
    """The first tiny autoencoder that serves the model (the registry lists the user's folders first)."""
    return next((t for t in tinies if serves(t, model)), None)


def missing_message(model) -> str:
    wanted = TAESDXL if model.kind.startswith("SDXL") else TAESD
    if not model.kind.startswith(("SD 1", "SD 2", "SDXL")):
        return (f"Fast decode needs a tiny autoencoder trained for {model.name}'s own latent space, and none is "
                f"installed (its folder's {SERVES_FILE} would list {model.name!r} under \"serves\"). "
                "Turn fast decode off to use the model's VAE.")
    return (f"Fast decode needs a tiny autoencoder for {model.kind} ({wanted}), and none is installed: run "
            f"`python main.py models download {GET_ONE[wanted]}` once online, or copy its folder into the models "
            "folder. Turn fast decode off to use the model's VAE.")


class TinyDecoder:
    """A loaded tiny autoencoder's decoder, on the device of the model it serves."""

    def __init__(self, info, device: str, dtype):
        import torch
        from diffusers import AutoencoderTiny

        try:
            self.vae = AutoencoderTiny.from_pretrained(info.path, local_files_only=True, torch_dtype=dtype)
        except (OSError, ValueError, RuntimeError) as exc:
            raise LatentStudioError(f"Cannot load the tiny autoencoder {info.name}: {str(exc).splitlines()[0]}") from exc
        # channels_last: its convolutions ran 1.45x faster so on a 2-core AVX2 CPU (1.35 vs 1.95 s at 512²)
        self.vae.to(device, memory_format=torch.channels_last).eval().requires_grad_(False)
        self.info = info

    def tensor(self, latents):
        """Pixels in [-1, 1] from latents as the pipeline holds them (already times the VAE's scaling factor,
        which is the space TAESD was trained in)."""
        import torch

        latents = latents.to(self.vae.device, self.vae.dtype, memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.vae.decode(latents, return_dict=False)[0].float().contiguous()

    def final_image(self, pipe, latents):
        """The job's image (fast decode), with generation's checks for NaN and all-black output."""
        import torch

        from desktop.engine.generation import decode_latents

        return decode_latents(pipe, latents.contiguous(memory_format=torch.channels_last), vae=self.vae)

    def __call__(self, latent):
        """One latent (C, h, w) as a full-size PIL image."""
        from desktop.engine.previews import to_pil

        return to_pil(self.tensor(latent[None])[0])
