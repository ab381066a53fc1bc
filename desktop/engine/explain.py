"""How diffusion works, on the user's own images: the forward (noising) process and the denoising
animation. No Qt: the CLI's `explain` and `generate --animation` use it, the window can too.

The forward process: an image is encoded by the model's VAE into its latent x0 (8× smaller), then
noised to step t with the model's own schedule, x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε, with one fixed ε, and
decoded back. At t = 0 (ᾱ_0 ≈ 1) that is the VAE round trip of the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from desktop.errors import LatentStudioError

LABEL_HEIGHT = 22


@dataclass(frozen=True)
class ForwardFrame:
    t: int
    alpha_bar: float
    image: object  # PIL


def parse_timesteps(text: str, total: int) -> list[int]:
    try:
        steps = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise LatentStudioError(f"--t takes whole numbers separated by commas, e.g. 0,250,500 (got {text!r}).") from None
    if not steps or any(not 0 <= t < total for t in steps):
        raise LatentStudioError(f"Each t must be from 0 to {total - 1}, this model's last step (got {text!r}).")
    return steps


def model_input(image, native: int):
    """The image as the VAE takes it: fitted inside the model's native size, sides multiples of 8."""
    from PIL import Image

    image = image.convert("RGB")
    scale = min(1.0, native / max(image.size))
    size = tuple(max(8, int(side * scale) // 8 * 8) for side in image.size)
    return image.resize(size, Image.Resampling.LANCZOS) if size != image.size else image


def noised(x0, noise, alpha_bar: float):
    """The forward process in one line: x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε."""
    return alpha_bar ** 0.5 * x0 + (1 - alpha_bar) ** 0.5 * noise


class ForwardProcess:
    """What the forward process needs of a model: its VAE and its noise schedule (no UNet, no text
    encoder). It has a pipeline's `vae` and `image_processor`, so generation's decode_latents takes it."""

    def __init__(self, vae, alphas_cumprod, image_processor):
        self.vae, self.alphas_cumprod, self.image_processor = vae, alphas_cumprod, image_processor

    @classmethod
    def of_pipe(cls, pipe) -> "ForwardProcess":
        """The training schedule of the pipe's sampler: on a zero-terminal-SNR model Euler, DPM and UniPC
        hold ᾱ_T at 2⁻²⁴ to sample, but the forward process ends in pure noise (ᾱ_T = 0)."""
        from diffusers import DDPMScheduler

        return cls(pipe.vae, DDPMScheduler.from_config(pipe.scheduler.config).alphas_cumprod, pipe.image_processor)

    @classmethod
    def load(cls, info) -> "ForwardProcess":
        """A diffusers folder's VAE and schedule alone (fast); a single file's whole pipeline, once."""
        import torch
        from diffusers import AutoencoderKL, DDPMScheduler
        from diffusers.image_processor import VaeImageProcessor

        from desktop.engine.models import load_pipeline

        if not info.path.is_dir():
            return cls.of_pipe(load_pipeline(info, torch.float32))
        try:
            vae = AutoencoderKL.from_pretrained(info.path / "vae", local_files_only=True).eval()
            schedule = DDPMScheduler.from_pretrained(info.path / "scheduler", local_files_only=True).alphas_cumprod
        except (OSError, ValueError) as exc:
            raise LatentStudioError(f"Cannot read {info.name}'s VAE and schedule: {str(exc).splitlines()[0]}") from exc
        scale = 2 ** (len(vae.config.block_out_channels) - 1)
        return cls(vae, schedule, VaeImageProcessor(vae_scale_factor=scale))

    @property
    def steps(self) -> int:
        return len(self.alphas_cumprod)

    def alpha_bar(self, t: int) -> float:
        return float(self.alphas_cumprod[t])

    def encode(self, image):
        """x0: the image's latent (the posterior's mean, times the scaling factor)."""
        import torch

        vae = self.vae
        pixels = self.image_processor.preprocess(image).to(vae.device, vae.dtype)
        with torch.inference_mode():
            return vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor

    @staticmethod
    def noise_like(x0, seed: int = 0):
        """The one fixed ε every t is noised with."""
        import torch

        return torch.randn(x0.shape, generator=torch.Generator("cpu").manual_seed(seed)).to(x0.device, x0.dtype)

    def frame(self, x0, noise, t: int) -> ForwardFrame:
        """x_t, decoded: pure noise decodes too (no NaN/black check)."""
        import torch

        from desktop.engine.generation import decode_latents

        alpha_bar = self.alpha_bar(t)
        with torch.inference_mode():
            return ForwardFrame(t, alpha_bar, decode_latents(self, noised(x0, noise, alpha_bar), check=False))


def latent_channels(x0, scale: int = 1) -> list:
    """Each channel of a latent (1, C, h, w) as a greyscale picture, stretched to its own range."""
    from PIL import Image

    pictures = []
    for channel in x0[0].float().cpu():
        low, high = float(channel.min()), float(channel.max())
        grey = ((channel - low) / max(high - low, 1e-6) * 255).round().byte().numpy()
        picture = Image.fromarray(grey, "L")
        pictures.append(picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST))
    return pictures


def forward_frames(pipe, image, timesteps: list[int], seed: int = 0) -> list[ForwardFrame]:
    """The image noised to each t with the pipeline's schedule, decoded."""
    process = ForwardProcess.of_pipe(pipe)
    x0 = process.encode(image)
    noise = process.noise_like(x0, seed)
    return [process.frame(x0, noise, t) for t in timesteps]


def labelled_strip(frames: list[ForwardFrame]):
    """One image: the frames side by side in order, each labelled with its t and ᾱ_t."""
    from PIL import Image, ImageDraw

    width, height = frames[0].image.size
    strip = Image.new("RGB", (width * len(frames), height + LABEL_HEIGHT), (24, 24, 28))
    draw = ImageDraw.Draw(strip)
    for index, frame in enumerate(frames):
        strip.paste(frame.image, (index * width, 0))
        draw.text((index * width + 4, height + 5), f"t={frame.t}  a={frame.alpha_bar:.3f}", fill=(230, 230, 235))
    return strip


def check_animation_path(path: Path) -> None:
    if path.suffix.lower() not in (".webp", ".gif"):
        raise LatentStudioError(f"--animation writes .webp or .gif files (got {path.name}).")


def save_animation(frames: list, path: Path, seconds_per_frame: float = 0.12) -> Path:
    """The denoising steps (PIL previews) then the final image as an animated WebP or GIF, chosen by
    the suffix. Each step is labelled "step k/N" (which also keeps encoders from merging two steps
    that look alike into one frame); the image lingers at the end."""
    from PIL import ImageDraw

    check_animation_path(path)
    suffix = path.suffix.lower()
    size = frames[-1].size
    frames = [f.convert("RGB").resize(size) for f in frames]
    steps = len(frames) - 1
    for index, frame in enumerate(frames[:-1]):
        ImageDraw.Draw(frame).text((4, 3), f"step {index + 1}/{steps}", fill=(255, 255, 255))
    durations = [int(seconds_per_frame * 1000)] * (len(frames) - 1) + [1500]
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"lossless": False, "quality": 85} if suffix == ".webp" else {}
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0, **options)
    return path
